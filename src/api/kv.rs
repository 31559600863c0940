//! etcd's KV service: Range, Put, DeleteRange, Txn and Compact.

use std::sync::Arc;

use prost::Message;
use tonic::{Request, Response, Status};

use super::{status, Context};
use crate::error::EtcdError;
use crate::kv::command::{Applied, Command};
use crate::kv::{range, txn, validate, MvccRead};
use crate::pb::etcdserverpb::kv_server::Kv;
use crate::pb::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};

pub(crate) struct KvService {
    pub ctx: Arc<Context>,
}

/// grpc-go (etcd's transport) refuses messages over its receive limit with
/// ResourceExhausted; tonic would say OutOfRange, so the limit is enforced
/// here with grpc-go's code and message. Tonic's own decode limit is set
/// higher ([`validate::MAX_GRPC_DECODE_BYTES`]) as a memory bound.
fn check_grpc_limit(m: &impl Message) -> Result<(), Status> {
    let len = m.encoded_len();
    if len > validate::MAX_GRPC_RECV_BYTES {
        return Err(Status::resource_exhausted(format!(
            "grpc: received message larger than max ({len} vs. {})",
            validate::MAX_GRPC_RECV_BYTES
        )));
    }
    Ok(())
}

/// etcd rejects a proposal whose raft entry exceeds `--max-request-bytes`.
fn check_size(m: &impl Message) -> Result<(), Status> {
    if validate::raft_request_size(m.encoded_len()) > validate::MAX_REQUEST_BYTES {
        return Err(EtcdError::RequestTooLarge.into());
    }
    Ok(())
}

fn unexpected(applied: Applied) -> Status {
    Status::internal(format!("armada: unexpected apply result {applied:?}"))
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(
        &self,
        request: Request<RangeRequest>,
    ) -> Result<Response<RangeResponse>, Status> {
        let group = self.ctx.group(request.metadata()).await?;
        let req = request.into_inner();
        check_grpc_limit(&req)?;
        validate::range(&req).map_err(status)?;
        let linearizable = !req.serializable;
        let send_limit = self.ctx.send_limit;
        let mut resp = group
            .read(linearizable, move |r| {
                let state = r.revision_state()?;
                let mut budget = range::SendBudget::new(send_limit);
                range::range(r, &req, state.current, state.compacted, &mut budget)
            })
            .await
            .map_err(status)?;
        self.ctx.fill(&group, &mut resp.header, None);
        Ok(Response::new(resp))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let group = self.ctx.group(request.metadata()).await?;
        let metadata = request.metadata().clone();
        let req = request.into_inner();
        check_grpc_limit(&req)?;
        validate::put(&req).map_err(status)?;
        check_size(&req)?;
        match self.ctx.write(&metadata, &group, Command::Put(req)).await? {
            Applied::Put(mut resp) => {
                self.ctx.fill(&group, &mut resp.header, None);
                Ok(self.ctx.respond(&group, resp))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let group = self.ctx.group(request.metadata()).await?;
        let metadata = request.metadata().clone();
        let req = request.into_inner();
        check_grpc_limit(&req)?;
        validate::delete_range(&req).map_err(status)?;
        check_size(&req)?;
        match self
            .ctx
            .write(&metadata, &group, Command::DeleteRange(req))
            .await?
        {
            Applied::DeleteRange(mut resp) => {
                self.ctx.fill(&group, &mut resp.header, None);
                Ok(self.ctx.respond(&group, resp))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn txn(&self, request: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let group = self.ctx.group(request.metadata()).await?;
        let metadata = request.metadata().clone();
        let req = request.into_inner();
        check_grpc_limit(&req)?;
        validate::txn(&req).map_err(status)?;
        check_size(&req)?;
        if txn::is_read_only(&req) {
            // Served like a Range, outside the log (etcd's `isTxnReadonly`):
            // linearizable unless every op is a serializable Range.
            let linearizable = !txn::is_serializable(&req);
            let send_limit = self.ctx.send_limit;
            let mut resp = group
                .read(linearizable, move |r| txn::read_txn(r, &req, send_limit))
                .await
                .map_err(status)?
                .map_err(status)?;
            self.ctx.fill(&group, &mut resp.header, None);
            return Ok(Response::new(resp));
        }
        match self.ctx.write(&metadata, &group, Command::Txn(req)).await? {
            Applied::Txn(mut resp) => {
                self.ctx.fill(&group, &mut resp.header, None);
                Ok(self.ctx.respond(&group, resp))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn compact(
        &self,
        request: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        let group = self.ctx.group(request.metadata()).await?;
        let metadata = request.metadata().clone();
        let req = request.into_inner();
        check_grpc_limit(&req)?;
        validate::compact(&req).map_err(status)?;
        // Compaction is applied synchronously, so `physical` holds on return.
        match self
            .ctx
            .write(&metadata, &group, Command::Compact(req))
            .await?
        {
            Applied::Compact(mut resp) => {
                self.ctx.fill(&group, &mut resp.header, None);
                Ok(self.ctx.respond(&group, resp))
            }
            other => Err(unexpected(other)),
        }
    }
}
