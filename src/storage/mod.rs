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

pub(crate) mod boot_marker;
pub mod defrag;
pub mod keys;
pub mod log;
pub mod mvcc;

use std::path::Path;

use heed::{DatabaseStat, Env, EnvOpenOptions, RoTxn, WithoutTls};

use crate::error::Result;

pub(crate) type LmdbEnv = Env<WithoutTls>;

/// How hard a commit pushes to disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Data and meta page are fsynced at every commit: a commit is durable
    /// when it returns. The Raft log needs this (an acknowledged entry).
    Full,
    /// LMDB's `NOSYNC`: a commit reaches the page cache only, so it
    /// survives the process's crash but not the machine's, which may even
    /// tear the environment. The environment is synced before it is copied
    /// and when it closes, and its directory's [`boot_marker`] tells whether
    /// an OS crash came in between: then it is discarded at open (see
    /// [`defrag::Defragmentable::discarded`]) and its owner rebuilds it. For
    /// a state machine, whose snapshot and Raft log are durable: the log is
    /// a write's only fsync.
    Deferred,
}

/// Opens (creating if needed) an environment directory. Read transactions
/// are not tied to threads, so heed work can run on any blocking thread.
pub(crate) fn open_env(
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
    if durability == Durability::Deferred {
        // SAFETY: what an OS crash may tear is detected and rebuilt (see
        // `Durability::Deferred`).
        unsafe { options.flags(heed::EnvFlags::NO_SYNC) };
    }
    // SAFETY: each environment path is opened once per process (heed refuses a
    // second open), and nothing else maps these files.
    Ok(unsafe { options.open(path)? })
}

/// How full an environment is. LMDB's file only grows (its high-water
/// mark), but pages freed by deletes, compaction and log purges are reused,
/// so what can still be written is the map less the pages in use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Space {
    pub map: u64,
    /// Bytes of the pages the databases use (branch, leaf and overflow),
    /// or the high-water mark where that stands for them as a bound.
    pub in_use: u64,
}

impl Space {
    /// True if writing `extra` more bytes would pass `fraction` of the map.
    pub fn over(&self, fraction: f64, extra: u64) -> bool {
        self.in_use + extra > (self.map as f64 * fraction) as u64
    }
}

/// `env`'s map size, and its high-water mark standing for the pages in use:
/// an upper bound of [`space`] from LMDB's environment info alone (no
/// transaction).
fn high_water(env: &LmdbEnv) -> Space {
    let info = env.info();
    let page = env.stat().page_size as u64;
    Space {
        map: info.map_size as u64,
        in_use: (info.last_page_number as u64 + 1) * page,
    }
}

/// `env`'s [`Space`], counting the pages of the main database and those of
/// the stats `dbs` reads (one per database of the environment) in one read
/// transaction. Only handles opened at startup are used: no `mdb_dbi_open`
/// on a hot path.
fn space(
    env: &LmdbEnv,
    dbs: impl FnOnce(&RoTxn<'_, WithoutTls>) -> heed::Result<Vec<DatabaseStat>>,
) -> Result<Space> {
    let main = env.stat();
    let mut pages = (main.branch_pages + main.leaf_pages + main.overflow_pages) as u64;
    let rtxn = env.read_txn()?;
    for st in dbs(&rtxn)? {
        pages += (st.branch_pages + st.leaf_pages + st.overflow_pages) as u64;
    }
    Ok(Space {
        in_use: pages * main.page_size as u64,
        ..high_water(env)
    })
}

#[cfg(test)]
mod testscripts_test;
