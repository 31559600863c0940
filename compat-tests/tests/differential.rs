//! Differential tests: every `scenarios/*.txt` (gRPC DSL) and
//! `etcdctl/*.txt` (etcdctl invocations) file is run against a fresh real
//! etcd, whose transcript must equal the committed `.golden` file
//! (`UPDATE_GOLDEN=1` rewrites it), and then against a fresh Armada, which
//! must reproduce the golden byte for byte. See `compat-tests/README.md`.

use compat_tests::suite::{run_suite, Suite};

#[test]
fn scenarios() {
    run_suite(Suite::Scenarios);
}

#[test]
fn etcdctl_cases() {
    run_suite(Suite::Etcdctl);
}
