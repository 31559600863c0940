//! The watchers of one table (etcd's `watchableStore`): registration, live
//! fan-out of what the state machine published, and catch-up of watchers
//! that are behind, from the feed's buffer or from LMDB history.
//!
//! Invariants, all under the one state lock:
//! - `fanned` is the revision through which every synced watcher has been
//!   handed every event it wants. A watcher is *synced* iff its `next_rev >
//!   fanned`; otherwise it is *unsynced* and only the catch-up pass serves
//!   it. Registration decides with the same lock, so a new watcher gets
//!   each revision exactly once: from history or live, never both, never
//!   neither (etcd's notify-before-`currentRev++`).
//! - `next_rev`, the first revision the watcher has not been given, never
//!   goes back, across restores too (etcd #15271).
//! - Nothing waits on a client: a watcher whose stream queue is full falls
//!   behind into the unsynced set and is served from history once there is
//!   room again. Events are never dropped; a watcher whose history was
//!   compacted away gets etcd's compaction cancel, delivered before anything
//!   else and never skipped (etcd #17529).
//! - Progress notifications go through the same queue as events and report
//!   `fanned`, only for watchers that are synced and past their start.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tokio::sync::Notify;

use super::feed::FeedRead;
use super::matcher::Matcher;
use super::queue::StreamQueue;
use super::WatcherId;
use crate::error::WatchError;
use crate::kv::watch::{self, RevisionEvents, Selector, WatchOut};
use crate::pb::etcdserverpb::{ResponseHeader, WatchCreateRequest, WatchResponse};
use crate::raft::state_machine::Shared;

/// A catch-up pass reads about this much history at most (at least one
/// revision), so a catch-up response stays within what gRPC clients accept
/// by default (4 MiB).
const CATCH_UP_BYTES: usize = 2 << 20;

/// Watch counters of one table, for metrics.
#[derive(Default)]
pub(crate) struct WatchCounts {
    pub streams: usize,
    pub watchers: usize,
    pub unsynced: usize,
    pub events_sent: u64,
    pub slow_watchers: u64,
}

pub(crate) struct WatchHub {
    pub table: String,
    state: Mutex<HubState>,
    wake: Arc<Notify>,
    events_sent: AtomicU64,
    slow_watchers: AtomicU64,
}

#[derive(Default)]
struct HubState {
    /// The state machine this hub serves from, and its feed generation.
    source: Option<Arc<Shared>>,
    generation: u64,
    fanned: i64,
    compacted: i64,
    watchers: HashMap<WatcherId, Watcher>,
    synced: Matcher,
    unsynced: BTreeSet<WatcherId>,
    streams: HashMap<u64, StreamWatchers>,
    next_stream: u64,
    next_serial: u64,
    closed: bool,
}

struct StreamWatchers {
    queue: Arc<StreamQueue>,
    /// etcd's `nextID`: auto ids start at 0 and skip ids in use.
    next_auto: i64,
    ids: BTreeSet<i64>,
    /// A progress request waiting for the fan-out to reach this revision.
    progress_at: Option<i64>,
}

struct Watcher {
    /// Unique in the hub: tells a watcher from a later one that reuses its
    /// id while a catch-up read is in flight.
    serial: u64,
    selector: Selector,
    next_rev: i64,
    progress_notify: bool,
    /// The client accepts a big response in fragments.
    fragment: bool,
    /// Got a response with events since the last progress tick.
    sent_since_tick: bool,
}

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}

/// A progress notification: no events, the revision in the header.
fn progress(watch_id: i64, revision: i64) -> WatchResponse {
    WatchResponse {
        header: header(revision),
        watch_id,
        ..Default::default()
    }
}

/// One Watch stream's handle on the hub; dropping it cancels its watchers.
pub struct WatchStream {
    pub id: u64,
    pub queue: Arc<StreamQueue>,
    hub: Arc<WatchHub>,
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        self.hub.close_stream(self.id);
    }
}

impl WatchHub {
    /// A hub for `table` with no source yet; its task runs until the hub
    /// is dropped or closed.
    pub fn new(table: &str) -> Arc<WatchHub> {
        let hub = Arc::new(WatchHub {
            table: table.to_string(),
            state: Mutex::new(HubState::default()),
            wake: Arc::new(Notify::new()),
            events_sent: AtomicU64::new(0),
            slow_watchers: AtomicU64::new(0),
        });
        tokio::spawn(run(Arc::downgrade(&hub), hub.wake.clone()));
        hub
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        self.state.lock().unwrap()
    }

    /// Serves from `sm` (a table incarnation) from now on. Watchers move to
    /// catch-up against it and resume exactly where they were, unless
    /// `lineage_changed` (its history is not a continuation of the previous
    /// source's): then every watcher is canceled with the compaction signal,
    /// so clients re-list as they do after a compaction, instead of getting
    /// events that never happened.
    pub(crate) fn attach(&self, sm: Arc<Shared>, lineage_changed: bool) {
        let mut st = self.lock();
        if st.source.as_ref().is_some_and(|s| Arc::ptr_eq(s, &sm)) {
            return;
        }
        if let Some(old) = st.source.take() {
            old.feed.detach();
        }
        sm.feed.attach(self.wake.clone());
        let (state, generation) = sm.feed.state();
        if lineage_changed {
            st.cancel_all(|id| WatchResponse {
                watch_id: id,
                canceled: true,
                compact_revision: state.current,
                ..Default::default()
            });
        } else {
            st.all_behind();
        }
        st.source = Some(sm);
        st.generation = generation;
        st.fanned = state.current;
        st.compacted = state.compacted;
        st.interest_changed();
        drop(st);
        self.wake.notify_one();
    }

    /// The table was deleted: every watcher is canceled with a reason.
    pub fn close(&self) {
        let mut st = self.lock();
        st.closed = true;
        st.cancel_all(|id| WatchResponse {
            watch_id: id,
            canceled: true,
            cancel_reason: WatchError::TableDeleted.message().to_string(),
            ..Default::default()
        });
        if let Some(old) = st.source.take() {
            old.feed.detach();
        }
        drop(st);
        self.wake.notify_one();
    }

    pub fn open_stream(self: &Arc<Self>) -> WatchStream {
        let queue = Arc::new(StreamQueue::new(self.wake.clone()));
        let mut st = self.lock();
        let id = st.next_stream;
        st.next_stream += 1;
        st.streams.insert(
            id,
            StreamWatchers {
                queue: queue.clone(),
                next_auto: 0,
                ids: BTreeSet::new(),
                progress_at: None,
            },
        );
        WatchStream {
            id,
            queue,
            hub: self.clone(),
        }
    }

    fn close_stream(&self, stream: u64) {
        let mut st = self.lock();
        if let Some(sw) = st.streams.remove(&stream) {
            for id in sw.ids {
                st.remove_watcher((stream, id));
            }
            sw.queue.close();
        }
    }

    /// etcd's create: answers `created` (or created + canceled with the
    /// reason) on the stream before any event of the new watcher.
    pub fn create(&self, stream: u64, req: &WatchCreateRequest) {
        let mut st = self.lock();
        let st = &mut *st;
        let current = st.current();
        let Some(sw) = st.streams.get_mut(&stream) else {
            return;
        };
        let refuse = |sw: &StreamWatchers, e: WatchError| {
            sw.queue.push_control(WatchResponse {
                header: header(current),
                watch_id: -1,
                created: true,
                canceled: true,
                cancel_reason: e.message().to_string(),
                ..Default::default()
            });
        };
        if st.closed {
            return refuse(sw, WatchError::TableDeleted);
        }
        if req.start_revision < 0 {
            return refuse(sw, WatchError::Compacted);
        }
        let selector = match Selector::from_create(req) {
            Ok(s) => s,
            Err(e) => return refuse(sw, e),
        };
        let id = if req.watch_id == 0 {
            while sw.ids.contains(&sw.next_auto) {
                sw.next_auto += 1;
            }
            sw.next_auto += 1;
            sw.next_auto - 1
        } else if sw.ids.contains(&req.watch_id) {
            return refuse(sw, WatchError::DuplicateId);
        } else {
            req.watch_id
        };
        sw.ids.insert(id);
        sw.queue.push_control(WatchResponse {
            header: header(current),
            watch_id: id,
            created: true,
            ..Default::default()
        });
        let start = req.start_revision;
        let next_rev = if start == 0 || start > current {
            start.max(current + 1)
        } else {
            start
        };
        st.next_serial += 1;
        let w = Watcher {
            serial: st.next_serial,
            selector,
            next_rev,
            progress_notify: req.progress_notify,
            fragment: req.fragment,
            sent_since_tick: false,
        };
        let wid = (stream, id);
        // Below the compaction revision it must get the compaction cancel,
        // which the catch-up pass sends, even if the fan-out lags behind it.
        if next_rev > st.fanned && next_rev >= st.current_compacted() {
            st.synced.insert(wid, &w.selector.range);
        } else {
            st.unsynced.insert(wid);
        }
        st.watchers.insert(wid, w);
        st.interest_changed();
        // `fanned` may be stale while the hub had no watchers.
        self.wake.notify_one();
    }

    /// etcd's cancel: answers `canceled` for a watcher of this stream;
    /// an unknown id is ignored.
    pub fn cancel(&self, stream: u64, watch_id: i64) {
        let mut st = self.lock();
        let current = st.current();
        let Some(sw) = st.streams.get_mut(&stream) else {
            return;
        };
        if !sw.ids.remove(&watch_id) {
            return;
        }
        let queue = sw.queue.clone();
        st.remove_watcher((stream, watch_id));
        queue.push_control(WatchResponse {
            header: header(current),
            watch_id,
            canceled: true,
            ..Default::default()
        });
    }

    /// etcd's WatchProgressRequest: one response with watch_id -1 at the
    /// fanned revision, only if every watcher of the stream is synced (and
    /// past its start); otherwise nothing and the client asks again. The
    /// answer covers at least what was applied when the request came: if
    /// the fan-out is behind that, it is given once the fan-out got there.
    /// A stream without watchers gets the applied revision at once, as in
    /// etcd 3.4.
    pub fn request_progress(&self, stream: u64) {
        let mut st = self.lock();
        let st = &mut *st;
        let current = st.current();
        let Some(sw) = st.streams.get_mut(&stream) else {
            return;
        };
        if !sw
            .ids
            .iter()
            .any(|id| st.watchers.contains_key(&(stream, *id)))
        {
            sw.queue.try_push_progress(progress(-1, current));
        } else if st.fanned >= current {
            st.answer_progress(stream);
        } else {
            sw.progress_at = Some(current);
            self.wake.notify_one();
        }
    }

    /// A tick of the stream's progress timer: each `progress_notify`
    /// watcher that got no events since the last tick and is caught up gets
    /// an empty response at the fanned revision.
    pub(crate) fn progress_tick(&self, stream: u64) {
        let mut st = self.lock();
        let st = &mut *st;
        let Some(sw) = st.streams.get(&stream) else {
            return;
        };
        for id in &sw.ids {
            let wid = (stream, *id);
            let caught_up = st.is_caught_up(wid);
            let Some(w) = st.watchers.get_mut(&wid) else {
                continue;
            };
            if !w.progress_notify {
                continue;
            }
            if !w.sent_since_tick && caught_up {
                sw.queue.try_push_progress(progress(*id, st.fanned));
            }
            w.sent_since_tick = false;
        }
    }

    pub fn counts(&self) -> WatchCounts {
        let st = self.lock();
        WatchCounts {
            streams: st.streams.len(),
            watchers: st.watchers.len(),
            unsynced: st.unsynced.len(),
            events_sent: self.events_sent.load(Ordering::Relaxed),
            slow_watchers: self.slow_watchers.load(Ordering::Relaxed),
        }
    }

    /// Fans out what the source published since `fanned`, then runs one
    /// catch-up pass. Returns true if there may be more to do right away.
    async fn step(&self) -> bool {
        let (sm, fanned) = {
            let mut st = self.lock();
            let Some(sm) = st.source.clone() else {
                return false;
            };
            let (state, generation) = sm.feed.state();
            if generation != st.generation {
                // A snapshot replaced the state: everyone catches up from it.
                st.all_behind();
                st.generation = generation;
                st.fanned = state.current;
            }
            st.compacted = state.compacted;
            (sm, st.fanned)
        };
        let read = sm.feed.read(fanned, i64::MAX);
        {
            let mut st = self.lock();
            if !st.serves(&sm) || st.fanned != fanned {
                return true;
            }
            match read {
                FeedRead::Revisions(revs) => {
                    for rev in &revs {
                        self.deliver_live(&mut st, rev);
                    }
                    st.answer_due_progress();
                }
                FeedRead::Gap => {
                    // Published faster than fanned out: the synced catch up
                    // from LMDB like any lagging watcher.
                    st.all_behind();
                    st.fanned = sm.feed.state().0.current;
                }
            }
            if st.unsynced.is_empty() {
                return false;
            }
        }
        self.catch_up(&sm).await
    }

    /// Hands one published revision to the synced watchers it concerns.
    fn deliver_live(&self, st: &mut HubState, rev: &RevisionEvents) {
        // Which events (by position) each concerned watcher may want.
        let mut per: Vec<(WatcherId, Vec<usize>)> = Vec::new();
        let mut index: HashMap<WatcherId, usize> = HashMap::new();
        for (i, e) in rev.events.iter().enumerate() {
            let Some(kv) = &e.event.kv else { continue };
            st.synced.matching(&kv.key, |id| {
                let slot = *index.entry(id).or_insert_with(|| {
                    per.push((id, Vec::new()));
                    per.len() - 1
                });
                per[slot].1.push(i);
            });
        }
        for (id, positions) in per {
            let Some(w) = st.watchers.get_mut(&id) else {
                continue;
            };
            if w.next_rev > rev.revision {
                continue; // starts later
            }
            let events: Vec<_> = (positions.iter())
                .filter_map(|i| w.selector.pick(&rev.events[*i], st.compacted))
                .collect();
            if events.is_empty() {
                continue;
            }
            let Some(sw) = st.streams.get(&id.0) else {
                continue;
            };
            if self.offer(&sw.queue, id.1, w, rev.revision, events) {
                w.next_rev = rev.revision + 1;
            } else {
                // A slow client: this revision and later come from history.
                w.next_rev = rev.revision;
                let range = w.selector.range.clone();
                st.synced.remove(id, &range);
                st.unsynced.insert(id);
                self.slow_watchers.fetch_add(1, Ordering::Relaxed);
            }
        }
        st.fanned = rev.revision;
    }

    /// Queues `events` for watcher `w` (id `watch_id`) in a response at
    /// `revision`; false if its stream has no room.
    fn offer(
        &self,
        queue: &StreamQueue,
        watch_id: i64,
        w: &mut Watcher,
        revision: i64,
        events: Vec<Arc<[u8]>>,
    ) -> bool {
        let n = events.len() as u64;
        let sent = queue.try_push_event(WatchOut {
            head: WatchResponse {
                header: header(revision),
                watch_id,
                fragment: w.fragment,
                ..Default::default()
            },
            events,
        });
        if sent {
            w.sent_since_tick = true;
            self.events_sent.fetch_add(n, Ordering::Relaxed);
        }
        sent
    }

    /// One pass over the unsynced watchers: compaction cancels, then one
    /// shared read of history from the lowest `next_rev`, handed to each
    /// watcher with room on its stream; those caught up become synced.
    async fn catch_up(&self, sm: &Arc<Shared>) -> bool {
        let (todo, fanned, generation, with_prev) = {
            let mut st = self.lock();
            let todo = st.catch_up_candidates();
            let with_prev =
                (todo.iter()).any(|c| st.watchers.get(&c.id).is_some_and(|w| w.selector.prev_kv));
            (todo, st.fanned, st.generation, with_prev)
        };
        let Some(from) = todo.iter().map(|c| c.next).min() else {
            return false;
        };
        let through = fanned.min(from + watch::MAX_REVISIONS_PER_READ - 1);
        let read = match read_history(sm, from, through, with_prev).await {
            Ok(read) => read,
            Err(e) => {
                // Retried shortly: the watchers stay behind, nothing is lost.
                tracing::error!(table = %self.table, "watch catch-up read: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                return true;
            }
        };
        let mut guard = self.lock();
        let st = &mut *guard;
        if !st.serves(sm) || st.generation != generation {
            return true;
        }
        for c in todo {
            self.hand_history(st, &c, &read, fanned);
        }
        st.answer_due_progress();
        true
    }

    /// Gives candidate `c` (if it is still the same watcher, at the same
    /// revision) its part of `read`, and makes it synced if that caught it
    /// up.
    fn hand_history(&self, st: &mut HubState, c: &Candidate, read: &HistoryRead, fanned: i64) {
        let (id, next) = (c.id, c.next);
        let Some(w) = st.watchers.get_mut(&id) else {
            return;
        };
        if w.serial != c.serial || w.next_rev != next || !st.unsynced.contains(&id) {
            return;
        }
        // A compaction since the read began: the next pass cancels it. A
        // watcher further ahead than the read reached waits for a later
        // pass (never move `next_rev` back).
        if next < read.compacted || next > read.through {
            return;
        }
        let events = w.selector.select(
            (read.revisions.iter().map(|r| &**r)).filter(|r| r.revision >= next),
            st.compacted.max(read.compacted),
        );
        if !events.is_empty() {
            let Some(sw) = st.streams.get(&id.0) else {
                return;
            };
            if !self.offer(&sw.queue, id.1, w, fanned, events) {
                return;
            }
        }
        w.next_rev = read.through + 1;
        if w.next_rev > st.fanned {
            let range = w.selector.range.clone();
            st.unsynced.remove(&id);
            st.synced.insert(id, &range);
        }
    }
}

/// History for a catch-up pass.
struct HistoryRead {
    revisions: Vec<Arc<RevisionEvents>>,
    /// The last revision the read covers.
    through: i64,
    /// The compaction revision the read saw (history below it is gone).
    compacted: i64,
}

/// Revisions `from..=through` (fewer if they exceed the byte budget): from
/// the feed's buffer if it still holds them, else from LMDB.
async fn read_history(
    sm: &Arc<Shared>,
    from: i64,
    through: i64,
    with_prev: bool,
) -> crate::error::Result<HistoryRead> {
    if let FeedRead::Revisions(mut revisions) = sm.feed.read(from - 1, through) {
        let mut bytes = 0;
        let keep = (revisions.iter())
            .take_while(|r| {
                let fits = bytes <= CATCH_UP_BYTES;
                bytes += r.bytes();
                fits
            })
            .count();
        revisions.truncate(keep);
        return Ok(HistoryRead {
            through: revisions.last().map_or(through, |r| r.revision),
            revisions,
            compacted: i64::MIN,
        });
    }
    let sm = sm.clone();
    let (revisions, through, compacted) = crate::raft::client_blocking(move || {
        sm.db
            .read(|r| watch::history(r, from, through, CATCH_UP_BYTES, with_prev))
    })
    .await?;
    Ok(HistoryRead {
        revisions: revisions.into_iter().map(Arc::new).collect(),
        through,
        compacted,
    })
}

/// An unsynced watcher a catch-up pass serves.
struct Candidate {
    id: WatcherId,
    serial: u64,
    next: i64,
}

impl HubState {
    /// The revision the source has applied (and published).
    fn current(&self) -> i64 {
        (self.source.as_ref()).map_or(self.fanned, |s| s.feed.state().0.current)
    }

    /// The source's compaction revision as of now.
    fn current_compacted(&self) -> i64 {
        (self.source.as_ref()).map_or(self.compacted, |s| s.feed.state().0.compacted)
    }

    /// Answers `stream`'s progress request if all its watchers are caught up.
    fn answer_progress(&self, stream: u64) {
        let Some(sw) = self.streams.get(&stream) else {
            return;
        };
        // Ids of watchers canceled by a compaction (held until the client
        // cancels them) do not count.
        let live = (sw.ids.iter()).filter(|id| self.watchers.contains_key(&(stream, **id)));
        if live.copied().all(|id| self.is_caught_up((stream, id))) {
            sw.queue.try_push_progress(progress(-1, self.fanned));
        }
    }

    /// Answers the progress requests the fan-out has now caught up with.
    fn answer_due_progress(&mut self) {
        let fanned = self.fanned;
        let due: Vec<u64> = (self.streams.iter_mut())
            .filter(|(_, sw)| sw.progress_at.is_some_and(|at| at <= fanned))
            .map(|(id, sw)| {
                sw.progress_at = None;
                *id
            })
            .collect();
        for stream in due {
            self.answer_progress(stream);
        }
    }

    fn serves(&self, sm: &Arc<Shared>) -> bool {
        self.source.as_ref().is_some_and(|s| Arc::ptr_eq(s, sm))
    }

    /// Synced (given everything through `fanned`) and given nothing beyond
    /// it, so a progress notification at `fanned` is true for it: not for
    /// a watcher that starts later (etcd #20290), nor for one that got
    /// events past a `fanned` that a restore set back. (A synced watcher's
    /// `next_rev` does not move for revisions it does not watch.)
    fn is_caught_up(&self, id: WatcherId) -> bool {
        self.watchers.get(&id).is_some_and(|w| {
            self.synced.contains(id, &w.selector.range) && w.next_rev <= self.fanned + 1
        })
    }

    /// Moves every synced watcher to catch-up, at the first revision it
    /// has not been given (never lower than before).
    fn all_behind(&mut self) {
        for id in self.synced.drain() {
            if let Some(w) = self.watchers.get_mut(&id) {
                w.next_rev = w.next_rev.max(self.fanned + 1);
                self.unsynced.insert(id);
            }
        }
    }

    /// Ends every watcher with `response`. As after etcd's compaction
    /// cancel, the ids stay taken until the client cancels them.
    fn cancel_all(&mut self, response: impl Fn(i64) -> WatchResponse) {
        let ids: Vec<WatcherId> = self.watchers.keys().copied().collect();
        for id in ids {
            if let Some(sw) = self.streams.get(&id.0) {
                sw.queue.push_control(response(id.1));
            }
            self.remove_watcher(id);
        }
    }

    fn remove_watcher(&mut self, id: WatcherId) {
        if let Some(w) = self.watchers.remove(&id) {
            self.synced.remove(id, &w.selector.range);
            self.unsynced.remove(&id);
            self.interest_changed();
        }
    }

    /// The feed buffers events only while there are watchers.
    fn interest_changed(&self) {
        if let Some(sm) = &self.source {
            sm.feed.set_interest(!self.watchers.is_empty());
        }
    }

    /// Sends compaction cancels, promotes watchers that are ahead, and
    /// returns the watchers with room on their stream and their `next_rev`.
    fn catch_up_candidates(&mut self) -> Vec<Candidate> {
        let mut todo = Vec::new();
        let ids: Vec<WatcherId> = self.unsynced.iter().copied().collect();
        for id in ids {
            let Some(w) = self.watchers.get(&id) else {
                self.unsynced.remove(&id);
                continue;
            };
            let queue = self.streams[&id.0].queue.clone();
            if w.next_rev < self.compacted {
                queue.push_control(WatchResponse {
                    watch_id: id.1,
                    canceled: true,
                    compact_revision: self.compacted,
                    ..Default::default()
                });
                self.remove_watcher(id);
            } else if w.next_rev > self.fanned {
                let range = w.selector.range.clone();
                self.unsynced.remove(&id);
                self.synced.insert(id, &range);
            } else if queue.has_room() {
                todo.push(Candidate {
                    id,
                    serial: w.serial,
                    next: w.next_rev,
                });
            }
        }
        todo
    }
}

impl Drop for WatchHub {
    fn drop(&mut self) {
        self.wake.notify_one(); // lets the task see the hub is gone
    }
}

/// The hub's task: steps whenever the feed published, a watcher fell
/// behind or a stream made room, until the hub is gone or closed.
async fn run(hub: Weak<WatchHub>, wake: Arc<Notify>) {
    loop {
        let more = {
            let Some(hub) = hub.upgrade() else { return };
            if hub.lock().closed {
                return;
            }
            hub.step().await
        };
        if !more {
            wake.notified().await;
        }
    }
}
