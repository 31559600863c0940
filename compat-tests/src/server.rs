//! Launches a fresh single-node server for one test: real etcd
//! (`/usr/bin/etcd`) or the Armada binary, each with its own temporary data
//! directory and ports picked at run time on 127.0.0.1. Readiness is a
//! bounded poll of Maintenance.Status plus one linearizable Range (so a
//! leader exists), never a fixed sleep. Dropping a [`Server`] kills the
//! child by pid, reaps it and removes the temporary directory.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::flags::ServerFlags;
use crate::pb::etcdserverpb::{
    kv_client::KvClient, maintenance_client::MaintenanceClient, RangeRequest, StatusRequest,
};

/// Path of the real etcd server binary.
pub const ETCD_BIN: &str = "/usr/bin/etcd";
/// Path of the real etcdctl binary.
pub const ETCDCTL_BIN: &str = "/usr/bin/etcdctl";
/// How long a server may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Attempts with fresh ports when a child dies during startup (port race).
const START_ATTEMPTS: usize = 3;

/// Whether real etcd is installed.
pub fn etcd_available() -> bool {
    Path::new(ETCD_BIN).exists()
}

/// Whether real etcdctl is installed.
pub fn etcdctl_available() -> bool {
    Path::new(ETCDCTL_BIN).exists()
}

/// The workspace root (parent of this crate's manifest directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("compat-tests lives inside the workspace")
        .to_path_buf()
}

/// The Armada binary: `$ARMADA_BIN`, else `<workspace>/target/debug/armada`.
pub fn armada_bin() -> PathBuf {
    match std::env::var_os("ARMADA_BIN") {
        Some(p) => PathBuf::from(p),
        None => workspace_root().join("target/debug/armada"),
    }
}

/// A running server process; killed and cleaned up on drop.
pub struct Server {
    kind: &'static str,
    child: Child,
    port: u16,
    dir: TempDir,
}

impl Server {
    /// Starts a fresh real etcd and waits until it serves requests.
    pub fn etcd() -> Server {
        Self::etcd_with(&ServerFlags::default())
    }

    /// Starts a fresh real etcd with the given per-file flags.
    pub fn etcd_with(flags: &ServerFlags) -> Server {
        let extra = flags.etcd_args();
        Self::start("etcd", move |dir, p| {
            let client = format!("http://127.0.0.1:{}", p[0]);
            let peer = format!("http://127.0.0.1:{}", p[1]);
            let mut c = Command::new(ETCD_BIN);
            c.arg("--name=default")
                .arg(format!("--data-dir={}", dir.join("data").display()))
                .arg(format!("--listen-client-urls={client}"))
                .arg(format!("--advertise-client-urls={client}"))
                .arg(format!("--listen-peer-urls={peer}"))
                .arg(format!("--initial-advertise-peer-urls={peer}"))
                .arg(format!("--initial-cluster=default={peer}"))
                .arg("--logger=zap")
                .arg("--log-outputs=stderr")
                .args(&extra);
            c
        })
    }

    /// Starts a fresh Armada leader and waits until it serves requests.
    /// Panics if the binary has not been built.
    pub fn armada() -> Server {
        Self::armada_with(&ServerFlags::default())
    }

    /// Starts a fresh Armada leader with the given per-file flags.
    pub fn armada_with(flags: &ServerFlags) -> Server {
        let extra = flags.armada_args();
        let bin = armada_bin();
        assert!(
            bin.exists(),
            "Armada binary not found at {}: run `cargo build` in the workspace root first \
             (or point ARMADA_BIN at a built binary)",
            bin.display()
        );
        Self::start("armada", move |dir, p| {
            let mut c = Command::new(&bin);
            c.arg("leader")
                .arg("--data-dir")
                .arg(dir.join("data"))
                .arg("--api.address")
                .arg(format!("http://127.0.0.1:{}", p[0]))
                .arg("--rest.address")
                .arg(format!("http://127.0.0.1:{}", p[1]))
                .arg("--raft.address")
                .arg(format!("127.0.0.1:{}", p[2]))
                .args(&extra);
            c
        })
    }

    fn start(kind: &'static str, build: impl Fn(&Path, &[u16]) -> Command) -> Server {
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let dir = tempfile::Builder::new()
                .prefix(&format!("compat-{kind}-"))
                .tempdir()
                .expect("create temp dir");
            let ports = free_ports(3);
            let log = File::create(dir.path().join("server.log")).expect("create log file");
            let mut cmd = build(dir.path(), &ports);
            cmd.stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone log handle"))
                .stderr(log);
            let child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("cannot spawn {kind} ({cmd:?}): {e}"));
            let mut server = Server {
                kind,
                child,
                port: ports[0],
                dir,
            };
            match server.wait_ready() {
                Ok(()) => return server,
                Err(e) => failures.push(format!("{e}\n--- {kind} log ---\n{}", server.log())),
            }
        }
        panic!(
            "{kind} did not become ready after {START_ATTEMPTS} attempts:\n{}",
            failures.join("\n\n")
        );
    }

    /// Polls Status and a linearizable Range until both succeed, the child
    /// exits, or [`READY_TIMEOUT`] passes. Runs the gRPC calls on a private
    /// runtime in its own thread, so it works from sync and async callers.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let endpoint = self.endpoint();
        let mut last = String::from("not polled yet");
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Err(format!("{} exited during startup: {st}", self.kind));
            }
            let ep = endpoint.clone();
            let probe = std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("probe runtime")
                    .block_on(probe(&ep))
            })
            .join()
            .expect("probe thread");
            match probe {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
            // Bounded back-off between polls of the readiness condition.
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "{} not ready within {READY_TIMEOUT:?} (last error: {last})",
            self.kind
        ))
    }

    /// `http://127.0.0.1:<client port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `"etcd"` or `"armada"`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's combined stdout/stderr so far (for failure reports).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // `Child::kill` signals exactly this child's pid; `wait` reaps it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One readiness probe: Status, then a linearizable single-key Range.
async fn probe(endpoint: &str) -> Result<(), String> {
    let ch = tonic::transport::Endpoint::from_shared(endpoint.to_string())
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(2))
        .connect()
        .await
        .map_err(|e| format!("connect: {e}"))?;
    MaintenanceClient::new(ch.clone())
        .status(StatusRequest {})
        .await
        .map_err(|e| format!("status: {e}"))?;
    KvClient::new(ch)
        .range(RangeRequest {
            key: b"compat-tests-readiness".to_vec(),
            ..Default::default()
        })
        .await
        .map_err(|e| format!("range: {e}"))?;
    Ok(())
}

/// Picks `n` distinct free TCP ports on 127.0.0.1 by binding port 0 (all
/// listeners are held until every port is chosen, then released).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}
