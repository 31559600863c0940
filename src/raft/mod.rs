//! openraft wiring: one Raft group per table, storing its log and its state
//! machine in that table's two LMDB environments.
//!
//! - [`log_store`]: `RaftLogStorage` over `storage::log::LogDb`;
//! - [`state_machine`]: `RaftStateMachine` over `storage::mvcc::MvccDb`; a
//!   batch of entries is applied in one LMDB write transaction together with
//!   the last applied log id and membership;
//! - [`network`] and [`transport`]: the Raft transport between nodes
//!   (client and server halves), one connection per peer for all groups;
//! - [`lease`]: lease expiry decided by the raft leader, keep-alives;
//! - [`proposer`]: group commit, many concurrent writes per log entry;
//! - [`group`]: a table's Raft group, with write and read entry points that
//!   speak crate errors;
//! - [`registry`]: the tables of this node, following the cluster's
//!   metadata group.

pub mod group;
pub mod lease;
pub mod log_store;
pub mod network;
pub mod proposer;
mod read_index;
pub mod registry;
pub mod space;
pub mod state_machine;
pub mod transport;
pub mod watch;

use openraft::BasicNode;

use crate::kv::command::{CommandResult, Proposal};

pub(crate) type NodeId = u64;

openraft::declare_raft_types!(
    /// Armada's Raft types: an entry carries a batch of etcd commands, and
    /// applying it returns, per command, etcd's response or a deterministic
    /// etcd error.
    pub TypeConfig:
        D = Proposal,
        R = Vec<CommandResult>,
        NodeId = NodeId,
        Node = BasicNode,
        SnapshotData = tokio::fs::File,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub(crate) type LogId = openraft::LogId<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;
pub(crate) type StoredMembership = openraft::StoredMembership<NodeId, BasicNode>;
pub(crate) type SnapshotMeta = openraft::SnapshotMeta<NodeId, BasicNode>;

/// Runs LMDB work on a blocking thread; LMDB transactions never cross an await.
async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> crate::error::Result<R> + Send + 'static,
) -> crate::error::Result<R> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| crate::error::Error::Internal(format!("blocking task: {e}")))?
}

/// How many blocking threads clients' reads (Ranges, read txns, watch
/// catch-up, replication reads of logs and snapshots) may hold at once.
/// tokio's blocking pool has 512 threads; Raft's own storage work (log
/// appends, votes, applies) takes the rest, so however many slow reads
/// clients start, heartbeats and applies are never queued behind them.
pub(crate) const CLIENT_READ_THREADS: usize = 64;

static CLIENT_READS: tokio::sync::Semaphore =
    tokio::sync::Semaphore::const_new(CLIENT_READ_THREADS);

/// [`blocking`] for work a client asked for: it first waits (asynchronously)
/// for one of [`CLIENT_READ_THREADS`] permits, held until the work is done
/// even if the caller stops waiting for it.
pub(crate) async fn client_blocking<R: Send + 'static>(
    f: impl FnOnce() -> crate::error::Result<R> + Send + 'static,
) -> crate::error::Result<R> {
    let permit = CLIENT_READS
        .acquire()
        .await
        .map_err(|e| crate::error::Error::Internal(format!("client read permits: {e}")))?;
    blocking(move || {
        let _permit = permit;
        f()
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// With every client read permit held by a read that does not finish,
    /// and more reads waiting, Raft's storage work still gets a thread.
    #[test]
    fn client_reads_never_take_raft_storage_threads() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(CLIENT_READ_THREADS + 1)
            .enable_all()
            .build()
            .unwrap();
        let (release, stuck) = std::sync::mpsc::channel::<()>();
        let stuck = std::sync::Arc::new(std::sync::Mutex::new(stuck));
        rt.block_on(async {
            let reads: Vec<_> = (0..2 * CLIENT_READ_THREADS)
                .map(|_| {
                    let stuck = stuck.clone();
                    tokio::spawn(client_blocking(move || {
                        let _ = stuck.lock().unwrap().recv();
                        Ok(())
                    }))
                })
                .collect();
            // Wait until the permits are all taken.
            while CLIENT_READS.available_permits() > 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let raft_work = tokio::time::timeout(Duration::from_secs(30), blocking(|| Ok(7)));
            assert_eq!(raft_work.await.expect("raft storage starved").unwrap(), 7);
            drop(release);
            for read in reads {
                read.await.unwrap().unwrap();
            }
        });
    }
}
