//! Leader and follower clusters of real `armada` processes for the
//! cross-cluster tests, how to compare their copies of a table, and the
//! few requests those tests make.

use std::path::Path;
use std::time::Duration;

use armada::pb::armada::tables_client::TablesClient;
use armada::pb::armada::ListTablesRequest;
use armada::pb::etcdserverpb::kv_client::KvClient;
use armada::pb::etcdserverpb::maintenance_client::MaintenanceClient;
use armada::pb::etcdserverpb::{HashKvRequest, PutRequest, RangeRequest};
use armada::pb::mvccpb::KeyValue;
use armada::table_request;
use tonic::transport::Channel;
use tonic::Request;

use super::{free_port, wait_until, wait_until_every, Cluster, Ports, Server, POLL};

/// A one-node leader cluster in `dir/leader` with its API on `api`,
/// serving replication on `replication`.
pub fn start_leader(dir: &Path, api: u16, replication: u16, extra: &[&str]) -> Server {
    let mut ports = Ports::pick();
    ports.api = api;
    let address = format!("--replication.address=http://127.0.0.1:{replication}");
    let mut args = vec!["--replication.enabled", address.as_str()];
    args.extend_from_slice(extra);
    Server::start(&dir.join("leader"), ports, &args)
}

/// A 3-node follower cluster of the leader replicating on `replication`.
pub fn start_followers(replication: u16, lease_interval: &str) -> Cluster {
    let leader_address = format!("--replication.leader-address=127.0.0.1:{replication}");
    let lease = format!("--replication.lease-interval={lease_interval}");
    Cluster::start_as(
        "follower",
        3,
        &[
            &leader_address,
            "--replication.reconcile-interval=300ms",
            "--replication.poll-interval=100ms",
            &lease,
        ],
    )
}

/// A one-node follower cluster in `dir/follower` of the leader
/// replicating on `replication`.
pub fn start_follower(dir: &Path, replication: u16) -> Server {
    start_follower_with(dir, replication, &[])
}

/// [`start_follower`] with `extra` flags.
pub fn start_follower_with(dir: &Path, replication: u16, extra: &[&str]) -> Server {
    let leader = format!("--replication.leader-address=127.0.0.1:{replication}");
    let mut args = vec![
        leader.as_str(),
        "--replication.reconcile-interval=300ms",
        "--replication.poll-interval=100ms",
        "--replication.lease-interval=3s",
    ];
    args.extend_from_slice(extra);
    Server::start_as("follower", &dir.join("follower"), Ports::pick(), &args)
}

/// (revision, every key-value) of `table`, serializable (local) read.
pub async fn dump(ch: &Channel, table: &str) -> Result<(i64, Vec<KeyValue>), tonic::Status> {
    let req = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        serializable: true,
        ..Default::default()
    };
    let resp = KvClient::new(ch.clone())
        .max_decoding_message_size(256 << 20)
        .range(table_request(table, req))
        .await?
        .into_inner();
    Ok((resp.header.unwrap().revision, resp.kvs))
}

pub async fn hash_kv(ch: &Channel, table: &str, revision: i64) -> u32 {
    MaintenanceClient::new(ch.clone())
        .hash_kv(table_request(table, HashKvRequest { revision }))
        .await
        .unwrap()
        .into_inner()
        .hash
}

/// Waits until the follower's copy of `table` equals the leader's
/// (revision, keys and HashKV), and returns that revision.
pub async fn wait_same(leader: &Channel, follower: &Channel, table: &str) -> i64 {
    let want = dump(leader, table).await.unwrap();
    let what = format!("the follower to catch up on {table} (its revision)");
    wait_until_every(&what, Duration::from_secs(30), POLL, async || {
        let got = dump(follower, table).await;
        if got.as_ref().is_ok_and(|got| *got == want) {
            assert_eq!(
                hash_kv(leader, table, want.0).await,
                hash_kv(follower, table, want.0).await
            );
            return Ok(want.0);
        }
        Err(got.map(|d| d.0))
    })
    .await
}

/// A one-node leader cluster and a one-node follower cluster of it.
pub struct Pair {
    pub dir: tempfile::TempDir,
    pub leader: Server,
    pub leader_ports: (u16, u16), // (api, replication)
    pub follower: Server,
}

/// Starts a [`Pair`] and waits until both nodes answer.
pub async fn start_pair() -> Pair {
    let dir = tempfile::tempdir().unwrap();
    let (api, replication) = (free_port(), free_port());
    let leader = start_leader(dir.path(), api, replication, &[]);
    leader.ready().await;
    let follower = start_follower(dir.path(), replication);
    follower.ready().await;
    Pair {
        dir,
        leader,
        leader_ports: (api, replication),
        follower,
    }
}

/// `msg` for `table` (the `armada-table` metadata).
pub fn in_table<T>(table: &str, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert(armada::TABLE_HEADER, table.parse().unwrap());
    r
}

/// A channel to `server`'s API port.
pub async fn channel(server: &Server) -> Channel {
    Channel::from_shared(server.endpoint.clone())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// Puts `key` = `value` in `table`; returns the revision.
pub async fn put(ch: &Channel, table: &str, key: &str, value: &str) -> i64 {
    let req = PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    };
    let resp = KvClient::new(ch.clone())
        .put(in_table(table, req))
        .await
        .unwrap();
    resp.into_inner().header.unwrap().revision
}

/// The tables `ch`'s node lists.
pub async fn tables(ch: &Channel) -> Vec<String> {
    let list = TablesClient::new(ch.clone())
        .list(ListTablesRequest {})
        .await
        .unwrap()
        .into_inner();
    list.tables.into_iter().map(|t| t.name).collect()
}

/// Waits until `ch`'s node lists exactly `want`.
pub async fn wait_tables(ch: &Channel, want: &[&str]) {
    let what = format!("the tables to become {want:?}");
    wait_until(&what, Duration::from_secs(30), async || {
        (tables(ch).await == want).then_some(())
    })
    .await;
}
