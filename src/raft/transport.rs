//! The Raft transport between nodes (server half): `armada.raft.v1.Raft`
//! on `--raft.listen-address`. Each request names its group; a group this
//! node does not run (yet, or any more) is `NotFound`, which the sender
//! treats as an unreachable peer and retries.

use std::sync::Arc;

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use super::group::RaftGroup;
use super::lease::LeaseQuery;
use super::network::Remote;
use super::registry::Registry;
use super::{NodeId, TypeConfig};
use crate::error::Error;
use crate::kv::command::{Command, Replicated};
use crate::pb::raft::raft_server::Raft;
use crate::pb::raft::{GroupReply, GroupRequest};

pub(crate) struct RaftService {
    pub registry: Arc<Registry>,
}

fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, Status> {
    bincode::deserialize(payload)
        .map_err(|e| Status::invalid_argument(format!("armada: undecodable raft message: {e}")))
}

fn reply<T: Serialize>(value: &T) -> Result<Response<GroupReply>, Status> {
    let payload = bincode::serialize(value).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(GroupReply { payload }))
}

/// A crate error as the forwarding node should see it.
fn remote<T>(r: crate::error::Result<T>) -> Remote<T> {
    match r {
        Ok(v) => Remote::Ok(v),
        Err(Error::Etcd(e)) => Remote::Etcd(e),
        Err(e) => Remote::Failed(e.to_string()),
    }
}

impl RaftService {
    async fn group(&self, req: &GroupRequest) -> Result<Arc<RaftGroup>, Status> {
        self.registry
            .group_by_id(&req.group)
            .await
            .ok_or_else(|| Status::not_found(format!("armada: no raft group {:?} here", req.group)))
    }
}

#[tonic::async_trait]
impl Raft for RaftService {
    async fn append_entries(
        &self,
        request: Request<GroupRequest>,
    ) -> Result<Response<GroupReply>, Status> {
        let req = request.into_inner();
        let group = self.group(&req).await?;
        let rpc: AppendEntriesRequest<TypeConfig> = decode(&req.payload)?;
        reply(&group.raft().append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<GroupRequest>) -> Result<Response<GroupReply>, Status> {
        let req = request.into_inner();
        let group = self.group(&req).await?;
        let rpc: VoteRequest<NodeId> = decode(&req.payload)?;
        reply(&group.raft().vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<GroupRequest>,
    ) -> Result<Response<GroupReply>, Status> {
        let req = request.into_inner();
        let group = self.group(&req).await?;
        let rpc: InstallSnapshotRequest<TypeConfig> = decode(&req.payload)?;
        let r: Result<_, RaftError<NodeId, InstallSnapshotError>> =
            group.raft().install_snapshot(rpc).await;
        reply(&r)
    }

    async fn propose(
        &self,
        request: Request<GroupRequest>,
    ) -> Result<Response<GroupReply>, Status> {
        let req = request.into_inner();
        let group = self.group(&req).await?;
        let cmd: Command = decode(&req.payload)?;
        reply(&remote(group.write_as_leader(cmd).await))
    }

    async fn propose_replicated(
        &self,
        request: Request<GroupRequest>,
    ) -> Result<Response<GroupReply>, Status> {
        let req = request.into_inner();
        let group = self.group(&req).await?;
        let batch: Replicated = decode(&req.payload)?;
        reply(&remote(group.write_replicated_as_leader(batch).await))
    }

    async fn read_index(
        &self,
        request: Request<GroupRequest>,
    ) -> Result<Response<GroupReply>, Status> {
        let req = request.into_inner();
        let group = self.group(&req).await?;
        reply(&remote(group.read_index_as_leader().await))
    }

    async fn lease(&self, request: Request<GroupRequest>) -> Result<Response<GroupReply>, Status> {
        let req = request.into_inner();
        let group = self.group(&req).await?;
        let query: LeaseQuery = decode(&req.payload)?;
        reply(&remote(group.lease_query_as_leader(query).await))
    }
}
