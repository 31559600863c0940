//! etcd's Election service (`v3electionpb.Election`; etcd
//! `v3election/election.go` running `concurrency.Election`), as etcd 3.4
//! serves it.
//!
//! A campaigner's key is `name/<lease hex>` holding its value, attached to
//! its lease; the leader is the oldest key under `name/`. Campaign puts
//! the key if absent (or proclaims the new value on the key it has) and
//! waits for every older key to go. Proclaim and Resign act on a LeaderKey
//! through a compare on the key's create revision; Leader and Observe read.
//! Observe streams the leader's value and every later proclamation, and
//! starts over at the next leader when the key is deleted.

use std::pin::Pin;
use std::sync::Arc;

use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::concurrency::{
    created_at, delete_op, event_kv, first_created, get_op, is_delete, key_prefix, put_op, ranged,
    session_key, unconverted, On,
};
use super::Context;
use crate::error::EtcdError;
use crate::kv::range::prefix_end;
use crate::pb::etcdserverpb::watch_create_request::FilterType;
use crate::pb::etcdserverpb::{ResponseHeader, TxnRequest};
use crate::pb::mvccpb::KeyValue;
use crate::pb::v3electionpb::election_server::Election;
use crate::pb::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest,
    ProclaimResponse, ResignRequest, ResignResponse,
};

pub(crate) struct ElectionService {
    pub ctx: Arc<Context>,
}

/// `"leader" field must be provided` (etcd `ErrMissingLeaderKey`).
fn missing_leader() -> Status {
    Status::unknown("\"leader\" field must be provided")
}

/// Proclaim: `value` on the leader key, if it still has that create revision.
async fn proclaim(on: &On<'_>, leader: &LeaderKey, value: &[u8]) -> Result<ResponseHeader, Status> {
    let mut resp = on
        .txn(TxnRequest {
            compare: vec![created_at(&leader.key, leader.rev)],
            success: vec![put_op(&leader.key, value, leader.lease)],
            failure: vec![],
        })
        .await?;
    if !resp.succeeded {
        return Err(EtcdError::ElectionNotLeader.into());
    }
    on.ctx.fill(&on.group, &mut resp.header, None);
    Ok(resp.header.unwrap_or_default())
}

/// The txn that resigns `leader`: its key goes if it still leads.
fn resign_txn(leader: &LeaderKey) -> TxnRequest {
    TxnRequest {
        compare: vec![created_at(&leader.key, leader.rev)],
        success: vec![delete_op(&leader.key)],
        failure: vec![],
    }
}

async fn campaign(on: &On<'_>, req: CampaignRequest) -> Result<CampaignResponse, Status> {
    let lease = on.session(req.lease).await?;
    let prefix = key_prefix(&req.name);
    let key = session_key(&prefix, lease);
    let mut resp = on
        .txn(TxnRequest {
            compare: vec![created_at(&key, 0)],
            success: vec![put_op(&key, &req.value, lease)],
            failure: vec![get_op(&key)],
        })
        .await?;
    on.ctx.fill(&on.group, &mut resp.header, None);
    let mut leader = LeaderKey {
        name: req.name.clone(),
        key,
        rev: resp.header.as_ref().map_or(0, |h| h.revision),
        lease,
    };
    if !resp.succeeded {
        let held = ranged(&resp, 0).unwrap_or_default();
        leader.rev = held.create_revision;
        if held.value != req.value {
            if let Err(e) = proclaim(on, &leader, &req.value).await {
                let _ = on.txn(resign_txn(&leader)).await;
                return Err(e);
            }
        }
    }
    // A client that gives up resigns (etcd resigns on a cancelled context).
    let resign = on.on_drop(crate::kv::command::Command::Txn(resign_txn(&leader)));
    let waited = on.wait_deletes(&prefix, leader.rev - 1).await;
    resign.disarm();
    waited?;
    Ok(CampaignResponse {
        header: resp.header,
        leader: Some(leader),
    })
}

/// The oldest key under `name/` and the header of the read.
async fn leader(on: &On<'_>, name: &[u8]) -> Result<(ResponseHeader, Option<KeyValue>), Status> {
    let resp = on.range(first_created(&key_prefix(name))).await?;
    Ok((resp.header.unwrap_or_default(), resp.kvs.into_iter().next()))
}

type ObserveStream = Pin<Box<dyn Stream<Item = Result<LeaderResponse, Status>> + Send>>;

/// etcd's `Election.observe`: sends the leader's key-value, then each of
/// its proclamations, and starts over when the leader's key is deleted.
/// Returns when the client is gone or a watch ends.
async fn observe(
    on: On<'_>,
    name: Vec<u8>,
    out: tokio::sync::mpsc::Sender<Result<LeaderResponse, Status>>,
) -> Result<(), Status> {
    let prefix = key_prefix(&name);
    loop {
        let (mut header, current) = leader(&on, &name).await?;
        let kv = match current {
            Some(kv) => kv,
            None => {
                // Wait for the first PUT under the prefix.
                let mut watch = on
                    .watch(
                        &prefix,
                        &prefix_end(&prefix),
                        header.revision,
                        Some(FilterType::Nodelete),
                    )
                    .await?;
                let first = watch.next().await?.events.into_iter().next();
                let kv = first.map(event_kv).unwrap_or_default();
                header.revision = kv.mod_revision;
                kv
            }
        };
        let send = |header: ResponseHeader, kv: KeyValue| LeaderResponse {
            header: Some(header),
            kv: Some(kv),
        };
        if out.send(Ok(send(header, kv.clone()))).await.is_err() {
            return Ok(());
        }
        let mut watch = on.watch(&kv.key, &[], header.revision + 1, None).await?;
        'leader: loop {
            let batch = watch.next().await?;
            for event in batch.events {
                if is_delete(&event) {
                    break 'leader;
                }
                let mut h = header;
                h.revision = batch.revision;
                if out.send(Ok(send(h, event_kv(event)))).await.is_err() {
                    return Ok(());
                }
            }
        }
    }
}

#[tonic::async_trait]
impl Election for ElectionService {
    async fn campaign(
        &self,
        request: Request<CampaignRequest>,
    ) -> Result<Response<CampaignResponse>, Status> {
        let metadata = request.metadata().clone();
        let on = On {
            ctx: &self.ctx,
            metadata: &metadata,
            group: self.ctx.group(&metadata).await?,
        };
        campaign(&on, request.into_inner())
            .await
            .map(Response::new)
            .map_err(unconverted)
    }

    async fn proclaim(
        &self,
        request: Request<ProclaimRequest>,
    ) -> Result<Response<ProclaimResponse>, Status> {
        let metadata = request.metadata().clone();
        let on = On {
            ctx: &self.ctx,
            metadata: &metadata,
            group: self.ctx.group(&metadata).await?,
        };
        let req = request.into_inner();
        let leader = req.leader.ok_or_else(missing_leader)?;
        let header = proclaim(&on, &leader, &req.value)
            .await
            .map_err(unconverted)?;
        Ok(Response::new(ProclaimResponse {
            header: Some(header),
        }))
    }

    async fn leader(
        &self,
        request: Request<LeaderRequest>,
    ) -> Result<Response<LeaderResponse>, Status> {
        let metadata = request.metadata().clone();
        let on = On {
            ctx: &self.ctx,
            metadata: &metadata,
            group: self.ctx.group(&metadata).await?,
        };
        let (header, kv) = leader(&on, &request.into_inner().name)
            .await
            .map_err(unconverted)?;
        let kv = kv.ok_or_else(|| unconverted(EtcdError::ElectionNoLeader.into()))?;
        Ok(Response::new(LeaderResponse {
            header: Some(header),
            kv: Some(kv),
        }))
    }

    type ObserveStream = ObserveStream;

    async fn observe(
        &self,
        request: Request<LeaderRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        let metadata = request.metadata().clone();
        let group = self.ctx.group(&metadata).await?;
        let name = request.into_inner().name;
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let ctx = self.ctx.clone();
        tokio::spawn(async move {
            let on = On {
                ctx: &ctx,
                metadata: &metadata,
                group,
            };
            // etcd ends the stream without an error when its watch ends.
            let closed = tx.clone();
            tokio::select! {
                ended = observe(on, name, tx) => {
                    if let Err(e) = ended {
                        tracing::debug!("election observe ended: {e}");
                    }
                }
                _ = closed.closed() => {}
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn resign(
        &self,
        request: Request<ResignRequest>,
    ) -> Result<Response<ResignResponse>, Status> {
        let metadata = request.metadata().clone();
        let on = On {
            ctx: &self.ctx,
            metadata: &metadata,
            group: self.ctx.group(&metadata).await?,
        };
        let leader = request.into_inner().leader.ok_or_else(missing_leader)?;
        let mut resp = on.txn(resign_txn(&leader)).await.map_err(unconverted)?;
        on.ctx.fill(&on.group, &mut resp.header, None);
        Ok(Response::new(ResignResponse {
            header: resp.header,
        }))
    }
}
