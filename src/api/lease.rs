//! etcd's Lease service (etcd `v3rpc/lease.go`, `v3_server.go`).
//!
//! Grant and Revoke are commands through the table's log; this server picks
//! a Grant's id (when 0) and raises its TTL to the minimum before proposing,
//! so apply stays deterministic. KeepAlive and TimeToLive never touch the
//! log: the table's raft leader, the only member that knows deadlines,
//! answers them. Leases lists the table's stored leases locally.
//!
//! On a follower cluster Grant, Revoke, KeepAlive and TimeToLive go to the
//! leader cluster, which owns expiry; a keep-alive stream is proxied as one
//! upstream stream. Leases answers from the replicated copy.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::{status, Context};
use crate::kv::command::{Applied, Command};
use crate::kv::MvccRead;
use crate::pb::etcdserverpb::lease_client::LeaseClient;
use crate::pb::etcdserverpb::lease_server::Lease;
use crate::pb::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use crate::raft::group::RaftGroup;
use crate::raft::lease::{LeaseAnswer, LeaseQuery};
use crate::table_request;

/// Keep-alive answers buffered per stream before the stream stops reading.
const KEEPALIVE_BUFFER: usize = 16;

/// etcd's lease id generator (`pkg/idutil`): the member id's low 16 bits,
/// then a counter that starts at the start time in milliseconds, so ids
/// of different members and of restarts do not collide.
pub struct IdGen {
    prefix: u64,
    suffix: AtomicU64,
}

impl IdGen {
    pub fn new(member_id: u64) -> IdGen {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        IdGen {
            prefix: (member_id & 0xffff) << 48,
            suffix: AtomicU64::new((millis & ((1 << 40) - 1)) << 8),
        }
    }

    /// A positive id (never 0).
    pub fn next(&self) -> i64 {
        loop {
            let suffix = self.suffix.fetch_add(1, Ordering::Relaxed) + 1;
            let id = ((self.prefix | (suffix & ((1 << 48) - 1))) & (i64::MAX as u64)) as i64;
            if id != 0 {
                return id;
            }
        }
    }
}

pub(crate) struct LeaseService {
    pub ctx: Arc<Context>,
}

fn unexpected(applied: Applied) -> Status {
    Status::internal(format!("armada: unexpected apply result {applied:?}"))
}

/// Grants a lease on `group`'s table as etcd's LeaseGrant does (also used
/// by Lock and Election for a call without a lease).
pub(crate) async fn grant(
    ctx: &Context,
    metadata: &tonic::metadata::MetadataMap,
    group: &Arc<RaftGroup>,
    mut req: LeaseGrantRequest,
) -> Result<LeaseGrantResponse, Status> {
    // On a follower cluster the leader cluster decides id and TTL.
    if ctx.upstream.is_none() {
        if req.id == 0 {
            req.id = ctx.lease_ids.next();
        }
        req.ttl = req.ttl.max(ctx.min_lease_ttl);
    }
    match ctx.write(metadata, group, Command::LeaseGrant(req)).await? {
        Applied::LeaseGrant(mut resp) => {
            ctx.fill(group, &mut resp.header, None);
            Ok(resp)
        }
        other => Err(unexpected(other)),
    }
}

type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        let group = self.ctx.group(request.metadata()).await?;
        let metadata = request.metadata().clone();
        let resp = grant(&self.ctx, &metadata, &group, request.into_inner()).await?;
        Ok(self.ctx.respond(&group, resp))
    }

    async fn lease_revoke(
        &self,
        request: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        let group = self.ctx.group(request.metadata()).await?;
        let metadata = request.metadata().clone();
        let cmd = Command::LeaseRevoke(request.into_inner());
        match self.ctx.write(&metadata, &group, cmd).await? {
            Applied::LeaseRevoke(mut resp) => {
                self.ctx.fill(&group, &mut resp.header, None);
                Ok(self.ctx.respond(&group, resp))
            }
            other => Err(unexpected(other)),
        }
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let group = self.ctx.group(request.metadata()).await?;
        let table = self.ctx.table_name(request.metadata())?;
        let requests = request.into_inner();
        if let Some(up) = &self.ctx.upstream {
            return Ok(Response::new(
                proxy_keep_alive(&self.ctx, up.channel(), &table, group, requests).await?,
            ));
        }
        let (tx, rx) = tokio::sync::mpsc::channel(KEEPALIVE_BUFFER);
        let ctx = self.ctx.clone();
        tokio::spawn(async move {
            let mut requests = requests;
            // A client error or end of stream ends the loop.
            while let Some(Ok(req)) = requests.next().await {
                let started = Instant::now();
                let answer = keep_alive(&ctx, &group, req.id).await;
                ctx.metrics
                    .keepalive_seconds
                    .observe(started.elapsed().as_secs_f64());
                let failed = answer.is_err();
                if tx.send(answer).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let group = self.ctx.group(request.metadata()).await?;
        let table = self.ctx.table_name(request.metadata())?;
        let req = request.into_inner();
        let mut resp = match &self.ctx.upstream {
            Some(up) => LeaseClient::new(up.channel())
                .lease_time_to_live(table_request(&table, req))
                .await?
                .into_inner(),
            None => time_to_live(&group, req).await?,
        };
        // The header is this member's, as for every response.
        resp.header = None;
        self.ctx
            .fill(&group, &mut resp.header, Some(group.revision().current));
        Ok(Response::new(resp))
    }

    async fn lease_leases(
        &self,
        request: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        let group = self.ctx.group(request.metadata()).await?;
        let (leases, rev) = group
            .read(false, |r| {
                let mut leases = Vec::new();
                r.leases(&mut |l| {
                    leases.push(LeaseStatus { id: l.id });
                    true
                })?;
                Ok((leases, r.revision_state()?.current))
            })
            .await
            .map_err(status)?;
        let mut resp = LeaseLeasesResponse {
            header: None,
            leases,
        };
        self.ctx.fill(&group, &mut resp.header, Some(rev));
        Ok(Response::new(resp))
    }
}

/// One keep-alive on a leader cluster. As in etcd, the header is taken
/// before the renewal, and an unknown lease is TTL 0, not an error.
async fn keep_alive(
    ctx: &Context,
    group: &RaftGroup,
    id: i64,
) -> Result<LeaseKeepAliveResponse, Status> {
    let mut resp = LeaseKeepAliveResponse {
        header: None,
        id,
        ttl: 0,
    };
    ctx.fill(group, &mut resp.header, Some(group.revision().current));
    resp.ttl = match group
        .lease_query(LeaseQuery::Renew { id })
        .await
        .map_err(status)?
    {
        LeaseAnswer::Renewed { ttl } => ttl,
        _ => 0,
    };
    Ok(resp)
}

/// TimeToLive on a leader cluster: an unknown lease is TTL -1.
async fn time_to_live(
    group: &RaftGroup,
    req: LeaseTimeToLiveRequest,
) -> Result<LeaseTimeToLiveResponse, Status> {
    let query = LeaseQuery::TimeToLive {
        id: req.id,
        keys: req.keys,
    };
    let mut resp = LeaseTimeToLiveResponse {
        header: None,
        id: req.id,
        ttl: -1,
        granted_ttl: 0,
        keys: Vec::new(),
    };
    match group.lease_query(query).await.map_err(status)? {
        LeaseAnswer::Live {
            ttl,
            remaining,
            keys,
        } => {
            resp.ttl = remaining;
            resp.granted_ttl = ttl;
            resp.keys = keys;
        }
        LeaseAnswer::NotFound => {}
        other => {
            return Err(Status::internal(format!(
                "armada: unexpected lease answer {other:?}"
            )))
        }
    }
    Ok(resp)
}

/// A follower cluster's keep-alive stream: one stream to the leader
/// cluster carries the client's requests, and its answers come back with
/// this member's header.
async fn proxy_keep_alive(
    ctx: &Arc<Context>,
    channel: tonic::transport::Channel,
    table: &str,
    group: Arc<RaftGroup>,
    requests: Streaming<LeaseKeepAliveRequest>,
) -> Result<KeepAliveStream, Status> {
    let upstream_requests = requests.map_while(Result::ok);
    let answers = LeaseClient::new(channel)
        .lease_keep_alive(table_request(table, upstream_requests))
        .await?
        .into_inner();
    let ctx = ctx.clone();
    Ok(Box::pin(answers.map(move |answer| {
        let mut resp = answer?;
        resp.header = None;
        ctx.fill(&group, &mut resp.header, Some(group.revision().current));
        Ok(resp)
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_positive_and_distinct() {
        let ids = IdGen::new(u64::MAX);
        let a = ids.next();
        let b = ids.next();
        assert!(a > 0 && b > 0 && a != b);
        assert_eq!(a >> 48, 0x7fff, "the member's bits lead");
    }
}
