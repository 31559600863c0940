//! etcd's Cluster service. Membership is the static member set of this
//! node's cluster (`--raft.initial-members`); names and client URLs are what
//! each member registered in the metadata group (empty until it has, like an
//! unstarted etcd member). Runtime membership changes are refused.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{status, Context};
use crate::pb::etcdserverpb::cluster_server::Cluster;
use crate::pb::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};

pub(crate) struct ClusterService {
    pub ctx: Arc<Context>,
}

fn static_membership() -> Status {
    Status::unimplemented("armada: cluster membership is static (--raft.initial-members)")
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_list(
        &self,
        request: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        let group = self.ctx.group(request.metadata()).await?;
        let registered = self.ctx.registry.members().await.map_err(status)?;
        let mut members: Vec<Member> = self
            .ctx
            .members
            .iter()
            .map(|(node, m)| {
                let info = registered.get(node).cloned().unwrap_or_default();
                Member {
                    id: m.id,
                    name: info.name,
                    peer_ur_ls: m.peer_urls.clone(),
                    client_ur_ls: info.client_urls,
                    is_learner: false,
                }
            })
            .collect();
        members.sort_by_key(|m| m.id); // etcd lists members by id
        let mut resp = MemberListResponse {
            header: None,
            members,
        };
        self.ctx.fill(&group, &mut resp.header, None);
        Ok(Response::new(resp))
    }

    async fn member_add(
        &self,
        _r: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        Err(static_membership())
    }

    async fn member_remove(
        &self,
        _r: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        Err(static_membership())
    }

    async fn member_update(
        &self,
        _r: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        Err(static_membership())
    }

    async fn member_promote(
        &self,
        _r: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        Err(static_membership())
    }
}
