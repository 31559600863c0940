//! The node's table catalogue: table name -> epoch, in a small LMDB
//! environment of its own (`<node-host-dir>/meta`).

use std::path::Path;

use heed::byteorder::BigEndian;
use heed::types::{Str, U64};
use heed::Database;

use super::{open_env, Durability, LmdbEnv};
use crate::error::Result;

pub struct TableDb {
    env: LmdbEnv,
    tables: Database<Str, U64<BigEndian>>,
}

impl TableDb {
    pub fn open(path: &Path) -> Result<TableDb> {
        let env = open_env(path, 64 << 20, 2, Durability::Full)?;
        let mut wtxn = env.write_txn()?;
        let tables = env.create_database(&mut wtxn, Some("tables"))?;
        wtxn.commit()?;
        Ok(TableDb { env, tables })
    }

    pub fn list(&self) -> Result<Vec<(String, u64)>> {
        let rtxn = self.env.read_txn()?;
        let mut out = Vec::new();
        for item in self.tables.iter(&rtxn)? {
            let (name, epoch) = item?;
            out.push((name.to_string(), epoch));
        }
        Ok(out)
    }

    pub fn put(&self, name: &str, epoch: u64) -> Result<()> {
        let mut wtxn = self.env.write_txn()?;
        self.tables.put(&mut wtxn, name, &epoch)?;
        wtxn.commit()?;
        Ok(())
    }

    pub fn delete(&self, name: &str) -> Result<bool> {
        let mut wtxn = self.env.write_txn()?;
        let existed = self.tables.delete(&mut wtxn, name)?;
        wtxn.commit()?;
        Ok(existed)
    }
}
