//! Crash points: a node that dies (`abort()`, like `kill -9`) at any step
//! of a snapshot build, a snapshot install, a log purge, a follower
//! cluster's recovery seeding or its table swap restarts and catches up,
//! with the same data and revisions as everyone else.
//!
//! Each point is armed with the hidden `--debug.crash-at` flag on one node,
//! which is then driven to the step (writes past `--raft.snapshot-entries`,
//! or a snapshot install after it fell behind the leader's log), dies there,
//! and is restarted without it. `ARMADA_CRASH_SEED` (default 1) varies how
//! many writes go where; `scripts/crash-loop.sh` runs many seeds.

mod common;

use std::time::Duration;

use armada::crash_point::POINTS;
use armada::pb::etcdserverpb::kv_client::KvClient;
use armada::pb::etcdserverpb::PutRequest;
use common::replication::{start_follower_with, start_leader, wait_same};
use common::seed::{env_u64, Rng};
use common::{free_port, wait_until, Cluster, Server};
use tonic::transport::Channel;

/// Snapshots every 20 entries, keeping 5: every step comes quickly.
const SMALL_LOG: [&str; 2] = ["--raft.snapshot-entries=20", "--raft.compaction-overhead=5"];
const PATIENCE: Duration = Duration::from_secs(60);

async fn put(ch: &Channel, key: String) {
    let req = PutRequest {
        key: key.into_bytes(),
        value: b"v".to_vec(),
        ..Default::default()
    };
    KvClient::new(ch.clone()).put(req).await.unwrap();
}

/// Writes through `ch` until `server` has died at its armed point.
async fn write_until_dead(ch: &Channel, server: &mut Server, prefix: &str) {
    let mut i = 0;
    wait_until("the node to die at its crash point", PATIENCE, async || {
        for _ in 0..5 {
            put(ch, format!("{prefix}/{i:05}")).await;
            i += 1;
        }
        server.exited().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raft_member_dying_at_any_snapshot_or_purge_step_catches_up() {
    let seed = env_u64("ARMADA_CRASH_SEED", 1);
    eprintln!("ARMADA_CRASH_SEED={seed}");
    let mut rng = Rng::new(seed);
    let mut cluster = Cluster::start(3, &SMALL_LOG);
    let leader = cluster.wait_leader().await;
    let ch = cluster.channel(leader).await;
    let raft_points =
        (POINTS.iter()).filter(|p| p.starts_with("snapshot.") || p.starts_with("log."));
    for (round, point) in raft_points.enumerate() {
        let followers: Vec<usize> = (1..=3).filter(|id| *id != leader).collect();
        let victim = followers[rng.below(2) as usize];
        let armed = format!("--debug.crash-at={point}");
        cluster.kill9(victim);
        if point.starts_with("snapshot.install.") {
            // Far enough behind that only a snapshot brings it back.
            for i in 0..40 + rng.below(40) {
                put(&ch, format!("{round}/behind/{i:05}")).await;
            }
        }
        cluster.restart_with(victim, &[&armed]);
        write_until_dead(&ch, cluster.server_mut(victim), &format!("{round}/on")).await;

        cluster.restart(victim);
        for i in 0..rng.below(30) {
            put(&ch, format!("{round}/after/{i:05}")).await;
        }
        let (revision, _) = cluster.wait_converged().await;
        eprintln!("{point}: node {victim} died there and caught up at revision {revision}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_dying_while_recovering_from_a_snapshot_recovers() {
    let seed = env_u64("ARMADA_CRASH_SEED", 1);
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let (api, replication) = (free_port(), free_port());
    let leader_node = start_leader(dir.path(), api, replication, &SMALL_LOG);
    let leader = leader_node.ready().await;
    let recovery_points = POINTS.iter().filter(|p| p.starts_with("recovery."));
    for (round, point) in recovery_points.enumerate() {
        // The leader's log no longer starts at 1: a new follower recovers
        // from a snapshot.
        for i in 0..40 + rng.below(40) {
            put(&leader, format!("{round}/{i:05}")).await;
        }
        let follower_dir = dir.path().join(format!("round{round}"));
        let armed = format!("--debug.crash-at={point}");
        let mut follower = start_follower_with(&follower_dir, replication, &[&armed]);
        wait_until(
            "the follower to die at its crash point",
            PATIENCE,
            async || follower.exited().then_some(()),
        )
        .await;

        let follower = start_follower_with(&follower_dir, replication, &[]);
        let ch = follower.ready().await;
        let revision = wait_same(&leader, &ch, "default").await;
        eprintln!("{point}: the follower died there and recovered at revision {revision}");
    }
}

/// A node that dies at any step of a Defragment restarts with every write
/// it acknowledged, serves them, and defragments again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_dying_at_any_defragment_step_keeps_its_data() {
    use armada::pb::etcdserverpb::maintenance_client::MaintenanceClient;
    use armada::pb::etcdserverpb::{DefragmentRequest, RangeRequest};
    let seed = env_u64("ARMADA_CRASH_SEED", 1);
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let ports = common::Ports::pick();
    let count = |ch: Channel| async move {
        let all = RangeRequest {
            key: b"\0".to_vec(),
            range_end: b"\0".to_vec(),
            count_only: true,
            ..Default::default()
        };
        let resp = KvClient::new(ch).range(all).await.unwrap().into_inner();
        (resp.count, resp.header.unwrap().revision)
    };
    let mut written = 0;
    for point in POINTS.iter().filter(|p| p.starts_with("defrag.")) {
        let mut server = Server::start(dir.path(), ports, &[&format!("--debug.crash-at={point}")]);
        let ch = server.ready().await;
        for _ in 0..10 + rng.below(40) {
            put(&ch, format!("{written:05}")).await;
            written += 1;
        }
        let before = count(ch.clone()).await;
        let died = MaintenanceClient::new(ch)
            .defragment(DefragmentRequest {})
            .await;
        assert!(died.is_err(), "{point}: {died:?}");
        wait_until("the node to die at its crash point", PATIENCE, async || {
            server.exited().then_some(())
        })
        .await;

        let server = Server::start(dir.path(), ports, &[]);
        let ch = server.ready().await;
        assert_eq!(count(ch.clone()).await, before, "{point}");
        MaintenanceClient::new(ch.clone())
            .defragment(DefragmentRequest {})
            .await
            .unwrap();
        assert_eq!(count(ch).await, before, "{point}: after a defragment");
        eprintln!("{point}: the node died there and kept its {written} keys");
        drop(server);
    }
}
