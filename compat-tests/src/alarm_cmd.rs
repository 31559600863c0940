//! The `alarm ...` command of the scenario DSL (Maintenance.Alarm):
//!
//! ```text
//! alarm get [none|nospace|corrupt] [member=self|N]         # type default none (= all)
//! alarm activate|deactivate <none|nospace|corrupt> [member=self|N]   # member default self
//! ```
//!
//! `member=self` sends the member id of the server under test, taken from
//! the header of a Maintenance.Status call (made once per run). The
//! response prints as `alarm alarms=[NOSPACE@self, CORRUPT@7]`: the member
//! ids equal to the server's own print as `self`, and the list (unordered in
//! etcd) is sorted by alarm type, then member. The header is not printed:
//! etcd 3.4.23 sends none with an AlarmResponse, 3.5 sends one, and alarms
//! never change the revision.

use tonic::transport::Channel;

use crate::dsl::int;
use crate::names::Names;
use crate::pb::etcdserverpb::{
    alarm_request::AlarmAction, maintenance_client::MaintenanceClient, AlarmRequest, AlarmType,
    StatusRequest,
};
use crate::render::{self, push};

/// The member an alarm request names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Member {
    /// The server under test.
    SelfId,
    /// A literal member id.
    Id(u64),
}

/// One `alarm` command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlarmCmd {
    /// An [`AlarmAction`] value.
    pub action: i32,
    /// An [`AlarmType`] value.
    pub alarm: i32,
    /// The member id to send.
    pub member: Member,
}

/// Parses the arguments following `alarm`.
pub fn parse_alarm(args: &[String]) -> Result<AlarmCmd, String> {
    let usage = "usage: alarm <get|activate|deactivate> [none|nospace|corrupt] [member=self|N]";
    let (verb, opts) = args.split_first().ok_or(usage)?;
    let (action, mut member) = match verb.as_str() {
        "get" => (AlarmAction::Get, Member::Id(0)),
        "activate" => (AlarmAction::Activate, Member::SelfId),
        "deactivate" => (AlarmAction::Deactivate, Member::SelfId),
        _ => return Err(usage.into()),
    };
    let mut alarm = None;
    for o in opts {
        match o.as_str() {
            "none" | "nospace" | "corrupt" if alarm.is_none() => {
                alarm = AlarmType::from_str_name(&o.to_ascii_uppercase());
            }
            "member=self" => member = Member::SelfId,
            _ => match o.strip_prefix("member=") {
                Some(v) => member = Member::Id(int(v)? as u64),
                None => return Err(format!("unknown alarm option `{o}` ({usage})")),
            },
        }
    }
    if alarm.is_none() && action != AlarmAction::Get {
        return Err(format!("`alarm {verb}` needs an alarm type ({usage})"));
    }
    Ok(AlarmCmd {
        action: action as i32,
        alarm: alarm.unwrap_or(AlarmType::None) as i32,
        member,
    })
}

/// The member id of the server behind `channel`, fetched once.
async fn self_member(channel: &Channel, names: &mut Names) -> Result<u64, tonic::Status> {
    if let Some(id) = names.self_member {
        return Ok(id);
    }
    let r = MaintenanceClient::new(channel.clone())
        .status(StatusRequest {})
        .await?;
    let id = r.get_ref().header.as_ref().map_or(0, |h| h.member_id);
    names.self_member = Some(id);
    Ok(id)
}

/// Runs one `alarm` command.
pub async fn run(cmd: &AlarmCmd, channel: &Channel, names: &mut Names, out: &mut Vec<String>) {
    let res = async {
        // Fetched even for `get`, so that `self` prints in its listing.
        let me = self_member(channel, names).await?;
        let member_id = match cmd.member {
            Member::SelfId => me,
            Member::Id(id) => id,
        };
        let req = AlarmRequest {
            action: cmd.action,
            member_id,
            alarm: cmd.alarm,
        };
        MaintenanceClient::new(channel.clone()).alarm(req).await
    }
    .await;
    match res {
        Ok(r) => {
            let r = r.get_ref();
            let mut alarms: Vec<(i32, String)> = r
                .alarms
                .iter()
                .map(|a| (a.alarm, names.member(a.member_id)))
                .collect();
            alarms.sort();
            let list: Vec<String> = alarms
                .iter()
                .map(|(a, m)| {
                    let t = AlarmType::try_from(*a)
                        .map_or_else(|_| format!("TYPE({a})"), |t| t.as_str_name().to_string());
                    format!("{t}@{m}")
                })
                .collect();
            let line = format!("alarm alarms=[{}]", list.join(", "));
            push(out, 0, line);
        }
        Err(status) => render::error(out, &status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: &str) -> Result<AlarmCmd, String> {
        let toks = crate::dsl::tokenize(line).unwrap();
        parse_alarm(&toks[1..])
    }

    #[test]
    fn parses() {
        let c = p("alarm get").unwrap();
        assert_eq!((c.action, c.alarm, c.member), (0, 0, Member::Id(0)));
        let c = p("alarm activate nospace").unwrap();
        assert_eq!((c.action, c.alarm, c.member), (1, 1, Member::SelfId));
        let c = p("alarm deactivate corrupt member=7").unwrap();
        assert_eq!((c.action, c.alarm, c.member), (2, 2, Member::Id(7)));
        assert!(p("alarm activate").is_err());
        assert!(p("alarm frob").is_err());
    }
}
