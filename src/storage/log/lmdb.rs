//! The Raft log of one table in LMDB (the `lmdb` engine of
//! `--raft.logdb`): entries by index, plus the small hard state (vote,
//! committed, last purged), every commit synced.

use std::ops::Bound::{Excluded, Included, Unbounded};
use std::path::Path;

use heed::types::{Bytes, Str};
use heed::Database;

use super::ReadBudget;
use crate::error::{Error, Result};
use crate::storage::defrag::Defragmentable;
use crate::storage::keys::index_key;
use crate::storage::{Durability, LmdbEnv};

pub(crate) struct LmdbLog {
    env: Defragmentable<Dbs>,
}

#[derive(Clone, Copy)]
struct Dbs {
    log: Database<Bytes, Bytes>,
    state: Database<Str, Bytes>,
}

impl Dbs {
    fn create(env: &LmdbEnv) -> Result<Dbs> {
        let mut wtxn = env.write_txn()?;
        let log = env.create_database(&mut wtxn, Some("log"))?;
        let state = env.create_database(&mut wtxn, Some("raft"))?;
        wtxn.commit()?;
        Ok(Dbs { log, state })
    }
}

fn decode_index(raw: &[u8]) -> Result<u64> {
    Ok(u64::from_be_bytes(
        raw.try_into()
            .map_err(|_| Error::Corrupt("bad log index".into()))?,
    ))
}

impl LmdbLog {
    /// An upper bound of [`Self::space`] that reads no database: the
    /// high-water mark stands for the pages in use.
    pub(crate) fn space_bound(&self) -> crate::storage::Space {
        (self.env.with(|env, _| Ok(crate::storage::high_water(env)))).unwrap_or_default()
    }

    /// How full the environment is.
    pub fn space(&self) -> Result<crate::storage::Space> {
        self.env.with(|env, d| {
            crate::storage::space(env, |t| Ok(vec![d.log.stat(t)?, d.state.stat(t)?]))
        })
    }

    pub fn open(path: &Path, map_size: usize) -> Result<LmdbLog> {
        let env = Defragmentable::open(path, map_size, 4, Durability::Full, Dbs::create)?;
        Ok(LmdbLog { env })
    }

    /// The size of the environment's file.
    pub(crate) fn disk_size(&self) -> u64 {
        self.env.disk_size()
    }

    /// Swaps the environment for a compacted copy (see
    /// [`Defragmentable::defragment`]); the file's size before and after.
    pub fn defragment(&self) -> Result<(u64, u64)> {
        self.env.defragment()
    }

    /// Appends (or overwrites) entries, and records the `state` values
    /// given, and syncs them in one commit.
    pub fn append(
        &self,
        entries: impl IntoIterator<Item = (u64, Vec<u8>)>,
        state: &[(&str, &[u8])],
    ) -> Result<()> {
        self.env.with(|env, d| {
            let mut wtxn = env.write_txn()?;
            for (index, bytes) in entries {
                d.log.put(&mut wtxn, &index_key(index), &bytes)?;
            }
            for (name, value) in state {
                d.state.put(&mut wtxn, name, value)?;
            }
            wtxn.commit()?;
            Ok(())
        })
    }

    /// Entries with `start <= index < end`, stopping once `max_bytes` of
    /// them were read (at least one entry is returned if any is in range).
    pub fn entries(
        &self,
        start: u64,
        end: Option<u64>,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>> {
        self.env.with(|env, d| {
            let rtxn = env.read_txn()?;
            let lo = index_key(start);
            let hi = end.map(index_key);
            let upper = match &hi {
                Some(hi) => Excluded(&hi[..]),
                None => Unbounded,
            };
            let mut out = Vec::new();
            let mut budget = ReadBudget::new(max_bytes);
            for item in d.log.range(&rtxn, &(Included(&lo[..]), upper))? {
                let (k, v) = item?;
                if !budget.admits(v.len()) {
                    break;
                }
                out.push((decode_index(k)?, v.to_vec()));
            }
            Ok(out)
        })
    }

    pub fn last(&self) -> Result<Option<(u64, Vec<u8>)>> {
        self.env.with(|env, d| {
            let rtxn = env.read_txn()?;
            match d.log.last(&rtxn)? {
                Some((k, v)) => Ok(Some((decode_index(k)?, v.to_vec()))),
                None => Ok(None),
            }
        })
    }

    /// Deletes entries with index >= `from`.
    pub fn truncate(&self, from: u64) -> Result<()> {
        self.env.with(|env, d| {
            let mut wtxn = env.write_txn()?;
            let lo = index_key(from);
            d.log
                .delete_range(&mut wtxn, &(Included(&lo[..]), Unbounded))?;
            wtxn.commit()?;
            Ok(())
        })
    }

    /// Deletes entries with index <= `upto` and records `state` (the last
    /// purged id) in the same commit.
    pub fn purge(&self, upto: u64, name: &str, state: &[u8]) -> Result<()> {
        self.env.with(|env, d| {
            let mut wtxn = env.write_txn()?;
            let hi = index_key(upto);
            d.state.put(&mut wtxn, name, state)?;
            d.log
                .delete_range(&mut wtxn, &(Unbounded, Included(&hi[..])))?;
            wtxn.commit()?;
            Ok(())
        })
    }

    pub(crate) fn get_state(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.env.with(|env, d| {
            let rtxn = env.read_txn()?;
            Ok(d.state.get(&rtxn, name)?.map(<[u8]>::to_vec))
        })
    }

    pub(crate) fn put_state(&self, name: &str, value: &[u8]) -> Result<()> {
        self.env.with(|env, d| {
            let mut wtxn = env.write_txn()?;
            d.state.put(&mut wtxn, name, value)?;
            wtxn.commit()?;
            Ok(())
        })
    }
}
