//! Cross-cluster replication (`armada.replication.v1`): a leader cluster
//! serves its tables' committed logical commands and consistent snapshots;
//! follower clusters pull them.
//!
//! - [`wire`]: logical commands to and from their protobuf form, the only
//!   format that crosses clusters (Raft's own bincode stays inside one);
//! - [`leader`]: the leader cluster's `Metadata`, `Log` and `Snapshot`
//!   services, answered by any node from its applied state;
//! - [`follower`]: a follower cluster's table mirroring, per-table workers
//!   under a lease, snapshot recovery, and write forwarding to the leader
//!   cluster;
//! - [`status`]: the per-table replication state over gRPC.
//!
//! Invariant: a leader index is the leader cluster's Raft log index of the
//! entry that carried a command, and only applied (so committed) entries are
//! ever sent; a follower applying them in leader-index order reproduces the
//! leader's revisions exactly.

pub mod follower;
pub mod leader;
pub mod snapshot_stream;
pub mod status;
pub mod wire;
pub mod worker_lease;

/// A file removed when dropped: snapshot copies live as long as their use.
pub(crate) struct RemoveOnDrop(pub std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// TLS of the replication port: this side's PEM certificate and key, and
/// the CA the other side's certificate must chain to. A replication server
/// always has an identity; a follower has one only when the leader asks for
/// client certificates (mTLS), and with none it only checks the leader's.
#[derive(Clone)]
pub struct TlsFiles {
    pub identity: Option<Identity>,
    pub ca: Option<Vec<u8>>,
}

/// A PEM certificate (chain) and its private key.
#[derive(Clone)]
pub struct Identity {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

impl std::fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsFiles { .. }") // never print a key
    }
}
