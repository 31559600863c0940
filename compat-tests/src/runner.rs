//! Runs a parsed scenario against one endpoint with the generated tonic
//! clients and builds its transcript: comment and blank lines verbatim,
//! each request echoed as `> <source line>` followed by its rendered
//! response or error (see [`crate::render`]). Runs of three or more
//! identical consecutive response lines are collapsed into one line with a
//! ` [xN]` suffix (e.g. the 128 inner responses of a max-size txn).
//! `watch ...` commands act on named Watch streams ([`crate::watch_stream`]);
//! `lease ...` ([`crate::lease_cmd`]), `alarm ...` ([`crate::alarm_cmd`]) and
//! the Lock/Election commands ([`crate::concurrency`]) have their own
//! executors. Aliases of server-chosen lease ids live in one
//! [`Names`] per run.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::concurrency::Concurrency;
use crate::dsl::{Command, Item};
use crate::names::Names;
use crate::pb::etcdserverpb::kv_client::KvClient;
use crate::watch_stream::WatchStreams;
use crate::{alarm_cmd, lease_cmd, render};

/// Upper bound for one request (physical compaction included).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Connects a channel to `endpoint` (e.g. `http://127.0.0.1:2379`) whose
/// unary requests time out after [`REQUEST_TIMEOUT`].
pub async fn connect(endpoint: &str) -> Result<Channel, String> {
    connect_with(endpoint, Some(REQUEST_TIMEOUT)).await
}

/// Connects a channel without a per-request timeout (for Watch streams,
/// whose response headers etcd only sends with the first response).
pub async fn connect_streaming(endpoint: &str) -> Result<Channel, String> {
    connect_with(endpoint, None).await
}

async fn connect_with(endpoint: &str, timeout: Option<Duration>) -> Result<Channel, String> {
    let mut ep = Endpoint::from_shared(endpoint.to_string())
        .map_err(|e| format!("bad endpoint {endpoint}: {e}"))?
        .connect_timeout(Duration::from_secs(5));
    if let Some(t) = timeout {
        ep = ep.timeout(t);
    }
    ep.connect()
        .await
        .map_err(|e| format!("cannot connect to {endpoint}: {e}"))
}

/// Runs every request of `items` in order against `endpoint` and returns the
/// transcript (newline-terminated lines).
pub async fn run_script(endpoint: &str, items: &[Item]) -> Result<String, String> {
    let channel = connect(endpoint).await?;
    let streaming = connect_streaming(endpoint).await?;
    // Large values come back from ranges of the size-limit scenarios.
    let mut kv = KvClient::new(channel.clone()).max_decoding_message_size(64 << 20);
    let mut watch = WatchStreams::new(streaming.clone());
    let mut conc = Concurrency::new(channel.clone(), streaming.clone());
    let mut names = Names::default();
    let mut out_all: Vec<String> = Vec::new();
    for item in items {
        match item {
            Item::Text(t) => out_all.push(t.clone()),
            Item::Request { echo, command, .. } => {
                for l in echo {
                    out_all.push(format!("> {l}"));
                }
                let mut resp: Vec<String> = Vec::new();
                let out = &mut resp;
                let n = &names;
                let res = match command.clone() {
                    Command::Put(mut r) => match names.resolve(r.lease) {
                        Ok(l) => {
                            r.lease = l;
                            kv.put(r).await.map(|r| render::put(n, out, 0, r.get_ref()))
                        }
                        Err(e) => {
                            out.push(format!("error: {e}"));
                            Ok(())
                        }
                    },
                    Command::Get(r) => kv
                        .range(r)
                        .await
                        .map(|r| render::range(n, out, 0, r.get_ref())),
                    Command::Del(r) => kv
                        .delete_range(r)
                        .await
                        .map(|r| render::delete(n, out, 0, r.get_ref())),
                    Command::Txn(mut r) => match names.resolve_txn(&mut r) {
                        Ok(()) => kv.txn(r).await.map(|r| render::txn(n, out, 0, r.get_ref())),
                        Err(e) => {
                            out.push(format!("error: {e}"));
                            Ok(())
                        }
                    },
                    Command::Compact(r) => kv
                        .compact(r)
                        .await
                        .map(|r| render::compact(out, r.get_ref())),
                    Command::Lease(c) => {
                        lease_cmd::run(&c, &channel, &streaming, &mut names, out).await;
                        Ok(())
                    }
                    Command::Alarm(c) => {
                        alarm_cmd::run(&c, &channel, &mut names, out).await;
                        Ok(())
                    }
                    Command::Conc(c) => {
                        conc.run(&c, &mut names, out).await;
                        Ok(())
                    }
                    Command::Watch(w) => {
                        watch.run(&w, n, out).await;
                        Ok(())
                    }
                };
                if let Err(status) = res {
                    render::error(out, &status);
                }
                out_all.extend(render::collapse_runs(resp));
            }
        }
    }
    let mut s = out_all.join("\n");
    s.push('\n');
    Ok(s)
}
