//! The etcd gRPC surface (KV, Watch, Lease, Lock, Election, Maintenance,
//! Cluster) and Armada's Tables service, as tonic services. Handlers
//! validate, pick the table named by the `armada-table` metadata (or the
//! node's default table), and call its Raft group or watch hub; they never
//! touch LMDB themselves.
//!
//! Auth is not served yet: tonic answers `Unimplemented` for it, which etcd
//! clients report as such.

pub mod cluster;
pub(crate) mod concurrency;
pub mod election;
pub mod kv;
pub mod lease;
pub mod lock;
pub mod maintenance;
pub mod tables;
pub mod watch;
pub mod watch_codec;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tonic::metadata::MetadataMap;
use tonic::Status;

use crate::error::{Error, EtcdError};
use crate::kv::alarm;
use crate::kv::command::{Applied, Command};
use crate::kv::MvccRead;
use crate::pb::etcdserverpb::{
    alarm_request, AlarmMember, AlarmRequest, AlarmType, ResponseHeader,
};
use crate::raft::group::RaftGroup;
use crate::raft::registry::Registry;
use crate::raft::state_machine::replicated_state;
use crate::raft::NodeId;

pub(crate) use crate::{EPOCH_HEADER, TABLE_HEADER};

/// This member as etcd clients see it.
#[derive(Clone, Debug)]
pub struct Member {
    pub id: u64,
    pub name: String,
    pub client_urls: Vec<String>,
    pub peer_urls: Vec<String>,
}

/// A write's answer from the leader cluster, with the epoch of the table
/// incarnation it was applied to ([`EPOCH_HEADER`]; `None` from a leader
/// that does not send it).
pub struct Forwarded {
    pub applied: Applied,
    pub epoch: Option<u64>,
}

/// Where a follower cluster sends its clients' writes: the leader cluster.
/// (Implemented by `replication::follower`; the api layer only calls it.)
#[tonic::async_trait]
pub trait Upstream: Send + Sync {
    /// Runs `cmd` on the leader cluster's `table` and returns its result
    /// there; the leader's etcd errors come back unchanged.
    async fn write(&self, table: &str, cmd: Command) -> Result<Forwarded, Status>;

    /// The leader cluster's etcd API, for what is not a command: lease
    /// keep-alives and TTLs, locks and elections. Requests name their
    /// table with [`TABLE_HEADER`].
    fn channel(&self) -> tonic::transport::Channel;
}

/// How long a write through a follower waits for its revision to be
/// replicated back before the client is told it committed upstream only.
pub(crate) const READ_YOUR_WRITES_WAIT: Duration = Duration::from_secs(10);

/// What every handler needs: the tables and who we are.
pub struct Context {
    /// Set on a follower cluster: writes go to the leader cluster.
    pub upstream: Option<Arc<dyn Upstream>>,
    pub registry: Arc<Registry>,
    pub default_table: String,
    /// The most tables Tables.Create allows (`--tables.max`).
    pub max_tables: usize,
    /// The largest response sent (`--api.max-send-bytes`, gRPC's send limit).
    pub send_limit: u64,
    pub cluster_id: u64,
    pub node_id: NodeId,
    /// This node as a member.
    pub member: Member,
    /// Every member of the cluster by raft node id, with ids and peer URLs
    /// (names and client URLs come from the metadata group).
    pub members: BTreeMap<NodeId, Member>,
    pub version: &'static str,
    /// etcd's minimum lease TTL: 1.5 election timeouts, in whole seconds.
    pub min_lease_ttl: i64,
    /// Picks the ids of leases granted without one.
    pub lease_ids: lease::IdGen,
    pub metrics: ApiMetrics,
}

/// Numbers the API layer measures, for `/metrics`.
pub struct ApiMetrics {
    /// Seconds from a keep-alive request to its answer.
    pub keepalive_seconds: prometheus::Histogram,
    /// Lock and Campaign calls waiting for their predecessors.
    pub lock_waiters: prometheus::IntGauge,
}

impl Default for ApiMetrics {
    fn default() -> Self {
        let opts = prometheus::HistogramOpts::new(
            "armada_lease_keepalive_seconds",
            "Time to answer a lease keep-alive (through the table's raft leader).",
        )
        .buckets(prometheus::exponential_buckets(0.0005, 2.0, 14).expect("valid buckets"));
        ApiMetrics {
            keepalive_seconds: prometheus::Histogram::with_opts(opts).expect("valid histogram"),
            lock_waiters: prometheus::IntGauge::new(
                "armada_lock_waiters",
                "Lock and Campaign calls waiting for the key before theirs.",
            )
            .expect("valid gauge"),
        }
    }
}

impl Context {
    /// The etcd member id of a raft node of this cluster (0 if unknown).
    pub fn member_id(&self, node: NodeId) -> u64 {
        self.members.get(&node).map_or(0, |m| m.id)
    }

    /// The name of the table a request is for.
    pub(crate) fn table_name(&self, metadata: &MetadataMap) -> Result<String, Status> {
        match metadata.get(TABLE_HEADER) {
            Some(v) => Ok(v
                .to_str()
                .map_err(|_| {
                    Status::invalid_argument("armada: armada-table metadata is not ASCII")
                })?
                .to_string()),
            None => Ok(self.default_table.clone()),
        }
    }

    /// The group of the table a request is for; honours `hasleader`.
    pub async fn group(&self, metadata: &MetadataMap) -> Result<Arc<RaftGroup>, Status> {
        let name = self.table_name(metadata)?;
        let group = self.registry.get(&name).await.map_err(Status::from)?;
        if metadata.get("hasleader").is_some_and(|v| v == "true") && !group.has_leader() {
            return Err(EtcdError::NoLeader.into());
        }
        Ok(group)
    }

    /// Completes a response header the way etcd's `header.fill` does.
    pub fn fill(
        &self,
        group: &RaftGroup,
        header: &mut Option<ResponseHeader>,
        revision: Option<i64>,
    ) {
        let h = header.get_or_insert_with(ResponseHeader::default);
        h.cluster_id = self.cluster_id;
        h.member_id = self.member.id;
        h.raft_term = group.term();
        if let Some(rev) = revision {
            if h.revision == 0 {
                h.revision = rev;
            }
        }
    }
}

impl Context {
    /// Runs a write: on a leader cluster through the table's Raft group; on
    /// a follower cluster on the leader cluster, then waits until this
    /// node's copy of the table has applied the write's revision, so the
    /// client reads its own write here. (Read-only Txns never come here:
    /// the KV service serves them like Ranges.)
    pub async fn write(
        &self,
        metadata: &MetadataMap,
        group: &Arc<RaftGroup>,
        cmd: Command,
    ) -> Result<Applied, Status> {
        // etcd's quota check (`quotaKVServer`): a member short of space
        // raises NOSPACE for itself, and the alarm caps every member.
        if alarm::grows(&cmd) && group.space_low(cmd.encoded_len()) {
            self.raise_no_space(group).await;
            return Err(EtcdError::NoSpace.into());
        }
        let Some(up) = &self.upstream else {
            return group.write(cmd).await.map_err(status);
        };
        // Leases change without a revision: wait for the lease itself too.
        let lease = match &cmd {
            Command::LeaseRevoke(r) => Some((r.id, false)),
            _ => None,
        };
        let Forwarded { applied, epoch } = up.write(&self.table_name(metadata)?, cmd).await?;
        let revision = applied.header().map_or(0, |h| h.revision);
        let lease = match &applied {
            Applied::LeaseGrant(r) => Some((r.id, true)),
            _ => lease,
        };
        // The write may land in another incarnation of the table than the
        // one this request started on (the leader re-created it): when the
        // follower swaps incarnations, the wait goes on with the new one.
        let table = self.table_name(metadata)?;
        let deadline = tokio::time::Instant::now() + READ_YOUR_WRITES_WAIT;
        let mut current = group.clone();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let replicated = current.wait_until(left, move |r| {
                Ok(
                    epoch.is_none_or(|e| replicated_state(r).is_ok_and(|(_, held)| held == e))
                        && r.revision_state()?.current >= revision
                        && lease.is_none_or(|(id, exists)| {
                            r.lease(id).is_ok_and(|l| l.is_some() == exists)
                        }),
                )
            });
            if replicated.await {
                break;
            }
            if left.is_zero() {
                return Err(Status::deadline_exceeded(format!(
                    "armada: the write committed on the leader cluster at revision {revision}, \
                     but this follower has not replicated it yet"
                )));
            }
            match self.registry.get(&table).await {
                Ok(next) if !Arc::ptr_eq(&next, &current) => current = next,
                // The same incarnation failed a read, or none is running
                // (the follower mirrors a deletion before the re-creation):
                // look again shortly. The write is committed: never an error
                // other than the deadline's, or a client would retry it.
                _ => tokio::time::sleep(Duration::from_millis(50).min(left)).await,
            }
        }
        Ok(applied)
    }
}

impl Context {
    /// A write's response; a leader cluster's carries the table's epoch
    /// ([`EPOCH_HEADER`]) for follower clusters.
    pub(crate) fn respond<T>(&self, group: &RaftGroup, resp: T) -> tonic::Response<T> {
        let mut response = tonic::Response::new(resp);
        if let (None, Some(epoch)) = (&self.upstream, group.epoch()) {
            response.metadata_mut().insert(EPOCH_HEADER, epoch.into());
        }
        response
    }

    /// Proposes this member's NOSPACE alarm unless the table has it. A
    /// follower cluster's tables hold only the leader cluster's state, so
    /// there a member short of space refuses writes without an alarm.
    async fn raise_no_space(&self, group: &RaftGroup) {
        if self.upstream.is_some() {
            return;
        }
        let nospace = AlarmType::Nospace as i32;
        let mine = |a: &AlarmMember| a.member_id == self.member.id && a.alarm == nospace;
        if group
            .alarms()
            .await
            .is_ok_and(|raised| raised.iter().any(mine))
        {
            return;
        }
        let raise = Command::Alarm(AlarmRequest {
            action: alarm_request::AlarmAction::Activate as i32,
            member_id: self.member.id,
            alarm: nospace,
        });
        if let Err(e) = group.write(raise).await {
            tracing::warn!(table = %group.table, "raising the NOSPACE alarm: {e}");
        }
    }
}

pub fn status(e: impl Into<Error>) -> Status {
    e.into().into()
}

/// A member's etcd id: a function of its raft node id and peer URL, so every
/// node computes the same id for every member.
pub fn member_id(node: NodeId, peer_url: &str) -> u64 {
    stable_id(&format!("armada-member/{node}/{peer_url}"))
}

/// A stable 64-bit id from a string, for member and cluster ids (FNV-1a).
pub(crate) fn stable_id(s: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}
