//! Batched ReadIndex on a group's raft leader: one quorum round serves
//! every linearizable read (local or forwarded by a raft follower) that
//! was waiting when the round started, as etcd's `linearizableReadLoop`
//! does, instead of one heartbeat round per read.
//!
//! Invariant (what makes the batch linearizable): a read is only ever
//! answered by a round that started after the read arrived. Reads that
//! arrive while a round is in flight wait for the next one, which starts
//! as soon as the current one ends. Rounds run on a task of their own, so
//! a caller that goes away never strands the others.

use std::sync::{Arc, Mutex};

use openraft::error::{CheckIsLeaderError, RaftError};
use tokio::sync::oneshot;

use super::group::PROPOSE_TIMEOUT;
use super::Raft;
use crate::error::{EtcdError, Result};

type Answer = std::result::Result<u64, EtcdError>;

pub(crate) struct ReadIndex {
    raft: Raft,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// A task is running rounds.
    running: bool,
    /// Reads for the next round.
    waiting: Vec<oneshot::Sender<Answer>>,
}

impl ReadIndex {
    pub fn new(raft: Raft) -> Arc<ReadIndex> {
        Arc::new(ReadIndex {
            raft,
            state: Mutex::default(),
        })
    }

    /// Confirms leadership with a quorum in a round that starts after this
    /// call, and returns the log index a linearizable read must wait for.
    pub async fn read_index(self: &Arc<Self>) -> Result<u64> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut state = self.state.lock().unwrap();
            state.waiting.push(tx);
            !std::mem::replace(&mut state.running, true)
        };
        if start {
            tokio::spawn(self.clone().rounds());
        }
        match rx.await {
            Ok(answer) => Ok(answer?),
            Err(_) => Err(EtcdError::Stopped.into()),
        }
    }

    /// Runs rounds while reads wait for one.
    async fn rounds(self: Arc<Self>) {
        loop {
            let batch = {
                let mut state = self.state.lock().unwrap();
                if state.waiting.is_empty() {
                    state.running = false;
                    return;
                }
                std::mem::take(&mut state.waiting)
            };
            let answer = round(&self.raft).await;
            for tx in batch {
                let _ = tx.send(answer);
            }
        }
    }
}

/// One ReadIndex: a heartbeat to every voter, waited on for one heartbeat
/// interval; a slow reply from one peer fails the round although the
/// leader is fine, so it is retried until the proposal timeout.
async fn round(raft: &Raft) -> Answer {
    let deadline = tokio::time::Instant::now() + PROPOSE_TIMEOUT;
    loop {
        let round = tokio::time::timeout_at(deadline, raft.get_read_log_id())
            .await
            .map_err(|_| EtcdError::Timeout)?;
        match round {
            Ok((read_log_id, _)) => return Ok(read_log_id.map_or(0, |l| l.index)),
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_)))
                if tokio::time::Instant::now() < deadline => {}
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_))) => {
                return Err(EtcdError::Timeout)
            }
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_))) => {
                return Err(EtcdError::LeaderChanged)
            }
            Err(RaftError::Fatal(_)) => return Err(EtcdError::Stopped),
        }
    }
}
