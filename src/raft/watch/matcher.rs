//! Which synced watchers a key concerns (etcd's `watcherGroup`): a map for
//! single-key watchers and, for ranges, one entry per distinct range with
//! every watcher on it, so a thousand watchers on one prefix cost one range
//! check per event, not a thousand.

use std::collections::{HashMap, HashSet};

use super::WatcherId;
use crate::kv::KeyRange;

#[derive(Default)]
pub(super) struct Matcher {
    single: HashMap<Vec<u8>, HashSet<WatcherId>>,
    spans: HashMap<KeyRange, HashSet<WatcherId>>,
}

impl Matcher {
    pub fn insert(&mut self, id: WatcherId, range: &KeyRange) {
        let set = match range {
            KeyRange::Single(key) => self.single.entry(key.clone()).or_default(),
            span => self.spans.entry(span.clone()).or_default(),
        };
        set.insert(id);
    }

    pub fn remove(&mut self, id: WatcherId, range: &KeyRange) {
        match range {
            KeyRange::Single(key) => remove_from(&mut self.single, key, id),
            span => remove_from(&mut self.spans, span, id),
        }
    }

    pub fn contains(&self, id: WatcherId, range: &KeyRange) -> bool {
        let set = match range {
            KeyRange::Single(key) => self.single.get(key),
            span => self.spans.get(span),
        };
        set.is_some_and(|s| s.contains(&id))
    }

    /// Calls `f` with every watcher whose range contains `key`.
    pub fn matching(&self, key: &[u8], mut f: impl FnMut(WatcherId)) {
        if let Some(set) = self.single.get(key) {
            set.iter().for_each(|id| f(*id));
        }
        for (range, set) in &self.spans {
            if range.contains(key) {
                set.iter().for_each(|id| f(*id));
            }
        }
    }

    /// Removes and returns every watcher.
    pub fn drain(&mut self) -> Vec<WatcherId> {
        let mut out: Vec<WatcherId> = self.single.drain().flat_map(|(_, s)| s).collect();
        out.extend(self.spans.drain().flat_map(|(_, s)| s));
        out
    }
}

fn remove_from<K: std::hash::Hash + Eq + ?Sized, Q>(
    map: &mut HashMap<Q, HashSet<WatcherId>>,
    key: &K,
    id: WatcherId,
) where
    Q: std::borrow::Borrow<K> + std::hash::Hash + Eq,
{
    if let Some(set) = map.get_mut(key) {
        set.remove(&id);
        if set.is_empty() {
            map.remove(key);
        }
    }
}
