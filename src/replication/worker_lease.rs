//! Replication worker leases: which node of a follower cluster runs a
//! table's replication worker, and until when. Not etcd leases (those are
//! `kv::lease`): these live in the follower cluster's own metadata group,
//! one key per table, and are never replicated from the leader cluster.
//!
//! Taking or renewing one is a compare-and-swap on the key's mod revision,
//! so of two racing nodes one wins. Expiry is judged by the caller's wall
//! clock (never inside apply), so clocks skewed by more than the lease
//! interval can overlap two holders for the skew: harmless, as replicated
//! batches apply idempotently and a batch of another leader epoch is not
//! applied.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::kv::command::Command;
use crate::kv::MvccRead;
use crate::pb::etcdserverpb::{compare, TxnRequest};
use crate::raft::registry::keyspace::{from_json, to_json, MetaKey};
use crate::raft::registry::{compare_key, put_op, succeeded, unix_ms, Registry};
use crate::raft::NodeId;

/// A table's worker lease, as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct WorkerLease {
    holder: NodeId,
    /// Wall-clock expiry, Unix milliseconds.
    expires_ms: u64,
}

/// Takes or renews `table`'s worker lease for `holder` for `ttl`, unless
/// another node holds it unexpired; true if `holder` holds it now.
pub(crate) async fn acquire(
    registry: &Registry,
    table: &str,
    holder: NodeId,
    ttl: Duration,
) -> Result<bool> {
    let key = MetaKey::WorkerLease(table).encode();
    let now = unix_ms();
    let read_key = key.clone();
    let current = (registry.meta())
        .read(true, move |r| {
            let rev = r.revision_state()?.current;
            r.get(read_key.as_bytes(), rev)
        })
        .await?;
    let mod_revision = match &current {
        Some(kv) => {
            // A lease that does not decode is taken over (with a warning):
            // refusing it would stop the table's replication for good.
            let lease = from_json::<WorkerLease>(&MetaKey::WorkerLease(table), &kv.value)
                .inspect_err(|e| tracing::warn!(%table, "taking over a worker lease: {e}"))
                .ok();
            if lease.is_some_and(|l| l.holder != holder && l.expires_ms > now) {
                return Ok(false);
            }
            kv.mod_revision
        }
        None => 0,
    };
    let lease = WorkerLease {
        holder,
        expires_ms: now.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)),
    };
    let value = to_json(&lease)?;
    let txn = TxnRequest {
        compare: vec![compare_key(
            &key,
            compare::CompareResult::Equal,
            compare::TargetUnion::ModRevision(mod_revision),
        )],
        success: vec![put_op(key, value)],
        failure: vec![],
    };
    Ok(succeeded(registry.meta().write(Command::Txn(txn)).await?))
}
