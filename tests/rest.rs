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

/// `--rest.read-timeout`: a client that does not finish sending a
/// request's headers in time is disconnected; a prompt one is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trickling_headers_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::pick();
    let server = Server::start(dir.path(), ports, &["--rest.read-timeout=300ms"]);
    server.ready().await;
    let mut slow = tokio::net::TcpStream::connect(("127.0.0.1", ports.rest))
        .await
        .unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Without the timeout the server would wait forever for the blank line.
    let mut buf = [0u8; 256];
    let read = tokio::time::timeout(std::time::Duration::from_secs(30), slow.read(&mut buf))
        .await
        .expect("the server kept a half-sent request open");
    // Closed: an end of stream, a reset, or a 408 before the close.
    if let Ok(n) = read {
        let answer = String::from_utf8_lossy(&buf[..n]);
        assert!(n == 0 || answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
    let (code, body) = server.http_get("/healthz").await;
    assert_eq!(code, 200, "{body}");
}
