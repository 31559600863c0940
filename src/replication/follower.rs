//! A follower cluster's side of replication: mirrors the leader cluster's
//! table list, runs one worker per table that tails the leader's log into
//! the local table group, and forwards clients' writes to the leader.
//!
//! - Reconcile (`--replication.reconcile-interval`, and once at start):
//!   tables the leader has and this cluster lacks are created, tables it no
//!   longer has are deleted.
//! - One worker per table; a lease in the metadata group
//!   (`--replication.lease-interval`) lets exactly one node of the follower
//!   cluster replicate a table at a time, and another take over when the
//!   holder dies.
//! - A worker holds a `Log.Replicate` stream open (`follow`), proposes each
//!   message's entries as one [`Replicated`] batch, and on any failure backs
//!   off for `--replication.poll-interval` and resumes from the leader index
//!   the table holds (replays are harmless: applying is idempotent).
//! - `USE_SNAPSHOT` (the leader compacted its log past this follower, or a
//!   new follower of a leader with history) and `EPOCH_CHANGED` (the table
//!   was re-created on the leader) recover from `Snapshot.Stream`: the
//!   snapshot is received into a file (checksums verified), seeds a new
//!   local incarnation of the table (the recovery shard, see
//!   `RaftGroup::seed`), and the metadata group swaps the table over to it
//!   atomically; until then reads are served from the old incarnation.
//!
//! Invariant: nothing but a worker writes into a follower cluster's tables,
//! and only in leader-index order, so revisions equal the leader's.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};
use tonic::Status;

use super::wire::entry_from_wire;
use super::worker_lease;
use super::RemoveOnDrop;
use crate::error::{Error, Result};
use crate::kv::command::{Applied, Command, Replicated, ReplicatedEntry};
use crate::pb::etcdserverpb::kv_client::KvClient;
use crate::pb::etcdserverpb::lease_client::LeaseClient;
use crate::pb::etcdserverpb::maintenance_client::MaintenanceClient;
use crate::pb::replication::log_client::LogClient;
use crate::pb::replication::metadata_client::MetadataClient;
use crate::pb::replication::snapshot_client::SnapshotClient;
use crate::pb::replication::{
    MetadataRequest, ReplicateRequest, ReplicateResponse, Signal, SnapshotRequest,
};
use crate::raft::group::RaftGroup;
use crate::raft::registry::{new_epoch, unix_ms, Registry};
use crate::raft::NodeId;
use crate::table_request;

/// The `armada follower` flags of seed 000.
#[derive(Clone, Debug)]
pub struct FollowerConfig {
    /// The leader cluster's replication API (`host:port`, `http://` or `https://`).
    pub leader_address: String,
    /// Client certificate, key and the CA of the leader's certificate.
    pub tls: Option<super::TlsFiles>,
    pub poll_interval: Duration,
    pub reconcile_interval: Duration,
    pub lease_interval: Duration,
    pub log_rpc_timeout: Duration,
    pub snapshot_rpc_timeout: Duration,
    pub max_snapshot_recv_bytes_per_second: u64,
    pub max_recovery_in_flight: usize,
    pub keepalive_time: Duration,
    pub keepalive_timeout: Duration,
}

/// A worker's state, as in ArangoDB's `applier.state()`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")] // as `name()`
pub enum WorkerState {
    /// Another node of this cluster holds the table's lease.
    #[default]
    Standby,
    /// Caught up and following the leader's commits.
    Tailing,
    /// Applying, behind the leader's last index.
    Lagging,
    /// Loading a snapshot.
    Recovering,
    /// Waiting to retry after an error.
    BackingOff,
}

impl WorkerState {
    /// The state's name in status documents.
    pub fn name(self) -> &'static str {
        match self {
            WorkerState::Standby => "standby",
            WorkerState::Tailing => "tailing",
            WorkerState::Lagging => "lagging",
            WorkerState::Recovering => "recovering",
            WorkerState::BackingOff => "backing_off",
        }
    }
}

/// One table's replication status on this node.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TableStatus {
    pub state: WorkerState,
    pub leased: bool,
    pub epoch: u64,
    pub last_applied_index: u64,
    pub last_available_index: u64,
    pub lag_entries: u64,
    /// Seconds since the table was last caught up (0 while caught up).
    pub lag_seconds: f64,
    pub total_requests: u64,
    pub total_events: u64,
    pub failed_connects: u64,
    pub last_error: Option<String>,
    pub last_error_time_ms: Option<u64>,
    pub last_successful_poll_ms: Option<u64>,
}

pub struct Follower {
    cfg: FollowerConfig,
    registry: Arc<Registry>,
    node_id: NodeId,
    leader: Channel,
    /// `--replication.max-recovery-in-flight` snapshot recoveries at once.
    recoveries: tokio::sync::Semaphore,
    /// Where snapshots are received before they seed a table.
    scratch_dir: PathBuf,
    status: Mutex<BTreeMap<String, TableStatus>>,
    /// Why the last reconcile failed; `None` when it worked.
    reconcile_error: Mutex<Option<String>>,
    workers: tokio::sync::Mutex<HashMap<String, JoinHandle<()>>>,
}

/// Why a tailing session ended early.
enum Ended {
    /// The lease went to another node.
    LostLease,
    /// The table was recovered into a new incarnation from a snapshot.
    Resynced,
}

impl Follower {
    pub fn new(
        cfg: FollowerConfig,
        registry: Arc<Registry>,
        scratch_dir: PathBuf,
    ) -> Result<Arc<Follower>> {
        let address = if cfg.leader_address.contains("://") {
            cfg.leader_address.clone()
        } else if cfg.tls.is_some() {
            format!("https://{}", cfg.leader_address)
        } else {
            format!("http://{}", cfg.leader_address)
        };
        let mut endpoint = Endpoint::from_shared(address)
            .map_err(|e| Error::InvalidInput(format!("--replication.leader-address: {e}")))?;
        if let Some(tls) = &cfg.tls {
            let mut config = tonic::transport::ClientTlsConfig::new();
            if let Some(id) = &tls.identity {
                config = config.identity(tonic::transport::Identity::from_pem(&id.cert, &id.key));
            }
            if let Some(ca) = &tls.ca {
                config = config.ca_certificate(tonic::transport::Certificate::from_pem(ca));
            }
            endpoint = endpoint
                .tls_config(config)
                .map_err(|e| Error::InvalidInput(format!("replication TLS: {e}")))?;
        }
        let leader = endpoint
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(cfg.keepalive_time.max(Duration::from_secs(10)))
            .keep_alive_timeout(cfg.keepalive_timeout)
            .keep_alive_while_idle(true)
            .connect_lazy();
        Ok(Arc::new(Follower {
            node_id: registry.node_id(),
            recoveries: tokio::sync::Semaphore::new(cfg.max_recovery_in_flight.max(1)),
            scratch_dir,
            cfg,
            registry,
            leader,
            status: Mutex::new(BTreeMap::new()),
            reconcile_error: Mutex::new(None),
            workers: tokio::sync::Mutex::new(HashMap::new()),
        }))
    }

    /// Every table's status on this node.
    pub fn status(&self) -> BTreeMap<String, TableStatus> {
        self.status.lock().unwrap().clone()
    }

    /// Why the last reconcile with the leader cluster failed, if it did.
    pub(crate) fn reconcile_error(&self) -> Option<String> {
        self.reconcile_error.lock().unwrap().clone()
    }

    /// The leader cluster identity requests carry: the one recorded, or
    /// none before the first reconcile recorded it.
    async fn follows(&self) -> Result<String> {
        Ok(self.registry.followed_cluster().await?.unwrap_or_default())
    }

    fn update(&self, table: &str, f: impl FnOnce(&mut TableStatus)) {
        f(self
            .status
            .lock()
            .unwrap()
            .entry(table.to_string())
            .or_default());
    }

    fn failed(&self, table: &str, e: &dyn std::fmt::Display) {
        tracing::warn!(table, "replication: {e}");
        self.update(table, |s| {
            s.state = WorkerState::BackingOff;
            s.last_error = Some(e.to_string());
            s.last_error_time_ms = Some(unix_ms());
        });
    }

    /// Reconciles at start and every reconcile interval until `stop`.
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            let result = self.reconcile().await;
            if let Err(e) = &result {
                tracing::warn!("replication: reconciling tables with the leader cluster: {e}");
            }
            *self.reconcile_error.lock().unwrap() = result.err().map(|e| e.to_string());
            tokio::select! {
                _ = tokio::time::sleep(self.cfg.reconcile_interval) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        for (_, worker) in self.workers.lock().await.drain() {
            worker.abort();
        }
    }

    /// Mirrors the leader's table list and runs a worker per table, once
    /// the leader cluster proved to be the one this follower follows (the
    /// first one it ever reached is recorded as that one).
    pub async fn reconcile(self: &Arc<Self>) -> Result<()> {
        let leader = MetadataClient::new(self.leader.clone())
            .get(MetadataRequest {})
            .await
            .map_err(|s| Error::Upstream(format!("Metadata.Get: {s}")))?
            .into_inner();
        if leader.cluster.is_empty() {
            return Err(Error::InvalidInput(
                "the leader cluster did not say which cluster it is (an older Armada?): \
                 its table list is not mirrored"
                    .into(),
            ));
        }
        let follows = self.registry.follow_cluster(&leader.cluster).await?;
        if follows != leader.cluster {
            return Err(Error::WrongLeaderCluster {
                follows,
                found: leader.cluster,
            });
        }
        let leader_tables = leader.tables;
        let want: BTreeMap<String, u64> = leader_tables
            .into_iter()
            .map(|t| (t.name, t.epoch))
            .collect();
        let have: BTreeMap<String, u64> = self.registry.list().await?.into_iter().collect();
        // One table that cannot be created or deleted (a name this node
        // refuses, a failing disk) must not stop the others: the round goes
        // on, its workers run, and the first failure is reported.
        let mut failed = None;
        for name in want.keys().filter(|n| !have.contains_key(*n)) {
            tracing::info!(table = %name, "replication: creating a table of the leader cluster");
            match self.registry.create(name).await {
                Ok(_) | Err(Error::TableExists(_)) => {}
                Err(e) => {
                    tracing::warn!(table = %name, "replication: creating the table: {e}");
                    failed.get_or_insert(e);
                }
            }
        }
        for name in have.keys().filter(|n| !want.contains_key(*n)) {
            tracing::info!(table = %name, "replication: deleting a table the leader cluster deleted");
            match self.registry.delete(name).await {
                Ok(()) | Err(Error::TableNotFound(_)) => {}
                Err(e) => {
                    tracing::warn!(table = %name, "replication: deleting the table: {e}");
                    failed.get_or_insert(e);
                }
            }
        }
        let mut workers = self.workers.lock().await;
        workers.retain(|name, w| {
            let keep = want.contains_key(name) && !w.is_finished();
            if !keep {
                w.abort();
            }
            keep
        });
        self.status
            .lock()
            .unwrap()
            .retain(|name, _| want.contains_key(name));
        for name in want.keys() {
            if !workers.contains_key(name) {
                let me = self.clone();
                let table = name.clone();
                workers.insert(name.clone(), tokio::spawn(me.worker(table)));
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// Replicates `table` whenever this node holds its lease.
    async fn worker(self: Arc<Self>, table: String) {
        let renew = self.cfg.lease_interval / 3;
        loop {
            let lease = self.cfg.lease_interval;
            match worker_lease::acquire(&self.registry, &table, self.node_id, lease).await {
                Ok(true) => {}
                Ok(false) => {
                    self.update(&table, |s| {
                        s.leased = false;
                        s.state = WorkerState::Standby;
                    });
                    tokio::time::sleep(renew).await;
                    continue;
                }
                Err(e) => {
                    self.failed(&table, &format!("replication lease: {e}"));
                    tokio::time::sleep(self.cfg.poll_interval).await;
                    continue;
                }
            }
            self.update(&table, |s| s.leased = true);
            match self.tail(&table).await {
                // Another node runs the table now: this one stands by (a
                // recovery the lost lease ended is not reported as running).
                Ok(Ended::LostLease) => self.update(&table, |s| {
                    s.leased = false;
                    s.state = WorkerState::Standby;
                }),
                Ok(Ended::Resynced) => {}
                Err(e) => {
                    self.failed(&table, &e);
                    tokio::time::sleep(self.cfg.poll_interval).await;
                }
            }
        }
    }

    /// One tailing session: a following `Log.Replicate` stream from the
    /// leader index the table holds, until an error, a signal or a lost lease.
    async fn tail(&self, table: &str) -> Result<Ended> {
        let group = self.registry.get(table).await?;
        let (held, epoch) = group.replicated().await?;
        let request = ReplicateRequest {
            table: table.to_string(),
            // Nothing held yet: take whatever incarnation the leader has.
            epoch: if held == 0 { 0 } else { epoch },
            leader_index: held + 1,
            follow: true,
            cluster: self.follows().await?,
        };
        self.update(table, |s| s.total_requests += 1);
        let mut client = LogClient::new(self.leader.clone()).max_decoding_message_size(usize::MAX);
        let stream = tokio::time::timeout(self.cfg.log_rpc_timeout, client.replicate(request));
        let mut stream = match stream.await {
            Ok(Ok(s)) => s.into_inner(),
            Ok(Err(status)) => {
                if status.code() == tonic::Code::Unavailable {
                    self.update(table, |s| s.failed_connects += 1);
                }
                return Err(Error::Upstream(format!("Log.Replicate: {status}")));
            }
            Err(_) => return Err(Error::Upstream("Log.Replicate: timed out".into())),
        };
        let mut renewed = Instant::now();
        let mut heard = Instant::now();
        let mut caught_up_at = Instant::now();
        // A message that arrived while others were coalesced, not yet handled.
        let mut arrived = None;
        loop {
            // Renew the lease on time even while the stream is idle (the
            // leader may send nothing for seconds), or another node would
            // take the table over while this one still tails it.
            let renew_at = renewed + self.cfg.lease_interval / 3;
            let silent_until = heard + self.cfg.log_rpc_timeout;
            let next = match arrived.take() {
                Some(m) => Some(m),
                None => tokio::select! {
                    m = stream.message() => Some(m),
                    _ = tokio::time::sleep_until(renew_at.min(silent_until).into()) => None,
                },
            };
            let Some(next) = next else {
                if Instant::now() >= silent_until {
                    return Err(Error::Upstream(format!(
                        "Log.Replicate: nothing from the leader for {:?}",
                        self.cfg.log_rpc_timeout
                    )));
                }
                let lease = self.cfg.lease_interval;
                if !worker_lease::acquire(&self.registry, table, self.node_id, lease).await? {
                    return Ok(Ended::LostLease);
                }
                renewed = Instant::now();
                continue;
            };
            heard = Instant::now();
            let mut msg: ReplicateResponse = match next {
                Ok(Some(msg)) => msg,
                Ok(None) => return Err(Error::Upstream("Log.Replicate stream ended".into())),
                Err(status) => return Err(Error::Upstream(format!("Log.Replicate: {status}"))),
            };
            let signal = Signal::try_from(msg.signal).unwrap_or(Signal::None);
            let stale_epoch = held > 0 && msg.epoch != 0 && msg.epoch != epoch;
            if signal == Signal::EpochChanged || stale_epoch {
                tracing::warn!(
                    table,
                    "replication: the table was re-created on the leader cluster; recovering"
                );
                return self.recover(table).await;
            }
            match signal {
                Signal::UseSnapshot => {
                    let held = group.replicated().await?.0;
                    tracing::info!(
                        table,
                        held,
                        "replication: the leader compacted its log past this follower; recovering"
                    );
                    return self.recover(table).await;
                }
                Signal::LeaderBehind => {
                    return Err(Error::Upstream(format!(
                        "the leader node is behind this follower (its last index {})",
                        msg.last_index
                    )))
                }
                _ => {}
            }
            coalesce(&mut stream, &mut msg, &mut arrived);
            let entries = (msg.entries.into_iter())
                .map(entry_from_wire)
                .collect::<Result<Vec<_>>>()?;
            let events = entries.len() as u64;
            let mut applied = None;
            for entries in raft_sized(entries) {
                let batch = Replicated {
                    epoch: msg.epoch,
                    entries,
                };
                applied = Some(group.write_replicated(batch).await?);
            }
            let applied = match applied {
                Some(applied) => applied,
                None => group.replicated().await?.0,
            };
            // Entries without commands are skipped on the leader: `sent_through`
            // says how far this message really brought us.
            let through = applied.max(msg.sent_through);
            let lag = msg.last_index.saturating_sub(through);
            if lag == 0 {
                caught_up_at = Instant::now();
            }
            self.update(table, |s| {
                s.state = if lag == 0 {
                    WorkerState::Tailing
                } else {
                    WorkerState::Lagging
                };
                s.epoch = msg.epoch;
                s.last_applied_index = applied;
                s.last_available_index = msg.last_index;
                s.lag_entries = lag;
                s.lag_seconds = if lag == 0 {
                    0.0
                } else {
                    caught_up_at.elapsed().as_secs_f64()
                };
                s.total_events += events;
                s.last_successful_poll_ms = Some(unix_ms());
            });
        }
    }

    /// Replaces the local table with a snapshot of the leader's: streams
    /// `Snapshot.Stream` into a file (checksums verified, rate-limited,
    /// bounded by the snapshot RPC timeout), seeds a new local incarnation
    /// from it, and swaps the table over to it in the metadata group. Until
    /// the swap, reads keep hitting the old incarnation; a bad or truncated
    /// snapshot leaves it untouched.
    /// Recovers `table` from the leader's snapshot ([`Self::recover_held`])
    /// while renewing its worker lease: a download or a seed can take far
    /// longer than the lease, and another node taking the table over would
    /// recover it at the same time. A lost lease ends the recovery.
    async fn recover(&self, table: &str) -> Result<Ended> {
        let renew = async {
            loop {
                tokio::time::sleep(self.cfg.lease_interval / 3).await;
                let lease = self.cfg.lease_interval;
                if !worker_lease::acquire(&self.registry, table, self.node_id, lease).await? {
                    tracing::warn!(
                        table,
                        "replication: lost the table's lease while recovering"
                    );
                    return Ok(Ended::LostLease);
                }
            }
        };
        tokio::select! {
            ended = self.recover_held(table) => ended,
            lost = renew => lost,
        }
    }

    async fn recover_held(&self, table: &str) -> Result<Ended> {
        let _slot = self
            .recoveries
            .acquire()
            .await
            .map_err(|_| Error::Internal("recovery slots closed".into()))?;
        self.update(table, |s| s.state = WorkerState::Recovering);
        // The catalogue's incarnation, which may be a recovery still coming
        // in (its seed died): this one then replaces it.
        let old_epoch = (self.registry.list().await?.into_iter())
            .find(|(name, _)| name == table)
            .map(|(_, epoch)| epoch)
            .ok_or_else(|| Error::TableNotFound(table.to_string()))?;
        std::fs::create_dir_all(&self.scratch_dir)?;
        let file = (self.scratch_dir).join(format!("recv-{table}-{}.mdb", unix_ms()));
        let _cleanup = RemoveOnDrop(file.clone());
        let mut client =
            SnapshotClient::new(self.leader.clone()).max_decoding_message_size(usize::MAX);
        let download = async {
            let stream = client
                .stream(SnapshotRequest {
                    table: table.to_string(),
                    cluster: self.follows().await?,
                })
                .await
                .map_err(|s| Error::Upstream(format!("Snapshot.Stream: {s}")))?
                .into_inner();
            super::snapshot_stream::receive_snapshot(
                stream,
                &file,
                self.cfg.max_snapshot_recv_bytes_per_second,
            )
            .await
        };
        let header = tokio::time::timeout(self.cfg.snapshot_rpc_timeout, download)
            .await
            .map_err(|_| Error::Upstream("Snapshot.Stream: timed out".into()))??;
        if header.table != table {
            return Err(Error::Corrupt(format!(
                "snapshot of table {:?} received for {table:?}",
                header.table
            )));
        }
        // A lagging node of the leader cluster (behind a load balancer, say)
        // must not take the table back in time.
        let (held, held_epoch) = self.registry.get(table).await?.replicated().await?;
        if header.epoch == held_epoch && header.leader_index < held {
            return Err(Error::Upstream(format!(
                "the leader's snapshot of {table:?} is at leader index {}, behind the {held} \
                 held here; retrying",
                header.leader_index
            )));
        }
        let new_epoch = new_epoch().max(old_epoch + 1);
        let cfg = self.registry.table_config(table, new_epoch);
        // Until the swap has opened it, nothing else knows this incarnation.
        let _seeding = self.registry.seeding(table, new_epoch);
        RaftGroup::seed(&cfg, &file, (header.leader_index, header.epoch)).await?;
        crate::crash_point::reached("recovery.seeded");
        if !self
            .registry
            .swap_to_seeded(table, old_epoch, new_epoch)
            .await?
        {
            return Err(Error::Upstream(format!(
                "table {table:?} changed while recovering; retrying"
            )));
        }
        crate::crash_point::reached("recovery.swapped");
        tracing::info!(
            table,
            leader_index = header.leader_index,
            revision = header.revision,
            bytes = header.size,
            "replication: recovered from the leader's snapshot"
        );
        self.update(table, |s| {
            s.epoch = header.epoch;
            s.last_applied_index = header.leader_index;
        });
        Ok(Ended::Resynced)
    }

    /// A client's write on the leader cluster's `table` (etcd errors
    /// unchanged), with the epoch of the incarnation that applied it (its
    /// [`crate::EPOCH_HEADER`]); the caller waits for it to be replicated back.
    pub(crate) async fn forward_write(
        &self,
        table: &str,
        cmd: Command,
    ) -> Result<(Applied, Option<u64>), Status> {
        // The answer can be as large as the leader may send (etcd's 2 GiB
        // send limit: a DeleteRange with prev_kv, a Txn with ranges); a
        // smaller decode limit would report a committed write as failed,
        // and the client's retry would apply it twice.
        let mut kv =
            KvClient::new(self.leader.clone()).max_decoding_message_size(i32::MAX as usize);
        let mut lease = LeaseClient::new(self.leader.clone());
        let mut epoch = None;
        fn answer<T>(resp: tonic::Response<T>, epoch: &mut Option<u64>) -> T {
            *epoch = crate::epoch_of(resp.metadata());
            resp.into_inner()
        }
        let applied = match cmd {
            Command::Put(r) => {
                Applied::Put(answer(kv.put(table_request(table, r)).await?, &mut epoch))
            }
            Command::DeleteRange(r) => Applied::DeleteRange(answer(
                kv.delete_range(table_request(table, r)).await?,
                &mut epoch,
            )),
            Command::Txn(r) => {
                Applied::Txn(answer(kv.txn(table_request(table, r)).await?, &mut epoch))
            }
            Command::Compact(r) => Applied::Compact(answer(
                kv.compact(table_request(table, r)).await?,
                &mut epoch,
            )),
            // The leader cluster picks the id (if 0) and the minimum TTL.
            Command::LeaseGrant(r) => Applied::LeaseGrant(answer(
                lease.lease_grant(table_request(table, r)).await?,
                &mut epoch,
            )),
            Command::LeaseRevoke(r) => Applied::LeaseRevoke(answer(
                lease.lease_revoke(table_request(table, r)).await?,
                &mut epoch,
            )),
            Command::Alarm(r) => {
                let mut maintenance = MaintenanceClient::new(self.leader.clone());
                let resp = maintenance.alarm(table_request(table, r)).await?;
                Applied::Alarm(answer(resp, &mut epoch))
            }
            Command::LeaseCheckpoint(_) => {
                return Err(Status::internal(
                    "armada: lease checkpoints are the leader cluster's own",
                ))
            }
        };
        Ok((applied, epoch))
    }

    /// The leader cluster's etcd API (on its replication port), for the
    /// requests of a follower's clients that are not commands.
    pub(crate) fn leader_channel(&self) -> Channel {
        self.leader.clone()
    }
}

/// Appends to `msg` the plain messages of its epoch that already arrived
/// (up to one raft entry's budget), so that a follower behind its leader
/// applies many small leader batches in one raft write instead of one
/// write each; the first message that cannot join is left in `arrived`.
fn coalesce(
    stream: &mut tonic::Streaming<ReplicateResponse>,
    msg: &mut ReplicateResponse,
    arrived: &mut Option<std::result::Result<Option<ReplicateResponse>, Status>>,
) {
    use futures::FutureExt;
    use prost::Message;
    let budget = crate::raft::network::APPEND_BUDGET as usize;
    let mut bytes: usize = msg.entries.iter().map(Message::encoded_len).sum();
    while bytes < budget {
        let Some(next) = stream.message().now_or_never() else {
            return;
        };
        match next {
            Ok(Some(more)) if more.signal == Signal::None as i32 && more.epoch == msg.epoch => {
                bytes += more.entries.iter().map(Message::encoded_len).sum::<usize>();
                msg.entries.extend(more.entries);
                msg.sent_through = msg.sent_through.max(more.sent_through);
                msg.last_index = msg.last_index.max(more.last_index);
            }
            other => {
                *arrived = Some(other);
                return;
            }
        }
    }
}

/// Splits a leader message's entries into raft entries of about one
/// AppendEntries' byte budget (at least one leader entry each): a raft
/// entry must reach the table's raft followers within one heartbeat, and a
/// leader message can be megabytes.
fn raft_sized(entries: Vec<ReplicatedEntry>) -> Vec<Vec<ReplicatedEntry>> {
    let budget = crate::raft::network::APPEND_BUDGET as usize;
    let mut out: Vec<Vec<ReplicatedEntry>> = Vec::new();
    let mut bytes = 0;
    for e in entries {
        let size: usize = e.commands.iter().map(Command::encoded_len).sum();
        match out.last_mut() {
            Some(last) if bytes + size <= budget => last.push(e),
            _ => {
                out.push(vec![e]);
                bytes = 0;
            }
        }
        bytes += size;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_messages_become_raft_sized_entries() {
        use crate::pb::etcdserverpb::PutRequest;
        let entry = |i: u64, kib: usize| ReplicatedEntry {
            leader_index: i,
            commands: vec![Command::Put(PutRequest {
                key: b"k".to_vec(),
                value: vec![0; kib << 10],
                ..Default::default()
            })],
        };
        let sizes = [100, 100, 100, 1000, 10, 10];
        let entries = (sizes.iter().enumerate()).map(|(i, kib)| entry(i as u64 + 1, *kib));
        let split = raft_sized(entries.collect());
        let indexes: Vec<Vec<u64>> = (split.iter())
            .map(|c| c.iter().map(|e| e.leader_index).collect())
            .collect();
        assert_eq!(indexes, [vec![1, 2], vec![3], vec![4], vec![5, 6]]);
        assert!(raft_sized(Vec::new()).is_empty());
    }
}
