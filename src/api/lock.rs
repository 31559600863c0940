//! etcd's Lock service (`v3lockpb.Lock`; etcd `v3lock/lock.go` running
//! `concurrency.Mutex`), as etcd 3.4 serves it.
//!
//! Lock puts `name/<lease hex>` with the lease if it is absent (a second
//! Lock with the same lease re-acquires: a no-op), then waits until every
//! key under `name/` created before its own is deleted. The holder is the
//! oldest key; the lock passes on when the holder unlocks or its lease
//! expires. If the wait fails (the client gave up), the key is deleted.
//! Like etcd 3.4, a waiter whose own lease expired while waiting still
//! answers with its key once its predecessors are gone.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::concurrency::{
    created_at, first_created, get_op, key_prefix, put_op, range_op, ranged, session_key,
    unconverted, On,
};
use super::Context;
use crate::kv::command::{Applied, Command};
use crate::pb::etcdserverpb::{DeleteRangeRequest, TxnRequest};
use crate::pb::v3lockpb::lock_server::Lock;
use crate::pb::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};

pub(crate) struct LockService {
    pub ctx: Arc<Context>,
}

async fn lock(on: &On<'_>, req: LockRequest) -> Result<LockResponse, Status> {
    let lease = on.session(req.lease).await?;
    let prefix = key_prefix(&req.name);
    let key = session_key(&prefix, lease);
    let holder = range_op(first_created(&prefix));
    let mut resp = on
        .txn(TxnRequest {
            compare: vec![created_at(&key, 0)],
            success: vec![put_op(&key, b"", lease), holder.clone()],
            failure: vec![get_op(&key), holder],
        })
        .await?;
    on.ctx.fill(&on.group, &mut resp.header, None);
    // Our key's create revision: this txn's, or that of the key we hold.
    let mut my_rev = resp.header.as_ref().map_or(0, |h| h.revision);
    if !resp.succeeded {
        my_rev = ranged(&resp, 0).map_or(my_rev, |kv| kv.create_revision);
    }
    if ranged(&resp, 1).is_none_or(|kv| kv.create_revision == my_rev) {
        return Ok(LockResponse {
            header: resp.header,
            key,
        });
    }
    // If the wait fails or the client gives up, the key goes.
    let release = on.on_drop(Command::DeleteRange(DeleteRangeRequest {
        key: key.clone(),
        ..Default::default()
    }));
    let header = on.wait_deletes(&prefix, my_rev - 1).await?;
    release.disarm();
    Ok(LockResponse {
        header: Some(header),
        key,
    })
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(&self, request: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        let metadata = request.metadata().clone();
        let on = On {
            ctx: &self.ctx,
            metadata: &metadata,
            group: self.ctx.group(&metadata).await?,
        };
        lock(&on, request.into_inner())
            .await
            .map(Response::new)
            .map_err(unconverted)
    }

    async fn unlock(
        &self,
        request: Request<UnlockRequest>,
    ) -> Result<Response<UnlockResponse>, Status> {
        let metadata = request.metadata().clone();
        let on = On {
            ctx: &self.ctx,
            metadata: &metadata,
            group: self.ctx.group(&metadata).await?,
        };
        let req = DeleteRangeRequest {
            key: request.into_inner().key,
            ..Default::default()
        };
        match on
            .write(Command::DeleteRange(req))
            .await
            .map_err(unconverted)?
        {
            Applied::DeleteRange(mut resp) => {
                on.ctx.fill(&on.group, &mut resp.header, None);
                Ok(Response::new(UnlockResponse {
                    header: resp.header,
                }))
            }
            other => Err(Status::internal(format!(
                "armada: unexpected apply result {other:?}"
            ))),
        }
    }
}
