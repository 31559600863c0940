//! The outgoing queue of one Watch stream: every response for the stream's
//! watchers, in the order the hub decided them (etcd's per-stream `ch` and
//! `ctrlStream` in one ordered queue, so a progress notification can never
//! overtake an event, etcd #15220).
//!
//! Control responses (created, canceled, compaction) are always accepted:
//! there is at most one per client request or per watcher. Event and
//! progress responses are bounded in count and bytes; when the queue is
//! full the hub does not wait: the watcher falls behind and catches up
//! from history later. Popping below half the bound wakes the hub.
//!
//! A queued event response with `fragment` set is one whose watcher accepts
//! it in pieces; the stream's sender decides whether it must be split.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use prost::Message;
use tokio::sync::Notify;

use crate::pb::etcdserverpb::WatchResponse;

/// etcd's `chanBufLen` is 128 responses; a fan-out of one revision to
/// hundreds of watchers on one stream needs more room than that.
const MAX_EVENT_RESPONSES: usize = 1024;
const MAX_EVENT_BYTES: usize = 16 << 20;

pub struct StreamQueue {
    inner: Mutex<QueueState>,
    /// Wakes the stream's sender.
    ready: Notify,
    closed: tokio::sync::watch::Sender<bool>,
    /// Wakes the hub when room frees up for watchers that fell behind.
    hub: Arc<Notify>,
}

struct QueueState {
    /// Responses with their size if they count against the bound.
    items: VecDeque<(WatchResponse, Option<usize>)>,
    event_items: usize,
    event_bytes: usize,
    /// Set when the hub refused an event for lack of room.
    starved: bool,
    closed: bool,
}

impl StreamQueue {
    pub fn new(hub: Arc<Notify>) -> StreamQueue {
        StreamQueue {
            inner: Mutex::new(QueueState {
                items: VecDeque::new(),
                event_items: 0,
                event_bytes: 0,
                starved: false,
                closed: false,
            }),
            ready: Notify::new(),
            closed: tokio::sync::watch::Sender::new(false),
            hub,
        }
    }

    /// Queues a control response; always accepted.
    pub fn push_control(&self, resp: WatchResponse) {
        let mut q = self.inner.lock().unwrap();
        if q.closed {
            return;
        }
        q.items.push_back((resp, None));
        drop(q);
        self.ready.notify_one();
    }

    /// Queues an event or progress response if there is room; false if not.
    pub fn try_push_event(&self, resp: WatchResponse) -> bool {
        let mut q = self.inner.lock().unwrap();
        if q.closed {
            return true; // nobody will read it: as good as delivered
        }
        if q.event_items >= MAX_EVENT_RESPONSES || q.event_bytes >= MAX_EVENT_BYTES {
            q.starved = true;
            return false;
        }
        let bytes = resp.encoded_len();
        q.event_items += 1;
        q.event_bytes += bytes;
        q.items.push_back((resp, Some(bytes)));
        drop(q);
        self.ready.notify_one();
        true
    }

    /// True if an event response would be accepted now; if not, the hub
    /// is woken once there is room.
    pub fn has_room(&self) -> bool {
        let mut q = self.inner.lock().unwrap();
        let room =
            q.closed || (q.event_items < MAX_EVENT_RESPONSES && q.event_bytes < MAX_EVENT_BYTES);
        q.starved |= !room;
        room
    }

    /// The next response, waiting for one; `None` once closed.
    pub async fn pop(&self) -> Option<WatchResponse> {
        loop {
            let notified = self.ready.notified();
            {
                let mut q = self.inner.lock().unwrap();
                if let Some((resp, counted)) = q.items.pop_front() {
                    if let Some(bytes) = counted {
                        q.event_items -= 1;
                        q.event_bytes -= bytes;
                        if q.starved && q.event_items <= MAX_EVENT_RESPONSES / 2 {
                            q.starved = false;
                            self.hub.notify_one();
                        }
                    }
                    return Some(resp);
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
        self.closed.send_replace(true);
    }

    /// Resolves once the stream is closed.
    pub async fn wait_closed(&self) {
        let _ = self.closed.subscribe().wait_for(|closed| *closed).await;
    }
}
