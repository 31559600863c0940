//! etcd's watch semantics, pure (etcd `mvcc/watcher.go`, `v3rpc/watch.go`):
//! what a create request means, which events of a revision a watcher gets,
//! and how history is read back as events.
//!
//! Invariants: events of one revision are never split between responses
//! (etcd's Atomic guarantee); a DELETE event carries only the key and the
//! deletion revision; `prev_kv` is the version at revision - 1 and is absent
//! for a create or when that revision is compacted.

use super::range::KeyRange;
use super::MvccRead;
use crate::error::{Result, WatchError};
use prost::Message;

use crate::pb::etcdserverpb::{
    watch_create_request::FilterType, WatchCreateRequest, WatchResponse,
};
use crate::pb::mvccpb::{event::EventType, Event, KeyValue};

/// The changes of one revision as watch events, in sub-revision order.
#[derive(Clone, Debug, PartialEq)]
pub struct RevisionEvents {
    pub revision: i64,
    pub events: Vec<Event>,
}

impl RevisionEvents {
    /// Approximate memory held, for budgets.
    pub fn bytes(&self) -> usize {
        self.events
            .iter()
            .map(|e| {
                let kv = |kv: &Option<KeyValue>| {
                    kv.as_ref()
                        .map_or(0, |kv| kv.key.len() + kv.value.len() + 48)
                };
                kv(&e.kv) + kv(&e.prev_kv) + 16
            })
            .sum()
    }
}

/// Which events a watcher wants and how.
#[derive(Clone, Debug, PartialEq)]
pub struct Selector {
    pub range: KeyRange,
    pub no_put: bool,
    pub no_delete: bool,
    pub prev_kv: bool,
}

impl Selector {
    /// Normalizes a create request as etcd does: an empty key is `\0`, a
    /// range end of `\0` means every key from `key` on, and `key >=
    /// range_end` is an empty range.
    pub fn from_create(req: &WatchCreateRequest) -> Result<Selector, WatchError> {
        let key: &[u8] = if req.key.is_empty() { &[0] } else { &req.key };
        let range = KeyRange::new(key, &req.range_end);
        if range.is_empty() {
            return Err(WatchError::EmptyRange);
        }
        let has = |f: FilterType| req.filters.contains(&(f as i32));
        Ok(Selector {
            range,
            no_put: has(FilterType::Noput),
            no_delete: has(FilterType::Nodelete),
            prev_kv: req.prev_kv,
        })
    }

    fn wants(&self, e: &Event) -> bool {
        let filtered = if e.r#type == EventType::Delete as i32 {
            self.no_delete
        } else {
            self.no_put
        };
        !filtered && e.kv.as_ref().is_some_and(|kv| self.range.contains(&kv.key))
    }

    /// The event as this watcher gets it, if it wants it: without
    /// `prev_kv` unless asked for, and without it once revision - 1 is
    /// below `compacted` (etcd reads it when sending, and finds it gone).
    pub fn project(&self, e: &Event, compacted: i64) -> Option<Event> {
        let readable = e.kv.as_ref().is_some_and(|kv| kv.mod_revision > compacted);
        self.wants(e).then(|| Event {
            r#type: e.r#type,
            kv: e.kv.clone(),
            prev_kv: if self.prev_kv && readable {
                e.prev_kv.clone()
            } else {
                None
            },
        })
    }

    /// The events of `revs` this watcher gets, as it gets them.
    pub fn select<'a>(
        &self,
        revs: impl IntoIterator<Item = &'a RevisionEvents>,
        compacted: i64,
    ) -> Vec<Event> {
        revs.into_iter()
            .flat_map(|rev| rev.events.iter().filter_map(|e| self.project(e, compacted)))
            .collect()
    }
}

/// etcd's `watchBatchMaxRevs`: a catch-up response covers at most this
/// many revisions.
pub const MAX_REVISIONS_PER_READ: i64 = 1000;

/// Reads the events of revisions `from..=to` back from history (at most
/// [`MAX_REVISIONS_PER_READ`] of them), stopping after the first revision
/// that takes the total past `max_bytes`: at least one revision, never part
/// of one. `prev_kv` is filled only if `with_prev`. Returns the events,
/// the revision the read covers through and the compaction revision it saw
/// (history below it is gone, so a reader behind it must not use the read).
pub fn history(
    r: &dyn MvccRead,
    from: i64,
    to: i64,
    max_bytes: usize,
    with_prev: bool,
) -> Result<(Vec<RevisionEvents>, i64, i64)> {
    let compacted = r.revision_state()?.compacted;
    let to = to.min(from.saturating_add(MAX_REVISIONS_PER_READ - 1));
    let mut changes: Vec<(i64, Vec<u8>, bool)> = Vec::new();
    r.changes(from, to, &mut |rev, key, deleted| {
        changes.push((rev, key.to_vec(), deleted));
        true
    })?;
    let mut out: Vec<RevisionEvents> = Vec::new();
    let mut total = 0usize;
    let mut through = to;
    for (rev, key, deleted) in changes {
        if total > max_bytes && out.last().is_some_and(|l| l.revision != rev) {
            through = rev - 1;
            break;
        }
        let mut event = if deleted {
            Event {
                r#type: EventType::Delete as i32,
                kv: Some(KeyValue {
                    key: key.clone(),
                    mod_revision: rev,
                    ..Default::default()
                }),
                prev_kv: None,
            }
        } else {
            let kv = r.get(&key, rev)?.ok_or_else(|| {
                crate::error::Error::Corrupt(format!("history: no version of {key:?} at {rev}"))
            })?;
            Event {
                r#type: EventType::Put as i32,
                kv: Some(kv),
                prev_kv: None,
            }
        };
        let is_create = !deleted
            && event
                .kv
                .as_ref()
                .is_some_and(|kv| kv.create_revision == rev);
        // etcd reads prev_kv at revision - 1, which is gone once compacted.
        if with_prev && !is_create && rev > compacted {
            event.prev_kv = r.get(&key, rev - 1)?;
        }
        total += key.len() + event.kv.as_ref().map_or(0, |kv| kv.value.len()) + 64;
        match out.last_mut() {
            Some(last) if last.revision == rev => last.events.push(event),
            _ => out.push(RevisionEvents {
                revision: rev,
                events: vec![event],
            }),
        }
    }
    Ok((out, through, compacted))
}

/// etcd's `sendFragments` (`v3rpc/watch.go`): a response of at least
/// `max_bytes` with two or more events, for a watcher that asked for
/// fragments, goes out in pieces of at least one event each, every piece
/// but the last marked `fragment`. Anything else goes out whole, unmarked.
pub fn fragments(mut resp: WatchResponse, max_bytes: usize) -> Vec<WatchResponse> {
    resp.fragment = false;
    if resp.events.len() < 2 || resp.encoded_len() < max_bytes {
        return vec![resp];
    }
    let events = std::mem::take(&mut resp.events);
    let base = WatchResponse {
        fragment: true,
        ..resp
    };
    let base_len = base.encoded_len();
    let mut out = Vec::new();
    let mut piece = base.clone();
    let mut len = base_len;
    for e in events {
        let add = prost::encoding::message::encoded_len(EVENTS_FIELD, &e);
        if !piece.events.is_empty() && len + add >= max_bytes {
            out.push(std::mem::replace(&mut piece, base.clone()));
            len = base_len;
        }
        len += add;
        piece.events.push(e);
    }
    piece.fragment = false;
    out.push(piece);
    out
}

/// The field number of `WatchResponse.events`.
const EVENTS_FIELD: u32 = 11;

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, size: usize) -> Event {
        Event {
            kv: Some(KeyValue {
                key: key.into(),
                value: vec![b'x'; size],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn fragments_split_only_big_multi_event_responses() {
        let resp = |events| WatchResponse {
            watch_id: 3,
            events,
            fragment: true,
            ..Default::default()
        };
        let one = fragments(resp(vec![put("a", 100)]), 10);
        assert_eq!((one.len(), one[0].fragment), (1, false));
        let small = fragments(resp(vec![put("a", 1), put("b", 1)]), 1000);
        assert_eq!(small.len(), 1);
        let pieces = fragments(resp(vec![put("a", 600), put("b", 600), put("c", 10)]), 1000);
        let shape: Vec<(usize, bool)> = pieces
            .iter()
            .map(|p| (p.events.len(), p.fragment))
            .collect();
        assert_eq!(shape, vec![(1, true), (2, false)]);
        assert!(pieces.iter().all(|p| p.watch_id == 3));
    }
}
