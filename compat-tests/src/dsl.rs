//! Parser for the scenario DSL: a compact, etcdctl-like, line-oriented
//! language in which every non-comment line (or indented block, for `txn`)
//! is one gRPC request, parsed straight into the generated etcd request
//! messages. See `compat-tests/README.md` for the full grammar; in short:
//!
//! ```text
//! put <key> <value> [prev_kv] [ignore_value] [ignore_lease] [lease=<id>]
//! get <key> [end=<k>|prefix|from_key] [limit=N] [rev=N] [sort=<target>:<order>]
//!     [sort_target=N] [sort_order=N] [keys_only] [count_only] [serializable]
//!     [min_mod=N] [max_mod=N] [min_create=N] [max_create=N]
//! del <key> [end=<k>|prefix|from_key] [prev_kv]
//! compact <rev> [physical]
//! lease <verb> ...         # Lease service, see [`crate::lease_cmd`]
//! alarm <verb> ...         # Maintenance.Alarm, see [`crate::alarm_cmd`]
//! lock ... | unlock ... | election ... | await @bg | cancel @bg
//!                          # Lock/Election services, see [`crate::lock_cmd`]
//! watch <verb> <stream> ... # Watch streams, see [`crate::watch_cmd`]
//! txn                      # followed by lines indented deeper than `txn`:
//!   if <target>(<key>) <op> <operand|<none>> [end=<k>|prefix|from_key]
//!   then <op>              # put/get/del/txn/empty; nested txn = deeper block
//!   else <op>
//! ```
//!
//! Byte strings (keys, values, range ends) accept double quotes for spaces
//! and the escapes `\0`, `\xNN`, `\n`, `\t`, `\\`, `\"`, `\ ` and `\#`; a
//! token `<size=N>` stands for N bytes of `x`. `if[N]`/`then[N]`/`else[N]`
//! repeat a line N times, replacing `{i}` with 0..N. Lease ids (`lease=`,
//! lease compares, lease commands) also accept aliases `$name` of
//! server-chosen ids ([`crate::names`]).

use crate::alarm_cmd::{parse_alarm, AlarmCmd};
use crate::lease_cmd::{parse_lease, LeaseCmd};
use crate::lock_cmd::{parse_conc, ConcCmd};
use crate::names::lease_id;
use crate::pb::etcdserverpb::{
    compare, request_op, CompactionRequest, Compare, DeleteRangeRequest, PutRequest, RangeRequest,
    RequestOp, TxnRequest,
};
use crate::watch_cmd::{parse_watch, WatchCmd};

/// One request of a scenario, already translated into an etcd gRPC message.
#[derive(Clone, Debug)]
pub enum Command {
    /// `put`: KV.Put.
    Put(PutRequest),
    /// `get`: KV.Range.
    Get(RangeRequest),
    /// `del`: KV.DeleteRange.
    Del(DeleteRangeRequest),
    /// `txn` block: KV.Txn.
    Txn(TxnRequest),
    /// `compact`: KV.Compact.
    Compact(CompactionRequest),
    /// `lease ...`: the Lease service.
    Lease(LeaseCmd),
    /// `alarm ...`: Maintenance.Alarm.
    Alarm(AlarmCmd),
    /// `lock`, `unlock`, `election ...`, `await`, `cancel`: the Lock and
    /// Election services.
    Conc(ConcCmd),
    /// `watch ...`: an action on a named Watch stream.
    Watch(WatchCmd),
}

/// An item of a parsed scenario, in file order.
#[derive(Clone, Debug)]
pub enum Item {
    /// A comment or blank line, echoed verbatim into the transcript.
    Text(String),
    /// A request: `echo` holds its source line(s), echoed before its result.
    Request {
        /// 1-based line number of the first line.
        line: usize,
        /// The source lines of the request (several for a txn block).
        echo: Vec<String>,
        /// The parsed request.
        command: Command,
    },
}

/// Parses a whole scenario file. Errors name the offending line.
pub fn parse_script(src: &str) -> Result<Vec<Item>, String> {
    let lines: Vec<&str> = src.lines().collect();
    let mut items = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let raw = lines[i];
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            items.push(Item::Text(raw.trim_end().to_string()));
            i += 1;
            continue;
        }
        if indent_of(raw) != 0 {
            return Err(format!("line {}: unexpected indentation", i + 1));
        }
        let start = i;
        let end = block_end(&lines, i);
        let block: Vec<Line> = (start..end)
            .filter(|&j| !lines[j].trim().is_empty() && !lines[j].trim().starts_with('#'))
            .map(|j| Line {
                no: j + 1,
                indent: indent_of(lines[j]),
                text: lines[j].trim().to_string(),
            })
            .collect();
        let command = parse_command(&block).map_err(|e| format!("line {}: {e}", start + 1))?;
        let echo = (start..end)
            .map(|j| lines[j].trim_end().to_string())
            .collect();
        items.push(Item::Request {
            line: start + 1,
            echo,
            command,
        });
        i = end;
    }
    Ok(items)
}

/// A non-blank source line of a request block.
#[derive(Clone, Debug)]
struct Line {
    no: usize,
    indent: usize,
    text: String,
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The index just past the block starting at `start`: the following lines
/// indented deeper than it (blank and comment lines inside are included,
/// trailing ones are not).
fn block_end(lines: &[&str], start: usize) -> usize {
    let base = indent_of(lines[start]);
    let mut end = start + 1;
    let mut j = start + 1;
    while j < lines.len() {
        let t = lines[j].trim();
        if t.is_empty() || t.starts_with('#') {
            j += 1;
            continue;
        }
        if indent_of(lines[j]) <= base {
            break;
        }
        j += 1;
        end = j;
    }
    end
}

/// Parses the command whose header is `block[0]`; the rest of `block` is
/// its (txn) body.
fn parse_command(block: &[Line]) -> Result<Command, String> {
    let toks = tokenize(&block[0].text)?;
    let (name, args) = toks.split_first().ok_or("empty command")?;
    if name.as_str() != "txn" && block.len() > 1 {
        return Err(format!("`{name}` takes no indented block"));
    }
    match name.as_str() {
        "put" => parse_put(args).map(Command::Put),
        "get" => parse_get(args).map(Command::Get),
        "del" => parse_del(args).map(Command::Del),
        "txn" => {
            if !args.is_empty() {
                return Err("`txn` takes no arguments (use an indented block)".into());
            }
            parse_txn_body(&block[1..]).map(Command::Txn)
        }
        "compact" => {
            let (rev, opts) = args.split_first().ok_or("compact needs a revision")?;
            let mut req = CompactionRequest {
                revision: int(rev)?,
                physical: false,
            };
            for o in opts {
                match o.as_str() {
                    "physical" => req.physical = true,
                    _ => return Err(format!("unknown compact option `{o}`")),
                }
            }
            Ok(Command::Compact(req))
        }
        "lease" => parse_lease(args).map(Command::Lease),
        "alarm" => parse_alarm(args).map(Command::Alarm),
        "lock" | "unlock" | "election" | "await" | "cancel" => {
            parse_conc(name, args).map(Command::Conc)
        }
        "watch" => parse_watch(args).map(Command::Watch),
        other => Err(format!("unknown command `{other}`")),
    }
}

/// Parses the body lines of a txn (all indented deeper than its header).
fn parse_txn_body(body: &[Line]) -> Result<TxnRequest, String> {
    let mut txn = TxnRequest::default();
    if body.is_empty() {
        return Ok(txn);
    }
    let base = body[0].indent;
    let mut i = 0;
    while i < body.len() {
        let line = &body[i];
        if line.indent != base {
            return Err(format!("line {}: inconsistent indentation in txn", line.no));
        }
        // The nested block of this line: following lines indented deeper.
        let mut j = i + 1;
        while j < body.len() && body[j].indent > base {
            j += 1;
        }
        let nested = &body[i + 1..j];
        let err = |e: String| format!("line {}: {e}", line.no);
        let (head, rest) = line.text.split_once(char::is_whitespace).ok_or_else(|| {
            err("expected `if`, `then` or `else` followed by an operation".into())
        })?;
        let (kind, repeat) = match head.split_once('[') {
            Some((k, n)) => {
                let n = n
                    .strip_suffix(']')
                    .ok_or_else(|| err("bad repeat".into()))?;
                (k, n.parse::<usize>().map_err(|_| err("bad repeat".into()))?)
            }
            None => (head, 1),
        };
        if !nested.is_empty() && (kind == "if" || repeat != 1) {
            return Err(err(
                "only a single `then txn`/`else txn` takes a block".into()
            ));
        }
        for n in 0..repeat {
            let text = if repeat == 1 {
                rest.trim().to_string()
            } else {
                rest.trim().replace("{i}", &n.to_string())
            };
            match kind {
                "if" => txn.compare.push(parse_compare(&text).map_err(err)?),
                "then" => txn.success.push(parse_op(&text, nested).map_err(err)?),
                "else" => txn.failure.push(parse_op(&text, nested).map_err(err)?),
                other => return Err(err(format!("expected if/then/else, got `{other}`"))),
            }
        }
        i = j;
    }
    Ok(txn)
}

/// Parses one txn operation (`put`/`get`/`del`/`txn`/`empty`).
fn parse_op(text: &str, nested: &[Line]) -> Result<RequestOp, String> {
    use request_op::Request;
    let toks = tokenize(text)?;
    let (name, args) = toks.split_first().ok_or("missing operation")?;
    if name.as_str() != "txn" && !nested.is_empty() {
        return Err(format!("`{name}` takes no indented block"));
    }
    let request = match name.as_str() {
        "put" => Some(Request::RequestPut(parse_put(args)?)),
        "get" => Some(Request::RequestRange(parse_get(args)?)),
        "del" => Some(Request::RequestDeleteRange(parse_del(args)?)),
        "txn" if args.is_empty() => Some(Request::RequestTxn(parse_txn_body(nested)?)),
        "empty" if args.is_empty() => None,
        other => return Err(format!("unknown txn operation `{other}`")),
    };
    Ok(RequestOp { request })
}

/// Parses `<target>(<key>) <op> <operand> [end=..|prefix|from_key]`.
fn parse_compare(text: &str) -> Result<Compare, String> {
    use compare::{CompareResult, CompareTarget, TargetUnion};
    let toks = tokenize(text)?;
    let [subject, op, operand, opts @ ..] = &toks[..] else {
        return Err("usage: if <target>(<key>) <op> <operand> [end=<k>|prefix|from_key]".into());
    };
    let (target, key_raw) = subject
        .split_once('(')
        .and_then(|(t, k)| Some((t, k.strip_suffix(')')?)))
        .ok_or_else(|| format!("expected <target>(<key>), got `{subject}`"))?;
    let key = bytes(key_raw)?;
    let result = match op.as_str() {
        "=" | "==" => CompareResult::Equal,
        "!=" => CompareResult::NotEqual,
        ">" => CompareResult::Greater,
        "<" => CompareResult::Less,
        other => return Err(format!("unknown compare operator `{other}`")),
    };
    let int = |o: &str| if o == "<none>" { Ok(0) } else { int(o) };
    let (target, union) = match target {
        "value" => (CompareTarget::Value, TargetUnion::Value(bytes(operand)?)),
        "version" => (CompareTarget::Version, TargetUnion::Version(int(operand)?)),
        "create" => (
            CompareTarget::Create,
            TargetUnion::CreateRevision(int(operand)?),
        ),
        "mod" => (CompareTarget::Mod, TargetUnion::ModRevision(int(operand)?)),
        "lease" => (
            CompareTarget::Lease,
            TargetUnion::Lease(if operand == "<none>" {
                0
            } else {
                lease_id(operand)?
            }),
        ),
        other => return Err(format!("unknown compare target `{other}`")),
    };
    let mut cmp = Compare {
        result: result as i32,
        target: target as i32,
        key,
        range_end: Vec::new(),
        // `<none>` leaves the operand unset (the server compares with 0/"").
        target_union: (operand != "<none>").then_some(union),
    };
    let mut range = RangeOpts::default();
    for o in opts {
        if !range.parse(o)? {
            return Err(format!("unknown compare option `{o}`"));
        }
    }
    (cmp.key, cmp.range_end) = range.apply(cmp.key);
    Ok(cmp)
}

/// The range-end options shared by `get`, `del` and compares.
#[derive(Default)]
pub(crate) struct RangeOpts {
    end: Option<Vec<u8>>,
    prefix: bool,
    from_key: bool,
}

impl RangeOpts {
    /// Consumes `tok` if it is a range option.
    pub(crate) fn parse(&mut self, tok: &str) -> Result<bool, String> {
        match tok {
            "prefix" => self.prefix = true,
            "from_key" => self.from_key = true,
            _ => match tok.strip_prefix("end=") {
                Some(v) => self.end = Some(bytes(v)?),
                None => return Ok(false),
            },
        }
        Ok(true)
    }

    /// Returns the (key, range_end) pair to send, following clientv3's
    /// `WithPrefix`/`WithFromKey` conventions.
    pub(crate) fn apply(self, key: Vec<u8>) -> (Vec<u8>, Vec<u8>) {
        if self.prefix {
            if key.is_empty() {
                return (vec![0], vec![0]);
            }
            let end = prefix_end(&key);
            (key, end)
        } else if self.from_key {
            let key = if key.is_empty() { vec![0] } else { key };
            (key, vec![0])
        } else {
            (key, self.end.unwrap_or_default())
        }
    }
}

/// The range end covering every key with prefix `key`: the last byte that
/// is not 0xff incremented, the rest dropped; `\0` if every byte is 0xff.
pub fn prefix_end(key: &[u8]) -> Vec<u8> {
    let mut end = key.to_vec();
    while let Some(&last) = end.last() {
        if last < 0xff {
            *end.last_mut().expect("non-empty") += 1;
            return end;
        }
        end.pop();
    }
    vec![0]
}

fn parse_put(args: &[String]) -> Result<PutRequest, String> {
    let [key, value, opts @ ..] = args else {
        return Err("usage: put <key> <value> [options]".into());
    };
    let mut req = PutRequest {
        key: bytes(key)?,
        value: bytes(value)?,
        ..Default::default()
    };
    for o in opts {
        match o.as_str() {
            "prev_kv" => req.prev_kv = true,
            "ignore_value" => req.ignore_value = true,
            "ignore_lease" => req.ignore_lease = true,
            _ => match o.strip_prefix("lease=") {
                Some(v) => req.lease = lease_id(v)?,
                None => return Err(format!("unknown put option `{o}`")),
            },
        }
    }
    Ok(req)
}

fn parse_get(args: &[String]) -> Result<RangeRequest, String> {
    use crate::pb::etcdserverpb::range_request::{SortOrder, SortTarget};
    let (key, opts) = args.split_first().ok_or("usage: get <key> [options]")?;
    let mut req = RangeRequest::default();
    let mut range = RangeOpts::default();
    for o in opts {
        if range.parse(o)? {
            continue;
        }
        match o.as_str() {
            "keys_only" => req.keys_only = true,
            "count_only" => req.count_only = true,
            "serializable" => req.serializable = true,
            _ => {
                let (name, v) = o
                    .split_once('=')
                    .ok_or_else(|| format!("unknown get option `{o}`"))?;
                match name {
                    "limit" => req.limit = int(v)?,
                    "rev" => req.revision = int(v)?,
                    "min_mod" => req.min_mod_revision = int(v)?,
                    "max_mod" => req.max_mod_revision = int(v)?,
                    "min_create" => req.min_create_revision = int(v)?,
                    "max_create" => req.max_create_revision = int(v)?,
                    "sort_order" => req.sort_order = int(v)? as i32,
                    "sort_target" => req.sort_target = int(v)? as i32,
                    "sort" => {
                        let (t, ord) = v
                            .split_once(':')
                            .ok_or("usage: sort=<key|version|create|mod|value>:<none|asc|desc>")?;
                        req.sort_target = match t {
                            "key" => SortTarget::Key,
                            "version" => SortTarget::Version,
                            "create" => SortTarget::Create,
                            "mod" => SortTarget::Mod,
                            "value" => SortTarget::Value,
                            _ => return Err(format!("unknown sort target `{t}`")),
                        } as i32;
                        req.sort_order = match ord {
                            "none" => SortOrder::None,
                            "asc" => SortOrder::Ascend,
                            "desc" => SortOrder::Descend,
                            _ => return Err(format!("unknown sort order `{ord}`")),
                        } as i32;
                    }
                    _ => return Err(format!("unknown get option `{o}`")),
                }
            }
        }
    }
    (req.key, req.range_end) = range.apply(bytes(key)?);
    Ok(req)
}

fn parse_del(args: &[String]) -> Result<DeleteRangeRequest, String> {
    let (key, opts) = args.split_first().ok_or("usage: del <key> [options]")?;
    let mut req = DeleteRangeRequest::default();
    let mut range = RangeOpts::default();
    for o in opts {
        if range.parse(o)? {
            continue;
        }
        match o.as_str() {
            "prev_kv" => req.prev_kv = true,
            _ => return Err(format!("unknown del option `{o}`")),
        }
    }
    (req.key, req.range_end) = range.apply(bytes(key)?);
    Ok(req)
}

/// Parses a decimal (optionally negative) or `0x` hexadecimal integer.
pub(crate) fn int(s: &str) -> Result<i64, String> {
    let r = match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).map(|v| v as i64),
        None => s.parse::<i64>(),
    };
    r.map_err(|_| format!("bad integer `{s}`"))
}

/// Splits a line into raw tokens at unquoted whitespace, keeping quotes
/// and escapes for [`bytes`]; an unquoted `#` starting a token begins a
/// comment that runs to the end of the line.
pub fn tokenize(line: &str) -> Result<Vec<String>, String> {
    let mut toks = Vec::new();
    let mut cur = String::new();
    let mut in_tok = false;
    let mut quoted = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let n = chars.next().ok_or("dangling backslash")?;
                cur.push('\\');
                cur.push(n);
                in_tok = true;
            }
            '"' => {
                quoted = !quoted;
                cur.push(c);
                in_tok = true;
            }
            '#' if !quoted && !in_tok => break,
            c if c.is_whitespace() && !quoted => {
                if in_tok {
                    toks.push(std::mem::take(&mut cur));
                    in_tok = false;
                }
            }
            c => {
                cur.push(c);
                in_tok = true;
            }
        }
    }
    if quoted {
        return Err("unterminated quote".into());
    }
    if in_tok {
        toks.push(cur);
    }
    Ok(toks)
}

/// Decodes a raw token into bytes: strips quotes, resolves escapes, and
/// expands `<size=N>` into N bytes of `x`.
pub fn bytes(tok: &str) -> Result<Vec<u8>, String> {
    if let Some(n) = tok.strip_prefix("<size=").and_then(|t| t.strip_suffix('>')) {
        let n: usize = n.parse().map_err(|_| format!("bad size in `{tok}`"))?;
        return Ok(vec![b'x'; n]);
    }
    let mut out = Vec::new();
    let mut it = tok.chars();
    while let Some(c) = it.next() {
        match c {
            '"' => {}
            '\\' => match it.next() {
                Some('0') => out.push(0),
                Some('n') => out.push(b'\n'),
                Some('t') => out.push(b'\t'),
                Some('x') => {
                    let hex: String = it.by_ref().take(2).collect();
                    let b = u8::from_str_radix(&hex, 16)
                        .map_err(|_| format!("bad \\x escape in `{tok}`"))?;
                    out.push(b);
                }
                Some(c @ ('\\' | '"' | ' ' | '#')) => out.push(c as u8),
                other => {
                    return Err(format!(
                        "bad escape `\\{}` in `{tok}`",
                        other.unwrap_or(' ')
                    ))
                }
            },
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::etcdserverpb::request_op::Request;

    #[test]
    fn tokens_and_escapes() {
        let t = tokenize(r#"put "a b" \x00\xff\0 # comment"#).unwrap();
        assert_eq!(t, vec!["put", r#""a b""#, r"\x00\xff\0"]);
        assert_eq!(bytes(&t[1]).unwrap(), b"a b");
        assert_eq!(bytes(&t[2]).unwrap(), vec![0, 0xff, 0]);
        assert_eq!(bytes(r#""""#).unwrap(), b"");
        assert_eq!(bytes("<size=3>").unwrap(), b"xxx");
        assert_eq!(bytes(r"a\#b").unwrap(), b"a#b");
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"ab"), b"ac");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }

    #[test]
    fn nested_txn_block() {
        let src = "# c\ntxn\n  if value(a) = 1 prefix\n  then put a 2\n  then txn\n    if version(b) > 0\n    else[3] put k{i} v\n  else get a\nget a\n";
        let items = parse_script(src).unwrap();
        assert_eq!(items.len(), 3);
        let Item::Request {
            command: Command::Txn(txn),
            echo,
            ..
        } = &items[1]
        else {
            panic!("not a txn")
        };
        assert_eq!(echo.len(), 7);
        assert_eq!(txn.compare[0].range_end, b"b");
        assert_eq!(txn.success.len(), 2);
        let Some(Request::RequestTxn(inner)) = &txn.success[1].request else {
            panic!("not nested")
        };
        assert_eq!(inner.failure.len(), 3);
        assert_eq!(txn.failure.len(), 1);
    }
}
