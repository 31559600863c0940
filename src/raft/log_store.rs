//! `RaftLogStorage` over a table's log environment. Entries and the hard
//! state are bincode-encoded; every append is synced before openraft is told
//! it is durable, so a vote or an acknowledged entry survives `kill -9`. The
//! committed index is not synced on its own: it rides along with the next
//! append (one fsync per write batch in the log, not two).
//!
//! A purge never runs ahead of the state machine and its durable snapshot
//! (see [`PurgeBound`]). openraft 0.9 asks for the
//! purge through a received snapshot as soon as it hands the install to the
//! state machine worker, before the install has loaded anything; a crash or
//! a failed load in between would leave a log purged past the state machine,
//! which no restart can replay. So a purge beyond what the state machine has
//! applied is deferred (neither the entries nor the purge mark change) and
//! carried out at a later append or purge, once the state machine is there.
//! openraft never reads entries it asked to purge, so keeping them is safe.
//!
//! Reads for replication to a peer are bounded by bytes as well as by entry
//! count ([`LogStore::limited_get_log_entries`]), so a lagging peer never
//! makes the leader decode thousands of large entries it will not send.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{RaftLogReader, StorageIOError, Vote};

use super::network::APPEND_BUDGET;
use super::{blocking, Entry, LogId, NodeId, StorageError, TypeConfig};
use crate::storage::log::LogDb;

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const LAST_PURGED: &str = "last_purged";

/// The index through which the log may be purged: what the state machine
/// has applied and its last snapshot holds (the state machine's commits are
/// not synced one by one; after an OS crash it is rebuilt from that
/// snapshot and the log after it).
pub(crate) type PurgeBound = Arc<dyn Fn() -> crate::error::Result<u64> + Send + Sync>;

#[derive(Clone)]
pub struct LogStore {
    db: Arc<LogDb>,
    bound: PurgeBound,
    /// A purge asked for beyond the bound.
    deferred: Arc<Mutex<Option<LogId>>>,
    /// The last committed log id openraft reported, not yet on disk: it is
    /// written with the next append, in that append's commit, so recording
    /// it costs no fsync of its own. Losing it in a crash is harmless: a
    /// restarted node learns the committed index from the raft leader
    /// again, and applies from its state machine's last applied id.
    committed: Arc<Mutex<Option<Option<LogId>>>>,
}

impl LogStore {
    pub fn new(db: Arc<LogDb>, bound: PurgeBound) -> LogStore {
        LogStore {
            db,
            bound,
            deferred: Arc::new(Mutex::new(None)),
            committed: Arc::new(Mutex::new(None)),
        }
    }

    /// Carries out the deferred purge if the state machine has applied
    /// through it.
    async fn purge_applied(&self) -> crate::error::Result<()> {
        let Some(log_id) = *self.deferred.lock().unwrap() else {
            return Ok(());
        };
        let (db, bound) = (self.db.clone(), self.bound.clone());
        let raw = bincode::serialize(&Some(log_id))?;
        let done = blocking(move || {
            if bound()? < log_id.index {
                return Ok(false);
            }
            crate::crash_point::reached("log.purge.before");
            db.purge(log_id.index, LAST_PURGED, &raw)?;
            crate::crash_point::reached("log.purge.after");
            Ok(true)
        })
        .await?;
        if done {
            let mut deferred = self.deferred.lock().unwrap();
            if *deferred == Some(log_id) {
                *deferred = None;
            }
        }
        Ok(())
    }

    /// Decoded entries with `start <= index < end`, about `max_bytes` of
    /// them at most (at least one).
    pub(crate) fn read_entries(
        db: &LogDb,
        start: u64,
        end: Option<u64>,
        max_bytes: usize,
    ) -> crate::error::Result<Vec<Entry>> {
        db.entries(start, end, max_bytes)?
            .into_iter()
            .map(|(_, raw)| Ok(bincode::deserialize::<Entry>(&raw)?))
            .collect()
    }

    /// The index of the last entry the log holds or has purged (0: none).
    pub fn last_index(db: &LogDb) -> crate::error::Result<u64> {
        let last = db.last()?.map_or(0, |(index, _)| index);
        let purged: Option<LogId> = match db.get_state(LAST_PURGED)? {
            Some(raw) => bincode::deserialize(&raw)?,
            None => None,
        };
        Ok(last.max(purged.map_or(0, |p| p.index)))
    }

    /// Marks an empty log as purged through `log_id`, for a group seeded
    /// with a snapshot at that id: peers that need anything up to it get the
    /// snapshot.
    pub(crate) fn seed_purged(db: &LogDb, log_id: LogId) -> crate::error::Result<()> {
        db.put_state(LAST_PURGED, &bincode::serialize(&Some(log_id))?)
    }

    async fn get_state<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        name: &'static str,
    ) -> Result<Option<T>, StorageError> {
        let db = self.db.clone();
        blocking(move || match db.get_state(name)? {
            Some(raw) => Ok(Some(bincode::deserialize(&raw)?)),
            None => Ok(None),
        })
        .await
        .map_err(|e| StorageIOError::read(&e).into())
    }

    async fn put_state<T: serde::Serialize>(
        &self,
        name: &'static str,
        value: &T,
    ) -> Result<(), StorageError> {
        let db = self.db.clone();
        let raw = bincode::serialize(value).map_err(|e| StorageIOError::write(&e))?;
        blocking(move || db.put_state(name, &raw))
            .await
            .map_err(|e| StorageIOError::write(&e).into())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&i) => Some(i + 1),
            Bound::Excluded(&i) => Some(i),
            Bound::Unbounded => None,
        };
        let db = self.db.clone();
        blocking(move || LogStore::read_entries(&db, start, end, usize::MAX))
            .await
            .map_err(|e| StorageIOError::read_logs(&e).into())
    }

    /// What replication reads for one AppendEntries: about what the network
    /// sends in one ([`APPEND_BUDGET`] bytes, at least one entry).
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        let db = self.db.clone();
        blocking(move || LogStore::read_entries(&db, start, Some(end), APPEND_BUDGET as usize))
            .await
            .map_err(|e| StorageIOError::read_logs(&e).into())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self
            .get_state::<Option<LogId>>(LAST_PURGED)
            .await?
            .flatten();
        let db = self.db.clone();
        let last = blocking(move || match db.last()? {
            Some((_, raw)) => Ok(Some(bincode::deserialize::<Entry>(&raw)?.log_id)),
            None => Ok(None),
        })
        .await
        .map_err(|e| StorageIOError::read_logs(&e))?;
        Ok(LogState {
            last_purged_log_id,
            last_log_id: last.or(last_purged_log_id),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.put_state(VOTE, vote).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.get_state(VOTE).await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        *self.committed.lock().unwrap() = Some(committed);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        if let Some(committed) = *self.committed.lock().unwrap() {
            return Ok(committed);
        }
        Ok(self.get_state::<Option<LogId>>(COMMITTED).await?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let encoded: Vec<(u64, Vec<u8>)> = entries
            .into_iter()
            .map(|e| Ok((e.log_id.index, bincode::serialize(&e)?)))
            .collect::<Result<_, bincode::Error>>()
            .map_err(|e| StorageIOError::write_logs(&e))?;
        let committed = *self.committed.lock().unwrap();
        let committed = (committed.map(|c| bincode::serialize(&c)).transpose())
            .map_err(|e| StorageIOError::write_logs(&e))?;
        let db = self.db.clone();
        let result = blocking(move || match &committed {
            Some(raw) => db.append(encoded, &[(COMMITTED, raw)]),
            None => db.append(encoded, &[]),
        })
        .await;
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                self.purge_applied()
                    .await
                    .map_err(|e| StorageIOError::write_logs(&e).into())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(StorageIOError::write_logs(&e).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let db = self.db.clone();
        blocking(move || db.truncate(log_id.index))
            .await
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        {
            let mut deferred = self.deferred.lock().unwrap();
            if deferred.is_none_or(|d| d.index < log_id.index) {
                *deferred = Some(log_id);
            }
        }
        self.purge_applied()
            .await
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;
    use crate::storage::log::LogEngine;

    fn log_id(index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(1, 1), index)
    }

    async fn indexes(store: &mut LogStore) -> Vec<u64> {
        let entries = store.try_get_log_entries(0..100).await.unwrap();
        entries.iter().map(|e| e.log_id.index).collect()
    }

    #[tokio::test]
    async fn a_purge_waits_for_the_state_machine() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(LogDb::open(dir.path(), 1 << 24, LogEngine::Lmdb).unwrap());
        let entries = (1..=10).map(|i| {
            let e = Entry {
                log_id: log_id(i),
                payload: EntryPayload::Blank,
            };
            (i, bincode::serialize(&e).unwrap())
        });
        db.append(entries.collect::<Vec<_>>(), &[]).unwrap();
        let applied = Arc::new(AtomicU64::new(2));
        let bound = applied.clone();
        let mut store = LogStore::new(db, Arc::new(move || Ok(bound.load(Ordering::SeqCst))));

        // Through 6 asked while the state machine is at 2 (a snapshot
        // install in progress): nothing is purged, nothing is marked.
        store.purge(log_id(6)).await.unwrap();
        assert_eq!(indexes(&mut store).await, (1..=10).collect::<Vec<_>>());
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, None);

        // The state machine got there: the next purge (of less) does it.
        applied.store(6, Ordering::SeqCst);
        store.purge(log_id(4)).await.unwrap();
        assert_eq!(indexes(&mut store).await, (7..=10).collect::<Vec<_>>());
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(6)));
    }

    #[tokio::test]
    async fn replication_reads_are_bounded_by_bytes() {
        use crate::kv::command::{Command, Proposal};
        use crate::pb::etcdserverpb::PutRequest;
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(LogDb::open(dir.path(), 1 << 26, LogEngine::Lmdb).unwrap());
        // Ten entries of 100 KiB: the 256 KiB budget takes two (a third
        // would cross it), and one at least, however large.
        let entries = (1..=10).map(|i| {
            let put = PutRequest {
                key: b"k".to_vec(),
                value: vec![0; 100 << 10],
                ..Default::default()
            };
            let e = Entry {
                log_id: log_id(i),
                payload: EntryPayload::Normal(Proposal::Local(vec![Command::Put(put)])),
            };
            (i, bincode::serialize(&e).unwrap())
        });
        db.append(entries.collect::<Vec<_>>(), &[]).unwrap();
        let mut store = LogStore::new(db, Arc::new(|| Ok(u64::MAX)));
        let read = store.limited_get_log_entries(1, 11).await.unwrap();
        let read: Vec<u64> = read.iter().map(|e| e.log_id.index).collect();
        assert_eq!(read, [1, 2]);
        assert_eq!(
            store.limited_get_log_entries(10, 11).await.unwrap().len(),
            1
        );
    }

    /// The committed id is kept in memory and written only with an append:
    /// a store reopened before any append reads the last one written.
    #[tokio::test]
    async fn committed_rides_along_with_appends() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(LogDb::open(dir.path(), 1 << 24, LogEngine::Lmdb).unwrap());
        let raw = bincode::serialize(&Some(log_id(3))).unwrap();
        db.append(Vec::new(), &[(COMMITTED, &raw)]).unwrap();
        let mut store = LogStore::new(db.clone(), Arc::new(|| Ok(u64::MAX)));
        assert_eq!(store.read_committed().await.unwrap(), Some(log_id(3)));
        store.save_committed(Some(log_id(5))).await.unwrap();
        assert_eq!(store.read_committed().await.unwrap(), Some(log_id(5)));
        // Not on disk yet: a restart would see 3, and learn 5 again from
        // the raft leader.
        let mut reopened = LogStore::new(db, Arc::new(|| Ok(u64::MAX)));
        assert_eq!(reopened.read_committed().await.unwrap(), Some(log_id(3)));
    }
}
