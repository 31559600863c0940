//! The building blocks etcd's Lock and Election services share (etcd
//! `client/v3/concurrency`, which etcd's server runs against itself): a
//! session lease, the first- and last-created key under a prefix, and
//! `waitDeletes`, which waits until every key created before a revision
//! under a prefix is gone, watching only the immediate predecessor (no
//! thundering herd).
//!
//! Everything goes through the same paths as a client's requests: writes
//! through [`Context::write`] (so a follower cluster forwards them and
//! reads its own writes), linearizable reads, and watches on the table's
//! hub. etcd 3.4's services return the concurrency package's errors
//! unconverted, so clients see them as gRPC `Unknown` with etcd's text
//! ([`unconverted`]).

use std::sync::Arc;

use prost::Message;
use tonic::metadata::MetadataMap;
use tonic::Status;

use super::{lease, status, Context};
use crate::kv::command::{Applied, Command};
use crate::kv::range::{self, prefix_end};
use crate::kv::MvccRead;
use crate::pb::etcdserverpb::{
    compare,
    range_request::{SortOrder, SortTarget},
    request_op, response_op,
    watch_create_request::FilterType,
    Compare, DeleteRangeRequest, LeaseGrantRequest, PutRequest, RangeRequest, RangeResponse,
    RequestOp, ResponseHeader, TxnRequest, TxnResponse, WatchCreateRequest,
};
use crate::pb::mvccpb::{event::EventType, Event, KeyValue};
use crate::raft::group::RaftGroup;
use crate::raft::watch::hub::WatchStream;

/// The TTL of the lease a Lock or Campaign without one gets
/// (`concurrency.defaultSessionTTL`). The server never keeps it alive.
const SESSION_TTL: i64 = 60;

/// A table request in progress: the context, its metadata and its group.
pub(crate) struct On<'a> {
    pub ctx: &'a Arc<Context>,
    pub metadata: &'a MetadataMap,
    pub group: Arc<RaftGroup>,
}

/// An error as etcd 3.4's Lock and Election servers return it: whatever
/// its kind, gRPC `Unknown` with the message.
pub(crate) fn unconverted(s: Status) -> Status {
    Status::unknown(s.message().to_string())
}

/// The key of a session: `prefix` and the lease id as Go's `%x` prints an
/// int64 (lowercase, no padding, a minus sign for negative ids).
pub(crate) fn session_key(prefix: &[u8], lease: i64) -> Vec<u8> {
    let hex = if lease < 0 {
        format!("-{:x}", lease.unsigned_abs())
    } else {
        format!("{lease:x}")
    };
    [prefix, hex.as_bytes()].concat()
}

/// `name/`: the prefix of a lock's or an election's keys.
pub(crate) fn key_prefix(name: &[u8]) -> Vec<u8> {
    [name, b"/"].concat()
}

impl On<'_> {
    /// The call's session lease: the one given, or a new one of
    /// [`SESSION_TTL`] that nobody keeps alive (etcd orphans it).
    pub async fn session(&self, lease: i64) -> Result<i64, Status> {
        if lease != 0 {
            return Ok(lease);
        }
        let req = LeaseGrantRequest {
            ttl: SESSION_TTL,
            id: 0,
        };
        Ok(lease::grant(self.ctx, self.metadata, &self.group, req)
            .await?
            .id)
    }

    pub async fn write(&self, cmd: Command) -> Result<Applied, Status> {
        self.ctx.write(self.metadata, &self.group, cmd).await
    }

    pub async fn txn(&self, req: TxnRequest) -> Result<TxnResponse, Status> {
        match self.write(Command::Txn(req)).await? {
            Applied::Txn(resp) => Ok(resp),
            other => Err(Status::internal(format!(
                "armada: unexpected apply result {other:?}"
            ))),
        }
    }

    /// A linearizable Range, as the concurrency package's Gets are.
    pub async fn range(&self, req: RangeRequest) -> Result<RangeResponse, Status> {
        let send_limit = self.ctx.send_limit;
        let mut resp = self
            .group
            .read(true, move |r| {
                let state = r.revision_state()?;
                let mut budget = range::SendBudget::new(send_limit);
                range::range(r, &req, state.current, state.compacted, &mut budget)
            })
            .await
            .map_err(status)?;
        self.ctx.fill(&self.group, &mut resp.header, None);
        Ok(resp)
    }

    /// Runs `cmd` in the background when the returned guard is dropped
    /// without [`OnDrop::disarm`]: the clean-up of a call that failed or
    /// whose client gave up (its future is dropped mid-wait).
    pub(crate) fn on_drop(&self, cmd: Command) -> OnDrop {
        OnDrop(Some((
            self.ctx.clone(),
            self.metadata.clone(),
            self.group.clone(),
            cmd,
        )))
    }

    /// Waits until no key under `prefix` has a create revision at or
    /// below `max_create` (the waiters' gauge counts it meanwhile), and
    /// returns the header of the last Get.
    pub(crate) async fn wait_deletes(
        &self,
        prefix: &[u8],
        max_create: i64,
    ) -> Result<ResponseHeader, Status> {
        let waiters = &self.ctx.metrics.lock_waiters;
        waiters.inc();
        let waited = self.wait_deletes_uncounted(prefix, max_create).await;
        waiters.dec();
        waited
    }

    async fn wait_deletes_uncounted(
        &self,
        prefix: &[u8],
        max_create: i64,
    ) -> Result<ResponseHeader, Status> {
        loop {
            let mut req = last_created(prefix);
            req.max_create_revision = max_create;
            let resp = self.range(req).await?;
            let header = resp.header.unwrap_or_default();
            let Some(last) = resp.kvs.into_iter().next() else {
                return Ok(header);
            };
            let mut watch = self
                .watch(&last.key, &[], header.revision, Some(FilterType::Noput))
                .await?;
            // With PUTs filtered out, any event is the key's deletion.
            watch.next().await?;
        }
    }

    /// Watches `key` (to `range_end`) from `start`, without `filter`'s events.
    pub async fn watch(
        &self,
        key: &[u8],
        range_end: &[u8],
        start: i64,
        filter: Option<FilterType>,
    ) -> Result<KeyWatch, Status> {
        let table = self.ctx.table_name(self.metadata)?;
        let hub = self.ctx.registry.watch_hub(&table).await.map_err(status)?;
        let stream = hub.open_stream();
        hub.create(
            stream.id,
            &WatchCreateRequest {
                key: key.to_vec(),
                range_end: range_end.to_vec(),
                start_revision: start,
                filters: filter.into_iter().map(|f| f as i32).collect(),
                ..Default::default()
            },
        );
        Ok(KeyWatch { stream })
    }
}

/// See [`On::on_drop`].
pub(crate) struct OnDrop(Option<(Arc<Context>, MetadataMap, Arc<RaftGroup>, Command)>);

impl OnDrop {
    pub fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for OnDrop {
    fn drop(&mut self) {
        if let Some((ctx, metadata, group, cmd)) = self.0.take() {
            tokio::spawn(async move {
                if let Err(e) = ctx.write(&metadata, &group, cmd).await {
                    tracing::debug!(table = %group.table, "cleaning up after a lock or campaign: {e}");
                }
            });
        }
    }
}

/// `create_revision(key) == rev` (0: the key is absent).
pub(crate) fn created_at(key: &[u8], rev: i64) -> Compare {
    Compare {
        result: compare::CompareResult::Equal as i32,
        target: compare::CompareTarget::Create as i32,
        key: key.to_vec(),
        target_union: Some(compare::TargetUnion::CreateRevision(rev)),
        ..Default::default()
    }
}

pub(crate) fn put_op(key: &[u8], value: &[u8], lease: i64) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            lease,
            ..Default::default()
        })),
    }
}

pub(crate) fn range_op(req: RangeRequest) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(req)),
    }
}

pub(crate) fn get_op(key: &[u8]) -> RequestOp {
    range_op(RangeRequest {
        key: key.to_vec(),
        ..Default::default()
    })
}

pub(crate) fn delete_op(key: &[u8]) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestDeleteRange(
            DeleteRangeRequest {
                key: key.to_vec(),
                ..Default::default()
            },
        )),
    }
}

/// The first key-value of a txn's `i`-th response, if it is a Range.
pub(crate) fn ranged(resp: &TxnResponse, i: usize) -> Option<KeyValue> {
    match resp.responses.get(i)?.response.as_ref()? {
        response_op::Response::ResponseRange(r) => r.kvs.first().cloned(),
        _ => None,
    }
}

/// A Get of the oldest key under `prefix` (`WithFirstCreate`).
pub(crate) fn first_created(prefix: &[u8]) -> RangeRequest {
    by_create(prefix, SortOrder::Ascend)
}

/// A Get of the newest key under `prefix` (`WithLastCreate`).
fn last_created(prefix: &[u8]) -> RangeRequest {
    by_create(prefix, SortOrder::Descend)
}

fn by_create(prefix: &[u8], order: SortOrder) -> RangeRequest {
    RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        limit: 1,
        sort_order: order as i32,
        sort_target: SortTarget::Create as i32,
        ..Default::default()
    }
}

/// One watcher on the table's hub; dropping it cancels the watcher.
pub(crate) struct KeyWatch {
    stream: WatchStream,
}

/// One response's events, with its header revision.
pub(crate) struct Batch {
    pub revision: i64,
    pub events: Vec<Event>,
}

impl KeyWatch {
    /// The next response that carries events. A watcher that ends
    /// (compaction, table deleted, server stopping) is an error, as the
    /// concurrency package's "lost watcher".
    pub async fn next(&mut self) -> Result<Batch, Status> {
        loop {
            let Some(out) = self.stream.queue.pop().await else {
                return Err(Status::unavailable("armada: the watch ended"));
            };
            if out.head.canceled {
                let reason = match out.head.compact_revision {
                    0 => out.head.cancel_reason.clone(),
                    _ => crate::error::EtcdError::Compacted.message().to_string(),
                };
                return Err(Status::unknown(reason));
            }
            if out.events.is_empty() {
                continue; // created, or a progress notification
            }
            let events = (out.events.iter())
                .map(|raw| Event::decode(&raw[..]))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Status::internal(format!("armada: watch event: {e}")))?;
            let revision = out.head.header.as_ref().map_or(0, |h| h.revision);
            return Ok(Batch { revision, events });
        }
    }
}

/// True for a DELETE event.
pub(crate) fn is_delete(e: &Event) -> bool {
    e.r#type == EventType::Delete as i32
}

/// The key-value of an event (present in every event etcd sends).
pub(crate) fn event_kv(e: Event) -> KeyValue {
    e.kv.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_keys_print_like_go() {
        assert_eq!(session_key(b"l/", 0x694d), b"l/694d");
        assert_eq!(session_key(b"l/", -5), b"l/-5");
        assert_eq!(session_key(b"l/", i64::MIN), b"l/-8000000000000000");
    }
}
