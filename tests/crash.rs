//! Durability: every acknowledged write survives `kill -9` of the server.
//!
//! A real `armada` process takes concurrent puts; the test records which
//! were acknowledged, kills the process with SIGKILL while writes are in
//! flight, restarts it on the same data directory and checks that every
//! acknowledged key is there with its value, and that revisions continue;
//! then the same after a simulated OS crash.

mod common;

use std::time::Duration;

use armada::pb::etcdserverpb::kv_client::KvClient;
use armada::pb::etcdserverpb::{PutRequest, RangeRequest};
use common::{wait_until, Ports, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::pick();
    let mut server = Server::start(dir.path(), ports, &[]);
    let ch = server.ready().await;

    // 8 writers put distinct keys until told to stop; each records its acks.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut writers = Vec::new();
    for w in 0..8 {
        let mut kv = KvClient::new(ch.clone());
        let stop = stop_rx.clone();
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0.. {
                if *stop.borrow() {
                    break;
                }
                let key = format!("k/{w}/{i:06}");
                let req = PutRequest {
                    key: key.clone().into(),
                    value: format!("v{i}").into(),
                    ..Default::default()
                };
                match kv.put(req).await {
                    Ok(resp) => acked.push((
                        key,
                        format!("v{i}"),
                        resp.into_inner().header.unwrap().revision,
                    )),
                    Err(_) => break,
                }
            }
            acked
        }));
    }
    // Kill once a good number of writes were acknowledged, writes in flight.
    let mut probe = KvClient::new(ch.clone());
    wait_until("400 applied writes", Duration::from_secs(60), async || {
        let r = probe
            .range(RangeRequest {
                key: b"k/".to_vec(),
                range_end: b"k0".to_vec(),
                count_only: true,
                serializable: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        (r.count >= 400).then_some(())
    })
    .await;
    server.kill9();
    let _ = stop_tx.send(true);
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    // Some of the 400 applied writes may not have been acknowledged before the kill.
    assert!(acked.len() >= 300, "only {} acks", acked.len());

    let server = Server::start(dir.path(), ports, &[]);
    all_acknowledged_are_there(&server.ready().await, &acked).await;
}

/// A simulated OS crash: the state machine's commits are not synced one by
/// one (the raft log is a write's only fsync), so after a power loss its
/// LMDB file may be torn. The test leaves each state machine as a machine
/// that lost its page cache could: the unsynced-boot marker names an
/// earlier boot and the file is garbage. The restarted server rebuilds
/// every state machine (tables and the catalogue) from its snapshot and
/// its raft log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_a_simulated_os_crash() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::pick();
    // Snapshots and log purges happen during the run.
    let flags = [
        "--raft.snapshot-entries",
        "100",
        "--raft.compaction-overhead",
        "10",
    ];
    let mut server = Server::start(dir.path(), ports, &flags);
    let ch = server.ready().await;
    let mut acked = Vec::new();
    for i in 0..450 {
        let (key, value) = (format!("k/{i:06}"), format!("v{i}"));
        let revision = common::replication::put(&ch, "default", &key, &value).await;
        acked.push((key, value, revision));
    }
    server.kill9();

    let mut torn = 0;
    for marker in files_named(dir.path(), "unsynced-boot") {
        let env = marker.parent().unwrap();
        std::fs::write(&marker, "an-earlier-boot").unwrap();
        let size = std::fs::metadata(env.join("data.mdb")).unwrap().len();
        std::fs::write(env.join("data.mdb"), vec![0xa5; size as usize]).unwrap();
        torn += 1;
    }
    assert!(
        torn >= 2,
        "the table's and the catalogue's state machines: {torn}"
    );

    let server = Server::start(dir.path(), ports, &flags);
    all_acknowledged_are_there(&server.ready().await, &acked).await;
}

fn files_named(dir: &std::path::Path, name: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_named(&path, name));
        } else if path.file_name().is_some_and(|n| n == name) {
            found.push(path);
        }
    }
    found
}

/// Every acknowledged (key, value, revision) is stored as acknowledged, and
/// the next write gets a later revision.
async fn all_acknowledged_are_there(
    ch: &tonic::transport::Channel,
    acked: &[(String, String, i64)],
) {
    let max_rev = acked.iter().map(|a| a.2).max().unwrap();
    let mut kv = KvClient::new(ch.clone());
    let all = kv
        .range(RangeRequest {
            key: b"k/".to_vec(),
            range_end: b"k0".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let header = all.header;
    let stored: std::collections::HashMap<Vec<u8>, (Vec<u8>, i64)> = all
        .kvs
        .into_iter()
        .map(|kv| (kv.key, (kv.value, kv.mod_revision)))
        .collect();
    for (key, value, rev) in acked {
        let got = stored.get(key.as_bytes()).unwrap_or_else(|| {
            panic!(
                "acknowledged {key} lost: {} keys, header {:?}",
                stored.len(),
                header
            )
        });
        assert_eq!(got.0, value.as_bytes(), "{key}");
        assert_eq!(got.1, *rev, "{key} revision");
    }
    assert!(
        all.header.unwrap().revision >= max_rev,
        "revision went backwards after restart"
    );
    // The table keeps working after recovery.
    let resp = kv
        .put(PutRequest {
            key: b"after".to_vec(),
            value: b"x".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(resp.into_inner().header.unwrap().revision > max_rev);
}
