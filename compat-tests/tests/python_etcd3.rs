//! Watch through python-etcd3 (Debian's `python3-etcd3`), the client of
//! most Python etcd users: `python/etcd3_watch.py` runs against a fresh real
//! etcd and a fresh Armada and must print the same lines. The test command
//! installs the package; without it this test fails rather than pass
//! silently.

use std::process::Command;

use compat_tests::server::{etcd_available, workspace_root, Server};
use compat_tests::suite::skip_armada;

/// Debian's interpreter, which is where `python3-etcd3` is installed (a
/// `python3` earlier on PATH may be another one).
const PYTHON: &str = "/usr/bin/python3";

fn run_script(server: &Server) -> String {
    let port = server.endpoint().rsplit(':').next().unwrap().to_string();
    let out = Command::new(PYTHON)
        .arg(workspace_root().join("compat-tests/python/etcd3_watch.py"))
        .arg(port)
        .output()
        .expect("run /usr/bin/python3");
    assert!(
        out.status.success(),
        "etcd3_watch.py against {} failed: {}\n{}",
        server.kind(),
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn python_etcd3_watch_same_on_etcd_and_armada() {
    let importable = Command::new(PYTHON)
        .args(["-c", "import etcd3"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        importable,
        "python3-etcd3 is missing (apt-get install python3-etcd3; scripts/test.sh does)"
    );
    assert!(etcd_available(), "/usr/bin/etcd is missing");
    let etcd = run_script(&Server::etcd());
    assert!(etcd.contains("compacted "), "etcd run incomplete:\n{etcd}");
    if skip_armada() {
        eprintln!("notice: COMPAT_SKIP_ARMADA set; skipping the Armada half");
        return;
    }
    let armada = run_script(&Server::armada());
    assert_eq!(
        etcd, armada,
        "python-etcd3 output differs (left etcd, right Armada)"
    );
}
