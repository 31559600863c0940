//! REST endpoints: `/healthz` and `/readyz` (the default table's group has a
//! raft leader and its storage answers a read), `/metrics` (Prometheus text
//! format, gathered from the groups at scrape time) and
//! `/replication/status` (JSON, per table).

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use prometheus::{Encoder, GaugeVec, IntCounterVec, Opts, Registry, TextEncoder};

use super::Node;
use crate::error::{Error, Result};
use crate::kv::MvccRead;
use crate::replication::status::leader_indexes;

/// Serves the endpoints until `shutdown`. A client gets `read_timeout` to
/// send a request's headers (`--rest.read-timeout`, Regatta's: a client
/// that trickles them is cut off instead of holding a connection forever).
pub async fn serve(
    mut listener: crate::tls::Incoming,
    node: Arc<Node>,
    read_timeout: std::time::Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    use axum::serve::Listener;
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    let app = Router::new()
        .route("/healthz", get(health))
        .route("/readyz", get(health))
        .route("/metrics", get(metrics))
        .route("/replication/status", get(replication_status))
        .with_state(node);
    let mut http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(read_timeout);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            (io, _) = listener.accept() => {
                let service = TowerToHyperService::new(app.clone());
                let conn = http.serve_connection_with_upgrades(TokioIo::new(io), service);
                let conn = graceful.watch(conn.into_owned());
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!("REST connection: {e}");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    graceful.shutdown().await;
    Ok(())
}

async fn health(State(node): State<Arc<Node>>) -> (StatusCode, String) {
    let ctx = &node.ctx;
    let group = match ctx.registry.get(&ctx.default_table).await {
        Ok(g) => g,
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    if !group.has_leader() {
        return (StatusCode::SERVICE_UNAVAILABLE, "no raft leader\n".into());
    }
    match group.read(false, |r| Ok(r.revision_state()?.current)).await {
        Ok(rev) => (StatusCode::OK, format!("ok revision={rev}\n")),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("storage: {e}\n")),
    }
}

/// Per table: on a follower cluster each worker's state (ArangoDB's
/// `applier.state()` fields), on a leader cluster the last index a follower
/// can pull.
async fn replication_status(State(node): State<Arc<Node>>) -> (StatusCode, String) {
    let doc = match &node.follower {
        Some(f) => serde_json::json!({
            "role": "follower",
            "tables": f.status(),
            // The leader cluster it follows, and why reconciling failed.
            "cluster": node.ctx.registry.followed_cluster().await.ok().flatten(),
            "last_error": f.reconcile_error(),
        }),
        None => {
            let tables: serde_json::Map<_, _> = (leader_indexes(&node.ctx.registry).await)
                .into_iter()
                .map(|(table, index)| (table, serde_json::json!({ "last_index": index })))
                .collect();
            let cluster = node.ctx.registry.cluster_id().await.ok();
            serde_json::json!({ "role": "leader", "tables": tables, "cluster": cluster })
        }
    };
    (StatusCode::OK, format!("{doc:#}\n"))
}

async fn metrics(State(node): State<Arc<Node>>) -> (StatusCode, String) {
    match render(&node).await {
        Ok(text) => (StatusCode::OK, text),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn render(node: &Node) -> Result<String> {
    let registry = Registry::new();
    let gauge_with = |name: &str, help: &str, labels: &[&str]| -> Result<GaugeVec> {
        let g = GaugeVec::new(Opts::new(name, help), labels)
            .map_err(|e| Error::Internal(e.to_string()))?;
        registry
            .register(Box::new(g.clone()))
            .map_err(|e| Error::Internal(e.to_string()))?;
        Ok(g)
    };
    let gauge = |name: &str, help: &str| gauge_with(name, help, &["table"]);
    let revision = gauge("armada_table_revision", "The table's etcd store revision.")?;
    let compacted = gauge(
        "armada_table_compact_revision",
        "The table's last compaction revision.",
    )?;
    let term = gauge(
        "armada_raft_term",
        "Current raft term of the table's group.",
    )?;
    let is_leader = gauge(
        "armada_raft_is_leader",
        "1 if this node is the raft leader of the table's group.",
    )?;
    let last_log = gauge(
        "armada_raft_last_log_index",
        "Last raft log index of the table's group.",
    )?;
    let applied = gauge(
        "armada_raft_applied_index",
        "Last applied raft log index of the table's group.",
    )?;
    let db_size = gauge("armada_db_size_bytes", "Bytes of the table's LMDB files.")?;
    let db_in_use = gauge(
        "armada_db_size_in_use_bytes",
        "Bytes of the table's LMDB pages in use.",
    )?;
    let no_space = gauge(
        "armada_alarm_nospace",
        "1 if the table's NOSPACE alarm is raised.",
    )?;
    for group in node.ctx.registry.groups().await {
        let t = [group.table.as_str()];
        let st = group.status().await;
        let revs = group.read(false, |r| r.revision_state()).await?;
        revision.with_label_values(&t).set(revs.current as f64);
        compacted.with_label_values(&t).set(revs.compacted as f64);
        term.with_label_values(&t).set(st.term as f64);
        is_leader
            .with_label_values(&t)
            .set(f64::from(u8::from(st.leader == Some(group.node_id))));
        last_log.with_label_values(&t).set(st.last_log_index as f64);
        applied.with_label_values(&t).set(st.applied_index as f64);
        db_size.with_label_values(&t).set(st.db_size as f64);
        db_in_use
            .with_label_values(&t)
            .set(st.db_size_in_use as f64);
        no_space.with_label_values(&t).set(f64::from(u8::from(
            group
                .alarms()
                .await?
                .iter()
                .any(|a| a.alarm == crate::pb::etcdserverpb::AlarmType::Nospace as i32),
        )));
    }
    let failed = gauge(
        "armada_table_open_failed",
        "1 for a table whose group failed to open on this node (see the log).",
    )?;
    for table in node.ctx.registry.failed_tables().keys() {
        failed.with_label_values(&[table.as_str()]).set(1.0);
    }
    let index = gauge_with(
        "armada_replication_index",
        "Leader index: the last one available (role=leader) or applied (role=follower).",
        &["role", "table"],
    )?;
    match &node.follower {
        None => {
            for (table, last) in leader_indexes(&node.ctx.registry).await {
                index
                    .with_label_values(&["leader", &table])
                    .set(last as f64);
            }
        }
        Some(f) => {
            let leased = gauge(
                "armada_replication_leased",
                "1 if this node holds the table's replication lease.",
            )?;
            let lag = gauge(
                "armada_replication_lag_entries",
                "Leader log entries not yet applied here.",
            )?;
            let lag_seconds = gauge(
                "armada_replication_lag_seconds",
                "Seconds since the table was last caught up with the leader (0 while caught up).",
            )?;
            for (table, st) in f.status() {
                let t = [table.as_str()];
                index
                    .with_label_values(&["follower", &table])
                    .set(st.last_applied_index as f64);
                leased
                    .with_label_values(&t)
                    .set(f64::from(u8::from(st.leased)));
                lag.with_label_values(&t).set(st.lag_entries as f64);
                lag_seconds.with_label_values(&t).set(st.lag_seconds);
            }
        }
    }
    watch_metrics(&registry, node)?;
    lease_metrics(&registry, node).await?;
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut out)
        .map_err(|e| Error::Internal(e.to_string()))?;
    String::from_utf8(out).map_err(|e| Error::Internal(e.to_string()))
}

/// Per-table lease counters and the API's keep-alive latency and lock
/// waiters.
async fn lease_metrics(registry: &Registry, node: &Node) -> Result<()> {
    let internal = |e: prometheus::Error| Error::Internal(e.to_string());
    let counter = |name: &str, help: &str| -> Result<IntCounterVec> {
        let c = IntCounterVec::new(Opts::new(name, help), &["table"]).map_err(internal)?;
        registry.register(Box::new(c.clone())).map_err(internal)?;
        Ok(c)
    };
    let granted = counter("armada_lease_granted_total", "Leases granted (applied).")?;
    let revoked = counter(
        "armada_lease_revoked_total",
        "Leases revoked (applied), expired ones included.",
    )?;
    let expired = counter(
        "armada_lease_expired_total",
        "Revokes this node proposed as raft leader for expired leases.",
    )?;
    for group in node.ctx.registry.groups().await {
        let t = [group.table.as_str()];
        let c = group.lease_counts();
        granted
            .with_label_values(&t)
            .inc_by(c.granted.load(Ordering::Relaxed));
        revoked
            .with_label_values(&t)
            .inc_by(c.revoked.load(Ordering::Relaxed));
        expired
            .with_label_values(&t)
            .inc_by(c.expired.load(Ordering::Relaxed));
    }
    let m = &node.ctx.metrics;
    registry
        .register(Box::new(m.keepalive_seconds.clone()))
        .map_err(internal)?;
    registry
        .register(Box::new(m.lock_waiters.clone()))
        .map_err(internal)?;
    Ok(())
}

/// Per-table watch numbers (etcd's `etcd_debugging_mvcc_watcher_total`,
/// `..._watch_stream_total`, `..._slow_watcher_total`, `..._events_total`).
fn watch_metrics(registry: &Registry, node: &Node) -> Result<()> {
    let internal = |e: prometheus::Error| Error::Internal(e.to_string());
    let gauge = |name: &str, help: &str| -> Result<GaugeVec> {
        let g = GaugeVec::new(Opts::new(name, help), &["table"]).map_err(internal)?;
        registry.register(Box::new(g.clone())).map_err(internal)?;
        Ok(g)
    };
    let counter = |name: &str, help: &str| -> Result<IntCounterVec> {
        let c = IntCounterVec::new(Opts::new(name, help), &["table"]).map_err(internal)?;
        registry.register(Box::new(c.clone())).map_err(internal)?;
        Ok(c)
    };
    let watchers = gauge("armada_watch_watchers", "Watchers on the table.")?;
    let streams = gauge("armada_watch_streams", "Watch streams on the table.")?;
    let unsynced = gauge(
        "armada_watch_unsynced_watchers",
        "Watchers catching up from history (new in the past, or slow).",
    )?;
    let events = counter(
        "armada_watch_events_sent_total",
        "Events handed to watch streams.",
    )?;
    let slow = counter(
        "armada_watch_slow_watchers_total",
        "Times a watcher fell behind because its stream was full.",
    )?;
    for hub in node.ctx.registry.watch_hubs() {
        let t = [hub.table.as_str()];
        let c = hub.counts();
        watchers.with_label_values(&t).set(c.watchers as f64);
        streams.with_label_values(&t).set(c.streams as f64);
        unsynced.with_label_values(&t).set(c.unsynced as f64);
        events.with_label_values(&t).inc_by(c.events_sent);
        slow.with_label_values(&t).inc_by(c.slow_watchers);
    }
    Ok(())
}
