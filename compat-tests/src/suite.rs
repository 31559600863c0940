//! The differential test driver shared by `tests/differential.rs`: for each
//! case file it runs the file against a fresh real etcd (checking, or with
//! `UPDATE_GOLDEN=1` rewriting, the committed `.golden` transcript) and then
//! against a fresh Armada, which must reproduce the golden exactly.
//!
//! Environment: `UPDATE_GOLDEN=1` rewrites goldens from etcd;
//! `COMPAT_FILTER=<substring>` runs only matching files;
//! `COMPAT_JOBS=<n>` sets the number of files run in parallel (default 2);
//! `COMPAT_SKIP_ARMADA=1` skips the Armada half (local iteration only).
//! Files marked [`ARMADA_ONLY`] have hand-written goldens (etcd 3.5
//! behaviour that 3.4.23 lacks) and skip the etcd half. A `# flags:` line
//! passes per-file server flags (see [`crate::flags`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::flags::ServerFlags;
use crate::server::{armada_bin, etcd_available, Server};
use crate::{dsl, etcdctl, runner};

/// A line starting with this marks a case file whose golden is written by
/// hand because etcd 3.4.23 cannot produce the etcd >= 3.5 behaviour Armada
/// targets (the reason follows the marker). Such files are never run
/// against etcd nor rewritten by `UPDATE_GOLDEN=1`.
pub const ARMADA_ONLY: &str = "# armada-only:";

/// Which kind of case files a suite runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suite {
    /// gRPC scenarios in `scenarios/` (see [`crate::dsl`]).
    Scenarios,
    /// etcdctl cases in `etcdctl/` (see [`crate::etcdctl`]).
    Etcdctl,
}

impl Suite {
    /// The directory holding this suite's `*.txt` files and goldens.
    pub fn dir(self) -> PathBuf {
        let sub = match self {
            Suite::Scenarios => "scenarios",
            Suite::Etcdctl => "etcdctl",
        };
        Path::new(env!("CARGO_MANIFEST_DIR")).join(sub)
    }
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Whether goldens are being rewritten (`UPDATE_GOLDEN=1`).
pub fn update_golden() -> bool {
    env_flag("UPDATE_GOLDEN")
}

/// Whether the Armada half is skipped (`COMPAT_SKIP_ARMADA=1`).
pub fn skip_armada() -> bool {
    env_flag("COMPAT_SKIP_ARMADA")
}

/// The suite's case files, sorted, filtered by `COMPAT_FILTER`.
pub fn case_files(suite: Suite) -> Vec<PathBuf> {
    let filter = std::env::var("COMPAT_FILTER").unwrap_or_default();
    let mut files: Vec<PathBuf> = std::fs::read_dir(suite.dir())
        .unwrap_or_else(|e| panic!("read {}: {e}", suite.dir().display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .filter(|p| p.file_name().unwrap().to_string_lossy().contains(&filter))
        .collect();
    files.sort();
    files
}

/// Runs one case file against a fresh server of the given kind.
fn transcript(suite: Suite, path: &Path, server: &Server) -> Result<String, String> {
    let src = std::fs::read_to_string(path).map_err(|e| format!("read: {e}"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let ep = server.endpoint();
    match suite {
        Suite::Scenarios => {
            let items = dsl::parse_script(&src)?;
            rt.block_on(runner::run_script(&ep, &items))
        }
        Suite::Etcdctl => {
            let items = etcdctl::parse_cases(&src)?;
            rt.block_on(etcdctl::run_cases(&ep, &items))
        }
    }
}

/// Runs one file: etcd half (check or record golden), then Armada half.
/// Returns the failure reports.
fn run_file(suite: Suite, path: &Path) -> Vec<String> {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let golden_path = path.with_extension("golden");
    let mut failures = Vec::new();
    let src = std::fs::read_to_string(path).unwrap_or_default();
    let armada_only = src.lines().any(|l| l.starts_with(ARMADA_ONLY));
    let flags = match ServerFlags::parse(&src) {
        Ok(f) => f,
        Err(e) => return vec![format!("{name}: {e}")],
    };
    if armada_only {
        eprintln!("notice: {name} is armada-only (hand-written golden); etcd half skipped");
    } else if etcd_available() {
        let server = Server::etcd_with(&flags);
        match transcript(suite, path, &server) {
            Err(e) => failures.push(format!("{name} [etcd]: {e}")),
            Ok(actual) if update_golden() => {
                std::fs::write(&golden_path, &actual).expect("write golden");
                eprintln!("updated {}", golden_path.display());
            }
            Ok(actual) => match std::fs::read_to_string(&golden_path) {
                Err(_) => failures.push(format!(
                    "{name} [etcd]: no golden {}; record it with UPDATE_GOLDEN=1",
                    golden_path.display()
                )),
                Ok(golden) if golden != actual => failures.push(format!(
                    "{name} [etcd]: real etcd no longer matches the committed golden \
                     (- golden, + etcd):\n{}",
                    diff(&golden, &actual)
                )),
                Ok(_) => {}
            },
        }
    } else if update_golden() {
        failures.push(format!("{name}: UPDATE_GOLDEN=1 needs real etcd"));
    }
    if !skip_armada() {
        let golden = match std::fs::read_to_string(&golden_path) {
            Ok(g) => g,
            Err(_) => {
                failures.push(format!(
                    "{name} [armada]: no golden {}",
                    golden_path.display()
                ));
                return failures;
            }
        };
        let server = Server::armada_with(&flags);
        match transcript(suite, path, &server) {
            Err(e) => failures.push(format!("{name} [armada]: {e}")),
            Ok(actual) if actual != golden => failures.push(format!(
                "{name} [armada]: transcript differs from the etcd golden (- etcd, + armada):\n{}",
                diff(&golden, &actual)
            )),
            Ok(_) => {}
        }
    }
    failures
}

/// Runs a whole suite with `COMPAT_JOBS` files in parallel, panicking with
/// every failure report at the end.
pub fn run_suite(suite: Suite) {
    if suite == Suite::Etcdctl && !crate::server::etcdctl_available() {
        eprintln!("notice: /usr/bin/etcdctl not found; skipping the etcdctl cases");
        return;
    }
    if !etcd_available() {
        eprintln!(
            "notice: /usr/bin/etcd not found; checking Armada against committed goldens only"
        );
    }
    if skip_armada() {
        eprintln!("notice: COMPAT_SKIP_ARMADA set; the Armada half is skipped");
    } else {
        let bin = armada_bin();
        assert!(
            bin.exists(),
            "Armada binary not found at {}: run `cargo build` in the workspace root first \
             (or set ARMADA_BIN)",
            bin.display()
        );
    }
    let files = case_files(suite);
    assert!(
        !files.is_empty(),
        "no case files in {}",
        suite.dir().display()
    );
    let jobs: usize = std::env::var("COMPAT_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
        .max(1);
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..jobs.min(files.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(path) = files.get(i) else { break };
                let f = match std::panic::catch_unwind(|| run_file(suite, path)) {
                    Ok(f) => f,
                    Err(p) => vec![format!(
                        "{}: panicked: {}",
                        path.display(),
                        p.downcast_ref::<String>()
                            .cloned()
                            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default()
                    )],
                };
                let ok = if f.is_empty() { "ok" } else { "FAILED" };
                eprintln!(
                    "{suite:?} {}: {ok}",
                    path.file_name().unwrap().to_string_lossy()
                );
                failures.lock().unwrap().extend(f);
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} failure(s) in {} {suite:?} files:\n\n{}",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
}

/// A line diff of `old` vs `new` (LCS-based, with two lines of context and
/// 1-based line numbers of both sides); falls back to a positional
/// comparison for very large inputs.
pub fn diff(old: &str, new: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let (n, m) = (a.len(), b.len());
    // ops: (tag, line in a, line in b); tag ' ' same, '-' only a, '+' only b.
    let mut ops: Vec<(char, usize, usize)> = Vec::new();
    if n.saturating_mul(m) <= 16_000_000 {
        let mut lcs = vec![vec![0u32; m + 1]; n + 1];
        for i in (0..n).rev() {
            for j in (0..m).rev() {
                lcs[i][j] = if a[i] == b[j] {
                    lcs[i + 1][j + 1] + 1
                } else {
                    lcs[i + 1][j].max(lcs[i][j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < n || j < m {
            if i < n && j < m && a[i] == b[j] {
                ops.push((' ', i, j));
                i += 1;
                j += 1;
            } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
                ops.push(('-', i, j));
                i += 1;
            } else {
                ops.push(('+', i, j));
                j += 1;
            }
        }
    } else {
        for k in 0..n.max(m) {
            match (a.get(k), b.get(k)) {
                (Some(x), Some(y)) if x == y => ops.push((' ', k, k)),
                (x, y) => {
                    if x.is_some() {
                        ops.push(('-', k, k));
                    }
                    if y.is_some() {
                        ops.push(('+', k, k));
                    }
                }
            }
        }
    }
    let mut out = String::new();
    let mut last_shown: Option<usize> = None;
    for (idx, &(tag, i, j)) in ops.iter().enumerate() {
        let near = ops[idx.saturating_sub(2)..(idx + 3).min(ops.len())]
            .iter()
            .any(|o| o.0 != ' ');
        if !near {
            continue;
        }
        if last_shown.is_some_and(|l| l + 1 != idx) {
            out.push_str("   ...\n");
        }
        last_shown = Some(idx);
        let line = match tag {
            '-' => format!("-{:>4}      | {}\n", i + 1, a[i]),
            '+' => format!("+     {:>4} | {}\n", j + 1, b[j]),
            _ => format!(" {:>4} {:>4} | {}\n", i + 1, j + 1, a[i]),
        };
        out.push_str(&line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::diff;

    #[test]
    fn diff_marks_changes() {
        let d = diff("a\nb\nc\n", "a\nx\nc\n");
        assert!(d.contains("-   2      | b"), "{d}");
        assert!(d.contains("+        2 | x"), "{d}");
    }
}
