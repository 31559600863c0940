//! Watch through a real Rust client, the `etcd-client` crate: the same
//! script runs against a fresh real etcd and a fresh Armada (both with a
//! 200ms progress-notify interval); each run asserts the essentials itself
//! and records a normalized log of every watch response it saw (headers
//! reduced to their revision), and the two logs must be equal.

use std::time::Duration;

use compat_tests::flags::ServerFlags;
use compat_tests::server::Server;
use compat_tests::suite::{require_etcd, skip_armada};
use etcd_client::{Client, WatchOptions, WatchResponse, WatchStream};

/// Upper bound for one expected watch response.
const RECV_TIMEOUT: Duration = Duration::from_secs(10);

/// The log of one run: one line per watch response (plus its events).
#[derive(Default)]
struct Log(Vec<String>);

impl Log {
    /// Records `r` under `label` and returns it.
    fn record(&mut self, label: &str, r: WatchResponse) -> WatchResponse {
        let rev = r.header().map_or(-1, |h| h.revision());
        self.0.push(format!(
            "{label}: id={} rev={rev} created={} canceled={} compact={} reason={:?} events={}",
            r.watch_id(),
            r.created(),
            r.canceled(),
            r.compact_revision(),
            r.cancel_reason(),
            r.events().len()
        ));
        for e in r.events() {
            let kv = e.kv().map_or("-".to_string(), kv_text);
            let prev = e.prev_kv().map_or("-".to_string(), kv_text);
            self.0
                .push(format!("  {:?} {kv} prev {prev}", e.event_type()));
        }
        r
    }
}

fn kv_text(kv: &etcd_client::KeyValue) -> String {
    format!(
        "{}={} c={} m={} v={}",
        String::from_utf8_lossy(kv.key()),
        String::from_utf8_lossy(kv.value()),
        kv.create_revision(),
        kv.mod_revision(),
        kv.version()
    )
}

/// The next response of `s`, recorded; panics on error, end or timeout.
async fn next(log: &mut Log, label: &str, s: &mut WatchStream) -> WatchResponse {
    let r = tokio::time::timeout(RECV_TIMEOUT, s.message())
        .await
        .unwrap_or_else(|_| panic!("{label}: no watch response within {RECV_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("{label}: watch error {e}"))
        .unwrap_or_else(|| panic!("{label}: watch stream ended"));
    log.record(label, r)
}

/// Requests progress and expects the reply (watch_id -1, no events) to be
/// the next response: nothing else was pending on the stream.
async fn expect_quiet(log: &mut Log, label: &str, s: &mut WatchStream) -> i64 {
    s.request_progress().await.expect("request progress");
    let r = next(log, label, s).await;
    assert_eq!(
        (r.watch_id(), r.created(), r.events().len()),
        (-1, false, 0),
        "{label}: expected only the progress reply"
    );
    r.header().expect("progress header").revision()
}

/// Prefix watch from "now", events, prev_kv, cancel.
async fn prefix_and_cancel(c: &mut Client, log: &mut Log) {
    let opts = WatchOptions::new().with_prefix().with_prev_key();
    let mut s = c.watch("p/", Some(opts)).await.expect("watch p/");
    let created = next(log, "prefix", &mut s).await;
    assert!(created.created());
    let id = created.watch_id();
    c.put("p/a", "1", None).await.expect("put");
    c.put("p/a", "2", None).await.expect("put");
    c.delete("p/a", None).await.expect("delete");
    c.put("q", "x", None).await.expect("put outside the prefix");
    for _ in 0..3 {
        let r = next(log, "prefix", &mut s).await;
        assert_eq!((r.watch_id(), r.events().len()), (id, 1));
    }
    let rev = expect_quiet(log, "prefix quiet", &mut s).await;
    assert_eq!(rev, 5, "the progress reply carries the current revision");
    s.cancel(id).await.expect("cancel");
    let r = next(log, "prefix cancel", &mut s).await;
    assert!(r.canceled() && r.watch_id() == id);
    // A second watcher on the same stream keeps it answering progress.
    s.watch("never", None).await.expect("second watcher");
    next(log, "prefix second", &mut s).await;
    c.put("p/b", "1", None).await.expect("put after cancel");
    expect_quiet(log, "prefix after cancel", &mut s).await;
}

/// A start revision in the past: created, then the history in one response.
async fn history(c: &mut Client, log: &mut Log) {
    let opts = WatchOptions::new().with_start_revision(2).with_prev_key();
    let mut s = c.watch("p/a", Some(opts)).await.expect("watch history");
    assert!(next(log, "history", &mut s).await.created());
    let r = next(log, "history", &mut s).await;
    assert_eq!(r.events().len(), 3, "puts at 2 and 3, delete at 4");
    assert_eq!(
        r.header().unwrap().revision(),
        6,
        "header = current revision"
    );
    expect_quiet(log, "history quiet", &mut s).await;
}

/// Timed progress notifications (200ms interval) on an idle watcher.
async fn progress_notify(c: &mut Client, log: &mut Log) {
    let opts = WatchOptions::new().with_progress_notify();
    let mut s = c.watch("idle", Some(opts)).await.expect("watch idle");
    let id = next(log, "notify", &mut s).await.watch_id();
    for _ in 0..2 {
        let r = next(log, "notify", &mut s).await;
        assert_eq!(
            (r.watch_id(), r.created(), r.events().len()),
            (id, false, 0)
        );
        assert_eq!(r.header().unwrap().revision(), 6);
    }
}

/// A watcher starting below the compact revision is canceled with it.
async fn compacted(c: &mut Client, log: &mut Log) {
    c.compact(5, None).await.expect("compact");
    let opts = WatchOptions::new().with_start_revision(3);
    let mut s = c
        .watch("p/", Some(opts.with_prefix()))
        .await
        .expect("watch");
    assert!(next(log, "compacted", &mut s).await.created());
    let r = next(log, "compacted", &mut s).await;
    assert!(r.canceled(), "canceled after compaction");
    assert_eq!(r.compact_revision(), 5);
    // The stream stays usable: a client-chosen id on a new watcher.
    let opts = WatchOptions::new().with_start_revision(5).with_watch_id(7);
    s.watch("p/b", Some(opts))
        .await
        .expect("watch at compact rev");
    let r = next(log, "at compact rev", &mut s).await;
    assert_eq!((r.watch_id(), r.created()), (7, true));
    let r = next(log, "at compact rev", &mut s).await;
    assert_eq!((r.watch_id(), r.events().len()), (7, 1), "p/b put at 6");
    expect_quiet(log, "compacted quiet", &mut s).await;
}

/// The whole script against one fresh server; returns its log.
async fn exercise(server: &Server) -> Vec<String> {
    let ep = server.endpoint();
    let mut c = Client::connect([ep.as_str()], None)
        .await
        .unwrap_or_else(|e| panic!("{}: connect: {e}", server.kind()));
    let mut log = Log::default();
    prefix_and_cancel(&mut c, &mut log).await;
    history(&mut c, &mut log).await;
    progress_notify(&mut c, &mut log).await;
    compacted(&mut c, &mut log).await;
    log.0
}

fn flags() -> ServerFlags {
    ServerFlags {
        progress_notify: Some("200ms".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_same_on_etcd_and_armada() {
    let etcd = if require_etcd() {
        Some(exercise(&Server::etcd_with(&flags())).await)
    } else {
        None
    };
    if skip_armada() {
        eprintln!("notice: COMPAT_SKIP_ARMADA set; skipping the Armada half");
        return;
    }
    let armada = exercise(&Server::armada_with(&flags())).await;
    if let Some(etcd) = etcd {
        assert_eq!(
            etcd.join("\n"),
            armada.join("\n"),
            "normalized watch logs differ (left etcd, right Armada)"
        );
    }
}
