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
pub mod registry;
pub mod space;
pub mod state_machine;
pub mod transport;
pub mod watch;

use openraft::BasicNode;

use crate::kv::command::{CommandResult, Proposal};

pub type NodeId = u64;

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
pub type LogId = openraft::LogId<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, BasicNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, BasicNode>;

/// Runs LMDB work on a blocking thread; LMDB transactions never cross an await.
async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> crate::error::Result<R> + Send + 'static,
) -> crate::error::Result<R> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| crate::error::Error::Internal(format!("blocking task: {e}")))?
}
