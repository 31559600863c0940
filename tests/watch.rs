//! Watch under load on one real node: a stuck client never blocks writes or
//! other watchers and later gets every event exactly once; tens of
//! thousands of watchers on one node each get their event; streams whose
//! client went away are cleaned up; a deleted table cancels its watchers;
//! a `hasleader` stream ends once its table has no raft leader. (etcd semantics, event by event, are
//! checked against real etcd by compat-tests; guarantees under raft leader
//! kills by tests/watch_guarantees.rs.)

mod common;

use std::time::Duration;

use armada::pb::armada::tables_client::TablesClient;
use armada::pb::armada::{CreateTableRequest, DeleteTableRequest};
use armada::pb::etcdserverpb::kv_client::KvClient;
use armada::pb::etcdserverpb::{PutRequest, WatchCreateRequest};
use common::watch::{Recorder, WatchStream};
use common::{wait_until_every, Cluster, Ports, Server, POLL};
use tonic::transport::Channel;

fn prefix(p: &str) -> WatchCreateRequest {
    WatchCreateRequest {
        key: p.into(),
        range_end: armada::kv::range::prefix_end(p.as_bytes()),
        ..Default::default()
    }
}

async fn put(ch: &Channel, key: &str, value: Vec<u8>) -> i64 {
    let resp = KvClient::new(ch.clone())
        .put(PutRequest {
            key: key.into(),
            value,
            ..Default::default()
        })
        .await
        .expect("put");
    resp.into_inner().header.unwrap().revision
}

/// The value of `name{table="default"}` on the node's /metrics.
async fn metric(server: &Server, name: &str) -> f64 {
    let (_, body) = server.http_get("/metrics").await;
    let line = format!("{name}{{table=\"default\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&line))
        .unwrap_or_else(|| panic!("no {line} in metrics"))
        .parse()
        .unwrap()
}

async fn wait_metric(server: &Server, name: &str, want: f64) {
    let what = format!("{name} to be {want} (its value)");
    wait_until_every(
        &what,
        Duration::from_secs(30),
        POLL,
        async || match metric(server, name).await {
            got if got == want => Ok(()),
            got => Err(got),
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_client_blocks_nothing_and_misses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), Ports::pick(), &[]);
    let ch = server.ready().await;
    let mut stuck = WatchStream::open(&ch, None).await;
    stuck.create(prefix("k/"));
    let created = stuck.next().await;
    assert!(created.created);
    let live = Recorder::start(&ch, None, prefix("k/")).await;

    // Far more than the stuck stream's queue (16 MiB) and HTTP/2 windows hold.
    const N: usize = 3000;
    let mut last = 0;
    for i in 0..N {
        last = put(&ch, &format!("k/{i:05}"), vec![b'v'; 12 << 10]).await;
    }
    live.wait_through(last).await;
    assert_eq!(live.revisions().len(), N);
    assert!(metric(&server, "armada_watch_slow_watchers_total").await >= 1.0);

    // The stuck client reads again and gets every revision once, in order.
    let mut next = last - N as i64 + 1;
    while next <= last {
        let resp = stuck.next().await;
        for e in &resp.events {
            let kv = e.kv.as_ref().unwrap();
            assert_eq!(kv.mod_revision, next, "gap or duplicate");
            assert_eq!(
                kv.key,
                format!("k/{:05}", next - (last - N as i64 + 1)).into_bytes()
            );
            next += 1;
        }
    }
    wait_metric(&server, "armada_watch_unsynced_watchers", 0.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tens_of_thousands_of_watchers_and_cleanup() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), Ports::pick(), &[]);
    let ch = server.ready().await;
    const STREAMS: usize = 10;
    const PER_STREAM: usize = 2000;
    let mut streams = Vec::new();
    for _ in 0..STREAMS {
        let mut s = WatchStream::open(&ch, None).await;
        for i in 0..PER_STREAM {
            // Half watch the key, half a prefix holding it.
            s.create(if i % 2 == 0 {
                WatchCreateRequest {
                    key: b"p/x".to_vec(),
                    ..Default::default()
                }
            } else {
                prefix("p/")
            });
        }
        for i in 0..PER_STREAM {
            let resp = s.next().await;
            assert!(resp.created && resp.watch_id == i as i64, "{resp:?}");
        }
        streams.push(s);
    }
    wait_metric(
        &server,
        "armada_watch_watchers",
        (STREAMS * PER_STREAM) as f64,
    )
    .await;
    let rev = put(&ch, "p/x", b"1".to_vec()).await;
    for s in &mut streams {
        let mut seen = std::collections::HashSet::new();
        while seen.len() < PER_STREAM {
            let resp = s.next().await;
            assert_eq!(resp.events.len(), 1);
            assert_eq!(resp.events[0].kv.as_ref().unwrap().mod_revision, rev);
            assert!(
                seen.insert(resp.watch_id),
                "watcher {} twice",
                resp.watch_id
            );
        }
    }
    // Clients that go away leave nothing behind.
    drop(streams);
    wait_metric(&server, "armada_watch_streams", 0.0).await;
    wait_metric(&server, "armada_watch_watchers", 0.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_table_cancels_its_watchers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), Ports::pick(), &[]);
    let ch = server.ready().await;
    let table = || "gone".to_string();
    TablesClient::new(ch.clone())
        .create(CreateTableRequest { name: table() })
        .await
        .unwrap();
    let mut s = WatchStream::open(&ch, Some("gone")).await;
    s.create(prefix(""));
    assert!(s.next().await.created);
    TablesClient::new(ch.clone())
        .delete(DeleteTableRequest { name: table() })
        .await
        .unwrap();
    let resp = s.next().await;
    assert!(resp.canceled, "{resp:?}");
    assert_eq!(resp.cancel_reason, "armada: the table was deleted");
    // A new stream on it is refused like any request for an unknown table.
    let refused = armada::pb::etcdserverpb::watch_client::WatchClient::new(ch.clone())
        .watch({
            let mut r = tonic::Request::new(tokio_stream::iter(Vec::new()));
            r.metadata_mut()
                .insert(armada::TABLE_HEADER, "gone".parse().unwrap());
            r
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hasleader_stream_ends_once_the_table_has_no_leader() {
    let mut cluster = Cluster::start(3, &[]);
    let leader = cluster.wait_leader().await;
    let survivor = (1..=3).find(|id| *id != leader).unwrap();
    let ch = cluster.channel(survivor).await;
    let mut plain = WatchStream::open(&ch, None).await;
    plain.create(prefix("k/"));
    assert!(plain.next().await.created);
    let mut s = WatchStream::open_with(&ch, &[("hasleader", "true")]).await;
    s.create(prefix("k/"));
    assert!(s.next().await.created);
    for id in (1..=3).filter(|id| *id != survivor) {
        cluster.kill9(id);
    }
    let status = s.error().await;
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(status.message(), "etcdserver: no leader");
    // Without `hasleader` a stream stays open: it still answers a progress
    // request (the node's own state is all synced).
    plain.send(
        armada::pb::etcdserverpb::watch_request::RequestUnion::ProgressRequest(Default::default()),
    );
    assert_eq!(plain.next().await.watch_id, -1);
}

/// Two watchers catching up from far apart in history (more than one read
/// of 1000 revisions apart): each gets exactly its revisions, once, in
/// order; the one further ahead is never moved back by the other's read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_far_apart_in_history_each_get_their_part_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), Ports::pick(), &[]);
    let ch = server.ready().await;
    let mut last = 0;
    for i in 0..1300 {
        last = put(&ch, &format!("h/{i:05}"), b"v".to_vec()).await;
    }
    let mut s = WatchStream::open(&ch, None).await;
    let starts = [2, last - 100];
    for (id, start) in starts.iter().enumerate() {
        s.create(WatchCreateRequest {
            start_revision: *start,
            watch_id: id as i64 + 1,
            ..prefix("h/")
        });
    }
    let mut next = starts;
    while next.iter().any(|n| *n <= last) {
        let resp = s.next().await;
        let w = match resp.watch_id {
            1 | 2 => (resp.watch_id - 1) as usize,
            other => panic!("unexpected response {other}: {resp:?}"),
        };
        for e in &resp.events {
            let rev = e.kv.as_ref().unwrap().mod_revision;
            assert_eq!(rev, next[w], "watcher {} got {rev}", w + 1);
            next[w] += 1;
        }
    }
}

/// A DeleteRange whose events are too large to hold while it applies
/// (`apply::MAX_HELD_EVENT_BYTES`) still reaches a watcher whole: every
/// delete in one response revision, each with its prev_kv, read back from
/// the store, and the watcher goes on with the next revision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_delete_reaches_watchers_whole() {
    use armada::pb::etcdserverpb::DeleteRangeRequest;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), Ports::pick(), &[]);
    let ch = server.ready().await;
    let value = vec![b'v'; 1 << 20];
    let n = armada::kv::apply::MAX_HELD_EVENT_BYTES / value.len() + 4;
    let watcher = Recorder::start(
        &ch,
        None,
        WatchCreateRequest {
            prev_kv: true,
            ..prefix("big/")
        },
    )
    .await;
    let mut last = 0;
    for i in 0..n {
        last = put(&ch, &format!("big/{i:03}"), value.clone()).await;
    }
    watcher.wait_through(last).await;
    let deleted = KvClient::new(ch.clone())
        .delete_range(DeleteRangeRequest {
            key: b"big/".to_vec(),
            range_end: armada::kv::range::prefix_end(b"big/"),
            prev_kv: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.deleted, n as i64);
    let after = put(&ch, "big/after", b"1".to_vec()).await;
    watcher.wait_through(after).await;
    let revisions = watcher.revisions();
    let (delete_rev, deletes) = &revisions[revisions.len() - 2];
    assert_eq!(*delete_rev, last + 1);
    assert_eq!(deletes.len(), n);
    for (i, e) in deletes.iter().enumerate() {
        let prev = e.prev_kv.as_ref().expect("prev_kv");
        assert_eq!(prev.key, format!("big/{i:03}").into_bytes());
        assert_eq!(prev.value, value);
    }
    assert_eq!(revisions.last().unwrap().0, after);
}
