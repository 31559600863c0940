//! Shared harness for the integration tests: starts real `armada` processes
//! on loopback ports chosen at run time, waits on conditions (never fixed
//! sleeps) and kills every process it started, by pid, when dropped.

#![allow(dead_code)] // each test binary uses a different part of it

pub mod replication;
pub mod seed;
pub mod watch;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use armada::pb::etcdserverpb::maintenance_client::MaintenanceClient;
use armada::pb::etcdserverpb::StatusRequest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;

/// A port no one listens on, for a node to bind later.
///
/// Ports come from below Linux's ephemeral range (32768 and up by
/// default): a number the kernel handed out for port 0 could meanwhile be
/// taken as the source port of any outgoing connection (clients, raft
/// peers), and the node starting later on it would fail to bind. Each test
/// process starts at its own offset and never hands out a number twice.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 10_000;
    const SPAN: u32 = 22_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(2_654_435_761) % SPAN,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {LOW}..{}", LOW + SPAN);
}

/// How often [`wait_until`] polls.
pub const POLL: Duration = Duration::from_millis(20);

/// Polls `probe` every 20 ms until it returns `Some`, and returns that;
/// fails the test, saying `what`, after `timeout`.
pub async fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> T {
    wait_until_every(what, timeout, POLL, async || probe().await.ok_or(NotYet)).await
}

/// What a [`wait_until`] probe that is not done yet has to say.
#[derive(Debug)]
struct NotYet;

/// [`wait_until`], polling every `every`, for a probe that says what it saw
/// instead: it returns `Err(seen)` until the condition holds, and the
/// failure after `timeout` reports the last `seen`. `every` is [`POLL`]
/// unless the probe must not hammer the servers (longer) or paces itself
/// (`Duration::ZERO`).
pub async fn wait_until_every<T, E: std::fmt::Debug>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut probe: impl AsyncFnMut() -> Result<T, E>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match probe().await {
            Ok(done) => return done,
            Err(seen) => assert!(
                Instant::now() < deadline,
                "timed out waiting: {what}; last probe: {seen:?}"
            ),
        }
        tokio::time::sleep(every).await;
    }
}

/// Where a node's log goes: with `ARMADA_TEST_LOG=<level>` set (to debug a
/// failed test), `$TMPDIR/armada-test-logs/<pid>-<name>.log`, which outlives
/// the test's temporary data; else nowhere.
pub fn log_sink(name: &str) -> Stdio {
    if std::env::var_os("ARMADA_TEST_LOG").is_none() {
        return Stdio::null();
    }
    let dir = std::env::temp_dir().join("armada-test-logs");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("{}-{name}.log", std::process::id()));
    match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
    {
        Ok(f) => {
            eprintln!("node log: {}", path.display());
            Stdio::from(f)
        }
        Err(_) => Stdio::null(),
    }
}

/// Every key under `prefix` on one node, read locally (serializable): what
/// that node has applied. `""` means every key.
pub async fn local_keys(ch: &Channel, prefix: &str) -> std::collections::HashMap<String, String> {
    use armada::pb::etcdserverpb::kv_client::KvClient;
    use armada::pb::etcdserverpb::RangeRequest;
    let (key, end) = match prefix {
        "" => (vec![0], vec![0]),
        p => (p.as_bytes().to_vec(), format!("{p}\u{7f}").into_bytes()),
    };
    KvClient::new(ch.clone())
        .max_decoding_message_size(usize::MAX)
        .range(RangeRequest {
            key,
            range_end: end,
            serializable: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .kvs
        .into_iter()
        .map(|kv| {
            (
                String::from_utf8(kv.key).unwrap(),
                String::from_utf8(kv.value).unwrap(),
            )
        })
        .collect()
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
    /// How [`Server::ready`] reaches a TLS API port (see [`Server::with_tls`]).
    tls: Option<tonic::transport::ClientTlsConfig>,
}

impl Server {
    pub fn start(data: &Path, ports: Ports, extra: &[&str]) -> Server {
        Server::start_as("leader", data, ports, extra)
    }

    /// `armada <role>` (`leader` or `follower`) with the given ports.
    pub fn start_as(role: &str, data: &Path, ports: Ports, extra: &[&str]) -> Server {
        let child = Command::new(env!("CARGO_BIN_EXE_armada"))
            .args([role, "--data-dir"])
            .arg(data)
            .arg(format!("--api.address=http://127.0.0.1:{}", ports.api))
            .arg(format!("--rest.address=http://127.0.0.1:{}", ports.rest))
            .arg(format!("--raft.address=127.0.0.1:{}", ports.raft))
            .arg("--raft.election-rtt=4")
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("ARMADA_TEST_LOG").unwrap_or("warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(log_sink(
                &data
                    .file_name()
                    .map_or("node".into(), |n| n.to_string_lossy()),
            ))
            .spawn()
            .expect("start armada");
        Server {
            child,
            endpoint: format!("http://127.0.0.1:{}", ports.api),
            ports,
            tls: None,
        }
    }

    /// For a node started with `--api.address=https://...`: its endpoint is
    /// `https://` and [`Server::ready`] connects with `tls`.
    pub fn with_tls(mut self, tls: tonic::transport::ClientTlsConfig) -> Server {
        self.endpoint = format!("https://127.0.0.1:{}", self.ports.api);
        self.tls = Some(tls);
        self
    }

    /// Waits until the node answers `Maintenance.Status`, and returns a channel to it.
    pub async fn ready(&self) -> Channel {
        let what = format!("armada at {} to answer Status", self.endpoint);
        wait_until(&what, Duration::from_secs(30), async || {
            let mut endpoint = Channel::from_shared(self.endpoint.clone()).unwrap();
            if let Some(tls) = &self.tls {
                endpoint = endpoint.tls_config(tls.clone()).unwrap();
            }
            let ch = endpoint.connect().await.ok()?;
            MaintenanceClient::new(ch.clone())
                .status(StatusRequest {})
                .await
                .ok()
                .map(|_| ch)
        })
        .await
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`) to the process.
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([format!("-{signal}"), self.pid().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{signal} {}", self.pid());
    }

    /// True once the process has exited (reaped).
    pub fn exited(&mut self) -> bool {
        self.child.try_wait().expect("wait on armada").is_some()
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

/// N real `armada` processes forming one cluster on loopback. Nodes are
/// numbered from 1 (their raft node id); index `i` in methods is that id.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    nodes: Vec<(Ports, Option<Server>)>,
    members: String,
    /// `leader` or `follower`.
    role: &'static str,
    extra: Vec<String>,
}

/// Raft timing for tests: 20 ms ticks, heartbeat 100 ms, election 600-800 ms.
/// openraft times an AppendEntries out after one heartbeat interval, and
/// debug builds of three nodes on two cores need that much headroom.
pub const FAST_RAFT: [&str; 3] = [
    "--raft.rtt=20ms",
    "--raft.heartbeat-rtt=5",
    "--raft.election-rtt=30",
];

impl Cluster {
    pub fn start(n: usize, extra: &[&str]) -> Cluster {
        Cluster::start_as("leader", n, extra)
    }

    /// A cluster of `armada <role>` nodes (`leader` or `follower`).
    pub fn start_as(role: &'static str, n: usize, extra: &[&str]) -> Cluster {
        let ports: Vec<Ports> = (0..n).map(|_| Ports::pick()).collect();
        let members = ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}=127.0.0.1:{}", i + 1, p.raft))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster {
            dir: tempfile::tempdir().unwrap(),
            nodes: ports.into_iter().map(|p| (p, None)).collect(),
            members,
            role,
            extra: FAST_RAFT
                .iter()
                .chain(extra)
                .map(|s| s.to_string())
                .collect(),
        };
        for id in 1..=n {
            cluster.restart(id);
        }
        cluster
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn data_dir(&self, id: usize) -> std::path::PathBuf {
        self.dir.path().join(format!("node{id}"))
    }

    /// (Re)starts node `id` on its data directory and ports.
    pub fn restart(&mut self, id: usize) {
        self.restart_with(id, &[]);
    }

    /// (Re)starts node `id` with `extra` flags besides the cluster's.
    pub fn restart_with(&mut self, id: usize, extra: &[&str]) {
        let data = self.data_dir(id);
        let ports = self.nodes[id - 1].0;
        let mut args = vec![
            format!("--raft.node-id={id}"),
            format!("--raft.initial-members={}", self.members),
            format!("--name=node{id}"),
        ];
        args.extend(self.extra.iter().cloned());
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.nodes[id - 1].1 = Some(Server::start_as(self.role, &data, ports, &args));
    }

    pub fn kill9(&mut self, id: usize) {
        if let Some(mut s) = self.nodes[id - 1].1.take() {
            s.kill9();
        }
    }

    /// Kills node `id` and deletes all of its data.
    pub fn wipe(&mut self, id: usize) {
        self.kill9(id);
        std::fs::remove_dir_all(self.data_dir(id)).unwrap();
    }

    pub fn is_up(&self, id: usize) -> bool {
        self.nodes[id - 1].1.is_some()
    }

    pub fn up(&self) -> Vec<usize> {
        (1..=self.len()).filter(|id| self.is_up(*id)).collect()
    }

    pub fn endpoint(&self, id: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[id - 1].0.api)
    }

    pub fn endpoints(&self) -> Vec<String> {
        (1..=self.len()).map(|id| self.endpoint(id)).collect()
    }

    pub fn server(&self, id: usize) -> &Server {
        self.nodes[id - 1].1.as_ref().expect("node is down")
    }

    pub fn server_mut(&mut self, id: usize) -> &mut Server {
        self.nodes[id - 1].1.as_mut().expect("node is down")
    }

    /// A channel to node `id` once it answers Status for its default table.
    pub async fn channel(&self, id: usize) -> Channel {
        self.server(id).ready().await
    }

    /// Waits until every running node reports the same raft leader for the
    /// default table, and returns that leader's node id.
    pub async fn wait_leader(&self) -> usize {
        let what = "an agreed raft leader (views: node, member, leader)";
        wait_until_every(what, Duration::from_secs(60), POLL, async || {
            // (node id, its member id, the leader it reports)
            let mut views = Vec::new();
            for id in self.up() {
                let ch = self.channel(id).await;
                if let Ok(st) = MaintenanceClient::new(ch).status(StatusRequest {}).await {
                    let st = st.into_inner();
                    views.push((id, st.header.map_or(0, |h| h.member_id), st.leader));
                }
            }
            let leader = views.first().map(|v| v.2);
            let agreed = views.len() == self.up().len()
                && views.iter().all(|v| Some(v.2) == leader && v.2 != 0);
            if agreed {
                if let Some(v) = views.iter().find(|v| Some(v.1) == leader) {
                    return Ok(v.0);
                }
            }
            Err(views)
        })
        .await
    }

    /// Waits until every running node has the same `HashKV` of the default
    /// table at the same revision, and returns (revision, hash). Polls every
    /// 50 ms, not [`POLL`]: HashKV hashes the whole table on every node.
    pub async fn wait_converged(&self) -> (i64, u32) {
        use armada::pb::etcdserverpb::HashKvRequest;
        let (timeout, every) = (Duration::from_secs(120), Duration::from_millis(50));
        wait_until_every("members to converge", timeout, every, async || {
            let mut seen = Vec::new();
            for id in self.up() {
                let ch = self.channel(id).await;
                let h = MaintenanceClient::new(ch)
                    .hash_kv(HashKvRequest { revision: 0 })
                    .await
                    .ok()
                    .map(|r| r.into_inner())
                    .map(|r| (r.header.map_or(0, |h| h.revision), r.hash));
                seen.push(h);
            }
            if let Some(Some(first)) = seen.first().cloned() {
                if seen.iter().all(|s| *s == Some(first)) {
                    return Ok(first);
                }
            }
            Err(seen)
        })
        .await
    }
}
