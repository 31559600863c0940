//! Key ranges and the Range request (etcd `txn/range.go`).
//!
//! A `(key, range_end)` pair means: empty range_end = the single key;
//! range_end `\0` = every key >= key; otherwise `[key, range_end)`. A key
//! of `\0` with range_end `\0` is "all keys".

use super::{MvccRead, RevisionState};
use crate::error::{EtcdError, Result};
use crate::pb::etcdserverpb::{range_request, RangeRequest, RangeResponse, ResponseHeader};
use crate::pb::mvccpb::KeyValue;

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
pub fn check_revision(requested: i64, state: RevisionState) -> Result<i64, EtcdError> {
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

/// Executes a validated Range at `view_rev`, the revision a plain read sees
/// (the store revision, or the txn's own revision inside a txn).
pub fn range(
    store: &dyn MvccRead,
    req: &RangeRequest,
    view_rev: i64,
    compacted: i64,
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
    let filtered = req.min_mod_revision != 0
        || req.max_mod_revision != 0
        || req.min_create_revision != 0
        || req.max_create_revision != 0;
    let sorted = sort_order != range_request::SortOrder::None
        || sort_target != range_request::SortTarget::Key;
    // Without sort or filters only limit+1 kvs are needed to decide `more`;
    // `count` always covers the whole range.
    let keep = if req.count_only {
        0
    } else if req.limit > 0 && !sorted && !filtered {
        req.limit as usize + 1
    } else {
        usize::MAX
    };

    let mut count = 0i64;
    let mut kvs: Vec<KeyValue> = Vec::new();
    if !keys.is_empty() {
        store.scan(&keys, rev, &mut |mut kv| {
            count += 1;
            if kvs.len() < keep {
                if req.keys_only {
                    kv.value.clear();
                }
                kvs.push(kv);
            }
            true
        })?;
    }

    if filtered {
        kvs.retain(|kv| {
            (req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision)
                && (req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision)
                && (req.min_create_revision == 0 || kv.create_revision >= req.min_create_revision)
                && (req.max_create_revision == 0 || kv.create_revision <= req.max_create_revision)
        });
    }
    if sorted {
        sort(&mut kvs, sort_order, sort_target);
    }
    let mut more = false;
    if req.limit > 0 && kvs.len() > req.limit as usize {
        kvs.truncate(req.limit as usize);
        more = true;
    }
    Ok(RangeResponse {
        header: Some(ResponseHeader {
            revision: view_rev,
            ..Default::default()
        }),
        kvs,
        more,
        count,
    })
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
