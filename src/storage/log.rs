//! The Raft log of one table as raw bytes, on the engine `--raft.logdb`
//! chose (Regatta's flag): entries by index, plus the small hard state
//! (vote, committed, last purged) by name. What the bytes mean is the raft
//! layer's business. Both engines sync every write before it returns.

mod lmdb;
mod wal;

use std::path::Path;
use std::str::FromStr;

use self::lmdb::LmdbLog;
use self::wal::Wal;
use super::Space;
use crate::error::{Error, Result};

/// Which engine holds a table's Raft log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogEngine {
    /// An LMDB environment: entries in a B-tree.
    Lmdb,
    /// Append-only segment files: one sequential write and one `fdatasync`
    /// per batch.
    #[default]
    Wal,
}

impl FromStr for LogEngine {
    type Err = Error;

    fn from_str(s: &str) -> Result<LogEngine> {
        match s {
            "lmdb" => Ok(LogEngine::Lmdb),
            "wal" => Ok(LogEngine::Wal),
            other => Err(Error::InvalidInput(format!(
                "unknown raft log engine {other:?} (lmdb or wal)"
            ))),
        }
    }
}

/// How many entries one read of at most `max_bytes` takes: as many as fit,
/// and at least one however large (a lone entry must still be readable).
struct ReadBudget {
    max_bytes: usize,
    taken: usize,
    any: bool,
}

impl ReadBudget {
    fn new(max_bytes: usize) -> ReadBudget {
        ReadBudget {
            max_bytes,
            taken: 0,
            any: false,
        }
    }

    /// Whether an entry of `len` bytes joins the read (then it counts).
    fn admits(&mut self, len: usize) -> bool {
        self.taken = self.taken.saturating_add(len);
        let admitted = !self.any || self.taken <= self.max_bytes;
        self.any = true;
        admitted
    }
}

/// A table's Raft log, on either engine.
pub struct LogDb(Engine);

enum Engine {
    Lmdb(LmdbLog),
    Wal(Wal),
}

impl LogDb {
    /// Opens (creating if needed) the log in `path`; `budget` is its quota
    /// in bytes (the LMDB engine's map size). A directory holds the engine
    /// it was created with: the other one is refused.
    pub fn open(path: &Path, budget: usize, engine: LogEngine) -> Result<LogDb> {
        let has = |file: &str| path.join(file).exists();
        let wal_files = path.is_dir()
            && std::fs::read_dir(path)?
                .filter_map(|e| e.ok())
                .any(|e| e.file_name().to_string_lossy().ends_with(".wal"));
        let found = match (has("data.mdb"), wal_files) {
            (true, _) => Some(LogEngine::Lmdb),
            (false, true) => Some(LogEngine::Wal),
            (false, false) => None,
        };
        if found.is_some_and(|f| f != engine) {
            return Err(Error::InvalidInput(format!(
                "the raft log in {} was written by the {:?} engine, not {engine:?} \
                 (--raft.logdb)",
                path.display(),
                found.unwrap()
            )));
        }
        Ok(LogDb(match engine {
            LogEngine::Lmdb => Engine::Lmdb(LmdbLog::open(path, budget)?),
            LogEngine::Wal => Engine::Wal(Wal::open(path, budget)?),
        }))
    }

    /// Appends (or overwrites from their first index on) entries, and
    /// records the `state` values given, synced together.
    pub fn append(
        &self,
        entries: impl IntoIterator<Item = (u64, Vec<u8>)>,
        state: &[(&str, &[u8])],
    ) -> Result<()> {
        match &self.0 {
            Engine::Lmdb(l) => l.append(entries, state),
            Engine::Wal(w) => w.append(entries, state),
        }
    }

    /// Entries with `start <= index < end`, stopping once `max_bytes` of
    /// them were read (at least one entry is returned if any is in range).
    pub fn entries(
        &self,
        start: u64,
        end: Option<u64>,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>> {
        match &self.0 {
            Engine::Lmdb(l) => l.entries(start, end, max_bytes),
            Engine::Wal(w) => w.entries(start, end, max_bytes),
        }
    }

    pub fn last(&self) -> Result<Option<(u64, Vec<u8>)>> {
        match &self.0 {
            Engine::Lmdb(l) => l.last(),
            Engine::Wal(w) => w.last(),
        }
    }

    /// Deletes entries with index >= `from`.
    pub fn truncate(&self, from: u64) -> Result<()> {
        match &self.0 {
            Engine::Lmdb(l) => l.truncate(from),
            Engine::Wal(w) => w.truncate(from),
        }
    }

    /// Deletes entries with index <= `upto` and records `state` (the last
    /// purged id) in the same write.
    pub fn purge(&self, upto: u64, name: &str, state: &[u8]) -> Result<()> {
        match &self.0 {
            Engine::Lmdb(l) => l.purge(upto, name, state),
            Engine::Wal(w) => w.purge(upto, name, state),
        }
    }

    pub(crate) fn get_state(&self, name: &str) -> Result<Option<Vec<u8>>> {
        match &self.0 {
            Engine::Lmdb(l) => l.get_state(name),
            Engine::Wal(w) => w.get_state(name),
        }
    }

    pub(crate) fn put_state(&self, name: &str, value: &[u8]) -> Result<()> {
        match &self.0 {
            Engine::Lmdb(l) => l.put_state(name, value),
            Engine::Wal(w) => w.put_state(name, value),
        }
    }

    /// An upper bound of [`Self::space`] that is cheap to compute.
    pub(crate) fn space_bound(&self) -> Space {
        match &self.0 {
            Engine::Lmdb(l) => l.space_bound(),
            Engine::Wal(w) => w.space(),
        }
    }

    /// How full the log is against its budget.
    pub fn space(&self) -> Result<Space> {
        match &self.0 {
            Engine::Lmdb(l) => l.space(),
            Engine::Wal(w) => Ok(w.space()),
        }
    }

    /// The size of the log's files.
    pub(crate) fn disk_size(&self) -> u64 {
        match &self.0 {
            Engine::Lmdb(l) => l.disk_size(),
            Engine::Wal(w) => w.disk_size(),
        }
    }

    /// Gives the pages the log no longer uses back to the file system
    /// (LMDB's compacted copy; a WAL frees whole segments at each purge and
    /// has nothing more to give); the size before and after.
    pub fn defragment(&self) -> Result<(u64, u64)> {
        match &self.0 {
            Engine::Lmdb(l) => l.defragment(),
            Engine::Wal(w) => Ok((w.disk_size(), w.disk_size())),
        }
    }
}
