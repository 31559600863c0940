//! One table's Raft group: its openraft instance, its storage, and the two
//! entry points the API uses. Every write is a `client_write` (log in LMDB,
//! then apply into LMDB); reads run against the state machine's LMDB
//! environment, after a ReadIndex round (`ensure_linearizable`) unless the
//! client asked for a serializable read.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::RaftError;
use openraft::{BasicNode, Config, SnapshotPolicy};

use super::log_store::LogStore;
use super::network::Network;
use super::proposer::{ProposeError, Proposer};
use super::state_machine::{Shared, StateMachine};
use super::{blocking, NodeId, Raft};
use crate::error::{Error, EtcdError, Result};
use crate::kv::command::{Applied, Command};
use crate::storage::log::LogDb;
use crate::storage::mvcc::{MvccDb, Reader};

/// How a group is laid out and tuned; built by the server from the flags.
#[derive(Clone, Debug)]
pub struct GroupConfig {
    pub node_id: NodeId,
    pub raft_address: String,
    pub wal_dir: PathBuf,
    pub state_machine_dir: PathBuf,
    pub snapshot_dir: PathBuf,
    pub map_size: usize,
    pub heartbeat_ms: u64,
    pub election_ms: u64,
    pub snapshot_entries: u64,
    pub compaction_overhead: u64,
    pub max_payload_entries: u64,
}

/// Raft and storage status numbers of a group, for Status and metrics.
#[derive(Clone, Debug, Default)]
pub struct GroupStatus {
    pub leader: Option<NodeId>,
    pub term: u64,
    pub last_log_index: u64,
    pub applied_index: u64,
    pub db_size: u64,
    pub db_size_in_use: u64,
}

pub struct RaftGroup {
    pub table: String,
    pub node_id: NodeId,
    raft: Raft,
    proposer: Proposer,
    sm: Arc<Shared>,
    log: Arc<LogDb>,
}

impl RaftGroup {
    /// Opens the group's storage and starts its Raft node. A brand-new group
    /// is initialized with this node as its only voter.
    pub async fn open(table: &str, cfg: &GroupConfig) -> Result<Arc<RaftGroup>> {
        let log = Arc::new(LogDb::open(&cfg.wal_dir, cfg.map_size)?);
        let db = MvccDb::open(&cfg.state_machine_dir, cfg.map_size)?;
        let sm = StateMachine::open(db, &cfg.snapshot_dir)?;
        let shared = sm.shared();
        let config = Config {
            cluster_name: format!("armada-{table}"),
            heartbeat_interval: cfg.heartbeat_ms,
            election_timeout_min: cfg.election_ms,
            election_timeout_max: cfg.election_ms * 2,
            snapshot_policy: if cfg.snapshot_entries == 0 {
                SnapshotPolicy::Never
            } else {
                SnapshotPolicy::LogsSinceLast(cfg.snapshot_entries)
            },
            max_in_snapshot_log_to_keep: cfg.compaction_overhead,
            max_payload_entries: cfg.max_payload_entries,
            ..Default::default()
        }
        .validate()
        .map_err(|e| Error::InvalidInput(format!("raft config: {e}")))?;
        let raft = Raft::new(
            cfg.node_id,
            Arc::new(config),
            Network,
            LogStore::new(log.clone()),
            sm,
        )
        .await
        .map_err(|e| Error::Raft(e.to_string()))?;
        if !raft
            .is_initialized()
            .await
            .map_err(|e| Error::Raft(e.to_string()))?
        {
            let members = BTreeMap::from([(cfg.node_id, BasicNode::new(&cfg.raft_address))]);
            raft.initialize(members)
                .await
                .map_err(|e| Error::Raft(e.to_string()))?;
        }
        Ok(Arc::new(RaftGroup {
            table: table.to_string(),
            node_id: cfg.node_id,
            proposer: Proposer::spawn(raft.clone()),
            raft,
            sm: shared,
            log,
        }))
    }

    /// Waits until the group has a raft leader, up to `timeout`.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<NodeId> {
        let m = self
            .raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), "raft leader elected")
            .await
            .map_err(|_| EtcdError::NoLeader)?;
        m.current_leader.ok_or_else(|| EtcdError::NoLeader.into())
    }

    pub fn has_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader.is_some()
    }

    /// Proposes a command and returns what applying it produced.
    pub async fn write(&self, cmd: Command) -> Result<Applied> {
        // etcd's quota: refuse writes (and raise NOSPACE) before either
        // environment's map fills, keeping room for Raft's own entries.
        if crate::storage::env_nearly_full(self.log.env(), 0.9)
            || crate::storage::env_nearly_full(self.sm.db.env(), 0.9)
        {
            self.sm.no_space.store(true, Ordering::Relaxed);
        }
        if self.sm.no_space.load(Ordering::Relaxed) {
            return Err(EtcdError::NoSpace.into());
        }
        match self.proposer.propose(cmd).await {
            Ok(result) => Ok(result?),
            Err(ProposeError::ForwardToLeader(leader)) => Err(if leader.is_some() {
                EtcdError::LeaderChanged
            } else {
                EtcdError::NoLeader
            }
            .into()),
            Err(ProposeError::Raft(e)) => Err(Error::Raft(e)),
            Err(ProposeError::Fatal(e)) => {
                tracing::error!(table = %self.table, "raft group stopped: {e}");
                Err(EtcdError::Stopped.into())
            }
        }
    }

    /// Reads from the state machine; linearizable reads first confirm
    /// leadership and wait until the read index is applied.
    pub async fn read<R: Send + 'static>(
        &self,
        linearizable: bool,
        f: impl FnOnce(&Reader<'_>) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        if linearizable {
            self.raft.ensure_linearizable().await.map_err(|e| match e {
                RaftError::APIError(_) => Error::from(EtcdError::NoLeader),
                RaftError::Fatal(_) => Error::from(EtcdError::Stopped),
            })?;
        }
        let sm = self.sm.clone();
        blocking(move || sm.db.read(f)).await
    }

    pub fn alarm_no_space(&self) -> bool {
        self.sm.no_space.load(Ordering::Relaxed)
    }

    pub fn disarm_no_space(&self) {
        self.sm.no_space.store(false, Ordering::Relaxed);
    }

    pub fn status(&self) -> GroupStatus {
        let m = self.raft.metrics().borrow().clone();
        let (db_size_in_use, db_size) =
            crate::storage::env_sizes(self.sm.db.env()).unwrap_or_default();
        let (log_in_use, log_size) = crate::storage::env_sizes(self.log.env()).unwrap_or_default();
        GroupStatus {
            leader: m.current_leader,
            term: m.current_term,
            last_log_index: m.last_log_index.unwrap_or(0),
            applied_index: m.last_applied.map_or(0, |l| l.index),
            db_size: db_size + log_size,
            db_size_in_use: db_size_in_use + log_in_use,
        }
    }

    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(table = %self.table, "raft shutdown: {e}");
        }
    }
}
