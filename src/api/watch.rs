//! etcd's Watch service (`v3rpc/watch.go`): one bidi stream per call,
//! carrying any number of watchers of one table (chosen by `armada-table`
//! as for KV). Requests go to the table's watch hub, which decides every
//! response and queues it in order; this file only moves requests in and
//! responses out: it fills the header, splits big responses for watchers
//! that asked for fragments, ticks progress notifications, and ends the
//! stream when the client goes away, the node stops, or (with `hasleader`
//! metadata) the table has had no raft leader for three election timeouts.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::Context;
use crate::error::EtcdError;
use crate::kv::validate::MAX_REQUEST_BYTES;
use crate::kv::watch::{fragments, WatchOut};
use crate::pb::etcdserverpb::watch_request::RequestUnion;
use crate::pb::etcdserverpb::WatchRequest;
use crate::raft::watch::hub::{WatchHub, WatchStream};

/// etcd fragments responses of at least `--max-request-bytes` plus gRPC's
/// overhead allowance.
const FRAGMENT_BYTES: usize = MAX_REQUEST_BYTES + 512 * 1024;

/// etcd's `maxNoLeaderCnt`: a `hasleader` stream ends after this many
/// election timeouts without a raft leader.
const NO_LEADER_TIMEOUTS: u32 = 3;

pub(crate) struct WatchService {
    pub ctx: Arc<Context>,
    /// `--api.watch-progress-notify-interval`.
    pub progress_interval: Duration,
    /// Becomes true when the node stops: every stream ends.
    pub stop: tokio::sync::watch::Receiver<bool>,
}

pub(crate) type ResponseStream = Pin<Box<dyn Stream<Item = Result<WatchOut, Status>> + Send>>;

impl WatchService {
    /// etcd's `Watch` (served by [`super::watch_codec::WatchServer`]).
    pub async fn watch(
        &self,
        request: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<ResponseStream>, Status> {
        let metadata = request.metadata().clone();
        self.ctx.group(&metadata).await?; // the table exists; `hasleader`
        let table = self.ctx.table_name(&metadata)?;
        let hub = (self.ctx.registry.watch_hub(&table).await).map_err(Status::from)?;
        let has_leader = metadata.get("hasleader").is_some_and(|v| v == "true");
        let stream = hub.open_stream();
        let ended = Arc::new(Mutex::new(None));
        tokio::spawn(
            Receiver {
                hub: hub.clone(),
                stream: stream.id,
                queue: stream.queue.clone(),
                ctx: self.ctx.clone(),
                table: table.clone(),
                ended: ended.clone(),
                progress_interval: self.progress_interval,
                stop: self.stop.clone(),
            }
            .run(request.into_inner(), has_leader),
        );
        Ok(Response::new(responses(
            self.ctx.clone(),
            table,
            stream,
            ended,
        )))
    }
}

/// The request side of a stream, with its timers.
struct Receiver {
    hub: Arc<WatchHub>,
    stream: u64,
    queue: Arc<crate::raft::watch::queue::StreamQueue>,
    ctx: Arc<Context>,
    /// The table's group is looked up by name each time: a follower
    /// cluster's recovery swaps it under a running stream.
    table: String,
    /// The error the stream ends with, if it does not end cleanly.
    ended: Arc<Mutex<Option<Status>>>,
    progress_interval: Duration,
    stop: tokio::sync::watch::Receiver<bool>,
}

impl Receiver {
    async fn run(self, mut requests: Streaming<WatchRequest>, has_leader: bool) {
        let mut stop = self.stop.clone();
        let mut progress = tokio::time::interval_at(
            tokio::time::Instant::now() + self.progress_interval,
            self.progress_interval,
        );
        let election = match self.ctx.registry.get(&self.table).await {
            Ok(group) => Duration::from_millis(group.raft().config().election_timeout_max),
            Err(_) => Duration::from_secs(1),
        }
        .max(Duration::from_millis(100));
        let mut leader_check = tokio::time::interval(election);
        let mut leaderless = 0;
        let mut reading = true;
        loop {
            // A client that sends requests but reads no responses is not
            // read from either, rather than queueing answers without bound.
            let room = self.queue.control_room();
            tokio::select! {
                _ = self.queue.wait_control_room(), if reading && !room => {}
                msg = requests.message(), if reading && room => match msg {
                    Ok(Some(req)) => self.handle(req),
                    // A half-closed stream keeps delivering, as etcd's does.
                    Ok(None) => reading = false,
                    Err(_) => break,
                },
                _ = progress.tick() => self.hub.progress_tick(self.stream),
                _ = leader_check.tick(), if has_leader => {
                    let led = (self.ctx.registry.get(&self.table).await).is_ok_and(|g| g.has_leader());
                    leaderless = if led { 0 } else { leaderless + 1 };
                    if leaderless >= NO_LEADER_TIMEOUTS {
                        *self.ended.lock().unwrap() = Some(EtcdError::NoLeader.into());
                        break;
                    }
                }
                _ = self.queue.wait_closed() => return,
                _ = async { drop(stop.wait_for(|stop| *stop).await) } => break,
            }
        }
        self.queue.close();
    }

    fn handle(&self, req: WatchRequest) {
        match req.request_union {
            Some(RequestUnion::CreateRequest(create)) => self.hub.create(self.stream, &create),
            Some(RequestUnion::CancelRequest(cancel)) => {
                self.hub.cancel(self.stream, cancel.watch_id)
            }
            Some(RequestUnion::ProgressRequest(_)) => self.hub.request_progress(self.stream),
            None => {}
        }
    }
}

/// The response side: the stream's queue, with headers filled and big
/// responses fragmented; dropping it (the client went away) drops the
/// `WatchStream`, which cancels every watcher of the stream.
fn responses(
    ctx: Arc<Context>,
    table: String,
    stream: WatchStream,
    ended: Arc<Mutex<Option<Status>>>,
) -> ResponseStream {
    struct State {
        ctx: Arc<Context>,
        table: String,
        stream: WatchStream,
        ended: Arc<Mutex<Option<Status>>>,
        pieces: std::collections::VecDeque<WatchOut>,
        done: bool,
    }
    let state = State {
        ctx,
        table,
        stream,
        ended,
        pieces: Default::default(),
        done: false,
    };
    Box::pin(futures::stream::unfold(state, |mut s| async move {
        if let Some(piece) = s.pieces.pop_front() {
            return Some((Ok(piece), s));
        }
        if s.done {
            return None;
        }
        let Some(mut resp) = s.stream.queue.pop().await else {
            s.done = true;
            let end = s.ended.lock().unwrap().take();
            return end.map(|status| (Err(status), s));
        };
        if let Ok(group) = s.ctx.registry.get(&s.table).await {
            s.ctx.fill(&group, &mut resp.head.header, None);
        }
        s.pieces = if resp.head.fragment {
            fragments(resp, FRAGMENT_BYTES).into()
        } else {
            [resp].into()
        };
        let first = s.pieces.pop_front().expect("at least one piece");
        Some((Ok(first), s))
    }))
}
