//! Cluster identities, kept in the metadata group.
//!
//! `cluster/id` is this cluster's own identity: a random UUID written once,
//! the first time anything asks for it, by a put-if-absent txn, so every
//! node reads the same one and a wiped and re-bootstrapped cluster gets a
//! new one. `replication/leader-cluster` is, on a follower cluster, the
//! identity of the leader cluster it follows: recorded at first contact.
//! From then on a leader cluster with another identity is refused, so a
//! follower pointed at the wrong leader cluster (or at a re-bootstrapped
//! one) keeps its tables instead of mirroring the other cluster's list.

use super::{exists, put_op, Registry};
use crate::error::{Error, Result};
use crate::kv::command::Command;
use crate::kv::MvccRead;
use crate::pb::etcdserverpb::TxnRequest;

const OWN: &str = "cluster/id";
const FOLLOWS: &str = "replication/leader-cluster";

impl Registry {
    /// This cluster's identity, created on first use.
    pub async fn cluster_id(&self) -> Result<String> {
        self.get_or_put(OWN, uuid::Uuid::new_v4().to_string()).await
    }

    /// Records `leader` as the leader cluster this follower cluster
    /// follows, unless one is recorded already; returns the recorded one.
    pub async fn follow_cluster(&self, leader: &str) -> Result<String> {
        self.get_or_put(FOLLOWS, leader.to_string()).await
    }

    /// The leader cluster this follower cluster follows, once recorded.
    pub async fn followed_cluster(&self) -> Result<Option<String>> {
        self.meta_value(FOLLOWS).await
    }

    async fn get_or_put(&self, key: &'static str, value: String) -> Result<String> {
        if let Some(v) = self.meta_value(key).await? {
            return Ok(v);
        }
        // Of racing nodes one wins; everyone reads back the winner's value.
        let txn = TxnRequest {
            compare: vec![exists(key, false)],
            success: vec![put_op(key.to_string(), value.into_bytes())],
            failure: vec![],
        };
        self.meta.write(Command::Txn(txn)).await?;
        (self.meta_value(key).await?)
            .ok_or_else(|| Error::Internal(format!("{key} is missing after a put-if-absent")))
    }

    /// `key`'s value in the metadata group (a linearizable read).
    async fn meta_value(&self, key: &'static str) -> Result<Option<String>> {
        self.meta
            .read(true, move |r| {
                let rev = r.revision_state()?.current;
                let kv = r.get(key.as_bytes(), rev)?;
                Ok(kv.map(|kv| String::from_utf8_lossy(&kv.value).into_owned()))
            })
            .await
    }
}
