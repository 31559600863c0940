//! Canonical text rendering of etcd responses and gRPC errors for the
//! golden transcripts. Only data a client can rely on is printed: headers
//! show the revision alone (cluster_id, member_id and raft_term differ
//! between servers and runs), every KeyValue shows all of its fields.
//!
//! Lease ids bound to an alias and the server's member id print as names
//! ([`crate::names`]).
//!
//! Errors render as `error: <Code> "<message>"` when the message was written
//! by etcd itself: it starts with `etcdserver: ` (every entry of etcd's
//! rpctypes error table), or is one of the errors of the concurrency recipes
//! behind the Lock and Election services ([`SERVER_MESSAGES`]). Any other
//! message comes from the gRPC transport (grpc-go vs tonic word e.g. the
//! message-size limit differently) and renders as
//! `error: <Code> (transport message elided)`: the status code is still
//! compared, the implementation-specific text is not.

use crate::names::Names;
use crate::pb::etcdserverpb::{
    response_op::Response, CompactionResponse, DeleteRangeResponse, PutResponse, RangeResponse,
    ResponseHeader, TxnResponse, WatchResponse,
};
use crate::pb::mvccpb::{Event, KeyValue};

/// Error messages etcd's Lock/Election services return verbatim (with code
/// Unknown) besides the `etcdserver: ` ones: prefixes of
/// `client/v3/concurrency` errors, and v3election's missing-leader error.
pub const SERVER_MESSAGES: [&str; 3] =
    ["election: ", "mutex: ", "\"leader\" field must be provided"];

/// Byte strings longer than this render as a length and checksum.
const MAX_INLINE: usize = 64;

/// Quotes a byte string: printable ASCII as is, `"` and `\` escaped, every
/// other byte as `\xNN`. Long strings become `<N bytes fnv=XXXXXXXX>`.
pub fn quote(b: &[u8]) -> String {
    if b.len() > MAX_INLINE {
        let mut h: u32 = 0x811c_9dc5;
        for &x in b {
            h = (h ^ x as u32).wrapping_mul(0x0100_0193);
        }
        return format!("<{} bytes fnv={h:08x}>", b.len());
    }
    let mut s = String::from("\"");
    for &c in b {
        match c {
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(c as char),
            _ => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    s.push('"');
    s
}

/// `rev=N`, or `rev=<no header>` when the header is absent.
pub fn rev(h: &Option<ResponseHeader>) -> String {
    match h {
        Some(h) => format!("rev={}", h.revision),
        None => "rev=<no header>".to_string(),
    }
}

/// One KeyValue on one line.
pub fn kv(n: &Names, kv: &KeyValue) -> String {
    format!(
        "{} = {} create={} mod={} ver={} lease={}",
        n.key(&kv.key),
        quote(&kv.value),
        kv.create_revision,
        kv.mod_revision,
        kv.version,
        n.lease_dec(kv.lease)
    )
}

/// Appends `line` to `out` with `depth` levels of two-space indentation.
pub fn push(out: &mut Vec<String>, depth: usize, line: String) {
    out.push(format!("{}{line}", "  ".repeat(depth)));
}

/// Renders a Range response.
pub fn range(n: &Names, out: &mut Vec<String>, depth: usize, r: &RangeResponse) {
    push(
        out,
        depth,
        format!(
            "range {} count={} more={} kvs={}",
            rev(&r.header),
            r.count,
            r.more,
            r.kvs.len()
        ),
    );
    for k in &r.kvs {
        push(out, depth + 1, kv(n, k));
    }
}

/// Renders a Put response.
pub fn put(n: &Names, out: &mut Vec<String>, depth: usize, r: &PutResponse) {
    push(out, depth, format!("put {}", rev(&r.header)));
    if let Some(p) = &r.prev_kv {
        push(out, depth + 1, format!("prev {}", kv(n, p)));
    }
}

/// Renders a DeleteRange response.
pub fn delete(n: &Names, out: &mut Vec<String>, depth: usize, r: &DeleteRangeResponse) {
    push(
        out,
        depth,
        format!("delete {} deleted={}", rev(&r.header), r.deleted),
    );
    for p in &r.prev_kvs {
        push(out, depth + 1, format!("prev {}", kv(n, p)));
    }
}

/// Renders a Txn response, recursing into nested responses.
pub fn txn(n: &Names, out: &mut Vec<String>, depth: usize, r: &TxnResponse) {
    push(
        out,
        depth,
        format!(
            "txn {} succeeded={} responses={}",
            rev(&r.header),
            r.succeeded,
            r.responses.len()
        ),
    );
    for op in &r.responses {
        match &op.response {
            Some(Response::ResponseRange(r)) => range(n, out, depth + 1, r),
            Some(Response::ResponsePut(r)) => put(n, out, depth + 1, r),
            Some(Response::ResponseDeleteRange(r)) => delete(n, out, depth + 1, r),
            Some(Response::ResponseTxn(r)) => txn(n, out, depth + 1, r),
            None => push(out, depth + 1, "<empty response op>".to_string()),
        }
    }
}

/// Renders a Compact response.
pub fn compact(out: &mut Vec<String>, r: &CompactionResponse) {
    push(out, 0, format!("compact {}", rev(&r.header)));
}

/// Renders a Watch response: `watch id=I rev=R` plus, when set, `created`,
/// `canceled`, `compact_revision=C`, `fragment`, `cancel_reason="..."` and
/// `events=N`, then one line per event.
pub fn watch_response(n: &Names, out: &mut Vec<String>, r: &WatchResponse) {
    let mut line = format!("watch id={} {}", r.watch_id, rev(&r.header));
    if r.created {
        line.push_str(" created");
    }
    if r.canceled {
        line.push_str(" canceled");
    }
    if r.compact_revision != 0 {
        line.push_str(&format!(" compact_revision={}", r.compact_revision));
    }
    if r.fragment {
        line.push_str(" fragment");
    }
    if !r.cancel_reason.is_empty() {
        line.push_str(&format!(" cancel_reason={:?}", r.cancel_reason));
    }
    if !r.events.is_empty() {
        line.push_str(&format!(" events={}", r.events.len()));
    }
    push(out, 0, line);
    for e in &r.events {
        event(n, out, e);
    }
}

/// One event (`PUT <kv>` / `DELETE <kv>`), its prev_kv on the next line.
fn event(n: &Names, out: &mut Vec<String>, e: &Event) {
    let kind = match e.r#type {
        0 => "PUT".to_string(),
        1 => "DELETE".to_string(),
        t => format!("TYPE({t})"),
    };
    let kv_text = e.kv.as_ref().map_or("<no kv>".to_string(), |k| kv(n, k));
    push(out, 1, format!("{kind} {kv_text}"));
    if let Some(p) = &e.prev_kv {
        push(out, 2, format!("prev {}", kv(n, p)));
    }
}

/// Renders a gRPC error status (see the module docs for the masking rule).
pub fn error(out: &mut Vec<String>, s: &tonic::Status) {
    let msg = s.message();
    let by_server =
        msg.starts_with("etcdserver: ") || SERVER_MESSAGES.iter().any(|p| msg.starts_with(p));
    let line = if by_server {
        format!("error: {:?} {msg:?}", s.code())
    } else {
        format!("error: {:?} (transport message elided)", s.code())
    };
    push(out, 0, line);
}

/// Collapses runs of three or more identical consecutive lines into the
/// line followed by ` [xN]` (lossless: N is exact).
pub fn collapse_runs(lines: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let mut j = i + 1;
        while j < lines.len() && lines[j] == lines[i] {
            j += 1;
        }
        if j - i >= 3 {
            out.push(format!("{} [x{}]", lines[i], j - i));
        } else {
            out.extend(lines[i..j].iter().cloned());
        }
        i = j;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote(b"a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(quote(&[0, 0xff, b'z']), r#""\x00\xffz""#);
        assert!(quote(&[b'x'; 100]).starts_with("<100 bytes fnv="));
    }

    #[test]
    fn runs() {
        let l = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            collapse_runs(l(&["a", "b", "b", "c", "c", "c", "a"])),
            l(&["a", "b", "b", "c [x3]", "a"])
        );
    }

    #[test]
    fn watch_lines() {
        let r = WatchResponse {
            header: Some(ResponseHeader {
                revision: 3,
                ..Default::default()
            }),
            watch_id: 1,
            events: vec![Event {
                r#type: 1,
                kv: Some(KeyValue {
                    key: b"a".to_vec(),
                    mod_revision: 3,
                    ..Default::default()
                }),
                prev_kv: None,
            }],
            ..Default::default()
        };
        let mut out = Vec::new();
        watch_response(&Names::default(), &mut out, &r);
        assert_eq!(
            out,
            vec![
                "watch id=1 rev=3 events=1",
                r#"  DELETE "a" = "" create=0 mod=3 ver=0 lease=0"#,
            ]
        );
    }

    #[test]
    fn error_masking() {
        let mut out = Vec::new();
        error(
            &mut out,
            &tonic::Status::invalid_argument("etcdserver: key is not provided"),
        );
        error(
            &mut out,
            &tonic::Status::resource_exhausted("grpc: received message larger"),
        );
        error(&mut out, &tonic::Status::unknown("election: no leader"));
        assert_eq!(
            out,
            vec![
                r#"error: InvalidArgument "etcdserver: key is not provided""#,
                "error: ResourceExhausted (transport message elided)",
                r#"error: Unknown "election: no leader""#,
            ]
        );
    }
}
