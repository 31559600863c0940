//! What a table's state machine has applied, as watch events: the one
//! source of live watch events (etcd's `notify` at the end of a write txn).
//!
//! The state machine publishes after each LMDB commit, so a revision is
//! published only once a Range can read it, and never before. The feed
//! keeps the most recent revisions in memory (bounded) for the watch hub to
//! fan out and for lagging watchers to catch up from without reading LMDB;
//! older revisions are read back from LMDB history. A restore (a Raft
//! snapshot installed, state loaded from a file) replaces history: it bumps
//! the generation and empties the buffer, and the hub moves every watcher
//! to catch-up against the new state.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::kv::watch::RevisionEvents;
use crate::kv::RevisionState;

/// At most this much event data stays buffered per table.
const BUFFER_BYTES: usize = 32 << 20;

pub struct EventFeed {
    inner: Mutex<FeedState>,
}

struct FeedState {
    /// The state after the last published commit.
    state: RevisionState,
    generation: u64,
    /// Consecutive revisions ending at `state.current` (possibly empty).
    recent: VecDeque<Arc<RevisionEvents>>,
    bytes: usize,
    /// The watch hub reading this feed.
    reader: Option<Arc<Notify>>,
    /// The hub has watchers: only then are events buffered and the hub
    /// woken on every publish.
    interested: bool,
}

/// What the feed holds after a given revision.
pub enum FeedRead {
    /// The revisions after the one asked for, through `state.current`.
    Revisions(Vec<Arc<RevisionEvents>>),
    /// Those revisions are no longer buffered: read them from LMDB.
    Gap,
}

impl EventFeed {
    pub fn new(state: RevisionState) -> EventFeed {
        EventFeed {
            inner: Mutex::new(FeedState {
                state,
                generation: 0,
                recent: VecDeque::new(),
                bytes: 0,
                reader: None,
                interested: false,
            }),
        }
    }

    /// Publishes committed revisions (in order, consecutive, following the
    /// last published one) and the state after them.
    pub(crate) fn publish(&self, revisions: Vec<RevisionEvents>, state: RevisionState) {
        let mut f = self.inner.lock().unwrap();
        f.state = state;
        let Some(reader) = f.reader.clone().filter(|_| f.interested) else {
            return;
        };
        for rev in revisions {
            if rev.dropped {
                // Not in memory: a reader that needs it (or anything
                // before it) reads history back from LMDB (a gap).
                f.recent.clear();
                f.bytes = 0;
                continue;
            }
            f.bytes += rev.bytes();
            f.recent.push_back(Arc::new(rev));
        }
        while f.bytes > BUFFER_BYTES && f.recent.len() > 1 {
            let old = f.recent.pop_front().expect("non-empty");
            f.bytes -= old.bytes();
        }
        drop(f);
        reader.notify_one();
    }

    /// Records that the state was replaced wholesale (snapshot install).
    pub fn reset(&self, state: RevisionState) {
        let mut f = self.inner.lock().unwrap();
        f.state = state;
        f.generation += 1;
        f.recent.clear();
        f.bytes = 0;
        if let Some(reader) = &f.reader {
            reader.notify_one();
        }
    }

    /// Makes `reader` the one woken on every publish and reset.
    pub(crate) fn attach(&self, reader: Arc<Notify>) {
        self.inner.lock().unwrap().reader = Some(reader);
    }

    /// Stops buffering (the hub moved to another incarnation or closed).
    pub(crate) fn detach(&self) {
        let mut f = self.inner.lock().unwrap();
        f.reader = None;
        f.recent.clear();
        f.bytes = 0;
    }

    /// Buffers events (the hub has watchers) or not. Revisions published
    /// while not interested are never buffered: a reader behind them gets
    /// [`FeedRead::Gap`].
    pub(crate) fn set_interest(&self, interested: bool) {
        let mut f = self.inner.lock().unwrap();
        if f.interested != interested {
            f.interested = interested;
            f.recent.clear();
            f.bytes = 0;
        }
    }

    /// The published state and generation.
    pub fn state(&self) -> (RevisionState, u64) {
        let f = self.inner.lock().unwrap();
        (f.state, f.generation)
    }

    /// The buffered revisions after `after` through `through` (at most),
    /// if all of them are still buffered.
    pub fn read(&self, after: i64, through: i64) -> FeedRead {
        let f = self.inner.lock().unwrap();
        let through = through.min(f.state.current);
        if after >= through {
            return FeedRead::Revisions(Vec::new());
        }
        let Some(first) = f.recent.front().map(|r| r.revision) else {
            return FeedRead::Gap;
        };
        if first > after + 1 {
            return FeedRead::Gap;
        }
        let skip = (after + 1 - first) as usize;
        FeedRead::Revisions(
            f.recent
                .iter()
                .skip(skip)
                .take_while(|r| r.revision <= through)
                .cloned()
                .collect(),
        )
    }
}
