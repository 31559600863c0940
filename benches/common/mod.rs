//! Helpers shared by the bench binaries that drive etcd and Armada side by
//! side (`loadgen.rs`, `watchgen.rs`): loopback-only gRPC channels, CPU/RSS/IO
//! sampling of the server processes from `/proc`, and latency percentiles.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tonic::transport::{Channel, Endpoint};

/// Refuses anything but a plain-text loopback endpoint: these tools generate
/// heavy load and must not be pointed at a shared server by mistake.
pub fn check_loopback(endpoint: &str) -> Result<()> {
    let uri: tonic::codegen::http::Uri = endpoint.parse().context("bad --endpoint")?;
    if uri.scheme_str() != Some("http") {
        bail!("--endpoint must be http:// (no TLS): {endpoint}");
    }
    let host = uri.host().context("--endpoint has no host")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        bail!("only loopback endpoints are allowed, got {host}");
    }
    Ok(())
}

/// One gRPC channel (HTTP/2 connection) to `url`, with Nagle off. A
/// `request_timeout` applies to every call on the channel, so leave it unset
/// for long-lived streams.
pub async fn connect(
    url: &str,
    connect_timeout: Duration,
    request_timeout: Option<Duration>,
) -> Result<Channel> {
    let mut ep = Endpoint::from_shared(url.to_string())?
        .tcp_nodelay(true)
        .connect_timeout(connect_timeout);
    if let Some(t) = request_timeout {
        ep = ep.timeout(t);
    }
    ep.connect()
        .await
        .with_context(|| format!("connect to {url}"))
}

/// CPU time, resident memory and bytes written of a process, from /proc.
#[derive(Clone, Copy, Default)]
pub struct ProcSample {
    pub cpu_ticks: u64,
    pub rss_kb: u64,
    pub write_bytes: Option<u64>,
}

/// The sum of [`proc_sample`] over the server processes, if any were given.
pub fn servers_sample(pids: &[u32]) -> Result<Option<ProcSample>> {
    if pids.is_empty() {
        return Ok(None);
    }
    let mut sum = ProcSample {
        cpu_ticks: 0,
        rss_kb: 0,
        write_bytes: Some(0),
    };
    for pid in pids {
        let s = proc_sample(&pid.to_string())?;
        sum.cpu_ticks += s.cpu_ticks;
        sum.rss_kb += s.rss_kb;
        sum.write_bytes = sum.write_bytes.zip(s.write_bytes).map(|(a, b)| a + b);
    }
    Ok(Some(sum))
}

/// Samples `/proc/<pid>` (`pid` may be `self`).
pub fn proc_sample(pid: &str) -> Result<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("read /proc/{pid}/stat"))?;
    // Fields after the parenthesised command name start at field 3 (state);
    // utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').context("malformed stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Result<u64> {
        f.get(n - 3)
            .context("short stat")?
            .parse()
            .context("stat field")
    };
    let cpu_ticks = field(14)? + field(15)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kb = kb_field(&status, "VmRSS:").unwrap_or(0);
    let write_bytes = std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|io| kb_field(&io, "write_bytes:"));
    Ok(ProcSample {
        cpu_ticks,
        rss_kb,
        write_bytes,
    })
}

/// Busy ticks of the whole machine (all CPUs), from the first line of /proc/stat.
pub fn machine_busy_ticks() -> Result<u64> {
    let stat = std::fs::read_to_string("/proc/stat").context("read /proc/stat")?;
    let line = stat.lines().next().context("empty /proc/stat")?;
    // user nice system idle iowait irq softirq steal (guest is inside user).
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    if f.len() < 8 {
        bail!("short /proc/stat cpu line");
    }
    Ok(f.iter().sum::<u64>() - f[3] - f[4])
}

/// First number after `name` in a `/proc` "Name: value" file.
fn kb_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`), from the aux vector.
pub fn clock_ticks_per_sec() -> u64 {
    const AT_CLKTCK: u64 = 17;
    if let Ok(auxv) = std::fs::read("/proc/self/auxv") {
        for pair in auxv.chunks_exact(16) {
            let k = u64::from_ne_bytes(pair[..8].try_into().unwrap());
            let v = u64::from_ne_bytes(pair[8..].try_into().unwrap());
            if k == AT_CLKTCK && v > 0 {
                return v;
            }
        }
    }
    100
}

/// Resource use over a measured phase: start it right before the phase,
/// [`Meter::finish`] it right after.
pub struct Meter {
    pids: Vec<u32>,
    server: Option<ProcSample>,
    client: ProcSample,
    busy: u64,
}

/// What a [`Meter`] saw. Server figures are sums over the server processes
/// and `None` when no `--server-pid` was given.
pub struct Usage {
    pub server_cpu_ms: Option<f64>,
    pub server_rss_kb: Option<u64>,
    pub server_write_kb: Option<f64>,
    pub client_cpu_ms: f64,
    /// Cores used by neither the servers nor this process during the phase
    /// (e.g. a compiler running next to the benchmark): a noise gauge.
    pub other_cores: Option<f64>,
}

impl Meter {
    pub fn start(pids: &[u32]) -> Result<Meter> {
        Ok(Meter {
            pids: pids.to_vec(),
            server: servers_sample(pids)?,
            client: proc_sample("self")?,
            busy: machine_busy_ticks()?,
        })
    }

    /// `secs` is the wall-clock length of the phase.
    pub fn finish(self, secs: f64) -> Result<Usage> {
        let busy = machine_busy_ticks()?;
        let client = proc_sample("self")?;
        let server = servers_sample(&self.pids)?;
        let ticks = clock_ticks_per_sec() as f64;
        let cpu_ms =
            |a: ProcSample, b: ProcSample| (b.cpu_ticks - a.cpu_ticks) as f64 * 1000.0 / ticks;
        let pair = self.server.zip(server);
        let server_cpu_ms = pair.map(|(a, b)| cpu_ms(a, b));
        let server_write_kb = pair
            .and_then(|(a, b)| Some(b.write_bytes?.saturating_sub(a.write_bytes?) as f64 / 1024.0));
        let client_cpu_ms = cpu_ms(self.client, client);
        let machine_ms = (busy - self.busy) as f64 * 1000.0 / ticks;
        let other_cores =
            server_cpu_ms.map(|srv| (machine_ms - client_cpu_ms - srv).max(0.0) / 1000.0 / secs);
        Ok(Usage {
            server_cpu_ms,
            server_rss_kb: server.map(|s| s.rss_kb),
            server_write_kb,
            client_cpu_ms,
            other_cores,
        })
    }
}

/// Nearest-rank percentile of sorted latencies in microseconds, in milliseconds.
pub fn percentile_ms(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = ((p * sorted_us.len() as f64).ceil() as usize).clamp(1, sorted_us.len());
    sorted_us[rank - 1] as f64 / 1000.0
}

/// Mean of latencies in microseconds, in milliseconds (0 when empty).
pub fn mean_ms(us: &[u32]) -> f64 {
    if us.is_empty() {
        return 0.0;
    }
    us.iter().map(|&u| u as f64).sum::<f64>() / us.len() as f64 / 1000.0
}

pub fn round(x: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (x * m).round() / m
}

/// The body of a bench binary's `main`: runs `run` on a multi-threaded
/// runtime (`threads` workers, 0 = one per core) and turns an error into a
/// message prefixed with `name` and a failing exit code.
pub fn main_with<F, Fut>(name: &str, threads: usize, run: F) -> std::process::ExitCode
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if threads > 0 {
        rt.worker_threads(threads);
    }
    let result = rt
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run()));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
