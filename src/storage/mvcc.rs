//! A table's multi-version keyspace in LMDB: implements [`kv::MvccRead`] and
//! [`kv::MvccWrite`] over heed transactions, plus the state machine's own
//! metadata, hashes and snapshot files.
//!
//! Readers and writers borrow a transaction the caller owns, so the Raft
//! state machine can put the data of a whole batch of log entries, the
//! revision state and the last applied log id into one commit.

use std::collections::BTreeSet;
use std::ops::Bound::{Excluded, Included, Unbounded};
use std::path::Path;

use heed::types::{Bytes, Str};
use heed::{CompactionOption, Database, RoTxn, RwTxn};
use prost::Message;

use super::defrag::Defragmentable;
use super::keys;
use super::{Durability, LmdbEnv};
use crate::error::{Error, Result};
use crate::kv::alarm::AlarmState;
use crate::kv::lease::Lease;
use crate::kv::{KeyRange, MvccRead, MvccWrite, RevisionState};
use crate::pb::mvccpb::KeyValue;

const TAG_TOMBSTONE: u8 = 0;
const TAG_PUT: u8 = 1;
const META_REVISION: &str = "revision";
const META_ALARMS: &str = "alarms";

#[derive(Clone, Copy)]
struct Dbs {
    kv: Database<Bytes, Bytes>,
    revs: Database<Bytes, Bytes>,
    meta: Database<Str, Bytes>,
    leases: Database<Bytes, Bytes>,
    lease_keys: Database<Bytes, Bytes>,
}

impl Dbs {
    /// The byte-keyed databases, in the order snapshots copy them.
    fn byte_dbs(&self) -> [Database<Bytes, Bytes>; 4] {
        [self.kv, self.revs, self.leases, self.lease_keys]
    }

    fn create(env: &LmdbEnv) -> Result<Dbs> {
        let mut wtxn = env.write_txn()?;
        let dbs = Dbs {
            kv: env.create_database(&mut wtxn, Some("kv"))?,
            revs: env.create_database(&mut wtxn, Some("revs"))?,
            meta: env.create_database(&mut wtxn, Some("meta"))?,
            leases: env.create_database(&mut wtxn, Some("leases"))?,
            lease_keys: env.create_database(&mut wtxn, Some("lease_keys"))?,
        };
        wtxn.commit()?;
        Ok(dbs)
    }

    fn open(env: &LmdbEnv) -> Result<Dbs> {
        let rtxn = env.read_txn()?;
        let open = |name| -> Result<Database<Bytes, Bytes>> {
            env.open_database(&rtxn, Some(name))?
                .ok_or_else(|| Error::Corrupt(format!("snapshot has no {name:?} database")))
        };
        let dbs = Dbs {
            kv: open("kv")?,
            revs: open("revs")?,
            leases: open("leases")?,
            lease_keys: open("lease_keys")?,
            meta: env
                .open_database(&rtxn, Some("meta"))?
                .ok_or_else(|| Error::Corrupt("snapshot has no \"meta\" database".into()))?,
        };
        rtxn.commit()?;
        Ok(dbs)
    }
}

/// The state machine environment of one table.
pub struct MvccDb {
    env: Defragmentable<Dbs>,
}

impl MvccDb {
    pub fn open(path: &Path, map_size: usize) -> Result<MvccDb> {
        let env = Defragmentable::open(path, map_size, 8, Durability::Deferred, Dbs::create)?;
        Ok(MvccDb { env })
    }

    /// The size of the environment's file.
    pub(crate) fn disk_size(&self) -> u64 {
        self.env.disk_size()
    }

    /// True if the store found at open was discarded because an OS crash
    /// may have torn it (its commits are not synced one by one): this one
    /// is empty and the caller rebuilds it.
    pub(crate) fn discarded(&self) -> bool {
        self.env.discarded()
    }

    /// etcd's defrag: swaps the environment for a compacted copy (see
    /// [`Defragmentable::defragment`]); the file's size before and after.
    pub fn defragment(&self) -> Result<(u64, u64)> {
        self.env.defragment()
    }

    /// An upper bound of [`Self::space`] that reads no database: the
    /// high-water mark stands for the pages in use.
    pub(crate) fn space_bound(&self) -> super::Space {
        (self.env.with(|env, _| Ok(super::high_water(env)))).unwrap_or_default()
    }

    /// How full the environment is.
    pub fn space(&self) -> Result<super::Space> {
        self.env.with(|env, d| {
            super::space(env, |t| {
                let mut stats = vec![d.meta.stat(t)?];
                for db in d.byte_dbs() {
                    stats.push(db.stat(t)?);
                }
                Ok(stats)
            })
        })
    }

    /// Runs `f` in a read transaction.
    pub fn read<R>(&self, f: impl FnOnce(&Reader<'_>) -> Result<R>) -> Result<R> {
        self.env.with(|env, dbs| {
            let rtxn = env.read_txn()?;
            f(&Reader { txn: &rtxn, dbs })
        })
    }

    /// Runs `f` in a write transaction, committed (durably) if `f` succeeds.
    pub fn write<R>(&self, f: impl FnOnce(&mut Writer<'_, '_>) -> Result<R>) -> Result<R> {
        self.env.with(|env, dbs| {
            let mut wtxn = env.write_txn()?;
            let r = f(&mut Writer {
                env,
                txn: &mut wtxn,
                dbs,
            })?;
            wtxn.commit()?;
            Ok(r)
        })
    }

    /// Writes a consistent copy of the environment to `path`.
    pub(crate) fn copy_to(&self, path: &Path) -> Result<()> {
        self.env.with(|env, _| {
            // Commits are `Deferred`; syncing here bounds what the page
            // cache holds unsynced (the copy itself is complete anyway).
            env.force_sync()?;
            let _ = std::fs::remove_file(path);
            let file = env.copy_to_path(path, CompactionOption::Enabled)?;
            file.sync_all()?;
            Ok(())
        })
    }

    /// Replaces all data with the content of a snapshot file written by
    /// [`MvccDb::copy_to`]: the file is checked (an LMDB environment with
    /// this store's databases), then swapped in for the environment's file,
    /// so a reader sees the old state or the new one, a bad file leaves the
    /// old state untouched, and the map never holds both.
    pub(crate) fn load_from(&self, path: &Path) -> Result<()> {
        SnapshotFile::open(path)?.with(|snap| {
            snap.revision_state()?;
            Ok(())
        })?;
        self.env.replace_with(path)
    }
}

/// A snapshot file opened read-only.
pub struct SnapshotFile {
    env: Option<LmdbEnv>,
    dbs: Dbs,
}

impl SnapshotFile {
    pub fn open(path: &Path) -> Result<SnapshotFile> {
        let mut options = heed::EnvOpenOptions::new().read_txn_without_tls();
        options.max_dbs(8);
        // SAFETY: the snapshot file is private to this process and opened once.
        let env = unsafe {
            options.flags(
                heed::EnvFlags::NO_SUB_DIR | heed::EnvFlags::READ_ONLY | heed::EnvFlags::NO_LOCK,
            );
            options.open(path)
        }
        .map_err(|e| Error::Corrupt(format!("snapshot {}: {e}", path.display())))?;
        let dbs = Dbs::open(&env)?;
        Ok(SnapshotFile {
            env: Some(env),
            dbs,
        })
    }

    pub fn with<R>(mut self, f: impl FnOnce(&Reader<'_>) -> Result<R>) -> Result<R> {
        let env = self.env.take().expect("snapshot env is open");
        let r = {
            let rtxn = env.read_txn()?;
            f(&Reader {
                txn: &rtxn,
                dbs: self.dbs,
            })
        };
        env.prepare_for_closing().wait();
        r
    }
}

pub struct Reader<'t> {
    txn: &'t RoTxn<'t>,
    dbs: Dbs,
}

pub struct Writer<'t, 'p> {
    env: &'t LmdbEnv,
    txn: &'t mut RwTxn<'p>,
    dbs: Dbs,
}

impl Writer<'_, '_> {
    /// Runs `f` in a nested transaction that is kept only if `f` returns
    /// `(value, true)`: a command that fails after writing leaves no trace.
    pub(crate) fn scoped<R>(
        &mut self,
        f: impl FnOnce(&mut Writer<'_, '_>) -> Result<(R, bool)>,
    ) -> Result<R> {
        let mut nested = self.env.nested_write_txn(self.txn)?;
        let (r, keep) = f(&mut Writer {
            env: self.env,
            txn: &mut nested,
            dbs: self.dbs,
        })?;
        if keep {
            nested.commit()?;
        } else {
            nested.abort();
        }
        Ok(r)
    }

    pub(crate) fn put_meta(&mut self, name: &str, value: &[u8]) -> Result<()> {
        Ok(self.dbs.meta.put(self.txn, name, value)?)
    }

    pub fn reader(&self) -> Reader<'_> {
        Reader {
            txn: self.txn,
            dbs: self.dbs,
        }
    }
}

impl Reader<'_> {
    pub(crate) fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.dbs.meta.get(self.txn, name)?.map(<[u8]>::to_vec))
    }

    /// etcd's HashKV: a hash of every stored version with main revision <=
    /// `rev` (and of the compaction revision), identical on identical data.
    pub fn hash_kv(&self, rev: i64) -> Result<u32> {
        let mut h = crc32fast::Hasher::new();
        for item in self.dbs.kv.iter(self.txn)? {
            let (k, v) = item?;
            let (_, main, _) =
                keys::decode_version_key(k).ok_or_else(|| Error::Corrupt("bad kv key".into()))?;
            if main <= rev {
                h.update(k);
                h.update(v);
            }
        }
        h.update(&self.revision_state()?.compacted.to_be_bytes());
        Ok(h.finalize())
    }

    /// etcd's Hash: a hash of the whole keyspace, history and leases included.
    pub(crate) fn hash_all(&self) -> Result<u32> {
        let mut h = crc32fast::Hasher::new();
        for db in [self.dbs.kv, self.dbs.revs, self.dbs.leases] {
            for item in db.iter(self.txn)? {
                let (k, v) = item?;
                h.update(k);
                h.update(v);
            }
        }
        Ok(h.finalize())
    }
}

fn decode_value(key: &[u8], raw: &[u8]) -> Result<Option<KeyValue>> {
    match raw.split_first() {
        Some((&TAG_PUT, body)) => Ok(Some(KeyValue::decode(body)?)),
        Some((&TAG_TOMBSTONE, _)) => Ok(None),
        _ => Err(Error::Corrupt(format!("bad version value for key {key:?}"))),
    }
}

fn revision_state(txn: &RoTxn, dbs: &Dbs) -> Result<RevisionState> {
    match dbs.meta.get(txn, META_REVISION)? {
        Some(raw) => Ok(bincode::deserialize(raw)?),
        None => Ok(RevisionState::default()),
    }
}

/// The live version of `key` at `rev`.
fn get(txn: &RoTxn, dbs: &Dbs, key: &[u8], rev: i64) -> Result<Option<KeyValue>> {
    let probe = keys::version_key(key, rev, i64::MAX);
    let Some((found, raw)) = dbs.kv.get_lower_than_or_equal_to(txn, &probe)? else {
        return Ok(None);
    };
    if !found.starts_with(&keys::key_start(key)) || found.len() != probe.len() {
        return Ok(None);
    }
    decode_value(key, raw)
}

fn scan(
    txn: &RoTxn,
    dbs: &Dbs,
    range: &KeyRange,
    rev: i64,
    visit: &mut dyn FnMut(KeyValue) -> bool,
) -> Result<()> {
    if let KeyRange::Single(key) = range {
        if let Some(kv) = get(txn, dbs, key, rev)? {
            visit(kv);
        }
        return Ok(());
    }
    let mut next = dbs
        .kv
        .get_greater_than_or_equal_to(txn, &keys::key_start(range.start()))?;
    while let Some((found, _)) = next {
        let (key, _, _) =
            keys::decode_version_key(found).ok_or_else(|| Error::Corrupt("bad kv key".into()))?;
        if !range.contains(&key) {
            break;
        }
        if let Some(kv) = get(txn, dbs, &key, rev)? {
            if !visit(kv) {
                break;
            }
        }
        next = dbs.kv.get_greater_than(txn, &keys::key_end(&key))?;
    }
    Ok(())
}

fn lease(txn: &RoTxn, dbs: &Dbs, id: i64) -> Result<Option<Lease>> {
    match dbs.leases.get(txn, &keys::lease_key(id))? {
        Some(raw) => Ok(Some(bincode::deserialize(raw)?)),
        None => Ok(None),
    }
}

fn leases(txn: &RoTxn, dbs: &Dbs, visit: &mut dyn FnMut(Lease) -> bool) -> Result<()> {
    for item in dbs.leases.iter(txn)? {
        let (_, raw) = item?;
        if !visit(bincode::deserialize(raw)?) {
            break;
        }
    }
    Ok(())
}

fn lease_keys(txn: &RoTxn, dbs: &Dbs, id: i64, visit: &mut dyn FnMut(&[u8]) -> bool) -> Result<()> {
    let prefix = keys::lease_key(id);
    for item in dbs.lease_keys.prefix_iter(txn, &prefix)? {
        let (k, _) = item?;
        if !visit(&k[prefix.len()..]) {
            break;
        }
    }
    Ok(())
}

fn alarms(txn: &RoTxn, dbs: &Dbs) -> Result<AlarmState> {
    match dbs.meta.get(txn, META_ALARMS)? {
        Some(raw) => Ok(bincode::deserialize(raw)?),
        None => Ok(AlarmState::default()),
    }
}

fn changes(
    txn: &RoTxn,
    dbs: &Dbs,
    from: i64,
    to: i64,
    visit: &mut dyn FnMut(i64, &[u8], bool) -> bool,
) -> Result<()> {
    let lo = keys::revision_key(from.max(0), 0);
    let hi = keys::revision_key(to, i64::MAX);
    for item in dbs
        .revs
        .range(txn, &(Included(&lo[..]), Included(&hi[..])))?
    {
        let (rev, change) = item?;
        let (main, _) =
            keys::decode_revision_key(rev).ok_or_else(|| Error::Corrupt("bad revs key".into()))?;
        let (tag, key) = change
            .split_first()
            .ok_or_else(|| Error::Corrupt("empty revs value".into()))?;
        if !visit(main, key, *tag == TAG_TOMBSTONE) {
            break;
        }
    }
    Ok(())
}

impl MvccRead for Reader<'_> {
    fn revision_state(&self) -> Result<RevisionState> {
        revision_state(self.txn, &self.dbs)
    }
    fn get(&self, key: &[u8], rev: i64) -> Result<Option<KeyValue>> {
        get(self.txn, &self.dbs, key, rev)
    }
    fn scan(
        &self,
        range: &KeyRange,
        rev: i64,
        visit: &mut dyn FnMut(KeyValue) -> bool,
    ) -> Result<()> {
        scan(self.txn, &self.dbs, range, rev, visit)
    }
    fn changes(
        &self,
        from: i64,
        to: i64,
        visit: &mut dyn FnMut(i64, &[u8], bool) -> bool,
    ) -> Result<()> {
        changes(self.txn, &self.dbs, from, to, visit)
    }
    fn lease(&self, id: i64) -> Result<Option<Lease>> {
        lease(self.txn, &self.dbs, id)
    }
    fn leases(&self, visit: &mut dyn FnMut(Lease) -> bool) -> Result<()> {
        leases(self.txn, &self.dbs, visit)
    }
    fn lease_keys(&self, id: i64, visit: &mut dyn FnMut(&[u8]) -> bool) -> Result<()> {
        lease_keys(self.txn, &self.dbs, id, visit)
    }
    fn alarms(&self) -> Result<AlarmState> {
        alarms(self.txn, &self.dbs)
    }
}

/// A writer reads through its own transaction, so it sees its own writes.
impl MvccRead for Writer<'_, '_> {
    fn revision_state(&self) -> Result<RevisionState> {
        self.reader().revision_state()
    }
    fn get(&self, key: &[u8], rev: i64) -> Result<Option<KeyValue>> {
        self.reader().get(key, rev)
    }
    fn scan(
        &self,
        range: &KeyRange,
        rev: i64,
        visit: &mut dyn FnMut(KeyValue) -> bool,
    ) -> Result<()> {
        self.reader().scan(range, rev, visit)
    }
    fn changes(
        &self,
        from: i64,
        to: i64,
        visit: &mut dyn FnMut(i64, &[u8], bool) -> bool,
    ) -> Result<()> {
        self.reader().changes(from, to, visit)
    }
    fn lease(&self, id: i64) -> Result<Option<Lease>> {
        self.reader().lease(id)
    }
    fn leases(&self, visit: &mut dyn FnMut(Lease) -> bool) -> Result<()> {
        self.reader().leases(visit)
    }
    fn lease_keys(&self, id: i64, visit: &mut dyn FnMut(&[u8]) -> bool) -> Result<()> {
        self.reader().lease_keys(id, visit)
    }
    fn alarms(&self) -> Result<AlarmState> {
        self.reader().alarms()
    }
}

impl MvccWrite for Writer<'_, '_> {
    fn put(&mut self, kv: &KeyValue, sub: i64) -> Result<()> {
        let mut value = Vec::with_capacity(kv.encoded_len() + 1);
        value.push(TAG_PUT);
        kv.encode(&mut value)
            .map_err(|e| Error::Internal(e.to_string()))?;
        self.dbs.kv.put(
            self.txn,
            &keys::version_key(&kv.key, kv.mod_revision, sub),
            &value,
        )?;
        let mut change = Vec::with_capacity(kv.key.len() + 1);
        change.push(TAG_PUT);
        change.extend_from_slice(&kv.key);
        self.dbs
            .revs
            .put(self.txn, &keys::revision_key(kv.mod_revision, sub), &change)?;
        Ok(())
    }

    fn tombstone(&mut self, key: &[u8], rev: i64, sub: i64) -> Result<()> {
        self.dbs.kv.put(
            self.txn,
            &keys::version_key(key, rev, sub),
            &[TAG_TOMBSTONE],
        )?;
        let mut change = Vec::with_capacity(key.len() + 1);
        change.push(TAG_TOMBSTONE);
        change.extend_from_slice(key);
        self.dbs
            .revs
            .put(self.txn, &keys::revision_key(rev, sub), &change)?;
        Ok(())
    }

    fn set_revision_state(&mut self, state: RevisionState) -> Result<()> {
        Ok(self
            .dbs
            .meta
            .put(self.txn, META_REVISION, &bincode::serialize(&state)?)?)
    }

    fn put_lease(&mut self, lease: &Lease) -> Result<()> {
        Ok(self.dbs.leases.put(
            self.txn,
            &keys::lease_key(lease.id),
            &bincode::serialize(lease)?,
        )?)
    }

    fn delete_lease(&mut self, id: i64) -> Result<()> {
        let prefix = keys::lease_key(id);
        self.dbs.leases.delete(self.txn, &prefix)?;
        let mut attached = self.dbs.lease_keys.prefix_iter_mut(self.txn, &prefix)?;
        while let Some(item) = attached.next() {
            item?;
            // SAFETY: no reference into the database is held across the delete.
            unsafe { attached.del_current()? };
        }
        Ok(())
    }

    fn set_attached(&mut self, id: i64, key: &[u8], attached: bool) -> Result<()> {
        let mut k = keys::lease_key(id).to_vec();
        k.extend_from_slice(key);
        if attached {
            self.dbs.lease_keys.put(self.txn, &k, &[])?;
        } else {
            self.dbs.lease_keys.delete(self.txn, &k)?;
        }
        Ok(())
    }

    fn set_alarms(&mut self, alarms: &AlarmState) -> Result<()> {
        Ok(self
            .dbs
            .meta
            .put(self.txn, META_ALARMS, &bincode::serialize(alarms)?)?)
    }

    fn compact(&mut self, previous: i64, rev: i64) -> Result<()> {
        // Only keys changed since the previous compaction can have versions
        // that became superseded. They are taken from the change log in
        // chunks, so memory stays bounded however much changed; a key seen
        // in two chunks is compacted twice, which changes nothing the
        // second time.
        const CHUNK: usize = 10_000;
        let mut from = keys::revision_key(previous.max(0) + 1, 0).to_vec();
        let to = keys::revision_key(rev, i64::MAX);
        loop {
            let mut candidates = BTreeSet::new();
            let mut next = None;
            for item in self
                .dbs
                .revs
                .range(self.txn, &(Included(&from[..]), Included(&to[..])))?
            {
                let (at, change) = item?;
                if candidates.len() == CHUNK {
                    next = Some(at.to_vec());
                    break;
                }
                let key = change
                    .get(1..)
                    .ok_or_else(|| Error::Corrupt("an empty change-log entry".into()))?;
                candidates.insert(key.to_vec());
            }
            for key in candidates {
                self.compact_key(&key, rev)?;
            }
            match next {
                Some(at) => from = at,
                None => break,
            }
        }
        // The change log below the compaction revision is no longer needed.
        let below = keys::revision_key(rev, 0);
        self.dbs
            .revs
            .delete_range(self.txn, &(Unbounded, Excluded(&below[..])))?;
        Ok(())
    }
}

impl Writer<'_, '_> {
    /// Removes `key`'s versions superseded at `rev`: all but the newest
    /// at or below it, and that one too if it is a tombstone.
    fn compact_key(&mut self, key: &[u8], rev: i64) -> Result<()> {
        let lo = keys::version_key(key, 0, 0);
        let hi = keys::version_key(key, rev, i64::MAX);
        let mut versions = Vec::new();
        for item in self
            .dbs
            .kv
            .range(self.txn, &(Included(&lo[..]), Included(&hi[..])))?
        {
            let (k, v) = item?;
            versions.push((k.to_vec(), v.first() == Some(&TAG_TOMBSTONE)));
        }
        let keep_last = versions.last().is_some_and(|(_, tombstone)| !tombstone);
        let drop = if keep_last {
            versions.len() - 1
        } else {
            versions.len()
        };
        for (k, _) in &versions[..drop] {
            self.dbs.kv.delete(self.txn, k)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::{MvccRead, MvccWrite};

    #[test]
    fn compaction_of_more_keys_than_a_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let db = MvccDb::open(dir.path(), 1 << 28).unwrap();
        const KEYS: i64 = 25_000;
        let put = |w: &mut Writer<'_, '_>, i: i64, rev: i64, version: i64| {
            let kv = KeyValue {
                key: format!("k{i:05}").into_bytes(),
                value: b"v".to_vec(),
                create_revision: 2 + i,
                mod_revision: rev,
                version,
                lease: 0,
            };
            w.put(&kv, 0)
        };
        db.write(|w| {
            for i in 0..KEYS {
                put(w, i, 2 + i, 1)?;
            }
            for i in 0..KEYS {
                put(w, i, 2 + KEYS + i, 2)?;
            }
            // A deleted key: its tombstone goes too.
            w.tombstone(b"k00000", 2 + 2 * KEYS, 0)?;
            w.compact(-1, 2 + 2 * KEYS)
        })
        .unwrap();
        db.read(|r| {
            let mut versions = 0;
            for item in r.dbs.kv.iter(r.txn)? {
                item?;
                versions += 1;
            }
            assert_eq!(versions, KEYS - 1, "one version per live key");
            let kv = r.get(b"k24999", 2 + 2 * KEYS)?.unwrap();
            assert_eq!(kv.version, 2);
            assert!(r.get(b"k00000", 2 + 2 * KEYS)?.is_none());
            Ok(())
        })
        .unwrap();
    }
}
