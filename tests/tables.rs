//! Tables over gRPC against a real `armada` process: `armada.v1.Tables`
//! create/list/delete, routing by the `armada-table` metadata, separate
//! revision spaces per table, `NotFound` for unknown tables, and that a
//! deleted table's data is gone when it is created again.

mod common;

use armada::pb::armada::tables_client::TablesClient;
use armada::pb::armada::{CreateTableRequest, DeleteTableRequest, ListTablesRequest};
use armada::pb::etcdserverpb::kv_client::KvClient;
use armada::pb::etcdserverpb::{PutRequest, RangeRequest, RangeResponse};
use common::{Ports, Server};
use tonic::transport::Channel;
use tonic::{Code, Request};

fn for_table<T>(table: Option<&str>, msg: T) -> Request<T> {
    let mut req = Request::new(msg);
    if let Some(t) = table {
        req.metadata_mut()
            .insert("armada-table", t.parse().unwrap());
    }
    req
}

async fn put(ch: &Channel, table: Option<&str>, key: &str, value: &str) -> i64 {
    KvClient::new(ch.clone())
        .put(for_table(
            table,
            PutRequest {
                key: key.into(),
                value: value.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .header
        .unwrap()
        .revision
}

async fn get(ch: &Channel, table: Option<&str>, key: &str) -> Result<RangeResponse, tonic::Status> {
    KvClient::new(ch.clone())
        .range(for_table(
            table,
            RangeRequest {
                key: key.into(),
                ..Default::default()
            },
        ))
        .await
        .map(|r| r.into_inner())
}

async fn names(ch: &Channel) -> Vec<String> {
    TablesClient::new(ch.clone())
        .list(ListTablesRequest {})
        .await
        .unwrap()
        .into_inner()
        .tables
        .into_iter()
        .map(|t| t.name)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_are_separate_keyspaces() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::pick();
    let mut server = Server::start(dir.path(), ports, &[]);
    let ch = server.ready().await;
    let mut tables = TablesClient::new(ch.clone());

    assert_eq!(names(&ch).await, ["default"]);
    let created = tables
        .create(CreateTableRequest {
            name: "orders".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .table
        .unwrap();
    assert_eq!(created.name, "orders");
    assert!(created.epoch > 0);
    let err = tables
        .create(CreateTableRequest {
            name: "orders".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    let err = tables
        .create(CreateTableRequest {
            name: "../etc".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert_eq!(names(&ch).await, ["default", "orders"]);

    // Each table counts its own revisions from 1; no metadata means `default`.
    assert_eq!(put(&ch, None, "k", "in-default").await, 2);
    assert_eq!(put(&ch, Some("default"), "k2", "x").await, 3);
    assert_eq!(put(&ch, Some("orders"), "k", "in-orders").await, 2);
    let d = get(&ch, None, "k").await.unwrap();
    assert_eq!(d.kvs[0].value, b"in-default");
    assert_eq!(d.header.unwrap().revision, 3);
    let o = get(&ch, Some("orders"), "k").await.unwrap();
    assert_eq!(o.kvs[0].value, b"in-orders");
    assert_eq!(o.kvs[0].mod_revision, 2);
    assert_eq!(o.header.unwrap().revision, 2);
    assert!(get(&ch, Some("orders"), "k2").await.unwrap().kvs.is_empty());

    let err = get(&ch, Some("nope"), "k").await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(err.message().contains("nope"), "{err:?}");

    // Tables survive a restart.
    server.kill9();
    let server = Server::start(dir.path(), ports, &[]);
    let ch = server.ready().await;
    let mut tables = TablesClient::new(ch.clone());
    assert_eq!(names(&ch).await, ["default", "orders"]);
    assert_eq!(
        get(&ch, Some("orders"), "k").await.unwrap().kvs[0].value,
        b"in-orders"
    );

    // The default table cannot be deleted; others can, and their data goes with them.
    let err = tables
        .delete(DeleteTableRequest {
            name: "default".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    tables
        .delete(DeleteTableRequest {
            name: "orders".into(),
        })
        .await
        .unwrap();
    let err = tables
        .delete(DeleteTableRequest {
            name: "orders".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert_eq!(
        get(&ch, Some("orders"), "k").await.unwrap_err().code(),
        Code::NotFound
    );
    let again = tables
        .create(CreateTableRequest {
            name: "orders".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .table
        .unwrap();
    assert_ne!(
        again.epoch, created.epoch,
        "a re-created table is a new incarnation"
    );
    let fresh = get(&ch, Some("orders"), "k").await.unwrap();
    assert!(fresh.kvs.is_empty());
    assert_eq!(fresh.header.unwrap().revision, 1);
}

/// Overwrites both LMDB meta pages of every `data.mdb` under `dir`.
fn corrupt_lmdb_files(dir: &std::path::Path) -> usize {
    let mut corrupted = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            corrupted += corrupt_lmdb_files(&path);
        } else if path.file_name().is_some_and(|n| n == "data.mdb") {
            use std::io::{Seek, Write};
            let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            f.seek(std::io::SeekFrom::Start(0)).unwrap();
            f.write_all(&[0xab; 16 << 10]).unwrap();
            corrupted += 1;
        }
    }
    corrupted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_that_fails_to_open_leaves_the_others_serving() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::pick();
    let mut server = Server::start(dir.path(), ports, &[]);
    let ch = server.ready().await;
    for name in ["broken", "fine"] {
        let create = CreateTableRequest { name: name.into() };
        TablesClient::new(ch.clone()).create(create).await.unwrap();
        put(&ch, Some(name), "k", name).await;
    }
    put(&ch, None, "k", "default").await;
    server.kill9();
    let sm_dirs = std::fs::read_dir(dir.path().join("state-machine")).unwrap();
    let broken = sm_dirs
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("broken.")
        })
        .expect("the broken table's state machine directory");
    assert_eq!(corrupt_lmdb_files(&broken), 1);

    // The node starts; every other table serves; the broken one answers
    // Unavailable with the reason, and metrics show it.
    let server = Server::start(dir.path(), ports, &[]);
    let ch = server.ready().await;
    for table in [None, Some("fine")] {
        let kv = get(&ch, table, "k").await.unwrap().kvs;
        assert_eq!(kv[0].value, table.unwrap_or("default").as_bytes());
    }
    let err = get(&ch, Some("broken"), "k").await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(
        err.message().contains("\"broken\" is unavailable"),
        "{err:?}"
    );
    let (_, metrics) = server.http_get("/metrics").await;
    assert!(
        metrics.contains("armada_table_open_failed{table=\"broken\"} 1"),
        "{metrics}"
    );
    // Nothing was deleted as stale: the broken table's files are still there.
    assert!(broken.join("data.mdb").exists());
    assert_eq!(names(&ch).await, ["broken", "default", "fine"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_count_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), Ports::pick(), &["--tables.max=3"]);
    let ch = server.ready().await;
    let create = |name: &str| {
        let mut tables = TablesClient::new(ch.clone());
        let req = CreateTableRequest { name: name.into() };
        async move { tables.create(req).await }
    };
    create("a").await.unwrap();
    create("b").await.unwrap();
    let err = create("c").await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("--tables.max"), "{err:?}");
    assert_eq!(names(&ch).await, ["a", "b", "default"]);
    // Deleting one makes room again.
    TablesClient::new(ch.clone())
        .delete(DeleteTableRequest { name: "a".into() })
        .await
        .unwrap();
    create("c").await.unwrap();
}
