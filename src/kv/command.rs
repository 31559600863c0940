//! The logical commands that travel through a table's Raft log (and, later,
//! to follower clusters), and their results.
//!
//! A command is etcd's own request message; its result is etcd's response or
//! a deterministic [`EtcdError`]. Both are part of the replicated log format.

use serde::{Deserialize, Serialize};

use crate::error::EtcdError;
use crate::pb::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, TxnRequest, TxnResponse,
};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Command {
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
    Compact(CompactionRequest),
}

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Command::Put(_) => "put",
            Command::DeleteRange(_) => "delete_range",
            Command::Txn(_) => "txn",
            Command::Compact(_) => "compact",
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
        }
    }
}

/// The payload of one Raft log entry: the commands proposed together (group
/// commit). They apply in order, each as its own etcd write request with its
/// own revision, so batching changes throughput, never results.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Proposal(pub Vec<Command>);

/// What applying one command produced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Applied {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compact(CompactionResponse),
}

/// A deterministic outcome: either etcd's response or etcd's error.
pub type CommandResult = Result<Applied, EtcdError>;
