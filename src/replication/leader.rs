//! The leader cluster's side of replication: `Metadata.Get`,
//! `Log.Replicate` and `Snapshot.Stream`, served by every node of the
//! leader cluster from its own applied state (applied entries are
//! committed, so any node's answer is final; a lagging node answers
//! `LEADER_BEHIND` rather than pretending to be current).
//!
//! Messages aim at `--replication.max-send-message-size-bytes`; a single
//! log entry larger than that is still sent whole (it cannot be split
//! without breaking the follower's replay rule), so followers accept large
//! messages, as Regatta's do.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tokio::sync::{mpsc, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::snapshot_stream::{stream_file, STALLED};
use super::wire::entry_to_wire;
use super::RemoveOnDrop;
use crate::error::Error;
use crate::pb::replication::log_server::Log;
use crate::pb::replication::metadata_server::Metadata;
use crate::pb::replication::snapshot_server::Snapshot;
use crate::pb::replication::{
    MetadataRequest, MetadataResponse, ReplicateRequest, ReplicateResponse, Signal, SnapshotChunk,
    SnapshotHeader, SnapshotRequest, Table,
};
use crate::raft::group::{LogRead, RaftGroup};
use crate::raft::registry::Registry;

/// How long a following stream waits for a new commit before sending an
/// empty message, so that the follower sees the leader alive and learns
/// that a table was deleted or re-created.
const FOLLOW_IDLE: Duration = Duration::from_secs(5);

/// Room left in a message for everything but the commands' own bytes.
const MESSAGE_OVERHEAD: usize = 16 << 10;

/// Snapshot.Stream calls served at once by one node: each holds a full
/// copy of a table on disk (and an LMDB read transaction while it is made).
const MAX_EXPORTS: usize = 4;

/// The replication services of one leader-cluster node.
#[derive(Clone)]
pub(crate) struct LeaderService {
    pub registry: Arc<Registry>,
    /// `--replication.max-send-message-size-bytes`.
    pub max_send: usize,
    /// Where snapshot copies are written while they stream.
    pub scratch_dir: PathBuf,
    /// One permit per Snapshot.Stream in progress.
    exports: Arc<Semaphore>,
}

impl LeaderService {
    pub fn new(registry: Arc<Registry>, max_send: usize, scratch_dir: PathBuf) -> LeaderService {
        LeaderService {
            registry,
            max_send,
            scratch_dir,
            exports: Arc::new(Semaphore::new(MAX_EXPORTS)),
        }
    }

    /// Refuses a follower that follows another leader cluster. An empty
    /// `follows` is a follower that has not recorded one yet.
    async fn check_cluster(&self, follows: &str) -> Result<(), Status> {
        let found = self.registry.cluster_id().await?;
        if !follows.is_empty() && follows != found {
            return Err(Error::WrongLeaderCluster {
                follows: follows.to_string(),
                found,
            }
            .into());
        }
        Ok(())
    }
}

type Outbox<T> = mpsc::Sender<Result<T, Status>>;
pub(crate) type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl Metadata for LeaderService {
    async fn get(
        &self,
        _request: Request<MetadataRequest>,
    ) -> Result<Response<MetadataResponse>, Status> {
        let tables = (self.registry.list().await?.into_iter())
            .map(|(name, epoch)| Table { name, epoch })
            .collect();
        let cluster = self.registry.cluster_id().await?;
        Ok(Response::new(MetadataResponse { tables, cluster }))
    }
}

#[tonic::async_trait]
impl Log for LeaderService {
    type ReplicateStream = BoxStream<ReplicateResponse>;

    async fn replicate(
        &self,
        request: Request<ReplicateRequest>,
    ) -> Result<Response<Self::ReplicateStream>, Status> {
        let req = request.into_inner();
        self.check_cluster(&req.cluster).await?;
        let (epoch, group) = self.registry.get_with_epoch(&req.table).await?;
        let (tx, rx) = mpsc::channel(2);
        let budget = self.max_send.saturating_sub(MESSAGE_OVERHEAD).max(1);
        let registry = self.registry.clone();
        tokio::spawn(async move {
            if let Err(e) = stream_log(&registry, &group, epoch, req, budget, &tx).await {
                let _ = tx.send(Err(e.into())).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

fn signal(signal: Signal, epoch: u64, last_index: u64) -> ReplicateResponse {
    ReplicateResponse {
        signal: signal as i32,
        epoch,
        last_index,
        ..Default::default()
    }
}

/// Sends `req.table`'s committed commands from `req.leader_index` on until
/// the follower has all of them (or, following, until it goes away or the
/// table changes). Returns `Ok` also when the follower hung up.
async fn stream_log(
    registry: &Registry,
    group: &Arc<RaftGroup>,
    epoch: u64,
    req: ReplicateRequest,
    budget: usize,
    tx: &Outbox<ReplicateResponse>,
) -> Result<(), Error> {
    if req.epoch != 0 && req.epoch != epoch {
        let _ = tx.send(Ok(signal(Signal::EpochChanged, epoch, 0))).await;
        return Ok(());
    }
    let mut next = req.leader_index.max(1);
    let mut sent_any = false;
    loop {
        // The table may have been deleted or re-created meanwhile.
        match registry.get_with_epoch(&req.table).await {
            Ok((e, _)) if e == epoch => {}
            Ok((e, _)) => {
                let _ = tx.send(Ok(signal(Signal::EpochChanged, e, 0))).await;
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        let (entries, sent_through, last_applied) = match group.read_committed(next, budget).await?
        {
            LogRead::Compacted => {
                let last = group.last_applied();
                let _ = tx.send(Ok(signal(Signal::UseSnapshot, epoch, last))).await;
                return Ok(());
            }
            LogRead::Ahead { last_applied } => {
                let _ = tx
                    .send(Ok(signal(Signal::LeaderBehind, epoch, last_applied)))
                    .await;
                return Ok(());
            }
            LogRead::Entries {
                entries,
                sent_through,
                last_applied,
            } => (entries, sent_through, last_applied),
        };
        let caught_up = sent_through >= last_applied;
        if !entries.is_empty() || !sent_any || sent_through >= next {
            let msg = ReplicateResponse {
                entries: (entries.iter())
                    .map(|(leader_index, cmds)| entry_to_wire(*leader_index, cmds))
                    .collect(),
                sent_through,
                last_index: last_applied,
                signal: Signal::None as i32,
                epoch,
            };
            if tx.send(Ok(msg)).await.is_err() {
                return Ok(()); // the follower went away
            }
            sent_any = true;
        }
        next = sent_through + 1;
        if !caught_up {
            continue;
        }
        if !req.follow {
            return Ok(());
        }
        if !group.wait_applied_past(sent_through, FOLLOW_IDLE).await {
            // Idle: a heartbeat, unless the follower is gone.
            let beat = ReplicateResponse {
                sent_through,
                last_index: group.last_applied(),
                epoch,
                ..Default::default()
            };
            if tx.send(Ok(beat)).await.is_err() {
                return Ok(());
            }
        }
    }
}

#[tonic::async_trait]
impl Snapshot for LeaderService {
    type StreamStream = BoxStream<SnapshotChunk>;

    async fn stream(
        &self,
        request: Request<SnapshotRequest>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let req = request.into_inner();
        self.check_cluster(&req.cluster).await?;
        let Ok(export) = self.exports.clone().try_acquire_owned() else {
            return Err(Status::resource_exhausted(format!(
                "armada: {MAX_EXPORTS} snapshot streams are in progress on this node; retry later"
            )));
        };
        let table = req.table;
        let (epoch, group) = self.registry.get_with_epoch(&table).await?;
        std::fs::create_dir_all(&self.scratch_dir).map_err(Error::from)?;
        let copy = RemoveOnDrop(self.scratch_dir.join(format!(
            "{table}.{epoch}.{}.mdb",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        )));
        let exported = group.export(copy.0.clone()).await?;
        let size = std::fs::metadata(&copy.0).map_err(Error::from)?.len();
        let header = SnapshotHeader {
            table,
            epoch,
            leader_index: exported.leader_index,
            revision: exported.revision.current,
            compact_revision: exported.revision.compacted,
            size,
        };
        let chunk = self
            .max_send
            .saturating_sub(MESSAGE_OVERHEAD)
            .clamp(4 << 10, 4 << 20);
        let (tx, rx) = mpsc::channel(2);
        tokio::spawn(async move {
            if let Err(e) = stream_file(copy, header, chunk, &tx).await {
                let _ = tx.send_timeout(Err(e.into()), STALLED).await;
            }
            drop(export);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
