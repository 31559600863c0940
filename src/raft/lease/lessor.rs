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
//!   it is never revived by a renew.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::kv::lease::Lease;

/// How long an expired lease waits before its revoke is proposed again.
const RETRY_REVOKE: Duration = Duration::from_secs(7);

/// A lease change applied to the table, reported after its commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseChange {
    Granted { id: i64, ttl: i64 },
    Revoked { id: i64 },
}

/// What the primary knows of one lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
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
}

#[derive(Default)]
struct Primary {
    leases: HashMap<i64, Held>,
    /// (deadline, id); entries whose deadline no longer matches are stale.
    queue: BinaryHeap<Reverse<(Instant, i64)>>,
}

impl Primary {
    fn arm(&mut self, id: i64, ttl: i64, deadline: Instant, expired: bool) {
        self.leases.insert(
            id,
            Held {
                ttl,
                deadline,
                expired,
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
    pub fn is_primary(&self) -> bool {
        self.primary.lock().unwrap().is_some()
    }

    pub fn demote(&self) {
        *self.primary.lock().unwrap() = None;
    }

    /// Becomes primary over the leases `read` returns (all of the table's),
    /// each living its TTL from now plus `extend`. `read` runs under the
    /// lessor's lock, so a grant or revoke that commits after the read is
    /// reported to the new primary, and one before it is in the read.
    pub fn promote<E>(
        &self,
        extend: Duration,
        read: impl FnOnce() -> Result<Vec<Lease>, E>,
    ) -> Result<(), E> {
        let mut primary = self.primary.lock().unwrap();
        let stored = read()?;
        let now = Instant::now();
        let mut p = Primary::default();
        for l in stored {
            p.arm(
                l.id,
                l.ttl,
                now + extend + secs(l.ttl_on_promotion()),
                false,
            );
        }
        *primary = Some(p);
        drop(primary);
        self.promoted.notify_waiters();
        Ok(())
    }

    /// Waits until this lessor is primary, up to `timeout`; returns whether it is.
    pub async fn wait_primary(&self, timeout: Duration) -> bool {
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
            }
        }
    }

    /// A keep-alive: the lease lives a full TTL from now.
    pub fn renew(&self, id: i64) -> Lookup {
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

    pub fn lookup(&self, id: i64) -> Lookup {
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
        l.promote(Duration::ZERO, || Ok::<_, ()>(stored)).unwrap();
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
