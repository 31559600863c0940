//! Group commit for one table: concurrent writes share Raft entries.
//!
//! openraft appends (and fsyncs) each `client_write` on its own. The proposer
//! queues commands instead and, whenever one of its few in-flight slots is
//! free, proposes everything queued so far as one [`Proposal`]: one log
//! append, one fsync, one replication round and one apply transaction for
//! the whole batch. Under load, batches grow while the previous ones are on
//! disk, so throughput grows with clients; a lone client sees no extra delay.
//!
//! Invariant: each caller gets the result of exactly its own command, which
//! apply computed as a separate etcd write request (own revision). Within a
//! batch, commands apply in the order they were queued; two batches in
//! flight may enter the log in either order, which no client can observe:
//! a command is queued only once its caller has it, so commands of
//! different batches were concurrent (a client's next write waits for the
//! answer to its previous one).
//!
//! Back-pressure: at most `--raft.max-pending-proposals` commands wait or
//! are in flight at once; past that a write is refused at once with etcd's
//! `etcdserver: too many requests`, so a raft leader that cannot commit (cut
//! off from its quorum) holds a bounded amount of memory, not what every
//! client sent during the outage.

use std::sync::Arc;

use openraft::error::{ClientWriteError, RaftError};
use openraft::BasicNode;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use super::{NodeId, Raft};
use crate::kv::command::{Command, CommandResult, Proposal};

/// Proposals in flight at once: one on disk while the next one fills up.
const IN_FLIGHT: usize = 2;
/// Upper bounds of one batch. In bytes, about one AppendEntries' budget:
/// an entry must reach the raft followers within one heartbeat (openraft's
/// AppendEntries timeout), so only a single large command makes a larger one.
const MAX_BATCH_COMMANDS: usize = 512;
const MAX_BATCH_BYTES: usize = super::network::APPEND_BUDGET as usize;

/// Why a proposal did not produce results.
#[derive(Clone, Debug)]
pub(crate) enum ProposeError {
    /// This node is not the group's raft leader; the leader, if known.
    ForwardToLeader(Option<(NodeId, BasicNode)>),
    /// The group's Raft core stopped.
    Fatal(String),
    /// Any other Raft refusal.
    Raft(String),
    /// As many commands as allowed wait already.
    TooManyRequests,
}

struct Pending {
    command: Command,
    reply: oneshot::Sender<Result<CommandResult, ProposeError>>,
    /// Held until the command's proposal has an outcome.
    _admitted: OwnedSemaphorePermit,
}

#[derive(Clone)]
pub(crate) struct Proposer {
    queue: mpsc::UnboundedSender<Pending>,
    /// One permit per command that may wait or be in flight.
    admission: Arc<Semaphore>,
}

impl Proposer {
    /// Starts the batching task, admitting at most `max_pending` commands
    /// at once; it ends when the last `Proposer` is dropped.
    pub fn spawn(raft: Raft, max_pending: usize) -> Proposer {
        let (queue, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(raft, rx));
        Proposer {
            queue,
            admission: Arc::new(Semaphore::new(max_pending.max(1))),
        }
    }

    pub(crate) async fn propose(&self, command: Command) -> Result<CommandResult, ProposeError> {
        let admitted = (self.admission.clone().try_acquire_owned())
            .map_err(|_| ProposeError::TooManyRequests)?;
        let (reply, rx) = oneshot::channel();
        self.queue
            .send(Pending {
                command,
                reply,
                _admitted: admitted,
            })
            .map_err(|_| ProposeError::Fatal("the table's proposer stopped".into()))?;
        rx.await
            .map_err(|_| ProposeError::Fatal("the table's proposer stopped".into()))?
    }
}

async fn run(raft: Raft, mut rx: mpsc::UnboundedReceiver<Pending>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        // Everything that queued up while we waited for a slot joins the batch.
        let mut bytes = first.command.encoded_len();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_COMMANDS && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(p) => {
                    bytes += p.command.encoded_len();
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            let (commands, replies): (Vec<_>, Vec<_>) = batch
                .into_iter()
                .map(|p| (p.command, (p.reply, p._admitted)))
                .unzip();
            match raft.client_write(Proposal::Local(commands)).await {
                Ok(resp) => {
                    for ((reply, _), result) in replies.into_iter().zip(resp.data) {
                        let _ = reply.send(Ok(result));
                    }
                }
                Err(e) => {
                    let e = propose_error(e);
                    for (reply, _) in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
            drop(slot);
        });
    }
}

pub(super) fn propose_error(
    e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>,
) -> ProposeError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            ProposeError::ForwardToLeader(f.leader_id.zip(f.leader_node))
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            ProposeError::Raft(e.to_string())
        }
        RaftError::Fatal(e) => ProposeError::Fatal(e.to_string()),
    }
}
