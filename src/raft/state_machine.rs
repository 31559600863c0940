//! `RaftStateMachine` over a table's MVCC environment.
//!
//! A batch of committed entries is applied in one LMDB write transaction
//! that also records the last applied log id and the membership, so a
//! restart resumes exactly after the last durable batch. A full LMDB map is
//! not fatal: the batch is retried entry by entry, and an entry that does not
//! fit is recorded as applied with etcd's NOSPACE error as its result.
//!
//! Snapshots are consistent LMDB copies of the environment (`mdb_env_copy`),
//! streamed to peers as files and never held whole in memory.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};

use super::lease::lessor::{LeaseChange, Lessor};
use super::lease::LeaseCounts;
use super::watch::feed::EventFeed;
use super::{blocking, Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig};
use crate::error::{Error, Result};
use crate::kv::apply::{apply, needs_rollback_scope, Changes};
use crate::kv::command::{Applied, Command, CommandResult, Proposal};
use crate::kv::watch::RevisionEvents;
use crate::kv::{MvccRead, RevisionState};
use crate::storage::mvcc::{MvccDb, Reader, SnapshotFile, Writer};

const LAST_APPLIED: &str = "last_applied";
const MEMBERSHIP: &str = "membership";
/// On a follower cluster: the last leader index applied, and its epoch.
const LEADER_INDEX: &str = "leader_index";

/// Shared between the state machine, its snapshot builders and readers.
pub struct Shared {
    pub db: MvccDb,
    snapshot_dir: PathBuf,
    current: Mutex<Option<CurrentSnapshot>>,
    next_snapshot: AtomicU64,
    /// Set while an apply waits for space in a full LMDB map (the API
    /// refuses writes that grow the store and raises NOSPACE meanwhile).
    pub map_full: AtomicBool,
    /// Every committed revision's watch events, for the table's watch hub.
    pub feed: EventFeed,
    /// Lease deadlines, kept while this node is the table's raft leader.
    pub lessor: Lessor,
    pub lease_counts: LeaseCounts,
    /// The most bytes a command's response may have (gRPC's send limit):
    /// larger ones are applied with no response built.
    send_limit: u64,
}

#[derive(Clone, Serialize, Deserialize)]
struct CurrentSnapshot {
    meta: SnapshotMeta,
    file: String,
}

#[derive(Clone)]
pub struct StateMachine {
    shared: Arc<Shared>,
}

fn is_map_full(e: &Error) -> bool {
    matches!(e, Error::Storage(heed::Error::Mdb(heed::MdbError::MapFull)))
}

impl StateMachine {
    pub fn open(db: MvccDb, snapshot_dir: &Path, send_limit: u64) -> Result<StateMachine> {
        std::fs::create_dir_all(snapshot_dir)?;
        let current = match std::fs::read(snapshot_dir.join("current.json")) {
            Ok(raw) => Some(
                serde_json::from_slice::<CurrentSnapshot>(&raw)
                    .map_err(|e| Error::Corrupt(format!("snapshot index: {e}")))?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        // Leftovers of interrupted snapshot builds or transfers.
        for entry in std::fs::read_dir(snapshot_dir)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if name.ends_with(".mdb") && current.as_ref().is_none_or(|c| c.file != name) {
                let _ = std::fs::remove_file(snapshot_dir.join(name));
            }
        }
        let discarded = db.discarded();
        let state = db.read(|r| r.revision_state())?;
        let sm = StateMachine {
            shared: Arc::new(Shared {
                feed: EventFeed::new(state),
                db,
                snapshot_dir: snapshot_dir.to_path_buf(),
                current: Mutex::new(current),
                next_snapshot: AtomicU64::new(1),
                map_full: AtomicBool::new(false),
                lessor: Lessor::default(),
                lease_counts: LeaseCounts::default(),
                send_limit,
            }),
        };
        if discarded {
            sm.shared.rebuild_base()?;
        }
        Ok(sm)
    }

    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Makes `file` (an LMDB copy from a leader cluster) this state
    /// machine's content, applied through `log_id` with `membership`, and
    /// holding `replicated` (leader index, leader epoch); then builds the
    /// Raft snapshot of it, which peers of a seeded group install.
    pub async fn seed(
        &mut self,
        file: &Path,
        log_id: LogId,
        membership: StoredMembership,
        replicated: (u64, u64),
    ) -> Result<()> {
        let shared = self.shared.clone();
        let file = file.to_path_buf();
        blocking(move || {
            shared.load_from(&file)?;
            // The copy carries the leader cluster's own Raft state: replace it.
            shared.db.write(|w| {
                w.put_meta(LAST_APPLIED, &bincode::serialize(&Some(log_id))?)?;
                w.put_meta(MEMBERSHIP, &bincode::serialize(&membership)?)?;
                w.put_meta(LEADER_INDEX, &bincode::serialize(&replicated)?)
            })
        })
        .await?;
        self.build_snapshot()
            .await
            .map_err(|e| Error::Raft(format!("building the seed snapshot: {e}")))?;
        Ok(())
    }
}

/// A consistent copy of a table's state, for a follower cluster.
pub(crate) struct Exported {
    /// The last log index applied in the copy (the leader index).
    pub leader_index: u64,
    pub revision: RevisionState,
}

impl Shared {
    /// The leader index and epoch this (follower cluster's) table holds.
    pub fn replicated(&self) -> Result<(u64, u64)> {
        self.db.read(replicated_state)
    }

    /// Writes a consistent copy of the state machine to `path` (which must
    /// not exist) and returns what it contains.
    pub(crate) fn export(&self, path: &Path) -> Result<Exported> {
        self.db.copy_to(path)?;
        SnapshotFile::open(path)?.with(|r| {
            let (last, _) = applied_state(r)?;
            Ok(Exported {
                leader_index: last.map_or(0, |l| l.index),
                revision: r.revision_state()?,
            })
        })
    }

    /// Replaces the whole state with a snapshot file's, and tells watchers
    /// that history was replaced.
    fn load_from(&self, path: &Path) -> Result<()> {
        self.db.load_from(path)?;
        self.feed.reset(self.db.read(|r| r.revision_state())?);
        // The lease set was replaced: the lease task promotes again from it.
        self.lessor.demote();
        Ok(())
    }

    /// Tells the lessor and the counters about committed lease changes.
    fn leases_changed(&self, changes: &[LeaseChange]) {
        if changes.is_empty() {
            return;
        }
        for c in changes {
            let counter = match c {
                LeaseChange::Granted { .. } => &self.lease_counts.granted,
                LeaseChange::Revoked { .. } => &self.lease_counts.revoked,
                LeaseChange::Checkpointed { .. } => continue,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        self.lessor.applied(changes);
    }

    fn new_snapshot_path(&self, kind: &str) -> (String, PathBuf) {
        let n = self.next_snapshot.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = format!("{kind}-{nanos}-{n}.mdb");
        let path = self.snapshot_dir.join(&name);
        (name, path)
    }

    /// Makes `snap` the current snapshot, durably, and removes the previous
    /// one; returns false, changing nothing, if the current one is newer (a
    /// build that started before an install and finished after it).
    fn set_current(&self, snap: CurrentSnapshot) -> Result<bool> {
        let mut current = self.current.lock().unwrap();
        if current
            .as_ref()
            .is_some_and(|c| c.meta.last_log_id > snap.meta.last_log_id)
        {
            return Ok(false);
        }
        let tmp = self.snapshot_dir.join("current.json.tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec(&snap).map_err(|e| Error::Internal(e.to_string()))?,
        )?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, self.snapshot_dir.join("current.json"))?;
        crate::crash_point::reached("snapshot.current.renamed");
        // The rename is durable only once the directory is synced; until
        // then the old file must stay.
        std::fs::File::open(&self.snapshot_dir)?.sync_all()?;
        if let Some(old) = current.replace(snap) {
            let _ = std::fs::remove_file(self.snapshot_dir.join(old.file));
        }
        Ok(true)
    }
}

impl Shared {
    /// Forgets the current snapshot if the state machine is ahead of both
    /// it and the whole log (`log_last`): what a crash between loading an
    /// installed snapshot and recording it leaves. openraft would purge the
    /// log through the state machine and find an older snapshot, which it
    /// refuses; with none, it builds one from the state machine at start.
    pub(crate) fn forget_stale_snapshot(&self, log_last: u64) -> Result<()> {
        let applied = self.applied_index()?;
        let mut current = self.current.lock().unwrap();
        let stale = current
            .as_ref()
            .is_some_and(|c| c.meta.last_log_id.map_or(0, |l| l.index) < applied);
        if applied <= log_last || !stale {
            return Ok(());
        }
        tracing::warn!(
            applied,
            log_last,
            "the state machine is ahead of its recorded snapshot and its log \
             (a snapshot install was cut short): the snapshot is rebuilt"
        );
        std::fs::remove_file(self.snapshot_dir.join("current.json"))?;
        std::fs::File::open(&self.snapshot_dir)?.sync_all()?;
        if let Some(old) = current.take() {
            let _ = std::fs::remove_file(self.snapshot_dir.join(old.file));
        }
        Ok(())
    }

    /// Restores the last snapshot into a state machine that was discarded
    /// as possibly torn by an OS crash; openraft applies the log after it
    /// again. Without a snapshot the log was never purged (see
    /// [`Self::purge_bound`]) and is applied from its start.
    fn rebuild_base(&self) -> Result<()> {
        let current = self.current.lock().unwrap().clone();
        if let Some(snap) = current {
            tracing::warn!(
                snapshot = %snap.file,
                "rebuilding the state machine from its last snapshot and the raft log"
            );
            self.load_from(&self.snapshot_dir.join(&snap.file))?;
        }
        Ok(())
    }

    /// The index through which the raft log may be purged: what both the
    /// state machine and its current snapshot hold. The snapshot, because
    /// the state machine's own commits are not synced one by one: after an
    /// OS crash it is rebuilt from the snapshot and the log after it.
    pub(crate) fn purge_bound(&self) -> Result<u64> {
        let snapshot = (self.current.lock().unwrap().as_ref())
            .and_then(|c| c.meta.last_log_id)
            .map_or(0, |l| l.index);
        Ok(self.applied_index()?.min(snapshot))
    }

    /// The index of the last log entry applied (0: none).
    pub(crate) fn applied_index(&self) -> Result<u64> {
        let (last, _) = self.db.read(applied_state)?;
        Ok(last.map_or(0, |l| l.index))
    }
}

fn applied_state(r: &Reader<'_>) -> Result<(Option<LogId>, StoredMembership)> {
    let last = match r.get_meta(LAST_APPLIED)? {
        Some(raw) => bincode::deserialize(&raw)?,
        None => None,
    };
    let membership = match r.get_meta(MEMBERSHIP)? {
        Some(raw) => bincode::deserialize(&raw)?,
        None => StoredMembership::default(),
    };
    Ok((last, membership))
}

/// What a batch changed besides its results, published after its commit.
#[derive(Default)]
struct Effects {
    /// The watch events of each revision written.
    events: Vec<RevisionEvents>,
    leases: Vec<LeaseChange>,
}

impl Shared {
    /// Hands a committed batch's effects to watchers and the lessor.
    fn publish(&self, effects: Effects, state: RevisionState) {
        self.feed.publish(effects.events, state);
        self.leases_changed(&effects.leases);
    }
}

/// Applies one entry into `w`, a result per command, and records its
/// effects in `out`; the caller records the last applied id. A Txn runs in
/// a nested scope so that a late failure leaves no trace of its earlier
/// operations.
fn apply_entry(
    w: &mut Writer<'_, '_>,
    entry: &Entry,
    send_limit: u64,
    out: &mut Effects,
) -> Result<Vec<CommandResult>> {
    match &entry.payload {
        EntryPayload::Blank => Ok(Vec::new()),
        EntryPayload::Normal(Proposal::Local(commands)) => commands
            .iter()
            .map(|cmd| apply_command(w, cmd, send_limit, out))
            .collect(),
        EntryPayload::Normal(Proposal::Replicated(batch)) => {
            // Skip what the table holds already, and record the new leader
            // index in the same transaction as the data it stands for.
            let (mut held, epoch) = replicated_state(&w.reader())?;
            // Entries of another incarnation of the leader's table never mix
            // with those held (two workers overlapping around a re-creation):
            // the table changes incarnation only by a recovery's swap.
            if held > 0 && batch.epoch != epoch {
                return Ok(Vec::new());
            }
            let mut results = Vec::new();
            for e in &batch.entries {
                if e.leader_index <= held {
                    continue;
                }
                for cmd in &e.commands {
                    results.push(apply_command(w, cmd, send_limit, out)?);
                }
                held = e.leader_index;
            }
            w.put_meta(LEADER_INDEX, &bincode::serialize(&(held, batch.epoch))?)?;
            Ok(results)
        }
        EntryPayload::Membership(m) => {
            let stored = StoredMembership::new(Some(entry.log_id), m.clone());
            w.put_meta(MEMBERSHIP, &bincode::serialize(&stored)?)?;
            Ok(Vec::new())
        }
    }
}

fn apply_command(
    w: &mut Writer<'_, '_>,
    cmd: &Command,
    send_limit: u64,
    out: &mut Effects,
) -> Result<CommandResult> {
    let mut changes = Changes::default();
    let result = if needs_rollback_scope(cmd) {
        w.scoped(|w| {
            let r = apply(w, cmd, &mut changes, send_limit)?;
            let keep = r.is_ok();
            Ok((r, keep))
        })
    } else {
        apply(w, cmd, &mut changes, send_limit)
    }?;
    // One write request is one revision; its changes share it.
    if let Some(revision) = changes.revision {
        out.events.push(match changes.dropped {
            true => RevisionEvents::dropped(revision),
            false => RevisionEvents::new(revision, changes.events),
        });
    }
    match (cmd, &result) {
        (Command::LeaseGrant(_), Ok(Applied::LeaseGrant(r))) => {
            out.leases.push(LeaseChange::Granted {
                id: r.id,
                ttl: r.ttl,
            })
        }
        (Command::LeaseRevoke(req), Ok(_)) => out.leases.push(LeaseChange::Revoked { id: req.id }),
        (Command::LeaseCheckpoint(req), Ok(_)) => {
            out.leases
                .extend(req.checkpoints.iter().map(|c| LeaseChange::Checkpointed {
                    id: c.id,
                    remaining: c.remaining_ttl,
                }))
        }
        _ => {}
    }
    Ok(result)
}

/// Removes the files in `dir` whose names start with `prefix`.
fn remove_files(dir: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(prefix) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The leader index and epoch a follower cluster's table holds ((0, 0): none).
pub(crate) fn replicated_state(r: &Reader<'_>) -> Result<(u64, u64)> {
    match r.get_meta(LEADER_INDEX)? {
        Some(raw) => Ok(bincode::deserialize(&raw)?),
        None => Ok((0, 0)),
    }
}

/// Applies `entries` in one write transaction. A full map fails the whole
/// batch: nothing of it is written.
fn apply_batch(shared: &Shared, entries: &[Entry]) -> Result<Vec<Vec<CommandResult>>> {
    let Some(last) = entries.last() else {
        return Ok(Vec::new());
    };
    let (results, effects, state) = shared.db.write(|w| {
        let mut effects = Effects::default();
        let results = entries
            .iter()
            .map(|e| apply_entry(w, e, shared.send_limit, &mut effects))
            .collect::<Result<Vec<_>>>()?;
        w.put_meta(LAST_APPLIED, &bincode::serialize(&Some(last.log_id))?)?;
        Ok((results, effects, w.revision_state()?))
    })?;
    // Committed: now, and not before, watchers may see it.
    shared.publish(effects, state);
    Ok(results)
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let shared = self.shared.clone();
        blocking(move || shared.db.read(applied_state))
            .await
            .map_err(|e| StorageIOError::read_state_machine(&e).into())
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<CommandResult>>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Arc<Vec<Entry>> = Arc::new(entries.into_iter().collect());
        // A full map is never an apply result: whether an entry fits depends
        // on this node's pages, and every replica must apply the same
        // thing. So this replica stops at the batch, says so, and retries
        // it until space is found (pages a reader held, or a restart with a
        // larger --storage.map-size), resuming exactly where it stopped.
        let mut pause = Duration::from_millis(100);
        let mut said = None::<Instant>;
        loop {
            let (shared, batch) = (self.shared.clone(), entries.clone());
            match blocking(move || apply_batch(&shared, &batch)).await {
                Err(e) if is_map_full(&e) => {
                    self.shared.map_full.store(true, Ordering::Relaxed);
                    if said.is_none_or(|at| at.elapsed() > Duration::from_secs(60)) {
                        said = Some(Instant::now());
                        tracing::error!(
                            "the state machine's LMDB map is full: applying stopped at log index {} \
                             until space is found (raise --storage.map-size and restart)",
                            entries[0].log_id.index
                        );
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
                result => {
                    self.shared.map_full.store(false, Ordering::Relaxed);
                    return result.map_err(|e| StorageIOError::write_state_machine(&e).into());
                }
            }
        }
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        let (_, path) = self.shared.new_snapshot_path("recv");
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        mut snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        use tokio::io::{AsyncSeekExt, AsyncWriteExt};
        let sig = Some(meta.signature());
        let io =
            |e: std::io::Error| StorageError::from(StorageIOError::write_snapshot(sig.clone(), &e));
        // Copy the received bytes to a file of our own naming, then load it.
        let (name, path) = self.shared.new_snapshot_path("snap");
        snapshot.flush().await.map_err(io)?;
        snapshot
            .seek(std::io::SeekFrom::Start(0))
            .await
            .map_err(io)?;
        let mut out = tokio::fs::File::create(&path).await.map_err(io)?;
        tokio::io::copy(&mut snapshot, &mut out).await.map_err(io)?;
        out.sync_all().await.map_err(io)?;
        let shared = self.shared.clone();
        let meta = meta.clone();
        let snapshot_dir = self.shared.snapshot_dir.clone();
        blocking(move || {
            crate::crash_point::reached("snapshot.install.received");
            shared.load_from(&path)?;
            crate::crash_point::reached("snapshot.install.loaded");
            if !shared.set_current(CurrentSnapshot { meta, file: name })? {
                let _ = std::fs::remove_file(&path);
            }
            // Every received file is copied or abandoned by now.
            remove_files(&snapshot_dir, "recv-");
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_snapshot(sig.clone(), &e).into())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let current = self.shared.current.lock().unwrap().clone();
        let Some(current) = current else {
            return Ok(None);
        };
        let file = tokio::fs::File::open(self.shared.snapshot_dir.join(&current.file))
            .await
            .map_err(|e| StorageIOError::read_snapshot(Some(current.meta.signature()), &e))?;
        Ok(Some(Snapshot {
            meta: current.meta,
            snapshot: Box::new(file),
        }))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let shared = self.shared.clone();
        let (name, build_path) = shared.new_snapshot_path("snap");
        let (meta, file) = blocking(move || {
            shared.db.copy_to(&build_path)?;
            crate::crash_point::reached("snapshot.build.copied");
            // Read the copy's own applied state, so meta and data agree.
            let (last_log_id, last_membership) =
                SnapshotFile::open(&build_path)?.with(applied_state)?;
            let id = match last_log_id {
                Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, name),
                None => format!("0-0-{name}"),
            };
            let meta = SnapshotMeta {
                last_log_id,
                last_membership,
                snapshot_id: id,
            };
            // Opened first: an older build is returned but not kept.
            let file = std::fs::File::open(&build_path)?;
            let current = CurrentSnapshot {
                meta: meta.clone(),
                file: name,
            };
            if !shared.set_current(current)? {
                std::fs::remove_file(&build_path)?;
            }
            Ok((meta, file))
        })
        .await
        .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        let file = tokio::fs::File::from_std(file);
        Ok(Snapshot {
            meta,
            snapshot: Box::new(file),
        })
    }
}

#[cfg(test)]
mod tests {
    use openraft::CommittedLeaderId;

    use super::*;

    fn snapshot_at(sm: &Shared, index: u64) -> (CurrentSnapshot, PathBuf) {
        let (name, path) = sm.new_snapshot_path("snap");
        std::fs::write(&path, b"a snapshot").unwrap();
        let meta = SnapshotMeta {
            last_log_id: Some(LogId::new(CommittedLeaderId::new(1, 1), index)),
            last_membership: StoredMembership::default(),
            snapshot_id: format!("1-{index}-{name}"),
        };
        (CurrentSnapshot { meta, file: name }, path)
    }

    fn put(index: u64) -> Entry {
        let put = crate::pb::etcdserverpb::PutRequest {
            key: format!("k{index}").into_bytes(),
            value: b"v".to_vec(),
            ..Default::default()
        };
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Proposal::Local(vec![Command::Put(put)])),
        }
    }

    /// Commits are not synced one by one: a state machine whose unsynced
    /// commits belong to an earlier boot is rebuilt from its snapshot (and
    /// the raft log, which openraft applies again), whatever its file holds.
    #[tokio::test]
    async fn a_state_machine_torn_by_an_os_crash_is_rebuilt_from_its_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let (sm_dir, snapshots) = (dir.path().join("sm"), dir.path().join("snapshots"));
        let open = || {
            let db = MvccDb::open(&sm_dir, 1 << 24).unwrap();
            StateMachine::open(db, &snapshots, u64::MAX).unwrap()
        };
        let revision = |sm: &StateMachine| sm.shared.db.read(|r| r.revision_state()).unwrap();
        {
            let mut sm = open();
            sm.apply(vec![put(1), put(2)]).await.unwrap();
            sm.get_snapshot_builder()
                .await
                .build_snapshot()
                .await
                .unwrap();
            sm.apply(vec![put(3)]).await.unwrap();
            assert_eq!(sm.shared.purge_bound().unwrap(), 2, "the snapshot's");
        }
        // A clean close (or a process crash): reopened as it was.
        let sm = open();
        assert_eq!(sm.shared.applied_index().unwrap(), 3);
        assert_eq!(revision(&sm).current, 4);
        drop(sm);

        // An OS crash: unsynced commits of an earlier boot, a torn file.
        crate::storage::boot_marker::pretend_earlier_boot(&sm_dir);
        std::fs::write(sm_dir.join("data.mdb"), vec![0xa5; 64 << 10]).unwrap();
        let sm = open();
        assert_eq!(sm.shared.applied_index().unwrap(), 2);
        assert_eq!(revision(&sm).current, 3);
        assert_eq!(sm.shared.purge_bound().unwrap(), 2);
    }

    #[test]
    fn an_older_snapshot_never_replaces_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let db = MvccDb::open(&dir.path().join("sm"), 1 << 24).unwrap();
        let sm = StateMachine::open(db, &dir.path().join("snapshots"), u64::MAX).unwrap();
        let shared = sm.shared();
        let (installed, installed_path) = snapshot_at(&shared, 20);
        let (built, built_path) = snapshot_at(&shared, 10);
        assert!(shared.set_current(installed).unwrap());
        // A build that started before the install and ended after it.
        assert!(!shared.set_current(built).unwrap());
        let current = shared.current.lock().unwrap().clone().unwrap();
        assert_eq!(current.meta.last_log_id.unwrap().index, 20);
        assert!(installed_path.exists());
        assert!(
            built_path.exists(),
            "the caller decides about the stale file"
        );
        let (newer, _) = snapshot_at(&shared, 30);
        assert!(shared.set_current(newer).unwrap());
        assert!(!installed_path.exists(), "the replaced snapshot is removed");
    }
}
