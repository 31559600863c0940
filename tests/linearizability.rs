//! Linearizability under crash faults: concurrent clients spread over a
//! 3-node cluster of real `armada` processes issue random Put, linearizable
//! Get (serializable=false) and compare-and-swap Txn requests on a few keys,
//! each write with a unique value, while a nemesis kill -9s the raft leader
//! (or a random node), waits for a new leader and restarts it. Every operation
//! is recorded with call and return times from one monotonic clock (an error
//! or timeout makes a write's outcome unknown), and the whole history must be
//! linearizable per key (the WGL/Porcupine checker in
//! `common/linearizability.rs`): no acknowledged write is lost, no read is
//! stale and no CAS decides on a stale value, across leader changes.
//!
//! The history is recorded by real etcd clients: each client is the
//! `KvClient` of an `etcd_client::Client` (the `etcd-client` crate) bound to
//! one node's endpoint, whose channel reconnects by itself once a killed node
//! is back.
//!
//! The schedule is seeded: `LIN_SEED` (default fixed), `LIN_OPS` (operations,
//! default 1000), `LIN_KILLS` (nemesis kills, default 3); timing still varies
//! run to run. `scripts/linearizability.sh` runs it in a loop with random seeds.

mod common;
#[path = "common/linearizability.rs"]
mod linearizability;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::seed::{env_u64, Rng};
use common::{wait_until_every, Cluster, POLL};
use etcd_client::{Compare, CompareOp, ConnectOptions, GetOptions, KvClient, Txn, TxnOp};
use linearizability::{check_with_budget, CheckResult, Input, Operation, Output, PENDING};

const CLIENTS: usize = 6;
const KEYS: u64 = 4;
/// Every RPC is abandoned (outcome unknown) after this long, so nothing hangs.
const RPC_TIMEOUT: Duration = Duration::from_secs(10);
/// Checker search steps per key before giving up (a give-up fails the test).
const CHECK_STEPS: u64 = 20_000_000;
/// How long the nemesis waits for the clients to make progress between faults.
const PROGRESS_DEADLINE: Duration = Duration::from_secs(60);

const DEFAULT_SEED: u64 = 0xA4AD_A11E;
const DEFAULT_OPS: u64 = 1000;
const DEFAULT_KILLS: u64 = 3;

/// Nanoseconds since `start`: the one clock every call and return is read from.
fn ns(start: Instant) -> u64 {
    start.elapsed().as_nanos() as u64
}

fn key_name(k: u64) -> String {
    format!("lin/k{k}")
}

fn value_of(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("values are UTF-8")
}

/// An etcd client bound to `endpoint` alone. `connect` does no I/O: its
/// channel connects on first use and again after the node comes back, so a
/// client stays bound to its node across kills.
async fn connect(endpoint: &str) -> KvClient {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(1))
        .with_timeout(RPC_TIMEOUT);
    etcd_client::Client::connect([endpoint], Some(options))
        .await
        .unwrap_or_else(|e| panic!("etcd client for {endpoint}: {e}"))
        .kv_client()
}

/// etcd's CAS: `value(key) == expected` (or `create_revision(key) == 0` when
/// expecting the key absent), then put `new`.
fn cas_txn(key: &str, expected: Option<&str>, new: &str) -> Txn {
    let compare = match expected {
        Some(v) => Compare::value(key, CompareOp::Equal, v),
        None => Compare::create_revision(key, CompareOp::Equal, 0),
    };
    Txn::new()
        .when([compare])
        .and_then([TxnOp::put(key, new, None)])
}

#[derive(Default, Debug)]
struct ClientStats {
    ok: usize,
    errors: usize,
    first_error: Option<String>,
}

/// One client bound to one node, recording each op it issues.
struct Client {
    id: usize,
    kv: KvClient,
    start: Instant,
    done: Arc<AtomicUsize>,
    history: Vec<Operation>,
    stats: ClientStats,
    /// The last value this client saw per key: what its CAS ops expect.
    seen: HashMap<String, Option<String>>,
    failures_in_a_row: u64,
}

impl Client {
    async fn new(id: usize, endpoint: &str, start: Instant, done: Arc<AtomicUsize>) -> Client {
        Client {
            id,
            kv: connect(endpoint).await,
            start,
            done,
            history: Vec::new(),
            stats: ClientStats::default(),
            seen: HashMap::new(),
            failures_in_a_row: 0,
        }
    }

    /// Records one op: `Err` is any error or timeout. A failed Get says
    /// nothing and is dropped, and so is a write whose connection was never
    /// made (the request did not leave the client); any other failed write
    /// may or may not have happened. Returns whether the op succeeded.
    fn record(&mut self, input: Input, call: u64, result: Result<Output, String>) -> bool {
        let ret = ns(self.start);
        self.done.fetch_add(1, Ordering::Relaxed);
        let key = input.key().to_string();
        let output = match result {
            Ok(output) => {
                self.stats.ok += 1;
                self.failures_in_a_row = 0;
                match (&input, &output) {
                    (Input::Get { .. }, Output::Read(v)) => {
                        self.seen.insert(key, v.clone());
                    }
                    (Input::Put { value, .. }, _)
                    | (Input::Cas { new: value, .. }, Output::Cas(true)) => {
                        self.seen.insert(key, Some(value.clone()));
                    }
                    _ => {}
                }
                output
            }
            Err(error) => {
                self.stats.errors += 1;
                let unsent = never_sent(&error);
                self.stats.first_error.get_or_insert(error);
                self.failures_in_a_row += 1;
                if matches!(input, Input::Get { .. }) || unsent {
                    return false;
                }
                Output::Unknown
            }
        };
        let ret = if output == Output::Unknown {
            PENDING
        } else {
            ret
        };
        let ok = output != Output::Unknown;
        self.history.push(Operation {
            client: self.id,
            input,
            call,
            output,
            ret,
        });
        ok
    }

    async fn get(&mut self, key: &str) -> bool {
        // `GetOptions::new()` is linearizable: serializable=false.
        let get = self.kv.get(key, Some(GetOptions::new()));
        let call = ns(self.start);
        let result = match tokio::time::timeout(RPC_TIMEOUT, get).await {
            Ok(Ok(resp)) => Ok(Output::Read(
                resp.kvs().first().map(|kv| value_of(kv.value())),
            )),
            Ok(Err(e)) => Err(format!("get: {e}")),
            Err(_) => Err("get: client timeout".into()),
        };
        self.record(Input::Get { key: key.into() }, call, result)
    }

    async fn put(&mut self, key: &str, value: String) -> bool {
        let put = self.kv.put(key, value.as_str(), None);
        let call = ns(self.start);
        let result = match tokio::time::timeout(RPC_TIMEOUT, put).await {
            Ok(Ok(_)) => Ok(Output::Ok),
            Ok(Err(e)) => Err(format!("put: {e}")),
            Err(_) => Err("put: client timeout".into()),
        };
        let input = Input::Put {
            key: key.into(),
            value,
        };
        self.record(input, call, result)
    }

    async fn cas(&mut self, key: &str, expected: Option<String>, new: String) -> bool {
        let txn = self.kv.txn(cas_txn(key, expected.as_deref(), &new));
        let call = ns(self.start);
        let result = match tokio::time::timeout(RPC_TIMEOUT, txn).await {
            Ok(Ok(resp)) => Ok(Output::Cas(resp.succeeded())),
            Ok(Err(e)) => Err(format!("cas: {e}")),
            Err(_) => Err("cas: client timeout".into()),
        };
        let input = Input::Cas {
            key: key.into(),
            expected,
            new,
        };
        self.record(input, call, result)
    }
}

/// Whether an etcd-client error says the TCP connection was never made
/// (hyper's connector failed), so the request cannot have reached a server.
fn never_sent(error: &str) -> bool {
    error.contains("tcp connect error")
}

/// Runs client `id` against `endpoint` until `stop`: 40% Get, 30% Put, 30%
/// CAS (half of them read-modify-write: a Get of the key right before, so
/// that many succeed). Returns its history.
async fn run_client(
    id: usize,
    endpoint: String,
    seed: u64,
    start: Instant,
    done: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> (Vec<Operation>, ClientStats) {
    let mut rng = Rng::new(seed ^ (id as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
    let mut c = Client::new(id, &endpoint, start, done).await;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let key = key_name(rng.below(KEYS));
        let roll = rng.below(10);
        let ok = if roll < 4 {
            c.get(&key).await
        } else {
            n += 1;
            let value = format!("c{id}-{n}"); // unique per write
            if roll < 7 {
                c.put(&key, value).await
            } else {
                let fresh = rng.below(2) == 0;
                if !fresh || c.get(&key).await {
                    let expected = match rng.below(6) {
                        0 => None,
                        _ => c.seen.get(&key).cloned().flatten(),
                    };
                    c.cas(&key, expected, value).await
                } else {
                    false
                }
            }
        };
        if !ok {
            // Back off while the node is down or without a leader.
            let pause = 25 * c.failures_in_a_row.min(8) + rng.below(25);
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
    }
    (c.history, c.stats)
}

/// Waits until the clients have finished `target` operations.
async fn wait_ops(done: &AtomicUsize, target: usize) {
    let what = format!("the clients to finish {target} operations (done so far)");
    wait_until_every(&what, PROGRESS_DEADLINE, POLL, async || {
        match done.load(Ordering::Relaxed) {
            n if n >= target => Ok(()),
            n => Err(n),
        }
    })
    .await;
}

fn dump(path: &std::path::Path, params: &str, events: &[(u64, String)], history: &[Operation]) {
    let mut text = format!("{params}\n\nnemesis:\n");
    for (t, e) in events {
        let _ = writeln!(text, "  [{t}] {e}");
    }
    let mut sorted: Vec<&Operation> = history.iter().collect();
    sorted.sort_by_key(|op| (op.input.key().to_string(), op.call));
    let _ = writeln!(text, "\nhistory by key and call time:");
    for op in sorted {
        let _ = writeln!(text, "  {op}");
    }
    match std::fs::write(path, text) {
        Ok(()) => eprintln!("full history written to {}", path.display()),
        Err(e) => eprintln!("could not write {}: {e}", path.display()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_under_leader_kills_is_linearizable() {
    let seed = env_u64("LIN_SEED", DEFAULT_SEED);
    let ops = env_u64("LIN_OPS", DEFAULT_OPS) as usize;
    let kills = env_u64("LIN_KILLS", DEFAULT_KILLS) as usize;
    let params =
        format!("LIN_SEED={seed} LIN_OPS={ops} LIN_KILLS={kills} ({CLIENTS} clients, {KEYS} keys)");
    eprintln!("linearizability: {params}");
    eprintln!(
        "repeat with: LIN_SEED={seed} LIN_OPS={ops} LIN_KILLS={kills} \
         cargo test --release --test linearizability -- --nocapture"
    );

    let mut cluster = Cluster::start(3, &[]);
    cluster.wait_leader().await;
    let start = Instant::now();
    let mut events: Vec<(u64, String)> = Vec::new();
    let mut log = |event: String| {
        let t = ns(start);
        eprintln!("[{:>8.3}s] {event}", t as f64 / 1e9);
        events.push((t, event));
    };

    let done = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let endpoint = cluster.endpoint(id % 3 + 1);
            let (done, stop) = (done.clone(), stop.clone());
            tokio::spawn(run_client(id, endpoint, seed, start, done, stop))
        })
        .collect();

    // The nemesis: kills spread evenly over the operations.
    let mut rng = Rng::new(seed);
    for k in 1..=kills {
        wait_ops(&done, k * ops / (kills + 1)).await;
        tokio::time::sleep(rng.millis(0, 300)).await;
        let leader = cluster.wait_leader().await;
        let victim = match rng.below(3) {
            0 => 1 + rng.below(3) as usize,
            _ => leader,
        };
        let role = if victim == leader {
            "leader"
        } else {
            "follower"
        };
        log(format!("kill -9 node {victim} ({role})"));
        cluster.kill9(victim);
        let new_leader = cluster.wait_leader().await;
        log(format!("leader is node {new_leader}"));
        tokio::time::sleep(rng.millis(0, 500)).await;
        log(format!("restart node {victim}"));
        cluster.restart(victim);
        cluster.channel(victim).await;
        let leader = cluster.wait_leader().await;
        log(format!("node {victim} is back, leader is node {leader}"));
    }
    wait_ops(&done, ops).await;
    stop.store(true, Ordering::Relaxed);
    let mut history = Vec::new();
    for (id, c) in clients.into_iter().enumerate() {
        let (ops, stats) = c.await.expect("client task");
        eprintln!("client {id} (node {}): {stats:?}", id % 3 + 1);
        history.extend(ops);
    }
    log(format!(
        "clients stopped after {} operations",
        done.load(Ordering::Relaxed)
    ));

    // Final linearizable reads of every key through every node, once all are
    // up again: each acknowledged write must still be there.
    for node in 1..=3 {
        let mut c = Client::new(
            CLIENTS + node - 1,
            &cluster.endpoint(node),
            start,
            done.clone(),
        )
        .await;
        for k in 0..KEYS {
            let key = key_name(k);
            let what = format!("node {node} to read {key} (client stats)");
            wait_until_every(&what, Duration::from_secs(30), POLL, async || {
                if c.get(&key).await {
                    Ok(())
                } else {
                    Err(format!("{:?}", c.stats))
                }
            })
            .await;
        }
        history.extend(c.history);
    }

    let count = |f: &dyn Fn(&Operation) -> bool| history.iter().filter(|op| f(op)).count();
    let gets = count(&|op| matches!(op.input, Input::Get { .. }));
    let puts = count(&|op| matches!(op.input, Input::Put { .. }));
    let cas_ok = count(&|op| op.output == Output::Cas(true));
    let cas_failed = count(&|op| op.output == Output::Cas(false));
    let unknown = count(&|op| op.is_unknown());
    eprintln!(
        "history: {} ops: {gets} gets, {puts} puts, {cas_ok} cas succeeded, \
         {cas_failed} cas failed, {unknown} unknown writes",
        history.len()
    );
    let acked = count(&|op| op.output == Output::Ok);
    assert!(
        gets > 0 && acked > 0 && cas_ok > 0 && cas_failed > 0,
        "the history is too thin to check anything"
    );

    let checking = Instant::now();
    let result = check_with_budget(&history, CHECK_STEPS);
    eprintln!("checked in {:?}: {result}", checking.elapsed());
    if !matches!(result, CheckResult::Ok) {
        let path = std::env::temp_dir().join(format!("armada-linearizability-{seed}.txt"));
        dump(&path, &params, &events, &history);
        panic!("{params}\n{result}");
    }
}
