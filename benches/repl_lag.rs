//! Cross-cluster replication lag and snapshot throughput, against a running
//! leader (`armada leader --replication.enabled`) and follower (`armada
//! follower`), used by `benches/replication.sh`.
//!
//! Lag: one task puts at a steady `--rate` on the leader for `--seconds`
//! and records each write's revision and acknowledgement time; another
//! reads the follower (serializable, so local) back to back and records when
//! each revision first became visible. A write's lag is visible - acked
//! (0 when the follower already had it by the time the ack arrived). The
//! poll loop bounds the resolution (one local read, ~0.1-0.3 ms here).
//!
//! Snapshot: times `Snapshot.Stream` of the default table from the leader's
//! replication port, with every chunk's and the whole file's CRC checked,
//! and reports MB/s.
//!
//! Prints one JSON line and one human line starting with `# `.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use armada::pb::etcdserverpb::kv_client::KvClient;
use armada::pb::etcdserverpb::{PutRequest, RangeRequest};
use armada::pb::replication::snapshot_client::SnapshotClient;
use armada::pb::replication::SnapshotRequest;
use clap::Parser;
use tokio::sync::Mutex;
use tonic::transport::Channel;

#[derive(Parser, Debug)]
struct Opts {
    /// The leader's etcd API.
    #[arg(long)]
    leader: String,
    /// The follower's etcd API.
    #[arg(long)]
    follower: String,
    /// The leader's replication API (for the snapshot measurement).
    #[arg(long)]
    replication: Option<String>,
    /// Writes per second on the leader.
    #[arg(long, default_value_t = 200)]
    rate: u64,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long, default_value_t = 256)]
    val_size: usize,
    /// Measure the snapshot stream only.
    #[arg(long)]
    snapshot_only: bool,
}

async fn connect(url: &str) -> Result<Channel> {
    Ok(Channel::from_shared(url.to_string())?.connect().await?)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn lag(opts: &Opts) -> Result<()> {
    let leader = KvClient::new(connect(&opts.leader).await?);
    let follower = KvClient::new(connect(&opts.follower).await?);
    let start = Instant::now();
    let seen: Arc<Mutex<Vec<(i64, Duration)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let (seen, stop, mut follower) = (seen.clone(), stop.clone(), follower.clone());
        tokio::spawn(async move {
            let mut last = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let req = RangeRequest {
                    key: b"lag/probe".to_vec(),
                    serializable: true,
                    ..Default::default()
                };
                if let Ok(r) = follower.range(req).await {
                    let rev = r.into_inner().header.map_or(0, |h| h.revision);
                    if rev > last {
                        last = rev;
                        seen.lock().await.push((rev, start.elapsed()));
                    }
                }
            }
        })
    };
    let mut acked = Vec::new();
    let interval = Duration::from_secs_f64(1.0 / opts.rate as f64);
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let value = vec![b'v'; opts.val_size];
    let total = opts.rate * opts.seconds;
    let mut leader_c = leader.clone();
    for i in 0..total {
        ticks.tick().await;
        let req = PutRequest {
            key: format!("lag/{}", i % 1000).into_bytes(),
            value: value.clone(),
            ..Default::default()
        };
        let resp = leader_c.put(req).await?.into_inner();
        acked.push((resp.header.map_or(0, |h| h.revision), start.elapsed()));
    }
    // Let the follower catch up with the last write (bounded).
    let last_rev = acked.last().map_or(0, |a| a.0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.lock().await.last().map_or(0, |s| s.0) < last_rev {
        if Instant::now() > deadline {
            bail!("the follower did not reach revision {last_rev} within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    poller.await?;
    drop(follower);
    let seen = seen.lock().await;
    let mut lags = Vec::with_capacity(acked.len());
    for (rev, ack) in &acked {
        let i = seen.partition_point(|(r, _)| r < rev);
        let visible = seen[i].1;
        lags.push(visible.saturating_sub(*ack).as_secs_f64() * 1000.0);
    }
    lags.sort_by(|a, b| a.total_cmp(b));
    let (p50, p99, max) = (
        percentile(&lags, 0.5),
        percentile(&lags, 0.99),
        lags.last().copied().unwrap_or(f64::NAN),
    );
    println!(
        "{{\"kind\":\"lag\",\"rate\":{},\"writes\":{},\"p50_ms\":{p50:.3},\"p99_ms\":{p99:.3},\"max_ms\":{max:.3}}}",
        opts.rate,
        lags.len()
    );
    println!(
        "# lag rate={}/s writes={}: p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms",
        opts.rate,
        lags.len()
    );
    Ok(())
}

async fn snapshot(url: &str) -> Result<()> {
    let mut client = SnapshotClient::new(connect(url).await?).max_decoding_message_size(usize::MAX);
    let start = Instant::now();
    let mut stream = client
        .stream(SnapshotRequest {
            table: "default".into(),
            cluster: String::new(),
        })
        .await?
        .into_inner();
    let mut bytes = 0u64;
    let mut whole = crc32fast::Hasher::new();
    let mut trailer = None;
    while let Some(chunk) = stream.message().await? {
        if let Some(t) = chunk.trailer {
            trailer = Some(t);
            continue;
        }
        if crc32fast::hash(&chunk.data) != chunk.crc32 {
            bail!("chunk checksum mismatch");
        }
        whole.update(&chunk.data);
        bytes += chunk.data.len() as u64;
    }
    let Some(t) = trailer else {
        bail!("no trailer")
    };
    if t.size != bytes || t.crc32 != whole.finalize() {
        bail!("snapshot size or checksum mismatch");
    }
    let secs = start.elapsed().as_secs_f64();
    let mbps = bytes as f64 / 1e6 / secs;
    println!(
        "{{\"kind\":\"snapshot\",\"bytes\":{bytes},\"seconds\":{secs:.3},\"mb_per_s\":{mbps:.1}}}"
    );
    println!(
        "# snapshot {:.1} MB in {secs:.2} s: {mbps:.1} MB/s",
        bytes as f64 / 1e6
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let opts = Opts::parse();
    if !opts.snapshot_only {
        lag(&opts).await?;
    }
    if let Some(url) = &opts.replication {
        snapshot(url).await?;
    }
    Ok(())
}
