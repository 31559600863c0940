//! Executes `watch ...` commands ([`crate::watch_cmd`]) on named Watch
//! streams. Each stream's RPC runs in its own task (etcd's grpc-go server
//! only sends response headers with the first message, so the call cannot
//! be awaited inline); requests go in through a channel and every response,
//! error or end of stream comes back through another one, where `recv` and
//! `sync` pick them up with a bounded wait (never a fixed sleep).

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Channel;

use crate::names::Names;
use crate::pb::etcdserverpb::{
    watch_client::WatchClient, watch_request::RequestUnion, WatchProgressRequest, WatchRequest,
    WatchResponse,
};
use crate::render;
use crate::watch_cmd::WatchCmd;

/// How long `watch recv` / `watch sync` wait for all of their responses.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(10);
/// Large enough for an unfragmented watch response carrying several
/// near-limit values (the tonic default is 4 MiB).
const MAX_DECODING: usize = 64 << 20;

/// What a stream's task reports.
enum Item {
    Response(WatchResponse),
    Error(tonic::Status),
    End,
}

/// One open Watch RPC.
struct Stream {
    requests: UnboundedSender<WatchRequest>,
    items: UnboundedReceiver<Item>,
    task: JoinHandle<()>,
    /// Set once the RPC failed or ended (reported once, by `recv`/`sync`).
    ended: bool,
}

/// The named Watch streams of one scenario run, over one channel.
pub struct WatchStreams {
    channel: Channel,
    streams: HashMap<String, Stream>,
}

impl Drop for WatchStreams {
    fn drop(&mut self) {
        for s in self.streams.values() {
            s.task.abort();
        }
    }
}

impl WatchStreams {
    /// Streams over `channel` (which must have no per-request timeout).
    pub fn new(channel: Channel) -> Self {
        Self {
            channel,
            streams: HashMap::new(),
        }
    }

    /// Runs one command, appending its transcript lines to `out` (lease
    /// ids and keys named by `n`).
    pub async fn run(&mut self, cmd: &WatchCmd, n: &Names, out: &mut Vec<String>) {
        let res = match cmd {
            WatchCmd::Open { stream, has_leader } => self.open(stream, *has_leader),
            WatchCmd::Send { stream, request } => self.send(stream, request.clone()),
            WatchCmd::Recv { stream, n: count } => self.recv(stream, *count, n, out).await,
            WatchCmd::Sync { stream } => self.sync(stream, n, out).await,
            WatchCmd::Close { stream } => self.close(stream),
        };
        if let Err(e) = res {
            out.push(format!("error: {e}"));
        }
    }

    fn open(&mut self, name: &str, has_leader: bool) -> Result<(), String> {
        if self.streams.contains_key(name) {
            return Err(format!("stream {name} is already open"));
        }
        let (requests, rx) = unbounded_channel();
        let (tx, items) = unbounded_channel();
        let mut request = tonic::Request::new(UnboundedReceiverStream::new(rx));
        if has_leader {
            // clientv3's WithRequireLeader metadata.
            request
                .metadata_mut()
                .insert("hasleader", "true".parse().expect("ascii"));
        }
        let client = WatchClient::new(self.channel.clone()).max_decoding_message_size(MAX_DECODING);
        let task = tokio::spawn(pump(client, request, tx));
        let stream = Stream {
            requests,
            items,
            task,
            ended: false,
        };
        self.streams.insert(name.to_string(), stream);
        Ok(())
    }

    fn stream(&mut self, name: &str) -> Result<&mut Stream, String> {
        self.streams
            .get_mut(name)
            .ok_or_else(|| format!("stream {name} is not open"))
    }

    fn send(&mut self, name: &str, request: WatchRequest) -> Result<(), String> {
        let s = self.stream(name)?;
        if s.ended || s.requests.send(request).is_err() {
            return Err(format!("stream {name} has ended"));
        }
        Ok(())
    }

    /// Waits for exactly `n` responses; renders them stably sorted by
    /// watch_id (etcd orders the responses of one watcher, not those of
    /// different watchers sharing a stream).
    async fn recv(
        &mut self,
        name: &str,
        n: usize,
        names: &Names,
        out: &mut Vec<String>,
    ) -> Result<(), String> {
        let s = self.stream(name)?;
        let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
        let mut got = Vec::new();
        let mut tail = None;
        while got.len() < n {
            match next_item(s, deadline).await {
                Ok(r) => got.push(r),
                Err(line) => {
                    tail = Some(line);
                    break;
                }
            }
        }
        got.sort_by_key(|r| r.watch_id);
        for r in &got {
            render::watch_response(names, out, r);
        }
        match tail {
            Some(line) if line.starts_with("timed out") => Err(format!(
                "{line} waiting for watch response {} of {n}",
                got.len() + 1
            )),
            Some(line) => {
                out.push(line);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Sends a progress request and renders everything up to its reply, in
    /// arrival order.
    async fn sync(&mut self, name: &str, n: &Names, out: &mut Vec<String>) -> Result<(), String> {
        let progress = WatchRequest {
            request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})),
        };
        self.send(name, progress)?;
        let s = self.stream(name)?;
        let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
        loop {
            match next_item(s, deadline).await {
                Ok(r) => {
                    render::watch_response(n, out, &r);
                    if is_progress_reply(&r) {
                        return Ok(());
                    }
                }
                Err(line) if line.starts_with("timed out") => {
                    return Err(format!("{line} waiting for the progress reply"))
                }
                Err(line) => {
                    out.push(line);
                    return Ok(());
                }
            }
        }
    }

    fn close(&mut self, name: &str) -> Result<(), String> {
        let s = self
            .streams
            .remove(name)
            .ok_or_else(|| format!("stream {name} is not open"))?;
        s.task.abort();
        Ok(())
    }
}

/// The reply to a progress request: watch_id -1, no events, neither
/// created nor canceled (a failed create also carries watch_id -1).
fn is_progress_reply(r: &WatchResponse) -> bool {
    r.watch_id == -1 && !r.created && !r.canceled && r.events.is_empty()
}

/// The next response of `s`, or the transcript line ending the wait:
/// `timed out after ..`, the stream's error, or `stream ended`.
async fn next_item(
    s: &mut Stream,
    deadline: tokio::time::Instant,
) -> Result<WatchResponse, String> {
    if s.ended {
        return Err("error: stream has ended".into());
    }
    let item = tokio::time::timeout_at(deadline, s.items.recv())
        .await
        .map_err(|_| format!("timed out after {RECV_TIMEOUT:?}"))?;
    match item {
        Some(Item::Response(r)) => Ok(r),
        Some(Item::Error(status)) => {
            s.ended = true;
            let mut line = Vec::new();
            render::error(&mut line, &status);
            Err(line.concat())
        }
        Some(Item::End) | None => {
            s.ended = true;
            Err("stream ended".into())
        }
    }
}

/// The task running one Watch RPC: forwards every response, then the
/// error or end of stream.
async fn pump(
    mut client: WatchClient<Channel>,
    request: tonic::Request<UnboundedReceiverStream<WatchRequest>>,
    tx: UnboundedSender<Item>,
) {
    let mut responses = match client.watch(request).await {
        Ok(r) => r.into_inner(),
        Err(status) => {
            let _ = tx.send(Item::Error(status));
            return;
        }
    };
    loop {
        let item = match responses.message().await {
            Ok(Some(r)) => Item::Response(r),
            Ok(None) => Item::End,
            Err(status) => Item::Error(status),
        };
        let last = !matches!(item, Item::Response(_));
        if tx.send(item).is_err() || last {
            return;
        }
    }
}
