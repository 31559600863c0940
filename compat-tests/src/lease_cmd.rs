//! The `lease ...` commands of the scenario DSL (Lease service): parsing,
//! execution and rendering.
//!
//! ```text
//! lease grant <id|$alias> <ttl>   # id 0 or $alias: server-chosen id (see crate::names)
//! lease revoke <id>
//! lease keepalive <id> [n=N]      # one LeaseKeepAlive stream, N requests (default 1)
//! lease ttl <id> [keys]           # LeaseTimeToLive
//! lease leases                    # LeaseLeases
//! ```
//!
//! Output lines:
//!
//! ```text
//! lease-grant rev=R id=<0x..|$alias> ttl=T [error="..."]
//! lease-revoke rev=R
//! lease-keepalive rev=R id=.. ttl=T        (one line per request)
//! lease-ttl rev=R id=.. ttl=<-1|0|<1..G>> granted=G [keys=["k", ...]]
//! lease-leases rev=R leases=[0x10, $a, ...]
//! ```
//!
//! The remaining TTL depends on timing: it prints exactly when it is -1
//! (unknown lease) or 0, as `<1..G>` when 1 <= ttl <= granted G, and as
//! `<out of range: T>` otherwise. Keys (a map in etcd, unordered) print
//! sorted; lease lists print plain ids numerically, then aliases in binding
//! order.

use std::time::Duration;

use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Channel;

use crate::dsl::int;
use crate::names::{lease_id, valid_name, Names};
use crate::pb::etcdserverpb::{
    lease_client::LeaseClient, LeaseGrantRequest, LeaseKeepAliveRequest, LeaseLeasesRequest,
    LeaseRevokeRequest, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use crate::render::{self, push, rev};

/// How long a keep-alive stream waits for each response.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Who picks the id of a granted lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GrantId {
    /// The scenario (any non-zero integer).
    Client(i64),
    /// The server; bound to the next `$N`.
    Auto,
    /// The server; bound to `$name`.
    Named(String),
}

/// One `lease` command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseCmd {
    /// `lease grant`.
    Grant { id: GrantId, ttl: i64 },
    /// `lease revoke`.
    Revoke { id: i64 },
    /// `lease keepalive`: `n` requests on one stream.
    KeepAlive { id: i64, n: usize },
    /// `lease ttl`.
    Ttl { id: i64, keys: bool },
    /// `lease leases`.
    Leases,
}

/// Parses the arguments following `lease`.
pub fn parse_lease(args: &[String]) -> Result<LeaseCmd, String> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args[..] {
        ["grant", id, ttl] => {
            let id = match id.strip_prefix('$') {
                Some(name) if name.bytes().all(|b| b.is_ascii_digit()) => {
                    return Err(format!(
                        "`${name}`: numeric aliases are bound by `lease grant 0`"
                    ))
                }
                Some(name) => GrantId::Named(valid_name(name)?.to_string()),
                None => match int(id)? {
                    0 => GrantId::Auto,
                    v => GrantId::Client(v),
                },
            };
            Ok(LeaseCmd::Grant { id, ttl: int(ttl)? })
        }
        ["revoke", id] => Ok(LeaseCmd::Revoke { id: lease_id(id)? }),
        ["keepalive", id, ref opts @ ..] => {
            let mut n = 1;
            for o in opts {
                match o.strip_prefix("n=").map(str::parse::<usize>) {
                    Some(Ok(v)) => n = v,
                    _ => return Err(format!("unknown keepalive option `{o}`")),
                }
            }
            Ok(LeaseCmd::KeepAlive {
                id: lease_id(id)?,
                n,
            })
        }
        ["ttl", id] => Ok(LeaseCmd::Ttl {
            id: lease_id(id)?,
            keys: false,
        }),
        ["ttl", id, "keys"] => Ok(LeaseCmd::Ttl {
            id: lease_id(id)?,
            keys: true,
        }),
        ["leases"] => Ok(LeaseCmd::Leases),
        _ => Err(
            "usage: lease grant <id|$alias> <ttl> | revoke <id> | keepalive <id> [n=N] \
                  | ttl <id> [keys] | leases"
                .into(),
        ),
    }
}

/// Runs one `lease` command: unary calls on `unary`, the keep-alive stream
/// on `streaming` (a channel without a per-request timeout).
pub async fn run(
    cmd: &LeaseCmd,
    unary: &Channel,
    streaming: &Channel,
    names: &mut Names,
    out: &mut Vec<String>,
) {
    let mut client = LeaseClient::new(unary.clone());
    let res = match cmd {
        LeaseCmd::Grant { id, ttl } => grant(&mut client, id, *ttl, names, out).await,
        LeaseCmd::Revoke { id } => match names.resolve(*id) {
            Ok(id) => client
                .lease_revoke(LeaseRevokeRequest { id })
                .await
                .map(|r| push(out, 0, format!("lease-revoke {}", rev(&r.get_ref().header)))),
            Err(e) => return out.push(format!("error: {e}")),
        },
        LeaseCmd::KeepAlive { id, n } => match names.resolve(*id) {
            Ok(id) => return keep_alive(streaming, id, *n, names, out).await,
            Err(e) => return out.push(format!("error: {e}")),
        },
        LeaseCmd::Ttl { id, keys } => match names.resolve(*id) {
            Ok(id) => client
                .lease_time_to_live(LeaseTimeToLiveRequest { id, keys: *keys })
                .await
                .map(|r| ttl_line(names, out, r.get_ref(), *keys)),
            Err(e) => return out.push(format!("error: {e}")),
        },
        LeaseCmd::Leases => client.lease_leases(LeaseLeasesRequest {}).await.map(|r| {
            let r = r.get_ref();
            let mut ids: Vec<i64> = r.leases.iter().map(|l| l.id).collect();
            ids.sort_by_key(|&id| names.lease_order(id));
            let ids: Vec<String> = ids.iter().map(|&id| names.lease(id)).collect();
            let line = format!(
                "lease-leases {} leases=[{}]",
                rev(&r.header),
                ids.join(", ")
            );
            push(out, 0, line);
        }),
    };
    if let Err(status) = res {
        render::error(out, &status);
    }
}

async fn grant(
    client: &mut LeaseClient<Channel>,
    id: &GrantId,
    ttl: i64,
    names: &mut Names,
    out: &mut Vec<String>,
) -> Result<(), tonic::Status> {
    if let GrantId::Named(name) = id {
        if names.is_bound(name) {
            out.push(format!("error: lease alias ${name} is already bound"));
            return Ok(());
        }
    }
    let req = LeaseGrantRequest {
        id: match id {
            GrantId::Client(v) => *v,
            _ => 0,
        },
        ttl,
    };
    let r = client.lease_grant(req).await?.into_inner();
    let id_text = match id {
        GrantId::Client(_) => names.lease(r.id),
        GrantId::Named(name) => names.bind(name, r.id),
        GrantId::Auto => {
            let name = names.next_auto();
            names.bind(&name, r.id)
        }
    };
    let mut line = format!("lease-grant {} id={id_text} ttl={}", rev(&r.header), r.ttl);
    if !r.error.is_empty() {
        line.push_str(&format!(" error={:?}", r.error));
    }
    push(out, 0, line);
    Ok(())
}

/// Opens one LeaseKeepAlive stream, sends `n` requests one after the other
/// (each after the previous response), prints every response and closes it.
async fn keep_alive(streaming: &Channel, id: i64, n: usize, names: &Names, out: &mut Vec<String>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let req = LeaseKeepAliveRequest { id };
    // The first request goes out before the call: grpc-go sends the response
    // headers only with the first response.
    let _ = tx.send(req);
    let mut client = LeaseClient::new(streaming.clone());
    let call = client.lease_keep_alive(UnboundedReceiverStream::new(rx));
    let mut stream = match tokio::time::timeout(KEEPALIVE_TIMEOUT, call).await {
        Ok(Ok(s)) => s.into_inner(),
        Ok(Err(status)) => return render::error(out, &status),
        Err(_) => return out.push(format!("error: timed out after {KEEPALIVE_TIMEOUT:?}")),
    };
    for i in 0..n {
        if i > 0 && tx.send(req).is_err() {
            return out.push("error: keep-alive stream closed".to_string());
        }
        match tokio::time::timeout(KEEPALIVE_TIMEOUT, stream.message()).await {
            Ok(Ok(Some(r))) => push(
                out,
                0,
                format!(
                    "lease-keepalive {} id={} ttl={}",
                    rev(&r.header),
                    names.lease(r.id),
                    r.ttl
                ),
            ),
            Ok(Ok(None)) => return out.push("stream ended".to_string()),
            Ok(Err(status)) => return render::error(out, &status),
            Err(_) => {
                return out.push(format!(
                    "error: timed out after {KEEPALIVE_TIMEOUT:?} waiting for keep-alive \
                     response {} of {n}",
                    i + 1
                ))
            }
        }
    }
}

/// Renders a LeaseTimeToLive response (see the module docs for the TTL).
fn ttl_line(names: &Names, out: &mut Vec<String>, r: &LeaseTimeToLiveResponse, keys: bool) {
    let ttl = match r.ttl {
        -1 | 0 => r.ttl.to_string(),
        t if t >= 1 && t <= r.granted_ttl => format!("<1..{}>", r.granted_ttl),
        t => format!("<out of range: {t}>"),
    };
    let mut line = format!(
        "lease-ttl {} id={} ttl={ttl} granted={}",
        rev(&r.header),
        names.lease(r.id),
        r.granted_ttl
    );
    if keys {
        let mut ks = r.keys.clone();
        ks.sort();
        let ks: Vec<String> = ks.iter().map(|k| names.key(k)).collect();
        line.push_str(&format!(" keys=[{}]", ks.join(", ")));
    } else if !r.keys.is_empty() {
        line.push_str(&format!(" <{} keys not asked for>", r.keys.len()));
    }
    push(out, 0, line);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: &str) -> Result<LeaseCmd, String> {
        let toks = crate::dsl::tokenize(line).unwrap();
        parse_lease(&toks[1..])
    }

    #[test]
    fn parses() {
        assert_eq!(
            p("lease grant 0 60").unwrap(),
            LeaseCmd::Grant {
                id: GrantId::Auto,
                ttl: 60
            }
        );
        assert_eq!(
            p("lease grant $a 60").unwrap(),
            LeaseCmd::Grant {
                id: GrantId::Named("a".into()),
                ttl: 60
            }
        );
        assert!(p("lease grant $1 60").is_err());
        assert_eq!(
            p("lease keepalive 0x10 n=3").unwrap(),
            LeaseCmd::KeepAlive { id: 16, n: 3 }
        );
        assert_eq!(
            p("lease ttl 5 keys").unwrap(),
            LeaseCmd::Ttl { id: 5, keys: true }
        );
        assert!(p("lease ttl 5 nokeys").is_err());
        assert_eq!(p("lease leases").unwrap(), LeaseCmd::Leases);
    }
}
