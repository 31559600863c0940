//! 3- and 5-node clusters of real `armada` processes on loopback: any member serves
//! any request, the raft leader can be killed under write load without
//! losing an acknowledged write, and a node that was down past log
//! compaction, or lost its data, catches up by snapshot; a 5-node cluster
//! keeps serving with two nodes down.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use armada::pb::armada::tables_client::TablesClient;
use armada::pb::armada::{CreateTableRequest, DeleteTableRequest, ListTablesRequest};
use armada::pb::etcdserverpb::cluster_client::ClusterClient;
use armada::pb::etcdserverpb::kv_client::KvClient;
use armada::pb::etcdserverpb::maintenance_client::MaintenanceClient;
use armada::pb::etcdserverpb::{
    MemberListRequest, PutRequest, RangeRequest, RangeResponse, StatusRequest,
};
use common::{local_keys, wait_until, Cluster};
use tonic::transport::Channel;
use tonic::{Code, Request};

fn put(key: &str, value: &str) -> PutRequest {
    PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    }
}

async fn get(ch: &Channel, key: &str, serializable: bool) -> RangeResponse {
    KvClient::new(ch.clone())
        .range(RangeRequest {
            key: key.into(),
            serializable,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

/// Puts `count` keys `prefix/<i>` = `v<i>` padded with `pad` bytes, through node `via`.
async fn fill(cluster: &Cluster, via: usize, prefix: &str, count: usize, pad: usize) {
    let mut kv = KvClient::new(cluster.channel(via).await);
    for i in 0..count {
        let value = format!("v{i}{}", "x".repeat(pad));
        kv.put(put(&format!("{prefix}/{i:05}"), &value))
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_member_serves_any_request() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.wait_leader().await;

    // A write through each member, read back linearizably through every member.
    for id in 1..=3 {
        let ch = cluster.channel(id).await;
        let resp = KvClient::new(ch)
            .put(put(&format!("from/{id}"), &format!("node{id}")))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(resp.header.unwrap().revision, 1 + id as i64);
    }
    for id in 1..=3 {
        let ch = cluster.channel(id).await;
        for from in 1..=3 {
            let r = get(&ch, &format!("from/{from}"), false).await;
            assert_eq!(r.kvs[0].value, format!("node{from}").as_bytes());
            assert_eq!(r.kvs[0].mod_revision, 1 + from as i64);
            assert_eq!(r.header.unwrap().revision, 4);
        }
    }

    // Status and MemberList agree everywhere on who is who.
    let mut member_lists = Vec::new();
    for id in 1..=3 {
        let ch = cluster.channel(id).await;
        let st = MaintenanceClient::new(ch.clone())
            .status(StatusRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(st.raft_applied_index, st.raft_index, "node {id}");
        let members = ClusterClient::new(ch)
            .member_list(MemberListRequest::default())
            .await
            .unwrap()
            .into_inner()
            .members;
        assert_eq!(members.len(), 3);
        let leader_member = members
            .iter()
            .find(|m| m.id == st.leader)
            .expect("leader is a member");
        assert_eq!(leader_member.name, format!("node{leader}"));
        member_lists.push(members);
    }
    assert!(member_lists.windows(2).all(|w| w[0] == w[1]));
    let mut clients: Vec<String> = member_lists[0]
        .iter()
        .map(|m| m.client_ur_ls[0].clone())
        .collect();
    clients.sort();
    let mut endpoints = cluster.endpoints();
    endpoints.sort();
    assert_eq!(clients, endpoints);

    // Tables are cluster-wide: created through one member, used through
    // another, deleted through a third.
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    TablesClient::new(cluster.channel(follower).await)
        .create(CreateTableRequest { name: "t1".into() })
        .await
        .unwrap();
    for id in 1..=3 {
        let ch = cluster.channel(id).await;
        let names: Vec<String> = TablesClient::new(ch.clone())
            .list(ListTablesRequest {})
            .await
            .unwrap()
            .into_inner()
            .tables
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, ["default", "t1"], "node {id}");
    }
    let other = (1..=3).find(|id| *id != follower).unwrap();
    let mut req = Request::new(put("k", "in-t1"));
    req.metadata_mut()
        .insert("armada-table", "t1".parse().unwrap());
    let rev = KvClient::new(cluster.channel(other).await)
        .put(req)
        .await
        .unwrap()
        .into_inner()
        .header
        .unwrap()
        .revision;
    assert_eq!(rev, 2, "a new table counts its own revisions");
    TablesClient::new(cluster.channel(leader).await)
        .delete(DeleteTableRequest { name: "t1".into() })
        .await
        .unwrap();
    // Every node stops the table and removes its data.
    let deadline = Instant::now() + Duration::from_secs(30);
    for id in 1..=3 {
        let ch = cluster.channel(id).await;
        let what = format!("node {id} to drop table t1");
        let left = deadline.saturating_duration_since(Instant::now());
        wait_until(&what, left, async || {
            let mut req = Request::new(RangeRequest {
                key: b"k".to_vec(),
                serializable: true,
                ..Default::default()
            });
            req.metadata_mut()
                .insert("armada-table", "t1".parse().unwrap());
            let gone = KvClient::new(ch.clone()).range(req).await.is_err();
            let dirs_gone = !std::fs::read_dir(cluster.data_dir(id).join("state-machine"))
                .unwrap()
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("t1."));
            (gone && dirs_gone).then_some(())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_leader_killed_under_load_loses_no_acknowledged_write() {
    let mut cluster = Cluster::start(3, &[]);
    let leader = cluster.wait_leader().await;
    let survivors: Vec<usize> = (1..=3).filter(|id| *id != leader).collect();

    // Writers on the two raft followers: their writes are forwarded.
    let acks = Arc::new(AtomicUsize::new(0));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut writers = Vec::new();
    for (n, id) in survivors.iter().cycle().take(6).enumerate() {
        let mut kv = KvClient::new(cluster.channel(*id).await);
        let (acks, stop) = (acks.clone(), stop_rx.clone());
        writers.push(tokio::spawn(async move {
            let (mut acked, mut errors) = (Vec::new(), Vec::new());
            let mut i = 0;
            while !*stop.borrow() {
                let (key, value) = (format!("w/{n}/{i:06}"), format!("{n}-{i}"));
                match kv.put(put(&key, &value)).await {
                    Ok(_) => {
                        acked.push((key, value));
                        acks.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(status) => {
                        errors.push(status);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                i += 1;
            }
            (acked, errors)
        }));
    }
    let wait_acks = |target: usize| {
        let acks = acks.clone();
        async move {
            let what = format!("{target} acknowledged writes");
            wait_until(&what, Duration::from_secs(60), async || {
                (acks.load(Ordering::Relaxed) >= target).then_some(())
            })
            .await
        }
    };
    wait_acks(200).await;
    cluster.kill9(leader);
    let at_kill = acks.load(Ordering::Relaxed);
    wait_acks(at_kill + 200).await; // writes go on under a new raft leader
    let new_leader = cluster.wait_leader().await;
    assert_ne!(new_leader, leader);
    let _ = stop_tx.send(true);
    let mut acked = Vec::new();
    for w in writers {
        let (writer_acked, errors) = w.await.unwrap();
        acked.extend(writer_acked);
        // A follower holds a write through the election and forwards it to
        // the new leader. Only a write that was in flight to the dead leader
        // fails, as etcd's does: Unavailable, outcome unknown.
        for status in errors {
            assert_eq!(status.code(), Code::Unavailable, "{status:?}");
            assert_eq!(
                status.message(),
                "etcdserver: request timed out, possibly due to previous leader failure"
            );
        }
    }

    cluster.restart(leader);
    cluster.wait_converged().await;
    for id in 1..=3 {
        let stored = local_keys(&cluster.channel(id).await, "w/").await;
        for (key, value) in &acked {
            assert_eq!(
                stored.get(key),
                Some(value),
                "node {id} lacks acknowledged {key}"
            );
        }
    }
}

/// Whether node `id` holds a snapshot of the default table.
fn has_snapshot(cluster: &Cluster, id: usize) -> bool {
    std::fs::read_dir(cluster.data_dir(id).join("raft/snapshots"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("default."))
        .any(|e| e.path().join("current.json").exists())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_and_wiped_nodes_catch_up_by_snapshot() {
    // Snapshot every 50 entries and keep 10: a node down for 300 writes
    // cannot be sent the log it missed.
    let mut cluster = Cluster::start(
        3,
        &[
            "--raft.snapshot-entries=50",
            "--raft.compaction-overhead=10",
        ],
    );
    let leader = cluster.wait_leader().await;
    let lagger = (1..=3).find(|id| *id != leader).unwrap();
    let wiped = (1..=3).find(|id| *id != leader && *id != lagger).unwrap();
    fill(&cluster, leader, "a", 100, 0).await;

    cluster.kill9(lagger);
    // 300 values of 32 KiB: a ~10 MiB snapshot, sent as many 1 MiB chunks;
    // in a debug build the transfer outlasts an election timeout, and only
    // the raft leader's heartbeats beside it keep the lagger from campaigning
    // and restarting the transfer forever.
    fill(&cluster, leader, "b", 300, 32 << 10).await;
    cluster.restart(lagger);
    let (rev, _) = cluster.wait_converged().await;
    assert_eq!(rev, 401);
    assert!(
        has_snapshot(&cluster, lagger),
        "no snapshot on the node that lagged"
    );

    cluster.wipe(wiped);
    fill(&cluster, leader, "c", 100, 0).await;
    cluster.restart(wiped);
    let (rev, _) = cluster.wait_converged().await;
    assert_eq!(rev, 501);
    assert!(
        has_snapshot(&cluster, wiped),
        "no snapshot on the wiped node"
    );
    let ch = cluster.channel(wiped).await;
    let stored = local_keys(&ch, "").await;
    assert_eq!(stored.len(), 500);
    let r = get(&ch, "b/00299", true).await;
    assert_eq!(r.kvs[0].value.len(), 4 + (32 << 10));
    assert!(r.kvs[0].value.starts_with(b"v299x"));
    assert_eq!(r.kvs[0].mod_revision, 401);
    assert_eq!(r.kvs[0].create_revision, 401);
    // The wiped node knows the table list again and serves writes.
    let resp = KvClient::new(ch)
        .put(put("after", "wipe"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.header.unwrap().revision, 502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_survive_two_failures() {
    let mut cluster = Cluster::start(5, &[]);
    let leader = cluster.wait_leader().await;
    for id in 1..=5 {
        KvClient::new(cluster.channel(id).await)
            .put(put(&format!("five/{id}"), "before"))
            .await
            .unwrap();
    }
    // Lose the raft leader and one more node: 3 of 5 are still a quorum.
    let other = (1..=5).find(|id| *id != leader).unwrap();
    cluster.kill9(leader);
    cluster.kill9(other);
    let new_leader = cluster.wait_leader().await;
    assert!(new_leader != leader && new_leader != other);
    for id in cluster.up() {
        let resp = KvClient::new(cluster.channel(id).await)
            .put(put(&format!("five/{id}"), "after"))
            .await
            .unwrap();
        assert!(resp.into_inner().header.unwrap().revision > 6);
    }
    cluster.restart(leader);
    cluster.restart(other);
    let (rev, _) = cluster.wait_converged().await;
    assert_eq!(rev, 9, "5 puts before, 3 after");
    for id in 1..=5 {
        let stored = local_keys(&cluster.channel(id).await, "five/").await;
        assert_eq!(stored.len(), 5, "node {id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raft_leader_cut_off_from_its_quorum_refuses_writes_past_its_queue() {
    const PENDING: usize = 8;
    let limit = format!("--raft.max-pending-proposals={PENDING}");
    let cluster = Cluster::start(3, &[&limit]);
    let leader = cluster.wait_leader().await;
    let ch = cluster.channel(leader).await;
    KvClient::new(ch.clone())
        .put(put("before", "v"))
        .await
        .unwrap();
    let others: Vec<usize> = (1..=3).filter(|id| *id != leader).collect();
    for id in &others {
        cluster.server(*id).signal("STOP");
    }

    // The leader cannot commit: PENDING writes wait (and time out), every
    // other one is refused at once with etcd's error.
    let writes: Vec<_> = (0..5 * PENDING)
        .map(|i| {
            let mut kv = KvClient::new(ch.clone());
            tokio::spawn(async move { kv.put(put(&format!("k{i}"), "v")).await })
        })
        .collect();
    let mut refused = 0;
    for w in writes {
        let err = w
            .await
            .unwrap()
            .expect_err("a write committed without a quorum");
        if err.message() == "etcdserver: too many requests" {
            assert_eq!(err.code(), Code::ResourceExhausted);
            refused += 1;
        } else {
            assert_eq!(err.message(), "etcdserver: request timed out", "{err:?}");
        }
    }
    assert!(refused >= 4 * PENDING, "only {refused} refused");

    // Once the quorum is back, writes go through again.
    for id in &others {
        cluster.server(*id).signal("CONT");
    }
    wait_until(
        "a write after the quorum is back",
        Duration::from_secs(30),
        async || KvClient::new(ch.clone()).put(put("after", "v")).await.ok(),
    )
    .await;
}
