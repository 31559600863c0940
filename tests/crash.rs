//! Durability: every acknowledged write survives `kill -9` of the server.
//!
//! A real `armada` process takes concurrent puts; the test records which
//! were acknowledged, kills the process with SIGKILL while writes are in
//! flight, restarts it on the same data directory and checks that every
//! acknowledged key is there with its value, and that revisions continue.

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
    let max_rev = acked.iter().map(|a| a.2).max().unwrap();

    let server = Server::start(dir.path(), ports, &[]);
    let ch = server.ready().await;
    let mut kv = KvClient::new(ch);
    let all = kv
        .range(RangeRequest {
            key: b"k/".to_vec(),
            range_end: b"k0".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let stored: std::collections::HashMap<Vec<u8>, (Vec<u8>, i64)> = all
        .kvs
        .into_iter()
        .map(|kv| (kv.key, (kv.value, kv.mod_revision)))
        .collect();
    for (key, value, rev) in &acked {
        let got = stored
            .get(key.as_bytes())
            .unwrap_or_else(|| panic!("acknowledged {key} lost after kill -9"));
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
