//! The outgoing queue of one Watch stream: every response for the stream's
//! watchers, in the order the hub decided them (etcd's per-stream `ch` and
//! `ctrlStream` in one ordered queue, so a progress notification can never
//! overtake an event, etcd #15220).
//!
//! Control responses (created, canceled, compaction) are always accepted:
//! there is at most one per client request or per watcher, and the stream
//! stops reading requests while [`MAX_CONTROL_RESPONSES`] of them wait
//! (etcd's receive loop blocks on its 16-slot control channel likewise). Event and
//! progress responses are bounded in count and bytes; when the queue is
//! full the hub does not wait: the watcher falls behind and catches up
//! from history later. Popping below half the bound wakes the hub.
//!
//! While the sender is well behind (at least [`MERGE_BACKLOG`] responses
//! queued), a watcher's new events join its response that is still queued
//! (whole revisions, in order, up to [`MERGE_BYTES`]), as etcd batches
//! events for a watcher that fell behind: fewer, bigger responses exactly
//! when the client cannot keep up, and one response per revision, like
//! etcd's live path, when it can. Never across a progress or control
//! response queued after it, so a progress notification still follows
//! every event at or below its revision.
//!
//! A queued event response with `fragment` set is one whose watcher accepts
//! it in pieces; the stream's sender decides whether it must be split.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use prost::Message;
use tokio::sync::Notify;

use crate::kv::watch::WatchOut;
use crate::pb::etcdserverpb::WatchResponse;

/// etcd's `chanBufLen` is 128 responses; a fan-out of one revision to
/// hundreds of watchers on one stream needs more room than that.
const MAX_EVENT_RESPONSES: usize = 1024;
const MAX_EVENT_BYTES: usize = 16 << 20;
/// Control responses waiting before the stream stops reading requests.
pub(crate) const MAX_CONTROL_RESPONSES: usize = 1024;
/// A queued response takes more events only while smaller than this.
const MERGE_BYTES: usize = 1 << 20;
/// Events join queued responses only while this many are waiting (half of
/// etcd's per-stream buffer).
const MERGE_BACKLOG: usize = 64;

pub struct StreamQueue {
    inner: Mutex<QueueState>,
    /// Wakes the stream's sender.
    ready: Notify,
    /// Wakes the stream's receiver when control responses drained.
    drained: Notify,
    closed: tokio::sync::watch::Sender<bool>,
    /// Wakes the hub when room frees up for watchers that fell behind.
    hub: Arc<Notify>,
}

struct Item {
    resp: WatchOut,
    /// Its size, if it counts against the bound (event and progress).
    counted: Option<usize>,
}

#[derive(Default)]
struct QueueState {
    items: VecDeque<Item>,
    /// The sequence number of `items[0]`; item `i` has `head + i`.
    head: u64,
    /// Items before this sequence number take no more events: a progress
    /// or control response (the one with this number) was queued after them.
    barrier: u64,
    /// Each watcher's last queued event response, by sequence number.
    open: HashMap<i64, u64>,
    event_items: usize,
    event_bytes: usize,
    control_items: usize,
    /// Set when the hub refused an event for lack of room.
    starved: bool,
    closed: bool,
}

impl QueueState {
    fn next_seq(&self) -> u64 {
        self.head + self.items.len() as u64
    }

    fn has_room(&self) -> bool {
        self.closed
            || (self.event_items < MAX_EVENT_RESPONSES && self.event_bytes < MAX_EVENT_BYTES)
    }

    /// Appends `resp`'s events to the watcher's queued response, if it has
    /// one that may still grow.
    fn merge(&mut self, resp: &mut WatchOut) -> bool {
        if self.event_items < MERGE_BACKLOG {
            return false;
        }
        let Some(&seq) = self.open.get(&resp.head.watch_id) else {
            return false;
        };
        if seq < self.barrier || seq < self.head {
            return false;
        }
        let item = &mut self.items[(seq - self.head) as usize];
        let Some(size) = item.counted else {
            return false;
        };
        let added = resp.encoded_len() - resp.head.encoded_len();
        if size + added > MERGE_BYTES || self.event_bytes + added > MAX_EVENT_BYTES {
            return false;
        }
        // Sizes kept incrementally: recounting every event would make a
        // long backlog quadratic.
        let old_head = item.resp.head.encoded_len();
        item.resp.events.append(&mut resp.events);
        item.resp.head.header = resp.head.header.take();
        let merged = size - old_head + item.resp.head.encoded_len() + added;
        debug_assert_eq!(merged, item.resp.encoded_len());
        item.counted = Some(merged);
        self.event_bytes = self.event_bytes + merged - size;
        true
    }
}

impl StreamQueue {
    pub fn new(hub: Arc<Notify>) -> StreamQueue {
        StreamQueue {
            inner: Mutex::new(QueueState::default()),
            ready: Notify::new(),
            drained: Notify::new(),
            closed: tokio::sync::watch::Sender::new(false),
            hub,
        }
    }

    fn push(&self, q: &mut QueueState, resp: WatchOut, counted: Option<usize>) {
        q.items.push_back(Item { resp, counted });
        self.ready.notify_one();
    }

    /// Queues a control response; always accepted.
    pub(crate) fn push_control(&self, resp: WatchResponse) {
        let mut q = self.inner.lock().unwrap();
        if q.closed {
            return;
        }
        q.barrier = q.next_seq();
        q.control_items += 1;
        self.push(&mut q, WatchOut::of(resp), None);
    }

    /// True while fewer than [`MAX_CONTROL_RESPONSES`] control responses
    /// wait: the stream may read another request.
    pub(crate) fn control_room(&self) -> bool {
        self.inner.lock().unwrap().control_items < MAX_CONTROL_RESPONSES
    }

    /// Resolves once [`Self::control_room`] (or the stream closed).
    pub(crate) async fn wait_control_room(&self) {
        loop {
            let drained = self.drained.notified();
            {
                let q = self.inner.lock().unwrap();
                if q.closed || q.control_items < MAX_CONTROL_RESPONSES {
                    return;
                }
            }
            drained.await;
        }
    }

    /// Queues an event response if there is room (or joins it to the
    /// watcher's queued one); false if there is no room.
    pub(crate) fn try_push_event(&self, mut resp: WatchOut) -> bool {
        let mut q = self.inner.lock().unwrap();
        if q.closed {
            return true; // nobody will read it: as good as delivered
        }
        if q.merge(&mut resp) {
            return true;
        }
        let bytes = resp.encoded_len();
        if !q.has_room() {
            q.starved = true;
            return false;
        }
        let seq = q.next_seq();
        q.open.insert(resp.head.watch_id, seq);
        q.event_items += 1;
        q.event_bytes += bytes;
        self.push(&mut q, resp, Some(bytes));
        true
    }

    /// Queues a progress notification if there is room (dropped if not,
    /// as etcd does: clients ask again).
    pub(crate) fn try_push_progress(&self, resp: WatchResponse) {
        let mut q = self.inner.lock().unwrap();
        if q.closed || !q.has_room() {
            return;
        }
        let bytes = resp.encoded_len();
        q.barrier = q.next_seq();
        q.event_items += 1;
        q.event_bytes += bytes;
        self.push(&mut q, WatchOut::of(resp), Some(bytes));
    }

    /// True if an event response would be accepted now; if not, the hub
    /// is woken once there is room.
    pub(crate) fn has_room(&self) -> bool {
        let mut q = self.inner.lock().unwrap();
        let room = q.has_room();
        q.starved |= !room;
        room
    }

    /// The next response, waiting for one; `None` once closed.
    pub async fn pop(&self) -> Option<WatchOut> {
        loop {
            let notified = self.ready.notified();
            {
                let mut q = self.inner.lock().unwrap();
                if let Some(item) = q.items.pop_front() {
                    let seq = q.head;
                    q.head += 1;
                    if q.open.get(&item.resp.head.watch_id) == Some(&seq) {
                        q.open.remove(&item.resp.head.watch_id);
                    }
                    if let Some(bytes) = item.counted {
                        q.event_items -= 1;
                        q.event_bytes -= bytes;
                        if q.starved && q.event_items <= MAX_EVENT_RESPONSES / 2 {
                            q.starved = false;
                            self.hub.notify_one();
                        }
                    } else {
                        q.control_items -= 1;
                        if q.control_items == MAX_CONTROL_RESPONSES - 1 {
                            self.drained.notify_one();
                        }
                    }
                    return Some(item.resp);
                }
                if q.closed {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Ends the stream: the sender gets what is queued, then `None`.
    pub fn close(&self) {
        let mut q = self.inner.lock().unwrap();
        q.closed = true;
        drop(q);
        self.ready.notify_one();
        self.drained.notify_one();
        self.closed.send_replace(true);
    }

    /// Resolves once the stream is closed.
    pub(crate) async fn wait_closed(&self) {
        let _ = self.closed.subscribe().wait_for(|closed| *closed).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::watch::SharedEvent;
    use crate::pb::etcdserverpb::ResponseHeader;
    use crate::pb::mvccpb::{Event, KeyValue};

    fn events(watch_id: i64, revision: i64) -> WatchOut {
        let event = SharedEvent::new(Event {
            kv: Some(KeyValue {
                mod_revision: revision,
                ..Default::default()
            }),
            ..Default::default()
        });
        WatchOut {
            head: WatchResponse {
                header: Some(ResponseHeader {
                    revision,
                    ..Default::default()
                }),
                watch_id,
                ..Default::default()
            },
            events: vec![event.encoded(false)],
        }
    }

    fn shape(r: &WatchOut) -> (i64, i64, Vec<i64>) {
        let revs = (r.decode_events().iter())
            .map(|e| e.kv.as_ref().unwrap().mod_revision)
            .collect();
        let h = &r.head;
        (
            h.watch_id,
            h.header.as_ref().map_or(0, |h| h.revision),
            revs,
        )
    }

    #[tokio::test]
    async fn a_lagging_watchers_events_join_but_never_pass_a_progress() {
        let q = StreamQueue::new(Arc::new(Notify::new()));
        // Without a backlog, one response per revision.
        assert!(q.try_push_event(events(1, 3)));
        assert!(q.try_push_event(events(1, 4)));
        assert_eq!(shape(&q.pop().await.unwrap()), (1, 3, vec![3]));
        assert_eq!(shape(&q.pop().await.unwrap()), (1, 4, vec![4]));
        // A backlog of other watchers' responses.
        for w in 0..MERGE_BACKLOG as i64 {
            assert!(q.try_push_event(events(100 + w, 4)));
        }
        assert!(q.try_push_event(events(1, 5)));
        assert!(q.try_push_event(events(2, 5)));
        assert!(q.try_push_event(events(1, 6))); // joins watcher 1's response
        q.try_push_progress(WatchResponse {
            watch_id: -1,
            header: Some(ResponseHeader {
                revision: 6,
                ..Default::default()
            }),
            ..Default::default()
        });
        assert!(q.try_push_event(events(1, 7))); // after the progress: new response
        for _ in 0..MERGE_BACKLOG {
            q.pop().await.unwrap();
        }
        let mut got = Vec::new();
        for _ in 0..4 {
            got.push(shape(&q.pop().await.unwrap()));
        }
        assert_eq!(
            got,
            vec![
                (1, 6, vec![5, 6]),
                (2, 5, vec![5]),
                (-1, 6, vec![]),
                (1, 7, vec![7]),
            ]
        );
    }
}
