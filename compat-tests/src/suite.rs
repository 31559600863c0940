//! The differential test driver shared by `tests/differential.rs`: for each
//! case file it runs the file against a fresh real etcd (checking, or with
//! `UPDATE_GOLDEN=1` rewriting, the committed `.golden` transcript) and then
//! against a fresh Armada, which must reproduce the golden exactly.
//!
//! The departures suite (`departures/`) is the one exception, and it is kept
//! apart so that no golden in `scenarios/` or `etcdctl/` is anything but
//! etcd 3.4.23's own output: each of its files says which etcd >= 3.5
//! behaviour Armada follows where 3.4.23 cannot produce it (the
//! [`DEPARTS`] line), and its goldens are Armada's transcripts, reviewed by
//! hand and rewritten only from Armada.
//!
//! Environment, for local iteration only: `UPDATE_GOLDEN=1` rewrites
//! goldens; `COMPAT_FILTER=<substring>` runs only matching files;
//! `COMPAT_SKIP_ARMADA=1` skips the Armada half; `COMPAT_ALLOW_MISSING_ETCD=1`
//! lets a machine without etcd check Armada against the goldens alone. Under
//! CI (`CI` set, as `.ci/run` does) all four are ignored: the whole suite
//! runs, against both servers, and a missing etcd or etcdctl fails it.
//! `COMPAT_JOBS=<n>` sets the number of files run in parallel (default 2).
//! A `# flags:` line passes per-file server flags (see [`crate::flags`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::flags::ServerFlags;
use crate::server::{armada_bin, etcd_available, Server};
use crate::{dsl, etcdctl, runner};

/// Every file of the departures suite starts a line with this, followed by
/// the etcd >= 3.5 behaviour it covers and why 3.4.23 cannot produce it;
/// no file of the differential suites may.
pub const DEPARTS: &str = "# armada-only:";

/// Which kind of case files a suite runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suite {
    /// gRPC scenarios in `scenarios/` (see [`crate::dsl`]).
    Scenarios,
    /// etcdctl cases in `etcdctl/` (see [`crate::etcdctl`]).
    Etcdctl,
    /// gRPC scenarios in `departures/`, run against Armada only.
    Departures,
}

impl Suite {
    /// The directory holding this suite's `*.txt` files and goldens.
    pub fn dir(self) -> PathBuf {
        let sub = match self {
            Suite::Scenarios => "scenarios",
            Suite::Etcdctl => "etcdctl",
            Suite::Departures => "departures",
        };
        Path::new(env!("CARGO_MANIFEST_DIR")).join(sub)
    }
}

/// Whether this runs under CI, where no switch may narrow the suite.
pub fn under_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// A local-iteration switch: set to exactly `1`, and ignored under CI.
fn switch(name: &str) -> bool {
    let set = std::env::var(name).is_ok_and(|v| v == "1");
    if set && under_ci() {
        eprintln!("notice: {name}=1 is ignored under CI");
        return false;
    }
    set
}

/// Whether goldens are being rewritten (`UPDATE_GOLDEN=1`).
pub fn update_golden() -> bool {
    switch("UPDATE_GOLDEN")
}

/// Whether the Armada half is skipped (`COMPAT_SKIP_ARMADA=1`).
pub fn skip_armada() -> bool {
    switch("COMPAT_SKIP_ARMADA")
}

/// Whether a machine without etcd or etcdctl may check Armada against the
/// goldens alone (`COMPAT_ALLOW_MISSING_ETCD=1`); never under CI.
pub fn allow_missing_etcd() -> bool {
    switch("COMPAT_ALLOW_MISSING_ETCD")
}

/// True if real etcd is there to compare with. Without it, fails the test
/// unless `COMPAT_ALLOW_MISSING_ETCD=1` (never under CI) lets the caller
/// check Armada alone.
pub fn require_etcd() -> bool {
    if etcd_available() {
        return true;
    }
    assert!(
        allow_missing_etcd(),
        "/usr/bin/etcd is missing: install Debian's etcd-server (the README's test \
         command does), or set COMPAT_ALLOW_MISSING_ETCD=1 outside CI"
    );
    eprintln!("notice: /usr/bin/etcd not found; skipping the etcd half");
    false
}

/// The suite's case files, sorted, filtered by `COMPAT_FILTER` (not under CI).
pub fn case_files(suite: Suite) -> Vec<PathBuf> {
    let filter = match std::env::var("COMPAT_FILTER") {
        Ok(f) if !f.is_empty() && under_ci() => {
            eprintln!("notice: COMPAT_FILTER is ignored under CI");
            String::new()
        }
        Ok(f) => f,
        Err(_) => String::new(),
    };
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
        Suite::Scenarios | Suite::Departures => {
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
    let departs = src.lines().any(|l| l.starts_with(DEPARTS));
    let flags = match ServerFlags::parse(&src) {
        Ok(f) => f,
        Err(e) => return vec![format!("{name}: {e}")],
    };
    if suite == Suite::Departures {
        if !departs {
            return vec![format!(
                "{name}: a departure must say why on a `{DEPARTS}` line"
            )];
        }
        if update_golden() {
            let server = Server::armada_with(&flags);
            match transcript(suite, path, &server) {
                Err(e) => failures.push(format!("{name} [armada]: {e}")),
                Ok(actual) => {
                    std::fs::write(&golden_path, &actual).expect("write golden");
                    eprintln!("updated {} from Armada: review it", golden_path.display());
                }
            }
            return failures;
        }
    } else if departs {
        return vec![format!(
            "{name}: a `{DEPARTS}` file has no etcd golden: it belongs in departures/"
        )];
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
                "{name} [armada]: transcript differs from the golden (- golden, + armada):\n{}",
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
    let missing = if !etcd_available() {
        Some("/usr/bin/etcd")
    } else if suite == Suite::Etcdctl && !crate::server::etcdctl_available() {
        Some("/usr/bin/etcdctl")
    } else {
        None
    };
    if let Some(missing) = missing.filter(|_| suite != Suite::Departures) {
        assert!(
            allow_missing_etcd(),
            "{missing} is missing: install Debian's etcd-server and etcd-client (the \
             README's test command does), or set COMPAT_ALLOW_MISSING_ETCD=1 outside CI"
        );
        if suite == Suite::Etcdctl {
            eprintln!("notice: {missing} not found; skipping the etcdctl cases");
            return;
        }
        eprintln!("notice: {missing} not found; checking Armada against the goldens only");
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
