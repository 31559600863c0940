//! Static request validation done before a request is proposed
//! (etcd `v3rpc/key.go`): empty keys, contradicting options, sort enums, the
//! txn operation budget and the txn duplicate-key rule. A request that fails
//! here never reaches the log.

use std::collections::HashSet;

use crate::error::EtcdError;
use crate::pb::etcdserverpb::{
    range_request, request_op, CompactionRequest, DeleteRangeRequest, PutRequest, RangeRequest,
    RequestOp, TxnRequest,
};

/// etcd's `--max-txn-ops` default.
pub(crate) const MAX_TXN_OPS: usize = 128;
/// etcd's `--max-request-bytes` default (1.5 MiB).
pub(crate) const MAX_REQUEST_BYTES: usize = 1536 * 1024;
/// What etcd's raft entry adds to a request's own encoding before it
/// compares the entry with `--max-request-bytes`: the `InternalRaftRequest`
/// header (field tag, length and a request id that is a 10-byte varint when
/// the id's top bit is set, as it is for half of all member ids) and the
/// request's field tag. The length of the request follows, see
/// [`raft_request_size`].
const RAFT_REQUEST_OVERHEAD: usize = 13 + 1;

/// The size of etcd's raft entry for a request encoded in `len` bytes, the
/// size etcd checks against `--max-request-bytes`: a Put of key `k` is
/// accepted with a 1572840-byte value and refused with 1572841, as etcd
/// 3.4.23 does for a member whose request ids have the top bit set.
pub(crate) fn raft_request_size(len: usize) -> usize {
    RAFT_REQUEST_OVERHEAD + prost::length_delimiter_len(len) + len
}

/// gRPC receive limit: the request limit plus 512 KiB, as etcd sets it.
pub(crate) const MAX_GRPC_RECV_BYTES: usize = MAX_REQUEST_BYTES + 512 * 1024;
/// The hard decode limit of the transport: a memory bound, above the gRPC
/// receive limit so the API can answer with etcd's code.
pub(crate) const MAX_GRPC_DECODE_BYTES: usize = 16 << 20;

pub fn range(r: &RangeRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        return Err(EtcdError::KeyNotProvided);
    }
    if range_request::SortOrder::try_from(r.sort_order).is_err()
        || range_request::SortTarget::try_from(r.sort_target).is_err()
    {
        return Err(EtcdError::InvalidSortOption);
    }
    Ok(())
}

pub fn put(r: &PutRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        return Err(EtcdError::KeyNotProvided);
    }
    if r.ignore_value && !r.value.is_empty() {
        return Err(EtcdError::ValueProvided);
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(EtcdError::LeaseProvided);
    }
    Ok(())
}

pub fn delete_range(r: &DeleteRangeRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        return Err(EtcdError::KeyNotProvided);
    }
    Ok(())
}

pub fn compact(_r: &CompactionRequest) -> Result<(), EtcdError> {
    Ok(())
}

/// Validates a txn, including the duplicate-key rule.
pub fn txn(r: &TxnRequest) -> Result<(), EtcdError> {
    txn_ops(r, MAX_TXN_OPS)?;
    // Checked after the op budget so the interval check can't blow up.
    check_intervals(&r.success)?;
    check_intervals(&r.failure)?;
    Ok(())
}

/// etcd's `checkTxnRequest`: nested txns get the remaining op budget.
fn txn_ops(r: &TxnRequest, max_ops: usize) -> Result<(), EtcdError> {
    let opc = r.compare.len().max(r.success.len()).max(r.failure.len());
    if opc > max_ops {
        return Err(EtcdError::TooManyOps);
    }
    for c in &r.compare {
        if c.key.is_empty() {
            return Err(EtcdError::KeyNotProvided);
        }
    }
    for op in r.success.iter().chain(&r.failure) {
        request_op(op, max_ops - opc)?;
    }
    Ok(())
}

fn request_op(op: &RequestOp, max_ops: usize) -> Result<(), EtcdError> {
    match &op.request {
        Some(request_op::Request::RequestRange(r)) => range(r),
        Some(request_op::Request::RequestPut(r)) => put(r),
        Some(request_op::Request::RequestDeleteRange(r)) => delete_range(r),
        Some(request_op::Request::RequestTxn(r)) => txn_ops(r, max_ops),
        // etcd answers an empty RequestOp with "key not found".
        None => Err(EtcdError::KeyNotFound),
    }
}

/// A deleted interval as etcd's interval tree sees it: `[start, end)`, where a
/// delete without range_end is the point `start`. A range_end of `\0`
/// (from-key) is taken literally, as etcd does, so it covers no key.
struct Interval {
    start: Vec<u8>,
    end: Option<Vec<u8>>,
}

impl Interval {
    fn covers(&self, key: &[u8]) -> bool {
        match &self.end {
            None => key == self.start.as_slice(),
            Some(end) => self.start.as_slice() <= key && key < end.as_slice(),
        }
    }
}

/// etcd's `checkIntervals`: within one branch list, no two puts to one key
/// and no put inside a deleted interval, counting puts and deletes hoisted
/// from nested txns; a nested txn may put one key in both then and else.
/// Returns the puts and deletes of the list.
fn check_intervals(reqs: &[RequestOp]) -> Result<(HashSet<Vec<u8>>, Vec<Interval>), EtcdError> {
    let mut dels: Vec<Interval> = reqs
        .iter()
        .filter_map(|op| match &op.request {
            Some(request_op::Request::RequestDeleteRange(d)) => Some(Interval {
                start: d.key.clone(),
                end: (!d.range_end.is_empty()).then(|| d.range_end.clone()),
            }),
            _ => None,
        })
        .collect();
    let covered = |dels: &[Interval], k: &[u8]| dels.iter().any(|d| d.covers(k));

    let mut puts: HashSet<Vec<u8>> = HashSet::new();
    for op in reqs {
        let Some(request_op::Request::RequestTxn(t)) = &op.request else {
            continue;
        };
        let (puts_then, dels_then) = check_intervals(&t.success)?;
        let (puts_else, dels_else) = check_intervals(&t.failure)?;
        for k in &puts_then {
            if puts.contains(k) || covered(&dels, k) {
                return Err(EtcdError::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        for k in &puts_else {
            if puts.contains(k) && !puts_then.contains(k) {
                return Err(EtcdError::DuplicateKey);
            }
            if covered(&dels, k) {
                return Err(EtcdError::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        dels.extend(dels_then);
        dels.extend(dels_else);
    }
    for op in reqs {
        let Some(request_op::Request::RequestPut(p)) = &op.request else {
            continue;
        };
        if puts.contains(&p.key) || covered(&dels, &p.key) {
            return Err(EtcdError::DuplicateKey);
        }
        puts.insert(p.key.clone());
    }
    Ok((puts, dels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::etcdserverpb::Compare;

    fn put_op(k: &str) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: k.into(),
                value: b"v".to_vec(),
                ..Default::default()
            })),
        }
    }
    fn del_op(k: &str, end: &str) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestDeleteRange(
                DeleteRangeRequest {
                    key: k.into(),
                    range_end: end.into(),
                    ..Default::default()
                },
            )),
        }
    }
    fn txn_op(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestTxn(TxnRequest {
                success,
                failure,
                compare: vec![],
            })),
        }
    }
    fn check(success: Vec<RequestOp>) -> Result<(), EtcdError> {
        txn(&TxnRequest {
            success,
            ..Default::default()
        })
    }

    #[test]
    fn request_size_as_etcd_counts_it() {
        use prost::Message;
        let put = |n: usize| PutRequest {
            key: b"k".to_vec(),
            value: vec![b'x'; n],
            ..Default::default()
        };
        let size = |n| raft_request_size(put(n).encoded_len());
        assert_eq!(size(1_572_840), MAX_REQUEST_BYTES);
        assert_eq!(size(1_572_841), MAX_REQUEST_BYTES + 1);
    }

    #[test]
    fn duplicate_keys() {
        assert_eq!(
            check(vec![put_op("a"), put_op("a")]),
            Err(EtcdError::DuplicateKey)
        );
        assert_eq!(
            check(vec![del_op("a", "c"), put_op("b")]),
            Err(EtcdError::DuplicateKey)
        );
        assert_eq!(
            check(vec![del_op("a", ""), put_op("a")]),
            Err(EtcdError::DuplicateKey)
        );
        assert_eq!(
            check(vec![del_op("a", "\0"), put_op("b")]),
            Ok(()),
            "from-key deletes are literal in etcd"
        );
        assert_eq!(check(vec![del_op("a", "c"), del_op("b", "d")]), Ok(()));
        assert_eq!(
            check(vec![txn_op(vec![put_op("a")], vec![put_op("a")])]),
            Ok(())
        );
        assert_eq!(
            check(vec![txn_op(vec![put_op("a")], vec![]), put_op("a")]),
            Err(EtcdError::DuplicateKey)
        );
        assert_eq!(
            check(vec![txn_op(vec![del_op("a", "")], vec![]), put_op("a")]),
            Err(EtcdError::DuplicateKey)
        );
    }

    #[test]
    fn op_budget() {
        let ops: Vec<RequestOp> = (0..129).map(|i| put_op(&format!("k{i}"))).collect();
        assert_eq!(check(ops[..128].to_vec()), Ok(()));
        assert_eq!(check(ops), Err(EtcdError::TooManyOps));
        let nested = txn_op(vec![put_op("x"), put_op("y")], vec![]);
        let mut ops: Vec<RequestOp> = (0..127).map(|i| put_op(&format!("k{i}"))).collect();
        ops.push(nested);
        assert_eq!(
            check(ops),
            Err(EtcdError::TooManyOps),
            "nested txns get the remaining budget"
        );
        let bad = TxnRequest {
            compare: vec![Compare::default()],
            ..Default::default()
        };
        assert_eq!(txn(&bad), Err(EtcdError::KeyNotProvided));
        assert_eq!(
            check(vec![RequestOp { request: None }]),
            Err(EtcdError::KeyNotFound)
        );
    }
}
