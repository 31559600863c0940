//! The crate's one error type, and the one table of etcd's `(code, message)`
//! pairs.
//!
//! Two kinds of failure travel through Armada:
//! - [`EtcdError`]: a deterministic outcome of a request (a compacted
//!   revision, a missing lease, a malformed txn). It is a *result*: it may be
//!   decided inside Raft apply and travels back to the client through the log,
//!   identical on every node. Its `(code, message)` pair is exactly etcd's,
//!   because Go clients convert errors by comparing message strings.
//! - everything else ([`Error`]): storage, Raft and transport trouble. Only
//!   these make a state machine apply fail, and those that a client may retry
//!   map to `Unavailable`.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use tonic::Code;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// etcd's client-visible errors (`api/v3rpc/rpctypes/error.go`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EtcdError {
    KeyNotProvided,
    KeyNotFound,
    ValueProvided,
    LeaseProvided,
    TooManyOps,
    DuplicateKey,
    InvalidSortOption,
    Compacted,
    FutureRev,
    NoSpace,
    LeaseNotFound,
    LeaseExist,
    LeaseTtlTooLarge,
    RequestTooLarge,
    TooManyRequests,
    NoLeader,
    NotLeader,
    LeaderChanged,
    Timeout,
    TimeoutDueToLeaderFail,
    Stopped,
    MemberNotFound,
    AuthNotEnabled,
    /// A CORRUPT alarm is raised: every write is refused.
    Corrupt,
    /// Lock: the session's lease expired while waiting for the lock
    /// (`concurrency.ErrSessionExpired`, no gRPC code: `Unknown`).
    SessionExpired,
    /// Proclaim with a leader key that no longer leads (`ErrElectionNotLeader`).
    ElectionNotLeader,
    /// Leader with no campaigner (`ErrElectionNoLeader`).
    ElectionNoLeader,
    /// A response over the gRPC send limit: grpc-go's own error, which an
    /// etcd client gets for an answer over `math.MaxInt32` bytes. Sizes are
    /// encoded message bytes.
    ResponseTooLarge {
        size: u64,
        limit: u64,
    },
}

impl EtcdError {
    /// The one `(code, message)` table. Changing a message breaks Go clients.
    pub(crate) fn code_message(self) -> (Code, Cow<'static, str>) {
        use EtcdError::*;
        let fixed = match self {
            KeyNotProvided => (Code::InvalidArgument, "etcdserver: key is not provided"),
            KeyNotFound => (Code::InvalidArgument, "etcdserver: key not found"),
            ValueProvided => (Code::InvalidArgument, "etcdserver: value is provided"),
            LeaseProvided => (Code::InvalidArgument, "etcdserver: lease is provided"),
            TooManyOps => (
                Code::InvalidArgument,
                "etcdserver: too many operations in txn request",
            ),
            DuplicateKey => (
                Code::InvalidArgument,
                "etcdserver: duplicate key given in txn request",
            ),
            InvalidSortOption => (Code::InvalidArgument, "etcdserver: invalid sort option"),
            Compacted => (
                Code::OutOfRange,
                "etcdserver: mvcc: required revision has been compacted",
            ),
            FutureRev => (
                Code::OutOfRange,
                "etcdserver: mvcc: required revision is a future revision",
            ),
            NoSpace => (
                Code::ResourceExhausted,
                "etcdserver: mvcc: database space exceeded",
            ),
            LeaseNotFound => (Code::NotFound, "etcdserver: requested lease not found"),
            LeaseExist => (Code::FailedPrecondition, "etcdserver: lease already exists"),
            LeaseTtlTooLarge => (Code::OutOfRange, "etcdserver: too large lease TTL"),
            RequestTooLarge => (Code::InvalidArgument, "etcdserver: request is too large"),
            TooManyRequests => (Code::ResourceExhausted, "etcdserver: too many requests"),
            NoLeader => (Code::Unavailable, "etcdserver: no leader"),
            NotLeader => (Code::FailedPrecondition, "etcdserver: not leader"),
            LeaderChanged => (Code::Unavailable, "etcdserver: leader changed"),
            Timeout => (Code::Unavailable, "etcdserver: request timed out"),
            TimeoutDueToLeaderFail => (
                Code::Unavailable,
                "etcdserver: request timed out, possibly due to previous leader failure",
            ),
            Stopped => (Code::Unavailable, "etcdserver: server stopped"),
            MemberNotFound => (Code::NotFound, "etcdserver: member not found"),
            AuthNotEnabled => (
                Code::FailedPrecondition,
                "etcdserver: authentication is not enabled",
            ),
            Corrupt => (Code::DataLoss, "etcdserver: corrupt cluster"),
            // The concurrency package's errors reach clients unconverted.
            SessionExpired => (Code::Unknown, "mutex: session is expired"),
            ElectionNotLeader => (Code::Unknown, "election: not leader"),
            ElectionNoLeader => (Code::Unknown, "election: no leader"),
            ResponseTooLarge { size, limit } => {
                return (
                    Code::ResourceExhausted,
                    format!("grpc: trying to send message larger than max ({size} vs. {limit})")
                        .into(),
                )
            }
        };
        (fixed.0, fixed.1.into())
    }

    pub fn message(self) -> Cow<'static, str> {
        self.code_message().1
    }
}

impl std::fmt::Display for EtcdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for EtcdError {}

/// Why etcd refuses or ends a watcher: sent as a Watch response's
/// `cancel_reason` (etcd `mvcc` package errors, without the `etcdserver:`
/// prefix), not as a gRPC status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WatchError {
    /// A negative start revision (etcd >= 3.5.24 answers it like this).
    Compacted,
    EmptyRange,
    DuplicateId,
    /// The table was deleted while the watcher was on it (Armada only).
    TableDeleted,
}

impl WatchError {
    pub fn message(self) -> &'static str {
        match self {
            WatchError::Compacted => "mvcc: required revision has been compacted",
            WatchError::EmptyRange => "mvcc: watcher range is empty",
            WatchError::DuplicateId => "mvcc: duplicate watch ID provided on the WatchStream",
            WatchError::TableDeleted => "armada: the table was deleted",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A deterministic etcd error; see [`EtcdError`].
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    /// A request names a table this cluster does not have.
    #[error("armada: table {0:?} not found")]
    TableNotFound(String),
    #[error("armada: table {0:?} already exists")]
    TableExists(String),
    /// The table exists but its group failed to open on this node.
    #[error("armada: table {table:?} is unavailable on this node: {reason}")]
    TableUnavailable { table: String, reason: String },
    /// Malformed input that etcd has no message for (bad table names, flags, files).
    #[error("armada: {0}")]
    InvalidInput(String),
    /// LMDB failed. A full map is reported as [`EtcdError::NoSpace`] instead.
    #[error("storage: {0}")]
    Storage(#[from] heed::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// Encoding or decoding of stored or replicated data failed: corruption
    /// or a version mismatch, never a client mistake.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// Consensus trouble that may resolve itself (no leader, shutting down);
    /// clients retry `Unavailable`.
    #[error("raft: {0}")]
    Raft(String),
    /// A follower cluster asked a leader cluster other than the one it
    /// follows (a wrong address, or a wiped and re-bootstrapped leader).
    #[error(
        "armada: the leader cluster at this address is {found}, but this follower cluster \
         follows {follows}; to follow another leader cluster, start the follower from an \
         empty data directory"
    )]
    WrongLeaderCluster { follows: String, found: String },
    /// A follower cluster's call to its leader cluster failed or was
    /// answered out of turn (unreachable, timed out, a stream cut, a
    /// lagging leader node, a table changed meanwhile): the replication
    /// worker retries.
    #[error("leader cluster: {0}")]
    Upstream(String),
    /// A bug: a state the code never expects.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// True if the error could be different on another node or another try.
    /// Such errors must never be produced by a state machine apply as a result.
    pub fn is_deterministic(&self) -> bool {
        matches!(
            self,
            Error::Etcd(_)
                | Error::InvalidInput(_)
                | Error::TableNotFound(_)
                | Error::TableExists(_)
        )
    }
}

impl From<bincode::Error> for Error {
    fn from(e: bincode::Error) -> Self {
        Error::Corrupt(e.to_string())
    }
}

impl From<prost::DecodeError> for Error {
    fn from(e: prost::DecodeError) -> Self {
        Error::Corrupt(e.to_string())
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        match e {
            Error::Etcd(e) => {
                let (code, msg) = e.code_message();
                tonic::Status::new(code, msg)
            }
            Error::TableNotFound(_) => tonic::Status::not_found(e.to_string()),
            Error::TableExists(_) => tonic::Status::already_exists(e.to_string()),
            Error::InvalidInput(_) => tonic::Status::invalid_argument(e.to_string()),
            Error::Raft(_) | Error::TableUnavailable { .. } | Error::Upstream(_) => {
                tonic::Status::unavailable(e.to_string())
            }
            Error::WrongLeaderCluster { .. } => tonic::Status::failed_precondition(e.to_string()),
            Error::Storage(heed::Error::Mdb(heed::MdbError::MapFull)) => EtcdError::NoSpace.into(),
            Error::Storage(_) | Error::Io(_) | Error::Corrupt(_) | Error::Internal(_) => {
                tonic::Status::internal(e.to_string())
            }
        }
    }
}

impl From<EtcdError> for tonic::Status {
    fn from(e: EtcdError) -> Self {
        let (code, msg) = e.code_message();
        tonic::Status::new(code, msg)
    }
}
