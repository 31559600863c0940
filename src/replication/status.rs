//! `armada.replication.v1.Replication/Status`: the replication state of
//! this node per table, the gRPC twin of REST's `/replication/status`.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::follower::Follower;
use crate::pb::replication::replication_server::Replication;
use crate::pb::replication::{
    ReplicationStatusRequest, ReplicationStatusResponse, TableReplicationStatus,
};
use crate::raft::registry::Registry;

/// On a leader cluster's node: each table and the last leader index a
/// follower can pull from it, by table name.
pub(crate) async fn leader_indexes(registry: &Registry) -> Vec<(String, u64)> {
    let mut out: Vec<_> = (registry.groups().await.iter())
        .map(|g| (g.table.clone(), g.last_applied()))
        .collect();
    out.sort();
    out
}

pub(crate) struct StatusService {
    pub registry: Arc<Registry>,
    /// Set on a follower cluster's node.
    pub follower: Option<Arc<Follower>>,
}

#[tonic::async_trait]
impl Replication for StatusService {
    async fn status(
        &self,
        _request: Request<ReplicationStatusRequest>,
    ) -> Result<Response<ReplicationStatusResponse>, Status> {
        let (cluster, last_error) = match &self.follower {
            Some(f) => (
                self.registry.followed_cluster().await?.unwrap_or_default(),
                f.reconcile_error().unwrap_or_default(),
            ),
            None => (self.registry.cluster_id().await?, String::new()),
        };
        let (role, tables) = match &self.follower {
            Some(f) => {
                let tables = (f.status().into_iter())
                    .map(|(table, s)| TableReplicationStatus {
                        table,
                        state: s.state.name().to_string(),
                        leased: s.leased,
                        epoch: s.epoch,
                        last_applied_index: s.last_applied_index,
                        last_available_index: s.last_available_index,
                        lag_entries: s.lag_entries,
                        lag_seconds: s.lag_seconds,
                        total_requests: s.total_requests,
                        total_events: s.total_events,
                        failed_connects: s.failed_connects,
                        last_error: s.last_error.unwrap_or_default(),
                        last_error_time_ms: s.last_error_time_ms.unwrap_or(0),
                        last_successful_poll_ms: s.last_successful_poll_ms.unwrap_or(0),
                    })
                    .collect();
                ("follower", tables)
            }
            None => {
                let tables = (leader_indexes(&self.registry).await.into_iter())
                    .map(|(table, index)| TableReplicationStatus {
                        table,
                        last_available_index: index,
                        ..Default::default()
                    })
                    .collect();
                ("leader", tables)
            }
        };
        Ok(Response::new(ReplicationStatusResponse {
            role: role.into(),
            tables,
            cluster,
            last_error,
        }))
    }
}
