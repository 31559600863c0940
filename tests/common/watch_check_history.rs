//! The ground truth for the watch checker: every change of the keyspace,
//! revision by revision, each with the key's state before it, built from
//! snapshots of the keyspace at consecutive revisions or (unit tests) from a
//! list of changes.

use super::*;

/// A change for [`History::from_changes`].
#[derive(Clone, Debug)]
pub enum Change {
    Put(String, String),
    Delete(String),
}

pub fn put(key: &str, value: &str) -> Change {
    Change::Put(key.into(), value.into())
}

pub fn del(key: &str) -> Change {
    Change::Delete(key.into())
}

/// The ground truth: every change, ordered by (revision, key), each carrying
/// the key's state at revision - 1 as its `prev_kv`.
#[derive(Clone, Debug, Default)]
pub struct History {
    events: Vec<Event>,
    index: HashMap<(i64, String), usize>,
    /// The revision the history starts from (its state there is empty).
    pub first_revision: i64,
    pub last_revision: i64,
}

impl History {
    fn new(mut events: Vec<Event>, first_revision: i64, last_revision: i64) -> History {
        events.sort_by(|a, b| (a.revision(), a.key()).cmp(&(b.revision(), b.key())));
        let index = events
            .iter()
            .enumerate()
            .map(|(i, e)| ((e.revision(), e.kv.key.clone()), i))
            .collect();
        History {
            events,
            index,
            first_revision,
            last_revision,
        }
    }

    /// From an empty keyspace at revision 1, each `(revision, changes)`
    /// applied in turn (revisions increasing; lease 0). For unit tests.
    pub fn from_changes(changes: &[(i64, Vec<Change>)]) -> History {
        let mut state: BTreeMap<String, Kv> = BTreeMap::new();
        let mut events = Vec::new();
        let mut last = 1;
        for (rev, group) in changes {
            assert!(*rev > last, "revisions must increase");
            last = *rev;
            for change in group {
                match change {
                    Change::Put(key, value) => {
                        let prev = state.get(key).cloned();
                        let kv = Kv {
                            key: key.clone(),
                            value: value.clone(),
                            create_revision: prev.as_ref().map_or(*rev, |p| p.create_revision),
                            mod_revision: *rev,
                            version: prev.as_ref().map_or(1, |p| p.version + 1),
                            lease: 0,
                        };
                        state.insert(key.clone(), kv.clone());
                        events.push(Event {
                            kind: Kind::Put,
                            kv,
                            prev_kv: prev,
                        });
                    }
                    Change::Delete(key) => {
                        let prev = state.remove(key).expect("delete of an absent key");
                        events.push(Event {
                            kind: Kind::Delete,
                            kv: Kv {
                                key: key.clone(),
                                mod_revision: *rev,
                                ..Kv::default()
                            },
                            prev_kv: Some(prev),
                        });
                    }
                }
            }
        }
        History::new(events, 1, last)
    }

    /// From the whole keyspace at every revision from the first snapshot's
    /// to the last (consecutive), e.g. a Range of every key at each revision.
    /// The first snapshot is the starting state: its keys are taken as they
    /// are. Every later revision must change something, and every change
    /// must be consistent: a key whose kv differs from the previous revision
    /// has mod_revision = this revision, version + 1 (or 1 and
    /// create_revision = this revision when created); a key that is gone was
    /// deleted at this revision; nothing else differs.
    pub fn from_snapshots(snapshots: &[(i64, Vec<Kv>)]) -> Result<History, String> {
        let Some((first, initial)) = snapshots.first() else {
            return Err("no snapshots".into());
        };
        let to_map = |rev: i64, kvs: &[Kv]| -> Result<BTreeMap<String, Kv>, String> {
            let mut map = BTreeMap::new();
            for kv in kvs {
                if kv.mod_revision > rev || kv.create_revision > kv.mod_revision {
                    return Err(format!("revision {rev}: impossible kv {kv:?}"));
                }
                if map.insert(kv.key.clone(), kv.clone()).is_some() {
                    return Err(format!("revision {rev}: key {:?} twice", kv.key));
                }
            }
            Ok(map)
        };
        let mut state = to_map(*first, initial)?;
        let mut events = Vec::new();
        let mut last = *first;
        for (rev, kvs) in &snapshots[1..] {
            if *rev != last + 1 {
                return Err(format!("snapshot of revision {rev} follows {last}"));
            }
            last = *rev;
            let next = to_map(*rev, kvs)?;
            let keys: BTreeSet<&String> = state.keys().chain(next.keys()).collect();
            let mut changed = 0;
            for key in keys {
                match (state.get(key), next.get(key)) {
                    (Some(a), Some(b)) if a == b => {}
                    (prev, Some(kv)) => {
                        let consistent = kv.mod_revision == *rev
                            && match prev {
                                Some(p) => {
                                    kv.version == p.version + 1
                                        && kv.create_revision == p.create_revision
                                }
                                None => kv.version == 1 && kv.create_revision == *rev,
                            };
                        if !consistent {
                            return Err(format!(
                                "revision {rev}: key {key:?} went from {prev:?} to {kv:?}"
                            ));
                        }
                        changed += 1;
                        events.push(Event {
                            kind: Kind::Put,
                            kv: kv.clone(),
                            prev_kv: prev.cloned(),
                        });
                    }
                    (Some(prev), None) => {
                        changed += 1;
                        events.push(Event {
                            kind: Kind::Delete,
                            kv: Kv {
                                key: key.clone(),
                                mod_revision: *rev,
                                ..Kv::default()
                            },
                            prev_kv: Some(prev.clone()),
                        });
                    }
                    (None, None) => unreachable!(),
                }
            }
            if changed == 0 {
                return Err(format!("revision {rev} changed nothing"));
            }
            state = next;
        }
        Ok(History::new(events, *first, last))
    }

    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// The change of `key` at `revision`, with `prev_kv` = state before it.
    pub fn event(&self, revision: i64, key: &str) -> Option<&Event> {
        self.index
            .get(&(revision, key.to_string()))
            .map(|&i| &self.events[i])
    }

    /// The changes made at `revision`, in key order.
    pub fn at(&self, revision: i64) -> &[Event] {
        let lo = self.events.partition_point(|e| e.revision() < revision);
        let hi = self.events.partition_point(|e| e.revision() <= revision);
        &self.events[lo..hi]
    }
}
