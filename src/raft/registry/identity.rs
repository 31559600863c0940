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

use super::keyspace::MetaKey;
use super::{exists, put_op, Registry};
use crate::error::{Error, Result};
use crate::kv::command::Command;
use crate::kv::MvccRead;
use crate::pb::etcdserverpb::TxnRequest;

impl Registry {
    /// This cluster's identity, created on first use.
    pub async fn cluster_id(&self) -> Result<String> {
        self.get_or_put(MetaKey::ClusterId, uuid::Uuid::new_v4().to_string())
            .await
    }

    /// Records `leader` as the leader cluster this follower cluster
    /// follows, unless one is recorded already; returns the recorded one.
    pub(crate) async fn follow_cluster(&self, leader: &str) -> Result<String> {
        self.get_or_put(MetaKey::FollowedCluster, leader.to_string())
            .await
    }

    /// The leader cluster this follower cluster follows, once recorded.
    pub(crate) async fn followed_cluster(&self) -> Result<Option<String>> {
        self.meta_value(MetaKey::FollowedCluster).await
    }

    async fn get_or_put(&self, key: MetaKey<'static>, value: String) -> Result<String> {
        if let Some(v) = self.meta_value(key).await? {
            return Ok(v);
        }
        // Of racing nodes one wins; everyone reads back the winner's value.
        let txn = TxnRequest {
            compare: vec![exists(&key.encode(), false)],
            success: vec![put_op(key.encode(), value.into_bytes())],
            failure: vec![],
        };
        self.meta.write(Command::Txn(txn)).await?;
        (self.meta_value(key).await?).ok_or_else(|| {
            Error::Raft(format!("{} is missing after a put-if-absent", key.encode()))
        })
    }

    /// `key`'s text value in the metadata group (a linearizable read).
    async fn meta_value(&self, key: MetaKey<'static>) -> Result<Option<String>> {
        self.meta
            .read(true, move |r| {
                let rev = r.revision_state()?.current;
                match r.get(key.encode().as_bytes(), rev)? {
                    None => Ok(None),
                    Some(kv) => String::from_utf8(kv.value)
                        .map(Some)
                        .map_err(|_| Error::Corrupt(format!("{} is not text", key.encode()))),
                }
            })
            .await
    }
}
