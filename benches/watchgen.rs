//! Watch fan-out load for any etcd v3 gRPC endpoint (etcd itself or Armada),
//! used by `benches/run.sh` next to `loadgen.rs`, with the same clients for
//! both servers.
//!
//! `--watchers` watchers on one key prefix, spread evenly over `--streams`
//! gRPC Watch streams (bidirectional calls), which are spread round-robin
//! over `--conns` HTTP/2 connections; like etcd's `benchmark watch`
//! (`--streams 10 --watch-per-stream 100`). One writer, on a connection of
//! its own, then puts `--puts` keys under that prefix, one at a time, at
//! `--rate` puts/s (0 = back to back). Every value starts with the time the
//! put was sent and its sequence number, so each (event, watcher) pair gives
//! a delivery latency (send of the put to receipt of the event, so it
//! includes the commit) and is checked to arrive exactly once and in order.
//! `--warmup` puts go first and are not measured.
//!
//! The measured phase runs from the first measured put until every watcher
//! has received every measured event (or `--drain-timeout` after the last
//! put). It reports delivered events/s (summed over watchers), delivery
//! latency percentiles over all (event, watcher) pairs, and, with
//! `--server-pid`, the server's CPU time per delivered event. Output: one
//! JSON line (starts with `{`) and one human line starting with `# `.
//!
//! Run: `cargo bench --bench watchgen -- --endpoint http://127.0.0.1:2379
//! --watchers 1000 --streams 10 --rate 100 --puts 1000`.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use armada::pb::etcdserverpb::kv_client::KvClient;
use armada::pb::etcdserverpb::watch_client::WatchClient;
use armada::pb::etcdserverpb::watch_request::RequestUnion;
use armada::pb::etcdserverpb::{PutRequest, WatchCreateRequest, WatchRequest, WatchResponse};
use clap::Parser;
use common::{check_loopback, connect, mean_ms, percentile_ms, round, Meter};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Streaming;

/// Bytes of the value header: send time (µs since the run's epoch) and
/// sequence number, both little-endian u64.
const HEADER: usize = 16;

#[derive(Parser, Debug)]
#[command(about = "etcd v3 watch fan-out load (loopback endpoints only)")]
struct Args {
    /// gRPC endpoint(s), comma-separated; watch connections are spread over
    /// them round-robin, the writer uses the first. Loopback only.
    #[arg(long, default_value = "http://127.0.0.1:2379", value_delimiter = ',')]
    endpoint: Vec<String>,
    /// Watchers in total, all on `--prefix`.
    #[arg(long, default_value_t = 1000)]
    watchers: usize,
    /// gRPC Watch streams the watchers are spread over.
    #[arg(long, default_value_t = 10)]
    streams: usize,
    /// HTTP/2 connections the streams are spread over (the writer has its own).
    #[arg(long, default_value_t = 10)]
    conns: usize,
    /// Puts per second, over all writers; 0 = as fast as the writers go.
    #[arg(long, default_value_t = 100)]
    rate: u64,
    /// Concurrent writers, each with one put in flight at a time. Writer k
    /// puts the sequence numbers equal to k modulo `--writers`, so events are
    /// checked to arrive in order per (watcher, writer).
    #[arg(long, default_value_t = 1)]
    writers: u64,
    /// Measured puts.
    #[arg(long, default_value_t = 1000)]
    puts: u64,
    /// Unmeasured puts before the measured ones, at the same rate.
    #[arg(long, default_value_t = 50)]
    warmup: u64,
    /// Value length in bytes (at least 16: the send time and sequence number).
    #[arg(long, default_value_t = 256)]
    val_size: usize,
    /// Key prefix that is watched and written under.
    #[arg(long, default_value = "watch/")]
    prefix: String,
    /// Seconds to wait, after the last put, for the events still in flight.
    #[arg(long, default_value_t = 60)]
    drain_timeout: u64,
    /// Server process(es) to sample CPU/RSS from (/proc/<pid>),
    /// comma-separated; a cluster's numbers are the sums over its members.
    #[arg(long, value_delimiter = ',')]
    server_pid: Vec<u32>,
    /// Free-form system name echoed in the output (e.g. `etcd`, `armada`).
    #[arg(long, default_value = "")]
    label: String,
    /// Timeout of connecting, of each put and of creating the watchers, in ms.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// Tokio worker threads (0 = one per CPU).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// State shared by the writer, the stream readers and the main task.
struct Shared {
    /// Time zero of the send and receive stamps.
    epoch: Instant,
    /// Sequence numbers below this are warm-up puts.
    warmup: u64,
    /// Concurrent writers (`--writers`).
    lanes: u64,
    /// Warm-up events received, over all watchers.
    warm_events: AtomicU64,
    /// Measured events received, over all watchers.
    events: AtomicU64,
    /// Receive time (µs since `epoch`) of the latest measured event.
    last_us: AtomicU64,
}

impl Shared {
    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }
}

/// What one stream's reader observed.
#[derive(Default)]
struct StreamResult {
    /// Delivery latency of each measured (event, watcher) pair, in µs.
    lat_us: Vec<u32>,
    /// Responses that carried measured events.
    responses: u64,
    /// Events that arrived twice or out of order, unknown watch ids,
    /// cancellations and stream failures.
    errors: u64,
    first_error: Option<String>,
}

impl StreamResult {
    fn error(&mut self, e: impl FnOnce() -> String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e());
        }
    }
}

/// The end of the range of keys starting with `prefix` (etcd's "prefix end").
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0] // all keys
}

/// Opens one Watch stream and creates `n` watchers on the prefix; returns the
/// request sender (keep it: dropping it ends the stream), the response stream
/// and the watchers' ids in creation order.
async fn open_stream(
    channel: Channel,
    prefix: &[u8],
    n: usize,
) -> Result<(
    mpsc::Sender<WatchRequest>,
    Streaming<WatchResponse>,
    Vec<i64>,
)> {
    let (tx, rx) = mpsc::channel(n + 1);
    // Queued before the call: the server may send no response headers
    // (which the call waits for) until it has something to say.
    for _ in 0..n {
        let create = WatchCreateRequest {
            key: prefix.to_vec(),
            range_end: prefix_end(prefix),
            ..Default::default()
        };
        tx.send(WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(create)),
        })
        .await
        .expect("receiver alive");
    }
    let mut client = WatchClient::new(channel).max_decoding_message_size(64 << 20);
    let mut stream = client
        .watch(ReceiverStream::new(rx))
        .await
        .context("Watch call")?
        .into_inner();
    let mut ids = Vec::with_capacity(n);
    while ids.len() < n {
        let resp = stream
            .message()
            .await
            .context("Watch stream")?
            .context("Watch stream closed while creating watchers")?;
        if resp.canceled {
            bail!("watcher creation canceled: {}", resp.cancel_reason);
        }
        if !resp.created {
            bail!("unexpected watch response before all watchers were created");
        }
        ids.push(resp.watch_id);
    }
    Ok((tx, stream, ids))
}

/// Reads one stream until `stop` fires, checking every event and recording
/// the latency of measured ones.
async fn read_stream(
    mut stream: Streaming<WatchResponse>,
    ids: Vec<i64>,
    shared: Arc<Shared>,
    expected_per_watcher: u64,
    mut stop: watch::Receiver<bool>,
) -> StreamResult {
    let index: HashMap<i64, usize> = ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    // Next sequence number expected by each watcher from each writer.
    let lanes = shared.lanes;
    let mut next: Vec<u64> = (0..ids.len() as u64 * lanes).map(|i| i % lanes).collect();
    let mut out = StreamResult {
        lat_us: Vec::with_capacity(ids.len() * expected_per_watcher as usize),
        ..Default::default()
    };
    loop {
        let msg = tokio::select! {
            biased;
            _ = stop.changed() => break,
            m = stream.message() => m,
        };
        let resp = match msg {
            Ok(Some(resp)) => resp,
            Ok(None) => {
                out.error(|| "Watch stream closed by the server".into());
                break;
            }
            Err(status) => {
                out.error(|| format!("Watch stream: {status}"));
                break;
            }
        };
        let now = shared.now_us();
        let Some(&w) = index.get(&resp.watch_id) else {
            out.error(|| format!("response for unknown watch id {}", resp.watch_id));
            continue;
        };
        if resp.canceled {
            out.error(|| format!("watcher canceled: {}", resp.cancel_reason));
            continue;
        }
        let (mut warm, mut measured) = (0, 0);
        for ev in &resp.events {
            let header = ev.kv.as_ref().and_then(|kv| kv.value.get(..HEADER));
            let Some(header) = header else {
                out.error(|| "event without a stamped value".into());
                continue;
            };
            let sent = u64::from_le_bytes(header[..8].try_into().unwrap());
            let seq = u64::from_le_bytes(header[8..].try_into().unwrap());
            let n = &mut next[w * lanes as usize + (seq % lanes) as usize];
            if seq != *n {
                let e = *n;
                out.error(|| format!("watcher {w}: got event {seq}, expected {e}"));
            }
            *n = (*n).max(seq + lanes);
            if seq < shared.warmup {
                warm += 1;
            } else {
                measured += 1;
                out.lat_us
                    .push(now.saturating_sub(sent).min(u32::MAX as u64) as u32);
            }
        }
        if warm > 0 {
            shared.warm_events.fetch_add(warm, Ordering::Relaxed);
        }
        if measured > 0 {
            out.responses += 1;
            shared.last_us.fetch_max(now, Ordering::Relaxed);
            shared.events.fetch_add(measured, Ordering::Release);
        }
    }
    out
}

/// The writers' settings.
#[derive(Clone)]
struct Writer {
    kv: KvClient<Channel>,
    prefix: String,
    rate: u64,
    lanes: u64,
    val_size: usize,
}

impl Writer {
    /// Puts sequence numbers `seqs` with `lanes` concurrent writers, seq `i`
    /// not before `(i - seqs.start) / rate` seconds from now (at once when
    /// `rate` is 0); returns each put's latency in µs.
    async fn write(&self, shared: &Arc<Shared>, seqs: std::ops::Range<u64>) -> Result<Vec<u32>> {
        let start = tokio::time::Instant::now();
        let mut lanes = Vec::with_capacity(self.lanes as usize);
        for lane in 0..self.lanes {
            let (w, shared, seqs) = (self.clone(), shared.clone(), seqs.clone());
            lanes.push(tokio::spawn(async move {
                w.lane(&shared, seqs, lane, start).await
            }));
        }
        let mut lat = Vec::with_capacity((seqs.end - seqs.start) as usize);
        for l in lanes {
            lat.extend(l.await.context("writer panicked")??);
        }
        Ok(lat)
    }

    /// One writer: the sequence numbers of `seqs` equal to `lane` modulo
    /// `lanes`, one put at a time.
    async fn lane(
        mut self,
        shared: &Shared,
        seqs: std::ops::Range<u64>,
        lane: u64,
        start: tokio::time::Instant,
    ) -> Result<Vec<u32>> {
        let mut lat = Vec::new();
        let mut value = vec![b'v'; self.val_size];
        for seq in seqs.clone().filter(|s| s % self.lanes == lane) {
            if self.rate > 0 {
                let due = Duration::from_secs_f64((seq - seqs.start) as f64 / self.rate as f64);
                tokio::time::sleep_until(start + due).await;
            }
            let sent = shared.now_us();
            value[..8].copy_from_slice(&sent.to_le_bytes());
            value[8..HEADER].copy_from_slice(&seq.to_le_bytes());
            let req = PutRequest {
                key: format!("{}{seq:08}", self.prefix).into_bytes(),
                value: value.clone(),
                ..Default::default()
            };
            let t0 = Instant::now();
            self.kv
                .put(req)
                .await
                .with_context(|| format!("put {seq}"))?;
            lat.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
        }
        Ok(lat)
    }
}

/// Waits until `counter` reaches `target`, or `deadline` passes, or every
/// reader has stopped; returns whether the target was reached.
async fn wait_for(
    counter: &AtomicU64,
    target: u64,
    deadline: Instant,
    readers: &[tokio::task::JoinHandle<StreamResult>],
) -> bool {
    loop {
        if counter.load(Ordering::Acquire) >= target {
            return true;
        }
        if Instant::now() >= deadline || readers.iter().all(|r| r.is_finished()) {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn run(args: Args) -> Result<()> {
    for e in &args.endpoint {
        check_loopback(e)?;
    }
    if [args.watchers, args.streams, args.conns].contains(&0) || args.puts == 0 || args.writers == 0
    {
        bail!("--watchers, --streams, --conns, --writers and --puts must be positive");
    }
    if args.streams > args.watchers {
        bail!("--streams must not exceed --watchers");
    }
    if args.val_size < HEADER {
        bail!("--val-size must be at least {HEADER}");
    }
    if args.prefix.is_empty() {
        bail!("--prefix must not be empty");
    }
    let timeout = Duration::from_millis(args.timeout_ms);
    let shared = Arc::new(Shared {
        epoch: Instant::now(),
        warmup: args.warmup,
        lanes: args.writers,
        warm_events: AtomicU64::new(0),
        events: AtomicU64::new(0),
        last_us: AtomicU64::new(0),
    });

    let writer = Writer {
        kv: KvClient::new(connect(&args.endpoint[0], timeout, Some(timeout)).await?),
        prefix: args.prefix.clone(),
        rate: args.rate,
        lanes: args.writers,
        val_size: args.val_size,
    };
    let mut conns = Vec::with_capacity(args.conns);
    for i in 0..args.conns {
        let url = &args.endpoint[i % args.endpoint.len()];
        conns.push(connect(url, timeout, None).await?);
    }

    // Watchers: as even a split over the streams as possible.
    let t = Instant::now();
    let mut opening = Vec::with_capacity(args.streams);
    for s in 0..args.streams {
        let n = args.watchers / args.streams + usize::from(s < args.watchers % args.streams);
        let (channel, prefix) = (conns[s % conns.len()].clone(), args.prefix.clone());
        opening.push(tokio::spawn(async move {
            open_stream(channel, prefix.as_bytes(), n).await
        }));
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut senders = Vec::with_capacity(args.streams);
    let mut readers = Vec::with_capacity(args.streams);
    for o in opening {
        let (tx, stream, ids) = tokio::time::timeout(timeout, o)
            .await
            .context("timed out creating watchers")?
            .context("stream task panicked")?
            .context("creating watchers")?;
        senders.push(tx);
        readers.push(tokio::spawn(read_stream(
            stream,
            ids,
            shared.clone(),
            args.puts,
            stop_rx.clone(),
        )));
    }
    eprintln!(
        "# {} watchers on {} streams over {} connections created in {:.2}s",
        args.watchers,
        args.streams,
        args.conns,
        t.elapsed().as_secs_f64()
    );

    let drain = Duration::from_secs(args.drain_timeout);
    let w = args.watchers as u64;
    if args.warmup > 0 {
        writer.write(&shared, 0..args.warmup).await?;
        let done = Instant::now() + drain;
        if !wait_for(&shared.warm_events, w * args.warmup, done, &readers).await {
            eprintln!(
                "# warmup: only {} of {} events delivered",
                shared.warm_events.load(Ordering::Relaxed),
                w * args.warmup
            );
        }
    }

    let expected = w * args.puts;
    let meter = Meter::start(&args.server_pid)?;
    let start_us = shared.now_us();
    let wall = Instant::now();
    let put_lat = writer
        .write(&shared, args.warmup..args.warmup + args.puts)
        .await;
    let put_secs = wall.elapsed().as_secs_f64();
    let complete = put_lat.is_ok()
        && wait_for(&shared.events, expected, Instant::now() + drain, &readers).await;
    let meter_secs = wall.elapsed().as_secs_f64();
    let usage = meter.finish(meter_secs)?;
    let mut put_lat = put_lat?;

    let _ = stop_tx.send(true);
    let mut r = StreamResult::default();
    for h in readers {
        let s = h.await.context("stream reader panicked")?;
        r.lat_us.extend_from_slice(&s.lat_us);
        r.responses += s.responses;
        r.errors += s.errors;
        if r.first_error.is_none() {
            r.first_error = s.first_error;
        }
    }
    drop(senders);

    let delivered = r.lat_us.len() as u64;
    let missing = expected.saturating_sub(delivered);
    // Delivery ends with the last event received; if some never came, the
    // phase lasted until the drain timeout.
    let last_us = if complete {
        shared.last_us.load(Ordering::Relaxed)
    } else {
        start_us + (meter_secs * 1e6) as u64
    };
    let secs = last_us.saturating_sub(start_us).max(1) as f64 / 1e6;
    let kev = delivered.max(1) as f64 / 1000.0;
    r.lat_us.sort_unstable();
    put_lat.sort_unstable();
    let (p50, p90, p99) = (
        percentile_ms(&r.lat_us, 0.50),
        percentile_ms(&r.lat_us, 0.90),
        percentile_ms(&r.lat_us, 0.99),
    );
    let max_ms = r.lat_us.last().map_or(0.0, |&u| u as f64 / 1000.0);
    let events_per_sec = delivered as f64 / secs;
    let puts_per_sec = args.puts as f64 / put_secs;
    // Per delivered event, ms per 1000 = µs per event.
    let server_us = usage.server_cpu_ms.map(|c| c / kev);
    let client_us = usage.client_cpu_ms / kev;

    let line = serde_json::json!({
        "system": args.label,
        "workload": "watch",
        "watchers": args.watchers,
        "streams": args.streams,
        "conns": args.conns,
        "rate": args.rate,
        "writers": args.writers,
        "puts": args.puts,
        "warmup": args.warmup,
        "val_size": args.val_size,
        "expected_events": expected,
        "events": delivered,
        "missing": missing,
        // Above 1 when the server batches a watcher's events into one response.
        "events_per_response": round(delivered as f64 / r.responses.max(1) as f64, 2),
        "errors": r.errors + missing,
        "seconds": round(secs, 4),
        "events_per_sec": round(events_per_sec, 1),
        "puts_per_sec": round(puts_per_sec, 1),
        "put_p50_ms": round(percentile_ms(&put_lat, 0.50), 3),
        "put_p99_ms": round(percentile_ms(&put_lat, 0.99), 3),
        "mean_ms": round(mean_ms(&r.lat_us), 3),
        "p50_ms": round(p50, 3),
        "p90_ms": round(p90, 3),
        "p99_ms": round(p99, 3),
        "max_ms": round(max_ms, 3),
        "server_cpu_us_per_event": server_us.map(|c| round(c, 3)),
        "server_cpu_cores": usage.server_cpu_ms.map(|c| round(c / 1000.0 / meter_secs, 2)),
        "server_rss_mb": usage.server_rss_kb.map(|kb| round(kb as f64 / 1024.0, 1)),
        "server_write_kb_per_put": usage.server_write_kb.map(|w| round(w / args.puts as f64, 2)),
        "client_cpu_us_per_event": round(client_us, 3),
        "other_cpu_cores": usage.other_cores.map(|c| round(c, 2)),
        "first_error": r.first_error,
    });
    println!("{line}");

    let rate = if args.rate == 0 {
        "max".to_string()
    } else {
        format!("{}/s", args.rate)
    };
    let cpu = server_us.map_or(String::new(), |c| {
        format!(
            ", server CPU {c:.2} µs/event ({:.2} cores), other CPU {:.2} cores",
            usage.server_cpu_ms.unwrap_or(0.0) / 1000.0 / meter_secs,
            usage.other_cores.unwrap_or(0.0)
        )
    });
    println!(
        "# {} watch watchers={} streams={} writers={} rate={rate} puts={}: {events_per_sec:.0} events/s in {secs:.2}s \
         ({puts_per_sec:.0} puts/s), delivery p50 {p50:.2} ms, p99 {p99:.2} ms, max {max_ms:.2} ms, \
         missing {missing}, errors {}{cpu}, client CPU {client_us:.2} µs/event",
        if args.label.is_empty() { "-" } else { &args.label },
        args.watchers,
        args.streams,
        args.writers,
        args.puts,
        r.errors,
    );
    if let Some(e) = &r.first_error {
        eprintln!("# first error: {e}");
    }
    if delivered == 0 {
        bail!("no event was delivered");
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    common::main_with("watchgen", args.threads, || run(args))
}
