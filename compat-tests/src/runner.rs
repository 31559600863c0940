//! Runs a parsed scenario against one endpoint with the generated tonic
//! clients and builds its transcript: comment and blank lines verbatim,
//! each request echoed as `> <source line>` followed by its rendered
//! response or error (see [`crate::render`]). Runs of three or more
//! identical consecutive response lines are collapsed into one line with a
//! ` [xN]` suffix (e.g. the 128 inner responses of a max-size txn).
//! `watch ...` commands act on named Watch streams ([`crate::watch_stream`]).

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::dsl::{Command, Item};
use crate::pb::etcdserverpb::{kv_client::KvClient, lease_client::LeaseClient};
use crate::render;
use crate::watch_stream::WatchStreams;

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
    // Large values come back from ranges of the size-limit scenarios.
    let mut kv = KvClient::new(channel.clone()).max_decoding_message_size(64 << 20);
    let mut lease = LeaseClient::new(channel);
    let mut watch = WatchStreams::new(connect_streaming(endpoint).await?);
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
                let res = match command.clone() {
                    Command::Put(r) => kv.put(r).await.map(|r| render::put(out, 0, r.get_ref())),
                    Command::Get(r) => kv
                        .range(r)
                        .await
                        .map(|r| render::range(out, 0, r.get_ref())),
                    Command::Del(r) => kv
                        .delete_range(r)
                        .await
                        .map(|r| render::delete(out, 0, r.get_ref())),
                    Command::Txn(r) => kv.txn(r).await.map(|r| render::txn(out, 0, r.get_ref())),
                    Command::Compact(r) => kv
                        .compact(r)
                        .await
                        .map(|r| render::compact(out, r.get_ref())),
                    Command::LeaseGrant(r) => lease
                        .lease_grant(r)
                        .await
                        .map(|r| render::lease_grant(out, r.get_ref())),
                    Command::LeaseRevoke(r) => lease
                        .lease_revoke(r)
                        .await
                        .map(|r| render::lease_revoke(out, r.get_ref())),
                    Command::Watch(w) => {
                        watch.run(&w, out).await;
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
