//! The tables of this node, kept in step with the cluster's metadata group.
//!
//! The metadata group (`.meta`) is one more Raft group across all nodes,
//! holding an etcd keyspace of its own: `tables/<name>` = epoch and
//! `members/<node id>` = how clients reach that node. Table create and delete
//! are transactions on it, so the whole cluster agrees on the table list and
//! every epoch. Each node reconciles its running groups with that list
//! whenever the metadata group applies something: it starts missing tables'
//! groups and stops deleted ones and removes their data. A node that was down
//! catches up on the metadata group like any other and then reconciles.
//!
//! Each table incarnation lives in directories named `<name>.<epoch>`, so a
//! deleted and re-created table never reuses old files.

mod identity;
pub(crate) mod keyspace;
mod plan;

use keyspace::{from_json, member_id, to_json, Incarnation, MetaKey, MetaPrefix};

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, RwLock};

use super::group::{GroupConfig, RaftGroup};
use super::network::Peers;
use super::watch::hub::WatchHub;
use super::NodeId;
use crate::error::{Error, Result};
use crate::kv::command::{Applied, Command};
use crate::kv::range::{prefix_end, KeyRange};
use crate::kv::MvccRead;
use crate::pb::etcdserverpb::{
    compare, request_op, Compare, DeleteRangeRequest, PutRequest, RequestOp, TxnRequest,
};
use crate::pb::mvccpb::KeyValue;
use crate::storage::mvcc::Reader;

/// The metadata group's id on the Raft transport; no table name starts with '.'.
pub(crate) const META_GROUP: &str = ".meta";
/// Node-wide layout and tuning from which each group's [`GroupConfig`] is derived.
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    pub node_host_dir: PathBuf,
    pub wal_dir: PathBuf,
    pub state_machine_dir: PathBuf,
    /// Mutual TLS to peers' Raft ports (`--raft.*-filename`); plain TCP when unset.
    pub peer_tls: Option<std::sync::Arc<tokio_rustls::rustls::ClientConfig>>,
    /// Group settings; its directory fields are replaced per group.
    pub group: GroupConfig,
}

/// How etcd clients reach a member, as registered in the metadata group.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MemberInfo {
    pub name: String,
    pub client_urls: Vec<String>,
}

pub struct Registry {
    cfg: RegistryConfig,
    peers: Arc<Peers>,
    meta: Arc<RaftGroup>,
    /// Running table groups by table name, with their epoch.
    groups: RwLock<HashMap<String, (u64, Arc<RaftGroup>)>>,
    /// New incarnations another node seeded (a follower cluster's snapshot
    /// recovery), running and waiting for the seed's snapshot while the old
    /// incarnation in `groups` keeps serving; promoted once they applied it.
    incoming: RwLock<HashMap<String, (u64, Arc<RaftGroup>)>>,
    /// Serializes reconciles, so a group's LMDB envs are opened once.
    reconciling: Mutex<()>,
    /// Each running table's watchers; a hub outlives incarnation swaps.
    hubs: std::sync::Mutex<HashMap<String, Arc<WatchHub>>>,
    /// Incarnation directories (`<table>.<epoch>`) being seeded by a
    /// recovery and not yet in the catalogue: never stale.
    seeding: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    /// Tables whose group failed to open on this node, with why: reported
    /// to clients and metrics, retried at every reconcile, while every other
    /// table serves.
    failed: std::sync::Mutex<BTreeMap<String, String>>,
}

/// Keeps an incarnation's directories from being removed as stale while
/// it is seeded; see [`Registry::seeding`].
pub struct Seeding {
    dir: String,
    set: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

impl Drop for Seeding {
    fn drop(&mut self) {
        self.set.lock().unwrap().remove(&self.dir);
    }
}

/// Table names become directory names and metadata values: keep them plain.
pub(crate) fn validate_table_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "invalid table name {name:?}: use 1 to 128 of [A-Za-z0-9._-], not starting with '.'"
        )))
    }
}

pub(crate) fn put_op(key: String, value: Vec<u8>) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: key.into_bytes(),
            value,
            ..Default::default()
        })),
    }
}

/// `create_revision(key) == 0` (absent) or `!= 0` (present).
fn exists(key: &str, present: bool) -> Compare {
    let result = if present {
        compare::CompareResult::NotEqual
    } else {
        compare::CompareResult::Equal
    };
    compare_key(key, result, compare::TargetUnion::CreateRevision(0))
}

/// `key`'s `target` compared with `result`; the target kind follows from it.
pub(crate) fn compare_key(
    key: &str,
    result: compare::CompareResult,
    target: compare::TargetUnion,
) -> Compare {
    use compare::{CompareTarget as T, TargetUnion as U};
    let kind = match target {
        U::Version(_) => T::Version,
        U::CreateRevision(_) => T::Create,
        U::ModRevision(_) => T::Mod,
        U::Value(_) => T::Value,
        U::Lease(_) => T::Lease,
    };
    Compare {
        result: result as i32,
        target: kind as i32,
        key: key.as_bytes().to_vec(),
        target_union: Some(target),
        ..Default::default()
    }
}

/// Every live key under `prefix`, at the current revision.
fn scan_prefix(r: &Reader<'_>, prefix: MetaPrefix) -> Result<Vec<KeyValue>> {
    let rev = r.revision_state()?.current;
    let prefix = prefix.as_str().as_bytes();
    let range = KeyRange::new(prefix, &prefix_end(prefix));
    let mut out = Vec::new();
    r.scan(&range, rev, &mut |kv| {
        out.push(kv);
        true
    })?;
    Ok(out)
}

/// True for a directory name of the form `<table>.<epoch>`: a valid table
/// name, a dot and a decimal epoch.
fn is_incarnation_dir(name: &str) -> bool {
    name.rsplit_once('.').is_some_and(|(table, epoch)| {
        validate_table_name(table).is_ok()
            && !epoch.is_empty()
            && epoch.bytes().all(|b| b.is_ascii_digit())
    })
}

/// Wall-clock Unix milliseconds (lease expiry, status times).
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A fresh table epoch: the wall-clock time in nanoseconds, unique per
/// incarnation.
pub(crate) fn new_epoch() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
}

pub(crate) fn succeeded(applied: Applied) -> bool {
    matches!(applied, Applied::Txn(t) if t.succeeded)
}

impl Registry {
    /// Opens the metadata group and the groups of the tables it lists.
    pub async fn open(cfg: RegistryConfig) -> Result<Arc<Registry>> {
        let peers = Peers::new(cfg.peer_tls.clone());
        let meta = RaftGroup::open(
            META_GROUP,
            META_GROUP,
            &Self::group_config(&cfg, META_GROUP),
            peers.clone(),
            true,
        )
        .await?;
        let registry = Arc::new(Registry {
            cfg,
            peers,
            meta,
            groups: RwLock::new(HashMap::new()),
            incoming: RwLock::new(HashMap::new()),
            reconciling: Mutex::new(()),
            hubs: std::sync::Mutex::new(HashMap::new()),
            seeding: Default::default(),
            failed: Default::default(),
        });
        registry.reconcile().await?;
        tokio::spawn(Self::follow_meta(Arc::downgrade(&registry)));
        Ok(registry)
    }

    /// Reconciles after every change the metadata group applies.
    async fn follow_meta(registry: std::sync::Weak<Registry>) {
        let Some(mut metrics) = registry.upgrade().map(|r| r.meta.raft().metrics()) else {
            return;
        };
        let mut seen = None;
        loop {
            let applied = metrics.borrow_and_update().last_applied;
            let Some(r) = registry.upgrade() else { return };
            let waiting = !r.incoming.read().await.is_empty();
            if applied != seen || waiting {
                seen = applied;
                if let Err(e) = r.reconcile().await {
                    tracing::warn!("reconciling tables with the metadata group: {e}");
                }
            }
            drop(r);
            // An incoming incarnation is promoted by a reconcile once it has
            // its snapshot, which no metadata change announces: poll for it.
            let poll =
                tokio::time::sleep(Duration::from_millis(if waiting { 50 } else { 3_600_000 }));
            tokio::select! {
                changed = metrics.changed() => if changed.is_err() { return },
                _ = poll => {}
            }
        }
    }

    fn group_config(cfg: &RegistryConfig, dir: &str) -> GroupConfig {
        GroupConfig {
            wal_dir: cfg.wal_dir.join(dir),
            state_machine_dir: cfg.state_machine_dir.join(dir),
            snapshot_dir: cfg.node_host_dir.join("snapshots").join(dir),
            ..cfg.group.clone()
        }
    }

    pub fn meta(&self) -> &Arc<RaftGroup> {
        &self.meta
    }

    pub fn node_id(&self) -> NodeId {
        self.cfg.group.node_id
    }

    /// The tables in the metadata group's local state: name -> incarnation.
    async fn catalogue(&self, linearizable: bool) -> Result<BTreeMap<String, Incarnation>> {
        self.meta
            .read(linearizable, |r| {
                let mut out = BTreeMap::new();
                for kv in scan_prefix(r, MetaPrefix::Tables)? {
                    let name = MetaPrefix::Tables.rest(&kv.key)?;
                    let inc = Incarnation::decode(name, &kv.value)?;
                    out.insert(name.to_string(), inc);
                }
                Ok(out)
            })
            .await
    }

    /// Starts and stops table groups to match the catalogue: the steps are
    /// [`plan::plan`]'s, executed in its order.
    pub async fn reconcile(&self) -> Result<()> {
        let _one = self.reconciling.lock().await;
        let catalogue = self.catalogue(false).await?;
        let running: BTreeMap<String, u64> = (self.groups.read().await.iter())
            .map(|(n, (e, _))| (n.clone(), *e))
            .collect();
        let incoming: BTreeMap<String, plan::Incoming> = (self.incoming.read().await.iter())
            .map(|(n, (epoch, g))| {
                let seeded = g.raft().metrics().borrow().last_applied.is_some();
                let epoch = *epoch;
                (n.clone(), plan::Incoming { epoch, seeded })
            })
            .collect();
        for action in plan::plan(&catalogue, &running, &incoming, self.node_id()) {
            self.execute(action).await;
        }
        // A table deleted while it failed to open is no longer reported.
        (self.failed.lock().unwrap()).retain(|name, _| catalogue.contains_key(name));
        // Only a caught-up catalogue may say that a table is gone: after a
        // restart the metadata state machine can be behind its own log (or
        // rebuilt from it after an OS crash), so it is read linearizably.
        let caught_up = tokio::time::timeout(Duration::from_secs(1), self.catalogue(true));
        if let Ok(Ok(catalogue)) = caught_up.await {
            let want: BTreeMap<String, u64> = (catalogue.iter())
                .map(|(n, inc)| (n.clone(), inc.epoch))
                .collect();
            self.remove_stale_dirs(&want, &self.running_dirs().await)
                .await;
        }
        Ok(())
    }

    /// Carries out one reconcile step.
    async fn execute(&self, action: plan::Action) {
        use plan::Action;
        match action {
            Action::DropIncoming { table, .. } => {
                if let Some((_, group)) = self.incoming.write().await.remove(&table) {
                    group.shutdown().await;
                }
            }
            Action::Promote { table, epoch } => {
                let Some((_, group)) = self.incoming.write().await.remove(&table) else {
                    return;
                };
                tracing::info!(%table, epoch, "recovered incarnation takes over");
                self.serve(&table, epoch, group).await;
            }
            Action::Stop { table, epoch } => {
                let removed = self.groups.write().await.remove(&table);
                self.failed.lock().unwrap().remove(&table);
                if let Some(hub) = self.hubs.lock().unwrap().remove(&table) {
                    hub.close();
                }
                if let Some((_, group)) = removed {
                    tracing::info!(%table, epoch, "stopping deleted table");
                    group.shutdown().await;
                }
            }
            Action::Open {
                table,
                epoch,
                initialize,
                incoming,
            } => {
                let dir = format!("{table}.{epoch}");
                tracing::info!(%table, epoch, "starting table");
                let cfg = Self::group_config(&self.cfg, &dir);
                let opened = RaftGroup::open(&table, &dir, &cfg, self.peers.clone(), initialize);
                // One table that cannot open (a corrupt file, no file
                // descriptors left) must not keep the others from serving.
                let group = match opened.await {
                    Ok(group) => {
                        self.failed.lock().unwrap().remove(&table);
                        group
                    }
                    Err(e) => {
                        let reason = e.to_string();
                        let before =
                            (self.failed.lock().unwrap()).insert(table.clone(), reason.clone());
                        if before.as_ref() != Some(&reason) {
                            tracing::error!(%table, epoch, "the table failed to open: {e}");
                        }
                        return;
                    }
                };
                if incoming {
                    // A recovery another node seeded: the old incarnation
                    // keeps serving until this one has the seed's snapshot.
                    self.incoming.write().await.insert(table, (epoch, group));
                } else {
                    self.serve(&table, epoch, group).await;
                }
            }
        }
    }

    /// Makes `group` (incarnation `epoch`) the one serving `table`, and
    /// stops the one it replaces.
    async fn serve(&self, table: &str, epoch: u64, group: Arc<RaftGroup>) {
        let old = (self.groups.write().await).insert(table.to_string(), (epoch, group.clone()));
        self.attach_watchers(table, &group, old.as_ref().map(|(_, g)| &**g))
            .await;
        if let Some((old_epoch, old)) = old {
            tracing::info!(%table, epoch = old_epoch, "stopping a replaced incarnation");
            old.shutdown().await;
        }
    }

    /// Points table `name`'s watch hub at `group`, the incarnation that now
    /// serves it (creating the hub for a new table). Watchers resume on a
    /// recovered copy of the same leader-cluster lineage; on anything else
    /// (a table re-created or restored, or any swap on a leader cluster)
    /// they are canceled with the compaction signal.
    async fn attach_watchers(&self, name: &str, group: &RaftGroup, old: Option<&RaftGroup>) {
        let lineage = async |g: &RaftGroup| g.replicated().await.map_or(0, |(_, epoch)| epoch);
        let changed = match old {
            Some(old) => {
                let before = lineage(old).await;
                before == 0 || before != lineage(group).await
            }
            None => false,
        };
        let hub = (self.hubs.lock().unwrap())
            .entry(name.to_string())
            .or_insert_with(|| WatchHub::new(name))
            .clone();
        hub.attach(group.watch_source(), changed);
    }

    /// The watch hub of a running table.
    pub(crate) async fn watch_hub(&self, name: &str) -> Result<Arc<WatchHub>> {
        self.get(name).await?;
        (self.hubs.lock().unwrap().get(name).cloned())
            .ok_or_else(|| Error::TableNotFound(name.to_string()))
    }

    /// Every table's watch hub, for metrics.
    pub(crate) fn watch_hubs(&self) -> Vec<Arc<WatchHub>> {
        self.hubs.lock().unwrap().values().cloned().collect()
    }

    /// The directories (`<name>.<epoch>`) of the incarnations this node runs.
    async fn running_dirs(&self) -> std::collections::HashSet<String> {
        let groups = self.groups.read().await;
        let incoming = self.incoming.read().await;
        (groups.iter().chain(incoming.iter()))
            .map(|(n, (e, _))| format!("{n}.{e}"))
            .collect()
    }

    /// Deletes the data of table incarnations the catalogue no longer has
    /// (deleted while this node was running, or while it was down), except
    /// those still running (an old incarnation serving during a recovery).
    async fn remove_stale_dirs(
        &self,
        want: &BTreeMap<String, u64>,
        running: &std::collections::HashSet<String>,
    ) {
        let mut live: std::collections::HashSet<String> =
            want.iter().map(|(n, e)| format!("{n}.{e}")).collect();
        live.extend(running.iter().cloned());
        live.extend(self.seeding.lock().unwrap().iter().cloned());
        let roots = [
            self.cfg.wal_dir.clone(),
            self.cfg.state_machine_dir.clone(),
            self.cfg.node_host_dir.join("snapshots"),
        ];
        // Removing a table's files can take a while: off the runtime's threads.
        let removed = super::blocking(move || {
            remove_dirs_except(&roots, &live);
            Ok(())
        });
        if let Err(e) = removed.await {
            tracing::warn!("removing deleted tables' data: {e}");
        }
    }

    pub async fn get(&self, name: &str) -> Result<Arc<RaftGroup>> {
        Ok(self.get_with_epoch(name).await?.1)
    }

    /// A running table's group with its epoch.
    pub(crate) async fn get_with_epoch(&self, name: &str) -> Result<(u64, Arc<RaftGroup>)> {
        match self.groups.read().await.get(name) {
            Some((epoch, g)) => Ok((*epoch, g.clone())),
            None => match self.failed.lock().unwrap().get(name) {
                Some(reason) => Err(Error::TableUnavailable {
                    table: name.to_string(),
                    reason: reason.clone(),
                }),
                None => Err(Error::TableNotFound(name.to_string())),
            },
        }
    }

    /// The tables that failed to open on this node, with why.
    pub(crate) fn failed_tables(&self) -> BTreeMap<String, String> {
        self.failed.lock().unwrap().clone()
    }

    /// A group by its Raft transport id, for messages from peers.
    pub(crate) async fn group_by_id(&self, id: &str) -> Option<Arc<RaftGroup>> {
        if id == META_GROUP {
            return Some(self.meta.clone());
        }
        let (name, epoch) = id.rsplit_once('.')?;
        let epoch: u64 = epoch.parse().ok()?;
        if let Some((e, g)) = self.groups.read().await.get(name) {
            if *e == epoch {
                return Some(g.clone());
            }
        }
        match self.incoming.read().await.get(name) {
            Some((e, g)) if *e == epoch => Some(g.clone()),
            _ => None,
        }
    }

    /// The cluster's tables (a linearizable read of the metadata group).
    pub async fn list(&self) -> Result<Vec<(String, u64)>> {
        let catalogue = self.catalogue(true).await?;
        Ok(catalogue.into_iter().map(|(n, i)| (n, i.epoch)).collect())
    }

    /// Marks incarnation `epoch` of `name` as being seeded until the guard
    /// is dropped: reconciles, which remove every directory the catalogue
    /// does not list, leave its directories alone (it is listed only once
    /// the seed is complete and swapped in).
    pub fn seeding(&self, name: &str, epoch: u64) -> Seeding {
        let dir = format!("{name}.{epoch}");
        self.seeding.lock().unwrap().insert(dir.clone());
        Seeding {
            dir,
            set: self.seeding.clone(),
        }
    }

    /// The group settings of incarnation `epoch` of table `name` on this node.
    pub(crate) fn table_config(&self, name: &str, epoch: u64) -> GroupConfig {
        Self::group_config(&self.cfg, &format!("{name}.{epoch}"))
    }

    /// Swaps table `name` from incarnation `old` to `new`, which this node
    /// has seeded (`RaftGroup::seed`): every node then stops the old group
    /// and opens the new one, which this node's snapshot fills. Returns
    /// false if the table is no longer at `old`.
    pub(crate) async fn swap_to_seeded(&self, name: &str, old: u64, new: u64) -> Result<bool> {
        let key = MetaKey::Table(name).encode();
        let current = self.catalogue(true).await?.remove(name);
        let Some(current) = current.filter(|c| c.epoch == old) else {
            return Ok(false);
        };
        let txn = TxnRequest {
            compare: vec![compare_key(
                &key,
                compare::CompareResult::Equal,
                compare::TargetUnion::Value(current.encode()),
            )],
            success: vec![put_op(
                key,
                Incarnation {
                    epoch: new,
                    seed: Some(self.node_id()),
                }
                .encode(),
            )],
            failure: vec![],
        };
        if !succeeded(self.meta.write(Command::Txn(txn)).await?) {
            return Ok(false);
        }
        self.catalogue(true).await?; // applied here
        self.reconcile().await?;
        Ok(true)
    }

    /// The running table groups of this node.
    pub(crate) async fn groups(&self) -> Vec<Arc<RaftGroup>> {
        self.groups
            .read()
            .await
            .values()
            .map(|(_, g)| g.clone())
            .collect()
    }

    /// Creates a table cluster-wide; its epoch is the creation time in
    /// nanoseconds, unique per incarnation. Returns once this node runs it.
    pub async fn create(&self, name: &str) -> Result<u64> {
        validate_table_name(name)?;
        let epoch = new_epoch();
        let key = MetaKey::Table(name).encode();
        let created = Incarnation { epoch, seed: None };
        let txn = TxnRequest {
            compare: vec![exists(&key, false)],
            success: vec![put_op(key.clone(), created.encode())],
            failure: vec![],
        };
        if !succeeded(self.meta.write(Command::Txn(txn)).await?) {
            return Err(Error::TableExists(name.to_string()));
        }
        self.catalogue(true).await?; // this node has applied the create
        self.reconcile().await?;
        Ok(epoch)
    }

    /// Creates the table unless it exists.
    pub(crate) async fn ensure(&self, name: &str) -> Result<()> {
        match self.create(name).await {
            Ok(_) | Err(Error::TableExists(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Deletes a table cluster-wide: every node stops its group and removes its data.
    pub async fn delete(&self, name: &str) -> Result<()> {
        let key = MetaKey::Table(name).encode();
        let txn = TxnRequest {
            compare: vec![exists(&key, true)],
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestDeleteRange(
                    DeleteRangeRequest {
                        key: key.into_bytes(),
                        ..Default::default()
                    },
                )),
            }],
            failure: vec![],
        };
        if !succeeded(self.meta.write(Command::Txn(txn)).await?) {
            return Err(Error::TableNotFound(name.to_string()));
        }
        self.catalogue(true).await?;
        self.reconcile().await
    }

    /// Records how clients reach this node, unless already recorded so.
    pub(crate) async fn register_member(&self, info: &MemberInfo) -> Result<()> {
        let key = MetaKey::Member(self.node_id()).encode();
        let value = to_json(info)?;
        let current = self.members().await?.remove(&self.node_id());
        if current.as_ref() != Some(info) {
            self.meta
                .write(Command::Put(PutRequest {
                    key: key.into_bytes(),
                    value,
                    ..Default::default()
                }))
                .await?;
        }
        Ok(())
    }

    /// Every registered member's client-facing info (local metadata state).
    pub async fn members(&self) -> Result<BTreeMap<NodeId, MemberInfo>> {
        self.meta
            .read(false, |r| {
                let mut out = BTreeMap::new();
                for kv in scan_prefix(r, MetaPrefix::Members)? {
                    let id = member_id(&kv.key)?;
                    out.insert(id, from_json(&MetaKey::Member(id), &kv.value)?);
                }
                Ok(out)
            })
            .await
    }

    pub async fn shutdown(&self) {
        for (_, group) in self.groups.read().await.values() {
            group.shutdown().await;
        }
        for (_, group) in self.incoming.read().await.values() {
            group.shutdown().await;
        }
        self.meta.shutdown().await;
    }
}

/// Removes every incarnation directory under `roots` that is not `live`.
fn remove_dirs_except(roots: &[PathBuf], live: &std::collections::HashSet<String>) {
    for root in roots {
        let Ok(entries) = std::fs::read_dir(root) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            // Only what Armada names an incarnation directory is ever
            // removed: a root shared with other data (a wal dir inside the
            // data dir, say) keeps everything else.
            if !is_incarnation_dir(&name) || live.contains(&name) || !entry.path().is_dir() {
                continue;
            }
            tracing::info!(dir = %entry.path().display(), "removing a deleted table's data");
            if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                tracing::warn!("removing {}: {e}", entry.path().display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_incarnation_dir;

    #[test]
    fn only_incarnation_directories_can_be_stale() {
        for name in ["default.1765000000000000000", "my-table.v2.42", "t.0"] {
            assert!(is_incarnation_dir(name), "{name}");
        }
        for name in [
            "raft",
            "wal",
            "snapshots",
            "replication",
            "state-machine",
            ".meta",
            ".meta.1",
            "default.",
            "default.12a",
            "lost+found",
            "x.-1",
        ] {
            assert!(!is_incarnation_dir(name), "{name}");
        }
    }
}
