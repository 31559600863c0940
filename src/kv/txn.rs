//! Txn evaluation (etcd `etcdserver/apply.go`: `compareToPath`,
//! `checkRequests`, `applyTxn`).
//!
//! All compares of a txn, including those of the nested txns on the chosen
//! path, are evaluated against the store as it was before the txn; then the
//! chosen ops are checked (lease exists, ignore_* keys exist, read revisions
//! valid), and only then executed in order, each seeing the earlier ones.
//! A failed check aborts the whole txn with nothing applied.

use super::apply::TxnWrite;
use super::range::KeyRange;
use super::{MvccRead, RevisionState};
use crate::error::{Error, EtcdError, Result};
use crate::pb::etcdserverpb::{
    compare, request_op, response_op, Compare, RequestOp, ResponseHeader, ResponseOp, TxnRequest,
    TxnResponse,
};
use crate::pb::mvccpb::KeyValue;

pub fn apply_txn(w: &mut TxnWrite<'_>, req: &TxnRequest) -> Result<Result<TxnResponse, EtcdError>> {
    let begin = w.begin_state();
    let mut path = Vec::new();
    compare_path(w.store(), begin.current, req, &mut path)?;
    if let Err(e) = check(w.store(), begin, req, &path, &mut 0, !is_read_only(req)) {
        return match e {
            Error::Etcd(e) => Ok(Err(e)),
            e => Err(e),
        };
    }
    let mut resp = match execute(w, req, &path, &mut 0)? {
        Ok(resp) => resp,
        Err(e) => return Ok(Err(e)),
    };
    resp.header = Some(ResponseHeader {
        revision: w.header_rev(),
        ..Default::default()
    });
    Ok(Ok(resp))
}

/// True if every op, nested ones included, is a Range.
pub fn is_read_only(req: &TxnRequest) -> bool {
    req.success
        .iter()
        .chain(&req.failure)
        .all(|op| match &op.request {
            Some(request_op::Request::RequestRange(_)) => true,
            Some(request_op::Request::RequestTxn(t)) => is_read_only(t),
            _ => false,
        })
}

fn chosen(req: &TxnRequest, succeeded: bool) -> &[RequestOp] {
    if succeeded {
        &req.success
    } else {
        &req.failure
    }
}

/// Depth-first compare results along the chosen branches.
fn compare_path(
    store: &dyn MvccRead,
    rev: i64,
    req: &TxnRequest,
    path: &mut Vec<bool>,
) -> Result<()> {
    let mut succeeded = true;
    for c in &req.compare {
        if !compare(store, rev, c)? {
            succeeded = false;
            break;
        }
    }
    path.push(succeeded);
    for op in chosen(req, succeeded) {
        if let Some(request_op::Request::RequestTxn(t)) = &op.request {
            compare_path(store, rev, t, path)?;
        }
    }
    Ok(())
}

/// One compare over `[key, range_end)`: every key present must satisfy it; with
/// no key present a VALUE compare fails and the others compare against zero.
pub fn compare(store: &dyn MvccRead, rev: i64, c: &Compare) -> Result<bool> {
    let mut kvs = Vec::new();
    store.scan(&KeyRange::new(&c.key, &c.range_end), rev, &mut |kv| {
        kvs.push(kv);
        true
    })?;
    if kvs.is_empty() {
        if c.target == compare::CompareTarget::Value as i32 {
            return Ok(false);
        }
        return Ok(compare_kv(c, &KeyValue::default()));
    }
    Ok(kvs.iter().all(|kv| compare_kv(c, kv)))
}

fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    use compare::{CompareResult, CompareTarget, TargetUnion};
    let ord = match CompareTarget::try_from(c.target) {
        Ok(CompareTarget::Value) => {
            let v: &[u8] = match &c.target_union {
                Some(TargetUnion::Value(v)) => v,
                _ => &[],
            };
            kv.value.as_slice().cmp(v)
        }
        Ok(CompareTarget::Version) => kv
            .version
            .cmp(&int_target(c, |t| matches!(t, TargetUnion::Version(_)))),
        Ok(CompareTarget::Create) => kv.create_revision.cmp(&int_target(c, |t| {
            matches!(t, TargetUnion::CreateRevision(_))
        })),
        Ok(CompareTarget::Mod) => kv
            .mod_revision
            .cmp(&int_target(c, |t| matches!(t, TargetUnion::ModRevision(_)))),
        Ok(CompareTarget::Lease) => kv
            .lease
            .cmp(&int_target(c, |t| matches!(t, TargetUnion::Lease(_)))),
        Err(_) => std::cmp::Ordering::Equal,
    };
    match CompareResult::try_from(c.result) {
        Ok(CompareResult::Equal) => ord.is_eq(),
        Ok(CompareResult::NotEqual) => ord.is_ne(),
        Ok(CompareResult::Greater) => ord.is_gt(),
        Ok(CompareResult::Less) => ord.is_lt(),
        Err(_) => true,
    }
}

/// The integer target of a compare; a missing or mismatched union is 0, as in etcd.
fn int_target(c: &Compare, matches: impl Fn(&compare::TargetUnion) -> bool) -> i64 {
    use compare::TargetUnion;
    match &c.target_union {
        Some(t) if matches(t) => match t {
            TargetUnion::Version(v)
            | TargetUnion::CreateRevision(v)
            | TargetUnion::ModRevision(v)
            | TargetUnion::Lease(v) => *v,
            TargetUnion::Value(_) => 0,
        },
        _ => 0,
    }
}

/// etcd's `checkRequests` with `checkRequestPut` (write txns only) and
/// `checkRequestRange`, over the chosen path, against the pre-txn store.
fn check(
    store: &dyn MvccRead,
    begin: RevisionState,
    req: &TxnRequest,
    path: &[bool],
    at: &mut usize,
    is_write: bool,
) -> Result<()> {
    let succeeded = path[*at];
    *at += 1;
    for op in chosen(req, succeeded) {
        match &op.request {
            Some(request_op::Request::RequestTxn(t)) => check(store, begin, t, path, at, is_write)?,
            Some(request_op::Request::RequestPut(p)) if is_write => {
                if (p.ignore_value || p.ignore_lease) && store.get(&p.key, begin.current)?.is_none()
                {
                    return Err(EtcdError::KeyNotFound.into());
                }
                if p.lease != 0 && store.lease(p.lease)?.is_none() {
                    return Err(EtcdError::LeaseNotFound.into());
                }
            }
            Some(request_op::Request::RequestRange(r)) if r.revision != 0 => {
                if r.revision > begin.current {
                    return Err(EtcdError::FutureRev.into());
                }
                if r.revision < begin.compacted {
                    return Err(EtcdError::Compacted.into());
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn execute(
    w: &mut TxnWrite<'_>,
    req: &TxnRequest,
    path: &[bool],
    at: &mut usize,
) -> Result<Result<TxnResponse, EtcdError>> {
    let succeeded = path[*at];
    *at += 1;
    let mut responses = Vec::new();
    for op in chosen(req, succeeded) {
        let response = match &op.request {
            Some(request_op::Request::RequestRange(r)) => match w.range(r) {
                Ok(resp) => response_op::Response::ResponseRange(resp),
                Err(Error::Etcd(e)) => return Ok(Err(e)),
                Err(e) => return Err(e),
            },
            Some(request_op::Request::RequestPut(p)) => match w.put(p)? {
                Ok(resp) => response_op::Response::ResponsePut(resp),
                Err(e) => return Ok(Err(e)),
            },
            Some(request_op::Request::RequestDeleteRange(d)) => {
                response_op::Response::ResponseDeleteRange(w.delete_range(d)?)
            }
            Some(request_op::Request::RequestTxn(t)) => match execute(w, t, path, at)? {
                // Nested txn headers are left empty, as etcd does.
                Ok(resp) => response_op::Response::ResponseTxn(resp),
                Err(e) => return Ok(Err(e)),
            },
            None => return Ok(Err(EtcdError::KeyNotFound)),
        };
        responses.push(ResponseOp {
            response: Some(response),
        });
    }
    Ok(Ok(TxnResponse {
        header: Some(ResponseHeader::default()),
        succeeded,
        responses,
    }))
}
