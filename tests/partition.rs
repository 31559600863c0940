//! A real network partition of a 3-node cluster: the raft leader's raft
//! link is cut inside network namespaces the test creates (see
//! `common/netns.rs`), while the test keeps reaching every node's API over
//! a separate client network. Proves that
//! 1. the isolated old leader refuses writes and linearizable reads with
//!    Unavailable, and the write it refused never becomes visible (no split
//!    brain);
//! 2. the majority elects a new leader and keeps serving writes and
//!    linearizable reads;
//! 3. once the link is healed the old leader rejoins as a follower, every
//!    acknowledged write is on all three nodes and `HashKV` agrees.
//!
//! Needs root (network namespaces); it fails loudly, never skips, without.

mod common;
#[path = "common/netns.rs"]
mod netns;

use std::collections::HashMap;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use armada::pb::etcdserverpb::kv_client::KvClient;
use armada::pb::etcdserverpb::maintenance_client::MaintenanceClient;
use armada::pb::etcdserverpb::{
    HashKvRequest, PutRequest, RangeRequest, RangeResponse, StatusRequest, StatusResponse,
};
use common::{local_keys, wait_until, wait_until_every, POLL};
use netns::Lab;
use tonic::transport::Channel;
use tonic::{Code, Request};

const API_PORT: u16 = 2379;
const REST_PORT: u16 = 8079;
const RAFT_PORT: u16 = 5012;

/// Bound on the whole scenario (it takes ~8-11 s: the isolated leader's
/// write times out after 7 s, in parallel with the majority's work).
const SCENARIO_BUDGET: Duration = Duration::from_secs(80);
/// Per-RPC client deadline: above the server's own timeouts (7 s proposal,
/// 10 s forwarding), so the server's answer, not ours, is what we assert on.
const RPC_TIMEOUT: Duration = Duration::from_secs(15);
/// Status and HashKV are local reads; a slow answer is just retried.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a refused put or read is retried, and HashKV (which hashes a
/// whole table on every node) polled: slower than `wait_until`'s default.
const RETRY: Duration = Duration::from_millis(50);

fn timed<T>(msg: T, timeout: Duration) -> Request<T> {
    let mut req = Request::new(msg);
    req.set_timeout(timeout);
    req
}

fn put(key: &str, value: &str) -> Request<PutRequest> {
    timed(
        PutRequest {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        },
        RPC_TIMEOUT,
    )
}

fn range(key: &str, serializable: bool) -> Request<RangeRequest> {
    timed(
        RangeRequest {
            key: key.into(),
            serializable,
            ..Default::default()
        },
        RPC_TIMEOUT,
    )
}

async fn status(ch: &Channel) -> Result<StatusResponse, tonic::Status> {
    MaintenanceClient::new(ch.clone())
        .status(timed(StatusRequest {}, PROBE_TIMEOUT))
        .await
        .map(|r| r.into_inner())
}

/// Linearizable reads answered with a retryable Unavailable, and retried.
static READ_RETRIES: AtomicUsize = AtomicUsize::new(0);

/// A linearizable read, retried (within 10 s) on the retryable Unavailable,
/// as etcd clients do for reads (e.g. "leader changed" while the majority
/// elects a new raft leader). Every answer that does arrive is still checked
/// by the caller, and the retries are counted and printed.
async fn get(c: &Partitioned, i: usize, key: &str) -> RangeResponse {
    let what = format!("linearizable get {key} on node {i}");
    wait_until_every(
        &what,
        Duration::from_secs(10),
        RETRY,
        async || match KvClient::new(c.ch(i).clone())
            .range(range(key, false))
            .await
        {
            Ok(r) => Ok(r.into_inner()),
            Err(e) if e.code() == Code::Unavailable => {
                READ_RETRIES.fetch_add(1, Ordering::Relaxed);
                eprintln!(
                    "  linearizable get {key} on node {i} retried: {:?}",
                    e.message()
                );
                Err(e)
            }
            Err(e) => panic!("linearizable get {key} on node {i}: {e:?}"),
        },
    )
    .await
}

/// Puts until acknowledged, retrying only the retryable Unavailable (a
/// leader change in progress); returns the write's revision.
async fn put_acked(ch: &Channel, key: &str, value: &str, deadline: Instant) -> i64 {
    let what = format!("put {key} acknowledged");
    let left = deadline.saturating_duration_since(Instant::now());
    wait_until_every(&what, left, RETRY, async || {
        match KvClient::new(ch.clone()).put(put(key, value)).await {
            Ok(r) => Ok(r.into_inner().header.unwrap().revision),
            Err(e) if e.code() == Code::Unavailable => Err(e),
            Err(e) => panic!("put {key}: {e:?}"),
        }
    })
    .await
}

/// One `armada leader` process inside its node namespace.
struct Node {
    child: Child,
}

impl Drop for Node {
    fn drop(&mut self) {
        // SIGKILL by pid; `ip netns exec` exec'd armada, so this is armada
        // (checked in `Partitioned::start`).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

extern "C" {
    fn prctl(option: std::ffi::c_int, ...) -> std::ffi::c_int;
}
const PR_SET_PDEATHSIG: std::ffi::c_int = 1;
const SIGKILL: std::ffi::c_ulong = 9;

/// A 3-node cluster whose nodes live in the namespaces of a [`Lab`]. Nodes
/// are numbered from 1 (their raft node id). Fields drop in order: the
/// processes die before their namespaces are deleted.
struct Partitioned {
    /// Held for their `Drop`, which kills them.
    _nodes: Vec<Node>,
    channels: Vec<Channel>,
    /// Member id (as reported by Status/headers) to node number.
    members: HashMap<u64, usize>,
    lab: Lab,
    _dir: tempfile::TempDir,
}

impl Partitioned {
    async fn start(n: usize) -> Partitioned {
        let lab = Lab::new(n);
        let dir = tempfile::tempdir().unwrap();
        let initial = (1..=n)
            .map(|i| format!("{i}={}:{RAFT_PORT}", lab.raft_ip(i)))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes = Vec::new();
        for i in 1..=n {
            let mut cmd = lab.command(i, env!("CARGO_BIN_EXE_armada"));
            cmd.args(["leader", "--data-dir"])
                .arg(dir.path().join(format!("node{i}")))
                .arg(format!(
                    "--api.address=http://{}:{API_PORT}",
                    lab.client_ip(i)
                ))
                .arg(format!(
                    "--rest.address=http://{}:{REST_PORT}",
                    lab.client_ip(i)
                ))
                .arg(format!("--raft.address={}:{RAFT_PORT}", lab.raft_ip(i)))
                .arg(format!("--raft.node-id={i}"))
                .arg(format!("--raft.initial-members={initial}"))
                .arg(format!("--name=node{i}"))
                .args(common::FAST_RAFT)
                .env(
                    "RUST_LOG",
                    std::env::var("ARMADA_TEST_LOG").unwrap_or("warn".into()),
                )
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(common::log_sink(&format!("partition-node{i}")));
            // If this test process is SIGKILLed, Drop never runs: have the
            // kernel kill the node with it (the flag survives the exec of a
            // non-setuid binary, i.e. `ip` and then armada). Best effort;
            // it fires when the spawning thread exits, and this runs on the
            // test's own thread (`block_on`), which outlives the cluster.
            // The next run then removes the namespaces left behind.
            // SAFETY: prctl is async-signal-safe and touches no memory of
            // the parent; nothing else runs between fork and exec.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                    prctl(PR_SET_PDEATHSIG, SIGKILL);
                    Ok(())
                });
            }
            nodes.push(Node {
                child: cmd.spawn().expect("start `ip netns exec ... armada`"),
            });
        }
        let mut channels = Vec::new();
        let mut members = HashMap::new();
        for i in 1..=n {
            let (ch, st) = ready(&format!("http://{}:{API_PORT}", lab.client_ip(i))).await;
            // The pid we will kill must be armada itself, not a lingering `ip`.
            let pid = nodes[i - 1].child.id();
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            assert_eq!(comm.trim(), "armada", "pid {pid} of node {i} is not armada");
            members.insert(st.header.unwrap().member_id, i);
            channels.push(ch);
        }
        assert_eq!(members.len(), n, "member ids are not distinct");
        Partitioned {
            _nodes: nodes,
            channels,
            members,
            lab,
            _dir: dir,
        }
    }

    fn ch(&self, i: usize) -> &Channel {
        &self.channels[i - 1]
    }

    fn member_id(&self, i: usize) -> u64 {
        *self.members.iter().find(|(_, n)| **n == i).unwrap().0
    }

    /// Waits until every node in `among` reports the same raft leader, one
    /// of `among`, and returns it (node number).
    async fn wait_leader(&self, among: &[usize], timeout: Duration) -> usize {
        let what = format!("nodes {among:?} to agree on a leader among them (views)");
        wait_until_every(&what, timeout, POLL, async || {
            let mut views = Vec::new();
            for &i in among {
                views.push((i, status(self.ch(i)).await.map(|s| s.leader).ok()));
            }
            let first = views[0].1;
            if views.iter().all(|v| v.1 == first) {
                if let Some(leader) = first.and_then(|m| self.members.get(&m)) {
                    if among.contains(leader) {
                        return Ok(*leader);
                    }
                }
            }
            Err(views)
        })
        .await
    }

    /// Waits until all nodes have the same `HashKV` at the same revision,
    /// and returns (revision, hash).
    async fn wait_converged(&self, timeout: Duration) -> (i64, u32) {
        wait_until_every("the nodes to converge", timeout, RETRY, async || {
            let mut seen = Vec::new();
            for ch in &self.channels {
                let h = MaintenanceClient::new(ch.clone())
                    .hash_kv(timed(HashKvRequest { revision: 0 }, PROBE_TIMEOUT))
                    .await
                    .ok()
                    .map(|r| r.into_inner())
                    .map(|r| (r.header.map_or(0, |h| h.revision), r.hash));
                seen.push(h);
            }
            if let Some(first) = seen[0] {
                if seen.iter().all(|s| *s == Some(first)) {
                    return Ok(first);
                }
            }
            Err(seen)
        })
        .await
    }
}

/// Waits until `endpoint` answers Status; returns a channel to it and that answer.
async fn ready(endpoint: &str) -> (Channel, StatusResponse) {
    let what = format!("{endpoint} to become ready");
    wait_until(&what, Duration::from_secs(30), async || {
        let ch = Channel::from_shared(endpoint.to_string())
            .unwrap()
            .connect_timeout(Duration::from_secs(1))
            .connect()
            .await
            .ok()?;
        let st = status(&ch).await.ok()?;
        Some((ch, st))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_raft_leader_refuses_writes_and_rejoins_as_follower() {
    let cluster = Partitioned::start(3).await;
    tokio::time::timeout(SCENARIO_BUDGET, scenario(&cluster))
        .await
        .expect("partition scenario exceeded its time budget");
}

async fn scenario(c: &Partitioned) {
    let t0 = Instant::now();
    let phase = |name: &str| eprintln!("[{:>6.2}s] {name}", t0.elapsed().as_secs_f64());
    let all = [1, 2, 3];
    let old = c.wait_leader(&all, Duration::from_secs(30)).await;
    let majority: Vec<usize> = all.into_iter().filter(|i| *i != old).collect();
    phase(&format!("cluster up, raft leader is node {old}"));

    // Acknowledged writes: (key, value), checked on every node at the end.
    let mut acked: Vec<(String, String)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    for i in all {
        let (k, v) = (format!("before/{i}"), format!("node{i}"));
        put_acked(c.ch(i), &k, &v, deadline).await;
        acked.push((k, v));
    }

    c.lab.cut(old);
    phase(&format!("raft link of node {old} cut"));

    // The isolated old leader still believes it leads, so it proposes the
    // put locally and can never reach a quorum (it times out after 7 s); a
    // linearizable read needs a quorum to confirm its leadership (it fails
    // as soon as both heartbeats fail). Both must fail with a retryable
    // Unavailable rather than succeed (split brain) or hang.
    let minority_put = async {
        let started = Instant::now();
        let r = KvClient::new(c.ch(old).clone())
            .put(put("split-brain", "minority"))
            .await;
        (r.map(|_| ()), started.elapsed())
    };
    let minority_read = async {
        let started = Instant::now();
        let r = KvClient::new(c.ch(old).clone())
            .range(range("before/1", false))
            .await;
        (r.map(|_| ()), started.elapsed())
    };
    // Meanwhile the majority elects a leader among itself and serves.
    let majority_work = async {
        let new = c.wait_leader(&majority, Duration::from_secs(20)).await;
        phase(&format!("majority elected node {new}"));
        let mut written = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        for &i in &majority {
            for k in 0..10 {
                let (key, value) = (format!("during/{i}/{k:02}"), format!("{i}-{k}"));
                let rev = put_acked(c.ch(i), &key, &value, deadline).await;
                written.push((key, value, rev));
            }
        }
        // Linearizable reads through both majority nodes see every write
        // acknowledged through either, at or after its revision.
        for &i in &majority {
            for (key, value, rev) in &written {
                let r = get(c, i, key).await;
                assert_eq!(r.kvs.len(), 1, "node {i} misses {key}");
                assert_eq!(r.kvs[0].value, value.as_bytes(), "node {i}: {key}");
                assert_eq!(r.kvs[0].mod_revision, *rev, "node {i}: {key}");
            }
        }
        phase("majority served writes and linearizable reads");
        (new, written)
    };
    let ((put_result, put_took), (read_result, read_took), (new, written)) =
        tokio::join!(minority_put, minority_read, majority_work);
    phase("isolated old leader answered");
    let err = put_result.expect_err("the isolated old leader acknowledged a write");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    eprintln!(
        "  put on isolated leader: {:?} after {put_took:?}",
        err.message()
    );
    let err = read_result.expect_err("the isolated old leader served a linearizable read");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    eprintln!(
        "  linearizable read on isolated leader: {:?} after {read_took:?}",
        err.message()
    );
    acked.extend(written.into_iter().map(|(k, v, _)| (k, v)));

    // No split brain: the majority never saw the refused write, and the
    // isolated node (read locally) never saw the majority's writes.
    for &i in &majority {
        assert!(
            get(c, i, "split-brain").await.kvs.is_empty(),
            "node {i} has the write the isolated leader refused"
        );
    }
    // For the record: whom the isolated node believes leads now (openraft
    // 0.9 keeps an isolated leader leading until it sees a newer term).
    let view = status(c.ch(old)).await.map(|s| s.leader);
    eprintln!(
        "  isolated node {old} sees leader {:?}",
        view.map(|m| c.members.get(&m))
    );
    let isolated = local_keys(c.ch(old), "").await;
    assert!(
        !isolated.keys().any(|k| k.starts_with("during/")),
        "the isolated node received writes through the partition"
    );

    c.lab.heal(old);
    phase(&format!("raft link of node {old} healed"));
    // The old leader steps down on seeing the newer term and follows the
    // majority's leader (its log's last term is older: it cannot win).
    let leader = c.wait_leader(&all, Duration::from_secs(30)).await;
    assert_ne!(leader, old, "the old leader is leading again");
    let st = status(c.ch(old)).await.unwrap();
    assert_eq!(st.leader, c.member_id(leader));
    assert_ne!(st.header.unwrap().member_id, st.leader);
    phase(&format!(
        "node {old} follows node {leader} (elected during the partition: {new})"
    ));

    // As a follower it serves again: a write through it is forwarded.
    let deadline = Instant::now() + Duration::from_secs(20);
    let last = put_acked(c.ch(old), "after-heal", "rejoined", deadline).await;
    acked.push(("after-heal".into(), "rejoined".into()));
    phase(&format!("write through node {old} acknowledged"));
    assert_eq!(get(c, old, "after-heal").await.kvs[0].value, b"rejoined");

    let (rev, hash) = c.wait_converged(Duration::from_secs(30)).await;
    phase(&format!("converged at revision {rev}, hash {hash:#x}"));
    assert_eq!(rev, last, "a write after the last acknowledged one");
    eprintln!(
        "  linearizable reads retried: {}",
        READ_RETRIES.load(Ordering::Relaxed)
    );
    for i in all {
        let stored = local_keys(c.ch(i), "").await;
        for (key, value) in &acked {
            assert_eq!(
                stored.get(key),
                Some(value),
                "node {i} lacks acknowledged {key}"
            );
        }
        assert!(
            !stored.contains_key("split-brain"),
            "node {i} has the write the isolated leader refused"
        );
    }
}
