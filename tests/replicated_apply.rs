//! A follower cluster's apply path for entries pulled from a leader cluster
//! (`Proposal::Replicated`), on an in-process single-node table group: the
//! leader index is stored with the data, entries at or below it are skipped
//! (a batch delivered twice, or overlapping the last one, changes nothing),
//! revisions follow the leader's commands exactly, the stored leader index
//! survives a restart, and a batch of another leader epoch is not applied.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use armada::kv::command::{Command, Replicated, ReplicatedEntry};
use armada::kv::MvccRead;
use armada::pb::etcdserverpb::PutRequest;
use armada::raft::group::{GroupConfig, RaftGroup};
use armada::raft::network::Peers;
use common::{wait_until_every, POLL};

fn config(dir: &std::path::Path) -> GroupConfig {
    GroupConfig {
        node_id: 1,
        raft_address: "127.0.0.1:9".into(),
        members: BTreeMap::new(),
        wal_dir: dir.join("wal"),
        state_machine_dir: dir.join("sm"),
        snapshot_dir: dir.join("snapshots"),
        map_size: 64 << 20,
        log_engine: Default::default(),
        heartbeat_ms: 50,
        election_ms: 300,
        snapshot_entries: 0,
        compaction_overhead: 0,
        max_payload_entries: 64,
        max_pending_proposals: 10000,
        expire_leases: true,
        lease_checkpoint_interval: Duration::ZERO,
        send_limit: u64::MAX,
    }
}

/// Opens the group; after a shutdown, openraft's tasks may still hold the
/// LMDB environments for a moment, so `EnvAlreadyOpened` is waited out.
async fn open(dir: &std::path::Path) -> std::sync::Arc<RaftGroup> {
    let attempt =
        async || match RaftGroup::open("t", "t.1", &config(dir), Peers::new(None), true).await {
            Ok(group) => Ok(group),
            Err(e @ armada::error::Error::Storage(heed::Error::EnvAlreadyOpened)) => Err(e),
            Err(e) => panic!("opening the group: {e}"),
        };
    let group = wait_until_every("the group to open", Duration::from_secs(10), POLL, attempt).await;
    group
        .wait_for_leader(Duration::from_secs(10))
        .await
        .unwrap();
    group
}

fn entry(leader_index: u64, keys: &[&str]) -> ReplicatedEntry {
    ReplicatedEntry {
        leader_index,
        commands: keys
            .iter()
            .map(|k| {
                Command::Put(PutRequest {
                    key: k.as_bytes().to_vec(),
                    value: format!("v{leader_index}").into_bytes(),
                    ..Default::default()
                })
            })
            .collect(),
    }
}

fn batch(entries: Vec<ReplicatedEntry>) -> Replicated {
    Replicated { epoch: 7, entries }
}

/// (revision, [(key, mod_revision, version)]) of the table.
async fn state(group: &RaftGroup) -> (i64, Vec<(String, i64, i64)>) {
    group
        .read(false, |r| {
            let rev = r.revision_state()?.current;
            let mut kvs = Vec::new();
            for k in ["a", "b", "c", "d"] {
                if let Some(kv) = r.get(k.as_bytes(), rev)? {
                    kvs.push((k.to_string(), kv.mod_revision, kv.version));
                }
            }
            Ok((rev, kvs))
        })
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicated_batches_apply_once_in_leader_order() {
    let dir = tempfile::tempdir().unwrap();
    let group = open(dir.path()).await;
    assert_eq!(group.replicated().await.unwrap(), (0, 0));

    let first = batch(vec![entry(3, &["a"]), entry(5, &["b", "a"])]);
    assert_eq!(group.write_replicated(first.clone()).await.unwrap(), 5);
    let after_first = state(&group).await;
    assert_eq!(
        after_first,
        (4, vec![("a".into(), 4, 2), ("b".into(), 3, 1)])
    );

    // Delivered twice: nothing changes.
    assert_eq!(group.write_replicated(first).await.unwrap(), 5);
    assert_eq!(state(&group).await, after_first);

    // Overlapping the last batch: only the new entry applies.
    let overlap = batch(vec![entry(5, &["b", "a"]), entry(9, &["c"])]);
    assert_eq!(group.write_replicated(overlap).await.unwrap(), 9);
    assert_eq!(
        state(&group).await,
        (
            5,
            vec![("a".into(), 4, 2), ("b".into(), 3, 1), ("c".into(), 5, 1)]
        )
    );
    assert_eq!(group.replicated().await.unwrap(), (9, 7));

    // The stored leader index is durable with the data.
    group.shutdown().await;
    drop(group);
    let group = open(dir.path()).await;
    assert_eq!(group.replicated().await.unwrap(), (9, 7));
    assert_eq!(state(&group).await.0, 5);
    let stale = batch(vec![entry(8, &["d"])]);
    assert_eq!(group.write_replicated(stale).await.unwrap(), 9);
    assert_eq!(state(&group).await.1.len(), 3, "a stale entry applied");

    // Entries of another incarnation of the leader's table (a worker still
    // streaming the old one) never mix with those held.
    let other = Replicated {
        epoch: 8,
        entries: vec![entry(10, &["d"])],
    };
    assert_eq!(group.write_replicated(other).await.unwrap(), 9);
    assert_eq!(
        state(&group).await.1.len(),
        3,
        "another incarnation applied"
    );
    assert_eq!(group.replicated().await.unwrap(), (9, 7));
    group.shutdown().await;
}
