//! Txn evaluation (etcd `etcdserver/apply.go`: `compareToPath`,
//! `checkRequests`, `applyTxn`).
//!
//! All compares of a txn, including those of the nested txns on the chosen
//! path, are evaluated against the store as it was before the txn; then the
//! chosen ops are checked (lease exists, ignore_* keys exist, read revisions
//! valid), and only then executed in order, each seeing the earlier ones.
//! A failed check aborts the whole txn with nothing applied.
//!
//! A read-only txn (only Ranges, nested ones included) changes nothing, so
//! it never enters the log: [`read_txn`] evaluates it against a read view,
//! as etcd serves `isTxnReadonly` txns outside raft.

use super::range::{range_within, KeyRange, SendBudget};
use super::{MvccRead, RevisionState};
use crate::error::{Error, EtcdError, Result};
use crate::pb::etcdserverpb::{
    compare, request_op, response_op, Compare, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseHeader, ResponseOp, TxnRequest,
    TxnResponse,
};
use crate::pb::mvccpb::KeyValue;
use prost::Message;

/// Where a txn's chosen ops run: a write request in progress (implemented
/// by `apply::TxnWrite`, so this module does not depend on `apply`), or
/// the read view of a read-only txn.
pub(crate) trait Ops {
    fn store(&self) -> &dyn MvccRead;
    fn begin_state(&self) -> RevisionState;
    /// The revision the response header carries.
    fn header_rev(&self) -> i64;
    /// A Range whose kvs count against the txn response's budget.
    fn range(&mut self, req: &RangeRequest) -> Result<RangeResponse>;
    fn put(&mut self, req: &PutRequest) -> Result<Result<PutResponse, EtcdError>>;
    fn delete_range(&mut self, req: &DeleteRangeRequest) -> Result<DeleteRangeResponse>;
}

/// A read-only txn's view: the store at one revision, never written.
struct ReadView<'a> {
    store: &'a dyn MvccRead,
    state: RevisionState,
    budget: SendBudget,
}

impl Ops for ReadView<'_> {
    fn store(&self) -> &dyn MvccRead {
        self.store
    }
    fn begin_state(&self) -> RevisionState {
        self.state
    }
    fn header_rev(&self) -> i64 {
        self.state.current
    }
    fn range(&mut self, req: &RangeRequest) -> Result<RangeResponse> {
        let (current, compacted) = (self.state.current, self.state.compacted);
        range_within(self.store, req, current, compacted, &mut self.budget)
    }
    fn put(&mut self, _: &PutRequest) -> Result<Result<PutResponse, EtcdError>> {
        Err(Error::Internal("a Put in a read-only txn".into()))
    }
    fn delete_range(&mut self, _: &DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        Err(Error::Internal("a DeleteRange in a read-only txn".into()))
    }
}

/// Applies a validated txn through a write request in progress.
pub(crate) fn apply_txn(
    w: &mut dyn Ops,
    req: &TxnRequest,
) -> Result<Result<TxnResponse, EtcdError>> {
    run(w, req)
}

/// Evaluates a read-only txn ([`is_read_only`]) against `store` as it is
/// now; the header carries the store's current revision. A response over
/// `send_limit` bytes is etcd's (grpc-go's) error, and is never built.
pub fn read_txn(
    store: &dyn MvccRead,
    req: &TxnRequest,
    send_limit: u64,
) -> Result<Result<TxnResponse, EtcdError>> {
    if !is_read_only(req) {
        return Err(Error::Internal("read_txn given a txn that writes".into()));
    }
    let state = store.revision_state()?;
    let mut view = ReadView {
        store,
        state,
        budget: SendBudget::new(send_limit),
    };
    let resp = run(&mut view, req)?;
    Ok(resp.and_then(|resp| view.budget.check(resp.encoded_len()).map(|()| resp)))
}

fn run(w: &mut dyn Ops, req: &TxnRequest) -> Result<Result<TxnResponse, EtcdError>> {
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

/// etcd's `isTxnSerializable`: every top-level op on both branches is a
/// Range asking for a serializable read (a nested txn does not count as
/// one), so a read-only txn may be served without a ReadIndex.
pub(crate) fn is_serializable(req: &TxnRequest) -> bool {
    (req.success.iter().chain(&req.failure)).all(
        |op| matches!(&op.request, Some(request_op::Request::RequestRange(r)) if r.serializable),
    )
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
///
/// Keys are checked as the scan meets them and the scan stops at the first
/// that fails, so a compare over a large range holds one key at a time.
pub fn compare(store: &dyn MvccRead, rev: i64, c: &Compare) -> Result<bool> {
    let (mut any, mut all) = (false, true);
    store.scan(&KeyRange::new(&c.key, &c.range_end), rev, &mut |kv| {
        any = true;
        all = compare_kv(c, &kv);
        all
    })?;
    if !any {
        if c.target == compare::CompareTarget::Value as i32 {
            return Ok(false);
        }
        return Ok(compare_kv(c, &KeyValue::default()));
    }
    Ok(all)
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
    w: &mut dyn Ops,
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
