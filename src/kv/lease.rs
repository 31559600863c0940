//! etcd's leases as replicated table state (etcd `lease/lessor.go`, the
//! parts that run at apply on every member): the lease records, the keys
//! attached to each, and the Grant, Revoke and Checkpoint commands.
//!
//! Invariants:
//! - a key's live version carries lease `L != 0` exactly when the key is in
//!   `L`'s attachment set; Put, DeleteRange and Revoke keep both in the same
//!   storage transaction;
//! - nothing here reads a clock: *when* a lease expires is decided by the
//!   table's raft leader (`raft::lease`), which proposes a Revoke;
//! - lease commands create no revision, except a Revoke that deletes keys:
//!   all its deletes share one revision, in key order.

use serde::{Deserialize, Serialize};

use super::apply::TxnWrite;
use crate::error::{EtcdError, Result};
use crate::pb::etcdserverpb::{
    LeaseCheckpointRequest, LeaseCheckpointResponse, LeaseGrantRequest, LeaseGrantResponse,
    LeaseRevokeRequest, LeaseRevokeResponse, ResponseHeader,
};

/// etcd's `MaxLeaseTTL`: 9,000,000,000 s.
pub(crate) const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// One lease as stored with the table (etcd's `leasepb.Lease`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub id: i64,
    /// The granted TTL in seconds.
    pub ttl: i64,
    /// The remaining TTL of the last checkpoint (0: none); a new raft
    /// leader starts the lease from it instead of the full TTL.
    pub remaining_ttl: i64,
}

impl Lease {
    /// The TTL a new raft leader gives the lease.
    pub(crate) fn ttl_on_promotion(&self) -> i64 {
        if self.remaining_ttl > 0 {
            self.remaining_ttl
        } else {
            self.ttl
        }
    }
}

fn header(rev: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision: rev,
        ..Default::default()
    })
}

/// Grant (etcd `lessor.Grant`). The server chose the id and raised the
/// TTL to the minimum before proposing, so apply needs no configuration.
pub(crate) fn grant(
    w: &mut TxnWrite<'_>,
    req: &LeaseGrantRequest,
) -> Result<Result<LeaseGrantResponse, EtcdError>> {
    if req.id == 0 {
        return Ok(Err(EtcdError::LeaseNotFound));
    }
    if req.ttl > MAX_LEASE_TTL {
        return Ok(Err(EtcdError::LeaseTtlTooLarge));
    }
    if w.store().lease(req.id)?.is_some() {
        return Ok(Err(EtcdError::LeaseExist));
    }
    w.store_mut().put_lease(&Lease {
        id: req.id,
        ttl: req.ttl,
        remaining_ttl: 0,
    })?;
    Ok(Ok(LeaseGrantResponse {
        header: header(w.header_rev()),
        id: req.id,
        ttl: req.ttl,
        error: String::new(),
    }))
}

/// Revoke (etcd `lessor.Revoke`): deletes every attached key in one
/// revision, in key order, then the lease.
pub(crate) fn revoke(
    w: &mut TxnWrite<'_>,
    req: &LeaseRevokeRequest,
) -> Result<Result<LeaseRevokeResponse, EtcdError>> {
    if w.store().lease(req.id)?.is_none() {
        return Ok(Err(EtcdError::LeaseNotFound));
    }
    let mut keys = Vec::new();
    w.store().lease_keys(req.id, &mut |k| {
        keys.push(k.to_vec());
        true
    })?;
    for key in &keys {
        w.delete_key(key)?;
    }
    w.store_mut().delete_lease(req.id)?;
    Ok(Ok(LeaseRevokeResponse {
        header: header(w.header_rev()),
    }))
}

/// Checkpoint (etcd `lessor.Checkpoint`): records remaining TTLs; unknown
/// leases are skipped.
pub(crate) fn checkpoint(
    w: &mut TxnWrite<'_>,
    req: &LeaseCheckpointRequest,
) -> Result<LeaseCheckpointResponse> {
    for c in &req.checkpoints {
        if let Some(mut lease) = w.store().lease(c.id)? {
            lease.remaining_ttl = c.remaining_ttl;
            w.store_mut().put_lease(&lease)?;
        }
    }
    Ok(LeaseCheckpointResponse {
        header: header(w.header_rev()),
    })
}
