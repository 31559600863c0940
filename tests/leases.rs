//! Leases, Lock and Election across real `armada` processes on loopback.
//!
//! - A lease kept alive through a raft follower outlives the kill -9 of the
//!   table's raft leader, and once its keep-alives stop all its keys go in
//!   one revision, the same on every member.
//! - With lease checkpointing, a new raft leader continues a lease from
//!   its checkpointed remaining TTL instead of granting the full TTL again.
//! - On a follower cluster, Grant, Put with the lease, KeepAlive,
//!   TimeToLive, Leases and Revoke work through the follower (read-your-
//!   writes included), and expiry, decided by the leader cluster, deletes
//!   the keys at the same revision on both clusters.
//! - Lock excludes clients on different members, and passes on to a
//!   waiter on another member when the holder's member dies with the
//!   holder's keep-alives.
//! - Election: a leader campaigned on one member is seen on another, and a
//!   campaigner waiting on a third wins when it resigns.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use armada::kv::range::prefix_end;
use armada::pb::etcdserverpb::kv_client::KvClient;
use armada::pb::etcdserverpb::lease_client::LeaseClient;
use armada::pb::etcdserverpb::{
    compare, request_op, Compare, LeaseGrantRequest, LeaseKeepAliveRequest, LeaseLeasesRequest,
    LeaseRevokeRequest, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse, PutRequest, RangeRequest,
    RequestOp, TxnRequest, WatchCreateRequest,
};
use armada::pb::mvccpb::event::EventType;
use armada::pb::v3electionpb::election_client::ElectionClient;
use armada::pb::v3electionpb::{CampaignRequest, LeaderRequest, ProclaimRequest, ResignRequest};
use armada::pb::v3lockpb::lock_client::LockClient;
use armada::pb::v3lockpb::{LockRequest, LockResponse, UnlockRequest};
use common::replication::{channel, start_pair, wait_same};
use common::watch::Recorder;
use common::{wait_until, Cluster};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

/// How long any one condition is waited for before the test fails.
const PATIENCE: Duration = Duration::from_secs(60);

async fn grant(ch: &Channel, ttl: i64) -> i64 {
    let resp = LeaseClient::new(ch.clone())
        .lease_grant(LeaseGrantRequest { ttl, id: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.ttl, ttl, "granted TTL");
    assert!(resp.id > 0 && resp.error.is_empty(), "{resp:?}");
    resp.id
}

/// Puts `key` attached to `lease`; returns the revision.
async fn put(ch: &Channel, key: &str, lease: i64) -> i64 {
    let req = PutRequest {
        key: key.into(),
        value: format!("value of {key}").into(),
        lease,
        ..Default::default()
    };
    let resp = KvClient::new(ch.clone()).put(req).await.unwrap();
    resp.into_inner().header.unwrap().revision
}

/// (header revision, keys) under `prefix` as this node has applied them
/// (a serializable read), or as the cluster has (linearizable).
async fn range(ch: &Channel, prefix: &str, serializable: bool) -> (i64, Vec<String>) {
    let resp = KvClient::new(ch.clone())
        .range(RangeRequest {
            key: prefix.into(),
            range_end: prefix_end(prefix.as_bytes()),
            serializable,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let keys = resp.kvs.into_iter();
    let keys = keys.map(|kv| String::from_utf8(kv.key).unwrap());
    (resp.header.unwrap().revision, keys.collect())
}

/// Waits until this node has applied `revision` and has no key under
/// `prefix`; fails if it moved past `revision` (nothing else writes).
async fn wait_deleted_at(ch: &Channel, prefix: &str, revision: i64) {
    let (rev, keys) = wait_until(
        &format!("a node applies revision {revision}"),
        PATIENCE,
        async || {
            let (rev, keys) = range(ch, prefix, true).await;
            (rev >= revision).then_some((rev, keys))
        },
    )
    .await;
    assert_eq!(rev, revision, "a write after the expiry");
    assert!(keys.is_empty(), "keys left after the expiry: {keys:?}");
}

async fn time_to_live(ch: &Channel, id: i64) -> LeaseTimeToLiveResponse {
    LeaseClient::new(ch.clone())
        .lease_time_to_live(LeaseTimeToLiveRequest { id, keys: true })
        .await
        .unwrap()
        .into_inner()
}

/// The lease ids `LeaseLeases` lists on this node.
async fn leases(ch: &Channel) -> Vec<i64> {
    let resp = LeaseClient::new(ch.clone())
        .lease_leases(LeaseLeasesRequest {})
        .await
        .unwrap()
        .into_inner();
    resp.leases.into_iter().map(|l| l.id).collect()
}

fn keys_of(ttl: &LeaseTimeToLiveResponse) -> Vec<String> {
    let mut keys: Vec<String> = (ttl.keys.iter())
        .map(|k| String::from_utf8(k.clone()).unwrap())
        .collect();
    keys.sort();
    keys
}

fn watch_prefix(prefix: &str, start_revision: i64) -> WatchCreateRequest {
    WatchCreateRequest {
        key: prefix.into(),
        range_end: prefix_end(prefix.as_bytes()),
        start_revision,
        ..Default::default()
    }
}

/// Waits until `watch` saw events, and checks they are the deletion of
/// exactly `keys` at one revision, in one response; returns the revision.
async fn one_revision_of_deletes(watch: &Recorder, keys: &[String]) -> i64 {
    wait_until("the expiry's events", PATIENCE, async || {
        (!watch.revisions().is_empty()).then_some(())
    })
    .await;
    let with_events: Vec<_> = (watch.responses().into_iter())
        .filter(|r| !r.events.is_empty())
        .collect();
    assert_eq!(with_events.len(), 1, "one response: {with_events:?}");
    let revisions = watch.revisions();
    let [(revision, events)] = &revisions[..] else {
        panic!("deletes at several revisions: {revisions:?}");
    };
    assert!(events.iter().all(|e| e.r#type == EventType::Delete as i32));
    let deleted: Vec<String> = (events.iter())
        .map(|e| String::from_utf8(e.kv.as_ref().unwrap().key.clone()).unwrap())
        .collect();
    assert_eq!(deleted, keys, "deleted keys, in key order");
    *revision
}

/// What one keep-alive request got.
#[derive(Debug, Clone)]
enum Outcome {
    /// Renewed: the TTL it answered.
    Renewed(i64),
    /// TTL 0: the lease is gone.
    Lost,
    /// The stream failed, ended or stalled; it is opened again.
    Failed(String),
}

/// A client's keep-alive loop for one lease on one node: one request per
/// interval on a stream, re-opened after any failure, as etcd clients do.
struct KeepAlive {
    outcomes: Arc<Mutex<Vec<(Instant, Outcome)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl KeepAlive {
    fn start(ch: Channel, id: i64, every: Duration) -> KeepAlive {
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let log = outcomes.clone();
        let record = move |o: Outcome| log.lock().unwrap().push((Instant::now(), o));
        let task = tokio::spawn(async move {
            loop {
                let (tx, rx) = tokio::sync::mpsc::channel(1);
                let opened = LeaseClient::new(ch.clone())
                    .lease_keep_alive(ReceiverStream::new(rx))
                    .await;
                match opened {
                    Ok(answers) => {
                        let mut answers = answers.into_inner();
                        while tx.send(LeaseKeepAliveRequest { id }).await.is_ok() {
                            let next =
                                tokio::time::timeout(Duration::from_secs(5), answers.message());
                            match next.await {
                                Ok(Ok(Some(r))) if r.ttl > 0 => record(Outcome::Renewed(r.ttl)),
                                Ok(Ok(Some(_))) => record(Outcome::Lost),
                                Ok(Ok(None)) => {
                                    record(Outcome::Failed("stream ended".into()));
                                    break;
                                }
                                Ok(Err(status)) => {
                                    record(Outcome::Failed(format!("{status:?}")));
                                    break;
                                }
                                Err(_) => {
                                    record(Outcome::Failed("no answer within 5 s".into()));
                                    break;
                                }
                            }
                            tokio::time::sleep(every).await;
                        }
                    }
                    Err(status) => record(Outcome::Failed(format!("opening: {status:?}"))),
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        KeepAlive { outcomes, task }
    }

    fn outcomes(&self) -> Vec<(Instant, Outcome)> {
        self.outcomes.lock().unwrap().clone()
    }

    /// Renewals answered at or after `since`.
    fn renewals_since(&self, since: Instant) -> usize {
        (self.outcomes().iter())
            .filter(|(at, o)| *at >= since && matches!(o, Outcome::Renewed(_)))
            .count()
    }

    /// Waits until a renewal is answered at or after `at`.
    async fn wait_renewed_after(&self, at: Instant) {
        wait_until("a keep-alive renewal", PATIENCE, async || {
            (self.renewals_since(at) > 0).then_some(())
        })
        .await;
    }

    /// Fails the test if any answer said the lease was gone.
    fn assert_never_lost(&self) {
        let outcomes = self.outcomes();
        assert!(
            !outcomes.iter().any(|(_, o)| matches!(o, Outcome::Lost)),
            "the lease was lost while kept alive: {outcomes:?}"
        );
    }

    /// Stops sending: the stream is dropped.
    async fn stop(mut self) -> Vec<(Instant, Outcome)> {
        self.task.abort();
        let _ = (&mut self.task).await;
        self.outcomes()
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_alive_lease_survives_the_raft_leader_then_expires_in_one_revision() {
    const TTL: i64 = 4;
    let mut cluster = Cluster::start(3, &[]);
    let leader = cluster.wait_leader().await;
    let others: Vec<usize> = (1..=3).filter(|id| *id != leader).collect();
    let (via, watcher) = (others[0], others[1]);
    let ch = cluster.channel(via).await;
    let id = grant(&ch, TTL).await;
    let keys: Vec<String> = (0..5).map(|i| format!("fo/{i}")).collect();
    let mut last = 0;
    for key in &keys {
        last = put(&ch, key, id).await;
    }
    let watch = Recorder::start(
        &cluster.channel(watcher).await,
        None,
        watch_prefix("fo/", last + 1),
    )
    .await;

    // Kept alive through a raft follower, which forwards to the raft leader.
    let keep = KeepAlive::start(ch.clone(), id, Duration::from_secs(1));
    let started = Instant::now();
    wait_until("two renewals", PATIENCE, async || {
        (keep.renewals_since(started) >= 2).then_some(())
    })
    .await;
    cluster.kill9(leader);
    let killed = Instant::now();
    let new_leader = cluster.wait_leader().await;
    assert_ne!(new_leader, leader);
    // Renewed by the new raft leader twice the TTL after the old one died:
    // without renewals reaching it, the lease would be gone by then.
    keep.wait_renewed_after(killed + Duration::from_secs(2 * TTL as u64))
        .await;
    keep.assert_never_lost();
    let outcomes = keep.outcomes();
    let failed_at = (outcomes.iter())
        .filter(|(_, o)| matches!(o, Outcome::Failed(_)))
        .map(|(at, _)| *at)
        .max();
    if let Some(at) = failed_at {
        // Errors only during the election, and the stream re-opened.
        assert!(keep.renewals_since(at) > 0, "{outcomes:?}");
    }
    let failures: Vec<&str> = (outcomes.iter())
        .filter_map(|(_, o)| match o {
            Outcome::Failed(why) => Some(why.as_str()),
            _ => None,
        })
        .collect();
    eprintln!("keep-alive failures across the failover: {failures:?}");
    for member in [via, watcher] {
        let ch = cluster.channel(member).await;
        assert_eq!(range(&ch, "fo/", false).await.1, keys, "node {member}");
        let ttl = time_to_live(&ch, id).await;
        assert!(ttl.ttl > 0 && ttl.ttl <= TTL, "{ttl:?}");
        assert_eq!((ttl.granted_ttl, keys_of(&ttl)), (TTL, keys.clone()));
    }

    // Keep-alives stop: the lease expires, its keys go in one revision.
    keep.stop().await;
    let revision = one_revision_of_deletes(&watch, &keys).await;
    assert_eq!(revision, last + 1, "the expiry is the next write");
    for member in [via, watcher] {
        let ch = cluster.channel(member).await;
        wait_deleted_at(&ch, "fo/", revision).await;
        assert_eq!(time_to_live(&ch, id).await.ttl, -1, "node {member}");
        assert!(!leases(&ch).await.contains(&id), "node {member}");
    }
    // The old raft leader comes back and agrees.
    cluster.restart(leader);
    let ch = cluster.channel(leader).await;
    wait_deleted_at(&ch, "fo/", revision).await;
    assert!(!leases(&ch).await.contains(&id));
    assert_eq!(cluster.wait_converged().await.0, revision);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpointed_lease_keeps_its_remaining_ttl_across_a_raft_leader_change() {
    // Without checkpoints a new raft leader grants the full TTL again (plus
    // an election timeout); with them it continues from the last stored
    // remaining TTL.
    const TTL: i64 = 30;
    const AGED: i64 = 8;
    let mut cluster = Cluster::start(3, &["--lease.checkpoint-interval=1s"]);
    let leader = cluster.wait_leader().await;
    let via = (1..=3).find(|id| *id != leader).unwrap();
    let ch = cluster.channel(via).await;
    let id = grant(&ch, TTL).await;
    put(&ch, "cp/key", id).await;
    // Aged by AGED seconds: several checkpoints went through the log.
    wait_until("the lease to age", PATIENCE, async || {
        let ttl = time_to_live(&ch, id).await;
        assert!(ttl.ttl > 0, "{ttl:?}");
        (ttl.ttl <= TTL - AGED).then_some(())
    })
    .await;
    cluster.kill9(leader);
    let new_leader = cluster.wait_leader().await;
    assert_ne!(new_leader, leader);
    let ttl = time_to_live(&cluster.channel(new_leader).await, id).await;
    // The last checkpoint is at most about two intervals old, and the new
    // leader adds an election timeout (600 ms here): well under TTL - 3.
    assert!(ttl.ttl > 0 && ttl.ttl <= TTL - AGED + 3, "{ttl:?}");
    assert_eq!(ttl.granted_ttl, TTL);
    assert_eq!(keys_of(&ttl), ["cp/key"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_cluster_serves_leases_through_the_leader_cluster() {
    const TTL: i64 = 3;
    let pair = start_pair().await;
    let (leader, follower) = (channel(&pair.leader).await, channel(&pair.follower).await);
    wait_same(&leader, &follower, "default").await;

    // Granted through the follower; listed there as soon as it returns.
    let a = grant(&follower, TTL).await;
    let granted = Instant::now();
    assert!(leases(&follower).await.contains(&a));
    let keys: Vec<String> = (0..4).map(|i| format!("fl/a/{i}")).collect();
    let mut last = 0;
    for key in &keys {
        last = put(&follower, key, a).await;
        // Read-your-writes: a local read on the follower has it.
        let (rev, here) = range(&follower, key, true).await;
        assert!(
            rev >= last && here == [key.clone()],
            "{key}: {rev} {here:?}"
        );
    }
    let keep = KeepAlive::start(follower.clone(), a, Duration::from_secs(1));
    let on_leader = Recorder::start(&leader, None, watch_prefix("fl/a/", last + 1)).await;
    let on_follower = Recorder::start(&follower, None, watch_prefix("fl/a/", last + 1)).await;

    // A second lease revoked through the follower: its keys are gone there
    // as soon as the revoke returns.
    let b = grant(&follower, 60).await;
    put(&follower, "fl/b/0", b).await;
    put(&follower, "fl/b/1", b).await;
    let revoked = LeaseClient::new(follower.clone())
        .lease_revoke(LeaseRevokeRequest { id: b })
        .await
        .unwrap()
        .into_inner();
    let revoked_at = revoked.header.unwrap().revision;
    let (rev, left) = range(&follower, "fl/b/", true).await;
    assert!(rev >= revoked_at && left.is_empty(), "{rev} {left:?}");
    assert_eq!(time_to_live(&follower, b).await.ttl, -1);
    assert!(!leases(&follower).await.contains(&b));
    let (rev, left) = range(&leader, "fl/b/", false).await;
    assert!(rev >= revoked_at && left.is_empty(), "{rev} {left:?}");

    // Kept alive through the follower for three TTLs.
    keep.wait_renewed_after(granted + Duration::from_secs(3 * TTL as u64))
        .await;
    let outcomes = keep.outcomes();
    assert!(
        outcomes
            .iter()
            .all(|(_, o)| matches!(o, Outcome::Renewed(TTL))),
        "{outcomes:?}"
    );
    assert_eq!(range(&leader, "fl/a/", false).await.1, keys);
    assert_eq!(range(&follower, "fl/a/", true).await.1, keys);
    let ttl = time_to_live(&follower, a).await;
    assert!(ttl.ttl > 0 && ttl.ttl <= TTL, "{ttl:?}");
    assert_eq!(
        (ttl.id, ttl.granted_ttl, keys_of(&ttl)),
        (a, TTL, keys.clone())
    );
    assert_eq!(leases(&follower).await, [a]);
    assert_eq!(leases(&leader).await, [a]);

    // Keep-alives stop: the leader cluster expires the lease, and both
    // clusters delete its keys at the same single revision.
    keep.stop().await;
    let revision = one_revision_of_deletes(&on_leader, &keys).await;
    assert_eq!(one_revision_of_deletes(&on_follower, &keys).await, revision);
    assert_eq!(revision, revoked_at + 1, "the expiry is the next write");
    wait_deleted_at(&leader, "fl/", revision).await;
    wait_deleted_at(&follower, "fl/", revision).await;
    assert_eq!(wait_same(&leader, &follower, "default").await, revision);
    assert_eq!(time_to_live(&follower, a).await.ttl, -1);
    assert!(leases(&follower).await.is_empty());
}

/// `create_revision(key) > 0`: the key exists.
fn exists(key: &[u8]) -> Compare {
    Compare {
        result: compare::CompareResult::Greater as i32,
        target: compare::CompareTarget::Create as i32,
        key: key.to_vec(),
        target_union: Some(compare::TargetUnion::CreateRevision(0)),
        ..Default::default()
    }
}

/// `counter += 1`, only if the lock key `held` still exists and nobody
/// wrote the counter since this client read it; returns whether it did.
async fn increment(ch: &Channel, held: &[u8]) -> bool {
    let mut kv = KvClient::new(ch.clone());
    let read = kv
        .range(RangeRequest {
            key: b"counter".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let (value, mod_revision) = read.kvs.first().map_or((0, 0), |kv| {
        let v: u64 = String::from_utf8_lossy(&kv.value).parse().unwrap();
        (v, kv.mod_revision)
    });
    let unchanged = Compare {
        result: compare::CompareResult::Equal as i32,
        target: compare::CompareTarget::Mod as i32,
        key: b"counter".to_vec(),
        target_union: Some(compare::TargetUnion::ModRevision(mod_revision)),
        ..Default::default()
    };
    let write = RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: b"counter".to_vec(),
            value: (value + 1).to_string().into(),
            ..Default::default()
        })),
    };
    let resp = kv
        .txn(TxnRequest {
            compare: vec![exists(held), unchanged],
            success: vec![write],
            failure: vec![],
        })
        .await
        .unwrap();
    resp.into_inner().succeeded
}

/// `Lock("lk", lease)` in the background.
fn spawn_lock(ch: Channel, lease: i64) -> tokio::task::JoinHandle<LockResponse> {
    tokio::spawn(async move {
        let req = LockRequest {
            name: b"lk".to_vec(),
            lease,
        };
        LockClient::new(ch).lock(req).await.unwrap().into_inner()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_excludes_across_members_and_passes_on_when_the_holder_dies() {
    const CLIENTS: usize = 4;
    const ROUNDS: usize = 5;
    let mut cluster = Cluster::start(3, &[]);
    let raft_leader = cluster.wait_leader().await;

    // Clients on different members, each with its own kept-alive lease.
    let inside = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let ch = cluster.channel(c % 3 + 1).await;
        let inside = inside.clone();
        clients.push(tokio::spawn(async move {
            let lease = grant(&ch, 5).await;
            let keep = KeepAlive::start(ch.clone(), lease, Duration::from_secs(1));
            let mut lock = LockClient::new(ch.clone());
            for _ in 0..ROUNDS {
                let req = LockRequest {
                    name: b"lk".to_vec(),
                    lease,
                };
                let held = lock.lock(req).await.unwrap().into_inner().key;
                assert!(!inside.swap(true, Ordering::SeqCst), "two lock holders");
                assert!(
                    increment(&ch, &held).await,
                    "the counter moved under the lock"
                );
                // Out of the critical section before the lock is released.
                inside.store(false, Ordering::SeqCst);
                lock.unlock(UnlockRequest { key: held }).await.unwrap();
            }
            keep.assert_never_lost();
            keep.stop().await;
            LeaseClient::new(ch)
                .lease_revoke(LeaseRevokeRequest { id: lease })
                .await
                .unwrap();
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    let ch = cluster.channel(raft_leader).await;
    let counter = KvClient::new(ch.clone())
        .range(RangeRequest {
            key: b"counter".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        counter.kvs[0].value,
        (CLIENTS * ROUNDS).to_string().as_bytes()
    );
    assert!(range(&ch, "lk/", false).await.1.is_empty());

    // A holder on one raft follower, kept alive there; a waiter on the
    // other. The holder's member dies, and its keep-alives with it.
    let others: Vec<usize> = (1..=3).filter(|id| *id != raft_leader).collect();
    let (holder_node, waiter_node) = (others[0], others[1]);
    let hch = cluster.channel(holder_node).await;
    let wch = cluster.channel(waiter_node).await;
    let x = grant(&hch, 2).await;
    let keep_x = KeepAlive::start(hch.clone(), x, Duration::from_millis(500));
    let held = LockClient::new(hch.clone())
        .lock(LockRequest {
            name: b"lk".to_vec(),
            lease: x,
        })
        .await
        .unwrap()
        .into_inner()
        .key;
    let y = grant(&wch, 30).await;
    let waiter = spawn_lock(wch.clone(), y);
    wait_until("the waiter's key", PATIENCE, async || {
        (range(&wch, "lk/", false).await.1.len() == 2).then_some(())
    })
    .await;
    // A third client, on the raft leader, queues and gives up: its key
    // goes (etcd's Mutex deletes it when the Lock call is cancelled).
    let lch = cluster.channel(raft_leader).await;
    let z = grant(&lch, 30).await;
    let quitter = spawn_lock(lch, z);
    wait_until("the third key", PATIENCE, async || {
        (range(&wch, "lk/", false).await.1.len() == 3).then_some(())
    })
    .await;
    quitter.abort();
    let abandoned = format!("lk/{z:x}");
    wait_until("the abandoned key's deletion", PATIENCE, async || {
        let (_, keys) = range(&wch, "lk/", false).await;
        (keys.len() == 2 && !keys.contains(&abandoned)).then_some(())
    })
    .await;
    // While the holder's lease is renewed, the waiter waits.
    let queued = Instant::now();
    wait_until("two renewals of the holder's lease", PATIENCE, async || {
        (keep_x.renewals_since(queued) >= 2).then_some(())
    })
    .await;
    assert!(!waiter.is_finished(), "the waiter got a held lock");
    keep_x.assert_never_lost();
    cluster.kill9(holder_node);
    let got = tokio::time::timeout(PATIENCE, waiter)
        .await
        .expect("the waiter never got the lock")
        .unwrap();
    keep_x.stop().await;
    assert_eq!(got.key, format!("lk/{y:x}").as_bytes());
    assert_eq!(time_to_live(&wch, x).await.ttl, -1, "the holder's lease");
    let (_, left) = range(&wch, "lk/", false).await;
    assert_eq!(left, [format!("lk/{y:x}")]);
    // The old holder's guarded write now fails.
    assert!(!increment(&wch, &held).await);
    assert!(increment(&wch, &got.key).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn election_leader_is_seen_everywhere_and_passes_on_resign() {
    let cluster = Cluster::start(3, &[]);
    cluster.wait_leader().await;
    let (a, b, c) = (
        cluster.channel(1).await,
        cluster.channel(2).await,
        cluster.channel(3).await,
    );
    let leader_value = async |ch: &Channel| {
        let resp = ElectionClient::new(ch.clone())
            .leader(LeaderRequest {
                name: b"el".to_vec(),
            })
            .await
            .unwrap()
            .into_inner();
        resp.kv.unwrap().value
    };
    let la = grant(&a, 30).await;
    let won = ElectionClient::new(a.clone())
        .campaign(CampaignRequest {
            name: b"el".to_vec(),
            lease: la,
            value: b"a".to_vec(),
        })
        .await
        .unwrap()
        .into_inner()
        .leader
        .unwrap();
    assert_eq!(leader_value(&b).await, b"a");
    let mut observe = ElectionClient::new(b.clone())
        .observe(LeaderRequest {
            name: b"el".to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut observed = async || {
        let next = tokio::time::timeout(PATIENCE, observe.message()).await;
        next.expect("no Observe answer")
            .unwrap()
            .unwrap()
            .kv
            .unwrap()
            .value
    };
    assert_eq!(observed().await, b"a");

    let lc = grant(&c, 30).await;
    let waiting = tokio::spawn({
        let c = c.clone();
        async move {
            let req = CampaignRequest {
                name: b"el".to_vec(),
                lease: lc,
                value: b"c".to_vec(),
            };
            ElectionClient::new(c)
                .campaign(req)
                .await
                .unwrap()
                .into_inner()
        }
    });
    wait_until("the second campaigner's key", PATIENCE, async || {
        (range(&b, "el/", false).await.1.len() == 2).then_some(())
    })
    .await;
    assert!(!waiting.is_finished(), "two election leaders");
    assert_eq!(leader_value(&c).await, b"a");

    ElectionClient::new(a.clone())
        .resign(ResignRequest {
            leader: Some(won.clone()),
        })
        .await
        .unwrap();
    let c_won = tokio::time::timeout(PATIENCE, waiting)
        .await
        .expect("the waiting campaigner never won")
        .unwrap()
        .leader
        .unwrap();
    assert_eq!(c_won.lease, lc);
    assert_eq!(observed().await, b"c");
    assert_eq!(leader_value(&a).await, b"c");
    ElectionClient::new(c.clone())
        .proclaim(ProclaimRequest {
            leader: Some(c_won),
            value: b"c2".to_vec(),
        })
        .await
        .unwrap();
    assert_eq!(observed().await, b"c2");
    assert_eq!(leader_value(&a).await, b"c2");
    // The resigned leader key no longer proclaims.
    let stale = ElectionClient::new(a)
        .proclaim(ProclaimRequest {
            leader: Some(won),
            value: b"stale".to_vec(),
        })
        .await;
    assert!(stale.is_err(), "{stale:?}");
}
