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
//! forwarded write) and `ReadIndex` (the index a linearizable read waits for).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tonic::transport::{Channel, Endpoint};

use super::{NodeId, TypeConfig};
use crate::error::EtcdError;
use crate::pb::raft::raft_client::RaftClient;
use crate::pb::raft::GroupRequest;

/// How long a forwarded write or ReadIndex may take before the client gets
/// a retryable timeout.
/// Longer than the raft leader's own proposal timeout, so that the leader's
/// answer (even "request timed out") normally arrives.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

/// The answer to a forwarded request: the result, or why there is none.
#[derive(Debug, Serialize, Deserialize)]
pub enum Remote<T> {
    Ok(T),
    Etcd(EtcdError),
    Failed(String),
}

/// Why a call to a peer failed.
#[derive(Debug)]
pub enum CallError {
    /// The peer could not be reached, or does not run the group (yet).
    Unreachable(String),
    /// The peer answered with something this node cannot decode.
    Network(String),
}

/// The RPCs of `armada.raft.v1.Raft`.
#[derive(Clone, Copy, Debug)]
pub enum Rpc {
    AppendEntries,
    Vote,
    InstallSnapshot,
    Propose,
    ReadIndex,
}

/// One channel per peer node, shared by every group of this node.
pub struct Peers {
    channels: Mutex<HashMap<NodeId, (String, RaftClient<Channel>)>>,
}

impl Peers {
    pub fn new() -> Arc<Peers> {
        Arc::new(Peers {
            channels: Mutex::new(HashMap::new()),
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
            .map_err(|e| CallError::Unreachable(format!("node {target} at {addr:?}: {e}")))?
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true);
        let client = RaftClient::new(endpoint.connect_lazy())
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
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
            Rpc::ReadIndex => client.read_index(request).await,
        }
        .map_err(|s| CallError::Unreachable(format!("node {target} ({addr}): {}", s.message())))?;
        bincode::deserialize(&reply.into_inner().payload)
            .map_err(|e| CallError::Network(format!("node {target} ({addr}): bad reply: {e}")))
    }
}

/// openraft's network factory for one group.
#[derive(Clone)]
pub struct Network {
    pub peers: Arc<Peers>,
    pub group: String,
}

pub struct Peer {
    peers: Arc<Peers>,
    group: String,
    target: NodeId,
    addr: String,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        Peer {
            peers: self.peers.clone(),
            group: self.group.clone(),
            target,
            addr: node.addr.clone(),
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
                CallError::Unreachable(m) => {
                    RPCError::Unreachable(Unreachable::new(&std::io::Error::other(m)))
                }
                CallError::Network(m) => {
                    RPCError::Network(NetworkError::new(&std::io::Error::other(m)))
                }
            })?;
        reply.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

/// Bytes of log entries in one AppendEntries. openraft bounds a request by
/// entry count only, and an entry can hold megabytes (a batch of writes),
/// while the request must complete within one heartbeat interval; a larger
/// request would time out, look like a dead leader and start elections.
const APPEND_BUDGET: u64 = 256 << 10;

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

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.send(Rpc::Vote, &rpc, &option).await
    }
}
