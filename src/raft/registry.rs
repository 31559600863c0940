//! The tables of this node: a catalogue in LMDB and one running Raft group
//! per table. Each table incarnation gets directories named after its epoch,
//! so a deleted and re-created table never reuses old files.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::RwLock;

use super::group::{GroupConfig, RaftGroup};
use crate::error::{Error, Result};
use crate::storage::tables::TableDb;

/// Node-wide layout and tuning from which each table's [`GroupConfig`] is derived.
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    pub node_host_dir: PathBuf,
    pub wal_dir: PathBuf,
    pub state_machine_dir: PathBuf,
    /// Group settings; its directory fields are replaced per table.
    pub group: GroupConfig,
}

pub struct Registry {
    cfg: RegistryConfig,
    catalogue: TableDb,
    groups: RwLock<HashMap<String, (u64, Arc<RaftGroup>)>>,
}

/// Table names become directory names and metadata values: keep them plain.
pub fn validate_table_name(name: &str) -> Result<()> {
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

impl Registry {
    /// Opens the catalogue and starts a group for every table in it.
    pub async fn open(cfg: RegistryConfig) -> Result<Registry> {
        let catalogue = TableDb::open(&cfg.node_host_dir.join("meta"))?;
        let registry = Registry {
            cfg,
            catalogue,
            groups: RwLock::new(HashMap::new()),
        };
        for (name, epoch) in registry.catalogue.list()? {
            let group = registry.start(&name, epoch).await?;
            registry.groups.write().await.insert(name, (epoch, group));
        }
        Ok(registry)
    }

    fn group_config(&self, name: &str, epoch: u64) -> GroupConfig {
        let dir = format!("{name}.{epoch}");
        GroupConfig {
            wal_dir: self.cfg.wal_dir.join(&dir),
            state_machine_dir: self.cfg.state_machine_dir.join(&dir),
            snapshot_dir: self.cfg.node_host_dir.join("snapshots").join(&dir),
            ..self.cfg.group.clone()
        }
    }

    async fn start(&self, name: &str, epoch: u64) -> Result<Arc<RaftGroup>> {
        RaftGroup::open(name, &self.group_config(name, epoch)).await
    }

    pub async fn get(&self, name: &str) -> Result<Arc<RaftGroup>> {
        match self.groups.read().await.get(name) {
            Some((_, g)) => Ok(g.clone()),
            None => Err(Error::TableNotFound(name.to_string())),
        }
    }

    pub async fn list(&self) -> Vec<(String, u64)> {
        let mut out: Vec<_> = self
            .groups
            .read()
            .await
            .iter()
            .map(|(n, (e, _))| (n.clone(), *e))
            .collect();
        out.sort();
        out
    }

    pub async fn groups(&self) -> Vec<Arc<RaftGroup>> {
        self.groups
            .read()
            .await
            .values()
            .map(|(_, g)| g.clone())
            .collect()
    }

    /// Creates a table; its epoch is the creation time in nanoseconds, unique
    /// per incarnation.
    pub async fn create(&self, name: &str) -> Result<u64> {
        validate_table_name(name)?;
        let mut groups = self.groups.write().await;
        if groups.contains_key(name) {
            return Err(Error::TableExists(name.to_string()));
        }
        let epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        let group = self.start(name, epoch).await?;
        self.catalogue.put(name, epoch)?;
        groups.insert(name.to_string(), (epoch, group));
        Ok(epoch)
    }

    /// Deletes a table: stops its group and removes its data.
    pub async fn delete(&self, name: &str) -> Result<()> {
        let mut groups = self.groups.write().await;
        let Some((epoch, group)) = groups.remove(name) else {
            return Err(Error::TableNotFound(name.to_string()));
        };
        self.catalogue.delete(name)?;
        group.shutdown().await;
        let cfg = self.group_config(name, epoch);
        for dir in [cfg.wal_dir, cfg.state_machine_dir, cfg.snapshot_dir] {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!("removing {}: {e}", dir.display());
            }
        }
        Ok(())
    }

    pub async fn shutdown(&self) {
        for (_, group) in self.groups.read().await.values() {
            group.shutdown().await;
        }
    }
}
