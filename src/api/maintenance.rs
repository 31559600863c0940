//! etcd's Maintenance service for one table: Status, Alarm, Hash, HashKV and
//! Defragment. Alarms are table state raised and cleared through the log
//! (`kv::alarm`); GET reads this member's copy. Snapshot, MoveLeader and Downgrade are refused with
//! `Unimplemented`: a bbolt snapshot cannot be produced from LMDB, and
//! leadership transfer and downgrades belong to the cluster work.

use std::pin::Pin;
use std::sync::Arc;

use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::{status, Context};
use crate::kv::alarm::AlarmState;
use crate::kv::command::{Applied, Command};
use crate::kv::MvccRead;
use crate::pb::etcdserverpb::maintenance_server::Maintenance;
use crate::pb::etcdserverpb::{
    alarm_request, AlarmMember, AlarmRequest, AlarmResponse, AlarmType, DefragmentRequest,
    DefragmentResponse, DowngradeRequest, DowngradeResponse, HashKvRequest, HashKvResponse,
    HashRequest, HashResponse, MoveLeaderRequest, MoveLeaderResponse, SnapshotRequest,
    SnapshotResponse, StatusRequest, StatusResponse,
};

pub(crate) struct MaintenanceService {
    pub ctx: Arc<Context>,
}

/// An alarm as etcd's Status lists it (Go's `AlarmMember.String()`).
fn alarm_text(a: &AlarmMember) -> String {
    let name = AlarmType::try_from(a.alarm).map_or("UNKNOWN", |t| t.as_str_name());
    format!("memberID:{} alarm:{} ", a.member_id, name)
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(
        &self,
        request: Request<AlarmRequest>,
    ) -> Result<Response<AlarmResponse>, Status> {
        let group = self.ctx.group(request.metadata()).await?;
        let metadata = request.metadata().clone();
        let req = request.into_inner();
        let mut resp = if req.action == alarm_request::AlarmAction::Get as i32 {
            // A read: served from this member's copy, like Status.
            let mut state = AlarmState {
                raised: group.alarms().await.map_err(status)?,
                ..Default::default()
            };
            crate::kv::alarm::apply(&mut state, &req)
        } else {
            match self
                .ctx
                .write(&metadata, &group, Command::Alarm(req))
                .await?
            {
                Applied::Alarm(resp) => resp,
                other => {
                    return Err(Status::internal(format!(
                        "armada: unexpected apply result {other:?}"
                    )))
                }
            }
        };
        // etcd 3.4 answers Alarm without a header.
        resp.header = None;
        Ok(self.ctx.respond(&group, resp))
    }

    async fn status(
        &self,
        request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let group = self.ctx.group(request.metadata()).await?;
        let rev = group
            .read(false, |r| Ok(r.revision_state()?.current))
            .await
            .map_err(status)?;
        let st = group.status().await;
        let mut errors: Vec<String> = (group.alarms().await.map_err(status)?)
            .iter()
            .map(alarm_text)
            .collect();
        if st.leader.is_none() {
            errors.push("etcdserver: no leader".to_string());
        }
        let mut resp = StatusResponse {
            header: None,
            version: self.ctx.version.to_string(),
            db_size: st.db_size as i64,
            leader: st.leader.map_or(0, |l| self.ctx.member_id(l)),
            raft_index: st.last_log_index,
            raft_term: st.term,
            raft_applied_index: st.applied_index,
            errors,
            db_size_in_use: st.db_size_in_use as i64,
            is_learner: false,
        };
        self.ctx.fill(&group, &mut resp.header, Some(rev));
        Ok(Response::new(resp))
    }

    async fn defragment(
        &self,
        request: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        // This node's copy of the table, as etcd defragments one member.
        let group = self.ctx.group(request.metadata()).await?;
        group.defragment().await.map_err(status)?;
        Ok(Response::new(DefragmentResponse { header: None }))
    }

    async fn hash(&self, request: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        let group = self.ctx.group(request.metadata()).await?;
        let (hash, rev) = group
            .read(false, |r| Ok((r.hash_all()?, r.revision_state()?.current)))
            .await
            .map_err(status)?;
        let mut resp = HashResponse { header: None, hash };
        self.ctx.fill(&group, &mut resp.header, Some(rev));
        Ok(Response::new(resp))
    }

    async fn hash_kv(
        &self,
        request: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        let group = self.ctx.group(request.metadata()).await?;
        let requested = request.into_inner().revision;
        let (hash, state) = group
            .read(false, move |r| {
                let state = r.revision_state()?;
                let rev = crate::kv::range::check_revision(requested, state)?;
                Ok((r.hash_kv(rev)?, state))
            })
            .await
            .map_err(status)?;
        let mut resp = HashKvResponse {
            header: None,
            hash,
            compact_revision: state.compacted,
        };
        self.ctx.fill(&group, &mut resp.header, Some(state.current));
        Ok(Response::new(resp))
    }

    type SnapshotStream = Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

    async fn snapshot(
        &self,
        _request: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        Err(Status::unimplemented(
            "armada: etcd (bbolt) snapshots are not available; use `armada backup`",
        ))
    }

    async fn move_leader(
        &self,
        _request: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        Err(Status::unimplemented(
            "armada: MoveLeader is not supported yet",
        ))
    }

    async fn downgrade(
        &self,
        _request: Request<DowngradeRequest>,
    ) -> Result<Response<DowngradeResponse>, Status> {
        Err(Status::unimplemented("armada: Downgrade is not supported"))
    }
}
