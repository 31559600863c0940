//! A table's storage space on this node: etcd's quota check before a write
//! that grows the store, and keeping the raft log from filling its map.
//!
//! The quota counts the pages in use of both LMDB environments, not LMDB's
//! high-water mark (the file only grows), so space that compaction, deletes
//! and log purges free counts again and etcd's recovery procedure (compact,
//! defrag, disarm) works. The raft log is purged after the snapshot taken
//! every `--raft.snapshot-entries` entries; large entries can fill the log's
//! map long before that. So once the log's pages in use pass half its map,
//! this node snapshots its state machine and purges its log through the
//! snapshot, as a Defragment also does on demand before it swaps both
//! environments for compacted copies (which shrinks their files). A raft
//! peer that still needed the purged entries catches up by snapshot.

use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::Duration;

use super::group::RaftGroup;
use crate::error::{Error, Result};
use crate::storage::Space;

/// The share of an environment's map writes that grow the store may fill
/// (etcd's quota): the rest is room for raft's own entries and for the
/// deletes, revokes, compactions and alarm changes that recover space.
const QUOTA: f64 = 0.9;

/// The share of the log's map past which the log is compacted at once.
const LOG_COMPACTION: f64 = 0.5;

/// How often the log's space is looked at.
const TICK: Duration = Duration::from_secs(1);

/// How long a snapshot may take before a log compaction gives up (and is
/// tried again on the next tick).
const SNAPSHOT_WAIT: Duration = Duration::from_secs(600);

impl RaftGroup {
    /// True when this node's storage is (nearly) out of space for a write
    /// of about `bytes`: an apply waits for space in a full map, or either
    /// environment's pages in use plus twice `bytes` (the log entry, the
    /// stored value and what copy-on-write touches) would pass [`QUOTA`]
    /// of its map.
    pub(crate) fn space_low(&self, bytes: usize) -> bool {
        if self.state_machine().map_full.load(Ordering::Relaxed) {
            return true;
        }
        let extra = 2 * bytes as u64;
        // The pages in use are counted only once the high-water mark, their
        // upper bound, says the write might not fit.
        let over = |bound: Space, space: &dyn Fn() -> Result<Space>| {
            bound.over(QUOTA, extra)
                && match space() {
                    Ok(space) => space.over(QUOTA, extra),
                    Err(e) => {
                        tracing::warn!(table = %self.table, "reading storage space: {e}");
                        false
                    }
                }
        };
        let (log, sm) = (self.log_db(), &self.state_machine().db);
        over(log.space_bound(), &|| log.space()) || over(sm.space_bound(), &|| sm.space())
    }

    /// Snapshots the state machine as applied now (unless a snapshot
    /// covers it already) and purges this node's log through the snapshot.
    pub(crate) async fn compact_log(&self) -> Result<()> {
        let raft = self.raft();
        let fatal = |e: openraft::error::Fatal<super::NodeId>| Error::Raft(e.to_string());
        let (applied, snapshot) = {
            let m = raft.metrics().borrow().clone();
            (m.last_applied.map_or(0, |l| l.index), m.snapshot)
        };
        if snapshot.is_none_or(|s| s.index < applied) {
            raft.trigger().snapshot().await.map_err(fatal)?;
            raft.wait(Some(SNAPSHOT_WAIT))
                .metrics(
                    |m| m.snapshot.is_some_and(|s| s.index >= applied),
                    "a snapshot for a log compaction",
                )
                .await
                .map_err(|e| Error::Raft(e.to_string()))?;
        }
        let snapshot = raft.metrics().borrow().snapshot;
        if let Some(upto) = snapshot {
            raft.trigger().purge_log(upto.index).await.map_err(fatal)?;
        }
        Ok(())
    }
}

impl RaftGroup {
    /// etcd's defrag, for this node's copy of the table: the log is purged
    /// through a fresh snapshot, then the state machine's and the log's
    /// environments are each swapped for a compacted copy, which returns
    /// the pages they no longer use to the file system. Reads and writes
    /// of the table wait meanwhile, as they do during etcd's defrag.
    pub async fn defragment(&self) -> Result<()> {
        self.compact_log().await?;
        let (sm, log) = (self.state_machine().clone(), self.log_db().clone());
        let table = self.table.clone();
        super::blocking(move || {
            let (sm_before, sm_after) = sm.db.defragment()?;
            let (log_before, log_after) = log.defragment()?;
            tracing::info!(
                %table, sm_before, sm_after, log_before, log_after,
                "defragmented (file sizes in bytes)"
            );
            Ok(())
        })
        .await
    }
}

/// Compacts the log whenever it passes [`LOG_COMPACTION`] of its map,
/// until the group is dropped or shut down.
pub async fn run(group: Weak<RaftGroup>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(group) = group.upgrade() else {
            return;
        };
        if group.raft().metrics().borrow().running_state.is_err() {
            return;
        }
        let log = group.log_db();
        let crowded = log.space_bound().over(LOG_COMPACTION, 0)
            && match log.space() {
                Ok(space) => space.over(LOG_COMPACTION, 0),
                Err(e) => {
                    tracing::warn!(table = %group.table, "reading the log's space: {e}");
                    false
                }
            };
        if crowded {
            tracing::info!(table = %group.table, "the raft log passed half its map: compacting it");
            if let Err(e) = group.compact_log().await {
                tracing::warn!(table = %group.table, "compacting the raft log: {e}");
            }
        }
    }
}
