//! Lease, Lock, Election and Alarm through a real Rust client, the
//! `etcd-client` crate: the same script runs against a fresh real etcd and
//! a fresh Armada. Each run checks the essentials itself and records a
//! normalized log of every response (headers reduced to their revision),
//! and the two logs must be equal. A failed check, an unexpected error or a
//! wait over 10 s aborts that section with a log line (so that a missing
//! feature shows up in the diff, and the later sections still run); the
//! etcd run must not abort.
//!
//! Normalization: lease ids chosen by the server print as `L1`, `L2`, ...
//! in order of first appearance (ids the script chooses print in hex), also
//! inside lock / election keys (`<name>/<lease id in hex>`); a remaining TTL
//! prints as `ttl=ok` after checking `0 < ttl <= granted`; the member id of
//! an alarm prints as `self` when it is the server's own; lists whose order
//! etcd leaves unspecified (leases, keys of a lease) are sorted. The Alarm
//! response's header is not logged (etcd 3.4.23 sends none, 3.5 does).
//! `COMPAT_SKIP_ARMADA=1` runs the etcd half only.

use std::collections::HashMap;
use std::time::Duration;

use compat_tests::server::Server;
use compat_tests::suite::{diff, require_etcd, skip_armada};
use etcd_client::{
    AlarmAction, AlarmOptions, AlarmType, Client, Error, EventType, GetOptions, LeaderKey,
    LeaseGrantOptions, LeaseTimeToLiveOptions, LockOptions, ProclaimOptions, PutOptions,
    ResignOptions, WatchOptions, WatchStream,
};
use tokio::task::JoinHandle;

/// Upper bound for one awaited event (a watch event, a lock or campaign
/// that must have been granted, an observation).
const WAIT: Duration = Duration::from_secs(10);

/// Ids chosen by the script (printed as they are).
const FIXED_ID: i64 = 0x1234;
const UNKNOWN_ID: i64 = 0x999;

/// The normalized log of one run and the lease labels.
#[derive(Default)]
struct Log {
    lines: Vec<String>,
    labels: HashMap<i64, usize>,
}

impl Log {
    fn push(&mut self, line: String) {
        self.lines.push(line);
    }

    /// `L<n>` for a server-chosen lease id, hex for the script's own ids,
    /// `0` for none.
    fn lease(&mut self, id: i64) -> String {
        if id == 0 || id == FIXED_ID || id == UNKNOWN_ID {
            return format!("{id:#x}");
        }
        let n = self.labels.len() + 1;
        format!("L{}", self.labels.entry(id).or_insert(n))
    }

    /// A key, with a trailing `/<hex lease id>` (lock and election keys)
    /// replaced by the lease's label.
    fn key(&mut self, key: &[u8]) -> String {
        let k = String::from_utf8_lossy(key).into_owned();
        if let Some((name, hex)) = k.rsplit_once('/') {
            if let Ok(id) = i64::from_str_radix(hex, 16) {
                if !hex.is_empty() && hex.len() <= 16 {
                    return format!("{name}/{}", self.lease(id));
                }
            }
        }
        k
    }

    fn kv(&mut self, kv: &etcd_client::KeyValue) -> String {
        format!(
            "{}={} c={} m={} v={} lease={}",
            self.key(kv.key()),
            String::from_utf8_lossy(kv.value()),
            kv.create_revision(),
            kv.mod_revision(),
            kv.version(),
            self.lease(kv.lease())
        )
    }

    fn leader_key(&mut self, k: &LeaderKey) -> String {
        format!(
            "name={} key={} rev={} lease={}",
            String::from_utf8_lossy(k.name()),
            self.key(k.key()),
            k.rev(),
            self.lease(k.lease())
        )
    }

    fn err(&mut self, label: &str, e: Error) {
        let text = match e {
            Error::GRpcStatus(s) => format!("{:?} {:?}", s.code(), s.message()),
            other => format!("client error: {other}"),
        };
        self.push(format!("{label}: error {text}"));
    }
}

fn rev(h: Option<&etcd_client::ResponseHeader>) -> i64 {
    h.map_or(-1, |h| h.revision())
}

/// A section's result: an unexpected error or timeout aborts the section
/// (logged, so that a server lacking a feature shows up in the log diff
/// instead of a panic hiding the rest).
type R<T> = Result<T, String>;

trait Ctx<T> {
    fn ctx(self, what: &str) -> R<T>;
}

impl<T, E: std::fmt::Display> Ctx<T> for Result<T, E> {
    fn ctx(self, what: &str) -> R<T> {
        self.map_err(|e| format!("{what}: {e}"))
    }
}

impl<T> Ctx<T> for Option<T> {
    fn ctx(self, what: &str) -> R<T> {
        self.ok_or_else(|| format!("{what}: missing"))
    }
}

/// Fails the section unless `cond` holds.
fn check(cond: bool, what: &str) -> R<()> {
    if cond {
        Ok(())
    } else {
        Err(format!("check failed: {what}"))
    }
}

/// `f` within [`WAIT`].
async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> R<T> {
    tokio::time::timeout(WAIT, f)
        .await
        .map_err(|_| format!("{what}: nothing within {WAIT:?}"))
}

/// The store's current revision.
async fn current_rev(c: &mut Client) -> R<i64> {
    let r = c.get("no-such-key", None).await.ctx("get")?;
    Ok(rev(r.header()))
}

/// The next event of a watch (created responses skipped), logged.
async fn next_event(log: &mut Log, label: &str, s: &mut WatchStream) -> R<(EventType, Vec<u8>)> {
    loop {
        let r = within(label, s.message())
            .await?
            .ctx(label)?
            .ctx(&format!("{label}: watch stream"))?;
        if let Some(e) = r.events().first() {
            check(
                r.events().len() == 1,
                &format!("{label}: one event per response"),
            )?;
            let kv = e.kv().ctx("event kv")?;
            let text = log.kv(kv);
            log.push(format!(
                "{label}: watch rev={} {:?} {text}",
                rev(r.header()),
                e.event_type()
            ));
            return Ok((e.event_type(), kv.key().to_vec()));
        }
    }
}

/// A watch on `prefix` from `start` (its created response consumed).
async fn watch_from(c: &mut Client, prefix: &str, start: i64) -> R<WatchStream> {
    let opts = WatchOptions::new().with_prefix().with_start_revision(start);
    let mut s = c.watch(prefix, Some(opts)).await.ctx("watch")?;
    let created = within("watch created", s.message())
        .await?
        .ctx("watch created")?
        .ctx("watch stream")?;
    check(created.created(), "watch created")?;
    Ok(s)
}

/// Awaits a spawned call that must finish now.
async fn join<T>(label: &str, h: JoinHandle<T>) -> R<T> {
    within(label, h).await?.ctx(label)
}

async fn ttl(c: &mut Client, log: &mut Log, label: &str, id: i64, keys: bool) {
    let opts = keys.then(|| LeaseTimeToLiveOptions::new().with_keys());
    match c.lease_time_to_live(id, opts).await {
        Ok(r) => {
            let t = if r.granted_ttl() > 0 {
                if 0 < r.ttl() && r.ttl() <= r.granted_ttl() {
                    "ok".to_string()
                } else {
                    format!("{} (not in (0, granted])", r.ttl())
                }
            } else {
                r.ttl().to_string()
            };
            let mut keys: Vec<String> = r.keys().iter().map(|k| log.key(k)).collect();
            keys.sort();
            let id = log.lease(r.id());
            log.push(format!(
                "{label}: ttl rev={} id={id} ttl={t} granted={} keys={keys:?}",
                rev(r.header()),
                r.granted_ttl()
            ));
        }
        Err(e) => log.err(label, e),
    }
}

async fn leases(c: &mut Client, log: &mut Log, label: &str) -> R<()> {
    let r = c.leases().await.ctx("leases")?;
    let mut ids: Vec<String> = r.leases().iter().map(|l| log.lease(l.id())).collect();
    ids.sort();
    log.push(format!("{label}: leases rev={} {ids:?}", rev(r.header())));
    Ok(())
}

async fn grant(c: &mut Client, log: &mut Log, label: &str, ttl: i64, id: i64) -> Option<i64> {
    let opts = (id != 0).then(|| LeaseGrantOptions::new().with_id(id));
    match c.lease_grant(ttl, opts).await {
        Ok(r) => {
            let id = log.lease(r.id());
            log.push(format!(
                "{label}: grant rev={} id={id} ttl={} error={:?}",
                rev(r.header()),
                r.ttl(),
                r.error()
            ));
            Some(r.id())
        }
        Err(e) => {
            log.err(label, e);
            None
        }
    }
}

async fn put(c: &mut Client, log: &mut Log, key: &str, lease: i64) {
    let label = format!("put {key}");
    match c
        .put(key, "v", Some(PutOptions::new().with_lease(lease)))
        .await
    {
        Ok(r) => log.push(format!("{label}: rev={}", rev(r.header()))),
        Err(e) => log.err(&label, e),
    }
}

async fn get_all(c: &mut Client, log: &mut Log, label: &str) -> R<()> {
    let r = c
        .get("", Some(GetOptions::new().with_all_keys()))
        .await
        .ctx("get all")?;
    let kvs: Vec<String> = r.kvs().iter().map(|kv| log.kv(kv)).collect();
    log.push(format!("{label}: get rev={} {kvs:?}", rev(r.header())));
    Ok(())
}

/// Grant (server-chosen and fixed ids), errors, keys attached to leases,
/// time-to-live, list, keep-alive stream, revoke, expiry.
async fn lease_section(c: &mut Client, log: &mut Log) -> R<()> {
    let l1 = grant(c, log, "grant", 60, 0).await.ctx("grant")?;
    grant(c, log, "grant fixed id", 30, FIXED_ID).await;
    grant(c, log, "grant existing id", 10, FIXED_ID).await;
    grant(c, log, "grant too large", 9_000_000_001, 0).await;

    put(c, log, "a", l1).await;
    put(c, log, "b", l1).await;
    put(c, log, "c", FIXED_ID).await;
    put(c, log, "x", UNKNOWN_ID).await;
    get_all(c, log, "attached").await?;
    ttl(c, log, "ttl keys", l1, true).await;
    ttl(c, log, "ttl", l1, false).await;
    ttl(c, log, "ttl fixed", FIXED_ID, true).await;
    ttl(c, log, "ttl unknown", UNKNOWN_ID, true).await;
    leases(c, log, "list").await?;

    // Keep-alive: the client consumes the first response itself; each
    // further request is answered with the full granted TTL.
    let (mut keeper, mut stream) = c.lease_keep_alive(l1).await.ctx("keep alive")?;
    check(keeper.id() == l1, "keeper id")?;
    for i in 0..3 {
        keeper.keep_alive().await.ctx("send keep-alive")?;
        let r = within("keep-alive", stream.message())
            .await?
            .ctx("keep-alive response")?
            .ctx("keep-alive stream")?;
        let id = log.lease(r.id());
        log.push(format!(
            "keepalive {i}: rev={} id={id} ttl={}",
            rev(r.header()),
            r.ttl()
        ));
    }
    match c.lease_keep_alive(UNKNOWN_ID).await {
        Ok(_) => log.push("keepalive unknown: ok".into()),
        Err(e) => log.err("keepalive unknown", e),
    }

    // Revoke deletes the attached keys (one revision).
    let r = c.lease_revoke(l1).await.ctx("revoke")?;
    log.push(format!("revoke: rev={}", rev(r.header())));
    get_all(c, log, "after revoke").await?;
    // The open keep-alive stream now answers TTL 0.
    keeper.keep_alive().await.ctx("send keep-alive")?;
    let r = within("keep-alive", stream.message())
        .await?
        .ctx("keep-alive response")?
        .ctx("keep-alive stream")?;
    let id = log.lease(r.id());
    log.push(format!("keepalive revoked: id={id} ttl={}", r.ttl()));
    match c.lease_revoke(l1).await {
        Ok(r) => log.push(format!("revoke again: rev={}", rev(r.header()))),
        Err(e) => log.err("revoke again", e),
    }
    put(c, log, "d", l1).await;
    ttl(c, log, "ttl revoked", l1, true).await;
    leases(c, log, "list after revoke").await?;

    // Expiry: a TTL below the minimum is raised to it (2 s); the key goes
    // when the lease expires.
    let short = grant(c, log, "grant short", 1, 0).await.ctx("grant")?;
    put(c, log, "e", short).await;
    let from = current_rev(c).await? + 1;
    let mut w = watch_from(c, "e", from).await?;
    let (t, _) = next_event(log, "expired", &mut w).await?;
    check(t == EventType::Delete, "expiry deletes the key")?;
    ttl(c, log, "ttl expired", short, false).await;

    let r = c.lease_revoke(FIXED_ID).await.ctx("revoke fixed")?;
    log.push(format!("revoke fixed: rev={}", rev(r.header())));
    get_all(c, log, "lease section end").await
}

async fn lock(c: &mut Client, log: &mut Log, label: &str, name: &str, lease: i64) -> R<Vec<u8>> {
    let r = c
        .lock(name, Some(LockOptions::new().with_lease(lease)))
        .await
        .ctx(label)?;
    let key = log.key(r.key());
    log.push(format!("{label}: rev={} key={key}", rev(r.header())));
    Ok(r.key().to_vec())
}

async fn unlock(c: &mut Client, log: &mut Log, label: &str, key: &[u8]) {
    match c.unlock(key).await {
        Ok(r) => log.push(format!("{label}: rev={}", rev(r.header()))),
        Err(e) => log.err(label, e),
    }
}

/// Starts `lock(name, lease)` on a clone of `c` and waits (through a watch
/// from `from`) until its key is put, i.e. it is queued behind the holder.
async fn queued_lock(
    c: &mut Client,
    log: &mut Log,
    name: &str,
    lease: i64,
    from: i64,
) -> R<JoinHandle<Result<etcd_client::LockResponse, Error>>> {
    let mut w = watch_from(c, &format!("{name}/"), from).await?;
    let mut c2 = c.clone();
    let n = name.to_string();
    let h =
        tokio::spawn(async move { c2.lock(n, Some(LockOptions::new().with_lease(lease))).await });
    let (t, _) = next_event(log, "queued", &mut w).await?;
    check(t == EventType::Put, "the waiter puts its key")?;
    check(!h.is_finished(), "the second locker must wait")?;
    Ok(h)
}

/// Lock / Unlock: re-lock with the same lease, a waiter that gets the lock
/// on unlock and on revoke of the holder's lease, lease 0, errors.
async fn lock_section(c: &mut Client, log: &mut Log) -> R<()> {
    let k1 = grant(c, log, "lock grant", 60, 0).await.ctx("grant")?;
    let k2 = grant(c, log, "lock grant", 60, 0).await.ctx("grant")?;
    let held = lock(c, log, "lock", "mylock", k1).await?;
    lock(c, log, "lock same lease", "mylock", k1).await?;
    get_all(c, log, "locked").await?;
    let from = current_rev(c).await? + 1;
    let h = queued_lock(c, log, "mylock", k2, from).await?;
    unlock(c, log, "unlock", &held).await;
    let r = join("second locker", h).await?.ctx("second lock")?;
    let key2 = log.key(r.key());
    log.push(format!("second lock: rev={} key={key2}", rev(r.header())));
    unlock(c, log, "unlock second", r.key()).await;
    unlock(c, log, "unlock missing", b"mylock/none").await;

    // Revoking the holder's lease releases the lock.
    lock(c, log, "lock l2", "l2", k1).await?;
    let from = current_rev(c).await? + 1;
    let h = queued_lock(c, log, "l2", k2, from).await?;
    let r = c.lease_revoke(k1).await.ctx("revoke holder")?;
    log.push(format!("revoke holder: rev={}", rev(r.header())));
    let r = join("l2 waiter", h).await?.ctx("l2 waiter")?;
    let key = log.key(r.key());
    log.push(format!("l2 waiter: rev={} key={key}", rev(r.header())));
    unlock(c, log, "unlock l2", r.key()).await;

    // Lease 0: the server grants a session lease itself (60 s).
    let k = lock(c, log, "lock lease 0", "l3", 0).await?;
    let hex = String::from_utf8_lossy(&k)
        .rsplit_once('/')
        .ctx("lock key")?
        .1
        .to_string();
    let session = i64::from_str_radix(&hex, 16).ctx("hex lease in the key")?;
    ttl(c, log, "lock session lease", session, true).await;
    unlock(c, log, "unlock l3", &k).await;
    c.lease_revoke(session).await.ctx("revoke session lease")?;

    match c
        .lock("l4", Some(LockOptions::new().with_lease(UNKNOWN_ID)))
        .await
    {
        Ok(r) => {
            let key = log.key(r.key());
            log.push(format!(
                "lock unknown lease: rev={} key={key}",
                rev(r.header())
            ));
        }
        Err(e) => log.err("lock unknown lease", e),
    }
    c.lease_revoke(k2).await.ctx("revoke k2")?;
    get_all(c, log, "lock section end").await
}

async fn next_observed(log: &mut Log, label: &str, s: &mut etcd_client::ObserveStream) -> R<()> {
    let r = within(label, s.message())
        .await?
        .ctx(label)?
        .ctx(&format!("{label}: observe stream"))?;
    let kv = r.kv().map(|kv| log.kv(kv));
    log.push(format!("{label}: observe rev={} {kv:?}", rev(r.header())));
    Ok(())
}

async fn leader(c: &mut Client, log: &mut Log, label: &str) {
    match c.leader("el").await {
        Ok(r) => {
            let kv = r.kv().map(|kv| log.kv(kv));
            log.push(format!("{label}: leader rev={} {kv:?}", rev(r.header())));
        }
        Err(e) => log.err(label, e),
    }
}

async fn proclaim(c: &mut Client, log: &mut Log, label: &str, value: &str, key: &LeaderKey) {
    let opts = ProclaimOptions::new().with_leader(key.clone());
    match c.proclaim(value, Some(opts)).await {
        Ok(r) => log.push(format!("{label}: rev={}", rev(r.header()))),
        Err(e) => log.err(label, e),
    }
}

async fn resign(c: &mut Client, log: &mut Log, label: &str, key: &LeaderKey) {
    let opts = ResignOptions::new().with_leader(key.clone());
    match c.resign(Some(opts)).await {
        Ok(r) => log.push(format!("{label}: rev={}", rev(r.header()))),
        Err(e) => log.err(label, e),
    }
}

/// Campaign, Leader, Observe, Proclaim, a second candidate elected on
/// Resign, errors.
async fn election_section(c: &mut Client, log: &mut Log) -> R<()> {
    let e1 = grant(c, log, "elect grant", 60, 0).await.ctx("grant")?;
    let e2 = grant(c, log, "elect grant", 60, 0).await.ctx("grant")?;
    leader(c, log, "no leader").await;

    let r = c.campaign("el", "v1", e1).await.ctx("campaign")?;
    let first = r.leader().ctx("leader key")?.clone();
    let text = log.leader_key(&first);
    log.push(format!("campaign: rev={} {text}", rev(r.header())));
    leader(c, log, "leader").await;
    // (grpc-go sends the Observe stream's headers with its first message,
    // so the call returns once there is a leader to report.)
    let mut obs = c.observe("el").await.ctx("observe")?;
    next_observed(log, "observed first", &mut obs).await?;
    proclaim(c, log, "proclaim", "v2", &first).await;
    next_observed(log, "observed proclaim", &mut obs).await?;

    // A second candidate waits behind the leader.
    let from = current_rev(c).await? + 1;
    let mut w = watch_from(c, "el/", from).await?;
    let mut c2 = c.clone();
    let h = tokio::spawn(async move { c2.campaign("el", "w1", e2).await });
    let (t, _) = next_event(log, "candidate", &mut w).await?;
    check(t == EventType::Put, "the candidate puts its key")?;
    check(!h.is_finished(), "the second candidate must wait")?;
    leader(c, log, "leader while waiting").await;

    resign(c, log, "resign", &first).await;
    let r = join("second campaign", h).await?.ctx("second campaign")?;
    let second = r.leader().ctx("leader key")?.clone();
    let text = log.leader_key(&second);
    log.push(format!("second campaign: rev={} {text}", rev(r.header())));
    next_observed(log, "observed hand-over", &mut obs).await?;
    leader(c, log, "new leader").await;

    proclaim(c, log, "proclaim old leader", "v3", &first).await;
    proclaim(c, log, "proclaim new leader", "w2", &second).await;
    next_observed(log, "observed new proclaim", &mut obs).await?;
    resign(c, log, "resign old again", &first).await;
    // Campaigning again with the leader's lease is a no-op re-election.
    let r = c.campaign("el", "w3", e2).await.ctx("campaign again")?;
    let text = log.leader_key(r.leader().ctx("leader key")?);
    log.push(format!("campaign again: rev={} {text}", rev(r.header())));
    next_observed(log, "observed re-campaign", &mut obs).await?;
    resign(c, log, "resign new", &second).await;
    leader(c, log, "after resign").await;
    drop(obs);

    match c.campaign("el2", "x", UNKNOWN_ID).await {
        Ok(r) => {
            let text = r.leader().map(|k| log.leader_key(k));
            log.push(format!(
                "campaign unknown lease: rev={} {text:?}",
                rev(r.header())
            ));
        }
        Err(e) => log.err("campaign unknown lease", e),
    }
    c.lease_revoke(e1).await.ctx("revoke e1")?;
    c.lease_revoke(e2).await.ctx("revoke e2")?;
    get_all(c, log, "election section end").await
}

async fn alarms(c: &mut Client, log: &mut Log, label: &str, action: AlarmAction, member: u64) {
    let mut opts = AlarmOptions::new();
    opts.with_member(member);
    let alarm = match action {
        AlarmAction::Get => AlarmType::None,
        _ => AlarmType::Nospace,
    };
    match c.alarm(action, alarm, Some(opts)).await {
        Ok(r) => {
            let list: Vec<String> = r
                .alarms()
                .iter()
                .map(|a| {
                    let who = if a.member_id() == member && member != 0 {
                        "self".to_string()
                    } else {
                        a.member_id().to_string()
                    };
                    format!("{who}:{:?}", a.alarm())
                })
                .collect();
            log.push(format!("{label}: {list:?}"));
        }
        Err(e) => log.err(label, e),
    }
}

/// Alarm: list, activate NOSPACE (writes refused), deactivate.
async fn alarm_section(c: &mut Client, log: &mut Log) -> R<()> {
    let me = c
        .status()
        .await
        .ctx("status")?
        .header()
        .ctx("status header")?
        .member_id();
    alarms(c, log, "alarm list", AlarmAction::Get, 0).await;
    alarms(c, log, "alarm deactivate none", AlarmAction::Deactivate, me).await;
    alarms(c, log, "alarm activate", AlarmAction::Activate, me).await;
    alarms(c, log, "alarm list active", AlarmAction::Get, me).await;
    put(c, log, "nospace", 0).await;
    grant(c, log, "grant under nospace", 60, 0).await;
    get_all(c, log, "read under nospace").await?;
    alarms(c, log, "alarm deactivate", AlarmAction::Deactivate, me).await;
    alarms(c, log, "alarm list after", AlarmAction::Get, me).await;
    put(c, log, "space", 0).await;
    Ok(())
}

/// The whole script against one fresh server; returns its log.
async fn exercise(server: &Server) -> Vec<String> {
    let ep = server.endpoint();
    let mut c = Client::connect([ep.as_str()], None)
        .await
        .unwrap_or_else(|e| panic!("{}: connect: {e}", server.kind()));
    let mut log = Log::default();
    if let Err(e) = lease_section(&mut c, &mut log).await {
        log.push(format!("lease section aborted: {e}"));
    }
    if let Err(e) = lock_section(&mut c, &mut log).await {
        log.push(format!("lock section aborted: {e}"));
    }
    if let Err(e) = election_section(&mut c, &mut log).await {
        log.push(format!("election section aborted: {e}"));
    }
    if let Err(e) = alarm_section(&mut c, &mut log).await {
        log.push(format!("alarm section aborted: {e}"));
    }
    log.lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_lock_election_alarm_same_on_etcd_and_armada() {
    let etcd = if require_etcd() {
        let log = exercise(&Server::etcd()).await;
        eprintln!("etcd log:\n{}", log.join("\n"));
        assert!(
            !log.iter().any(|l| l.contains(" aborted: ")),
            "the script must run to the end against etcd"
        );
        Some(log)
    } else {
        None
    };
    if skip_armada() {
        eprintln!("notice: COMPAT_SKIP_ARMADA set; skipping the Armada half");
        return;
    }
    let armada = exercise(&Server::armada()).await;
    if let Some(etcd) = etcd {
        let (etcd, armada) = (etcd.join("\n"), armada.join("\n"));
        assert!(
            etcd == armada,
            "normalized logs differ (- etcd, + Armada):\n{}",
            diff(&etcd, &armada)
        );
    }
}
