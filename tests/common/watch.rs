//! Watch streams for the integration tests, over raw tonic (so tests see
//! every response as the server framed it).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use armada::pb::etcdserverpb::watch_client::WatchClient;
use armada::pb::etcdserverpb::{
    watch_request::RequestUnion, WatchCreateRequest, WatchRequest, WatchResponse,
};
use armada::pb::mvccpb::Event;
use tonic::transport::Channel;
use tonic::Streaming;

use super::{wait_until_every, POLL};

/// One Watch stream: requests go in through `send`, responses come out of
/// `next`.
pub struct WatchStream {
    tx: tokio::sync::mpsc::UnboundedSender<WatchRequest>,
    responses: Streaming<WatchResponse>,
}

impl WatchStream {
    /// Opens a stream on `table` (`None`: the node's default table).
    pub async fn open(ch: &Channel, table: Option<&str>) -> WatchStream {
        match table {
            Some(t) => WatchStream::open_with(ch, &[(armada::TABLE_HEADER, t)]).await,
            None => WatchStream::open_with(ch, &[]).await,
        }
    }

    /// Opens a stream with these gRPC metadata entries.
    pub async fn open_with(ch: &Channel, metadata: &[(&'static str, &str)]) -> WatchStream {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut req = tonic::Request::new(tokio_stream::wrappers::UnboundedReceiverStream::new(rx));
        for (key, value) in metadata {
            req.metadata_mut().insert(*key, value.parse().unwrap());
        }
        let responses = WatchClient::new(ch.clone())
            .max_decoding_message_size(usize::MAX)
            .watch(req)
            .await
            .expect("open a watch stream")
            .into_inner();
        WatchStream { tx, responses }
    }

    pub fn create(&self, req: WatchCreateRequest) {
        self.send(RequestUnion::CreateRequest(req));
    }

    pub fn send(&self, req: RequestUnion) {
        self.tx
            .send(WatchRequest {
                request_union: Some(req),
            })
            .expect("watch stream open");
    }

    /// The next response, failing the test after 30 s.
    pub async fn next(&mut self) -> WatchResponse {
        tokio::time::timeout(Duration::from_secs(30), self.responses.message())
            .await
            .expect("no watch response within 30 s")
            .expect("watch stream failed")
            .expect("watch stream ended")
    }
}

impl WatchStream {
    /// Waits (up to 30 s) for the stream to fail, skipping responses, and
    /// returns its error.
    pub async fn error(&mut self) -> tonic::Status {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match tokio::time::timeout_at(deadline, self.responses.message()).await {
                Err(_) => panic!("the watch stream did not fail within 30 s"),
                Ok(Ok(Some(_))) => {}
                Ok(Ok(None)) => panic!("the watch stream ended without an error"),
                Ok(Err(status)) => return status,
            }
        }
    }
}

/// Every response of one watch stream (one create request), recorded in the
/// background.
pub struct Recorder {
    responses: Arc<Mutex<Vec<WatchResponse>>>,
    _task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    pub async fn start(ch: &Channel, table: Option<&str>, create: WatchCreateRequest) -> Recorder {
        let mut stream = WatchStream::open(ch, table).await;
        stream.create(create);
        let responses = Arc::new(Mutex::new(Vec::new()));
        let sink = responses.clone();
        let task = tokio::spawn(async move {
            while let Ok(Some(resp)) = stream.responses.message().await {
                sink.lock().unwrap().push(resp);
            }
        });
        Recorder {
            responses,
            _task: task,
        }
    }

    /// The responses received so far.
    pub fn responses(&self) -> Vec<WatchResponse> {
        self.responses.lock().unwrap().clone()
    }

    /// The events received so far, grouped by revision, in order.
    pub fn revisions(&self) -> Vec<(i64, Vec<Event>)> {
        let mut out: Vec<(i64, Vec<Event>)> = Vec::new();
        for resp in self.responses.lock().unwrap().iter() {
            for e in &resp.events {
                let rev = e.kv.as_ref().unwrap().mod_revision;
                match out.last_mut() {
                    Some((r, evs)) if *r == rev => evs.push(e.clone()),
                    _ => out.push((rev, vec![e.clone()])),
                }
            }
        }
        out
    }

    pub fn canceled(&self) -> Option<WatchResponse> {
        (self.responses.lock().unwrap().iter())
            .find(|r| r.canceled)
            .cloned()
    }

    /// Waits until events through `revision` arrived.
    pub async fn wait_through(&self, revision: i64) {
        let what = format!("events through {revision} (last revision, canceled)");
        wait_until_every(&what, Duration::from_secs(30), POLL, async || {
            let last = self.revisions().last().map(|(r, _)| *r);
            if last.unwrap_or(0) >= revision {
                Ok(())
            } else {
                Err((last, self.canceled()))
            }
        })
        .await;
    }
}
