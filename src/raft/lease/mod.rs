//! Lease expiry and keep-alives for a table's Raft group (etcd's lessor
//! `Promote`/`Demote`/`runLoop` and `EtcdServer.revokeExpiredLeases`).
//!
//! - [`lessor`]: the primary's deadlines;
//! - [`run`]: one task per group that makes the lessor primary once this
//!   node is raft leader *and* has applied an entry of its own term (so it
//!   has every lease granted before), demotes it on any loss of leadership,
//!   and every [`TICK`] proposes a revoke for each lease past its deadline
//!   and the due checkpoints, after confirming leadership with a quorum
//!   (etcd #15247: a stale leader must not revoke). Expiry is never decided
//!   inside apply.
//!
//! - the raft leader's answers to keep-alives and TimeToLive
//!   ([`RaftGroup::lease_query_as_leader`]; other members forward them).
//!
//! On a follower cluster's tables the task never promotes: the leader
//! cluster decides expiry and its revokes arrive as replicated commands.

pub mod lessor;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use openraft::ServerState;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use super::blocking;
use super::group::{RaftGroup, LEADER_WAIT};
use super::network::FORWARD_TIMEOUT;
use crate::error::{EtcdError, Result};
use crate::kv::command::Command;
use crate::kv::MvccRead;
use crate::pb::etcdserverpb::{LeaseCheckpoint, LeaseCheckpointRequest, LeaseRevokeRequest};
use lessor::Lookup;

/// How often expired leases are looked for (etcd: 500 ms).
pub(crate) const TICK: Duration = Duration::from_millis(500);
/// At most this many expired leases are handed out per tick (etcd's
/// default revoke rate, 1000/s).
const MAX_REVOKES_PER_TICK: usize = 500;
/// At most this many remaining TTLs per checkpoint entry and tick (etcd:
/// 1000 per entry).
const MAX_CHECKPOINTS_PER_TICK: usize = 1000;
/// Revoke proposals in flight at once (etcd `maxPendingRevokes`).
const MAX_PENDING_REVOKES: usize = 16;

/// A question about a lease that only the table's raft leader can answer.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(crate) enum LeaseQuery {
    /// A keep-alive.
    Renew {
        id: i64,
    },
    TimeToLive {
        id: i64,
        keys: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum LeaseAnswer {
    /// Renewed for its full granted TTL.
    Renewed { ttl: i64 },
    /// Granted TTL, seconds left, and the attached keys if asked for.
    Live {
        ttl: i64,
        remaining: i64,
        keys: Vec<Vec<u8>>,
    },
    /// No such lease (never granted, revoked, or expired).
    NotFound,
}

/// Lease counters of one table, for `/metrics`.
#[derive(Default)]
pub struct LeaseCounts {
    pub granted: AtomicU64,
    pub revoked: AtomicU64,
    /// Revokes this node proposed as raft leader for expired leases.
    pub expired: AtomicU64,
}

impl RaftGroup {
    /// Makes this node's lessor primary over every lease the table holds.
    pub(crate) async fn promote_lessor(&self, extend: Duration) -> Result<()> {
        let sm = self.state_machine().clone();
        let interval = self.lease_checkpoint_interval();
        blocking(move || {
            sm.lessor.promote(extend, interval, || {
                sm.db.read(|r| {
                    let mut all = Vec::new();
                    r.leases(&mut |l| {
                        all.push(l);
                        true
                    })?;
                    Ok(all)
                })
            })
        })
        .await
    }

    /// [`Self::lease_query`] on this node, which must be the raft leader.
    /// It answers only once a quorum has confirmed its leadership recently
    /// (a deposed leader must not renew: etcd PR #16822), and a lease it
    /// does not know is looked up again after applying everything
    /// committed (a Grant may be committed and not yet applied: etcd PR
    /// #13690).
    pub(crate) async fn lease_query_as_leader(&self, query: LeaseQuery) -> Result<LeaseAnswer> {
        let recent = {
            let m = self.raft().metrics();
            let m = m.borrow();
            m.state == openraft::ServerState::Leader
                && m.millis_since_quorum_ack
                    .is_some_and(|ms| ms < self.raft().config().election_timeout_min)
        };
        let mut read_index = None;
        if !recent {
            read_index = Some(self.read_index_as_leader().await?);
        }
        // Leadership comes before the lessor's promotion (one apply later).
        if !self.lessor().wait_primary(LEADER_WAIT).await {
            return Err(EtcdError::LeaderChanged.into());
        }
        let answer = self.answer_lease(query).await?;
        if answer != LeaseAnswer::NotFound {
            return Ok(answer);
        }
        let index = match read_index {
            Some(index) => index,
            None => self.read_index_as_leader().await?,
        };
        if !self
            .wait_applied_past(index.saturating_sub(1), FORWARD_TIMEOUT)
            .await
        {
            return Err(EtcdError::Timeout.into());
        }
        self.answer_lease(query).await
    }

    async fn answer_lease(&self, query: LeaseQuery) -> Result<LeaseAnswer> {
        let lessor = self.lessor();
        let (id, keys) = match query {
            LeaseQuery::Renew { id } => {
                if lessor.checkpointed(id) {
                    // Or a later raft leader would give the renewed lease
                    // only what was left at the checkpoint.
                    let clear = LeaseCheckpoint {
                        id,
                        remaining_ttl: 0,
                    };
                    let cmd = Command::LeaseCheckpoint(LeaseCheckpointRequest {
                        checkpoints: vec![clear],
                    });
                    self.write_as_leader(cmd).await?;
                }
                return Ok(match lessor.renew(id) {
                    Lookup::Live { ttl, .. } => LeaseAnswer::Renewed { ttl },
                    Lookup::NotFound => LeaseAnswer::NotFound,
                    Lookup::NotPrimary => return Err(EtcdError::LeaderChanged.into()),
                });
            }
            LeaseQuery::TimeToLive { id, keys } => (id, keys),
        };
        let (ttl, remaining) = match lessor.lookup(id) {
            Lookup::Live { ttl, remaining } => (ttl, remaining),
            Lookup::NotFound => return Ok(LeaseAnswer::NotFound),
            Lookup::NotPrimary => return Err(EtcdError::LeaderChanged.into()),
        };
        let keys = if keys {
            self.read(false, move |r| {
                let mut keys = Vec::new();
                r.lease_keys(id, &mut |k| {
                    keys.push(k.to_vec());
                    true
                })?;
                Ok(keys)
            })
            .await?
        } else {
            Vec::new()
        };
        Ok(LeaseAnswer::Live {
            ttl,
            remaining,
            keys,
        })
    }
}

/// Tracks leadership and expires leases until the group is dropped or
/// shut down. `extend` is what promotion adds to every TTL (an election
/// timeout: the old leader may still have acknowledged keep-alives).
pub async fn run(group: Weak<RaftGroup>, extend: Duration) {
    let Some(mut metrics) = group.upgrade().map(|g| g.raft().metrics()) else {
        return;
    };
    let revokes = Arc::new(Semaphore::new(MAX_PENDING_REVOKES));
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut promoted_term = None;
    loop {
        let ticked = tokio::select! {
            changed = metrics.changed() => {
                if changed.is_err() {
                    return; // the group shut down
                }
                false
            }
            _ = tick.tick() => true,
        };
        let Some(group) = group.upgrade() else {
            return;
        };
        let (leads, term) = {
            let m = metrics.borrow_and_update();
            let leads = m.state == ServerState::Leader
                && m.last_applied
                    .is_some_and(|l| l.leader_id.term == m.current_term);
            (leads, m.current_term)
        };
        let lessor = group.lessor();
        if !group.expires_leases() || !leads {
            if promoted_term.take().is_some() {
                lessor.demote();
            }
            continue;
        }
        // A snapshot install demotes the lessor: promote again from it.
        if promoted_term != Some(term) || !lessor.is_primary() {
            match group.promote_lessor(extend).await {
                Ok(()) => promoted_term = Some(term),
                Err(e) => {
                    tracing::warn!(table = %group.table, "loading leases to expire them: {e}");
                    continue;
                }
            }
        }
        if ticked {
            expire(&group, &revokes).await;
        }
    }
}

/// Proposes a revoke for every lease past its deadline, and the due
/// checkpoints, once this node has confirmed with a quorum that it is
/// still the raft leader.
async fn expire(group: &Arc<RaftGroup>, revokes: &Arc<Semaphore>) {
    let now = Instant::now();
    let expired = group.lessor().expired(now, MAX_REVOKES_PER_TICK);
    let checkpoints = group
        .lessor()
        .due_checkpoints(now, MAX_CHECKPOINTS_PER_TICK);
    if expired.is_empty() && checkpoints.is_empty() {
        return;
    }
    if let Err(e) = group.read_index_as_leader().await {
        // Re-armed: the next leader (or this one, once confirmed) retries.
        tracing::debug!(table = %group.table, "not revoking expired leases: {e}");
        return;
    }
    if !checkpoints.is_empty() {
        let cmd = Command::LeaseCheckpoint(LeaseCheckpointRequest { checkpoints });
        if let Err(e) = group.write_as_leader(cmd).await {
            tracing::debug!(table = %group.table, "checkpointing leases: {e}");
        }
    }
    for id in expired {
        let Ok(permit) = revokes.clone().acquire_owned().await else {
            return;
        };
        let group = group.clone();
        tokio::spawn(async move {
            let cmd = Command::LeaseRevoke(LeaseRevokeRequest { id });
            match group.write_as_leader(cmd).await {
                Ok(_) => {
                    group.lease_counts().expired.fetch_add(1, Ordering::Relaxed);
                }
                // Gone already (revoked by a client meanwhile): fine.
                Err(crate::error::Error::Etcd(crate::error::EtcdError::LeaseNotFound)) => {}
                Err(e) => tracing::debug!(table = %group.table, lease = id, "revoking: {e}"),
            }
            drop(permit);
        });
    }
}
