//! Background etcdctl processes for long-running commands (`etcdctl
//! watch`, `lock`, `elect`, `lease keep-alive`), driven by `@` directives
//! in etcdctl case files:
//!
//! ```text
//! @bg <name> <etcdctl args> [<<TAG]   start in the background; a heredoc is
//!                                     written to its stdin, which stays open
//! @wait <name> <n>                    wait until its stdout has n lines in
//!                                     total, print those not printed yet
//! @stop <name>                        kill it (by pid), print what is left
//! @exit <name>                        wait for it to exit on its own, print
//!                                     what is left and `[exit N]`
//! @term <name>                        send it SIGTERM (by pid), then as @exit
//!                                     (etcdctl lock / elect then unlock /
//!                                     resign before exiting); clientv3's
//!                                     warning about a call it canceled
//!                                     itself on the signal is left out
//! ```
//!
//! Output lines are prefixed with `[<name>] ` (stderr: `[<name>] stderr: `).
//! Waits are bounded by [`WAIT_TIMEOUT`] and poll the collected output
//! (never a fixed sleep deciding the result).

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin};
use tokio::task::JoinHandle;

use crate::etcdctl::{command, render_output, Case};
use crate::etcdctl_mask::LeaseMask;

/// Upper bound of `@wait` and `@exit`.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Poll period while waiting for output.
const POLL: Duration = Duration::from_millis(20);

/// One `@` directive.
#[derive(Clone, Debug)]
pub enum BgCmd {
    /// `@bg`: start `case` in the background under `name`.
    Start { name: String, case: Case },
    /// `@wait`: wait for `lines` stdout lines in total.
    Wait { name: String, lines: usize },
    /// `@stop`: kill the process.
    Stop { name: String },
    /// `@exit`: wait for the process to exit by itself.
    Exit { name: String },
    /// `@term`: SIGTERM, then wait for the process to exit.
    Term { name: String },
}

/// Parses `@wait`, `@stop`, `@exit` and `@term` lines (`@bg` needs the heredoc
/// handling of [`crate::etcdctl::parse_cases`]).
pub fn parse_simple(words: &[String]) -> Result<BgCmd, String> {
    match words {
        [d, name, n] if d == "@wait" => Ok(BgCmd::Wait {
            name: name.clone(),
            lines: n.parse().map_err(|_| format!("bad line count `{n}`"))?,
        }),
        [d, name] if d == "@stop" => Ok(BgCmd::Stop { name: name.clone() }),
        [d, name] if d == "@exit" => Ok(BgCmd::Exit { name: name.clone() }),
        [d, name] if d == "@term" => Ok(BgCmd::Term { name: name.clone() }),
        _ => Err(
            "usage: @bg <name> <args> | @wait <name> <n> | @stop <name> | @exit <name> \
             | @term <name>"
                .into(),
        ),
    }
}

/// A background etcdctl and its collected output.
struct BgProc {
    child: Child,
    /// The etcdctl arguments (for output masking).
    args: Vec<String>,
    /// Kept open so interactive commands (`watch -i`) keep reading.
    _stdin: Option<ChildStdin>,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
    /// stdout lines already printed.
    printed: usize,
}

/// The background processes of one case file; killed when dropped
/// (`kill_on_drop`).
#[derive(Default)]
pub struct BgProcs {
    procs: HashMap<String, BgProc>,
}

impl BgProcs {
    /// Runs one directive, appending transcript lines to `out`.
    pub async fn run(
        &mut self,
        endpoint: &str,
        cmd: &BgCmd,
        mask: &mut LeaseMask,
        out: &mut Vec<String>,
    ) -> Result<(), String> {
        match cmd {
            BgCmd::Start { name, case } => self.start(endpoint, name, case).await,
            BgCmd::Wait { name, lines } => {
                let p = self.get(name)?;
                let reached = wait_lines(p, *lines).await;
                print_lines_up_to(p, *lines, name, endpoint, mask, out);
                if !reached {
                    out.push(format!(
                        "[{name}] timed out after {WAIT_TIMEOUT:?} waiting for {lines} lines"
                    ));
                }
                Ok(())
            }
            BgCmd::Stop { name } => {
                let mut p = self.take(name)?;
                // `start_kill` signals exactly this child's pid.
                let _ = p.child.start_kill();
                let _ = p.child.wait().await;
                finish(p, name, endpoint, false, None, mask, out).await;
                Ok(())
            }
            BgCmd::Exit { name } | BgCmd::Term { name } => {
                let mut p = self.take(name)?;
                if matches!(cmd, BgCmd::Term { .. }) {
                    sigterm(&p.child).await?;
                }
                let status = tokio::time::timeout(WAIT_TIMEOUT, p.child.wait()).await;
                let code = match status {
                    Ok(Ok(s)) => Some(s.code().unwrap_or(-1)),
                    _ => {
                        let _ = p.child.start_kill();
                        let _ = p.child.wait().await;
                        out.push(format!("[{name}] did not exit within {WAIT_TIMEOUT:?}"));
                        None
                    }
                };
                let terminated = matches!(cmd, BgCmd::Term { .. });
                finish(p, name, endpoint, terminated, code, mask, out).await;
                Ok(())
            }
        }
    }

    async fn start(&mut self, endpoint: &str, name: &str, case: &Case) -> Result<(), String> {
        if self.procs.contains_key(name) {
            return Err(format!("line {}: `{name}` is already running", case.line));
        }
        let mut cmd = command(endpoint, &case.args);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("line {}: cannot spawn etcdctl: {e}", case.line))?;
        let mut stdin = child.stdin.take();
        if let (Some(pipe), Some(input)) = (stdin.as_mut(), &case.stdin) {
            pipe.write_all(input.as_bytes())
                .await
                .map_err(|e| format!("line {}: writing stdin: {e}", case.line))?;
            pipe.flush().await.map_err(|e| format!("stdin: {e}"))?;
        }
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            collect(child.stdout.take().expect("piped"), stdout.clone()),
            collect(child.stderr.take().expect("piped"), stderr.clone()),
        ];
        let proc = BgProc {
            child,
            args: case.args.clone(),
            _stdin: stdin,
            stdout,
            stderr,
            readers,
            printed: 0,
        };
        self.procs.insert(name.to_string(), proc);
        Ok(())
    }

    fn get(&mut self, name: &str) -> Result<&mut BgProc, String> {
        self.procs
            .get_mut(name)
            .ok_or_else(|| format!("no background process `{name}`"))
    }

    fn take(&mut self, name: &str) -> Result<BgProc, String> {
        self.procs
            .remove(name)
            .ok_or_else(|| format!("no background process `{name}`"))
    }
}

/// Copies everything `r` yields into `buf`.
fn collect(
    mut r: impl AsyncRead + Unpin + Send + 'static,
    buf: Arc<Mutex<Vec<u8>>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut chunk = [0u8; 8192];
        while let Ok(n) = r.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            buf.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    })
}

/// The complete (newline-terminated) lines of `buf`.
fn complete_lines(buf: &Mutex<Vec<u8>>) -> Vec<String> {
    let b = buf.lock().unwrap();
    let end = b.iter().rposition(|&c| c == b'\n').map_or(0, |i| i + 1);
    String::from_utf8_lossy(&b[..end])
        .lines()
        .map(str::to_string)
        .collect()
}

/// Polls until stdout has `n` complete lines; false on timeout.
async fn wait_lines(p: &BgProc, n: usize) -> bool {
    let deadline = tokio::time::Instant::now() + WAIT_TIMEOUT;
    loop {
        if complete_lines(&p.stdout).len() >= n {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Prints the complete stdout lines not printed yet, up to line `n` (so
/// that what one `@wait` prints does not depend on output arriving later).
fn print_lines_up_to(
    p: &mut BgProc,
    n: usize,
    name: &str,
    endpoint: &str,
    mask: &mut LeaseMask,
    out: &mut Vec<String>,
) {
    let lines = complete_lines(&p.stdout);
    let end = n.min(lines.len());
    if end > p.printed {
        let new = lines[p.printed..end].join("\n") + "\n";
        push_prefixed(out, name, render_output(endpoint, &p.args, mask, &new, ""));
        p.printed = end;
    }
}

/// After the process ended: prints the rest of stdout, all of stderr and
/// the exit code (if it exited by itself with a non-zero code).
/// Drops clientv3's warning about a call the client canceled itself: a
/// process stopped by SIGTERM cancels whatever it had in flight (an
/// observer's Get right after a leader resigned, say), and whether one was
/// in flight at that instant is timing, on etcd as on Armada.
fn without_own_cancellations(stderr: &str) -> String {
    let own = |l: &str| {
        l.contains("retrying of unary invoker failed")
            && l.contains("code = Canceled desc = context canceled")
    };
    let kept: Vec<&str> = stderr.lines().filter(|l| !own(l)).collect();
    if kept.is_empty() {
        String::new()
    } else {
        kept.join("\n") + "\n"
    }
}

async fn finish(
    mut p: BgProc,
    name: &str,
    endpoint: &str,
    terminated: bool,
    code: Option<i32>,
    mask: &mut LeaseMask,
    out: &mut Vec<String>,
) {
    for r in std::mem::take(&mut p.readers) {
        let _ = tokio::time::timeout(WAIT_TIMEOUT, r).await;
    }
    let rest = {
        let b = p.stdout.lock().unwrap();
        String::from_utf8_lossy(&b)
            .lines()
            .skip(p.printed)
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mut stderr = String::from_utf8_lossy(&p.stderr.lock().unwrap()).into_owned();
    if terminated {
        stderr = without_own_cancellations(&stderr);
    }
    let rest = if rest.is_empty() { rest } else { rest + "\n" };
    push_prefixed(
        out,
        name,
        render_output(endpoint, &p.args, mask, &rest, &stderr),
    );
    if let Some(c) = code.filter(|&c| c != 0) {
        out.push(format!("[{name}] [exit {c}]"));
    }
}

/// Sends SIGTERM to exactly this child's pid (with `kill(1)`: std and
/// tokio only send SIGKILL).
async fn sigterm(child: &Child) -> Result<(), String> {
    let Some(pid) = child.id() else {
        return Ok(()); // already reaped
    };
    let st = tokio::process::Command::new("kill")
        .args(["-s", "TERM", &pid.to_string()])
        .status()
        .await
        .map_err(|e| format!("kill -s TERM {pid}: {e}"))?;
    if !st.success() {
        return Err(format!("kill -s TERM {pid}: {st}"));
    }
    Ok(())
}

/// Appends `lines` prefixed with `[name]` (an empty line becomes `[name]`).
fn push_prefixed(out: &mut Vec<String>, name: &str, lines: Vec<String>) {
    out.extend(lines.into_iter().map(|l| {
        if l.is_empty() {
            format!("[{name}]")
        } else {
            format!("[{name}] {l}")
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::without_own_cancellations;

    #[test]
    fn only_the_clients_own_cancellations_are_left_out() {
        let own = r#"{"level":"warn","msg":"retrying of unary invoker failed","attempt":0,"error":"rpc error: code = Canceled desc = context canceled"}"#;
        let other = r#"{"level":"warn","msg":"retrying of unary invoker failed","attempt":0,"error":"rpc error: code = Unavailable desc = etcdserver: no leader"}"#;
        assert_eq!(without_own_cancellations(&format!("{own}\n")), "");
        let both = format!("{own}\n{other}\nError: x\n");
        assert_eq!(
            without_own_cancellations(&both),
            format!("{other}\nError: x\n")
        );
    }
}
