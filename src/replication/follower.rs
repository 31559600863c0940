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
//! - `EPOCH_CHANGED` (the table was re-created on the leader) resyncs: the
//!   local table is deleted and re-created, then tailed from index 1.
//!   `USE_SNAPSHOT` (the leader compacted past this follower) is reported
//!   and retried: snapshot recovery is not built yet.
//!
//! Invariant: nothing but a worker writes into a follower cluster's tables,
//! and only in leader-index order, so revisions equal the leader's.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

use super::wire::from_wire;
use crate::error::{Error, Result};
use crate::kv::command::{Applied, Command, Replicated, ReplicatedEntry};
use crate::pb::etcdserverpb::kv_client::KvClient;
use crate::pb::replication::log_client::LogClient;
use crate::pb::replication::metadata_client::MetadataClient;
use crate::pb::replication::{MetadataRequest, ReplicateRequest, ReplicateResponse, Signal};
use crate::raft::registry::Registry;
use crate::raft::NodeId;

/// The `armada follower` flags of seed 000.
#[derive(Clone, Debug)]
pub struct FollowerConfig {
    /// The leader cluster's replication API (`http://host:port`).
    pub leader_address: String,
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
#[serde(rename_all = "snake_case")]
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
    /// The table is no longer replicated here.
    Stopped,
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
    status: Mutex<BTreeMap<String, TableStatus>>,
    workers: tokio::sync::Mutex<HashMap<String, JoinHandle<()>>>,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Why a tailing session ended early.
enum Ended {
    /// The lease went to another node.
    LostLease,
    /// The table was resynced (deleted and re-created).
    Resynced,
}

impl Follower {
    pub fn new(cfg: FollowerConfig, registry: Arc<Registry>) -> Result<Arc<Follower>> {
        let address = if cfg.leader_address.contains("://") {
            cfg.leader_address.clone()
        } else {
            format!("http://{}", cfg.leader_address)
        };
        let leader = Endpoint::from_shared(address)
            .map_err(|e| Error::InvalidInput(format!("--replication.leader-address: {e}")))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(cfg.keepalive_time.max(Duration::from_secs(10)))
            .keep_alive_timeout(cfg.keepalive_timeout)
            .keep_alive_while_idle(true)
            .connect_lazy();
        Ok(Arc::new(Follower {
            node_id: registry.node_id(),
            cfg,
            registry,
            leader,
            status: Mutex::new(BTreeMap::new()),
            workers: tokio::sync::Mutex::new(HashMap::new()),
        }))
    }

    /// Every table's status on this node.
    pub fn status(&self) -> BTreeMap<String, TableStatus> {
        self.status.lock().unwrap().clone()
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
            if let Err(e) = self.reconcile().await {
                tracing::warn!("replication: reconciling tables with the leader cluster: {e}");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.cfg.reconcile_interval) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        for (_, worker) in self.workers.lock().await.drain() {
            worker.abort();
        }
    }

    /// Mirrors the leader's table list and runs a worker per table.
    pub async fn reconcile(self: &Arc<Self>) -> Result<()> {
        let leader_tables = MetadataClient::new(self.leader.clone())
            .get(MetadataRequest {})
            .await
            .map_err(|s| Error::Internal(format!("Metadata.Get on the leader cluster: {s}")))?
            .into_inner()
            .tables;
        let want: BTreeMap<String, u64> = leader_tables
            .into_iter()
            .map(|t| (t.name, t.epoch))
            .collect();
        let have: BTreeMap<String, u64> = self.registry.list().await?.into_iter().collect();
        for name in want.keys().filter(|n| !have.contains_key(*n)) {
            tracing::info!(table = %name, "replication: creating a table of the leader cluster");
            match self.registry.create(name).await {
                Ok(_) | Err(Error::TableExists(_)) => {}
                Err(e) => return Err(e),
            }
        }
        for name in have.keys().filter(|n| !want.contains_key(*n)) {
            tracing::info!(table = %name, "replication: deleting a table the leader cluster deleted");
            match self.registry.delete(name).await {
                Ok(()) | Err(Error::TableNotFound(_)) => {}
                Err(e) => return Err(e),
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
        Ok(())
    }

    /// Replicates `table` whenever this node holds its lease.
    async fn worker(self: Arc<Self>, table: String) {
        let renew = self.cfg.lease_interval / 3;
        loop {
            match self
                .registry
                .acquire_lease(&table, self.node_id, self.cfg.lease_interval)
                .await
            {
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
                Ok(Ended::LostLease) => self.update(&table, |s| s.leased = false),
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
        let (held, epoch) = group.replicated()?;
        let request = ReplicateRequest {
            table: table.to_string(),
            // Nothing held yet: take whatever incarnation the leader has.
            epoch: if held == 0 { 0 } else { epoch },
            leader_index: held + 1,
            follow: true,
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
                return Err(Error::Internal(format!("Log.Replicate: {status}")));
            }
            Err(_) => return Err(Error::Internal("Log.Replicate: timed out".into())),
        };
        let mut renewed = Instant::now();
        let mut caught_up_at = Instant::now();
        loop {
            if renewed.elapsed() >= self.cfg.lease_interval / 3 {
                if !self
                    .registry
                    .acquire_lease(table, self.node_id, self.cfg.lease_interval)
                    .await?
                {
                    return Ok(Ended::LostLease);
                }
                renewed = Instant::now();
            }
            let next = tokio::time::timeout(self.cfg.log_rpc_timeout, stream.message()).await;
            let msg: ReplicateResponse = match next {
                Ok(Ok(Some(msg))) => msg,
                Ok(Ok(None)) => return Err(Error::Internal("Log.Replicate stream ended".into())),
                Ok(Err(status)) => return Err(Error::Internal(format!("Log.Replicate: {status}"))),
                Err(_) => {
                    return Err(Error::Internal(format!(
                        "Log.Replicate: nothing from the leader for {:?}",
                        self.cfg.log_rpc_timeout
                    )))
                }
            };
            let signal = Signal::try_from(msg.signal).unwrap_or(Signal::None);
            let stale_epoch = held > 0 && msg.epoch != 0 && msg.epoch != epoch;
            if signal == Signal::EpochChanged || stale_epoch {
                tracing::warn!(
                    table,
                    "replication: the table was re-created on the leader cluster; resyncing"
                );
                self.update(table, |s| s.state = WorkerState::Recovering);
                self.registry.delete(table).await?;
                self.registry.create(table).await?;
                return Ok(Ended::Resynced);
            }
            match signal {
                Signal::UseSnapshot => {
                    return Err(Error::Internal(format!(
                        "the leader cluster compacted its log past leader index {}; \
                         recovery from Snapshot.Stream is not implemented yet",
                        group.replicated()?.0
                    )))
                }
                Signal::LeaderBehind => {
                    return Err(Error::Internal(format!(
                        "the leader node is behind this follower (its last index {})",
                        msg.last_index
                    )))
                }
                _ => {}
            }
            let entries = msg
                .entries
                .into_iter()
                .map(|e| {
                    Ok(ReplicatedEntry {
                        leader_index: e.leader_index,
                        commands: e
                            .commands
                            .into_iter()
                            .map(from_wire)
                            .collect::<Result<_>>()?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let events = entries.len() as u64;
            let applied = if entries.is_empty() {
                group.replicated()?.0
            } else {
                group
                    .write_replicated(Replicated {
                        epoch: msg.epoch,
                        entries,
                    })
                    .await?
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

    /// A client's write on the leader cluster's `table` (etcd errors
    /// unchanged); the caller waits for it to be replicated back.
    pub async fn forward_write(&self, table: &str, cmd: Command) -> Result<Applied, Status> {
        let mut kv = KvClient::new(self.leader.clone());
        Ok(match cmd {
            Command::Put(r) => Applied::Put(kv.put(with_table(table, r)).await?.into_inner()),
            Command::DeleteRange(r) => {
                Applied::DeleteRange(kv.delete_range(with_table(table, r)).await?.into_inner())
            }
            Command::Txn(r) => Applied::Txn(kv.txn(with_table(table, r)).await?.into_inner()),
            Command::Compact(r) => {
                Applied::Compact(kv.compact(with_table(table, r)).await?.into_inner())
            }
        })
    }
}

/// A request for the leader cluster's `table`.
fn with_table<M>(table: &str, message: M) -> Request<M> {
    let mut request = Request::new(message);
    if let Ok(v) = table.parse() {
        request.metadata_mut().insert(crate::TABLE_HEADER, v);
    }
    request
}
