//! `RaftLogStorage` over a table's log environment. Entries and the hard
//! state are bincode-encoded; every append is synced before openraft is told
//! it is durable, so a vote or an acknowledged entry survives `kill -9`.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{RaftLogReader, StorageIOError, Vote};

use super::{blocking, Entry, LogId, NodeId, StorageError, TypeConfig};
use crate::storage::log::LogDb;

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const LAST_PURGED: &str = "last_purged";

#[derive(Clone)]
pub struct LogStore {
    db: Arc<LogDb>,
}

impl LogStore {
    pub fn new(db: Arc<LogDb>) -> LogStore {
        LogStore { db }
    }

    /// Decoded entries with `start <= index < end`, about `max_bytes` of
    /// them at most (at least one).
    pub fn read_entries(
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

    /// Marks an empty log as purged through `log_id`, for a group seeded
    /// with a snapshot at that id: peers that need anything up to it get the
    /// snapshot.
    pub fn seed_purged(db: &LogDb, log_id: LogId) -> crate::error::Result<()> {
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
        self.put_state(COMMITTED, &committed).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
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
        let db = self.db.clone();
        let result = blocking(move || db.append(encoded)).await;
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
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
        let db = self.db.clone();
        let raw = bincode::serialize(&Some(log_id)).map_err(|e| StorageIOError::write_logs(&e))?;
        blocking(move || db.purge(log_id.index, LAST_PURGED, &raw))
            .await
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}
