//! Armada: an etcd-v3-compatible key-value server whose tables are each
//! their own Raft group, replicated across clusters.

pub mod api;
pub mod cli;
pub mod crash_point;
pub mod error;
pub mod kv;
pub mod pb;
pub mod raft;
pub mod replication;
pub mod server;
pub mod storage;
pub mod tls;

/// The gRPC metadata key that selects a table; without it a request goes to
/// the node's `--api.default-table`.
pub const TABLE_HEADER: &str = "armada-table";

/// Response metadata of a leader cluster's write: the epoch of the table
/// incarnation that applied it. A follower cluster waits for that
/// incarnation, not only for the revision, before it answers its client:
/// a re-created table starts its revisions again.
pub(crate) const EPOCH_HEADER: &str = "armada-epoch";

/// The [`EPOCH_HEADER`] of a response, if it has a valid one.
pub(crate) fn epoch_of(metadata: &tonic::metadata::MetadataMap) -> Option<u64> {
    metadata.get(EPOCH_HEADER)?.to_str().ok()?.parse().ok()
}

/// A request to another cluster's etcd API for `table`.
pub fn table_request<M>(table: &str, message: M) -> tonic::Request<M> {
    let mut request = tonic::Request::new(message);
    if let Ok(v) = table.parse() {
        request.metadata_mut().insert(TABLE_HEADER, v);
    }
    request
}
