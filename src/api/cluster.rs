//! etcd's Cluster service. Membership is the static member set of this
//! node's cluster; runtime membership changes are refused.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::Context;
use crate::pb::etcdserverpb::cluster_server::Cluster;
use crate::pb::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};

pub struct ClusterService {
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
        let m = &self.ctx.member;
        let mut resp = MemberListResponse {
            header: None,
            members: vec![Member {
                id: m.id,
                name: m.name.clone(),
                peer_ur_ls: m.peer_urls.clone(),
                client_ur_ls: m.client_urls.clone(),
                is_learner: false,
            }],
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
