//! Cross-cluster replication when things go wrong: a follower cluster
//! pointed at another leader cluster keeps its tables and refuses it; the
//! large answer of a write forwarded to the leader cluster reaches the
//! client; a recovery slower than the worker lease keeps its lease, so two
//! nodes never recover the same table at once.

mod common;

use std::time::Duration;

use armada::pb::armada::tables_client::TablesClient;
use armada::pb::armada::CreateTableRequest;
use armada::pb::etcdserverpb::kv_client::KvClient;
use armada::pb::etcdserverpb::DeleteRangeRequest;
use armada::pb::replication::replication_client::ReplicationClient;
use armada::pb::replication::ReplicationStatusRequest;
use common::replication::{
    channel, dump, put, start_follower, start_leader, start_pair, tables, wait_same, wait_tables,
};
use common::{free_port, wait_until, Cluster};
use tonic::transport::Channel;

async fn replication_status(ch: &Channel) -> armada::pb::replication::ReplicationStatusResponse {
    ReplicationClient::new(ch.clone())
        .status(ReplicationStatusRequest {})
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_pointed_at_another_leader_cluster_keeps_its_tables() {
    let mut pair = start_pair().await;
    let leader = channel(&pair.leader).await;
    TablesClient::new(leader.clone())
        .create(CreateTableRequest {
            name: "extra".into(),
        })
        .await
        .unwrap();
    put(&leader, "default", "a", "from the first leader").await;
    put(&leader, "extra", "x", "from the first leader").await;
    let follower = channel(&pair.follower).await;
    wait_tables(&follower, &["default", "extra"]).await;
    wait_same(&leader, &follower, "default").await;
    wait_same(&leader, &follower, "extra").await;
    let follows = replication_status(&follower).await.cluster;
    assert_eq!(follows, replication_status(&leader).await.cluster);
    assert!(!follows.is_empty());
    let before = [
        dump(&follower, "default").await.unwrap(),
        dump(&follower, "extra").await.unwrap(),
    ];

    // Another (empty) leader cluster answers at the address the follower
    // is restarted with: it is refused, and nothing is mirrored from it.
    let other_dir = tempfile::tempdir().unwrap();
    let other_replication = free_port();
    let other = start_leader(other_dir.path(), free_port(), other_replication, &[]);
    let other_api = other.ready().await;
    put(&other_api, "default", "b", "from the other leader").await;
    pair.follower.kill9();
    pair.follower = start_follower(pair.dir.path(), other_replication);
    let follower = pair.follower.ready().await;
    let patience = Duration::from_secs(30);
    let refused = wait_until("the other leader cluster refused", patience, async || {
        let status = replication_status(&follower).await;
        (!status.last_error.is_empty()).then_some(status)
    })
    .await;
    assert!(
        refused.last_error.contains("follows") && refused.last_error.contains(&follows),
        "{refused:?}"
    );
    assert_eq!(refused.cluster, follows);
    assert_eq!(tables(&follower).await, ["default", "extra"]);
    assert_eq!(dump(&follower, "default").await.unwrap(), before[0]);
    assert_eq!(dump(&follower, "extra").await.unwrap(), before[1]);

    // Pointed back at its own leader cluster, it picks up where it was.
    pair.follower.kill9();
    pair.follower = start_follower(pair.dir.path(), pair.leader_ports.1);
    let follower = pair.follower.ready().await;
    put(&leader, "extra", "y", "after the detour").await;
    wait_same(&leader, &follower, "default").await;
    wait_same(&leader, &follower, "extra").await;
    assert!(replication_status(&follower).await.last_error.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_answer_to_a_forwarded_write_reaches_the_client() {
    let pair = start_pair().await;
    let leader = channel(&pair.leader).await;
    let follower = channel(&pair.follower).await;
    let value = "x".repeat(1 << 20);
    for i in 0..6 {
        put(&leader, "default", &format!("big/{i}"), &value).await;
    }
    wait_same(&leader, &follower, "default").await;
    // 6 MiB of prev_kvs, past gRPC's 4 MiB default on the forwarding hop.
    let deleted = KvClient::new(follower.clone())
        .max_decoding_message_size(64 << 20)
        .delete_range(DeleteRangeRequest {
            key: b"big/".to_vec(),
            range_end: b"big0".to_vec(),
            prev_kv: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.deleted, 6);
    assert_eq!(deleted.prev_kvs.len(), 6);
    assert!(deleted.prev_kvs.iter().all(|kv| kv.value.len() == 1 << 20));
    wait_same(&leader, &follower, "default").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_recovery_keeps_its_lease() {
    let dir = tempfile::tempdir().unwrap();
    let (api, replication) = (free_port(), free_port());
    let small_log = ["--raft.snapshot-entries=20", "--raft.compaction-overhead=5"];
    let leader_node = start_leader(dir.path(), api, replication, &small_log);
    let leader = leader_node.ready().await;
    let value = "x".repeat(50 << 10);
    for i in 0..40 {
        put(&leader, "default", &format!("k{i:02}"), &value).await;
    }
    // A recovery that takes seconds (about 2 MB at 500 kB/s) against a
    // one-second worker lease.
    let leader_address = format!("--replication.leader-address=127.0.0.1:{replication}");
    let followers = Cluster::start_as(
        "follower",
        3,
        &[
            &leader_address,
            "--replication.reconcile-interval=300ms",
            "--replication.poll-interval=100ms",
            "--replication.lease-interval=1s",
            "--replication.max-snapshot-recv-bytes-per-second=500000",
        ],
    );
    let want = dump(&leader, "default").await.unwrap();
    let mut recovering_seen = false;
    wait_until(
        "the follower cluster to recover",
        Duration::from_secs(60),
        async || {
            let mut recovering = Vec::new();
            for id in 1..=3 {
                let Ok(ch) = Channel::from_shared(followers.endpoint(id))
                    .unwrap()
                    .connect()
                    .await
                else {
                    continue;
                };
                let Ok(status) = ReplicationClient::new(ch.clone())
                    .status(ReplicationStatusRequest {})
                    .await
                else {
                    continue;
                };
                let state = status
                    .into_inner()
                    .tables
                    .into_iter()
                    .find(|t| t.table == "default");
                if state.is_some_and(|t| t.state == "recovering") {
                    recovering.push(id);
                }
            }
            assert!(
                recovering.len() <= 1,
                "nodes {recovering:?} recover at once"
            );
            recovering_seen |= !recovering.is_empty();
            let ch = followers.channel(1).await;
            (dump(&ch, "default").await.ok() == Some(want.clone())).then_some(())
        },
    )
    .await;
    assert!(
        recovering_seen,
        "the follower cluster never recovered by snapshot"
    );
}
