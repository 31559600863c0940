//! Values that legitimately differ between etcd and Armada, and how a
//! transcript names them instead of printing them:
//!
//! - **Server-chosen lease ids** (LeaseGrant with ID 0, and the 60 s
//!   session lease the Lock/Election services grant for lease 0). The
//!   scenario binds each one to an alias: `lease grant $a 600` binds `$a`,
//!   `lease grant 0 600` (and a lock/campaign with lease 0) binds the next
//!   number, `$1`, `$2`, ... Any lease argument of the DSL accepts an alias
//!   (`put k v lease=$a`, `if lease(k) = $a`, `lease revoke $1`, ...), and
//!   the transcript prints a bound id as its alias wherever a lease id
//!   appears: `id=$a`, `lease=$a` in a KeyValue, and a key ending in
//!   `/<lowercase hex of the id>` (lock and election keys) as `"name/<$a>"`.
//! - **The server's own member id** (alarms): printed as `self`.
//!
//! At parse time an alias becomes a sentinel value in a reserved range
//! (`i64::MIN .. i64::MIN + 2^32`), which [`Names::resolve`] replaces with
//! the bound id just before a request is sent.

use std::collections::HashMap;

use crate::dsl::int;
use crate::pb::etcdserverpb::{compare, request_op::Request, TxnRequest};
use crate::render::quote;

/// Width of the reserved sentinel range starting at `i64::MIN`.
const SENTINEL_SPAN: u64 = 1 << 32;

/// Parses a lease id: an integer (see [`int`]) or an alias `$name`
/// (letters, digits, `_`).
pub fn lease_id(tok: &str) -> Result<i64, String> {
    match tok.strip_prefix('$') {
        Some(name) => Ok(sentinel(valid_name(name)?)),
        None => int(tok),
    }
}

/// Checks an alias name (without the `$`).
pub fn valid_name(name: &str) -> Result<&str, String> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "bad lease alias `${name}` (letters, digits and _ only)"
        ));
    }
    Ok(name)
}

/// The sentinel standing for alias `name` until it is resolved.
fn sentinel(name: &str) -> i64 {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h = (h ^ b as u32).wrapping_mul(0x0100_0193);
    }
    i64::MIN.wrapping_add(h as i64)
}

fn is_sentinel(v: i64) -> bool {
    (v.wrapping_sub(i64::MIN) as u64) < SENTINEL_SPAN
}

/// Go's `%x` of a lease id (lowercase hex, no padding, no `0x`), the suffix
/// of lock and election keys.
pub fn lease_hex(id: i64) -> String {
    if id < 0 {
        format!("-{:x}", id.unsigned_abs())
    } else {
        format!("{id:x}")
    }
}

/// The aliases bound so far in one scenario run, and the server's member id.
#[derive(Debug, Default)]
pub struct Names {
    /// sentinel -> bound id.
    by_sentinel: HashMap<i64, i64>,
    /// bound id -> `$name`.
    by_id: HashMap<i64, String>,
    /// Bound ids in binding order (for sorting lists).
    order: Vec<i64>,
    /// The last auto-numbered alias.
    auto: usize,
    /// The member id of the server under test, once fetched.
    pub self_member: Option<u64>,
}

impl Names {
    /// Replaces an alias sentinel with its bound id; other values pass.
    pub fn resolve(&self, v: i64) -> Result<i64, String> {
        if !is_sentinel(v) {
            return Ok(v);
        }
        self.by_sentinel
            .get(&v)
            .copied()
            .ok_or_else(|| "lease alias is not bound (no successful grant)".to_string())
    }

    /// Resolves every lease field of a txn (puts and lease compares,
    /// nested txns included).
    pub fn resolve_txn(&self, txn: &mut TxnRequest) -> Result<(), String> {
        for c in &mut txn.compare {
            if let Some(compare::TargetUnion::Lease(l)) = &mut c.target_union {
                *l = self.resolve(*l)?;
            }
        }
        for op in txn.success.iter_mut().chain(txn.failure.iter_mut()) {
            match &mut op.request {
                Some(Request::RequestPut(p)) => p.lease = self.resolve(p.lease)?,
                Some(Request::RequestTxn(t)) => self.resolve_txn(t)?,
                _ => {}
            }
        }
        Ok(())
    }

    /// Whether alias `name` is bound.
    pub fn is_bound(&self, name: &str) -> bool {
        self.by_sentinel.contains_key(&sentinel(name))
    }

    /// The next auto-numbered alias name (`1`, `2`, ...), not yet bound.
    pub fn next_auto(&mut self) -> String {
        self.auto += 1;
        self.auto.to_string()
    }

    /// Binds a server-chosen id to alias `name` and returns how the id is
    /// printed: `$name`, or a visible mismatch when the id is not a fresh
    /// positive one (then nothing is bound).
    pub fn bind(&mut self, name: &str, id: i64) -> String {
        if id <= 0 {
            return format!("<invalid server-chosen id {id}>");
        }
        if let Some(other) = self.by_id.get(&id) {
            return format!("<server-chosen id {id:#x} already bound to {other}>");
        }
        let alias = format!("${name}");
        self.by_sentinel.insert(sentinel(name), id);
        self.by_id.insert(id, alias.clone());
        self.order.push(id);
        alias
    }

    /// Binds a server-chosen id to the next auto-numbered alias unless it
    /// is bound already.
    pub fn bind_auto(&mut self, id: i64) {
        if id > 0 && !self.by_id.contains_key(&id) {
            let name = self.next_auto();
            self.bind(&name, id);
        }
    }

    /// A lease id as `0x..` hex, or its alias.
    pub fn lease(&self, id: i64) -> String {
        match self.by_id.get(&id) {
            Some(a) => a.clone(),
            None => format!("{id:#x}"),
        }
    }

    /// A lease id in decimal (as in a KeyValue), or its alias.
    pub fn lease_dec(&self, id: i64) -> String {
        match self.by_id.get(&id) {
            Some(a) => a.clone(),
            None => id.to_string(),
        }
    }

    /// Sort key for a list of lease ids: plain ids numerically, then
    /// aliases in binding order.
    pub fn lease_order(&self, id: i64) -> (bool, i64, usize) {
        match self.order.iter().position(|&x| x == id) {
            Some(p) => (true, 0, p),
            None => (false, id, 0),
        }
    }

    /// A quoted key; a last path segment that is the hex of an aliased
    /// lease prints as `<$alias>` (`"lk/<$a>"`).
    pub fn key(&self, key: &[u8]) -> String {
        let Some(slash) = key.iter().rposition(|&b| b == b'/') else {
            return quote(key);
        };
        let (head, tail) = key.split_at(slash + 1);
        let hex = std::str::from_utf8(tail).unwrap_or("");
        let is_hex = !hex.is_empty()
            && !hex.starts_with('0')
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let alias = is_hex
            .then(|| u64::from_str_radix(hex, 16).ok())
            .flatten()
            .and_then(|id| self.by_id.get(&(id as i64)));
        let head_q = quote(head);
        match alias {
            Some(a) if head_q.ends_with('"') => {
                format!("{}<{a}>\"", &head_q[..head_q.len() - 1])
            }
            _ => quote(key),
        }
    }

    /// A member id: `self` for the server's own id, else decimal.
    pub fn member(&self, id: u64) -> String {
        if self.self_member == Some(id) {
            "self".to_string()
        } else {
            id.to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_resolve_and_render() {
        let mut n = Names::default();
        let a = lease_id("$a").unwrap();
        assert!(n.resolve(a).is_err());
        assert_eq!(n.resolve(-1).unwrap(), -1);
        assert_eq!(n.resolve(0x10).unwrap(), 0x10);
        assert_eq!(n.bind("a", 0x694d), "$a");
        assert_eq!(n.resolve(a).unwrap(), 0x694d);
        assert_eq!(n.lease(0x694d), "$a");
        assert_eq!(n.lease(0x10), "0x10");
        assert_eq!(n.lease_dec(16), "16");
        assert_eq!(n.key(b"lk/694d"), r#""lk/<$a>""#);
        assert_eq!(n.key(b"lk/0694d"), r#""lk/0694d""#);
        assert_eq!(n.key(b"694d"), r#""694d""#);
        assert!(n.bind("b", 0x694d).contains("already bound"));
        assert!(n.bind("c", 0).starts_with("<invalid"));
        assert!(lease_id("$a-b").is_err());
        assert_eq!(lease_hex(0x1f), "1f");
        assert_eq!(lease_hex(-5), "-5");
    }
}
