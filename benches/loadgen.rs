//! Load generator for any etcd v3 gRPC endpoint (etcd itself or Armada), used by
//! `benches/run.sh` to benchmark both servers side by side with the same client.
//! It opens `--conns` gRPC channels shared round-robin by `--clients` tokio tasks,
//! each issuing requests back-to-back until `--total` requests have been sent,
//! records every request's latency, and prints one JSON line (machine-readable,
//! starts with `{`) plus one human line prefixed with `# `. Workloads: `put`
//! (random keys in `--key-space`), `range` (single-key gets over a preloaded
//! key space, `--consistency s|l`) and `txn-create` (create-if-absent: compare
//! CREATE(key)==0, then Put, else Range; unique keys so all succeed on a fresh
//! server). With `--server-pid`, the server's CPU time (utime+stime from
//! /proc) over the measured phase is reported per 1000 ops: on a 2-core box the
//! client and server compete for CPU, so CPU per op is the fairer metric.
//!
//! Run: `cargo bench --bench loadgen -- --endpoint http://127.0.0.1:2379
//! --workload put --clients 64 --conns 8 --total 20000`.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use armada::pb::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use armada::pb::etcdserverpb::kv_client::KvClient;
use armada::pb::etcdserverpb::request_op::Request as Op;
use armada::pb::etcdserverpb::{Compare, PutRequest, RangeRequest, RequestOp, TxnRequest};
use clap::{Parser, ValueEnum};
use common::{check_loopback, connect, mean_ms, percentile_ms, round, Meter};
use tonic::transport::Channel;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Workload {
    /// Put a random key of the key space.
    Put,
    /// Get one random key of the (preloaded) key space.
    Range,
    /// Create-if-absent transaction on a fresh, unique key.
    TxnCreate,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Put => "put",
            Workload::Range => "range",
            Workload::TxnCreate => "txn-create",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Consistency {
    /// Serializable: served from the local store, no quorum round.
    S,
    /// Linearizable: the server confirms leadership (ReadIndex) first.
    L,
}

/// Command-line options; names follow etcd's `tools/benchmark` where they overlap.
#[derive(Parser, Debug)]
#[command(about = "etcd v3 load generator (loopback endpoints only)")]
struct Args {
    /// gRPC endpoint(s), comma-separated (connections are spread over them
    /// round-robin, as over the members of a cluster); loopback only.
    #[arg(long, default_value = "http://127.0.0.1:2379", value_delimiter = ',')]
    endpoint: Vec<String>,
    #[arg(long, value_enum)]
    workload: Workload,
    /// Concurrent request loops (tokio tasks).
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// gRPC channels (HTTP/2 connections), shared round-robin by the clients.
    #[arg(long, default_value_t = 1)]
    conns: usize,
    /// Measured requests, split dynamically across the clients.
    #[arg(long, default_value_t = 10_000)]
    total: usize,
    /// Unmeasured requests sent first with the same concurrency.
    #[arg(long, default_value_t = 0)]
    warmup: usize,
    /// Key length in bytes (keys are zero-padded decimal indexes).
    #[arg(long, default_value_t = 8)]
    key_size: usize,
    /// Value length in bytes.
    #[arg(long, default_value_t = 256)]
    val_size: usize,
    /// Distinct keys used by `put` and preloaded (then read) by `range`.
    #[arg(long, default_value_t = 100_000)]
    key_space: usize,
    /// Range consistency: `s` (serializable) or `l` (linearizable).
    #[arg(long, value_enum, default_value = "l")]
    consistency: Consistency,
    /// Puts per Txn when preloading the key space for `range` (1 = plain puts).
    #[arg(long, default_value_t = 100)]
    preload_batch: usize,
    /// Cap on preloaded keys per second (0 = none). etcd 3.4 copies its whole
    /// pending-write buffer on every read and that buffer never shrinks, so an
    /// unthrottled bulk preload makes every later etcd read slower; 10,000
    /// keys/s is about what 64 clients of plain Puts reach on 2 cores.
    #[arg(long, default_value_t = 10_000)]
    preload_rate: u64,
    /// Concurrent loops writing the preload.
    #[arg(long, default_value_t = 8)]
    preload_clients: usize,
    /// Server process(es) to sample CPU/RSS/IO from (/proc/<pid>),
    /// comma-separated; a cluster's numbers are the sums over its members.
    #[arg(long, value_delimiter = ',')]
    server_pid: Vec<u32>,
    /// Free-form system name echoed in the output (e.g. `etcd`, `armada`).
    #[arg(long, default_value = "")]
    label: String,
    /// Per-request timeout in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// Tokio worker threads (0 = one per CPU).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Seed of the key choice in `put` and `range`.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// Immutable description of what every request loop does.
struct Plan {
    workload: Workload,
    serializable: bool,
    key_size: usize,
    key_space: usize,
    value: Vec<u8>,
    seed: u64,
}

impl Plan {
    fn key(&self, idx: usize) -> Vec<u8> {
        format!("{idx:0width$}", width = self.key_size).into_bytes()
    }

    /// Keys of `txn-create` start with `c`, so they never collide with the
    /// all-digit keys of `put` and `range`.
    fn create_key(&self, seq: usize) -> Vec<u8> {
        format!("c{seq:0width$}", width = self.key_size - 1).into_bytes()
    }
}

/// What one request loop observed.
#[derive(Default)]
struct LoopResult {
    lat_us: Vec<u32>,
    errors: u64,
    txn_succeeded: u64,
    first_error: Option<String>,
}

/// Outcome of a successful request.
enum Outcome {
    Plain,
    TxnSucceeded,
    TxnFailed,
}

/// SplitMix64: tiny, deterministic, good enough to pick keys.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

async fn one_request(
    kv: &mut KvClient<Channel>,
    plan: &Plan,
    rng: &mut Rng,
    seq: usize,
) -> Result<Outcome> {
    match plan.workload {
        Workload::Put => {
            let req = PutRequest {
                key: plan.key(rng.below(plan.key_space)),
                value: plan.value.clone(),
                ..Default::default()
            };
            kv.put(req).await?;
            Ok(Outcome::Plain)
        }
        Workload::Range => {
            let req = RangeRequest {
                key: plan.key(rng.below(plan.key_space)),
                serializable: plan.serializable,
                ..Default::default()
            };
            let resp = kv.range(req).await?.into_inner();
            if resp.kvs.len() != 1 {
                bail!("range of a preloaded key returned {} kvs", resp.kvs.len());
            }
            Ok(Outcome::Plain)
        }
        Workload::TxnCreate => {
            let key = plan.create_key(seq);
            let req = TxnRequest {
                compare: vec![Compare {
                    result: CompareResult::Equal as i32,
                    target: CompareTarget::Create as i32,
                    key: key.clone(),
                    target_union: Some(TargetUnion::CreateRevision(0)),
                    ..Default::default()
                }],
                success: vec![RequestOp {
                    request: Some(Op::RequestPut(PutRequest {
                        key: key.clone(),
                        value: plan.value.clone(),
                        ..Default::default()
                    })),
                }],
                failure: vec![RequestOp {
                    request: Some(Op::RequestRange(RangeRequest {
                        key,
                        ..Default::default()
                    })),
                }],
            };
            let resp = kv.txn(req).await?.into_inner();
            Ok(if resp.succeeded {
                Outcome::TxnSucceeded
            } else {
                Outcome::TxnFailed
            })
        }
    }
}

/// One client: takes request numbers from the shared counter until `total`.
async fn request_loop(
    mut kv: KvClient<Channel>,
    plan: Arc<Plan>,
    next: Arc<AtomicUsize>,
    total: usize,
    seq_base: usize,
    stream: u64,
) -> LoopResult {
    let mut out = LoopResult::default();
    let mut rng = Rng(plan.seed ^ stream.wrapping_mul(0xA24B_AED4_963E_E407));
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= total {
            break;
        }
        let t0 = Instant::now();
        match one_request(&mut kv, &plan, &mut rng, seq_base + i).await {
            Ok(outcome) => {
                let us = t0.elapsed().as_micros().min(u32::MAX as u128) as u32;
                out.lat_us.push(us);
                if let Outcome::TxnSucceeded = outcome {
                    out.txn_succeeded += 1;
                }
            }
            Err(e) => {
                out.errors += 1;
                if out.first_error.is_none() {
                    out.first_error = Some(format!("{e:#}"));
                }
            }
        }
    }
    out
}

/// Runs `total` requests over `clients` loops; returns the merged result and
/// the wall-clock time of the phase.
async fn run_phase(
    channels: &[Channel],
    clients: usize,
    plan: &Arc<Plan>,
    total: usize,
    seq_base: usize,
    stream_base: u64,
) -> Result<(LoopResult, Duration)> {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut handles = Vec::with_capacity(clients);
    for c in 0..clients {
        let kv = KvClient::new(channels[c % channels.len()].clone());
        handles.push(tokio::spawn(request_loop(
            kv,
            plan.clone(),
            next.clone(),
            total,
            seq_base,
            stream_base + c as u64,
        )));
    }
    let mut merged = LoopResult {
        lat_us: Vec::with_capacity(total),
        ..Default::default()
    };
    for h in handles {
        let r = h.await.context("request loop panicked")?;
        merged.lat_us.extend_from_slice(&r.lat_us);
        merged.errors += r.errors;
        merged.txn_succeeded += r.txn_succeeded;
        if merged.first_error.is_none() {
            merged.first_error = r.first_error;
        }
    }
    Ok((merged, start.elapsed()))
}

/// Writes keys `0..key_space` (Txns of `batch` puts, at most `rate` keys/s)
/// so `range` always hits.
async fn preload(
    channels: &[Channel],
    plan: &Plan,
    batch: usize,
    rate: u64,
    workers: usize,
) -> Result<()> {
    let batch = batch.max(1);
    let batches = plan.key_space.div_ceil(batch);
    let next = Arc::new(AtomicUsize::new(0));
    let start = tokio::time::Instant::now();
    let mut handles = Vec::new();
    for w in 0..workers.max(1) {
        let mut kv = KvClient::new(channels[w % channels.len()].clone());
        let next = next.clone();
        let (key_size, key_space, value) = (plan.key_size, plan.key_space, plan.value.clone());
        handles.push(tokio::spawn(async move {
            let key = |i: usize| format!("{i:0key_size$}").into_bytes();
            loop {
                let b = next.fetch_add(1, Ordering::Relaxed);
                if b >= batches {
                    return Ok::<(), anyhow::Error>(());
                }
                if rate > 0 {
                    let due = Duration::from_secs_f64((b * batch) as f64 / rate as f64);
                    tokio::time::sleep_until(start + due).await;
                }
                let range = b * batch..((b + 1) * batch).min(key_space);
                if batch == 1 {
                    let req = PutRequest {
                        key: key(range.start),
                        value: value.clone(),
                        ..Default::default()
                    };
                    kv.put(req).await.context("preload put")?;
                } else {
                    let success = range
                        .map(|i| RequestOp {
                            request: Some(Op::RequestPut(PutRequest {
                                key: key(i),
                                value: value.clone(),
                                ..Default::default()
                            })),
                        })
                        .collect();
                    let req = TxnRequest {
                        success,
                        ..Default::default()
                    };
                    kv.txn(req).await.context("preload txn")?;
                }
            }
        }));
    }
    for h in handles {
        h.await.context("preload task panicked")??;
    }
    Ok(())
}

async fn run(args: Args) -> Result<()> {
    for e in &args.endpoint {
        check_loopback(e)?;
    }
    if args.clients == 0 || args.conns == 0 || args.total == 0 || args.key_space == 0 {
        bail!("--clients, --conns, --total and --key-space must be positive");
    }
    let (max_index, key_digits) = match args.workload {
        Workload::TxnCreate => (
            args.warmup + args.total - 1,
            args.key_size.saturating_sub(1),
        ),
        _ => (args.key_space - 1, args.key_size),
    };
    if max_index.to_string().len() > key_digits {
        bail!(
            "--key-size {} is too short for key index {max_index}",
            args.key_size
        );
    }
    let plan = Arc::new(Plan {
        workload: args.workload,
        serializable: args.consistency == Consistency::S,
        key_size: args.key_size,
        key_space: args.key_space,
        value: vec![b'v'; args.val_size],
        seed: args.seed,
    });

    let timeout = Duration::from_millis(args.timeout_ms);
    let mut channels = Vec::with_capacity(args.conns);
    for i in 0..args.conns {
        let url = &args.endpoint[i % args.endpoint.len()];
        channels.push(connect(url, timeout, Some(timeout)).await?);
    }

    if args.workload == Workload::Range {
        let t = Instant::now();
        preload(
            &channels,
            &plan,
            args.preload_batch,
            args.preload_rate,
            args.preload_clients,
        )
        .await?;
        eprintln!(
            "# preloaded {} keys in {:.2}s",
            args.key_space,
            t.elapsed().as_secs_f64()
        );
    }
    if args.warmup > 0 {
        let (w, _) = run_phase(&channels, args.clients, &plan, args.warmup, 0, 1 << 32).await?;
        if w.errors > 0 {
            eprintln!(
                "# warmup: {} errors, first: {}",
                w.errors,
                w.first_error.unwrap_or_default()
            );
        }
    }

    let meter = Meter::start(&args.server_pid)?;
    let (mut r, elapsed) =
        run_phase(&channels, args.clients, &plan, args.total, args.warmup, 0).await?;
    let secs = elapsed.as_secs_f64();
    let usage = meter.finish(secs)?;

    let ok = r.lat_us.len() as u64;
    let kops = ok.max(1) as f64 / 1000.0;
    let server_cpu_ms = usage.server_cpu_ms;
    let client_cpu_ms = usage.client_cpu_ms;
    let other_cores = usage.other_cores;

    r.lat_us.sort_unstable();
    let mean_ms = mean_ms(&r.lat_us);
    let ops_per_sec = ok as f64 / secs;
    let (p50, p90, p99) = (
        percentile_ms(&r.lat_us, 0.50),
        percentile_ms(&r.lat_us, 0.90),
        percentile_ms(&r.lat_us, 0.99),
    );
    let max_ms = r.lat_us.last().map_or(0.0, |&u| u as f64 / 1000.0);

    let line = serde_json::json!({
        "system": args.label,
        "workload": args.workload.name(),
        "consistency": match (args.workload, args.consistency) {
            (Workload::Range, Consistency::S) => "s",
            (Workload::Range, Consistency::L) => "l",
            _ => "",
        },
        "clients": args.clients,
        "conns": args.conns,
        "total": args.total,
        "key_size": args.key_size,
        "val_size": args.val_size,
        "key_space": args.key_space,
        "ok": ok,
        "errors": r.errors,
        "txn_succeeded": (args.workload == Workload::TxnCreate).then_some(r.txn_succeeded),
        "seconds": round(secs, 4),
        "ops_per_sec": round(ops_per_sec, 1),
        "mean_ms": round(mean_ms, 3),
        "p50_ms": round(p50, 3),
        "p90_ms": round(p90, 3),
        "p99_ms": round(p99, 3),
        "max_ms": round(max_ms, 3),
        "server_cpu_ms_per_kop": server_cpu_ms.map(|c| round(c / kops, 2)),
        "server_cpu_cores": server_cpu_ms.map(|c| round(c / 1000.0 / secs, 2)),
        "server_rss_mb": usage.server_rss_kb.map(|kb| round(kb as f64 / 1024.0, 1)),
        "server_write_kb_per_kop": usage.server_write_kb.map(|w| round(w / kops, 1)),
        "client_cpu_ms_per_kop": round(client_cpu_ms / kops, 2),
        "other_cpu_cores": other_cores.map(|c| round(c, 2)),
        "first_error": r.first_error,
    });
    println!("{line}");

    let what = match (args.workload, args.consistency) {
        (Workload::Range, Consistency::S) => "range(s)".to_string(),
        (Workload::Range, Consistency::L) => "range(l)".to_string(),
        (w, _) => w.name().to_string(),
    };
    let cpu = server_cpu_ms.map_or(String::new(), |c| {
        format!(
            ", server CPU {:.1} ms/kop ({:.2} cores), other CPU {:.2} cores",
            c / kops,
            c / 1000.0 / secs,
            other_cores.unwrap_or(0.0)
        )
    });
    println!(
        "# {} {what} clients={} conns={} total={}: {:.0} ops/s in {secs:.2}s, \
         p50 {p50:.2} ms, p99 {p99:.2} ms, max {max_ms:.2} ms, errors {}{cpu}, client CPU {:.1} ms/kop",
        if args.label.is_empty() { "-" } else { &args.label },
        args.clients,
        args.conns,
        args.total,
        ops_per_sec,
        r.errors,
        client_cpu_ms / kops,
    );
    if let Some(e) = &r.first_error {
        eprintln!("# first error: {e}");
    }
    if ok == 0 {
        bail!("every request failed");
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    common::main_with("loadgen", args.threads, || run(args))
}
