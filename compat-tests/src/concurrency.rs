//! Executes the Lock and Election commands ([`crate::lock_cmd`]).
//!
//! Output lines:
//!
//! ```text
//! lock rev=R key="lk/10"
//! unlock rev=R
//! election-campaign rev=R leader={name="e" key="e/10" rev=C lease=0x10}
//! election-proclaim rev=R  /  election-resign rev=R
//! election-leader rev=R         + "  <kv>"
//! election-observe rev=R        + "  <kv>"   (one per Observe response)
//! ```
//!
//! A foreground `lock`/`campaign` waits at most [`WAIT`] for its answer. A
//! background one (`@bg`) is started in its own task; the command returns
//! once the call's own key exists in the store (`<name>/<hex of lease>`;
//! for lease 0, any key under `<name>/` created after the command began,
//! whose lease is then bound to the next `$N` at once), so that the next
//! command is ordered after the call's first write.
//! `await @bg` waits at most [`WAIT`] for its answer and prints it; `cancel
//! @bg` drops the call (the server sees the RPC cancelled).
//!
//! With lease 0 the server grants a session lease; its id (the key suffix of
//! a lock, `leader.lease` of a campaign) is bound to the next `$N` alias
//! ([`crate::names`]). Observe streams work like watch streams:
//! `election recv` waits at most [`WAIT`] for exactly n more responses.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::dsl::prefix_end;
use crate::lock_cmd::{ConcCmd, KeySpec, LeaderSpec};
use crate::names::{lease_hex, Names};
use crate::pb::etcdserverpb::{kv_client::KvClient, RangeRequest};
use crate::pb::v3electionpb::{
    election_client::ElectionClient, CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest,
    LeaderResponse, ProclaimRequest, ResignRequest,
};
use crate::pb::v3lockpb::{lock_client::LockClient, LockRequest, LockResponse, UnlockRequest};
use crate::render::{self, push, quote, rev};

/// How long a blocking call, `await`, `election recv` and the start of a
/// background call wait.
pub const WAIT: Duration = Duration::from_secs(10);

/// The answer of a (possibly blocking) Lock or Campaign call.
enum Outcome {
    Lock(LockResponse),
    Campaign(CampaignResponse),
}

/// A call running in the background.
struct Bg {
    task: JoinHandle<Result<Outcome, tonic::Status>>,
    /// Whether the call asked for lease 0 (a server-granted session lease).
    lease0: bool,
}

/// What an Observe stream's task reports.
enum Item {
    Response(LeaderResponse),
    Error(tonic::Status),
    End,
}

/// One open Observe stream.
struct Observer {
    items: UnboundedReceiver<Item>,
    task: JoinHandle<()>,
    ended: bool,
}

/// The Lock/Election state of one scenario run.
pub struct Concurrency {
    /// Channel with a per-request timeout (non-blocking calls, polling).
    unary: Channel,
    /// Channel without one (blocking calls, Observe streams).
    streaming: Channel,
    bg: HashMap<String, Bg>,
    observers: HashMap<String, Observer>,
    /// (election name, lease id) -> leader revision of its last campaign.
    campaigns: HashMap<(Vec<u8>, i64), i64>,
}

impl Drop for Concurrency {
    fn drop(&mut self) {
        for b in self.bg.values() {
            b.task.abort();
        }
        for o in self.observers.values() {
            o.task.abort();
        }
    }
}

impl Concurrency {
    /// State over the two channels of a run (see the field docs).
    pub fn new(unary: Channel, streaming: Channel) -> Self {
        Self {
            unary,
            streaming,
            bg: HashMap::new(),
            observers: HashMap::new(),
            campaigns: HashMap::new(),
        }
    }

    /// Runs one command, appending its transcript lines to `out`.
    pub async fn run(&mut self, cmd: &ConcCmd, names: &mut Names, out: &mut Vec<String>) {
        let res = self.exec(cmd, names, out).await;
        match res {
            Ok(()) => {}
            Err(Fail::Status(s)) => render::error(out, &s),
            Err(Fail::Harness(e)) => out.push(format!("error: {e}")),
        }
    }

    async fn exec(
        &mut self,
        cmd: &ConcCmd,
        names: &mut Names,
        out: &mut Vec<String>,
    ) -> Result<(), Fail> {
        let mut election = ElectionClient::new(self.unary.clone());
        match cmd {
            ConcCmd::Lock { bg, name, lease } => {
                let req = LockRequest {
                    name: name.clone(),
                    lease: names.resolve(*lease)?,
                };
                let mut client = LockClient::new(self.streaming.clone());
                let fut = async move {
                    client
                        .lock(req)
                        .await
                        .map(|r| Outcome::Lock(r.into_inner()))
                };
                let lease = names.resolve(*lease)?;
                self.call(bg, name, lease, fut, names, out).await
            }
            ConcCmd::Campaign {
                bg,
                name,
                lease,
                value,
            } => {
                let req = CampaignRequest {
                    name: name.clone(),
                    lease: names.resolve(*lease)?,
                    value: value.clone(),
                };
                let mut client = ElectionClient::new(self.streaming.clone());
                let fut = async move {
                    client
                        .campaign(req)
                        .await
                        .map(|r| Outcome::Campaign(r.into_inner()))
                };
                let lease = names.resolve(*lease)?;
                self.call(bg, name, lease, fut, names, out).await
            }
            ConcCmd::Unlock { key } => {
                let key = match key {
                    KeySpec::Raw(k) => k.clone(),
                    KeySpec::Lease { name, lease } => own_key(name, names.resolve(*lease)?),
                };
                let r = LockClient::new(self.unary.clone())
                    .unlock(UnlockRequest { key })
                    .await?;
                push(out, 0, format!("unlock {}", rev(&r.get_ref().header)));
                Ok(())
            }
            ConcCmd::Proclaim { leader, value } => {
                let req = ProclaimRequest {
                    leader: self.leader_key(leader, names)?,
                    value: value.clone(),
                };
                let r = election.proclaim(req).await?;
                push(
                    out,
                    0,
                    format!("election-proclaim {}", rev(&r.get_ref().header)),
                );
                Ok(())
            }
            ConcCmd::Resign { leader } => {
                let req = ResignRequest {
                    leader: self.leader_key(leader, names)?,
                };
                let r = election.resign(req).await?;
                push(
                    out,
                    0,
                    format!("election-resign {}", rev(&r.get_ref().header)),
                );
                Ok(())
            }
            ConcCmd::Leader { name } => {
                let r = election
                    .leader(LeaderRequest { name: name.clone() })
                    .await?;
                leader_response(names, out, "election-leader", r.get_ref());
                Ok(())
            }
            ConcCmd::Observe { stream, name } => self.observe(stream, name),
            ConcCmd::Recv { stream, n } => self.recv(stream, *n, names, out).await,
            ConcCmd::Close { stream } => {
                let o = self
                    .observers
                    .remove(stream)
                    .ok_or_else(|| not_open(stream))?;
                o.task.abort();
                Ok(())
            }
            ConcCmd::Await { bg } => self.await_bg(bg, names, out).await,
            ConcCmd::Cancel { bg } => {
                let b = self.bg.remove(bg).ok_or_else(|| no_call(bg))?;
                b.task.abort();
                Ok(())
            }
        }
    }

    /// Runs a Lock/Campaign call in the foreground, or starts it in the
    /// background and waits until its key exists.
    async fn call(
        &mut self,
        bg: &Option<String>,
        name: &[u8],
        lease: i64,
        fut: impl std::future::Future<Output = Result<Outcome, tonic::Status>> + Send + 'static,
        names: &mut Names,
        out: &mut Vec<String>,
    ) -> Result<(), Fail> {
        let Some(bg) = bg else {
            let outcome = tokio::time::timeout(WAIT, fut)
                .await
                .map_err(|_| Fail::Harness(format!("timed out after {WAIT:?}")))??;
            self.render(&outcome, lease == 0, names, out);
            return Ok(());
        };
        if self.bg.contains_key(bg) {
            return Err(Fail::Harness(format!("@{bg} is already running")));
        }
        let prefix = [name, b"/"].concat();
        // For lease 0 the key is unknown: wait for any new key under prefix.
        let after = match lease {
            0 => Some(self.current_revision(&prefix).await?),
            _ => None,
        };
        let task = tokio::spawn(fut);
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            // One more look after the call finished: a lease-0 key to bind.
            let finished = task.is_finished();
            let req = match after {
                Some(r) => RangeRequest {
                    range_end: prefix_end(&prefix),
                    key: prefix.clone(),
                    min_create_revision: r + 1,
                    limit: 1,
                    ..Default::default()
                },
                None => RangeRequest {
                    key: own_key(name, lease),
                    ..Default::default()
                },
            };
            let r = KvClient::new(self.unary.clone()).range(req).await?;
            if let Some(kv) = r.get_ref().kvs.first() {
                if lease == 0 {
                    names.bind_auto(kv.lease);
                }
                break;
            }
            if finished {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                task.abort();
                return Err(Fail::Harness(format!(
                    "timed out after {WAIT:?} waiting for the key of @{bg}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let b = Bg {
            task,
            lease0: lease == 0,
        };
        self.bg.insert(bg.clone(), b);
        Ok(())
    }

    async fn current_revision(&self, key: &[u8]) -> Result<i64, Fail> {
        let r = KvClient::new(self.unary.clone())
            .range(RangeRequest {
                key: key.to_vec(),
                count_only: true,
                ..Default::default()
            })
            .await?;
        Ok(r.get_ref().header.as_ref().map_or(0, |h| h.revision))
    }

    async fn await_bg(
        &mut self,
        name: &str,
        names: &mut Names,
        out: &mut Vec<String>,
    ) -> Result<(), Fail> {
        let b = self.bg.get_mut(name).ok_or_else(|| no_call(name))?;
        let joined = tokio::time::timeout(WAIT, &mut b.task)
            .await
            .map_err(|_| Fail::Harness(format!("timed out after {WAIT:?} waiting for @{name}")))?;
        let b = self.bg.remove(name).expect("present");
        let outcome = joined.map_err(|e| Fail::Harness(format!("@{name} failed: {e}")))??;
        self.render(&outcome, b.lease0, names, out);
        Ok(())
    }

    /// Renders a Lock/Campaign answer, binding a server-granted session
    /// lease and remembering a campaign's leader revision.
    fn render(
        &mut self,
        outcome: &Outcome,
        lease0: bool,
        names: &mut Names,
        out: &mut Vec<String>,
    ) {
        match outcome {
            Outcome::Lock(r) => {
                if lease0 {
                    if let Some(id) = key_lease(&r.key) {
                        names.bind_auto(id);
                    }
                }
                push(
                    out,
                    0,
                    format!("lock {} key={}", rev(&r.header), names.key(&r.key)),
                );
            }
            Outcome::Campaign(r) => {
                let leader = match &r.leader {
                    Some(l) => {
                        if lease0 {
                            names.bind_auto(l.lease);
                        }
                        self.campaigns.insert((l.name.clone(), l.lease), l.rev);
                        format!(
                            "{{name={} key={} rev={} lease={}}}",
                            quote(&l.name),
                            names.key(&l.key),
                            l.rev,
                            names.lease(l.lease)
                        )
                    }
                    None => "<none>".to_string(),
                };
                push(
                    out,
                    0,
                    format!("election-campaign {} leader={leader}", rev(&r.header)),
                );
            }
        }
    }

    /// Builds the LeaderKey of a proclaim/resign.
    fn leader_key(
        &self,
        spec: &Option<LeaderSpec>,
        names: &Names,
    ) -> Result<Option<LeaderKey>, Fail> {
        let Some(s) = spec else { return Ok(None) };
        let lease = names.resolve(s.lease)?;
        let rev = match s.rev {
            Some(r) => r,
            None => *self
                .campaigns
                .get(&(s.name.clone(), lease))
                .ok_or_else(|| {
                    Fail::Harness("no campaign of this name and lease yet: give rev=N".into())
                })?,
        };
        Ok(Some(LeaderKey {
            name: s.name.clone(),
            key: s.key.clone().unwrap_or_else(|| own_key(&s.name, lease)),
            rev,
            lease,
        }))
    }

    fn observe(&mut self, stream: &str, name: &[u8]) -> Result<(), Fail> {
        if self.observers.contains_key(stream) {
            return Err(Fail::Harness(format!("stream {stream} is already open")));
        }
        let (tx, items) = unbounded_channel();
        let client = ElectionClient::new(self.streaming.clone());
        let req = LeaderRequest {
            name: name.to_vec(),
        };
        let task = tokio::spawn(pump(client, req, tx));
        let o = Observer {
            items,
            task,
            ended: false,
        };
        self.observers.insert(stream.to_string(), o);
        Ok(())
    }

    async fn recv(
        &mut self,
        stream: &str,
        n: usize,
        names: &Names,
        out: &mut Vec<String>,
    ) -> Result<(), Fail> {
        let o = self
            .observers
            .get_mut(stream)
            .ok_or_else(|| not_open(stream))?;
        let deadline = tokio::time::Instant::now() + WAIT;
        for i in 0..n {
            if o.ended {
                return Err(Fail::Harness("stream has ended".into()));
            }
            let item = tokio::time::timeout_at(deadline, o.items.recv())
                .await
                .map_err(|_| {
                    Fail::Harness(format!(
                        "timed out after {WAIT:?} waiting for observe response {} of {n}",
                        i + 1
                    ))
                })?;
            match item {
                Some(Item::Response(r)) => leader_response(names, out, "election-observe", &r),
                Some(Item::Error(s)) => {
                    o.ended = true;
                    return Err(Fail::Status(s));
                }
                Some(Item::End) | None => {
                    o.ended = true;
                    out.push("stream ended".to_string());
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

/// A failed command: an RPC error (rendered like any response error) or a
/// harness-side problem (`error: <text>`).
enum Fail {
    Status(tonic::Status),
    Harness(String),
}

impl From<tonic::Status> for Fail {
    fn from(s: tonic::Status) -> Self {
        Fail::Status(s)
    }
}

impl From<String> for Fail {
    fn from(s: String) -> Self {
        Fail::Harness(s)
    }
}

fn not_open(stream: &str) -> Fail {
    Fail::Harness(format!("stream {stream} is not open"))
}

fn no_call(name: &str) -> Fail {
    Fail::Harness(format!("no background call @{name}"))
}

/// The key Lock/Campaign create for `lease`: `<name>/<hex of lease>`.
fn own_key(name: &[u8], lease: i64) -> Vec<u8> {
    [name, b"/", lease_hex(lease).as_bytes()].concat()
}

/// The lease id encoded in the last segment of a lock key.
fn key_lease(key: &[u8]) -> Option<i64> {
    let slash = key.iter().rposition(|&b| b == b'/')?;
    let hex = std::str::from_utf8(&key[slash + 1..]).ok()?;
    u64::from_str_radix(hex, 16).ok().map(|v| v as i64)
}

/// `<what> rev=R` and the kv on the next line.
fn leader_response(names: &Names, out: &mut Vec<String>, what: &str, r: &LeaderResponse) {
    push(out, 0, format!("{what} {}", rev(&r.header)));
    let kv =
        r.kv.as_ref()
            .map_or("<no kv>".to_string(), |k| render::kv(names, k));
    push(out, 1, kv);
}

/// The task running one Observe RPC: forwards every response, then the
/// error or end of stream.
async fn pump(mut client: ElectionClient<Channel>, req: LeaderRequest, tx: UnboundedSender<Item>) {
    let mut responses = match client.observe(req).await {
        Ok(r) => r.into_inner(),
        Err(status) => {
            let _ = tx.send(Item::Error(status));
            return;
        }
    };
    loop {
        let item = match responses.message().await {
            Ok(Some(r)) => Item::Response(r),
            Ok(None) => Item::End,
            Err(status) => Item::Error(status),
        };
        let last = !matches!(item, Item::Response(_));
        if tx.send(item).is_err() || last {
            return;
        }
    }
}
