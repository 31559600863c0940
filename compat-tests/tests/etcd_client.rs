//! A real Rust client, the `etcd-client` crate, against Armada (and, with
//! identical assertions, against real etcd when installed): KV round trips,
//! ranged gets with prefix/limit/sort, compare-and-swap txns, compaction,
//! and Status / MemberList / Alarm / HashKV sanity.

use compat_tests::server::Server;
use compat_tests::suite::{require_etcd, skip_armada};
use etcd_client::{
    AlarmAction, AlarmType, Client, Compare, CompareOp, DeleteOptions, Error, GetOptions,
    PutOptions, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse,
};

fn keys(kvs: &[etcd_client::KeyValue]) -> Vec<String> {
    kvs.iter()
        .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
        .collect()
}

fn grpc_status(err: Error) -> tonic::Status {
    match err {
        Error::GRpcStatus(s) => s,
        other => panic!("expected a gRPC status, got {other:?}"),
    }
}

/// Every assertion of this file, run against one fresh server.
async fn exercise(server: &Server, version_prefix: &str) {
    let ep = server.endpoint();
    let mut c = Client::connect([ep.as_str()], None)
        .await
        .unwrap_or_else(|e| panic!("{}: connect: {e}", server.kind()));

    // Put / get: a fresh store is at revision 1, the first write gets 2.
    let r = c.put("k1", "v1", None).await.expect("put k1");
    assert_eq!(r.header().expect("put header").revision(), 2);
    let r = c.get("k1", None).await.expect("get k1");
    assert_eq!(r.count(), 1);
    let kv = &r.kvs()[0];
    assert_eq!((kv.key(), kv.value()), (&b"k1"[..], &b"v1"[..]));
    assert_eq!(
        (kv.create_revision(), kv.mod_revision(), kv.version()),
        (2, 2, 1)
    );
    let r = c
        .put("k1", "v2", Some(PutOptions::new().with_prev_key()))
        .await
        .expect("put k1 prev_kv");
    assert_eq!(r.prev_key().expect("prev kv").value(), b"v1");
    assert_eq!(r.header().unwrap().revision(), 3);

    // Ranged gets: prefix, limit (count unaffected), sort.
    for (k, v) in [("p/a", "3"), ("p/b", "1"), ("p/c", "2")] {
        c.put(k, v, None).await.expect("put p/*");
    }
    let r = c
        .get("p/", Some(GetOptions::new().with_prefix()))
        .await
        .expect("get prefix");
    assert_eq!(keys(r.kvs()), ["p/a", "p/b", "p/c"]);
    assert_eq!((r.count(), r.more()), (3, false));
    let r = c
        .get("p/", Some(GetOptions::new().with_prefix().with_limit(2)))
        .await
        .expect("get limit");
    assert_eq!(keys(r.kvs()), ["p/a", "p/b"]);
    assert_eq!((r.count(), r.more()), (3, true));
    let r = c
        .get(
            "p/",
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_sort(SortTarget::Value, SortOrder::Descend),
            ),
        )
        .await
        .expect("get sort by value");
    assert_eq!(keys(r.kvs()), ["p/a", "p/c", "p/b"]);
    let r = c
        .get(
            "p/",
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_sort(SortTarget::Key, SortOrder::Descend)
                    .with_limit(1),
            ),
        )
        .await
        .expect("get sort by key desc");
    assert_eq!(keys(r.kvs()), ["p/c"]);
    assert_eq!(r.count(), 3);

    // Txn compare-and-swap: first succeeds, second takes the else branch.
    let cas = |new: &str| {
        Txn::new()
            .when([Compare::value("k1", CompareOp::Equal, "v2")])
            .and_then([TxnOp::put("k1", new, None)])
            .or_else([TxnOp::get("k1", None)])
    };
    let r = c.txn(cas("v3")).await.expect("txn 1");
    assert!(r.succeeded());
    assert_eq!(r.header().unwrap().revision(), 7);
    let r = c.txn(cas("v4")).await.expect("txn 2");
    assert!(!r.succeeded());
    match &r.op_responses()[..] {
        [TxnOpResponse::Get(g)] => assert_eq!(g.kvs()[0].value(), b"v3"),
        other => panic!("unexpected txn responses {other:?}"),
    }
    let r = c
        .txn(
            Txn::new()
                .when([Compare::create_revision("lock", CompareOp::Equal, 0)])
                .and_then([TxnOp::put("lock", "me", None)]),
        )
        .await
        .expect("txn create-if-absent");
    assert!(r.succeeded());

    // Delete with prefix and prev_kv.
    let r = c
        .delete(
            "p/",
            Some(DeleteOptions::new().with_prefix().with_prev_key()),
        )
        .await
        .expect("delete prefix");
    assert_eq!(r.deleted(), 3);
    assert_eq!(keys(r.prev_kvs()), ["p/a", "p/b", "p/c"]);
    let rev = r.header().unwrap().revision();
    assert_eq!(rev, 9);

    // Compaction, then reading below it fails with OutOfRange.
    c.compact(rev, None).await.expect("compact");
    let st = grpc_status(
        c.get("k1", Some(GetOptions::new().with_revision(3)))
            .await
            .expect_err("read below compaction"),
    );
    assert_eq!(st.code(), tonic::Code::OutOfRange);
    assert_eq!(
        st.message(),
        "etcdserver: mvcc: required revision has been compacted"
    );
    let st = grpc_status(c.compact(rev, None).await.expect_err("compact again"));
    assert_eq!(st.code(), tonic::Code::OutOfRange);
    let r = c
        .get("k1", Some(GetOptions::new().with_revision(rev)))
        .await
        .expect("read at compact revision");
    assert_eq!(r.kvs()[0].value(), b"v3");

    // Maintenance and cluster sanity.
    let status = c.status().await.expect("status");
    assert!(
        status.version().starts_with(version_prefix),
        "{}: status.version {:?} should start with {version_prefix:?}",
        server.kind(),
        status.version()
    );
    assert!(status.db_size() > 0, "db_size must be > 0");
    let member_id = status.header().expect("status header").member_id();
    assert_ne!(member_id, 0);
    assert_eq!(status.leader(), member_id, "single node must lead");
    assert!(status.raft_term() > 0);
    assert!(status.raft_index() > 0);

    let members = c.member_list().await.expect("member list");
    assert_eq!(members.members().len(), 1, "{:?}", members.members());
    let m = &members.members()[0];
    assert_eq!(m.id(), member_id);
    assert!(!m.name().is_empty(), "a started member has a name");
    assert!(
        m.client_urls().contains(&ep),
        "client_urls {:?} should contain {ep}",
        m.client_urls()
    );

    let alarms = c
        .alarm(AlarmAction::Get, AlarmType::None, None)
        .await
        .expect("alarm get");
    assert_eq!(alarms.alarms().len(), 0, "no alarms on a fresh server");

    let h = c.hash_kv(0).await.expect("hash kv");
    assert_eq!(h.compact_version(), rev);
    assert_eq!(h.header().unwrap().revision(), rev);
    let h2 = c.hash_kv(0).await.expect("hash kv again");
    assert_eq!(h.hash(), h2.hash(), "hash is stable without writes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_client_against_etcd() {
    if !require_etcd() {
        return;
    }
    let server = Server::etcd();
    exercise(&server, "3.4.").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_client_against_armada() {
    if skip_armada() {
        eprintln!("notice: COMPAT_SKIP_ARMADA set; skipping the Armada half");
        return;
    }
    let server = Server::armada();
    exercise(&server, "3.5.").await;
}
