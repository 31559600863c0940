//! Shared harness for the integration tests: starts real `armada` processes
//! on loopback ports chosen at run time, waits on conditions (never fixed
//! sleeps) and kills every process it started, by pid, when dropped.

#![allow(dead_code)] // each test binary uses a different part of it

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use armada::pb::etcdserverpb::maintenance_client::MaintenanceClient;
use armada::pb::etcdserverpb::StatusRequest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The ports one node listens on; kept across restarts of the same node.
#[derive(Clone, Copy)]
pub struct Ports {
    pub api: u16,
    pub rest: u16,
    pub raft: u16,
}

impl Ports {
    pub fn pick() -> Ports {
        Ports {
            api: free_port(),
            rest: free_port(),
            raft: free_port(),
        }
    }
}

/// One `armada leader` process.
pub struct Server {
    child: Child,
    pub ports: Ports,
    pub endpoint: String,
}

impl Server {
    pub fn start(data: &Path, ports: Ports, extra: &[&str]) -> Server {
        let child = Command::new(env!("CARGO_BIN_EXE_armada"))
            .args(["leader", "--data-dir"])
            .arg(data)
            .arg(format!("--api.address=http://127.0.0.1:{}", ports.api))
            .arg(format!("--rest.address=http://127.0.0.1:{}", ports.rest))
            .arg(format!("--raft.address=127.0.0.1:{}", ports.raft))
            .arg("--raft.election-rtt=4")
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start armada");
        Server {
            child,
            endpoint: format!("http://127.0.0.1:{}", ports.api),
            ports,
        }
    }

    /// Waits until the node answers `Maintenance.Status`, and returns a channel to it.
    pub async fn ready(&self) -> Channel {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(ch) = Channel::from_shared(self.endpoint.clone())
                .unwrap()
                .connect()
                .await
            {
                if MaintenanceClient::new(ch.clone())
                    .status(StatusRequest {})
                    .await
                    .is_ok()
                {
                    return ch;
                }
            }
            assert!(Instant::now() < deadline, "armada did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL (std's `Child::kill` is SIGKILL on Unix) and reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `GET path` on the REST port: (status code, body).
    pub async fn http_get(&self, path: &str) -> (u16, String) {
        let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", self.ports.rest))
            .await
            .expect("connect REST port");
        let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        conn.write_all(req.as_bytes()).await.unwrap();
        let mut raw = String::new();
        conn.read_to_string(&mut raw).await.unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").expect("HTTP response");
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("HTTP status line");
        (status, body.to_string())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}
