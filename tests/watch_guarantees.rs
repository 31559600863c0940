//! etcd's watch guarantees under crash faults: writers on a 3-node cluster of
//! real `armada` processes put, delete, prefix-delete and run multi-key txns
//! on a few keys, while watchers with different options (prefix, one key, a
//! range, from-key, prev_kv, progress_notify with periodic RequestProgress,
//! NOPUT/NODELETE filters, start at revision 1, "now" or a past revision)
//! record every WatchResponse, and a nemesis kill -9s the raft leader of the
//! default table and restarts it, a few times. A watcher whose stream fails
//! resumes on the next member from its last observed revision + 1 (the last
//! event or progress notify), as the Go client does; after each restart
//! about half the watchers (seeded) drop their stream and resume on the
//! restarted node, likely before it has caught up. The checker
//! (`common/watch_check.rs`) then verifies each logical watch against the
//! persisted history: Ordered, Unique, Atomic, Reliable (exactly the history
//! once, across resumptions), Resumable, Bookmarkable, prev_kv and IsCreate.
//!
//! The ground truth is read from the cluster at the end, once writers have
//! stopped and every member has the same `HashKV` at the same revision F
//! (Armada's HashKV covers every version of every key up to F, so all
//! members, including those that served the watches, hold the same MVCC
//! history): a Range of every key at each revision 1..=F. That goes through
//! the KV read path and the MVCC store, not the Watch code under test, and
//! [`History::from_snapshots`] rejects any inconsistent sequence of states.
//! It is also cross-checked against the writers: every acknowledged write
//! must appear at the revision its response reported, exactly (the puts with
//! their unique values, as many deletes in each deleted range as reported),
//! and every value in the history must be one a writer tried to write.
//!
//! Honesty: the test fails if any watcher observed no event, had nothing to
//! check, or never caught up with F (by an event or a progress notify), if
//! no watcher was resumed after a kill, or if the history is too thin.
//!
//! Seeded: `WATCH_SEED` (default fixed), `WATCH_WRITES` (write operations,
//! default 600), `WATCH_KILLS` (leader kills, default 3); timing still
//! varies run to run. Unit tests of the checker: `cargo test --test
//! watch_guarantees watch_check`.

mod common;
#[path = "common/watch_check.rs"]
mod watch_check;
#[path = "watch_guarantees/writers.rs"]
mod writers;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use armada::pb::etcdserverpb::kv_client::KvClient as PbKvClient;
use armada::pb::etcdserverpb::RangeRequest;
use common::seed::{env_u64, Rng};
use common::{wait_until, wait_until_every, Cluster, POLL};
use etcd_client::{
    Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, KvClient, Txn, TxnOp,
    TxnOpResponse, WatchClient, WatchFilterType, WatchOptions, WatchRequestSender,
    WatchResponseStream,
};
use watch_check::{check, History, Kind, Kv, Report, Response, Segment, Watch, WatchRequest};
use writers::{check_acks, run_writer};

const WRITERS: usize = 3;
const KEYS: [&str; 9] = [
    "wg/k0", "wg/k1", "wg/k2", "wg/k3", "wg/k4", "wg/k5", "wg/p/0", "wg/p/1", "wg/p/2",
];
/// Every write is abandoned (outcome unknown) after this long.
const RPC_TIMEOUT: Duration = Duration::from_secs(10);
/// Opening a Watch stream (until its response headers) is abandoned after this long.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);
/// How often watchers that ask for progress send RequestProgress (all of
/// them do once the final revision is known).
const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// How long the nemesis waits for the writers to make progress between faults.
const PROGRESS_DEADLINE: Duration = Duration::from_secs(60);
/// How long the watchers get to reach the final revision once it is known.
const CATCH_UP: Duration = Duration::from_secs(30);

const DEFAULT_SEED: u64 = 0x3A7C_4ED5;
const DEFAULT_WRITES: u64 = 600;
const DEFAULT_KILLS: u64 = 3;

/// `n` distinct keys, in a seeded order.
fn pick_keys(rng: &mut Rng, n: usize) -> Vec<&'static str> {
    let mut keys = KEYS.to_vec();
    for i in 0..n {
        let j = i + rng.below((keys.len() - i) as u64) as usize;
        keys.swap(i, j);
    }
    keys.truncate(n);
    keys
}

/// etcd's prefix end: the prefix with its last byte incremented.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    *end.last_mut().unwrap() += 1;
    end
}

fn in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    WatchRequest {
        key: start.to_vec(),
        range_end: end.to_vec(),
        ..WatchRequest::default()
    }
    .matches_key(key)
}

fn kv_of(kv: &etcd_client::KeyValue) -> Kv {
    Kv {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: String::from_utf8_lossy(kv.value()).into_owned(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        version: kv.version(),
        lease: kv.lease(),
    }
}

fn options() -> ConnectOptions {
    ConnectOptions::new().with_connect_timeout(Duration::from_secs(1))
}

/// An etcd client bound to `endpoint` alone (no I/O until first use).
async fn client(endpoint: &str) -> etcd_client::Client {
    etcd_client::Client::connect([endpoint], Some(options()))
        .await
        .unwrap_or_else(|e| panic!("etcd client for {endpoint}: {e}"))
}

// ---------------------------------------------------------------- watchers

struct WatcherSpec {
    name: &'static str,
    /// The member it starts on.
    member: usize,
    request: WatchRequest,
    /// Sends RequestProgress every [`PROGRESS_EVERY`] all along.
    request_progress: bool,
}

fn specs() -> Vec<WatcherSpec> {
    let prefix = |p: &str| (p.as_bytes().to_vec(), prefix_end(p));
    let req = |(key, range_end): (Vec<u8>, Vec<u8>)| WatchRequest {
        key,
        range_end,
        ..WatchRequest::default()
    };
    vec![
        WatcherSpec {
            name: "all-from-1-prevkv",
            member: 1,
            request: WatchRequest {
                start_revision: 1,
                prev_kv: true,
                ..req(prefix("wg/"))
            },
            request_progress: false,
        },
        WatcherSpec {
            name: "p-prefix-notify",
            member: 2,
            request: WatchRequest {
                progress_notify: true,
                ..req(prefix("wg/p/"))
            },
            request_progress: true,
        },
        WatcherSpec {
            name: "key-k1-prevkv",
            member: 3,
            request: WatchRequest {
                prev_kv: true,
                ..req((b"wg/k1".to_vec(), vec![]))
            },
            request_progress: false,
        },
        WatcherSpec {
            name: "range-k2-k5-noput-prevkv",
            member: 1,
            request: WatchRequest {
                no_put: true,
                prev_kv: true,
                ..req((b"wg/k2".to_vec(), b"wg/k5".to_vec()))
            },
            request_progress: false,
        },
        WatcherSpec {
            name: "all-nodelete-notify",
            member: 2,
            request: WatchRequest {
                no_delete: true,
                progress_notify: true,
                ..req(prefix("wg/"))
            },
            request_progress: true,
        },
    ]
}

/// Started late, from a past revision (set then), on every key >= wg/k3.
fn late_spec(start_revision: i64) -> WatcherSpec {
    WatcherSpec {
        name: "fromkey-k3-late-prevkv",
        member: 3,
        request: WatchRequest {
            key: b"wg/k3".to_vec(),
            range_end: vec![0],
            start_revision,
            prev_kv: true,
            ..WatchRequest::default()
        },
        request_progress: true,
    }
}

fn response_of(resp: &etcd_client::WatchResponse) -> Response {
    Response {
        header_revision: resp.header().map_or(0, |h| h.revision()),
        created: resp.created(),
        canceled: resp.canceled(),
        compact_revision: resp.compact_revision(),
        cancel_reason: resp.cancel_reason().to_string(),
        events: resp
            .events()
            .iter()
            .map(|e| watch_check::Event {
                kind: match e.event_type() {
                    EventType::Put => Kind::Put,
                    EventType::Delete => Kind::Delete,
                },
                kv: e.kv().map(kv_of).unwrap_or_default(),
                prev_kv: e.prev_kv().map(kv_of),
            })
            .collect(),
    }
}

/// Opens one Watch stream with `req` on `endpoint`.
async fn open(
    endpoint: &str,
    req: &WatchRequest,
) -> Result<(WatchClient, WatchRequestSender, WatchResponseStream), String> {
    let mut watch_client = etcd_client::Client::connect([endpoint], Some(options()))
        .await
        .map_err(|e| format!("connect: {e}"))?
        .watch_client();
    let mut opts = WatchOptions::new().with_start_revision(req.start_revision);
    if !req.range_end.is_empty() {
        opts = opts.with_range(req.range_end.clone());
    }
    if req.prev_kv {
        opts = opts.with_prev_key();
    }
    if req.progress_notify {
        opts = opts.with_progress_notify();
    }
    let mut filters = Vec::new();
    if req.no_put {
        filters.push(WatchFilterType::NoPut);
    }
    if req.no_delete {
        filters.push(WatchFilterType::NoDelete);
    }
    if !filters.is_empty() {
        opts = opts.with_filters(filters);
    }
    let stream = tokio::time::timeout(
        OPEN_TIMEOUT,
        watch_client.watch(req.key.clone(), Some(opts)),
    )
    .await
    .map_err(|_| "open: timeout".to_string())?
    .map_err(|e| format!("open: {e}"))?;
    let (sender, responses) = stream.split();
    Ok((watch_client, sender, responses))
}

/// What the watchers share with the test.
struct WatchShared {
    start: Instant,
    /// The final revision once writers stopped and members converged (0 before).
    target: tokio::sync::watch::Receiver<i64>,
    give_up: AtomicBool,
    /// Watchers that have received their first created response.
    created: AtomicUsize,
    /// The first error opening a stream, to fail fast if Watch is not served.
    first_error: Mutex<Option<String>>,
}

/// Which watchers (a bit mask of their indexes) the nemesis moves to which
/// member, with a generation so that a repeated move is seen as new.
type Move = (u64, u64, usize);

/// Runs one logical watch until it has observed the final revision (or is
/// told to give up), resuming on the next member whenever a stream fails,
/// or on the member the nemesis moves it to (cancelling its stream there, as
/// a client switching endpoints would).
async fn run_watcher(
    index: usize,
    spec: WatcherSpec,
    endpoints: Vec<String>,
    shared: Arc<WatchShared>,
    mut moves: tokio::sync::watch::Receiver<Move>,
) -> Watch {
    let mut record = Watch {
        name: spec.name.into(),
        segments: Vec::new(),
    };
    let mut member = spec.member;
    let mut start = spec.request.start_revision;
    let mut failures = 0u64;
    let mut counted_created = false;
    let mut last_observed = 0;
    let caught_up = |last: i64| {
        let target = *shared.target.borrow();
        target > 0 && last >= target
    };
    let log = |text: String| {
        let t = shared.start.elapsed().as_secs_f64();
        eprintln!("[{t:>8.3}s] watch {}: {text}", spec.name);
    };
    let mut ticker = tokio::time::interval(PROGRESS_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut moved_to = None;
    while !caught_up(last_observed) && !shared.give_up.load(Ordering::Relaxed) {
        let request = WatchRequest {
            start_revision: start,
            ..spec.request.clone()
        };
        let mut seg = Segment {
            member,
            request,
            ..Segment::default()
        };
        match open(&endpoints[member - 1], &seg.request).await {
            Err(e) => {
                shared.first_error.lock().unwrap().get_or_insert(e.clone());
                seg.ended = e;
            }
            Ok((_client, mut sender, mut stream)) => loop {
                tokio::select! {
                    Ok(()) = moves.changed() => {
                        let (_, mask, to) = *moves.borrow_and_update();
                        if mask & (1 << index) != 0 && to != member {
                            seg.ended = format!("moved to node {to} by the nemesis");
                            moved_to = Some(to);
                            break;
                        }
                    }
                    msg = stream.message() => match msg {
                        Ok(Some(resp)) => {
                            let r = response_of(&resp);
                            if r.created && !counted_created {
                                counted_created = true;
                                shared.created.fetch_add(1, Ordering::Relaxed);
                            }
                            if let Some(e) = r.events.last() {
                                last_observed = last_observed.max(e.revision());
                            }
                            if r.is_progress_notify() {
                                last_observed = last_observed.max(r.header_revision);
                            }
                            let canceled = r.canceled.then(|| r.cancel_reason.clone());
                            seg.responses.push(r);
                            if let Some(reason) = canceled {
                                seg.ended = format!("canceled: {reason:?}");
                                break;
                            }
                            if caught_up(last_observed) {
                                seg.ended = "caught up".into();
                                break;
                            }
                        }
                        Ok(None) => {
                            seg.ended = "stream closed by the server".into();
                            break;
                        }
                        Err(e) => {
                            seg.ended = format!("stream error: {e}");
                            break;
                        }
                    },
                    _ = ticker.tick() => {
                        if shared.give_up.load(Ordering::Relaxed) {
                            seg.ended = "gave up".into();
                            break;
                        }
                        if caught_up(last_observed) {
                            seg.ended = "caught up".into();
                            break;
                        }
                        if spec.request_progress || *shared.target.borrow() > 0 {
                            let _ = sender.request_progress().await;
                        }
                    }
                }
            },
        }
        let created = seg.responses.iter().find(|r| r.created);
        let next_start = if last_observed > 0 {
            last_observed + 1
        } else if start > 0 {
            start
        } else {
            created.map_or(0, |r| r.header_revision + 1)
        };
        if !seg.responses.is_empty() || failures < 2 {
            log(format!(
                "node {member} from revision {start}: {} responses, {} events; {}",
                seg.responses.len(),
                seg.responses.iter().map(|r| r.events.len()).sum::<usize>(),
                seg.ended
            ));
        }
        // A "now" stream that saw nothing anchors nothing: drop it.
        let anchors = start > 0 || created.is_some() || last_observed > 0;
        if seg.responses.is_empty() {
            failures += 1;
        } else {
            failures = 0;
        }
        if anchors {
            record.segments.push(seg);
        }
        start = next_start;
        if caught_up(last_observed) || shared.give_up.load(Ordering::Relaxed) {
            break;
        }
        // Resume on the next member, as the Go client would on another endpoint.
        member = moved_to.take().unwrap_or(member % endpoints.len() + 1);
        let pause = 20 * failures.min(10);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    record
}

// ---------------------------------------------------------------- the test

/// Waits until the writers have finished `target` operations.
async fn wait_ops(done: &AtomicUsize, target: usize) {
    let what = format!("the writers to finish {target} operations (done so far)");
    wait_until_every(&what, PROGRESS_DEADLINE, POLL, async || {
        match done.load(Ordering::Relaxed) {
            n if n >= target => Ok(()),
            n => Err(n),
        }
    })
    .await;
}

/// The current revision, read linearizably through any member that answers.
async fn current_revision(cluster: &Cluster) -> i64 {
    wait_until(
        "a member to answer a read",
        Duration::from_secs(30),
        async || {
            for id in cluster.up() {
                let mut kv = client(&cluster.endpoint(id)).await.kv_client();
                if let Ok(Ok(resp)) = tokio::time::timeout(RPC_TIMEOUT, kv.get("wg/", None)).await {
                    return Some(resp.header().map_or(0, |h| h.revision()));
                }
            }
            None
        },
    )
    .await
}

/// Every key of the default table at every revision 1..=last, via member `id`.
async fn snapshots(cluster: &Cluster, id: usize, last: i64) -> Vec<(i64, Vec<Kv>)> {
    let mut kv = PbKvClient::new(cluster.channel(id).await).max_decoding_message_size(usize::MAX);
    let mut out = Vec::new();
    for revision in 1..=last {
        let resp = kv
            .range(RangeRequest {
                key: vec![0],
                range_end: vec![0],
                revision,
                serializable: true,
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("range at revision {revision}: {e}"))
            .into_inner();
        assert!(!resp.more, "range at revision {revision} was cut short");
        let kvs = resp
            .kvs
            .into_iter()
            .map(|kv| Kv {
                key: String::from_utf8_lossy(&kv.key).into_owned(),
                value: String::from_utf8_lossy(&kv.value).into_owned(),
                create_revision: kv.create_revision,
                mod_revision: kv.mod_revision,
                version: kv.version,
                lease: kv.lease,
            })
            .collect();
        out.push((revision, kvs));
    }
    out
}

fn show_event(e: &watch_check::Event) -> String {
    let prev = e.prev_kv.as_ref().map_or(String::new(), |p| {
        format!(" prev={:?}@{}", p.value, p.mod_revision)
    });
    match e.kind {
        Kind::Put => format!(
            "put {}={} c{} m{} v{}{prev}",
            e.kv.key, e.kv.value, e.kv.create_revision, e.kv.mod_revision, e.kv.version
        ),
        Kind::Delete => format!("del {} m{}{prev}", e.kv.key, e.kv.mod_revision),
    }
}

fn dump(
    path: &std::path::Path,
    params: &str,
    events: &[String],
    history: &History,
    watches: &[Watch],
    reports: &[Report],
) {
    let mut text = format!("{params}\n\nnemesis:\n");
    for e in events {
        let _ = writeln!(text, "  {e}");
    }
    let _ = writeln!(text, "\nreports:");
    for r in reports {
        let _ = writeln!(text, "{r}");
    }
    let _ = writeln!(text, "\nhistory (revision: changes):");
    let mut by_rev: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for e in history.events() {
        by_rev.entry(e.revision()).or_default().push(show_event(e));
    }
    for (rev, es) in by_rev {
        let _ = writeln!(text, "  {rev}: {}", es.join("; "));
    }
    for w in watches {
        let _ = writeln!(text, "\nwatch {}:", w.name);
        for (si, s) in w.segments.iter().enumerate() {
            let _ = writeln!(
                text,
                "  segment {si} on node {}: {:?}; ended: {}",
                s.member, s.request, s.ended
            );
            for (ri, r) in s.responses.iter().enumerate() {
                let kind = if r.created {
                    "created"
                } else if r.canceled {
                    "canceled"
                } else if r.is_progress_notify() {
                    "progress"
                } else {
                    "events"
                };
                let evs: Vec<String> = r.events.iter().map(show_event).collect();
                let _ = writeln!(
                    text,
                    "    {ri} {kind} header {}: {}",
                    r.header_revision,
                    evs.join("; ")
                );
            }
        }
    }
    match std::fs::write(path, text) {
        Ok(()) => eprintln!("history and watches written to {}", path.display()),
        Err(e) => eprintln!("could not write {}: {e}", path.display()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_guarantees_under_leader_kills() {
    let seed = env_u64("WATCH_SEED", DEFAULT_SEED);
    let writes = env_u64("WATCH_WRITES", DEFAULT_WRITES) as usize;
    let kills = env_u64("WATCH_KILLS", DEFAULT_KILLS) as usize;
    let params = format!("WATCH_SEED={seed} WATCH_WRITES={writes} WATCH_KILLS={kills}");
    eprintln!("watch guarantees: {params}");
    eprintln!("repeat with: {params} cargo test --test watch_guarantees -- --nocapture");

    let mut cluster = Cluster::start(3, &[]);
    cluster.wait_leader().await;
    let start = Instant::now();
    let mut events: Vec<String> = Vec::new();
    let mut log = |event: String| {
        let line = format!("[{:>8.3}s] {event}", start.elapsed().as_secs_f64());
        eprintln!("{line}");
        events.push(line);
    };

    // Watchers first: every "now" watch is created before the first write.
    let (target_tx, target) = tokio::sync::watch::channel(0i64);
    let shared = Arc::new(WatchShared {
        start,
        target,
        give_up: AtomicBool::new(false),
        created: AtomicUsize::new(0),
        first_error: Mutex::new(None),
    });
    let endpoints = cluster.endpoints();
    let initial = specs();
    let n_initial = initial.len();
    let (move_tx, moves) = tokio::sync::watch::channel((0u64, 0u64, 0usize));
    let mut watchers: Vec<_> = (initial.into_iter().enumerate())
        .map(|(i, spec)| {
            let w = run_watcher(i, spec, endpoints.clone(), shared.clone(), moves.clone());
            tokio::spawn(w)
        })
        .collect();
    let what = format!("{n_initial} watches to be created (created, first error)");
    wait_until_every(&what, Duration::from_secs(30), POLL, async || {
        let created = shared.created.load(Ordering::Relaxed);
        if created >= n_initial {
            return Ok(());
        }
        let first_error = shared.first_error.lock().unwrap().clone();
        if let Some(e) = &first_error {
            assert!(!e.contains("nimplemented"), "Watch is not served: {e}");
        }
        Err((created, first_error))
    })
    .await;
    log(format!("{n_initial} watches created"));

    let done = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|id| {
            let endpoint = cluster.endpoint(id % 3 + 1);
            tokio::spawn(run_writer(id, endpoint, seed, done.clone(), stop.clone()))
        })
        .collect();

    // The late watcher replays from a past revision once some writes are in.
    wait_ops(&done, writes / 4).await;
    let now = current_revision(&cluster).await;
    let late = late_spec((now / 2).max(2));
    log(format!(
        "late watch {} from revision {} (current {now})",
        late.name, late.request.start_revision
    ));
    let w = run_watcher(n_initial, late, endpoints.clone(), shared.clone(), moves);
    watchers.push(tokio::spawn(w));

    // The nemesis: leader kills spread evenly over the writes.
    let mut rng = Rng(seed);
    for k in 1..=kills {
        wait_ops(&done, (k * writes / (kills + 1)).max(writes / 4)).await;
        tokio::time::sleep(rng.millis(0, 300)).await;
        let leader = cluster.wait_leader().await;
        log(format!("kill -9 node {leader} (leader)"));
        cluster.kill9(leader);
        let new_leader = cluster.wait_leader().await;
        log(format!("leader is node {new_leader}"));
        tokio::time::sleep(rng.millis(0, 500)).await;
        log(format!("restart node {leader}"));
        cluster.restart(leader);
        cluster.channel(leader).await;
        // About half the watchers resume on the node that just came back,
        // likely before it has caught up.
        let mask = rng.next() & ((1 << (n_initial + 1)) - 1);
        log(format!("move watchers {mask:#b} to node {leader}"));
        move_tx.send_replace((k as u64, mask, leader));
        let now = cluster.wait_leader().await;
        log(format!("node {leader} is back, leader is node {now}"));
    }
    wait_ops(&done, writes).await;
    stop.store(true, Ordering::Relaxed);
    let mut acks = Vec::new();
    let mut attempted = HashSet::new();
    for (id, w) in writers.into_iter().enumerate() {
        let w = w.await.expect("writer task");
        eprintln!(
            "writer {id} (node {}): {} ok, {} errors, first error {:?}",
            id % 3 + 1,
            w.ok,
            w.errors,
            w.first_error
        );
        acks.extend(w.acks);
        attempted.extend(w.attempted);
    }
    log(format!(
        "writers stopped after {} operations",
        done.load(Ordering::Relaxed)
    ));

    // Every member holds the same history up to the final revision.
    let (last, hash) = cluster.wait_converged().await;
    log(format!(
        "members converged at revision {last} (hash {hash:#x})"
    ));
    target_tx.send(last).expect("watchers listen");
    let deadline = tokio::time::Instant::now() + CATCH_UP;
    let mut watches = Vec::new();
    for w in watchers {
        let mut w = w;
        let record = match tokio::time::timeout_at(deadline, &mut w).await {
            Ok(record) => record,
            Err(_) => {
                shared.give_up.store(true, Ordering::Relaxed);
                w.await
            }
        };
        watches.push(record.expect("watcher task"));
    }
    log("watchers stopped".into());

    let snaps = snapshots(&cluster, 1, last).await;
    let history = History::from_snapshots(&snaps)
        .unwrap_or_else(|e| panic!("{params}: the ground truth is inconsistent: {e}"));
    log(format!(
        "history: {} changes in revisions 2..={last}",
        history.events().len()
    ));
    let mut problems = check_acks(&history, &acks, &attempted);

    let reports: Vec<Report> = watches.iter().map(|w| check(&history, w)).collect();
    for (w, r) in watches.iter().zip(&reports) {
        eprintln!("{r}");
        let observed = w.last_observed();
        if observed < last {
            problems.push(format!(
                "watch {} never caught up: last observed revision {observed} of {last}",
                w.name
            ));
        }
        if r.stats.events == 0 || r.stats.expected == 0 {
            problems.push(format!("watch {} checked nothing: {:?}", w.name, r.stats));
        }
    }

    // Honesty: a thin run proves nothing.
    let resumed: usize = watches
        .iter()
        .map(|w| {
            w.segments
                .iter()
                .skip(1)
                .filter(|s| !s.responses.is_empty())
                .count()
        })
        .sum();
    let multi = (2..=last).filter(|&r| history.at(r).len() > 1).count();
    let deletes = history
        .events()
        .iter()
        .filter(|e| e.kind == Kind::Delete)
        .count();
    let atomic_seen: usize = reports.iter().map(|r| r.stats.multi_event_responses).sum();
    eprintln!(
        "{} acknowledged writes; {resumed} resumed watch streams; {multi} multi-key revisions, \
         {deletes} deletes; {atomic_seen} multi-event watch responses",
        acks.len()
    );
    if history.events().len() < 100 || multi == 0 || deletes == 0 || atomic_seen == 0 {
        problems.push("the history is too thin to check anything".into());
    }
    if kills > 0 && resumed == 0 {
        problems.push("no watch was resumed: the kills tested nothing".into());
    }

    let violations: usize = reports.iter().map(|r| r.violations.len()).sum();
    if violations > 0 || !problems.is_empty() {
        let path = std::env::temp_dir().join(format!("armada-watch-{seed}.txt"));
        dump(&path, &params, &events, &history, &watches, &reports);
        let mut summary = format!("{params}\n");
        for r in reports.iter().filter(|r| !r.is_ok()) {
            let _ = writeln!(summary, "{r}");
        }
        for p in &problems {
            let _ = writeln!(summary, "{p}");
        }
        panic!("{summary}");
    }
}
