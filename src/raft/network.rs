//! The Raft transport between the nodes of one cluster (client half; the
//! server half is [`super::transport`]).
//!
//! [`Peers`] keeps one lazily connected tonic channel per peer node; every
//! Raft group of the node (each table's and the metadata group's) sends its
//! messages over it, naming its group in each request. A peer that is down
//! costs each call at most its timeout and is reported `Unreachable`, which
//! openraft retries with backoff, so one dead peer never stalls the others.
//!
//! Besides openraft's three RPCs, the transport carries the two requests a
//! raft follower sends its raft leader on a client's behalf: `Propose` (a
//! forwarded write), `ReadIndex` (the index a linearizable read waits for)
//! and `Lease` (a keep-alive or TimeToLive, which only the raft leader knows).
//!
//! With `--raft.*-filename` set, every channel is mutual TLS (see
//! [`crate::tls`]): this node presents its certificate, re-read from disk
//! when it changes, and accepts only a peer certificate signed by the CA.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{
    Fatal, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed,
    StreamingError, Unreachable,
};
use openraft::network::snapshot_transport::{Chunked, SnapshotTransport};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, OptionalSend, Snapshot, Vote};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tonic::transport::{Channel, Endpoint};

use super::{NodeId, TypeConfig};
use crate::error::EtcdError;
use crate::pb::raft::raft_client::RaftClient;
use crate::pb::raft::GroupRequest;
use crate::tls::TlsConnector;

/// How long a forwarded write or ReadIndex may take before the client gets
/// a retryable timeout.
/// Longer than the raft leader's own proposal timeout, so that the leader's
/// answer (even "request timed out") normally arrives.
pub(crate) const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

/// The answer to a forwarded request: the result, or why there is none.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Remote<T> {
    Ok(T),
    Etcd(EtcdError),
    Failed(String),
}

/// Why a call to a peer failed. The split matters to forwarded writes: one
/// that was never sent may be retried with the next raft leader, one whose
/// answer was lost may have committed and must not be.
#[derive(Debug)]
pub enum CallError {
    /// The request never reached the group: no connection could be made,
    /// or the peer does not run the group (yet, or any more).
    NotSent(String),
    /// The request may have been delivered, but no answer came back (the
    /// peer died or the link broke mid-call, or the call timed out).
    Lost(String),
    /// The peer answered with something this node cannot decode.
    Network(String),
}

impl CallError {
    fn from_status(target: NodeId, addr: &str, s: &tonic::Status) -> CallError {
        let m = format!("node {target} ({addr}): {}", s.message());
        if connect_failed(s) || s.code() == tonic::Code::NotFound {
            CallError::NotSent(m)
        } else {
            CallError::Lost(m)
        }
    }
}

/// True if `s` reports a connection that was never made: tonic answers
/// with the connector's error in its source chain, our TLS connector's
/// [`ConnectFailed`](crate::tls::ConnectFailed), or (plain TCP) an I/O
/// error of the connect phase (refused, no route, no address). Anything
/// else, a reset mid-call say, may have delivered the request. A connect
/// timeout counts as lost: not retried, the safe side.
fn connect_failed(s: &tonic::Status) -> bool {
    use std::io::ErrorKind::*;
    let mut source = std::error::Error::source(s);
    while let Some(e) = source {
        if e.is::<crate::tls::ConnectFailed>() {
            return true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                ConnectionRefused | AddrNotAvailable | HostUnreachable | NetworkUnreachable
            );
        }
        source = e.source();
    }
    false
}

/// The RPCs of `armada.raft.v1.Raft`.
#[derive(Clone, Copy, Debug)]
pub enum Rpc {
    AppendEntries,
    Vote,
    InstallSnapshot,
    Propose,
    ProposeReplicated,
    ReadIndex,
    Lease,
}

/// The largest Raft message either side accepts (a bound, instead of none,
/// so a broken or hostile peer cannot make a node buffer gigabytes). The
/// largest messages sent are an AppendEntries of [`APPEND_BUDGET`] plus one
/// entry, and an entry is at most one proposer batch (about
/// [`APPEND_BUDGET`] of commands plus the one that overflowed it, itself at
/// most etcd's 1.5 MiB request) or a follower cluster's replicated batch
/// (also split at about [`APPEND_BUDGET`], one leader entry at least);
/// snapshot chunks are 1 MiB. 64 MiB leaves ample headroom.
pub(crate) const MAX_RAFT_MESSAGE: usize = 64 << 20;

/// One channel per peer node, shared by every group of this node.
pub struct Peers {
    channels: Mutex<HashMap<NodeId, (String, RaftClient<Channel>)>>,
    /// Mutual TLS to peers; plain TCP when unset.
    tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
}

impl Peers {
    pub fn new(tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>) -> Arc<Peers> {
        Arc::new(Peers {
            channels: Mutex::new(HashMap::new()),
            tls,
        })
    }

    fn client(&self, target: NodeId, addr: &str) -> Result<RaftClient<Channel>, CallError> {
        let mut channels = self.channels.lock().unwrap();
        if let Some((known, client)) = channels.get(&target) {
            if known == addr {
                return Ok(client.clone());
            }
        }
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| CallError::NotSent(format!("node {target} at {addr:?}: {e}")))?
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true);
        // With TLS, our own connector does TCP and the handshake (tonic's
        // own TLS cannot re-read a rotated client certificate); the URI
        // stays `http://` so tonic adds no TLS layer of its own.
        // connect_timeout still bounds the whole connect.
        let channel = match &self.tls {
            Some(tls) => endpoint.connect_with_connector_lazy(TlsConnector(tls.clone())),
            None => endpoint.connect_lazy(),
        };
        let client = RaftClient::new(channel)
            .max_decoding_message_size(MAX_RAFT_MESSAGE)
            .max_encoding_message_size(MAX_RAFT_MESSAGE);
        channels.insert(target, (addr.to_string(), client.clone()));
        Ok(client)
    }

    /// Sends one bincode-encoded request of `group` to `target` and decodes its reply.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        target: NodeId,
        addr: &str,
        group: &str,
        rpc: Rpc,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, CallError> {
        let payload = bincode::serialize(req).map_err(|e| CallError::Network(e.to_string()))?;
        let mut request = tonic::Request::new(GroupRequest {
            group: group.to_string(),
            payload,
        });
        request.set_timeout(timeout);
        let mut client = self.client(target, addr)?;
        let reply = match rpc {
            Rpc::AppendEntries => client.append_entries(request).await,
            Rpc::Vote => client.vote(request).await,
            Rpc::InstallSnapshot => client.install_snapshot(request).await,
            Rpc::Propose => client.propose(request).await,
            Rpc::ProposeReplicated => client.propose_replicated(request).await,
            Rpc::ReadIndex => client.read_index(request).await,
            Rpc::Lease => client.lease(request).await,
        }
        .map_err(|s| CallError::from_status(target, addr, &s))?;
        bincode::deserialize(&reply.into_inner().payload)
            .map_err(|e| CallError::Network(format!("node {target} ({addr}): bad reply: {e}")))
    }
}

/// openraft's network factory for one group.
#[derive(Clone)]
pub(crate) struct Network {
    pub peers: Arc<Peers>,
    pub group: String,
    /// The group's heartbeat interval, kept up while a snapshot streams.
    pub heartbeat: Duration,
}

#[derive(Clone)]
pub(crate) struct Peer {
    peers: Arc<Peers>,
    group: String,
    target: NodeId,
    addr: String,
    heartbeat: Duration,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        Peer {
            peers: self.peers.clone(),
            group: self.group.clone(),
            target,
            addr: node.addr.clone(),
            heartbeat: self.heartbeat,
        }
    }
}

impl Peer {
    async fn send<Req: Serialize, Resp: DeserializeOwned, E>(
        &self,
        rpc: Rpc,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        E: std::error::Error + DeserializeOwned,
        Result<Resp, RaftError<NodeId, E>>: DeserializeOwned,
    {
        let reply: Result<Resp, RaftError<NodeId, E>> = self
            .peers
            .call(
                self.target,
                &self.addr,
                &self.group,
                rpc,
                req,
                option.hard_ttl(),
            )
            .await
            .map_err(|e| match e {
                CallError::NotSent(m) | CallError::Lost(m) => {
                    RPCError::Unreachable(Unreachable::new(&std::io::Error::other(m)))
                }
                CallError::Network(m) => {
                    RPCError::Network(NetworkError::new(&std::io::Error::other(m)))
                }
            })?;
        reply.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    /// Sends the raft leader's `vote` as an empty AppendEntries every
    /// heartbeat interval, forever. `prev_log_id: None` matches any log, so
    /// it appends, truncates and commits nothing; it only tells the target
    /// that its leader is alive.
    async fn heartbeats(&self, vote: Vote<NodeId>) -> Infallible {
        let beat = AppendEntriesRequest::<TypeConfig> {
            vote,
            prev_log_id: None,
            leader_commit: None,
            entries: Vec::new(),
        };
        let option = RPCOption::new(self.heartbeat);
        let mut ticks = tokio::time::interval(self.heartbeat);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let _: Result<AppendEntriesResponse<NodeId>, _> = self
                .send::<_, _, openraft::error::Infallible>(Rpc::AppendEntries, &beat, &option)
                .await;
        }
    }
}

/// Bytes of log entries in one AppendEntries. openraft bounds a request by
/// entry count only, and an entry can hold megabytes (a batch of writes),
/// while the request must complete within one heartbeat interval; a larger
/// request would time out, look like a dead leader and start elections.
pub(crate) const APPEND_BUDGET: u64 = 256 << 10;

/// How many leading entries fit the budget (at least one, so a big entry still moves).
fn entries_within_budget(entries: &[crate::raft::Entry]) -> usize {
    let mut bytes = 0u64;
    for (i, e) in entries.iter().enumerate() {
        bytes += bincode::serialized_size(e).unwrap_or(u64::MAX / 2);
        if bytes > APPEND_BUDGET && i > 0 {
            return i;
        }
    }
    entries.len()
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        mut rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let keep = entries_within_budget(&rpc.entries);
        if keep == rpc.entries.len() {
            return self.send(Rpc::AppendEntries, &rpc, &option).await;
        }
        // Send a prefix; openraft sends the rest next (PartialSuccess).
        rpc.entries.truncate(keep);
        let last = rpc.entries.last().map(|e| e.log_id);
        match self.send(Rpc::AppendEntries, &rpc, &option).await? {
            AppendEntriesResponse::Success => Ok(AppendEntriesResponse::PartialSuccess(last)),
            other => Ok(other),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.send(Rpc::InstallSnapshot, &rpc, &option).await
    }

    /// Streams a snapshot in chunks (openraft's `Chunked`) while sending
    /// heartbeats beside it. openraft 0.9 sends no heartbeat to a target
    /// with a snapshot in flight, and the target's election timer ignores
    /// chunks, so a transfer longer than the election timeout would make the
    /// target campaign, depose the leader and restart the transfer, forever.
    async fn full_snapshot(
        &mut self,
        vote: Vote<NodeId>,
        snapshot: Snapshot<TypeConfig>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let beats = self.clone();
        tokio::select! {
            sent = Chunked::send_snapshot(self, vote, snapshot, cancel, option) => sent,
            never = beats.heartbeats(vote) => match never {},
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.send(Rpc::Vote, &rpc, &option).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer that refuses the connection was never sent the request; the
    /// decision comes from the error's source chain, not its text.
    #[tokio::test]
    async fn a_refused_connection_is_not_sent() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let peers = Peers::new(None);
        let addr = format!("127.0.0.1:{port}");
        let sent = peers
            .call::<(), ()>(2, &addr, "t.1", Rpc::Vote, &(), Duration::from_secs(5))
            .await;
        assert!(matches!(sent, Err(CallError::NotSent(_))), "{sent:?}");
    }

    /// Over mutual TLS, a handshake that fails (the peer hangs up) sent
    /// nothing either.
    #[tokio::test]
    async fn a_failed_tls_handshake_is_not_sent() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        let pair = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        std::fs::write(&cert, params.self_signed(&pair).unwrap().pem()).unwrap();
        std::fs::write(&key, pair.serialize_pem()).unwrap();
        let paths = crate::tls::TlsPaths {
            cert: cert.clone(),
            key,
            ca: Some(cert),
        };
        let peers = Peers::new(Some(crate::tls::client_config(&paths).unwrap()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                drop(conn);
            }
        });
        let sent = peers
            .call::<(), ()>(2, &addr, "t.1", Rpc::Vote, &(), Duration::from_secs(5))
            .await;
        assert!(matches!(sent, Err(CallError::NotSent(_))), "{sent:?}");
    }
}
