//! Armada: an etcd-v3-compatible key-value server whose tables are each
//! their own Raft group, replicated across clusters.

pub mod api;
pub mod cli;
pub mod error;
pub mod kv;
pub mod pb;
pub mod raft;
pub mod replication;
pub mod server;
pub mod storage;

/// The gRPC metadata key that selects a table; without it a request goes to
/// the node's `--api.default-table`.
pub const TABLE_HEADER: &str = "armada-table";
