//! python-etcd3 (Debian's `python3-etcd3`), the client of most Python etcd
//! users: `python/etcd3_watch.py` (Watch) and `python/etcd3_lease.py`
//! (leases and python-etcd3's lock recipe) run against a fresh real etcd
//! and a fresh Armada and must print the same lines. The test command
//! installs the package; without it these tests fail rather than pass
//! silently. `COMPAT_SKIP_ARMADA=1` runs the etcd half only.

use std::process::Command;

use compat_tests::server::{etcd_available, workspace_root, Server};
use compat_tests::suite::skip_armada;

/// Debian's interpreter, which is where `python3-etcd3` is installed (a
/// `python3` earlier on PATH may be another one).
const PYTHON: &str = "/usr/bin/python3";

fn run_script(script: &str, server: &Server) -> String {
    let port = server.endpoint().rsplit(':').next().unwrap().to_string();
    let out = Command::new(PYTHON)
        .arg(workspace_root().join("compat-tests/python").join(script))
        .arg(port)
        .output()
        .expect("run /usr/bin/python3");
    assert!(
        out.status.success(),
        "{script} against {} failed: {}\n{}",
        server.kind(),
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `script` against etcd, then (unless skipped) Armada; the printed
/// lines must be equal. `complete` must occur in etcd's output.
fn same_on_etcd_and_armada(script: &str, complete: &str) {
    let importable = Command::new(PYTHON)
        .args(["-c", "import etcd3"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        importable,
        "python3-etcd3 is missing (apt-get install python3-etcd3; scripts/test.sh does)"
    );
    assert!(etcd_available(), "/usr/bin/etcd is missing");
    let etcd = run_script(script, &Server::etcd());
    assert!(etcd.contains(complete), "etcd run incomplete:\n{etcd}");
    if skip_armada() {
        eprintln!("notice: COMPAT_SKIP_ARMADA set; skipping the Armada half");
        return;
    }
    let armada = run_script(script, &Server::armada());
    assert_eq!(
        etcd, armada,
        "python-etcd3 {script} output differs (left etcd, right Armada)"
    );
}

#[test]
fn python_etcd3_watch_same_on_etcd_and_armada() {
    same_on_etcd_and_armada("etcd3_watch.py", "compacted ");
}

#[test]
fn python_etcd3_lease_same_on_etcd_and_armada() {
    same_on_etcd_and_armada("etcd3_lease.py", "\nend ");
}
