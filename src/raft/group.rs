//! One Raft group (a table's, or the cluster's metadata group): its openraft
//! instance, its storage, and the two entry points the API uses.
//!
//! - [`RaftGroup::write`]: on the raft leader, a proposal (log in LMDB on a
//!   quorum, then apply into LMDB); on a raft follower, forwarded to the raft
//!   leader over the Raft transport. A follower never proposes itself.
//! - [`RaftGroup::read`]: against the local state machine; a linearizable
//!   read first waits until this node has applied the raft leader's
//!   ReadIndex (confirmed by a quorum heartbeat), on any member.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use openraft::{BasicNode, Config, SnapshotPolicy};

use super::lease::lessor::Lessor;
use super::lease::{LeaseAnswer, LeaseCounts, LeaseQuery};
use super::log_store::LogStore;
use super::network::{CallError, Network, Peers, Remote, Rpc, FORWARD_TIMEOUT};
use super::proposer::{ProposeError, Proposer};
use super::read_index::ReadIndex;
use super::state_machine::{Exported, Shared, StateMachine};
use super::{blocking, client_blocking, LogId, NodeId, Raft, StoredMembership};
use crate::error::{Error, EtcdError, Result};
use crate::kv::alarm;
use crate::kv::command::{Applied, Command, Proposal, Replicated};
use crate::kv::MvccRead;
use crate::pb::etcdserverpb::AlarmMember;
use crate::storage::log::{LogDb, LogEngine};
use crate::storage::mvcc::{MvccDb, Reader};

/// How long a request waits for a raft leader to appear before it fails
/// with `etcdserver: no leader`.
pub(crate) const LEADER_WAIT: Duration = Duration::from_secs(3);

/// How long a request pauses before trying a raft leader that just failed
/// it again, when this node has not yet learned of another.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// How long a proposal or a ReadIndex round may wait for a quorum (etcd:
/// 5 s plus two election timeouts) before `etcdserver: request timed out`.
pub(super) const PROPOSE_TIMEOUT: Duration = Duration::from_secs(7);

/// How a group is laid out and tuned; built by the server from the flags.
#[derive(Clone, Debug)]
pub struct GroupConfig {
    pub node_id: NodeId,
    pub raft_address: String,
    /// The voters every group of the cluster starts with (this node included).
    pub members: BTreeMap<NodeId, BasicNode>,
    pub wal_dir: PathBuf,
    pub state_machine_dir: PathBuf,
    pub snapshot_dir: PathBuf,
    pub map_size: usize,
    /// The engine of a new table's raft log (`--raft.logdb`).
    pub log_engine: LogEngine,
    pub heartbeat_ms: u64,
    pub election_ms: u64,
    pub snapshot_entries: u64,
    pub compaction_overhead: u64,
    pub max_payload_entries: u64,
    /// Commands that may wait for or be in a proposal at once; more are
    /// refused with etcd's `too many requests`.
    pub max_pending_proposals: usize,
    /// Whether this cluster decides lease expiry (a leader cluster), or
    /// only applies the revokes its leader cluster decided (a follower).
    pub expire_leases: bool,
    /// How often the remaining TTL of leases longer than this is
    /// checkpointed through the log (zero: never).
    pub lease_checkpoint_interval: Duration,
    /// gRPC's send limit on the API port (`--api.max-send-bytes`): a
    /// response over it is etcd's error and is never built.
    pub send_limit: u64,
}

impl GroupConfig {
    /// The group's voters: the initial members, or this node alone.
    pub(crate) fn voters(&self) -> BTreeMap<NodeId, BasicNode> {
        if self.members.is_empty() {
            BTreeMap::from([(self.node_id, BasicNode::new(&self.raft_address))])
        } else {
            self.members.clone()
        }
    }
}

/// What [`RaftGroup::read_committed`] found from a leader index on.
#[derive(Debug)]
pub(crate) enum LogRead {
    /// Committed entries' commands by leader index (entries without
    /// commands are left out), and the last index they cover.
    Entries {
        entries: Vec<(u64, Vec<Command>)>,
        sent_through: u64,
        last_applied: u64,
    },
    /// The index asked for was purged from the log (a snapshot covers it).
    Compacted,
    /// The index asked for is past the last applied one + 1.
    Ahead { last_applied: u64 },
}

/// How one attempt at a request failed.
enum Attempt {
    /// It provably did not take effect (never delivered, or refused by a
    /// node that is no longer the raft leader): try the next leader.
    Retry,
    /// Definitive, or it may have taken effect: the client gets this error.
    Failed(Error),
}

impl Attempt {
    /// Sorts an error from the raft leader's own half of a request:
    /// "leader changed" and "no leader" there mean openraft refused the
    /// proposal (not the leader) or truncated it, so it never committed.
    fn from_leader(e: Error) -> Attempt {
        match e {
            Error::Etcd(EtcdError::LeaderChanged | EtcdError::NoLeader) => Attempt::Retry,
            e => Attempt::Failed(e),
        }
    }

    /// For requests without effect: a lost answer is as good as none.
    fn retry_lost(self) -> Attempt {
        match self {
            Attempt::Failed(Error::Etcd(EtcdError::TimeoutDueToLeaderFail)) => Attempt::Retry,
            a => a,
        }
    }
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
    /// The group's name on the Raft transport: `<table>.<epoch>` or `.meta`.
    pub group_id: String,
    pub node_id: NodeId,
    peers: Arc<Peers>,
    raft: Raft,
    proposer: Proposer,
    read_index: Arc<ReadIndex>,
    sm: Arc<Shared>,
    log: Arc<LogDb>,
    /// Opened without `initialize` for a group another node seeded: its
    /// state machine is empty until the seed's snapshot is installed.
    awaits_seed: bool,
    expire_leases: bool,
    lease_checkpoint_interval: Duration,
}

impl RaftGroup {
    /// Opens the group's storage and starts its Raft node. A brand-new group
    /// is initialized with the cluster's initial members as voters (unless
    /// `initialize` is false: another node seeded it, see [`Self::seed`]); every
    /// member does so with the same set, which openraft allows.
    pub async fn open(
        table: &str,
        group_id: &str,
        cfg: &GroupConfig,
        peers: Arc<Peers>,
        initialize: bool,
    ) -> Result<Arc<RaftGroup>> {
        // Opening LMDB environments reads and may write files: off the
        // runtime's threads.
        let storage = cfg.clone();
        let (log, sm) = blocking(move || {
            let cfg = storage;
            let log = Arc::new(LogDb::open(&cfg.wal_dir, cfg.map_size, cfg.log_engine)?);
            let db = MvccDb::open(&cfg.state_machine_dir, cfg.map_size)?;
            let sm = StateMachine::open(db, &cfg.snapshot_dir, cfg.send_limit)?;
            sm.shared()
                .forget_stale_snapshot(LogStore::last_index(&log)?)?;
            Ok((log, sm))
        })
        .await?;
        let shared = sm.shared();
        let config = Config {
            cluster_name: format!("armada-{group_id}"),
            heartbeat_interval: cfg.heartbeat_ms,
            // openraft 0.9 waits a leader lease (= election_timeout_max)
            // plus a random election timeout before a follower that lost its
            // leader campaigns; this puts that sum in [E, 4E/3) for
            // `--raft.election-rtt` E, as dragonboat's (Regatta's) [E, 2E)
            // and etcd's ~E, instead of openraft's [3E, 4E) for min = E.
            election_timeout_min: cfg.election_ms / 3,
            election_timeout_max: cfg.election_ms * 2 / 3,
            snapshot_policy: if cfg.snapshot_entries == 0 {
                SnapshotPolicy::Never
            } else {
                SnapshotPolicy::LogsSinceLast(cfg.snapshot_entries)
            },
            max_in_snapshot_log_to_keep: cfg.compaction_overhead,
            max_payload_entries: cfg.max_payload_entries,
            // Snapshots travel as 1 MiB chunks, one RPC each; openraft's
            // 200 ms per chunk is too tight for a busy node or a slow link.
            snapshot_max_chunk_size: 1 << 20,
            install_snapshot_timeout: 10_000,
            ..Default::default()
        }
        .validate()
        .map_err(|e| Error::InvalidInput(format!("raft config: {e}")))?;
        let raft = Raft::new(
            cfg.node_id,
            Arc::new(config),
            Network {
                peers: peers.clone(),
                group: group_id.to_string(),
                heartbeat: Duration::from_millis(cfg.heartbeat_ms),
            },
            LogStore::new(log.clone(), {
                let sm = shared.clone();
                Arc::new(move || sm.purge_bound())
            }),
            sm,
        )
        .await
        .map_err(|e| Error::Raft(e.to_string()))?;
        let restarted = raft
            .is_initialized()
            .await
            .map_err(|e| Error::Raft(e.to_string()))?;
        let voters = (raft.metrics().borrow().membership_config)
            .membership()
            .voter_ids()
            .count();
        if restarted && voters > 1 {
            // openraft 0.9 has no pre-vote: a member that comes back and
            // campaigns before the raft leader's retry backoff (500 ms) has
            // reached it deposes a healthy leader. Wait two election timeouts
            // for the leader to find us before campaigning. (The timer
            // cannot fire sooner than one election timeout, so this is not
            // racing it.)
            raft.runtime_config().elect(false);
            let (raft, grace) = (raft.clone(), Duration::from_millis(2 * cfg.election_ms));
            tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                raft.runtime_config().elect(true);
            });
        }
        // A group seeded on another node (see `seed`) waits for it instead.
        if !restarted && initialize {
            raft.initialize(cfg.voters())
                .await
                .map_err(|e| Error::Raft(e.to_string()))?;
        }
        let group = Arc::new(RaftGroup {
            table: table.to_string(),
            group_id: group_id.to_string(),
            node_id: cfg.node_id,
            peers,
            proposer: Proposer::spawn(raft.clone(), cfg.max_pending_proposals),
            read_index: ReadIndex::new(raft.clone()),
            raft,
            sm: shared,
            log,
            awaits_seed: !restarted && !initialize,
            expire_leases: cfg.expire_leases,
            lease_checkpoint_interval: cfg.lease_checkpoint_interval,
        });
        tokio::spawn(super::lease::run(
            Arc::downgrade(&group),
            Duration::from_millis(cfg.election_ms),
        ));
        tokio::spawn(super::space::run(Arc::downgrade(&group)));
        Ok(group)
    }

    /// Prepares the storage of a new group whose initial state is `file`,
    /// an LMDB copy of a leader cluster's table (a follower cluster's
    /// recovery). Only the seeding node does this; the group is then
    /// opened on every node without `initialize`: the seed holds the
    /// membership and a Raft snapshot at log index 0 with the log purged
    /// through it, so it is the only node that can campaign and every peer
    /// gets the state by installing that snapshot.
    pub async fn seed(cfg: &GroupConfig, file: &Path, replicated: (u64, u64)) -> Result<()> {
        let members = cfg.voters();
        let voters = members.keys().copied().collect();
        let log_id = LogId::new(openraft::CommittedLeaderId::new(0, 0), 0);
        let membership = StoredMembership::new(
            Some(log_id),
            openraft::Membership::new(vec![voters], members),
        );
        let storage = cfg.clone();
        let mut sm = blocking(move || {
            let cfg = storage;
            let log = LogDb::open(&cfg.wal_dir, cfg.map_size, cfg.log_engine)?;
            LogStore::seed_purged(&log, log_id)?;
            let db = MvccDb::open(&cfg.state_machine_dir, cfg.map_size)?;
            StateMachine::open(db, &cfg.snapshot_dir, cfg.send_limit)
        })
        .await?;
        sm.seed(file, log_id, membership, replicated).await
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

    /// The table's revision state as last committed here (cheap: no read).
    pub fn revision(&self) -> crate::kv::RevisionState {
        self.sm.feed.state().0
    }

    /// The current raft term (cheap: no storage numbers, unlike `status`).
    pub fn term(&self) -> u64 {
        self.raft.metrics().borrow().current_term
    }

    pub fn has_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader.is_some()
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The raft leader, if it is another node. Without a known leader (an
    /// election is on, or the group just started) it waits a little for one,
    /// as etcd holds a proposal until a leader appears.
    async fn remote_leader(&self) -> Option<(NodeId, String)> {
        let m = match self
            .raft
            .wait(Some(LEADER_WAIT))
            .metrics(|m| m.current_leader.is_some(), "a raft leader")
            .await
        {
            Ok(m) => m,
            Err(_) => return None, // the proposal reports NoLeader
        };
        let leader = m.current_leader.filter(|l| *l != self.node_id)?;
        let node = m.membership_config.membership().get_node(&leader)?;
        Some((leader, node.addr.clone()))
    }

    /// After a failed attempt with raft leader `stale`, waits until this
    /// node learns of another leader (or of none), or a short while when the
    /// leader is still believed to be `stale` (it may merely be starting).
    async fn await_leader_change(&self, stale: Option<NodeId>, deadline: tokio::time::Instant) {
        let pause =
            RETRY_PAUSE.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
        let _ = self
            .raft
            .wait(Some(pause))
            .metrics(|m| m.current_leader != stale, "raft leader change")
            .await;
    }

    /// Asks the raft leader to run `rpc` for us.
    async fn forward<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        (leader, addr): &(NodeId, String),
        rpc: Rpc,
        req: &Req,
    ) -> Result<Resp, Attempt> {
        let reply: Remote<Resp> = self
            .peers
            .call(*leader, addr, &self.group_id, rpc, req, FORWARD_TIMEOUT)
            .await
            .map_err(|e| {
                tracing::debug!(group = %self.group_id, "forwarding to raft leader {leader}: {e:?}");
                match e {
                    CallError::NotSent(_) => Attempt::Retry,
                    // The raft leader may have committed it before it died.
                    CallError::Lost(_) | CallError::Network(_) => {
                        Attempt::Failed(EtcdError::TimeoutDueToLeaderFail.into())
                    }
                }
            })?;
        match reply {
            Remote::Ok(v) => Ok(v),
            Remote::Etcd(e) => Err(Attempt::from_leader(e.into())),
            Remote::Failed(m) => Err(Attempt::Failed(Error::Internal(format!(
                "raft leader {leader}: {m}"
            )))),
        }
    }

    /// Runs `attempt` against the current raft leader (`Some`: another
    /// node; `None`: this one), again with the next leader as long as the
    /// request provably did not take effect, until the proposal timeout. A
    /// raft leader killed under load therefore costs its clients a pause,
    /// not an error, as in etcd, where a proposal waits for the next leader.
    async fn with_leader<T, F, Fut>(&self, mut attempt: F) -> Result<T>
    where
        F: FnMut(Option<(NodeId, String)>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Attempt>>,
    {
        let deadline = tokio::time::Instant::now() + PROPOSE_TIMEOUT;
        loop {
            let leader = self.remote_leader().await;
            let tried = leader.as_ref().map_or(self.node_id, |(id, _)| *id);
            match attempt(leader).await {
                Ok(v) => return Ok(v),
                Err(Attempt::Failed(e)) => return Err(e),
                Err(Attempt::Retry) if tokio::time::Instant::now() >= deadline => {
                    return Err(if self.has_leader() {
                        EtcdError::LeaderChanged
                    } else {
                        EtcdError::NoLeader
                    }
                    .into())
                }
                Err(Attempt::Retry) => self.await_leader_change(Some(tried), deadline).await,
            }
        }
    }

    /// Proposes a command and returns what applying it produced. A raft
    /// follower forwards it to the raft leader.
    pub async fn write(&self, cmd: Command) -> Result<Applied> {
        let applied = self
            .with_leader(|leader| {
                let cmd = &cmd;
                async move {
                    match leader {
                        Some(leader) => self.forward(&leader, Rpc::Propose, cmd).await,
                        None => self
                            .write_as_leader(cmd.clone())
                            .await
                            .map_err(Attempt::from_leader),
                    }
                }
            })
            .await?;
        match applied {
            // Applied, but the client gets only the error.
            Applied::ResponseTooLarge { size, limit } => {
                Err(EtcdError::ResponseTooLarge { size, limit }.into())
            }
            applied => Ok(applied),
        }
    }

    /// Proposes a command on this node, which must be the raft leader; a
    /// forwarded write is never forwarded again.
    pub(crate) async fn write_as_leader(&self, cmd: Command) -> Result<Applied> {
        // etcd's quota: refuse what grows the store before either
        // environment's map fills, keeping room for Raft's own entries and
        // for the deletes, revokes and compactions that free space.
        if alarm::grows(&cmd) && self.space_low(cmd.encoded_len()) {
            return Err(EtcdError::NoSpace.into());
        }
        let proposed = tokio::time::timeout(PROPOSE_TIMEOUT, self.proposer.propose(cmd));
        // A raft leader cut off from its quorum cannot commit: after the
        // timeout the client gets etcd's retryable "request timed out" (the
        // entry is overwritten by the next leader, or commits if it returns).
        let Ok(proposed) = proposed.await else {
            return Err(EtcdError::Timeout.into());
        };
        match proposed {
            Ok(result) => Ok(result?),
            Err(e) => Err(self.propose_failed(e)),
        }
    }

    /// The client's error for a proposal openraft refused.
    fn propose_failed(&self, e: ProposeError) -> Error {
        match e {
            ProposeError::ForwardToLeader(Some(_)) => EtcdError::LeaderChanged.into(),
            ProposeError::ForwardToLeader(None) => EtcdError::NoLeader.into(),
            ProposeError::Raft(e) => Error::Raft(e),
            ProposeError::TooManyRequests => EtcdError::TooManyRequests.into(),
            ProposeError::Fatal(e) => {
                tracing::error!(group = %self.group_id, "raft group stopped: {e}");
                EtcdError::Stopped.into()
            }
        }
    }

    /// Applies a batch pulled from the leader cluster (a follower cluster's
    /// replication worker), through the raft leader of this table's group.
    /// Returns the leader index the table holds afterwards. Idempotent:
    /// entries the table already holds are skipped, so a batch whose answer
    /// was lost may simply be sent again.
    pub async fn write_replicated(&self, batch: Replicated) -> Result<u64> {
        self.with_leader(|leader| {
            let batch = &batch;
            async move {
                match leader {
                    Some(leader) => self
                        .forward(&leader, Rpc::ProposeReplicated, batch)
                        .await
                        .map_err(Attempt::retry_lost),
                    None => self
                        .write_replicated_as_leader(batch.clone())
                        .await
                        .map_err(Attempt::from_leader),
                }
            }
        })
        .await
    }

    /// [`Self::write_replicated`] on this node, which must be the raft leader.
    pub(crate) async fn write_replicated_as_leader(&self, batch: Replicated) -> Result<u64> {
        let written = tokio::time::timeout(
            PROPOSE_TIMEOUT,
            self.raft.client_write(Proposal::Replicated(batch)),
        );
        match written.await {
            Err(_) => return Err(EtcdError::Timeout.into()),
            Ok(Err(e)) => return Err(self.propose_failed(super::proposer::propose_error(e))),
            Ok(Ok(_)) => {}
        }
        Ok(self.replicated().await?.0)
    }

    /// The epoch of this table incarnation (`None` for the metadata
    /// group): the group id is `<table>.<epoch>` by construction.
    pub fn epoch(&self) -> Option<u64> {
        self.group_id.rsplit_once('.')?.1.parse().ok()
    }

    /// The leader index and leader epoch this table holds (follower
    /// clusters; `(0, 0)` before anything was replicated).
    pub async fn replicated(&self) -> Result<(u64, u64)> {
        let sm = self.sm.clone();
        blocking(move || sm.replicated()).await
    }

    /// The raft leader's half of ReadIndex: confirms leadership with a
    /// quorum (in a round shared with the reads waiting at the same time)
    /// and returns the log index a linearizable read must wait for.
    pub(crate) async fn read_index_as_leader(&self) -> Result<u64> {
        self.read_index.read_index().await
    }

    /// Asks the raft leader about a lease (keep-alive, TimeToLive); it is
    /// the only member that knows deadlines. Asking has no effect on the
    /// log, so a lost answer is retried with the next leader.
    pub(crate) async fn lease_query(&self, query: LeaseQuery) -> Result<LeaseAnswer> {
        self.with_leader(|leader| async move {
            match leader {
                Some(leader) => self
                    .forward(&leader, Rpc::Lease, &query)
                    .await
                    .map_err(Attempt::retry_lost),
                None => self
                    .lease_query_as_leader(query)
                    .await
                    .map_err(Attempt::from_leader),
            }
        })
        .await
    }

    /// The last log index this node has applied (0: none).
    pub(crate) fn last_applied(&self) -> u64 {
        let m = self.raft.metrics();
        let index = m.borrow().last_applied.map_or(0, |l| l.index);
        index
    }

    /// Waits until this node has applied past `index`, up to `timeout`;
    /// returns whether it did.
    pub(crate) async fn wait_applied_past(&self, index: u64, timeout: Duration) -> bool {
        self.raft
            .wait(Some(timeout))
            .applied_index_at_least(Some(index + 1), "replication follow")
            .await
            .is_ok()
    }

    /// Waits until `holds` is true of this node's copy of the table, read
    /// after each apply, up to `timeout`; returns whether it became true.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        holds: impl Fn(&Reader<'_>) -> Result<bool> + Clone + Send + 'static,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut metrics = self.raft.metrics();
        loop {
            let seen = metrics.borrow_and_update().last_applied;
            match self.read(false, holds.clone()).await {
                Ok(true) => return true,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(group = %self.group_id, "reading the table: {e}");
                    return false;
                }
            }
            // Read again only after the next apply: the metrics also change
            // on heartbeats and elections, and a read per waiter on each of
            // them would flood the read pool with many waiting writes.
            let applied = metrics.wait_for(|m| m.last_applied != seen);
            match tokio::time::timeout_at(deadline, applied).await {
                Ok(Ok(_)) => {}
                _ => return false,
            }
        }
    }

    /// Applied (so committed) entries from log index `from` on, about
    /// `max_bytes` of commands at most (at least one entry), for a follower
    /// cluster. Any member can answer: applied entries are final.
    pub(crate) async fn read_committed(&self, from: u64, max_bytes: usize) -> Result<LogRead> {
        let (last_applied, purged) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            (
                m.last_applied.map_or(0, |l| l.index),
                m.purged.map_or(0, |l| l.index),
            )
        };
        let from = from.max(1);
        if from > last_applied + 1 {
            return Ok(LogRead::Ahead { last_applied });
        }
        if from <= purged {
            return Ok(LogRead::Compacted);
        }
        if from == last_applied + 1 {
            return Ok(LogRead::Entries {
                entries: Vec::new(),
                sent_through: last_applied,
                last_applied,
            });
        }
        let log = self.log.clone();
        let read = client_blocking(move || {
            LogStore::read_entries(&log, from, Some(last_applied + 1), max_bytes)
        })
        .await?;
        // A purge may have run since the metrics were read.
        if read.first().is_none_or(|e| e.log_id.index != from) {
            return Ok(LogRead::Compacted);
        }
        let sent_through = read.last().map_or(from - 1, |e| e.log_id.index);
        let mut entries = Vec::new();
        for entry in read {
            // A follower cluster's replicated entries are its table's writes
            // too, so a cluster downstream of it sees them all.
            if let openraft::EntryPayload::Normal(p) = entry.payload {
                entries.push((
                    entry.log_id.index,
                    p.commands().into_iter().cloned().collect(),
                ));
            }
        }
        Ok(LogRead::Entries {
            entries,
            sent_through,
            last_applied,
        })
    }

    /// Writes a consistent copy of the table to `path` for a follower
    /// cluster and returns its leader index and revision state.
    pub(crate) async fn export(&self, path: PathBuf) -> Result<Exported> {
        let sm = self.sm.clone();
        client_blocking(move || sm.export(&path)).await
    }

    /// Reads from the state machine; a linearizable read first waits until
    /// this node has applied the raft leader's read index.
    pub async fn read<R: Send + 'static>(
        &self,
        linearizable: bool,
        f: impl FnOnce(&Reader<'_>) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        // Never serve the empty state of a seeded group before its snapshot.
        if self.awaits_seed && self.raft.metrics().borrow().last_applied.is_none() {
            return Err(Error::Raft(format!(
                "table {:?} is being recovered: waiting for its snapshot",
                self.table
            )));
        }
        if linearizable {
            // Asking for a read index has no effect, so any failure may be
            // retried with the next leader.
            let index = self
                .with_leader(|leader| async move {
                    match leader {
                        Some(leader) => self
                            .forward(&leader, Rpc::ReadIndex, &())
                            .await
                            .map_err(Attempt::retry_lost),
                        None => self
                            .read_index_as_leader()
                            .await
                            .map_err(Attempt::from_leader),
                    }
                })
                .await?;
            self.raft
                .wait(Some(FORWARD_TIMEOUT))
                .applied_index_at_least(Some(index), "linearizable read")
                .await
                .map_err(|e| match e {
                    openraft::metrics::WaitError::Timeout(..) => Error::from(EtcdError::Timeout),
                    openraft::metrics::WaitError::ShuttingDown => Error::from(EtcdError::Stopped),
                })?;
        }
        let sm = self.sm.clone();
        client_blocking(move || sm.db.read(f)).await
    }

    /// The state machine a watch hub serves from.
    pub(crate) fn watch_source(&self) -> Arc<Shared> {
        self.sm.clone()
    }

    pub(crate) fn lessor(&self) -> &Lessor {
        &self.sm.lessor
    }

    pub(crate) fn lease_counts(&self) -> &LeaseCounts {
        &self.sm.lease_counts
    }

    pub(crate) fn expires_leases(&self) -> bool {
        self.expire_leases
    }

    pub(crate) fn lease_checkpoint_interval(&self) -> Duration {
        self.lease_checkpoint_interval
    }

    /// The state machine, for the raft layer's lease and watch code.
    pub(crate) fn state_machine(&self) -> &Arc<Shared> {
        &self.sm
    }

    /// The raft log's storage, for the raft layer's space keeping.
    pub(crate) fn log_db(&self) -> &Arc<LogDb> {
        &self.log
    }

    /// The table's raised alarms (as applied here).
    pub async fn alarms(&self) -> Result<Vec<AlarmMember>> {
        self.read(false, |r| Ok(r.alarms()?.raised)).await
    }

    /// Raft progress and storage sizes (the sizes read LMDB and the file
    /// system: off the runtime's threads).
    pub async fn status(&self) -> GroupStatus {
        let m = self.raft.metrics().borrow().clone();
        let (sm, log) = (self.sm.clone(), self.log.clone());
        let sizes = client_blocking(move || {
            let in_use = |space: Result<crate::storage::Space>| space.map_or(0, |s| s.in_use);
            Ok((
                in_use(sm.db.space()) + in_use(log.space()),
                sm.db.disk_size() + log.disk_size(),
            ))
        });
        let (db_size_in_use, db_size) = sizes.await.unwrap_or_default();
        GroupStatus {
            leader: m.current_leader,
            term: m.current_term,
            last_log_index: m.last_log_index.unwrap_or(0),
            applied_index: m.last_applied.map_or(0, |l| l.index),
            db_size,
            db_size_in_use,
        }
    }

    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(table = %self.table, "raft shutdown: {e}");
        }
    }
}
