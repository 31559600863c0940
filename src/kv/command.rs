//! The logical commands that travel through a table's Raft log (and, later,
//! to follower clusters), and their results.
//!
//! A command is etcd's own request message; its result is etcd's response or
//! a deterministic [`EtcdError`]. Both are part of the replicated log format.

use serde::{Deserialize, Serialize};

use crate::error::EtcdError;
use crate::pb::etcdserverpb::{
    AlarmRequest, AlarmResponse, CompactionRequest, CompactionResponse, DeleteRangeRequest,
    DeleteRangeResponse, LeaseCheckpointRequest, LeaseCheckpointResponse, LeaseGrantRequest,
    LeaseGrantResponse, LeaseRevokeRequest, LeaseRevokeResponse, PutRequest, PutResponse,
    ResponseHeader, TxnRequest, TxnResponse,
};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Command {
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
    Compact(CompactionRequest),
    /// The id is never 0 and the TTL at least the minimum: the server
    /// that proposes it decides both.
    LeaseGrant(LeaseGrantRequest),
    /// A client's revoke, or the raft leader's for an expired lease.
    LeaseRevoke(LeaseRevokeRequest),
    LeaseCheckpoint(LeaseCheckpointRequest),
    Alarm(AlarmRequest),
}

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Command::Put(_) => "put",
            Command::DeleteRange(_) => "delete_range",
            Command::Txn(_) => "txn",
            Command::Compact(_) => "compact",
            Command::LeaseGrant(_) => "lease_grant",
            Command::LeaseRevoke(_) => "lease_revoke",
            Command::LeaseCheckpoint(_) => "lease_checkpoint",
            Command::Alarm(_) => "alarm",
        }
    }

    /// Protobuf size of the request, for bounding batches.
    pub fn encoded_len(&self) -> usize {
        use prost::Message;
        match self {
            Command::Put(r) => r.encoded_len(),
            Command::DeleteRange(r) => r.encoded_len(),
            Command::Txn(r) => r.encoded_len(),
            Command::Compact(r) => r.encoded_len(),
            Command::LeaseGrant(r) => r.encoded_len(),
            Command::LeaseRevoke(r) => r.encoded_len(),
            Command::LeaseCheckpoint(r) => r.encoded_len(),
            Command::Alarm(r) => r.encoded_len(),
        }
    }
}

/// The payload of one Raft log entry. Its commands apply in order, each as
/// its own etcd write request with its own revision, so batching changes
/// throughput, never results.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Proposal {
    /// Writes of this cluster's clients, proposed together (group commit).
    Local(Vec<Command>),
    /// Entries pulled from the leader cluster by a follower cluster.
    Replicated(Replicated),
}

impl Proposal {
    /// Every command the entry carries, in apply order.
    pub fn commands(&self) -> Vec<&Command> {
        match self {
            Proposal::Local(cmds) => cmds.iter().collect(),
            Proposal::Replicated(r) => r.entries.iter().flat_map(|e| &e.commands).collect(),
        }
    }
}

/// A batch of the leader cluster's log entries for one table, in
/// leader-index order. Applying it is idempotent: an entry at or below the
/// leader index the table already holds is skipped, so a batch delivered
/// twice changes nothing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Replicated {
    /// The table's epoch on the leader cluster.
    pub epoch: u64,
    pub entries: Vec<ReplicatedEntry>,
}

/// The commands of one leader-cluster log entry.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplicatedEntry {
    pub leader_index: u64,
    pub commands: Vec<Command>,
}

/// What applying one command produced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Applied {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compact(CompactionResponse),
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke(LeaseRevokeResponse),
    LeaseCheckpoint(LeaseCheckpointResponse),
    Alarm(AlarmResponse),
    /// The command was applied, but its response (of `size` encoded bytes)
    /// is over the gRPC send limit: the client gets etcd's error for that.
    ResponseTooLarge {
        size: u64,
        limit: u64,
    },
}

impl Applied {
    pub fn header(&self) -> Option<&ResponseHeader> {
        match self {
            Applied::Put(r) => r.header.as_ref(),
            Applied::DeleteRange(r) => r.header.as_ref(),
            Applied::Txn(r) => r.header.as_ref(),
            Applied::Compact(r) => r.header.as_ref(),
            Applied::LeaseGrant(r) => r.header.as_ref(),
            Applied::LeaseRevoke(r) => r.header.as_ref(),
            Applied::LeaseCheckpoint(r) => r.header.as_ref(),
            Applied::Alarm(r) => r.header.as_ref(),
            Applied::ResponseTooLarge { .. } => None,
        }
    }

    /// The response's encoded size.
    pub fn encoded_len(&self) -> usize {
        use prost::Message;
        match self {
            Applied::Put(r) => r.encoded_len(),
            Applied::DeleteRange(r) => r.encoded_len(),
            Applied::Txn(r) => r.encoded_len(),
            Applied::Compact(r) => r.encoded_len(),
            Applied::LeaseGrant(r) => r.encoded_len(),
            Applied::LeaseRevoke(r) => r.encoded_len(),
            Applied::LeaseCheckpoint(r) => r.encoded_len(),
            Applied::Alarm(r) => r.encoded_len(),
            Applied::ResponseTooLarge { .. } => 0,
        }
    }
}

/// A deterministic outcome: either etcd's response or etcd's error.
pub(crate) type CommandResult = Result<Applied, EtcdError>;
