//! The REST port of a real `armada` process: `/healthz` and `/readyz` check
//! that the default table has a raft leader and its storage answers, and
//! `/metrics` is Prometheus text with per-table gauges.

mod common;

use armada::pb::etcdserverpb::kv_client::KvClient;
use armada::pb::etcdserverpb::PutRequest;
use common::{Ports, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), Ports::pick(), &[]);
    let ch = server.ready().await;
    KvClient::new(ch)
        .put(PutRequest {
            key: b"a".to_vec(),
            value: b"b".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();

    for path in ["/healthz", "/readyz"] {
        let (code, body) = server.http_get(path).await;
        assert_eq!(code, 200, "{path}: {body}");
        assert_eq!(body, "ok revision=2\n", "{path}");
    }
    let (code, body) = server.http_get("/metrics").await;
    assert_eq!(code, 200, "{body}");
    for line in [
        "# TYPE armada_table_revision gauge",
        "armada_table_revision{table=\"default\"} 2",
        "armada_raft_is_leader{table=\"default\"} 1",
        "armada_alarm_nospace{table=\"default\"} 0",
    ] {
        assert!(
            body.lines().any(|l| l == line),
            "missing {line:?} in\n{body}"
        );
    }
    let (code, _) = server.http_get("/nope").await;
    assert_eq!(code, 404);
}
