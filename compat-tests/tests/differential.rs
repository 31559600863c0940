//! Differential tests: every `scenarios/*.txt` (gRPC DSL) and
//! `etcdctl/*.txt` (etcdctl invocations) file is run against a fresh real
//! etcd, whose transcript must equal the committed `.golden` file
//! (`UPDATE_GOLDEN=1` rewrites it), and then against a fresh Armada, which
//! must reproduce the golden byte for byte; every `departures/*.txt` file
//! (etcd >= 3.5 behaviour 3.4.23 cannot produce) against Armada only. See
//! `compat-tests/README.md`.

use compat_tests::suite::{run_suite, Suite};

#[test]
fn scenarios() {
    run_suite(Suite::Scenarios);
}

#[test]
fn etcdctl_cases() {
    run_suite(Suite::Etcdctl);
}

#[test]
fn departures() {
    run_suite(Suite::Departures);
}
