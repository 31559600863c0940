//! Applying commands to a table's keyspace (etcd `mvcc/kvstore_txn.go`
//! `storeTxnWrite` and `etcdserver/apply.go`).
//!
//! [`TxnWrite`] is one write request in progress: it starts at the store
//! revision `begin`, every change gets sub-revision `changes`, reads see the
//! request's own earlier changes, and the store revision moves to `begin + 1`
//! only if something changed. [`apply`] is deterministic; an etcd error is a
//! result, and only storage failures are `Err`.
//!
//! Every change also becomes a watch event (etcd `watchable_store_txn.go`):
//! a PUT carries the new version and the version it replaced, a DELETE only
//! the key and the deletion revision plus the deleted version. They are
//! handed out only for a request that succeeded, so a failed Txn whose
//! writes are rolled back produces none.

use super::command::{Applied, Command, CommandResult};
use super::range::{self, KeyRange, SendBudget};
use super::{alarm, lease, txn, MvccRead, MvccWrite, RevisionState};
use crate::error::{EtcdError, Result};
use crate::pb::etcdserverpb::{
    AlarmRequest, AlarmResponse, CompactionRequest, CompactionResponse, DeleteRangeRequest,
    DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, ResponseHeader,
};
use crate::pb::mvccpb::{event::EventType, Event, KeyValue};
use prost::Message;

/// Applies one command and records in `changes` its revision and watch
/// events (all at the command's one revision, in sub-revision order). The
/// caller commits or aborts the surrounding storage transaction; a `Txn`
/// that fails must be rolled back by the caller, since it may fail after
/// some of its writes (see [`needs_rollback_scope`]).
///
/// `send_limit` bounds the response (gRPC's send limit): a request whose
/// response would be larger is still applied, as etcd applies it before
/// failing to send its answer, but its response is not built: the result is
/// [`Applied::ResponseTooLarge`].
pub fn apply(
    store: &mut dyn MvccWrite,
    cmd: &Command,
    changes: &mut Changes,
    send_limit: u64,
) -> Result<CommandResult> {
    if let Some(refused) = alarm::refuses(&store.alarms()?, cmd) {
        return Ok(Err(refused));
    }
    let mut w = TxnWrite::begin(store, send_limit)?;
    let result = match cmd {
        Command::Put(req) => w.standalone_put(req).map(|r| r.map(Applied::Put)),
        Command::DeleteRange(req) => w.delete_range(req).map(|r| Ok(Applied::DeleteRange(r))),
        Command::Txn(req) => txn::apply_txn(&mut w, req).map(|r| r.map(Applied::Txn)),
        Command::Compact(req) => w.compact(req).map(|r| r.map(Applied::Compact)),
        Command::LeaseGrant(req) => lease::grant(&mut w, req).map(|r| r.map(Applied::LeaseGrant)),
        Command::LeaseRevoke(req) => {
            lease::revoke(&mut w, req).map(|r| r.map(Applied::LeaseRevoke))
        }
        Command::LeaseCheckpoint(req) => {
            lease::checkpoint(&mut w, req).map(|r| Ok(Applied::LeaseCheckpoint(r)))
        }
        Command::Alarm(req) => w.alarm(req).map(|r| Ok(Applied::Alarm(r))),
    }?;
    let result = match result {
        Ok(applied) => match w.budget.check(applied.encoded_len()) {
            Ok(()) => Ok(applied),
            Err(EtcdError::ResponseTooLarge { size, limit }) => {
                Ok(Applied::ResponseTooLarge { size, limit })
            }
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    if result.is_ok() {
        *changes = w.finish()?;
    }
    Ok(result)
}

/// The most bytes of watch events one write request holds while it
/// applies (the feed's own buffer is as large). Past it the request's
/// events are dropped: watchers read that revision back from the store, as
/// etcd's do for a revision they fell behind on, so a DeleteRange of a huge
/// range never holds every deleted value in memory a second time.
pub const MAX_HELD_EVENT_BYTES: usize = 32 << 20;

/// What a write request changed, for watchers.
#[derive(Debug, Default, PartialEq)]
pub struct Changes {
    /// The request's revision, if it changed anything.
    pub revision: Option<i64>,
    /// Its watch events in sub-revision order, unless `dropped`.
    pub events: Vec<Event>,
    /// The events passed [`MAX_HELD_EVENT_BYTES`] and were not kept.
    pub dropped: bool,
}

/// How many keys a DeleteRange reads at a time: a range of any size is
/// deleted holding only this many versions besides its response.
const DELETE_BATCH: usize = 1000;

/// Commands that can fail after writing, so the caller must run them in a
/// scope it can roll back.
pub(crate) fn needs_rollback_scope(cmd: &Command) -> bool {
    matches!(cmd, Command::Txn(_))
}

/// A lease id to attach a key to, if the table has that lease.
fn known_lease(store: &dyn MvccWrite, id: i64) -> Result<bool> {
    Ok(id == 0 || store.lease(id)?.is_some())
}

/// One write request in progress.
pub(crate) struct TxnWrite<'a> {
    store: &'a mut dyn MvccWrite,
    begin: RevisionState,
    changes: i64,
    events: Vec<Event>,
    /// The bytes of `events` so far, and whether they passed the cap.
    event_bytes: usize,
    events_dropped: bool,
    /// What the request's response may still grow by.
    budget: SendBudget,
}

impl<'a> TxnWrite<'a> {
    pub(crate) fn begin(store: &'a mut dyn MvccWrite, send_limit: u64) -> Result<TxnWrite<'a>> {
        let begin = store.revision_state()?;
        Ok(TxnWrite {
            store,
            begin,
            changes: 0,
            events: Vec::new(),
            event_bytes: 0,
            events_dropped: false,
            budget: SendBudget::new(send_limit),
        })
    }

    /// The state before this request.
    pub(crate) fn begin_state(&self) -> RevisionState {
        self.begin
    }

    /// The revision reads see: the request's own revision once it changed something.
    pub(crate) fn view_rev(&self) -> i64 {
        self.begin.current + i64::from(self.changes > 0)
    }

    fn write_rev(&self) -> i64 {
        self.begin.current + 1
    }

    /// The header revision of the whole request.
    pub(crate) fn header_rev(&self) -> i64 {
        self.view_rev()
    }

    pub fn store(&self) -> &dyn MvccWrite {
        &*self.store
    }

    /// For changes that are not key versions (leases, alarms).
    pub(crate) fn store_mut(&mut self) -> &mut dyn MvccWrite {
        &mut *self.store
    }

    /// A Range inside the request; its kvs count against the response's budget.
    pub fn range(&mut self, req: &RangeRequest) -> Result<RangeResponse> {
        let view_rev = self.view_rev();
        range::range_within(
            &*self.store,
            req,
            view_rev,
            self.begin.compacted,
            &mut self.budget,
        )
    }

    fn get(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        self.store.get(key, self.view_rev())
    }

    /// A Put outside a txn: the lease is checked first (etcd `applyPut`).
    fn standalone_put(&mut self, req: &PutRequest) -> Result<Result<PutResponse, EtcdError>> {
        if !known_lease(&*self.store, req.lease)? {
            return Ok(Err(EtcdError::LeaseNotFound));
        }
        self.put(req)
    }

    /// A Put inside a write request. The key moves to the put's lease (or to
    /// none), unless `ignore_lease` keeps the one it has.
    pub fn put(&mut self, req: &PutRequest) -> Result<Result<PutResponse, EtcdError>> {
        let existing = self.get(&req.key)?;
        if (req.ignore_value || req.ignore_lease) && existing.is_none() {
            return Ok(Err(EtcdError::KeyNotFound));
        }
        let (value, lease) = match &existing {
            Some(p) => (
                if req.ignore_value {
                    p.value.clone()
                } else {
                    req.value.clone()
                },
                if req.ignore_lease { p.lease } else { req.lease },
            ),
            None => (req.value.clone(), req.lease),
        };
        if !known_lease(&*self.store, lease)? {
            return Ok(Err(EtcdError::LeaseNotFound));
        }
        let previous_lease = existing.as_ref().map_or(0, |kv| kv.lease);
        if previous_lease != lease {
            if previous_lease != 0 {
                self.store.set_attached(previous_lease, &req.key, false)?;
            }
            if lease != 0 {
                self.store.set_attached(lease, &req.key, true)?;
            }
        }
        let rev = self.write_rev();
        let (create_revision, version) = match &existing {
            Some(kv) => (kv.create_revision, kv.version + 1),
            None => (rev, 1),
        };
        let kv = KeyValue {
            key: req.key.clone(),
            create_revision,
            mod_revision: rev,
            version,
            value,
            lease,
        };
        self.store.put(&kv, self.changes)?;
        self.changes += 1;
        let prev_kv = if req.prev_kv { existing.clone() } else { None };
        if let Some(prev) = &prev_kv {
            self.budget.charge(prev);
        }
        self.record(Event {
            r#type: EventType::Put as i32,
            kv: Some(kv),
            prev_kv: existing,
        });
        Ok(Ok(PutResponse {
            header: Some(ResponseHeader {
                revision: rev,
                ..Default::default()
            }),
            prev_kv,
        }))
    }

    /// Deletes every key live in the range, [`DELETE_BATCH`] keys at a
    /// time, all read at the revision the request sees at its start (as one
    /// scan would). The deleted versions are kept for the response only
    /// while they fit its budget.
    pub fn delete_range(&mut self, req: &DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        let rev = self.view_rev();
        let mut keys = KeyRange::new(&req.key, &req.range_end);
        let (mut deleted, mut prev_kvs) = (0i64, Vec::new());
        while !keys.is_empty() {
            let mut batch = Vec::new();
            self.store.scan(&keys, rev, &mut |kv| {
                batch.push(kv);
                batch.len() < DELETE_BATCH
            })?;
            // Past a full batch, the next one starts right after its last key.
            let next = (batch.len() == DELETE_BATCH)
                .then(|| batch.last().map(|kv| [&kv.key[..], &[0]].concat()))
                .flatten();
            for kv in batch {
                self.delete(&kv)?;
                deleted += 1;
                if req.prev_kv {
                    if self.budget.charge(&kv) {
                        prev_kvs.push(kv);
                    } else {
                        prev_kvs = Vec::new();
                    }
                }
            }
            match (&keys, next) {
                (KeyRange::Span { end, .. }, Some(start)) => {
                    let end = end.clone();
                    keys = KeyRange::Span { start, end };
                }
                _ => break,
            }
        }
        Ok(DeleteRangeResponse {
            header: Some(ResponseHeader {
                revision: self.view_rev(),
                ..Default::default()
            }),
            deleted,
            prev_kvs,
        })
    }

    /// Deletes the live version `kv`, detaching it from its lease.
    fn delete(&mut self, kv: &KeyValue) -> Result<()> {
        let rev = self.write_rev();
        if kv.lease != 0 {
            self.store.set_attached(kv.lease, &kv.key, false)?;
        }
        self.store.tombstone(&kv.key, rev, self.changes)?;
        self.changes += 1;
        self.record(Event {
            r#type: EventType::Delete as i32,
            kv: Some(KeyValue {
                key: kv.key.clone(),
                mod_revision: rev,
                ..Default::default()
            }),
            prev_kv: Some(kv.clone()),
        });
        Ok(())
    }

    /// Deletes `key` if it is live (a lease revoke).
    pub(crate) fn delete_key(&mut self, key: &[u8]) -> Result<()> {
        match self.get(key)? {
            Some(kv) => self.delete(&kv),
            None => Ok(()),
        }
    }

    fn alarm(&mut self, req: &AlarmRequest) -> Result<AlarmResponse> {
        let mut alarms = self.store.alarms()?;
        let before = alarms.clone();
        let resp = alarm::apply(&mut alarms, req);
        if alarms != before {
            self.store.set_alarms(&alarms)?;
        }
        Ok(resp)
    }

    fn compact(
        &mut self,
        req: &CompactionRequest,
    ) -> Result<Result<CompactionResponse, EtcdError>> {
        let state = self.begin;
        if req.revision <= state.compacted {
            return Ok(Err(EtcdError::Compacted));
        }
        if req.revision > state.current {
            return Ok(Err(EtcdError::FutureRev));
        }
        self.store.compact(state.compacted, req.revision)?;
        self.store.set_revision_state(RevisionState {
            compacted: req.revision,
            ..state
        })?;
        self.begin.compacted = req.revision;
        Ok(Ok(CompactionResponse {
            header: Some(ResponseHeader {
                revision: state.current,
                ..Default::default()
            }),
        }))
    }

    /// Moves the store revision if this request changed anything, and
    /// hands out the request's watch events.
    fn finish(self) -> Result<Changes> {
        if self.changes == 0 {
            return Ok(Changes::default());
        }
        self.store.set_revision_state(RevisionState {
            current: self.write_rev(),
            ..self.begin
        })?;
        Ok(Changes {
            revision: Some(self.write_rev()),
            events: self.events,
            dropped: self.events_dropped,
        })
    }

    /// Keeps a watch event of this request, up to [`MAX_HELD_EVENT_BYTES`].
    fn record(&mut self, event: Event) {
        if self.events_dropped {
            return;
        }
        self.event_bytes += event.encoded_len();
        if self.event_bytes > MAX_HELD_EVENT_BYTES {
            self.events_dropped = true;
            self.events = Vec::new();
            return;
        }
        self.events.push(event);
    }
}

/// A txn's ops run through the write request.
impl txn::Ops for TxnWrite<'_> {
    fn store(&self) -> &dyn MvccRead {
        TxnWrite::store(self)
    }
    fn begin_state(&self) -> RevisionState {
        TxnWrite::begin_state(self)
    }
    fn header_rev(&self) -> i64 {
        TxnWrite::header_rev(self)
    }
    fn range(&mut self, req: &RangeRequest) -> Result<RangeResponse> {
        TxnWrite::range(self, req)
    }
    fn put(&mut self, req: &PutRequest) -> Result<Result<PutResponse, EtcdError>> {
        TxnWrite::put(self, req)
    }
    fn delete_range(&mut self, req: &DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        TxnWrite::delete_range(self, req)
    }
}
