//! An LMDB environment that can be defragmented: swapped, while the
//! process runs, for a compacted copy of itself (etcd's `defrag`), or for
//! a snapshot file (a Raft snapshot install).
//!
//! LMDB reuses freed pages but never shrinks its file. A defragment writes
//! a compacted copy of the environment (`mdb_env_copy2` with
//! `MDB_CP_COMPACT`: only the pages in use, renumbered) next to it, makes it
//! durable, closes the environment, renames the copy over `data.mdb`,
//! syncs the directory and opens the environment again. Like etcd's
//! defrag, it blocks every reader and writer of the environment while it
//! runs.
//!
//! Invariants:
//! - every transaction runs inside [`Defragmentable::with`], under a shared
//!   lock that a defragment takes exclusively, so no transaction ever spans
//!   a swap; the shared lock is taken recursively, so a reader that opens a
//!   second transaction never deadlocks against a waiting defragment;
//! - the copy replaces `data.mdb` only once it is complete and on disk: a
//!   crash before the rename leaves the old file and a stray copy (removed
//!   at the next open), a crash after it the compacted file.

use std::path::{Path, PathBuf};

use heed::CompactionOption;
use parking_lot::RwLock;

use super::{boot_marker, open_env, Durability, LmdbEnv};
use crate::error::{Error, Result};

const DATA_FILE: &str = "data.mdb";
const COPY_FILE: &str = "data.mdb.defrag";
const LOCK_FILE: &str = "lock.mdb";

/// An environment and the database handles `D` opened in it.
pub(crate) struct Defragmentable<D: Copy> {
    path: PathBuf,
    map_size: usize,
    max_dbs: u32,
    durability: Durability,
    /// Opens (creating if needed) the databases of a freshly opened env.
    databases: fn(&LmdbEnv) -> Result<D>,
    /// `None` only if reopening after a defragment failed.
    open: RwLock<Option<(LmdbEnv, D)>>,
    /// The environment found at open was discarded: it may have been torn
    /// by an OS crash (see [`Durability::Deferred`]).
    discarded: bool,
}

impl<D: Copy> Defragmentable<D> {
    pub fn open(
        path: &Path,
        map_size: usize,
        max_dbs: u32,
        durability: Durability,
        databases: fn(&LmdbEnv) -> Result<D>,
    ) -> Result<Self> {
        // A copy that a crash interrupted before its rename.
        remove_if_present(&path.join(COPY_FILE))?;
        let deferred = durability == Durability::Deferred;
        let discarded = deferred && boot_marker::may_be_torn(path)?;
        if discarded {
            tracing::warn!(
                path = %path.display(),
                "unsynced commits of an earlier boot: the environment is \
                 discarded (an OS crash may have torn it) and rebuilt"
            );
            remove_if_present(&path.join(DATA_FILE))?;
            remove_if_present(&path.join(LOCK_FILE))?;
        }
        let env = open_env(path, map_size, max_dbs, durability)?;
        if deferred {
            // Whatever an earlier run of this boot left in the page cache
            // reaches the disk before commits of this run go unsynced.
            env.force_sync()?;
            boot_marker::mark_unsynced(path)?;
        }
        let dbs = databases(&env)?;
        Ok(Defragmentable {
            path: path.to_path_buf(),
            map_size,
            max_dbs,
            durability,
            databases,
            open: RwLock::new(Some((env, dbs))),
            discarded,
        })
    }

    /// True if the environment found at open was discarded as possibly torn
    /// by an OS crash, and this one started empty.
    pub fn discarded(&self) -> bool {
        self.discarded
    }

    /// Runs `f` with the environment; no defragment runs meanwhile.
    pub fn with<R>(&self, f: impl FnOnce(&LmdbEnv, D) -> Result<R>) -> Result<R> {
        let open = self.open.read_recursive();
        let (env, dbs) = open.as_ref().ok_or_else(closed)?;
        f(env, *dbs)
    }

    /// The size of the environment's file on disk.
    pub(crate) fn disk_size(&self) -> u64 {
        std::fs::metadata(self.path.join(DATA_FILE)).map_or(0, |m| m.len())
    }

    /// Swaps the environment for a compacted copy of itself; returns the
    /// file's size before and after. On a failure before the swap (no room
    /// for the copy, say) the environment is left as it was.
    pub fn defragment(&self) -> Result<(u64, u64)> {
        let mut open = self.open.write();
        let before = self.disk_size();
        let copy = self.path.join(COPY_FILE);
        {
            let (env, _) = open.as_ref().ok_or_else(closed)?;
            let copied = env
                .copy_to_path(&copy, CompactionOption::Enabled)
                .and_then(|file| Ok(file.sync_all()?));
            if let Err(e) = copied {
                let _ = std::fs::remove_file(&copy);
                return Err(e.into());
            }
        }
        crate::crash_point::reached("defrag.copied");
        self.swap_in(&mut open, &copy, Some("defrag.swapped"))?;
        Ok((before, self.disk_size()))
    }

    /// Replaces the environment with a copy of `file`, an environment
    /// file as `mdb_env_copy2` writes it (a snapshot): the environment
    /// never holds the old data and the new at once, so a snapshot as large
    /// as the map installs. The caller checks the file first.
    pub(crate) fn replace_with(&self, file: &Path) -> Result<()> {
        let mut open = self.open.write();
        let copy = self.path.join(COPY_FILE);
        let copied =
            std::fs::copy(file, &copy).and_then(|_| std::fs::File::open(&copy)?.sync_all());
        if let Err(e) = copied {
            let _ = std::fs::remove_file(&copy);
            return Err(e.into());
        }
        // The install's own crash points are its caller's.
        self.swap_in(&mut open, &copy, None)
    }

    /// Closes the environment, renames the complete, durable `copy` over
    /// its file and opens it again (`crash_point` is reached after the
    /// rename).
    fn swap_in(
        &self,
        open: &mut Option<(LmdbEnv, D)>,
        copy: &Path,
        crash_point: Option<&'static str>,
    ) -> Result<()> {
        if let Some((env, _)) = open.take() {
            // Every transaction ran under the lock the caller holds alone.
            env.prepare_for_closing().wait();
        }
        let renamed = std::fs::rename(copy, self.path.join(DATA_FILE))
            .and_then(|()| std::fs::File::open(&self.path)?.sync_all());
        if let Some(point) = crash_point {
            crate::crash_point::reached(point);
        }
        // Opened again whether or not the rename took: the old file or the new.
        let env = open_env(&self.path, self.map_size, self.max_dbs, self.durability)?;
        let dbs = (self.databases)(&env)?;
        *open = Some((env, dbs));
        Ok(renamed?)
    }
}

impl<D: Copy> Drop for Defragmentable<D> {
    /// A `Deferred` environment is synced and marked clean as it closes, so
    /// a reboot after a clean stop has nothing to rebuild.
    fn drop(&mut self) {
        if self.durability != Durability::Deferred {
            return;
        }
        if let Some((env, _)) = self.open.get_mut().take() {
            // No transaction runs: `self` is borrowed mutably.
            if env.force_sync().is_ok() {
                let _ = boot_marker::mark_clean(&self.path);
            }
        }
    }
}

fn remove_if_present(file: &Path) -> Result<()> {
    match std::fs::remove_file(file) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

fn closed() -> Error {
    Error::Internal("the LMDB environment failed to reopen after a defragment".into())
}
