//! etcdctl cases: each non-comment line of `compat-tests/etcdctl/*.txt` is
//! an etcdctl argument list (shell-like quoting: `'...'`, `"..."`, `\`),
//! run as `ETCDCTL_API=3 /usr/bin/etcdctl --endpoints=<ep> <args>`. A line
//! ending in `<<TAG` takes the following lines up to a line `TAG` as stdin
//! (used for `txn`). The transcript echoes `$ etcdctl <args>` (stdin lines
//! as `> <line>`), then stdout, stderr lines prefixed `stderr: `, and
//! `[exit N]` when the exit code is not 0.
//!
//! Lines starting with `@` drive background processes (`etcdctl watch`),
//! see [`crate::etcdctl_bg`].
//!
//! Masking (see [`mask`]): `cluster_id`, `member_id`, `raft_term` in JSON
//! (`"cluster_id":"<masked>"`) and `ClusterID`, `MemberID`, `RaftTerm` in
//! `-w fields` output; in the client's JSON log lines on stderr, the `ts`
//! timestamp and the `target` (a random client id plus the port); and the
//! server's endpoint URL wherever it is printed (`<endpoint>`). Lease ids
//! (as `$LEASE<n>` labels, also usable in later command lines), remaining
//! TTLs and the unspecified orders of `lease list` / `lease timetolive
//! --keys` are masked by [`crate::etcdctl_mask`].

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::etcdctl_bg::{self, BgCmd, BgProcs};
use crate::etcdctl_mask::{lock_or_election_name, LeaseMask};
use crate::server::ETCDCTL_BIN;

/// One etcdctl invocation.
#[derive(Clone, Debug)]
pub struct Case {
    /// 1-based line number of the command line.
    pub line: usize,
    /// Arguments after `--endpoints=...`.
    pub args: Vec<String>,
    /// Standard input (heredoc body), if any.
    pub stdin: Option<String>,
    /// Echo lines for the transcript.
    pub echo: Vec<String>,
}

/// An item of an etcdctl case file, in order.
#[derive(Clone, Debug)]
pub enum CaseItem {
    /// A comment or blank line, echoed verbatim.
    Text(String),
    /// An etcdctl invocation.
    Run(Case),
    /// A background-process directive (`@bg`, `@wait`, `@stop`, `@exit`).
    Bg {
        /// Echo lines for the transcript.
        echo: Vec<String>,
        /// The directive.
        cmd: BgCmd,
    },
}

/// Parses an etcdctl case file.
pub fn parse_cases(src: &str) -> Result<Vec<CaseItem>, String> {
    let lines: Vec<&str> = src.lines().collect();
    let mut items = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let raw = lines[i].trim_end();
        let t = raw.trim();
        if t.is_empty() || t.starts_with('#') {
            items.push(CaseItem::Text(raw.to_string()));
            i += 1;
            continue;
        }
        let no = i + 1;
        let words = shell_words(t).map_err(|e| format!("line {no}: {e}"))?;
        if words[0].starts_with('@') && words[0] != "@bg" {
            let cmd = etcdctl_bg::parse_simple(&words).map_err(|e| format!("line {no}: {e}"))?;
            items.push(CaseItem::Bg {
                echo: vec![format!("$ {t}")],
                cmd,
            });
            i += 1;
            continue;
        }
        let (case, next) = parse_case(&lines, i, words)?;
        items.push(match case.args.first().map(String::as_str) {
            Some("@bg") => bg_start(case)?,
            _ => CaseItem::Run(case),
        });
        i = next;
    }
    Ok(items)
}

/// Parses the invocation starting at `lines[i]` (already split into
/// `args`) with its heredoc, if any; returns it and the next line index.
fn parse_case(lines: &[&str], i: usize, mut args: Vec<String>) -> Result<(Case, usize), String> {
    let no = i + 1;
    let t = lines[i].trim();
    let mut echo = vec![if t.starts_with('@') {
        format!("$ {t}")
    } else {
        format!("$ etcdctl {t}")
    }];
    let mut stdin = None;
    let mut i = i;
    if let Some(tag) = args
        .last()
        .and_then(|a| a.strip_prefix("<<"))
        .map(str::to_string)
    {
        args.pop();
        let mut body = String::new();
        i += 1;
        loop {
            let l = *lines
                .get(i)
                .ok_or_else(|| format!("line {no}: heredoc `{tag}` not terminated"))?;
            echo.push(format!("> {l}").trim_end().to_string());
            if l.trim() == tag {
                break;
            }
            body.push_str(l);
            body.push('\n');
            i += 1;
        }
        stdin = Some(body);
    }
    let case = Case {
        line: no,
        args,
        stdin,
        echo,
    };
    Ok((case, i + 1))
}

/// Turns a parsed `@bg <name> <args>` line into its directive.
fn bg_start(mut case: Case) -> Result<CaseItem, String> {
    if case.args.len() < 3 {
        return Err(format!(
            "line {}: usage: @bg <name> <etcdctl args>",
            case.line
        ));
    }
    let name = case.args[1].clone();
    case.args.drain(..2);
    let echo = std::mem::take(&mut case.echo);
    Ok(CaseItem::Bg {
        echo,
        cmd: BgCmd::Start { name, case },
    })
}

/// Splits a command line like a POSIX shell would (quotes and backslashes;
/// no expansion).
pub fn shell_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut it = s.chars();
    while let Some(c) = it.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match it.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match it.next() {
                        Some('"') => break,
                        Some('\\') => match it.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => cur.push(c),
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some(c) => cur.push(c),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                cur.push(it.next().ok_or("dangling backslash")?);
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// Runs every case against `endpoint` and returns the masked transcript.
pub async fn run_cases(endpoint: &str, items: &[CaseItem]) -> Result<String, String> {
    let mut out: Vec<String> = Vec::new();
    let mut bg = BgProcs::default();
    let mut mask = LeaseMask::new(items.iter().filter_map(|item| match item {
        CaseItem::Run(case)
        | CaseItem::Bg {
            cmd: BgCmd::Start { case, .. },
            ..
        } => lock_or_election_name(&case.args),
        _ => None,
    }));
    for item in items {
        match item {
            CaseItem::Text(t) => out.push(t.clone()),
            CaseItem::Run(case) => {
                out.extend(case.echo.iter().cloned());
                let case = substitute(&mask, case)?;
                let (stdout, stderr, code) = run_one(endpoint, &case).await?;
                out.extend(render_output(
                    endpoint, &case.args, &mut mask, &stdout, &stderr,
                ));
                if code != 0 {
                    out.push(format!("[exit {code}]"));
                }
            }
            CaseItem::Bg { echo, cmd } => {
                out.extend(echo.iter().cloned());
                let cmd = match cmd {
                    BgCmd::Start { name, case } => BgCmd::Start {
                        name: name.clone(),
                        case: substitute(&mask, case)?,
                    },
                    other => other.clone(),
                };
                bg.run(endpoint, &cmd, &mut mask, &mut out).await?;
            }
        }
    }
    let mut s = out.join("\n");
    s.push('\n');
    Ok(s)
}

/// `case` with every `$LEASE<n>` in its arguments and stdin replaced by
/// the lease id (see [`crate::etcdctl_mask`]).
fn substitute(mask: &LeaseMask, case: &Case) -> Result<Case, String> {
    let err = |e: String| format!("line {}: {e}", case.line);
    let mut case = case.clone();
    for a in case.args.iter_mut() {
        *a = mask.substitute(a).map_err(err)?;
    }
    if let Some(s) = case.stdin.as_mut() {
        *s = mask.substitute(s).map_err(err)?;
    }
    Ok(case)
}

/// Transcript lines for the output of etcdctl `args`: the endpoint URL
/// replaced by `<endpoint>`, [`mask`]ed and lease-masked, stderr lines
/// prefixed `stderr: `.
pub fn render_output(
    endpoint: &str,
    args: &[String],
    lease_mask: &mut LeaseMask,
    stdout: &str,
    stderr: &str,
) -> Vec<String> {
    let stdout = lease_mask.mask_output(args, &mask(&stdout.replace(endpoint, "<endpoint>")));
    let stderr = lease_mask.mask_output(args, &mask(&stderr.replace(endpoint, "<endpoint>")));
    let mut out: Vec<String> = stdout.lines().map(str::to_string).collect();
    out.extend(stderr.lines().map(|l| format!("stderr: {l}")));
    out
}

/// `ETCDCTL_API=3 etcdctl --endpoints=<endpoint> <args>` with every other
/// `ETCDCTL_*` variable removed; killed when dropped.
pub fn command(endpoint: &str, args: &[String]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(ETCDCTL_BIN);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("ETCDCTL_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(args)
        .kill_on_drop(true);
    cmd
}

/// Runs one etcdctl process (killed if it outlives 60 s).
async fn run_one(endpoint: &str, case: &Case) -> Result<(String, String, i32), String> {
    let mut cmd = command(endpoint, &case.args);
    cmd.stdin(if case.stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("line {}: cannot spawn etcdctl: {e}", case.line))?;
    if let Some(input) = &case.stdin {
        let mut pipe = child.stdin.take().expect("piped stdin");
        pipe.write_all(input.as_bytes())
            .await
            .map_err(|e| format!("line {}: writing stdin: {e}", case.line))?;
        drop(pipe);
    }
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .map_err(|_| format!("line {}: etcdctl timed out", case.line))?
        .map_err(|e| format!("line {}: etcdctl: {e}", case.line))?;
    Ok((
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        output.status.code().unwrap_or(-1),
    ))
}

/// Masks the values that legitimately differ between servers and runs.
pub fn mask(s: &str) -> String {
    let mut s = s.to_string();
    for field in ["cluster_id", "member_id", "raft_term"] {
        s = mask_after(&s, &format!("\"{field}\":"), false);
    }
    for field in ["ClusterID", "MemberID", "RaftTerm"] {
        s = mask_after(&s, &format!("\"{field}\" : "), false);
    }
    for field in ["ts", "target"] {
        s = mask_after(&s, &format!("\"{field}\":"), true);
    }
    s
}

/// Replaces the JSON value following every occurrence of `marker` (a
/// number, or a string when `string` is set) with `"<masked>"`.
fn mask_after(s: &str, marker: &str, string: bool) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find(marker) {
        let (head, tail) = rest.split_at(pos + marker.len());
        out.push_str(head);
        let end = if string && tail.starts_with('"') {
            // Closing quote of the string (log values contain no escapes).
            tail[1..].find('"').map(|e| e + 2).unwrap_or(tail.len())
        } else if !string {
            tail.find(|c: char| !c.is_ascii_digit())
                .unwrap_or(tail.len())
        } else {
            0
        };
        if end > 0 {
            out.push_str("\"<masked>\"");
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words() {
        assert_eq!(
            shell_words(r#"put "" 'a b' c\ d "x\"y""#).unwrap(),
            vec!["put", "", "a b", "c d", "x\"y"]
        );
    }

    #[test]
    fn masking() {
        let j = r#"{"header":{"cluster_id":1,"member_id":22,"revision":2,"raft_term":3}}"#;
        assert_eq!(
            mask(j),
            r#"{"header":{"cluster_id":"<masked>","member_id":"<masked>","revision":2,"raft_term":"<masked>"}}"#
        );
        assert_eq!(
            mask("\"MemberID\" : 123\n"),
            "\"MemberID\" : \"<masked>\"\n"
        );
        assert_eq!(
            mask(r#"{"ts":"2026-01-01T00:00:00Z","target":"endpoint://x/1:2","attempt":0}"#),
            r#"{"ts":"<masked>","target":"<masked>","attempt":0}"#
        );
    }

    #[test]
    fn heredoc() {
        let items = parse_cases("txn <<EOF\na\n\nb\nEOF\nget foo\n").unwrap();
        let CaseItem::Run(c) = &items[0] else {
            panic!()
        };
        assert_eq!(c.args, vec!["txn"]);
        assert_eq!(c.stdin.as_deref(), Some("a\n\nb\n"));
        assert_eq!(items.len(), 2);
    }

    #[test]
    fn background_directives() {
        let src = "@bg w watch -i <<EOF\nwatch a\nEOF\n@wait w 3\n@stop w\n";
        let items = parse_cases(src).unwrap();
        assert_eq!(items.len(), 3);
        let CaseItem::Bg {
            cmd: BgCmd::Start { name, case },
            echo,
        } = &items[0]
        else {
            panic!("not @bg")
        };
        assert_eq!(
            (name.as_str(), case.args.clone()),
            ("w", vec!["watch".to_string(), "-i".to_string()])
        );
        assert_eq!(case.stdin.as_deref(), Some("watch a\n"));
        assert_eq!(echo[0], "$ @bg w watch -i <<EOF");
        assert!(matches!(
            &items[1],
            CaseItem::Bg {
                cmd: BgCmd::Wait { lines: 3, .. },
                ..
            }
        ));
        assert!(parse_cases("@wait w\n").is_err());
        assert!(matches!(
            &parse_cases("@term w\n").unwrap()[0],
            CaseItem::Bg {
                cmd: BgCmd::Term { .. },
                ..
            }
        ));
    }
}
