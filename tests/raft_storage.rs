//! openraft's storage conformance suite over Armada's log store (on both
//! log engines) and state machine.

use std::sync::Arc;

use armada::raft::log_store::LogStore;
use armada::raft::state_machine::StateMachine;
use armada::raft::{StorageError, TypeConfig};
use armada::storage::log::{LogDb, LogEngine};
use armada::storage::mvcc::MvccDb;
use openraft::testing::{StoreBuilder, Suite};

struct Builder(LogEngine);

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let io = |e: armada::error::Error| StorageError::from(openraft::StorageIOError::write(&e));
        let log = LogDb::open(&dir.path().join("wal"), 1 << 30, self.0).map_err(io)?;
        let db = MvccDb::open(&dir.path().join("sm"), 1 << 30).map_err(io)?;
        let sm = StateMachine::open(db, &dir.path().join("snapshots"), u64::MAX).map_err(io)?;
        // The suite drives the log store on its own, purging ahead of an
        // empty state machine, so purges are not bounded by what the state
        // machine applied here (that bound has its own test in log_store).
        let unbounded = Arc::new(|| Ok(u64::MAX));
        Ok((dir, LogStore::new(Arc::new(log), unbounded), sm))
    }
}

#[test]
fn openraft_storage_suite_on_the_lmdb_log() {
    if let Err(e) = Suite::test_all(Builder(LogEngine::Lmdb)) {
        panic!("openraft storage suite failed: {e}");
    }
}

#[test]
fn openraft_storage_suite_on_the_wal_log() {
    if let Err(e) = Suite::test_all(Builder(LogEngine::Wal)) {
        panic!("openraft storage suite failed: {e}");
    }
}
