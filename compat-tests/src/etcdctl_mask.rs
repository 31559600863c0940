//! Lease-aware masking and `$LEASE<n>` substitution for etcdctl cases.
//!
//! Lease ids are chosen by the server (etcd: random-looking 63-bit
//! numbers), so transcripts show them as labels in order of first
//! appearance: `$LEASE1`, `$LEASE2`, ... A later command line may use the
//! label; it is replaced by the id in hex before etcdctl runs (the echoed
//! line keeps the label).
//!
//! Ids are **learned** (given the next label) only where the server has
//! just chosen them:
//! - in the output of `lease grant` (`lease <hex> granted with TTL(..)`,
//!   `"ID":<dec>` with `-w json`, `"ID" : <dec>` with `-w fields`);
//! - in keys `<name>/<hex>` where `<name>` is the lock or election name of
//!   an `etcdctl lock <name>` / `etcdctl elect [-l] <name>` line anywhere in
//!   the file (etcdctl's session leases: `concurrency.Mutex` and `Election`
//!   name their keys `<name>/<lease id in hex>`).
//!
//! Known ids are **replaced** in those places and wherever etcdctl prints a
//! lease id: lines starting `lease <hex> ` (`granted`, `revoked`,
//! `keepalived`, `expired or revoked.`, `already expired`), the id lines of
//! `lease list`, and the JSON / fields values `"id"`, `"ID"`, `"lease"`,
//! `"Lease"` (decimal). Hex is compared by value, so `%016x` (etcdctl's
//! lease printer) and `%x` (lock keys) forms of one id get one label. A
//! label is printed as `$LEASEn` in text and `"$LEASEn"` in JSON / fields.
//! Ids never learned (e.g. literal ids from the case file) print as they
//! are.
//!
//! Remaining TTLs count down with time: `remaining(Ns)` next to
//! `TTL(Gs)`, `"ttl":N` next to `"granted-ttl":G` and `"TTL" : N` followed
//! by `"GrantedTTL" : G` print as `<remaining>` when `0 < N <= G`, and as
//! `<remaining N out of range (0, G]>` otherwise (which no golden
//! contains). `G <= 0` (an unknown lease: `ttl -1`) prints as it is.
//!
//! Orders that etcd leaves unspecified (Go map iteration) are sorted after
//! masking: the ids of `lease list` (lines, the JSON `leases` array, the
//! `"ID"` field lines) and the keys of `lease timetolive --keys`
//! (`attached keys([..])`, the JSON `keys` array, the `"Key"` field lines).

use std::collections::HashMap;

/// Lease-id labels and the lock / election names of one case file.
#[derive(Debug, Default)]
pub struct LeaseMask {
    /// Learned ids; label n is `ids[n - 1]`.
    ids: Vec<i64>,
    index: HashMap<i64, usize>,
    /// Names of `lock` / `elect` lines (key prefixes `<name>/`).
    names: Vec<String>,
}

/// What the masked output came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmd {
    LeaseGrant,
    LeaseList,
    LeaseTimeToLive,
    Other,
}

impl Cmd {
    fn of(args: &[String]) -> Cmd {
        let pos: Vec<&str> = args
            .iter()
            .map(String::as_str)
            .filter(|a| !a.starts_with('-'))
            .collect();
        match pos.as_slice() {
            ["lease", "grant", ..] => Cmd::LeaseGrant,
            ["lease", "list", ..] => Cmd::LeaseList,
            ["lease", "timetolive", ..] => Cmd::LeaseTimeToLive,
            _ => Cmd::Other,
        }
    }
}

/// The lock / election name of an etcdctl argument list, if it is a
/// `lock` or `elect` command: the first positional argument after it.
pub fn lock_or_election_name(args: &[String]) -> Option<String> {
    let mut it = args.iter().skip_while(|a| a.starts_with('-'));
    match it.next().map(String::as_str) {
        Some("lock" | "elect") => it.find(|a| !a.starts_with('-')).cloned(),
        _ => None,
    }
}

impl LeaseMask {
    /// A mask knowing the given lock / election names.
    pub fn new(names: impl IntoIterator<Item = String>) -> LeaseMask {
        let mut names: Vec<String> = names.into_iter().filter(|n| !n.is_empty()).collect();
        names.sort();
        names.dedup();
        // Longest first, so `a/b/<id>` is not read as name `a`.
        names.sort_by_key(|n| std::cmp::Reverse(n.len()));
        LeaseMask {
            names,
            ..Default::default()
        }
    }

    /// Replaces every `$LEASE<n>` in `arg` with the n-th learned id in hex.
    pub fn substitute(&self, arg: &str) -> Result<String, String> {
        const VAR: &str = "$LEASE";
        let mut out = String::new();
        let mut rest = arg;
        while let Some(pos) = rest.find(VAR) {
            out.push_str(&rest[..pos]);
            let tail = &rest[pos + VAR.len()..];
            let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
            let n: usize = tail[..digits]
                .parse()
                .map_err(|_| format!("`{VAR}` needs a number in `{arg}`"))?;
            let id = n
                .checked_sub(1)
                .and_then(|i| self.ids.get(i))
                .ok_or_else(|| format!("{VAR}{n} is not known yet ({} learned)", self.ids.len()))?;
            out.push_str(&format!("{id:x}"));
            rest = &tail[digits..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn label(&mut self, id: i64, learn: bool) -> Option<String> {
        let n = match self.index.get(&id) {
            Some(&n) => n,
            None if learn => {
                self.ids.push(id);
                self.index.insert(id, self.ids.len());
                self.ids.len()
            }
            None => return None,
        };
        Some(format!("$LEASE{n}"))
    }

    /// Masks one process output (stdout or stderr, already endpoint- and
    /// header-masked) of the etcdctl command `args`.
    pub fn mask_output(&mut self, args: &[String], text: &str) -> String {
        let cmd = Cmd::of(args);
        let learn = cmd == Cmd::LeaseGrant;
        let mut lines: Vec<String> = text.lines().map(|l| self.mask_ids(cmd, learn, l)).collect();
        mask_remaining(&mut lines);
        match cmd {
            Cmd::LeaseList => {
                for l in lines.iter_mut() {
                    *l = sort_json_array(l, "\"leases\":[");
                }
                sort_runs(&mut lines, |l| {
                    l.starts_with("\"ID\" : ") || l.starts_with("$LEASE") || is_lease_hex(l)
                });
            }
            Cmd::LeaseTimeToLive => {
                for l in lines.iter_mut() {
                    *l = sort_json_array(l, "\"keys\":[");
                    *l = sort_attached_keys(l);
                }
                sort_runs(&mut lines, |l| l.starts_with("\"Key\" : "));
            }
            _ => {}
        }
        let mut s = lines.join("\n");
        if text.ends_with('\n') && !s.is_empty() {
            s.push('\n');
        }
        s
    }

    fn mask_ids(&mut self, cmd: Cmd, learn: bool, line: &str) -> String {
        let mut line = line.to_string();
        // `lease <hex> ...` (etcdctl's simple lease printer).
        if let Some(rest) = line.strip_prefix("lease ") {
            let n = hex_run(rest);
            if n > 0 && rest[n..].starts_with(' ') {
                if let Some(label) = parse_hex(&rest[..n]).and_then(|id| self.label(id, learn)) {
                    line = format!("lease {label}{}", &rest[n..]);
                }
            }
        }
        // The id lines of `lease list`.
        if cmd == Cmd::LeaseList && is_lease_hex(&line) {
            if let Some(label) = parse_hex(&line).and_then(|id| self.label(id, false)) {
                line = label;
            }
        }
        // `<name>/<hex>` keys of lock / election sessions.
        for name in self.names.clone() {
            line = self.replace_after(&line, &format!("{name}/"), 16, true, false);
        }
        for marker in [
            "\"id\":",
            "\"ID\":",
            "\"lease\":",
            "\"ID\" : ",
            "\"Lease\" : ",
        ] {
            line = self.replace_after(&line, marker, 10, learn, true);
        }
        line
    }

    /// Replaces the number (in `radix`) after each `marker` with its label
    /// (quoted if `quote`) when it is a lease id (learned if `learn`).
    fn replace_after(
        &mut self,
        line: &str,
        marker: &str,
        radix: u32,
        learn: bool,
        quote: bool,
    ) -> String {
        let mut out = String::new();
        let mut rest = line;
        while let Some(pos) = rest.find(marker) {
            let (head, tail) = rest.split_at(pos + marker.len());
            out.push_str(head);
            let n = if radix == 16 {
                hex_run(tail)
            } else {
                tail.bytes().take_while(u8::is_ascii_digit).count()
            };
            let bounded = !tail[n..]
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
            let id = (n > 0 && n <= 19 && bounded)
                .then(|| i64::from_str_radix(&tail[..n], radix).ok())
                .flatten()
                .filter(|&id| id != 0);
            match id.and_then(|id| self.label(id, learn)) {
                Some(label) if quote => out.push_str(&format!("\"{label}\"")),
                Some(label) => out.push_str(&label),
                None => out.push_str(&tail[..n]),
            }
            rest = &tail[n..];
        }
        out.push_str(rest);
        out
    }
}

/// Length of the run of lowercase hex digits at the start of `s`.
fn hex_run(s: &str) -> usize {
    s.bytes()
        .take_while(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
        .count()
}

fn parse_hex(s: &str) -> Option<i64> {
    (!s.is_empty() && s.len() <= 16)
        .then(|| i64::from_str_radix(s, 16).ok())
        .flatten()
}

/// A `lease list` id line: `%016x`.
fn is_lease_hex(l: &str) -> bool {
    l.len() == 16 && hex_run(l) == 16
}

/// The integer starting `s` (optional `-`) and its length.
fn int_prefix(s: &str) -> Option<(i64, usize)> {
    let neg = usize::from(s.starts_with('-'));
    let n = neg + s[neg..].bytes().take_while(u8::is_ascii_digit).count();
    s[..n].parse().ok().map(|v| (v, n))
}

fn remaining_text(n: i64, granted: i64) -> String {
    if 0 < n && n <= granted {
        "<remaining>".to_string()
    } else {
        format!("<remaining {n} out of range (0, {granted}]>")
    }
}

/// Masks remaining TTLs (see the module docs).
fn mask_remaining(lines: &mut [String]) {
    for i in 0..lines.len() {
        // Simple: `granted with TTL(Gs), remaining(Ns)`.
        if let Some(p) = lines[i].find("granted with TTL(") {
            let l = &lines[i];
            let after = &l[p + "granted with TTL(".len()..];
            if let Some((g, gl)) = int_prefix(after) {
                let tail = &after[gl..];
                const REM: &str = "s), remaining(";
                if let Some(rest) = tail.strip_prefix(REM) {
                    if let Some((n, nl)) = int_prefix(rest) {
                        if g > 0 {
                            let start = l.len() - rest.len();
                            lines[i] =
                                format!("{}{}{}", &l[..start], remaining_text(n, g), &rest[nl..]);
                        }
                    }
                }
            }
        }
        // JSON: `"ttl":N,"granted-ttl":G`.
        if let Some(p) = lines[i].find("\"ttl\":") {
            let l = &lines[i];
            let start = p + "\"ttl\":".len();
            if let Some((n, nl)) = int_prefix(&l[start..]) {
                if let Some(g_str) = l[start + nl..].strip_prefix(",\"granted-ttl\":") {
                    if let Some((g, _)) = int_prefix(g_str) {
                        if g > 0 {
                            lines[i] = format!(
                                "{}\"{}\"{}",
                                &l[..start],
                                remaining_text(n, g),
                                &l[start + nl..]
                            );
                        }
                    }
                }
            }
        }
        // Fields: `"TTL" : N` followed by `"GrantedTTL" : G`.
        if let (Some(n), Some(g)) = (
            lines[i].strip_prefix("\"TTL\" : "),
            lines
                .get(i + 1)
                .and_then(|l| l.strip_prefix("\"GrantedTTL\" : ")),
        ) {
            if let (Ok(n), Ok(g)) = (n.parse::<i64>(), g.parse::<i64>()) {
                if g > 0 {
                    lines[i] = format!("\"TTL\" : \"{}\"", remaining_text(n, g));
                }
            }
        }
    }
}

/// Sorts every maximal run of consecutive lines matching `pred`.
fn sort_runs(lines: &mut [String], pred: impl Fn(&str) -> bool) {
    let mut i = 0;
    while i < lines.len() {
        if pred(&lines[i]) {
            let start = i;
            while i < lines.len() && pred(&lines[i]) {
                i += 1;
            }
            lines[start..i].sort();
        } else {
            i += 1;
        }
    }
}

/// Sorts the elements of the flat JSON array starting right after `marker`
/// (elements are objects without nested commas, or strings without
/// commas, as in etcdctl's `leases` and `keys`).
fn sort_json_array(line: &str, marker: &str) -> String {
    let Some(p) = line.find(marker) else {
        return line.to_string();
    };
    let start = p + marker.len();
    let Some(len) = line[start..].find(']') else {
        return line.to_string();
    };
    let body = &line[start..start + len];
    let mut items: Vec<String> = if body.starts_with('{') {
        body.split("},{")
            .map(|s| format!("{{{}}}", s.trim_start_matches('{').trim_end_matches('}')))
            .collect()
    } else {
        body.split(',').map(str::to_string).collect()
    };
    items.sort();
    format!(
        "{}{}{}",
        &line[..start],
        items.join(","),
        &line[start + len..]
    )
}

/// Sorts the space-separated keys of `attached keys([k1 k2])`.
fn sort_attached_keys(line: &str) -> String {
    const M: &str = "attached keys([";
    let Some(p) = line.find(M) else {
        return line.to_string();
    };
    let start = p + M.len();
    let Some(len) = line[start..].find("])") else {
        return line.to_string();
    };
    let mut keys: Vec<&str> = line[start..start + len].split(' ').collect();
    keys.sort();
    format!(
        "{}{}{}",
        &line[..start],
        keys.join(" "),
        &line[start + len..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_string).collect()
    }

    #[test]
    fn learns_from_grant_and_replaces_elsewhere() {
        let mut m = LeaseMask::new(["mylock".to_string()]);
        assert_eq!(
            m.mask_output(
                &args("lease grant 60"),
                "lease 2040a237f2728f05 granted with TTL(60s)\n"
            ),
            "lease $LEASE1 granted with TTL(60s)\n"
        );
        assert_eq!(
            m.substitute("--lease=$LEASE1").unwrap(),
            "--lease=2040a237f2728f05"
        );
        assert!(m.substitute("$LEASE2").is_err());
        // Decimal in JSON, padded hex in the simple printer.
        let id = 0x2040a237f2728f05_i64;
        assert_eq!(
            m.mask_output(&args("get k -w json"), &format!("{{\"lease\":{id}}}")),
            "{\"lease\":\"$LEASE1\"}"
        );
        // A lock key learns a new id; `%x` and `%016x` forms are one id.
        assert_eq!(
            m.mask_output(&args("lock mylock"), "mylock/1a\n\n"),
            "mylock/$LEASE2\n\n"
        );
        assert_eq!(
            m.mask_output(
                &args("lease list"),
                "found 2 leases\n000000000000001a\n2040a237f2728f05\n"
            ),
            "found 2 leases\n$LEASE1\n$LEASE2\n"
        );
        // Unknown ids stay; zero is never an id.
        assert_eq!(
            m.mask_output(
                &args("lease revoke 1234"),
                "lease 0000000000001234 already expired\n"
            ),
            "lease 0000000000001234 already expired\n"
        );
        assert_eq!(
            m.mask_output(&args("get a -w json"), "{\"lease\":0}"),
            "{\"lease\":0}"
        );
    }

    #[test]
    fn remaining_ttl() {
        let mut m = LeaseMask::new([]);
        let t = m.mask_output(
            &args("lease timetolive 1 --keys"),
            "lease 0000000000000001 granted with TTL(60s), remaining(59s), attached keys([k2 k1])\n",
        );
        assert_eq!(
            t,
            "lease 0000000000000001 granted with TTL(60s), remaining(<remaining>s), attached keys([k1 k2])\n"
        );
        let t = m.mask_output(
            &args("lease timetolive 1 -w json"),
            r#"{"id":1,"ttl":61,"granted-ttl":60,"keys":["azI=","azE="]}"#,
        );
        assert_eq!(
            t,
            r#"{"id":1,"ttl":"<remaining 61 out of range (0, 60]>","granted-ttl":60,"keys":["azE=","azI="]}"#
        );
        let t = m.mask_output(
            &args("lease timetolive 1 -w json"),
            r#"{"id":1,"ttl":-1,"granted-ttl":0,"keys":null}"#,
        );
        assert_eq!(t, r#"{"id":1,"ttl":-1,"granted-ttl":0,"keys":null}"#);
        let t = m.mask_output(
            &args("lease timetolive 1 -w fields"),
            "\"TTL\" : 5\n\"GrantedTTL\" : 10\n\"Key\" : \"b\"\n\"Key\" : \"a\"\n",
        );
        assert_eq!(
            t,
            "\"TTL\" : \"<remaining>\"\n\"GrantedTTL\" : 10\n\"Key\" : \"a\"\n\"Key\" : \"b\"\n"
        );
    }

    #[test]
    fn lease_list_json_sorted() {
        let mut m = LeaseMask::new([]);
        m.mask_output(
            &args("lease grant 5"),
            "lease 0000000000000009 granted with TTL(5s)\n",
        );
        m.mask_output(
            &args("lease grant 5"),
            "lease 0000000000000003 granted with TTL(5s)\n",
        );
        assert_eq!(
            m.mask_output(
                &args("lease list -w json"),
                r#"{"leases":[{"id":3},{"id":9}]}"#
            ),
            r#"{"leases":[{"id":"$LEASE1"},{"id":"$LEASE2"}]}"#
        );
    }

    #[test]
    fn names() {
        assert_eq!(
            lock_or_election_name(&args("lock --ttl=5 mylock echo")),
            Some("mylock".into())
        );
        assert_eq!(
            lock_or_election_name(&args("elect -l e1")),
            Some("e1".into())
        );
        assert_eq!(lock_or_election_name(&args("get k")), None);
    }
}
