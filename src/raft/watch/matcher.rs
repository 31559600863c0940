//! Which synced watchers a key concerns (etcd's `watcherGroup`): a map for
//! single-key watchers and a list for ranges.

use std::collections::{HashMap, HashSet};

use super::WatcherId;
use crate::kv::KeyRange;

#[derive(Default)]
pub(super) struct Matcher {
    single: HashMap<Vec<u8>, HashSet<WatcherId>>,
    spans: HashMap<WatcherId, KeyRange>,
}

impl Matcher {
    pub fn insert(&mut self, id: WatcherId, range: &KeyRange) {
        match range {
            KeyRange::Single(key) => {
                self.single.entry(key.clone()).or_default().insert(id);
            }
            span => {
                self.spans.insert(id, span.clone());
            }
        }
    }

    pub fn remove(&mut self, id: WatcherId, range: &KeyRange) {
        match range {
            KeyRange::Single(key) => {
                if let Some(set) = self.single.get_mut(key) {
                    set.remove(&id);
                    if set.is_empty() {
                        self.single.remove(key);
                    }
                }
            }
            _ => {
                self.spans.remove(&id);
            }
        }
    }

    pub fn contains(&self, id: WatcherId, range: &KeyRange) -> bool {
        match range {
            KeyRange::Single(key) => self.single.get(key).is_some_and(|s| s.contains(&id)),
            _ => self.spans.contains_key(&id),
        }
    }

    /// Calls `f` with every watcher whose range contains `key`.
    pub fn matching(&self, key: &[u8], mut f: impl FnMut(WatcherId)) {
        if let Some(set) = self.single.get(key) {
            set.iter().for_each(|id| f(*id));
        }
        for (id, range) in &self.spans {
            if range.contains(key) {
                f(*id);
            }
        }
    }

    /// Removes and returns every watcher.
    pub fn drain(&mut self) -> Vec<WatcherId> {
        let mut out: Vec<WatcherId> = self.single.drain().flat_map(|(_, s)| s).collect();
        out.extend(self.spans.drain().map(|(id, _)| id));
        out
    }
}
