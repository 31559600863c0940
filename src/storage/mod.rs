//! LMDB (heed) storage, and nothing else: no openraft, no gRPC.
//!
//! Every table has two LMDB environments:
//!
//! ```text
//! <wal-dir>/<table>/            raft log env (LogDb)
//!     log    u64 BE index -> encoded log entry
//!     raft   name -> bytes     vote, committed, last purged log id
//! <state-machine-dir>/<table>/  state machine env (MvccDb)
//!     kv     esc(key) 00 00 | main BE | sub BE -> 1 KeyValue | 0 (tombstone)
//!     revs   main BE | sub BE -> 1 key | 0 key  (change log, compaction)
//!     meta   name -> bytes     revision state, alarms, last applied, membership
//!     leases      lease id BE -> Lease (id, ttl, remaining ttl)
//!     lease_keys  lease id BE | key -> ()   the keys attached to each lease
//! ```
//!
//! The `kv` key puts all versions of one user key next to each other in
//! revision order, and user keys in bytewise order, so a read at any
//! revision is one seek per key. Writes through [`mvcc::Writer`] happen in a
//! single write transaction that the caller commits, so data, revision state
//! and the last applied log id land together.

pub mod keys;
pub mod log;
pub mod mvcc;

use std::path::Path;

use heed::{Env, EnvOpenOptions, WithoutTls};

use crate::error::Result;

pub type LmdbEnv = Env<WithoutTls>;

/// How hard a commit pushes to disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Data and meta page are fsynced at every commit: a commit is durable
    /// when it returns. The Raft log needs this (an acknowledged entry).
    Full,
    /// LMDB's `NOMETASYNC`: one fsync per commit instead of two. An OS crash
    /// may undo the last commit but never corrupts the environment. Fine for
    /// a state machine whose entries the Raft log replays after a restart.
    Replayable,
}

/// Opens (creating if needed) an environment directory. Read transactions
/// are not tied to threads, so heed work can run on any blocking thread.
pub fn open_env(
    path: &Path,
    map_size: usize,
    max_dbs: u32,
    durability: Durability,
) -> Result<LmdbEnv> {
    std::fs::create_dir_all(path)?;
    let mut options = EnvOpenOptions::new().read_txn_without_tls();
    options
        .map_size(map_size)
        .max_dbs(max_dbs)
        .max_readers(1024);
    if durability == Durability::Replayable {
        // SAFETY: NO_META_SYNC keeps LMDB's integrity guarantees (see above).
        unsafe { options.flags(heed::EnvFlags::NO_META_SYNC) };
    }
    // SAFETY: each environment path is opened once per process (heed refuses a
    // second open), and nothing else maps these files.
    Ok(unsafe { options.open(path)? })
}

/// True when the environment's high-water mark passed `fraction` of its map:
/// writes must stop before LMDB's map is truly full, because a Raft log that
/// cannot append stops the group.
pub fn env_nearly_full(env: &LmdbEnv, fraction: f64) -> bool {
    let info = env.info();
    let page = env.stat().page_size as usize;
    (info.last_page_number + 1) * page > (info.map_size as f64 * fraction) as usize
}

/// Bytes in use by an environment (non-free pages) and its file size.
pub fn env_sizes(env: &LmdbEnv) -> Result<(u64, u64)> {
    Ok((env.non_free_pages_size()?, env.real_disk_size()?))
}

#[cfg(test)]
mod testscripts_test;
