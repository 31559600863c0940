//! etcd's alarms as replicated table state (etcd `etcdserver/apply.go`
//! `Alarm`, `applierV3Capped`, `applierV3Corrupt`; `alarm/alarms.go`).
//!
//! An alarm is a `(member, type)` pair raised and cleared through the log,
//! so every member (and every follower cluster) gates the same commands the
//! same way: the decision never depends on a node's own disk.
//! - NOSPACE refuses what can only grow the store: a Put, a Txn with a Put
//!   among its top-level ops, a lease Grant. Deletes, revokes, compaction
//!   and reads still work, so space can be recovered.
//! - CORRUPT refuses every write.
//!
//! As in etcd, the gate is not a function of the raised set: raising the
//! first alarm of a type switches the gate to that type's, and clearing the
//! last NOSPACE or CORRUPT alarm opens it, whatever else is raised (etcd
//! swaps its whole applier; `compat-tests/scenarios/alarm_quirks.txt`).

use serde::{Deserialize, Serialize};

use super::command::Command;
use super::txn::is_read_only;
use crate::error::EtcdError;
use crate::pb::etcdserverpb::{
    alarm_request::AlarmAction, request_op, AlarmMember, AlarmRequest, AlarmResponse, AlarmType,
    TxnRequest,
};

/// Which commands the raised alarms refuse.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Gate {
    #[default]
    Open,
    /// NOSPACE (etcd `applierV3Capped`).
    Capped,
    /// CORRUPT (etcd `applierV3Corrupt`).
    Corrupt,
}

/// A table's alarms: the raised set, sorted by type then member, and the gate.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AlarmState {
    pub raised: Vec<AlarmMember>,
    pub gate: Gate,
}

impl AlarmState {
    fn count(&self, alarm: i32) -> usize {
        self.raised.iter().filter(|a| a.alarm == alarm).count()
    }
}

/// Why the alarms refuse `cmd`, if they do.
pub(crate) fn refuses(state: &AlarmState, cmd: &Command) -> Option<EtcdError> {
    match state.gate {
        Gate::Open => None,
        Gate::Capped => grows(cmd).then_some(EtcdError::NoSpace),
        Gate::Corrupt => {
            let read_only = matches!(cmd, Command::Txn(t) if is_read_only(t));
            let exempt = read_only || matches!(cmd, Command::Alarm(_));
            (!exempt).then_some(EtcdError::Corrupt)
        }
    }
}

/// True for the commands a NOSPACE alarm refuses: those that can only
/// grow the store (etcd's quota cost > 0).
pub(crate) fn grows(cmd: &Command) -> bool {
    match cmd {
        Command::Put(_) | Command::LeaseGrant(_) => true,
        Command::Txn(t) => puts(t),
        _ => false,
    }
}

/// etcd's quota cost of a Txn is that of its top-level Puts (nested txns
/// cost nothing), on either branch.
fn puts(t: &TxnRequest) -> bool {
    t.success
        .iter()
        .chain(&t.failure)
        .any(|op| matches!(op.request, Some(request_op::Request::RequestPut(_))))
}

/// Applies an Alarm request to `state` and returns etcd's response alarms:
/// GET lists those of the type (all for NONE); ACTIVATE returns the alarm
/// (also when already raised); DEACTIVATE returns it if it was raised.
/// etcd 3.4 answers without a header.
pub(crate) fn apply(state: &mut AlarmState, req: &AlarmRequest) -> AlarmResponse {
    let this = AlarmMember {
        member_id: req.member_id,
        alarm: req.alarm,
    };
    let before = state.count(req.alarm);
    let position = state
        .raised
        .iter()
        .position(|a| (a.alarm, a.member_id) == (this.alarm, this.member_id));
    let listed = match AlarmAction::try_from(req.action) {
        Ok(AlarmAction::Get) => state
            .raised
            .iter()
            .filter(|a| req.alarm == AlarmType::None as i32 || a.alarm == req.alarm)
            .copied()
            .collect(),
        Ok(AlarmAction::Activate) if req.alarm != AlarmType::None as i32 => {
            if position.is_none() {
                state.raised.push(this);
                state.raised.sort_by_key(|a| (a.alarm, a.member_id));
            }
            if before == 0 {
                match AlarmType::try_from(req.alarm) {
                    Ok(AlarmType::Nospace) => state.gate = Gate::Capped,
                    Ok(AlarmType::Corrupt) => state.gate = Gate::Corrupt,
                    _ => {}
                }
            }
            vec![this]
        }
        Ok(AlarmAction::Deactivate) => match position {
            Some(i) => {
                let gone = state.raised.remove(i);
                let gates = [AlarmType::Nospace as i32, AlarmType::Corrupt as i32];
                if gates.contains(&req.alarm) && state.count(req.alarm) == 0 {
                    state.gate = Gate::Open;
                }
                vec![gone]
            }
            None => Vec::new(),
        },
        _ => Vec::new(),
    };
    AlarmResponse {
        header: None,
        alarms: listed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::etcdserverpb::{PutRequest, RequestOp};

    fn req(action: AlarmAction, member_id: u64, alarm: AlarmType) -> AlarmRequest {
        AlarmRequest {
            action: action as i32,
            member_id,
            alarm: alarm as i32,
        }
    }

    #[test]
    fn activate_get_deactivate() {
        let mut state = AlarmState::default();
        let set = &mut state;
        let r = apply(set, &req(AlarmAction::Activate, 7, AlarmType::Nospace));
        assert_eq!(r.alarms.len(), 1);
        assert_eq!(set.gate, Gate::Capped);
        apply(set, &req(AlarmAction::Activate, 7, AlarmType::Nospace));
        apply(set, &req(AlarmAction::Activate, 3, AlarmType::Corrupt));
        assert_eq!(set.raised.len(), 2);
        assert_eq!(set.gate, Gate::Corrupt);
        let all = apply(set, &req(AlarmAction::Get, 0, AlarmType::None));
        assert_eq!(all.alarms.len(), 2);
        let nospace = apply(set, &req(AlarmAction::Get, 0, AlarmType::Nospace));
        assert_eq!(nospace.alarms, vec![set.raised[0]]);
        let gone = apply(set, &req(AlarmAction::Deactivate, 9, AlarmType::Nospace));
        assert!(gone.alarms.is_empty());
        // Clearing the last NOSPACE opens the gate, CORRUPT or not (etcd).
        apply(set, &req(AlarmAction::Deactivate, 7, AlarmType::Nospace));
        assert_eq!(set.gate, Gate::Open);
        apply(set, &req(AlarmAction::Deactivate, 3, AlarmType::Corrupt));
        assert!(set.raised.is_empty());
    }

    #[test]
    fn nospace_refuses_only_what_grows() {
        let set = AlarmState {
            raised: vec![AlarmMember {
                member_id: 1,
                alarm: AlarmType::Nospace as i32,
            }],
            gate: Gate::Capped,
        };
        let put = Command::Put(PutRequest::default());
        assert_eq!(refuses(&set, &put), Some(EtcdError::NoSpace));
        let txn_put = TxnRequest {
            failure: vec![RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest::default())),
            }],
            ..Default::default()
        };
        assert_eq!(
            refuses(&set, &Command::Txn(txn_put)),
            Some(EtcdError::NoSpace)
        );
        assert_eq!(refuses(&set, &Command::Txn(TxnRequest::default())), None);
        assert_eq!(refuses(&AlarmState::default(), &put), None);
    }
}
