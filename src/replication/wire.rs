//! Logical commands in their cross-cluster protobuf form. etcd's own request
//! messages travel unchanged, so a follower applies exactly what the
//! leader's clients sent.

use crate::error::{Error, Result};
use crate::kv::command::{Command, ReplicatedEntry};
use crate::pb::replication as pb;

pub(crate) fn to_wire(cmd: &Command) -> pb::Command {
    use pb::command::Command as C;
    let c = match cmd {
        Command::Put(r) => C::Put(r.clone()),
        Command::DeleteRange(r) => C::DeleteRange(r.clone()),
        Command::Txn(r) => C::Txn(r.clone()),
        Command::Compact(r) => C::Compact(*r),
        Command::LeaseGrant(r) => C::LeaseGrant(*r),
        Command::LeaseRevoke(r) => C::LeaseRevoke(*r),
        Command::LeaseCheckpoint(r) => C::LeaseCheckpoint(r.clone()),
        Command::Alarm(r) => C::Alarm(*r),
    };
    pb::Command { command: Some(c) }
}

pub fn from_wire(cmd: pb::Command) -> Result<Command> {
    use pb::command::Command as C;
    match cmd.command {
        Some(C::Put(r)) => Ok(Command::Put(r)),
        Some(C::DeleteRange(r)) => Ok(Command::DeleteRange(r)),
        Some(C::Txn(r)) => Ok(Command::Txn(r)),
        Some(C::Compact(r)) => Ok(Command::Compact(r)),
        Some(C::LeaseGrant(r)) => Ok(Command::LeaseGrant(r)),
        Some(C::LeaseRevoke(r)) => Ok(Command::LeaseRevoke(r)),
        Some(C::LeaseCheckpoint(r)) => Ok(Command::LeaseCheckpoint(r)),
        Some(C::Alarm(r)) => Ok(Command::Alarm(r)),
        None => Err(Error::InvalidInput(
            "replicated command without a request (newer leader?)".into(),
        )),
    }
}

/// One leader log entry's commands, tagged with its leader index.
pub fn entry_to_wire(leader_index: u64, commands: &[Command]) -> pb::Entry {
    pb::Entry {
        leader_index,
        commands: commands.iter().map(to_wire).collect(),
    }
}

pub fn entry_from_wire(entry: pb::Entry) -> Result<ReplicatedEntry> {
    Ok(ReplicatedEntry {
        leader_index: entry.leader_index,
        commands: (entry.commands.into_iter())
            .map(from_wire)
            .collect::<Result<_>>()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::etcdserverpb::{
        AlarmRequest, CompactionRequest, LeaseCheckpoint, LeaseCheckpointRequest,
        LeaseGrantRequest, LeaseRevokeRequest, PutRequest,
    };

    #[test]
    fn commands_round_trip() {
        let cmds = [
            Command::Put(PutRequest {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                lease: 7,
                ..Default::default()
            }),
            Command::Compact(CompactionRequest {
                revision: 3,
                physical: true,
            }),
            Command::LeaseGrant(LeaseGrantRequest { ttl: 60, id: 9 }),
            Command::LeaseRevoke(LeaseRevokeRequest { id: 9 }),
            Command::LeaseCheckpoint(LeaseCheckpointRequest {
                checkpoints: vec![LeaseCheckpoint {
                    id: 9,
                    remaining_ttl: 30,
                }],
            }),
            Command::Alarm(AlarmRequest {
                action: 1,
                member_id: 5,
                alarm: 1,
            }),
        ];
        for cmd in cmds {
            assert_eq!(from_wire(to_wire(&cmd)).unwrap(), cmd);
        }
        assert!(from_wire(pb::Command { command: None }).is_err());
    }
}
