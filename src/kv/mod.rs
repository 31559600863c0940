//! etcd's key-value semantics, pure: revisions, ranges, txn rules and request
//! validation. No tokio, heed or tonic here: storage implements the two
//! traits below over LMDB, and the Raft state machine calls [`apply::apply`]
//! with a write view inside one LMDB write transaction.
//!
//! Invariants (etcd `mvcc/kvstore.go`):
//! - the store revision starts at 1 and grows by exactly 1 per write request
//!   that changes something; all changes of one request share the revision
//!   and are ordered by their sub-revision;
//! - a key's `create_revision`, `mod_revision` and `version` follow etcd:
//!   put on an absent key starts a new generation at version 1, a delete
//!   writes a tombstone that ends the generation;
//! - the compaction revision starts at -1 ("never") and history at or above it
//!   stays readable.
//!
//! Apply is deterministic: no clock, randomness or node id, so every node and
//! every follower cluster computes the same revisions from the same commands.

pub mod alarm;
pub mod apply;
pub mod command;
pub mod lease;
pub mod range;
pub mod txn;
pub mod validate;
pub mod watch;

use crate::error::Result;
use crate::pb::mvccpb::KeyValue;
use alarm::AlarmState;
use lease::Lease;
pub(crate) use range::KeyRange;

/// The revision counters of one table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RevisionState {
    /// The store revision: that of the last write request that changed data.
    pub current: i64,
    /// The last compaction revision; -1 when never compacted.
    pub compacted: i64,
}

impl Default for RevisionState {
    fn default() -> Self {
        RevisionState {
            current: 1,
            compacted: -1,
        }
    }
}

/// Read access to a table's multi-version keyspace.
pub trait MvccRead {
    fn revision_state(&self) -> Result<RevisionState>;

    /// The live version of `key` at revision `rev` (the newest one whose
    /// mod_revision <= rev), or `None` if absent or deleted at `rev`.
    fn get(&self, key: &[u8], rev: i64) -> Result<Option<KeyValue>>;

    /// Calls `visit` with every key live at `rev` in `range`, in key order,
    /// until it returns false.
    fn scan(
        &self,
        range: &KeyRange,
        rev: i64,
        visit: &mut dyn FnMut(KeyValue) -> bool,
    ) -> Result<()>;

    /// Calls `visit(revision, key, deleted)` for every change whose main
    /// revision is in `[from, to]`, in revision and sub-revision order,
    /// until it returns false. Changes below the compaction revision are
    /// gone; those at it are kept.
    fn changes(
        &self,
        from: i64,
        to: i64,
        visit: &mut dyn FnMut(i64, &[u8], bool) -> bool,
    ) -> Result<()>;

    fn lease(&self, id: i64) -> Result<Option<Lease>>;

    /// Calls `visit` with every lease, in id order, until it returns false.
    fn leases(&self, visit: &mut dyn FnMut(Lease) -> bool) -> Result<()>;

    /// Calls `visit` with every key attached to lease `id`, in key order,
    /// until it returns false.
    fn lease_keys(&self, id: i64, visit: &mut dyn FnMut(&[u8]) -> bool) -> Result<()>;

    fn alarms(&self) -> Result<AlarmState>;
}

/// Write access; writes become visible to reads in the same transaction.
pub trait MvccWrite: MvccRead {
    /// Stores `kv` as the version at `(kv.mod_revision, sub)`.
    fn put(&mut self, kv: &KeyValue, sub: i64) -> Result<()>;

    /// Stores a tombstone for `key` at `(rev, sub)`.
    fn tombstone(&mut self, key: &[u8], rev: i64, sub: i64) -> Result<()>;

    fn set_revision_state(&mut self, state: RevisionState) -> Result<()>;

    /// Drops every version superseded at or before `rev`, and tombstones at or
    /// before it, keeping what a read at `rev` or later can see. `previous`
    /// is the compaction revision before this one.
    fn compact(&mut self, previous: i64, rev: i64) -> Result<()>;

    fn put_lease(&mut self, lease: &Lease) -> Result<()>;

    /// Removes the lease and its attachment set (not the keys).
    fn delete_lease(&mut self, id: i64) -> Result<()>;

    /// Adds `key` to (`attached`) or removes it from lease `id`'s set.
    fn set_attached(&mut self, id: i64, key: &[u8], attached: bool) -> Result<()>;

    fn set_alarms(&mut self, alarms: &AlarmState) -> Result<()>;
}
