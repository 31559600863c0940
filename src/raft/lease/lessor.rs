//! The raft leader's view of a table's lease deadlines (the in-memory half of
//! etcd's `lease/lessor.go`; the stored half is `kv::lease`).
//!
//! Only the *primary* (the table's raft leader, once it has applied an entry
//! of its own term) holds deadlines. Every other member knows leases only as
//! stored data and answers keep-alives and TTL questions with
//! [`Lookup::NotPrimary`], so they reach the primary.
//!
//! Invariants:
//! - while primary, every stored lease has exactly one deadline here: the
//!   promotion reads all of them under the same lock that later grants and
//!   revokes (reported after their commit) take, so none is missed;
//! - a deadline never moves earlier than `now + TTL` on a renew, and
//!   promotion gives every lease its full (or checkpointed) TTL plus an
//!   election timeout: a TTL is a minimum (etcd #9395);
//! - an expired lease is handed out once, then re-armed a retry interval
//!   later, so a revoke that never commits is proposed again (etcd #10686);
//!   it is never revived by a renew;
//! - with checkpointing on, a lease whose TTL is longer than the interval
//!   has its remaining TTL checkpointed through the log every interval
//!   (etcd's lease checkpointing), so a new raft leader continues from it
//!   instead of granting the full TTL again; a renew of a checkpointed
//!   lease first clears the checkpoint, or a later leader would expire the
//!   renewed lease early.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::kv::lease::Lease;
use crate::pb::etcdserverpb::LeaseCheckpoint;

/// How long an expired lease waits before its revoke is proposed again.
const RETRY_REVOKE: Duration = Duration::from_secs(7);

/// A lease change applied to the table, reported after its commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseChange {
    Granted {
        id: i64,
        ttl: i64,
    },
    Revoked {
        id: i64,
    },
    /// A checkpoint stored this remaining TTL (0 clears it).
    Checkpointed {
        id: i64,
        remaining: i64,
    },
}

/// What the primary knows of one lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// The granted TTL and the seconds left (truncated, never negative).
    Live { ttl: i64, remaining: i64 },
    /// Unknown, or past its deadline (its revoke is on the way).
    NotFound,
    /// This member is not the primary: ask the table's raft leader.
    NotPrimary,
}

#[derive(Clone, Copy, Debug)]
struct Held {
    ttl: i64,
    deadline: Instant,
    /// Handed out as expired; waiting for its revoke to commit.
    expired: bool,
    /// The stored lease carries a remaining TTL from a checkpoint.
    checkpointed: bool,
    /// When its next checkpoint is due, if it gets checkpoints.
    checkpoint_at: Option<Instant>,
}

#[derive(Default)]
struct Primary {
    leases: HashMap<i64, Held>,
    /// (deadline, id); entries whose deadline no longer matches are stale.
    queue: BinaryHeap<Reverse<(Instant, i64)>>,
    /// (checkpoint due, id); stale likewise.
    checkpoints: BinaryHeap<Reverse<(Instant, i64)>>,
    /// Zero: no checkpoints.
    checkpoint_interval: Duration,
}

impl Primary {
    /// Sets lease `id`'s deadline, and schedules its checkpoints if it
    /// needs them and has none scheduled.
    fn arm(&mut self, id: i64, ttl: i64, deadline: Instant, expired: bool) {
        let before = self.leases.get(&id).copied();
        let mut checkpoint_at = before.and_then(|h| h.checkpoint_at);
        let interval = self.checkpoint_interval;
        if checkpoint_at.is_none() && !interval.is_zero() && secs(ttl) > interval {
            let at = Instant::now() + interval;
            self.checkpoints.push(Reverse((at, id)));
            checkpoint_at = Some(at);
        }
        self.leases.insert(
            id,
            Held {
                ttl,
                deadline,
                expired,
                checkpointed: before.is_some_and(|h| h.checkpointed),
                checkpoint_at,
            },
        );
        self.queue.push(Reverse((deadline, id)));
    }
}

#[derive(Default)]
pub struct Lessor {
    primary: Mutex<Option<Primary>>,
    /// Woken at every promotion, for requests that reached a new raft
    /// leader before its lessor took over.
    promoted: tokio::sync::Notify,
}

fn secs(ttl: i64) -> Duration {
    Duration::from_secs(ttl.max(0) as u64)
}

impl Lessor {
    pub(crate) fn is_primary(&self) -> bool {
        self.primary.lock().unwrap().is_some()
    }

    pub(crate) fn demote(&self) {
        *self.primary.lock().unwrap() = None;
    }

    /// Becomes primary over the leases `read` returns (all of the table's),
    /// each living its TTL (or its checkpointed remaining TTL) from now
    /// plus `extend`, and checkpointed every `checkpoint_interval` (zero:
    /// never). `read` runs under the lessor's lock, so a grant or revoke
    /// that commits after the read is reported to the new primary, and one
    /// before it is in the read.
    pub(crate) fn promote<E>(
        &self,
        extend: Duration,
        checkpoint_interval: Duration,
        read: impl FnOnce() -> Result<Vec<Lease>, E>,
    ) -> Result<(), E> {
        let mut primary = self.primary.lock().unwrap();
        let stored = read()?;
        let now = Instant::now();
        let mut p = Primary {
            checkpoint_interval,
            ..Default::default()
        };
        for l in stored {
            let deadline = now + extend + secs(l.ttl_on_promotion());
            p.arm(l.id, l.ttl, deadline, false);
            if let Some(h) = p.leases.get_mut(&l.id) {
                h.checkpointed = l.remaining_ttl > 0;
            }
        }
        *primary = Some(p);
        drop(primary);
        self.promoted.notify_waiters();
        Ok(())
    }

    /// Waits until this lessor is primary, up to `timeout`; returns whether it is.
    pub(crate) async fn wait_primary(&self, timeout: Duration) -> bool {
        let promoted = self.promoted.notified();
        if self.is_primary() {
            return true;
        }
        let _ = tokio::time::timeout(timeout, promoted).await;
        self.is_primary()
    }

    /// Committed grants and revokes (every member reports them; only the
    /// primary keeps deadlines).
    pub fn applied(&self, changes: &[LeaseChange]) {
        let mut primary = self.primary.lock().unwrap();
        let Some(p) = primary.as_mut() else {
            return;
        };
        let now = Instant::now();
        for c in changes {
            match *c {
                LeaseChange::Granted { id, ttl } => {
                    if !p.leases.contains_key(&id) {
                        p.arm(id, ttl, now + secs(ttl), false);
                    }
                }
                LeaseChange::Revoked { id } => {
                    p.leases.remove(&id);
                }
                LeaseChange::Checkpointed { id, remaining } => {
                    if let Some(h) = p.leases.get_mut(&id) {
                        h.checkpointed = remaining > 0;
                    }
                }
            }
        }
    }

    /// A keep-alive: the lease lives a full TTL from now.
    pub(crate) fn renew(&self, id: i64) -> Lookup {
        let mut primary = self.primary.lock().unwrap();
        let Some(p) = primary.as_mut() else {
            return Lookup::NotPrimary;
        };
        let now = Instant::now();
        match p.leases.get(&id).copied() {
            Some(h) if !h.expired && h.deadline > now => {
                p.arm(id, h.ttl, now + secs(h.ttl), false);
                Lookup::Live {
                    ttl: h.ttl,
                    remaining: h.ttl,
                }
            }
            _ => Lookup::NotFound,
        }
    }

    /// True if lease `id`'s stored checkpoint must be cleared before a
    /// renew takes effect.
    pub fn checkpointed(&self, id: i64) -> bool {
        let primary = self.primary.lock().unwrap();
        primary
            .as_ref()
            .and_then(|p| p.leases.get(&id))
            .is_some_and(|h| h.checkpointed)
    }

    /// The checkpoints due at `now` (at most `max`): each live lease's
    /// remaining TTL in whole seconds, rounded up, if below its TTL. Each is
    /// scheduled again an interval later.
    pub(crate) fn due_checkpoints(&self, now: Instant, max: usize) -> Vec<LeaseCheckpoint> {
        let mut primary = self.primary.lock().unwrap();
        let Some(p) = primary.as_mut() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        while out.len() < max {
            let Some(&Reverse((at, id))) = p.checkpoints.peek() else {
                break;
            };
            if at > now {
                break;
            }
            p.checkpoints.pop();
            let next = now + p.checkpoint_interval;
            let Some(h) = p
                .leases
                .get_mut(&id)
                .filter(|h| h.checkpoint_at == Some(at))
            else {
                continue; // revoked since, or a stale entry
            };
            h.checkpoint_at = Some(next);
            p.checkpoints.push(Reverse((next, id)));
            let left = h.deadline.saturating_duration_since(now);
            let remaining = left.as_secs() as i64 + i64::from(left.subsec_nanos() > 0);
            if !h.expired && remaining > 0 && remaining < h.ttl {
                out.push(LeaseCheckpoint {
                    id,
                    remaining_ttl: remaining,
                });
            }
        }
        out
    }

    pub(crate) fn lookup(&self, id: i64) -> Lookup {
        let primary = self.primary.lock().unwrap();
        let Some(p) = primary.as_ref() else {
            return Lookup::NotPrimary;
        };
        let now = Instant::now();
        match p.leases.get(&id) {
            Some(h) if !h.expired && h.deadline > now => Lookup::Live {
                ttl: h.ttl,
                remaining: h.deadline.saturating_duration_since(now).as_secs() as i64,
            },
            _ => Lookup::NotFound,
        }
    }

    /// Up to `max` leases past their deadline at `now`; each is re-armed
    /// [`RETRY_REVOKE`] later in case its revoke does not commit.
    pub fn expired(&self, now: Instant, max: usize) -> Vec<i64> {
        let mut primary = self.primary.lock().unwrap();
        let Some(p) = primary.as_mut() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        while out.len() < max {
            let Some(&Reverse((deadline, id))) = p.queue.peek() else {
                break;
            };
            if deadline > now {
                break;
            }
            p.queue.pop();
            match p.leases.get(&id) {
                Some(h) if h.deadline == deadline => {
                    let ttl = h.ttl;
                    p.arm(id, ttl, now + RETRY_REVOKE, true);
                    out.push(id);
                }
                _ => {} // renewed or revoked since: a stale queue entry
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(id: i64, ttl: i64) -> Lease {
        Lease {
            id,
            ttl,
            remaining_ttl: 0,
        }
    }

    fn promote(l: &Lessor, stored: Vec<Lease>) {
        l.promote(Duration::ZERO, Duration::ZERO, || Ok::<_, ()>(stored))
            .unwrap();
    }

    #[test]
    fn long_leases_get_checkpoints_and_renews_clear_them() {
        let l = Lessor::default();
        let interval = Duration::from_secs(10);
        let stored = vec![lease(1, 100), lease(2, 5)];
        l.promote(Duration::ZERO, interval, || Ok::<_, ()>(stored))
            .unwrap();
        let now = Instant::now();
        assert!(l.due_checkpoints(now, 10).is_empty());
        // Lease 2's TTL is below the interval: never checkpointed.
        let due = l.due_checkpoints(now + Duration::from_secs(11), 10);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].id, 1);
        assert!((89..=90).contains(&due[0].remaining_ttl), "{due:?}");
        // Once applied, a renew must clear it first.
        assert!(!l.checkpointed(1));
        l.applied(&[LeaseChange::Checkpointed {
            id: 1,
            remaining: due[0].remaining_ttl,
        }]);
        assert!(l.checkpointed(1));
        // Scheduled again one interval later.
        assert!(l
            .due_checkpoints(now + Duration::from_secs(12), 10)
            .is_empty());
        assert_eq!(
            l.due_checkpoints(now + Duration::from_secs(22), 10).len(),
            1
        );
        // A promotion starts from the checkpoint.
        let checkpointed = Lease {
            remaining_ttl: 30,
            ..lease(1, 100)
        };
        l.promote(Duration::ZERO, interval, || Ok::<_, ()>(vec![checkpointed]))
            .unwrap();
        assert!(l.checkpointed(1));
        assert!(matches!(l.lookup(1), Lookup::Live { remaining, .. } if remaining <= 30));
    }

    #[test]
    fn only_the_primary_answers() {
        let l = Lessor::default();
        assert_eq!(l.renew(1), Lookup::NotPrimary);
        promote(&l, vec![lease(1, 10)]);
        assert_eq!(
            l.renew(1),
            Lookup::Live {
                ttl: 10,
                remaining: 10
            }
        );
        assert_eq!(l.renew(2), Lookup::NotFound);
        l.demote();
        assert_eq!(l.lookup(1), Lookup::NotPrimary);
    }

    #[test]
    fn expiry_hands_out_once_then_retries() {
        let l = Lessor::default();
        promote(&l, vec![lease(1, 1), lease(2, 100)]);
        let later = Instant::now() + Duration::from_secs(2);
        assert_eq!(l.expired(later, 10), vec![1]);
        assert!(l.expired(later, 10).is_empty());
        // Never revived by a renew.
        assert_eq!(l.renew(1), Lookup::NotFound);
        assert_eq!(l.expired(later + RETRY_REVOKE, 10), vec![1]);
        l.applied(&[LeaseChange::Revoked { id: 1 }]);
        assert!(l.expired(later + 2 * RETRY_REVOKE, 10).is_empty());
    }

    #[test]
    fn renew_moves_the_deadline() {
        let l = Lessor::default();
        promote(&l, vec![]);
        l.applied(&[LeaseChange::Granted { id: 5, ttl: 3 }]);
        let soon = Instant::now() + Duration::from_secs(2);
        assert!(l.expired(soon, 10).is_empty());
        assert!(matches!(l.renew(5), Lookup::Live { ttl: 3, .. }));
        // The grant's deadline is stale now: the lease is handed out once.
        assert_eq!(
            l.expired(Instant::now() + Duration::from_millis(3100), 10),
            vec![5]
        );
    }
}
