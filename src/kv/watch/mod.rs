//! etcd's watch semantics, pure (etcd `mvcc/watcher.go`, `v3rpc/watch.go`):
//! what a create request means, which events of a revision a watcher gets,
//! and how history is read back as events.
//!
//! Invariants: events of one revision are never split between responses
//! (etcd's Atomic guarantee); a DELETE event carries only the key and the
//! deletion revision; `prev_kv` is the version at revision - 1 and is absent
//! for a create or when that revision is compacted.

pub mod wire;

use std::sync::Arc;

use super::range::KeyRange;
use super::MvccRead;
use crate::error::{Result, WatchError};
use crate::pb::etcdserverpb::{watch_create_request::FilterType, WatchCreateRequest};
use crate::pb::mvccpb::{event::EventType, Event, KeyValue};
pub(crate) use wire::{fragments, SharedEvent, WatchOut};

/// The changes of one revision as watch events, in sub-revision order.
#[derive(Clone, Debug, PartialEq)]
pub struct RevisionEvents {
    pub revision: i64,
    pub events: Vec<SharedEvent>,
    /// The revision's events were too many to hold (see
    /// `apply::MAX_HELD_EVENT_BYTES`): `events` is empty and a watcher
    /// reads the revision back from the store.
    pub dropped: bool,
}

impl RevisionEvents {
    pub fn new(revision: i64, events: Vec<Event>) -> RevisionEvents {
        RevisionEvents {
            revision,
            events: events.into_iter().map(SharedEvent::new).collect(),
            dropped: false,
        }
    }

    /// A revision whose events were not kept.
    pub fn dropped(revision: i64) -> RevisionEvents {
        RevisionEvents {
            revision,
            events: Vec::new(),
            dropped: true,
        }
    }

    /// Approximate memory held, for budgets (encodings made later add
    /// about as much again).
    pub fn bytes(&self) -> usize {
        self.events
            .iter()
            .map(|e| {
                let kv = |kv: &Option<KeyValue>| {
                    kv.as_ref()
                        .map_or(0, |kv| kv.key.len() + kv.value.len() + 48)
                };
                kv(&e.event.kv) + kv(&e.event.prev_kv) + 16
            })
            .sum()
    }
}

/// Which events a watcher wants and how.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Selector {
    pub range: KeyRange,
    pub no_put: bool,
    pub no_delete: bool,
    pub prev_kv: bool,
}

impl Selector {
    /// Normalizes a create request as etcd does: an empty key is `\0`, a
    /// range end of `\0` means every key from `key` on, and `key >=
    /// range_end` is an empty range.
    pub(crate) fn from_create(req: &WatchCreateRequest) -> Result<Selector, WatchError> {
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

    /// Whether the watcher gets this event (range and filters).
    pub(crate) fn wants(&self, e: &Event) -> bool {
        let filtered = if e.r#type == EventType::Delete as i32 {
            self.no_delete
        } else {
            self.no_put
        };
        !filtered && e.kv.as_ref().is_some_and(|kv| self.range.contains(&kv.key))
    }

    /// The event as this watcher gets it, encoded, if it wants it: without
    /// `prev_kv` unless asked for, and without it once revision - 1 is
    /// below `compacted` (etcd reads it when sending, and finds it gone).
    pub fn pick(&self, e: &SharedEvent, compacted: i64) -> Option<Arc<[u8]>> {
        let readable = (e.event.kv.as_ref()).is_some_and(|kv| kv.mod_revision > compacted);
        self.wants(&e.event)
            .then(|| e.encoded(self.prev_kv && readable))
    }

    /// The events of `revs` this watcher gets, as it gets them.
    pub fn select<'a>(
        &self,
        revs: impl IntoIterator<Item = &'a RevisionEvents>,
        compacted: i64,
    ) -> Vec<Arc<[u8]>> {
        revs.into_iter()
            .flat_map(|rev| rev.events.iter().filter_map(|e| self.pick(e, compacted)))
            .collect()
    }
}

/// etcd's `watchBatchMaxRevs`: a catch-up response covers at most this
/// many revisions.
pub(crate) const MAX_REVISIONS_PER_READ: i64 = 1000;

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
            Some(last) if last.revision == rev => last.events.push(SharedEvent::new(event)),
            _ => out.push(RevisionEvents::new(rev, vec![event])),
        }
    }
    Ok((out, through, compacted))
}
