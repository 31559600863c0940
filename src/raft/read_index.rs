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

use futures::future::BoxFuture;
use openraft::error::{CheckIsLeaderError, RaftError};
use tokio::sync::oneshot;

use super::group::PROPOSE_TIMEOUT;
use super::Raft;
use crate::error::{EtcdError, Result};

type Answer = std::result::Result<u64, EtcdError>;

/// Starts one round.
type Round = Box<dyn Fn() -> BoxFuture<'static, Answer> + Send + Sync>;

pub(crate) struct ReadIndex {
    round: Round,
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
    /// Batches the ReadIndex rounds of `raft`.
    pub fn new(raft: Raft) -> Arc<ReadIndex> {
        Self::with_round(Box::new(move || {
            let raft = raft.clone();
            Box::pin(async move { round(&raft).await })
        }))
    }

    fn with_round(round: Round) -> Arc<ReadIndex> {
        Arc::new(ReadIndex {
            round,
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
            let answer = (self.round)().await;
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use tokio::sync::Semaphore;

    use super::*;

    /// Reads waiting together share a round; a read that arrives during a
    /// round is answered by the next one, never by the one in flight.
    #[tokio::test]
    async fn a_read_is_answered_by_a_round_that_started_after_it() {
        let rounds = Arc::new(AtomicU64::new(0));
        // Each round returns its number once the test lets it finish.
        let gate = Arc::new(Semaphore::new(0));
        let (r, g) = (rounds.clone(), gate.clone());
        let batcher = ReadIndex::with_round(Box::new(move || {
            let n = r.fetch_add(1, Ordering::SeqCst) + 1;
            let g = g.clone();
            Box::pin(async move {
                g.acquire().await.unwrap().forget();
                Ok(n)
            })
        }));
        let read = |b: &Arc<ReadIndex>| {
            let b = b.clone();
            tokio::spawn(async move { b.read_index().await.unwrap() })
        };
        let first: Vec<_> = (0..10).map(|_| read(&batcher)).collect();
        while rounds.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        // Round 1 is in flight with the first reads; these wait for round 2.
        let second: Vec<_> = (0..5).map(|_| read(&batcher)).collect();
        while batcher.state.lock().unwrap().waiting.len() < 5 {
            tokio::task::yield_now().await;
        }
        gate.add_permits(2);
        for r in first {
            assert_eq!(r.await.unwrap(), 1);
        }
        for r in second {
            assert_eq!(r.await.unwrap(), 2);
        }
        assert_eq!(rounds.load(Ordering::SeqCst), 2, "15 reads, 2 rounds");
    }
}
