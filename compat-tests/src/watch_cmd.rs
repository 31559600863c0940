//! Parser for the `watch ...` commands of the scenario DSL, which drive
//! named bidirectional Watch streams (executed by [`crate::watch_stream`]):
//!
//! ```text
//! watch open <stream> [hasleader]
//! watch create <stream> <key> [end=<k>|prefix|from_key] [rev=N] [prev_kv]
//!     [noput] [nodelete] [filter=N] [id=N] [progress_notify] [fragment]
//! watch cancel <stream> <id>
//! watch progress <stream>
//! watch recv <stream> <n>
//! watch sync <stream>
//! watch close <stream>
//! ```

use crate::dsl::{bytes, int, tokenize, RangeOpts};
use crate::pb::etcdserverpb::{
    watch_create_request::FilterType, watch_request::RequestUnion, WatchCancelRequest,
    WatchCreateRequest, WatchProgressRequest, WatchRequest,
};

/// One `watch` command; every variant names its stream.
#[derive(Clone, Debug)]
pub enum WatchCmd {
    /// `watch open`: starts a Watch RPC (with the `hasleader` metadata
    /// clientv3's `WithRequireLeader` sets, if asked).
    Open { stream: String, has_leader: bool },
    /// `watch create|cancel|progress`: sends one request, prints nothing.
    Send {
        stream: String,
        request: WatchRequest,
    },
    /// `watch recv`: waits for exactly `n` more responses and prints them.
    Recv { stream: String, n: usize },
    /// `watch sync`: sends a progress request and prints everything received
    /// up to and including the reply (watch_id -1).
    Sync { stream: String },
    /// `watch close`: cancels the RPC.
    Close { stream: String },
}

/// Parses the arguments following `watch`.
pub fn parse_watch(args: &[String]) -> Result<WatchCmd, String> {
    let [verb, stream, rest @ ..] = args else {
        return Err(
            "usage: watch <open|create|cancel|progress|recv|sync|close> <stream> ...".into(),
        );
    };
    let stream = stream.clone();
    let no_args = |cmd: WatchCmd| match rest {
        [] => Ok(cmd),
        _ => Err(format!("`watch {verb}` takes no further arguments")),
    };
    let send = |u: RequestUnion| WatchCmd::Send {
        stream: stream.clone(),
        request: WatchRequest {
            request_union: Some(u),
        },
    };
    match (verb.as_str(), rest) {
        ("open", []) => Ok(WatchCmd::Open {
            stream,
            has_leader: false,
        }),
        ("open", [o]) if o == "hasleader" => Ok(WatchCmd::Open {
            stream,
            has_leader: true,
        }),
        ("create", [key, opts @ ..]) => {
            Ok(send(RequestUnion::CreateRequest(parse_create(key, opts)?)))
        }
        ("cancel", [id]) => Ok(send(RequestUnion::CancelRequest(WatchCancelRequest {
            watch_id: int(id)?,
        }))),
        ("progress", _) => no_args(send(RequestUnion::ProgressRequest(WatchProgressRequest {}))),
        ("recv", [n]) => Ok(WatchCmd::Recv {
            n: n.parse().map_err(|_| format!("bad count `{n}`"))?,
            stream,
        }),
        ("sync", _) => no_args(WatchCmd::Sync {
            stream: stream.clone(),
        }),
        ("close", _) => no_args(WatchCmd::Close {
            stream: stream.clone(),
        }),
        _ => Err(format!(
            "bad `watch {verb}` command (see compat-tests/README.md)"
        )),
    }
}

/// Parses `<key> [options]` of `watch create`.
fn parse_create(key: &str, opts: &[String]) -> Result<WatchCreateRequest, String> {
    let mut req = WatchCreateRequest::default();
    let mut range = RangeOpts::default();
    for o in opts {
        if range.parse(o)? {
            continue;
        }
        match o.as_str() {
            "prev_kv" => req.prev_kv = true,
            "noput" => req.filters.push(FilterType::Noput as i32),
            "nodelete" => req.filters.push(FilterType::Nodelete as i32),
            "progress_notify" => req.progress_notify = true,
            "fragment" => req.fragment = true,
            _ => {
                let (name, v) = o
                    .split_once('=')
                    .ok_or_else(|| format!("unknown watch create option `{o}`"))?;
                match name {
                    "rev" => req.start_revision = int(v)?,
                    "id" => req.watch_id = int(v)?,
                    "filter" => req.filters.push(int(v)? as i32),
                    _ => return Err(format!("unknown watch create option `{o}`")),
                }
            }
        }
    }
    (req.key, req.range_end) = range.apply(bytes(key)?);
    Ok(req)
}

/// Parses a whole `watch ...` line (used by tests).
pub fn parse_watch_line(line: &str) -> Result<WatchCmd, String> {
    let toks = tokenize(line)?;
    match toks.split_first() {
        Some((w, args)) if w == "watch" => parse_watch(args),
        _ => Err("not a watch command".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(line: &str) -> WatchCreateRequest {
        match parse_watch_line(line).unwrap() {
            WatchCmd::Send {
                request:
                    WatchRequest {
                        request_union: Some(RequestUnion::CreateRequest(c)),
                    },
                ..
            } => c,
            other => panic!("not a create: {other:?}"),
        }
    }

    #[test]
    fn create_options() {
        let c = create("watch create s a prefix rev=3 prev_kv noput nodelete id=7 fragment");
        assert_eq!(
            (c.key.as_slice(), c.range_end.as_slice()),
            (&b"a"[..], &b"b"[..])
        );
        assert_eq!((c.start_revision, c.watch_id), (3, 7));
        assert!(c.prev_kv && c.fragment && !c.progress_notify);
        assert_eq!(c.filters, vec![0, 1]);
        let c = create(r#"watch create s "" from_key progress_notify"#);
        assert_eq!((c.key, c.range_end), (vec![0], vec![0]));
        assert!(c.progress_notify);
        assert_eq!(create(r#"watch create s """#).key, b"");
    }

    #[test]
    fn other_verbs() {
        assert!(matches!(
            parse_watch_line("watch recv s 3").unwrap(),
            WatchCmd::Recv { n: 3, .. }
        ));
        assert!(matches!(
            parse_watch_line("watch open s hasleader").unwrap(),
            WatchCmd::Open {
                has_leader: true,
                ..
            }
        ));
        assert!(parse_watch_line("watch sync s extra").is_err());
        assert!(parse_watch_line("watch frob s").is_err());
    }
}
