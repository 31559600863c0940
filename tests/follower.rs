//! Cross-cluster replication end to end: a leader cluster (`armada leader
//! --replication.enabled`) and a follower cluster (`armada follower`), one
//! real process each on loopback.
//!
//! Checked: after writes on the leader the follower holds identical keys,
//! revisions and HashKV; tables created and deleted on the leader are
//! created and deleted on the follower; a table re-created on the leader
//! (new epoch) is resynced; a write through the follower is readable there
//! as soon as it is acknowledged; the follower refuses table changes; with
//! the leader gone the follower keeps serving reads and resumes when the
//! leader is back; status and metrics report the workers; watchers on the
//! follower see the leader's events exactly.

mod common;

use std::time::{Duration, Instant};

use armada::pb::armada::tables_client::TablesClient;
use armada::pb::armada::{CreateTableRequest, DeleteTableRequest};
use armada::pb::etcdserverpb::kv_client::KvClient;
use armada::pb::etcdserverpb::{
    compare, request_op, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp,
    TxnRequest, WatchCreateRequest,
};
use armada::pb::replication::replication_client::ReplicationClient;
use armada::pb::replication::ReplicationStatusRequest;
use common::replication::{
    channel, dump, in_table, put, start_follower, start_followers, start_leader, start_pair,
    wait_same, wait_tables,
};
use common::watch::Recorder;
use common::{free_port, wait_until, wait_until_every, Cluster, Ports, Server, POLL};
use tonic::transport::Channel;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_mirrors_the_leader_cluster() {
    let mut pair = start_pair().await;
    let leader = channel(&pair.leader).await;
    let follower = channel(&pair.follower).await;

    // Writes of every kind on the leader: identical data and revisions.
    for i in 0..20 {
        put(&leader, "default", &format!("k{i:02}"), &format!("v{i}")).await;
    }
    put(&leader, "default", "k03", "again").await;
    KvClient::new(leader.clone())
        .delete_range(DeleteRangeRequest {
            key: b"k05".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
    let txn = TxnRequest {
        compare: vec![Compare {
            result: compare::CompareResult::Equal as i32,
            target: compare::CompareTarget::Version as i32,
            key: b"k03".to_vec(),
            target_union: Some(compare::TargetUnion::Version(2)),
            ..Default::default()
        }],
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: b"txn".to_vec(),
                value: b"yes".to_vec(),
                ..Default::default()
            })),
        }],
        failure: vec![],
    };
    KvClient::new(leader.clone()).txn(txn).await.unwrap();
    assert_eq!(wait_same(&leader, &follower, "default").await, 24);

    // A write through the follower is there as soon as it is acknowledged.
    let rev = put(&follower, "default", "via-follower", "ryw").await;
    assert_eq!(rev, 25);
    let (local_rev, kvs) = dump(&follower, "default").await.unwrap();
    assert!(local_rev >= rev);
    let kv = kvs.iter().find(|kv| kv.key == b"via-follower").unwrap();
    assert_eq!((kv.mod_revision, kv.value.as_slice()), (rev, &b"ryw"[..]));
    wait_same(&leader, &follower, "default").await;

    // Table changes happen on the leader only, and are mirrored.
    let refused = TablesClient::new(follower.clone())
        .create(CreateTableRequest {
            name: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    TablesClient::new(leader.clone())
        .create(CreateTableRequest {
            name: "users".into(),
        })
        .await
        .unwrap();
    put(&leader, "users", "alice", "1").await;
    wait_tables(&follower, &["default", "users"]).await;
    assert_eq!(wait_same(&leader, &follower, "users").await, 2);

    // Re-created on the leader (a new epoch): the follower resyncs.
    let tables_api = || TablesClient::new(leader.clone());
    tables_api()
        .delete(DeleteTableRequest {
            name: "users".into(),
        })
        .await
        .unwrap();
    tables_api()
        .create(CreateTableRequest {
            name: "users".into(),
        })
        .await
        .unwrap();
    put(&leader, "users", "bob", "2").await;
    put(&leader, "users", "carol", "3").await;
    assert_eq!(wait_same(&leader, &follower, "users").await, 3);

    // Deleted on the leader: gone on the follower.
    tables_api()
        .delete(DeleteTableRequest {
            name: "users".into(),
        })
        .await
        .unwrap();
    wait_tables(&follower, &["default"]).await;

    // Status and metrics.
    let (code, body) = pair.follower.http_get("/replication/status").await;
    assert_eq!(code, 200);
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["role"], "follower");
    assert_eq!(doc["tables"]["default"]["state"], "tailing", "{body}");
    assert_eq!(doc["tables"]["default"]["leased"], true);
    assert_eq!(doc["tables"]["default"]["lag_entries"], 0);
    let grpc = ReplicationClient::new(follower.clone())
        .status(ReplicationStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(grpc.role, "follower");
    let default = grpc.tables.iter().find(|t| t.table == "default").unwrap();
    assert_eq!((default.state.as_str(), default.leased), ("tailing", true));
    assert_eq!(default.last_applied_index, default.last_available_index);
    let on_leader = ReplicationClient::new(leader.clone())
        .status(ReplicationStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(on_leader.role, "leader");
    assert!(on_leader.tables[0].last_available_index >= default.last_applied_index);
    let (_, metrics) = pair.follower.http_get("/metrics").await;
    assert!(metrics.contains("armada_replication_index{role=\"follower\",table=\"default\"}"));
    assert!(metrics.contains("armada_replication_leased{table=\"default\"} 1"));

    // The leader cluster disappears: reads go on, writes fail clearly, and
    // replication resumes when it is back.
    pair.leader.kill9();
    let (rev_then, _) = dump(&follower, "default").await.unwrap();
    assert_eq!(rev_then, 25);
    let down = KvClient::new(follower.clone())
        .put(PutRequest {
            key: b"x".to_vec(),
            value: b"y".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(down.code(), Code::Unavailable, "{down:?}");
    let (api, replication) = pair.leader_ports;
    pair.leader = start_leader(pair.dir.path(), api, replication, &[]);
    let leader = pair.leader.ready().await;
    put(&leader, "default", "after", "restart").await;
    assert_eq!(wait_same(&leader, &follower, "default").await, 26);
}

/// The nodes of `cluster` whose status says they hold `table`'s lease.
async fn lease_holders(cluster: &Cluster, table: &str) -> Vec<usize> {
    let mut holders = Vec::new();
    for id in cluster.up() {
        let (_, body) = cluster.server(id).http_get("/replication/status").await;
        let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
        if doc["tables"][table]["leased"] == true {
            holders.push(id);
        }
    }
    holders
}

/// Waits until exactly one running node holds `table`'s lease; returns it.
async fn wait_one_holder(cluster: &Cluster, table: &str) -> usize {
    for id in cluster.up() {
        cluster.channel(id).await; // serving, so its REST port is up
    }
    let what = format!("a single holder of {table}'s lease (the holders)");
    wait_until_every(
        &what,
        Duration::from_secs(60),
        POLL,
        async || match lease_holders(cluster, table).await[..] {
            [one] => Ok(one),
            ref holders => Err(holders.to_vec()),
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_lease_holder_hands_the_table_over() {
    let dir = tempfile::tempdir().unwrap();
    let (api, replication) = (free_port(), free_port());
    let leader_node = start_leader(dir.path(), api, replication, &[]);
    let leader = leader_node.ready().await;
    let mut followers = start_followers(replication, "2s");
    for i in 0..10 {
        put(&leader, "default", &format!("a{i}"), "x").await;
    }
    let holder = wait_one_holder(&followers, "default").await;
    for id in 1..=3 {
        wait_same(&leader, &followers.channel(id).await, "default").await;
    }
    // Idle for longer than the lease (the leader's stream says nothing for
    // seconds): the holder keeps renewing, nobody else takes over.
    let observe_until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < observe_until {
        assert_eq!(lease_holders(&followers, "default").await, [holder]);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A write through a node that does not hold the lease: read-your-writes
    // still holds there, as the holder's batches reach every node by Raft.
    let other = (1..=3).find(|id| *id != holder).unwrap();
    let via = followers.channel(other).await;
    let rev = put(&via, "default", "via-other", "1").await;
    let (_, kvs) = dump(&via, "default").await.unwrap();
    assert!(kvs
        .iter()
        .any(|kv| kv.key == b"via-other" && kv.mod_revision == rev));

    followers.kill9(holder);
    for i in 0..10 {
        put(&leader, "default", &format!("b{i}"), "y").await;
    }
    let next = wait_one_holder(&followers, "default").await;
    assert_ne!(next, holder);
    for id in followers.up() {
        wait_same(&leader, &followers.channel(id).await, "default").await;
    }
    followers.restart(holder);
    wait_same(&leader, &followers.channel(holder).await, "default").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_behind_compaction_recover_by_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (api, replication) = (free_port(), free_port());
    let leader_node = start_leader(
        dir.path(),
        api,
        replication,
        &["--raft.snapshot-entries=20", "--raft.compaction-overhead=5"],
    );
    let leader = leader_node.ready().await;
    for i in 0..100 {
        put(&leader, "default", &format!("old{i:03}"), &"x".repeat(100)).await;
    }
    // A new 3-node follower cluster: the leader's log no longer starts at 1.
    let mut followers = start_followers(replication, "2s");
    for id in 1..=3 {
        assert_eq!(
            wait_same(&leader, &followers.channel(id).await, "default").await,
            101
        );
    }
    // Then it tails the log again.
    put(&leader, "default", "tail", "1").await;
    for id in 1..=3 {
        wait_same(&leader, &followers.channel(id).await, "default").await;
    }

    // The whole follower cluster offline while the leader compacts past it.
    for id in 1..=3 {
        followers.kill9(id);
    }
    for i in 0..100 {
        put(&leader, "default", &format!("new{i:03}"), "y").await;
    }
    for id in 1..=3 {
        followers.restart(id);
    }
    // Until its copy of the recovered incarnation is in, every node keeps
    // serving the old one: reads never fail, never go back, never see empty.
    for id in 1..=3 {
        let ch = followers.channel(id).await;
        let what = format!("node {id} to recover");
        wait_until(&what, Duration::from_secs(30), async || {
            let (rev, kvs) = dump(&ch, "default")
                .await
                .expect("a read failed during recovery");
            assert!(rev == 102 || rev == 202, "node {id} served revision {rev}");
            assert!(kvs.len() >= 101, "node {id} served {} keys", kvs.len());
            (rev == 202).then_some(())
        })
        .await;
    }
    for id in 1..=3 {
        assert_eq!(
            wait_same(&leader, &followers.channel(id).await, "default").await,
            202
        );
    }
}

/// Writes a CA, a server certificate for 127.0.0.1 and a client
/// certificate, all signed by the CA, into `dir` (the `openssl` CLI).
fn make_certs(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=armada-test-ca",
    ]);
    for (name, usage) in [("server", "serverAuth"), ("client", "clientAuth")] {
        std::fs::write(
            dir.join(format!("{name}.ext")),
            format!(
                "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
                 keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage={usage}\n"
            ),
        )
        .unwrap();
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ]);
        run(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &format!("{name}.crt"),
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
        ]);
    }
}

/// A leader whose replication port serves TLS with `server.crt` (asking
/// client certificates of `ca.crt` when `mutual`), and a follower of it that
/// checks the leader against `ca.crt` (presenting `client.crt` when
/// `mutual`); returns the certificates' directory, both nodes and their
/// channels once the follower has replicated a first put.
async fn tls_pair(
    dir: &std::path::Path,
    replication: u16,
    mutual: bool,
) -> (std::path::PathBuf, [(Server, Channel); 2]) {
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    make_certs(&certs);
    let flag = |name: &str, file: &str| {
        format!(
            "--replication.{name}-filename={}",
            certs.join(file).display()
        )
    };
    let mut leader_flags = vec![
        "--replication.enabled".to_string(),
        format!("--replication.address=https://127.0.0.1:{replication}"),
        flag("cert", "server.crt"),
        flag("key", "server.key"),
    ];
    let mut follower_flags = vec![
        format!("--replication.leader-address=127.0.0.1:{replication}"),
        flag("ca", "ca.crt"),
        "--replication.reconcile-interval=300ms".to_string(),
        "--replication.poll-interval=100ms".to_string(),
    ];
    if mutual {
        leader_flags.push(flag("ca", "ca.crt"));
        follower_flags.push(flag("cert", "client.crt"));
        follower_flags.push(flag("key", "client.key"));
    }
    fn strs(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    let leader_node = Server::start(&dir.join("leader"), Ports::pick(), &strs(&leader_flags));
    let leader = leader_node.ready().await;
    let follower_node = Server::start_as(
        "follower",
        &dir.join("follower"),
        Ports::pick(),
        &strs(&follower_flags),
    );
    let follower = follower_node.ready().await;
    put(&leader, "default", "secret", "1").await;
    wait_same(&leader, &follower, "default").await;
    (certs, [(leader_node, leader), (follower_node, follower)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_over_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let replication = free_port();
    let (certs, _nodes) = tls_pair(dir.path(), replication, true).await;

    // Plaintext, and TLS without a client certificate, are both refused.
    use armada::pb::replication::metadata_client::MetadataClient;
    use armada::pb::replication::MetadataRequest;
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
    let plain = Endpoint::from_shared(format!("http://127.0.0.1:{replication}"))
        .unwrap()
        .connect_lazy();
    assert!(MetadataClient::new(plain)
        .get(MetadataRequest {})
        .await
        .is_err());
    let ca = Certificate::from_pem(std::fs::read(certs.join("ca.crt")).unwrap());
    let anonymous = Endpoint::from_shared(format!("https://127.0.0.1:{replication}"))
        .unwrap()
        .tls_config(ClientTlsConfig::new().ca_certificate(ca))
        .unwrap()
        .connect_lazy();
    assert!(MetadataClient::new(anonymous)
        .get(MetadataRequest {})
        .await
        .is_err());
}

/// Server-only TLS on the replication port: the leader presents a
/// certificate and asks for none; the follower checks it against the CA
/// (`--replication.ca-filename` alone) and replicates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_over_server_only_tls() {
    let dir = tempfile::tempdir().unwrap();
    tls_pair(dir.path(), free_port(), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_committed_upstream_but_not_replicated_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (api, replication) = (free_port(), free_port());
    let leader_node = start_leader(dir.path(), api, replication, &[]);
    let leader = leader_node.ready().await;
    // A long lease: with its holder frozen, nobody replicates the table.
    let followers = start_followers(replication, "120s");
    put(&leader, "default", "before", "1").await;
    let holder = wait_one_holder(&followers, "default").await;
    let other = (1..=3).find(|id| *id != holder).unwrap();
    let via = followers.channel(other).await;
    wait_same(&leader, &via, "default").await;

    followers.server(holder).signal("STOP");
    let err = KvClient::new(via.clone())
        .put(PutRequest {
            key: b"stuck".to_vec(),
            value: b"1".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    followers.server(holder).signal("CONT");
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(
        err.message()
            .contains("committed on the leader cluster at revision 3"),
        "{}",
        err.message()
    );
    // It did commit upstream, and arrives once replication resumes.
    let (_, kvs) = dump(&leader, "default").await.unwrap();
    assert!(kvs.iter().any(|kv| kv.key == b"stuck"));
    wait_same(&leader, &via, "default").await;
}

/// All keys of the table from revision 1, with prev_kv.
fn everything_from_1() -> WatchCreateRequest {
    WatchCreateRequest {
        key: vec![0],
        range_end: vec![0],
        start_revision: 1,
        prev_kv: true,
        ..Default::default()
    }
}

/// The table the follower watch test uses (the default one cannot be deleted).
const TABLE: &str = "w";

/// A mix of writes: puts, overwrites, a multi-key txn, a prefix delete.
async fn write_mix(ch: &Channel, round: usize) -> i64 {
    for i in 0..5 {
        put(ch, TABLE, &format!("r{round}/k{i}"), &format!("v{i}")).await;
    }
    put(ch, TABLE, &format!("r{round}/k0"), "again").await;
    let op = |key: String| RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: key.into(),
            value: b"txn".to_vec(),
            ..Default::default()
        })),
    };
    KvClient::new(ch.clone())
        .txn(in_table(
            TABLE,
            TxnRequest {
                success: vec![op(format!("r{round}/t1")), op(format!("r{round}/t2"))],
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let del = DeleteRangeRequest {
        key: format!("r{round}/k").into(),
        range_end: format!("r{round}/l").into(),
        ..Default::default()
    };
    let resp = KvClient::new(ch.clone())
        .delete_range(in_table(TABLE, del))
        .await
        .unwrap();
    resp.into_inner().header.unwrap().revision
}

/// A watcher on a follower cluster sees exactly what a watcher on the
/// leader sees (revisions, keys, values, prev_kv, one revision never
/// split), including writes made through the follower and across a
/// recovery by snapshot while the watch stays open; a table re-created on
/// the leader cancels the follower's watchers with the compaction signal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_watchers_see_the_leaders_events() {
    let dir = tempfile::tempdir().unwrap();
    let (api, replication) = (free_port(), free_port());
    let leader_node = start_leader(
        dir.path(),
        api,
        replication,
        &["--raft.snapshot-entries=20", "--raft.compaction-overhead=5"],
    );
    let leader = leader_node.ready().await;
    let follower_node = start_follower(dir.path(), replication);
    let follower = follower_node.ready().await;
    TablesClient::new(leader.clone())
        .create(CreateTableRequest { name: TABLE.into() })
        .await
        .unwrap();
    wait_tables(&follower, &["default", TABLE]).await;
    wait_same(&leader, &follower, TABLE).await;
    let on_leader = Recorder::start(&leader, Some(TABLE), everything_from_1()).await;
    let on_follower = Recorder::start(&follower, Some(TABLE), everything_from_1()).await;

    write_mix(&leader, 0).await;
    put(&follower, TABLE, "through-follower", "1").await;
    let mut last = write_mix(&leader, 1).await;
    on_leader.wait_through(last).await;
    on_follower.wait_through(last).await;
    assert_eq!(on_follower.revisions(), on_leader.revisions());

    // Freeze the follower while the leader's log moves past it (more than
    // the replication stream buffers), so that it recovers by snapshot (a
    // new incarnation) with its watch open.
    let incarnation = || {
        let dir = dir.path().join("follower/raft/snapshots");
        let names = std::fs::read_dir(dir).unwrap().flatten();
        let mut names: Vec<String> = (names.map(|e| e.file_name().to_string_lossy().into_owned()))
            .filter(|n| n.starts_with(&format!("{TABLE}.")))
            .collect();
        names.sort();
        names
    };
    let before = incarnation();
    follower_node.signal("STOP");
    for round in 2..12 {
        for i in 0..30 {
            // Deleted again by write_mix's prefix delete.
            put(
                &leader,
                TABLE,
                &format!("r{round}/kbig{i}"),
                &"b".repeat(32 << 10),
            )
            .await;
        }
        last = write_mix(&leader, round).await;
    }
    follower_node.signal("CONT");
    wait_same(&leader, &follower, TABLE).await;
    assert_ne!(
        incarnation(),
        before,
        "the follower did not recover by snapshot"
    );
    on_leader.wait_through(last).await;
    on_follower.wait_through(last).await;
    let (want, got) = (on_leader.revisions(), on_follower.revisions());
    assert_eq!(got.len(), want.len());
    assert_eq!(got, want);
    assert!(
        want.iter().any(|(_, evs)| evs.len() > 1),
        "no multi-event revision"
    );

    // A new incarnation of the table on the leader is another history.
    TablesClient::new(leader.clone())
        .delete(DeleteTableRequest { name: TABLE.into() })
        .await
        .unwrap();
    TablesClient::new(leader.clone())
        .create(CreateTableRequest { name: TABLE.into() })
        .await
        .unwrap();
    let canceled = wait_until(
        "the follower's watcher to be canceled",
        Duration::from_secs(30),
        async || on_follower.canceled(),
    )
    .await;
    assert!(
        canceled.compact_revision > 0 || !canceled.cancel_reason.is_empty(),
        "{canceled:?}"
    );
    assert_eq!(on_follower.revisions(), want, "events after the cancel");
}

/// Read-your-writes across a table re-created on the leader cluster: the
/// new incarnation's revisions start again, below the old one's, so a write
/// through the follower is confirmed only once the follower holds the
/// incarnation that applied it (its epoch), not merely a revision that high.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_your_writes_holds_across_a_re_created_table() {
    let dir = tempfile::tempdir().unwrap();
    let (api, replication) = (free_port(), free_port());
    let leader_node = start_leader(dir.path(), api, replication, &[]);
    let leader = leader_node.ready().await;
    let tables_api = || TablesClient::new(leader.clone());
    let users = || CreateTableRequest {
        name: "users".into(),
    };
    tables_api().create(users()).await.unwrap();
    for i in 0..30 {
        put(&leader, "users", &format!("old/{i}"), "v").await;
    }
    // The follower learns the table at start and reconciles its table list
    // only rarely, so it never mirrors the deletion below; and it retries
    // slowly after the old incarnation's stream ends, so it serves the old
    // incarnation for seconds after the re-creation.
    let follower_node = Server::start_as(
        "follower",
        &dir.path().join("follower"),
        Ports::pick(),
        &[
            &format!("--replication.leader-address=127.0.0.1:{replication}"),
            "--replication.reconcile-interval=60s",
            "--replication.poll-interval=3s",
            "--replication.lease-interval=3s",
        ],
    );
    let follower = follower_node.ready().await;
    wait_tables(&follower, &["default", "users"]).await;
    assert_eq!(wait_same(&leader, &follower, "users").await, 31);

    let delete = DeleteTableRequest {
        name: "users".into(),
    };
    tables_api().delete(delete).await.unwrap();
    tables_api().create(users()).await.unwrap();
    let revision = put(&follower, "users", "new", "1").await;
    assert_eq!(revision, 2, "the new incarnation's first write");
    let read = KvClient::new(follower.clone())
        .range(in_table(
            "users",
            RangeRequest {
                key: b"new".to_vec(),
                serializable: true,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        read.kvs.len(),
        1,
        "the follower's own write, read back: {read:?}"
    );
    assert_eq!(read.header.unwrap().revision, 2);
}
