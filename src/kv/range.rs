//! Key ranges and the Range request (etcd `txn/range.go`).
//!
//! A `(key, range_end)` pair means: empty range_end = the single key;
//! range_end `\0` = every key >= key; otherwise `[key, range_end)`. A key
//! of `\0` with range_end `\0` is "all keys".

use super::{MvccRead, RevisionState};
use crate::error::{EtcdError, Result};
use crate::pb::etcdserverpb::{range_request, RangeRequest, RangeResponse, ResponseHeader};
use crate::pb::mvccpb::KeyValue;
use prost::encoding::encoded_len_varint;
use prost::Message;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KeyRange {
    Single(Vec<u8>),
    /// `[start, end)`; `end == None` means unbounded.
    Span {
        start: Vec<u8>,
        end: Option<Vec<u8>>,
    },
}

impl KeyRange {
    pub fn new(key: &[u8], range_end: &[u8]) -> KeyRange {
        match range_end {
            [] => KeyRange::Single(key.to_vec()),
            [0] => KeyRange::Span {
                start: key.to_vec(),
                end: None,
            },
            end => KeyRange::Span {
                start: key.to_vec(),
                end: Some(end.to_vec()),
            },
        }
    }

    pub fn start(&self) -> &[u8] {
        match self {
            KeyRange::Single(k) => k,
            KeyRange::Span { start, .. } => start,
        }
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        match self {
            KeyRange::Single(k) => k == key,
            KeyRange::Span { start, end } => {
                key >= start.as_slice() && end.as_ref().is_none_or(|e| key < e.as_slice())
            }
        }
    }

    /// True if no key can be in the range (`key >= range_end`).
    pub fn is_empty(&self) -> bool {
        match self {
            KeyRange::Single(_) => false,
            KeyRange::Span { start, end } => end.as_ref().is_some_and(|e| start >= e),
        }
    }
}

/// The range end that selects every key with `prefix`: the prefix with its
/// last non-0xff byte incremented, or `\0` (all keys from prefix) when the
/// prefix is all 0xff.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Checks a read revision against the store's counters; returns the revision
/// to read at (`<= 0` means current).
pub(crate) fn check_revision(requested: i64, state: RevisionState) -> Result<i64, EtcdError> {
    if requested > state.current {
        return Err(EtcdError::FutureRev);
    }
    let rev = if requested <= 0 {
        state.current
    } else {
        requested
    };
    if rev < state.compacted {
        return Err(EtcdError::Compacted);
    }
    Ok(rev)
}

/// What a response may still grow by before gRPC would refuse to send it
/// (grpc-go's `MaxSendMsgSize`; etcd sets it to `math.MaxInt32`).
///
/// Keys and values are charged as they are collected, so a request whose
/// response would be too large stops keeping them at the limit instead of
/// building the response: memory stays bounded by the limit. It still
/// counts what the response would have held, so the error reports the
/// response's size as grpc-go does.
#[derive(Clone, Copy, Debug)]
pub struct SendBudget {
    limit: u64,
    used: u64,
}

impl SendBudget {
    pub fn new(limit: u64) -> SendBudget {
        SendBudget { limit, used: 0 }
    }

    /// Charges `kv` as one element of a repeated message field; false once
    /// the response is over the limit (then nothing more need be kept).
    pub(crate) fn charge(&mut self, kv: &KeyValue) -> bool {
        let len = kv.encoded_len();
        self.used += (1 + encoded_len_varint(len as u64) + len) as u64;
        !self.exceeded()
    }

    pub fn exceeded(&self) -> bool {
        self.used > self.limit
    }

    /// etcd's answer for a response of `built` encoded bytes as built
    /// (without the kvs dropped once over the limit, which are added back
    /// for the size in the error). Exact for one Range; for a Txn whose
    /// budget ran out, the size may count some kvs twice.
    ///
    /// The API fills the header's cluster, member and term ids (at most 33
    /// bytes) after this check; tonic's encoder, given the same limit,
    /// refuses what those bytes push over it.
    pub fn check(&self, built: usize) -> Result<(), EtcdError> {
        let built = built as u64;
        let size = if self.exceeded() {
            self.used + built
        } else {
            built
        };
        if size <= self.limit {
            return Ok(());
        }
        Err(EtcdError::ResponseTooLarge {
            size,
            limit: self.limit,
        })
    }
}

/// Executes a validated Range at `view_rev`, the revision a plain read sees
/// (the store revision, or the txn's own revision inside a txn), as a
/// response of its own: one over `budget`'s limit is etcd's error.
pub fn range(
    store: &dyn MvccRead,
    req: &RangeRequest,
    view_rev: i64,
    compacted: i64,
    budget: &mut SendBudget,
) -> Result<RangeResponse> {
    let resp = range_within(store, req, view_rev, compacted, budget)?;
    budget.check(resp.encoded_len())?;
    Ok(resp)
}

/// [`range`] as part of a bigger response (a txn's): over the budget it
/// returns a response without kvs and leaves the budget exceeded, which the
/// caller turns into etcd's error for the whole response.
///
/// Only what the response will hold is kept: with a limit and no sort or
/// filter, the first `limit + 1` keys (one more tells `more`); sorted with
/// a limit, the best `limit` seen so far (sorted and cut whenever twice
/// that many are held); `count` always covers the whole range.
pub(crate) fn range_within(
    store: &dyn MvccRead,
    req: &RangeRequest,
    view_rev: i64,
    compacted: i64,
    budget: &mut SendBudget,
) -> Result<RangeResponse> {
    let state = RevisionState {
        current: view_rev,
        compacted,
    };
    let rev = check_revision(req.revision, state)?;
    let keys = KeyRange::new(&req.key, &req.range_end);

    let sort_order = range_request::SortOrder::try_from(req.sort_order)
        .map_err(|_| EtcdError::InvalidSortOption)?;
    let sort_target = range_request::SortTarget::try_from(req.sort_target)
        .map_err(|_| EtcdError::InvalidSortOption)?;
    let sorted = sort_order != range_request::SortOrder::None
        || sort_target != range_request::SortTarget::Key;
    let limit = usize::try_from(req.limit).unwrap_or(0);

    let mut count = 0i64;
    let mut matched = 0usize;
    let mut kvs: Vec<KeyValue> = Vec::new();
    // Sorted with a limit: the kvs charged to the budget are the `limit`
    // best at the last cut; the ones held past them are charged at the end.
    let mut top = TopK::new(limit, sort_order, sort_target);
    if !keys.is_empty() {
        store.scan(&keys, rev, &mut |mut kv| {
            count += 1;
            if req.count_only || !passes_filters(req, &kv) {
                return true;
            }
            matched += 1;
            if req.keys_only {
                kv.value.clear();
            }
            if sorted && limit > 0 {
                top.offer(kv, &mut kvs, budget);
            } else if limit == 0 || matched <= limit {
                // Charged even once over the limit, so the error has the size.
                if budget.charge(&kv) {
                    kvs.push(kv);
                } else {
                    kvs = Vec::new();
                }
            }
            true
        })?;
    }
    if sorted {
        sort(&mut kvs, sort_order, sort_target);
        if limit > 0 && !budget.exceeded() {
            kvs.truncate(limit);
            for kv in &kvs {
                budget.charge(kv);
            }
        }
    }
    if budget.exceeded() {
        kvs = Vec::new();
    }
    Ok(RangeResponse {
        header: Some(ResponseHeader {
            revision: view_rev,
            ..Default::default()
        }),
        kvs,
        more: limit > 0 && matched > limit,
        count,
    })
}

/// The `limit` best kvs of a sorted range seen so far, kept in a vector
/// that is sorted and cut whenever it holds twice that many, or more than
/// twice the budget's bytes. The sort is stable and later kvs come after
/// the survivors, so ties keep scan order exactly as one sort of everything
/// would. If the survivors of a cut alone are over the budget, the response
/// is taken to be over it (the final `limit` could be smaller, but only
/// when more than the send limit's bytes are in play).
struct TopK {
    limit: usize,
    order: range_request::SortOrder,
    target: range_request::SortTarget,
    held_bytes: u64,
}

impl TopK {
    fn new(
        limit: usize,
        order: range_request::SortOrder,
        target: range_request::SortTarget,
    ) -> TopK {
        TopK {
            limit,
            order,
            target,
            held_bytes: 0,
        }
    }

    fn offer(&mut self, kv: KeyValue, kvs: &mut Vec<KeyValue>, budget: &mut SendBudget) {
        if budget.exceeded() {
            return;
        }
        self.held_bytes += kv.encoded_len() as u64;
        kvs.push(kv);
        let room = budget.limit.saturating_sub(budget.used);
        if kvs.len() >= self.limit.saturating_mul(2) || self.held_bytes > room.saturating_mul(2) {
            sort(kvs, self.order, self.target);
            kvs.truncate(self.limit);
            self.held_bytes = kvs.iter().map(|kv| kv.encoded_len() as u64).sum();
            if self.held_bytes > room {
                for kv in kvs.drain(..) {
                    budget.charge(&kv);
                }
            }
        }
    }
}

fn passes_filters(req: &RangeRequest, kv: &KeyValue) -> bool {
    (req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision)
        && (req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision)
        && (req.min_create_revision == 0 || kv.create_revision >= req.min_create_revision)
        && (req.max_create_revision == 0 || kv.create_revision <= req.max_create_revision)
}

fn sort(kvs: &mut [KeyValue], order: range_request::SortOrder, target: range_request::SortTarget) {
    use range_request::{SortOrder, SortTarget};
    // etcd: NONE with a target other than KEY means ASCEND; ASCEND by KEY is
    // the natural order already.
    let order = if order == SortOrder::None {
        SortOrder::Ascend
    } else {
        order
    };
    if order == SortOrder::Ascend && target == SortTarget::Key {
        return;
    }
    let cmp = |a: &KeyValue, b: &KeyValue| match target {
        SortTarget::Key => a.key.cmp(&b.key),
        SortTarget::Version => a.version.cmp(&b.version),
        SortTarget::Create => a.create_revision.cmp(&b.create_revision),
        SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
        SortTarget::Value => a.value.cmp(&b.value),
    };
    match order {
        SortOrder::Descend => kvs.sort_by(|a, b| cmp(b, a)),
        _ => kvs.sort_by(cmp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_end_rules() {
        assert_eq!(KeyRange::new(b"a", b""), KeyRange::Single(b"a".to_vec()));
        assert!(KeyRange::new(b"a", b"\0").contains(b"zzz"));
        assert!(!KeyRange::new(b"b", b"\0").contains(b"a"));
        let r = KeyRange::new(b"a", b"c");
        assert!(r.contains(b"a") && r.contains(b"bzz") && !r.contains(b"c"));
        assert!(KeyRange::new(b"c", b"a").is_empty());
        assert!(KeyRange::new(b"\0", b"\0").contains(b"\0"));
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"abc"), b"abd");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
        assert_eq!(prefix_end(b""), b"\0");
    }

    #[test]
    fn revision_checks() {
        let s = RevisionState {
            current: 10,
            compacted: 5,
        };
        assert_eq!(check_revision(0, s), Ok(10));
        assert_eq!(check_revision(5, s), Ok(5));
        assert_eq!(check_revision(4, s), Err(EtcdError::Compacted));
        assert_eq!(check_revision(11, s), Err(EtcdError::FutureRev));
    }
}
