//! What a reconcile does, decided without doing it: from the catalogue
//! (the incarnation each table should be at), the incarnations this node
//! runs, and the incoming ones (a recovery another node seeded, opened and
//! waiting for the seed's snapshot), a list of [`Action`]s in the order
//! they must run. The registry executes them; this module has no I/O.
//!
//! Rules:
//! - an incoming incarnation no longer wanted is dropped; one that applied
//!   its seed's snapshot takes over from the running one (promoted);
//! - a running table the catalogue no longer lists is stopped;
//! - a wanted incarnation neither running nor incoming is opened: it is
//!   initialized unless another node seeded it, and it waits as incoming
//!   (the old incarnation serving meanwhile) when another node seeded it
//!   and an older incarnation runs here.

use std::collections::BTreeMap;

use super::keyspace::Incarnation;
use crate::raft::NodeId;

/// One step of a reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Stop and forget an incoming incarnation the catalogue moved past.
    DropIncoming { table: String, epoch: u64 },
    /// An incoming incarnation that has its seed replaces the running one.
    Promote { table: String, epoch: u64 },
    /// Stop a table the catalogue no longer lists.
    Stop { table: String, epoch: u64 },
    /// Open an incarnation (`initialize`: create its first state; else it
    /// waits for a seed's snapshot), as the running one or, with
    /// `incoming`, beside it until it has its seed.
    Open {
        table: String,
        epoch: u64,
        initialize: bool,
        incoming: bool,
    },
}

/// An incoming incarnation, and whether it applied its seed's snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Incoming {
    pub(crate) epoch: u64,
    pub(crate) seeded: bool,
}

/// The actions that bring this node (`me`) from `running` and `incoming`
/// to `want`, in order.
pub(crate) fn plan(
    want: &BTreeMap<String, Incarnation>,
    running: &BTreeMap<String, u64>,
    incoming: &BTreeMap<String, Incoming>,
    me: NodeId,
) -> Vec<Action> {
    let mut actions = Vec::new();
    let mut running = running.clone();
    let mut waiting = BTreeMap::new();
    for (table, inc) in incoming {
        let (table, epoch) = (table.clone(), inc.epoch);
        if want.get(&table).map(|w| w.epoch) != Some(epoch) {
            actions.push(Action::DropIncoming { table, epoch });
        } else if inc.seeded {
            running.insert(table.clone(), epoch);
            actions.push(Action::Promote { table, epoch });
        } else {
            waiting.insert(table, epoch);
        }
    }
    for (table, &epoch) in &running {
        if !want.contains_key(table) {
            actions.push(Action::Stop {
                table: table.clone(),
                epoch,
            });
        }
    }
    running.retain(|table, _| want.contains_key(table));
    for (table, inc) in want {
        let runs = running.get(table).copied();
        if runs == Some(inc.epoch) || waiting.get(table) == Some(&inc.epoch) {
            continue;
        }
        let seeded_elsewhere = inc.seed.is_some_and(|s| s != me);
        actions.push(Action::Open {
            table: table.clone(),
            epoch: inc.epoch,
            initialize: inc.seed.is_none(),
            incoming: runs.is_some() && seeded_elsewhere,
        });
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: NodeId = 1;

    fn inc(epoch: u64, seed: Option<NodeId>) -> Incarnation {
        Incarnation { epoch, seed }
    }

    fn stop(table: &str, epoch: u64) -> Action {
        let table = table.into();
        Action::Stop { table, epoch }
    }

    fn promote(table: &str, epoch: u64) -> Action {
        let table = table.into();
        Action::Promote { table, epoch }
    }

    fn drop_incoming(table: &str, epoch: u64) -> Action {
        let table = table.into();
        Action::DropIncoming { table, epoch }
    }

    fn waiting(epoch: u64, seeded: bool) -> Incoming {
        Incoming { epoch, seeded }
    }

    fn open(table: &str, epoch: u64, initialize: bool, incoming: bool) -> Action {
        Action::Open {
            table: table.into(),
            epoch,
            initialize,
            incoming,
        }
    }

    /// (what the case is, want, running, incoming, the plan)
    type Case = (
        &'static str,
        Vec<(&'static str, Incarnation)>,
        Vec<(&'static str, u64)>,
        Vec<(&'static str, Incoming)>,
        Vec<Action>,
    );

    #[test]
    fn plans() {
        let cases: Vec<Case> = vec![
            (
                "nothing to do",
                vec![("t", inc(5, None))],
                vec![("t", 5)],
                vec![],
                vec![],
            ),
            (
                "a new table is opened and initialized",
                vec![("t", inc(5, None))],
                vec![],
                vec![],
                vec![open("t", 5, true, false)],
            ),
            (
                "a deleted table is stopped",
                vec![],
                vec![("t", 5)],
                vec![],
                vec![stop("t", 5)],
            ),
            (
                "a re-created table: the new incarnation replaces the old",
                vec![("t", inc(6, None))],
                vec![("t", 5)],
                vec![],
                vec![open("t", 6, true, false)],
            ),
            (
                "seeded here: opened from the seed, replacing the old one",
                vec![("t", inc(6, Some(ME)))],
                vec![("t", 5)],
                vec![],
                vec![open("t", 6, false, false)],
            ),
            (
                "seeded elsewhere: opened beside the old one until it has its seed",
                vec![("t", inc(6, Some(2)))],
                vec![("t", 5)],
                vec![],
                vec![open("t", 6, false, true)],
            ),
            (
                "seeded elsewhere, nothing running here: opened as the running one",
                vec![("t", inc(6, Some(2)))],
                vec![],
                vec![],
                vec![open("t", 6, false, false)],
            ),
            (
                "an incoming incarnation still waiting is left alone",
                vec![("t", inc(6, Some(2)))],
                vec![("t", 5)],
                vec![("t", waiting(6, false))],
                vec![],
            ),
            (
                "an incoming incarnation with its seed is promoted",
                vec![("t", inc(6, Some(2)))],
                vec![("t", 5)],
                vec![("t", waiting(6, true))],
                vec![promote("t", 6)],
            ),
            (
                "an incoming incarnation the catalogue moved past is dropped, the new one opened",
                vec![("t", inc(7, None))],
                vec![("t", 5)],
                vec![("t", waiting(6, true))],
                vec![drop_incoming("t", 6), open("t", 7, true, false)],
            ),
            (
                "a deleted table's incoming incarnation is dropped and the table stopped",
                vec![],
                vec![("t", 5)],
                vec![("t", waiting(6, false))],
                vec![drop_incoming("t", 6), stop("t", 5)],
            ),
        ];
        for (what, want, running, incoming, expected) in cases {
            let want = want.into_iter().map(|(t, i)| (t.to_string(), i)).collect();
            let running = running
                .into_iter()
                .map(|(t, e)| (t.to_string(), e))
                .collect();
            let incoming = incoming
                .into_iter()
                .map(|(t, i)| (t.to_string(), i))
                .collect();
            assert_eq!(plan(&want, &running, &incoming, ME), expected, "{what}");
        }
    }
}
