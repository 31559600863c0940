//! Parser for the Lock (`v3lockpb`) and Election (`v3electionpb`) commands
//! of the scenario DSL, executed by [`crate::concurrency`]:
//!
//! ```text
//! lock [@bg] <name> [lease=<id>]              # lease 0 (default): the server grants a 60 s one
//! unlock <key>  |  unlock <name> lease=<id>   # the latter unlocks key <name>/<hex of id>
//! election campaign [@bg] <name> <lease> <value>
//! election proclaim <name> <lease> <value> [rev=N] [key=<k>]
//! election proclaim noleader <value>
//! election resign <name> <lease> [rev=N] [key=<k>]
//! election resign noleader
//! election leader <name>
//! election observe <stream> <name>            # Observe stream, like a watch stream
//! election recv <stream> <n>
//! election close <stream>
//! await @bg                                   # result of a background lock/campaign
//! cancel @bg                                  # drop a background call
//! ```
//!
//! `proclaim`/`resign` build the LeaderKey `{name, key: <name>/<hex of
//! lease>, rev, lease}`; `rev` defaults to the leader revision of the last
//! successful campaign of that name and lease in this run, `key=` overrides
//! the key; `noleader` sends no LeaderKey at all.

use crate::dsl::{bytes, int};
use crate::names::lease_id;

/// Where a lock key comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySpec {
    /// A literal key.
    Raw(Vec<u8>),
    /// `<name>/<hex of lease>`, the key Lock creates for that lease.
    Lease { name: Vec<u8>, lease: i64 },
}

/// The LeaderKey of a proclaim or resign.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderSpec {
    pub name: Vec<u8>,
    pub lease: i64,
    /// None: the rev of the last campaign of (name, lease).
    pub rev: Option<i64>,
    /// None: `<name>/<hex of lease>`.
    pub key: Option<Vec<u8>>,
}

/// One Lock/Election command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConcCmd {
    /// `lock`; `bg` names a background call.
    Lock {
        bg: Option<String>,
        name: Vec<u8>,
        lease: i64,
    },
    /// `unlock`.
    Unlock { key: KeySpec },
    /// `election campaign`.
    Campaign {
        bg: Option<String>,
        name: Vec<u8>,
        lease: i64,
        value: Vec<u8>,
    },
    /// `election proclaim` (leader None: `noleader`).
    Proclaim {
        leader: Option<LeaderSpec>,
        value: Vec<u8>,
    },
    /// `election resign` (leader None: `noleader`).
    Resign { leader: Option<LeaderSpec> },
    /// `election leader`.
    Leader { name: Vec<u8> },
    /// `election observe`: opens an Observe stream.
    Observe { stream: String, name: Vec<u8> },
    /// `election recv`: waits for exactly `n` more Observe responses.
    Recv { stream: String, n: usize },
    /// `election close`: cancels an Observe stream.
    Close { stream: String },
    /// `await @bg`.
    Await { bg: String },
    /// `cancel @bg`.
    Cancel { bg: String },
}

/// Splits off a leading `@name` (background call).
fn bg_name(args: &[String]) -> (Option<String>, &[String]) {
    match args.split_first() {
        Some((first, rest)) if first.starts_with('@') && first.len() > 1 => {
            (Some(first[1..].to_string()), rest)
        }
        _ => (None, args),
    }
}

/// `@name` of `await`/`cancel`.
fn one_bg(verb: &str, args: &[String]) -> Result<String, String> {
    match bg_name(args) {
        (Some(n), []) => Ok(n),
        _ => Err(format!("usage: {verb} @<name>")),
    }
}

/// Parses `lock`, `unlock`, `election`, `await` and `cancel` commands
/// (`cmd` is the command word, `args` the rest of the line).
pub fn parse_conc(cmd: &str, args: &[String]) -> Result<ConcCmd, String> {
    match cmd {
        "lock" => {
            let (bg, args) = bg_name(args);
            let (name, opts) = args
                .split_first()
                .ok_or("usage: lock [@bg] <name> [lease=<id>]")?;
            let mut lease = 0;
            for o in opts {
                match o.strip_prefix("lease=") {
                    Some(v) => lease = lease_id(v)?,
                    None => return Err(format!("unknown lock option `{o}`")),
                }
            }
            Ok(ConcCmd::Lock {
                bg,
                name: bytes(name)?,
                lease,
            })
        }
        "unlock" => match args {
            [key] => Ok(ConcCmd::Unlock {
                key: KeySpec::Raw(bytes(key)?),
            }),
            [name, l] if l.starts_with("lease=") => Ok(ConcCmd::Unlock {
                key: KeySpec::Lease {
                    name: bytes(name)?,
                    lease: lease_id(&l["lease=".len()..])?,
                },
            }),
            _ => Err("usage: unlock <key> | unlock <name> lease=<id>".into()),
        },
        "await" => Ok(ConcCmd::Await {
            bg: one_bg("await", args)?,
        }),
        "cancel" => Ok(ConcCmd::Cancel {
            bg: one_bg("cancel", args)?,
        }),
        "election" => parse_election(args),
        other => Err(format!("unknown command `{other}`")),
    }
}

fn parse_election(args: &[String]) -> Result<ConcCmd, String> {
    let (verb, rest) = args
        .split_first()
        .ok_or("usage: election <campaign|proclaim|resign|leader|observe|recv|close> ...")?;
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    match (verb.as_str(), &rest[..]) {
        ("campaign", _) => {
            let (bg, a) = bg_name(&args[1..]);
            let [name, lease, value] = a else {
                return Err("usage: election campaign [@bg] <name> <lease> <value>".into());
            };
            Ok(ConcCmd::Campaign {
                bg,
                name: bytes(name)?,
                lease: lease_id(lease)?,
                value: bytes(value)?,
            })
        }
        ("proclaim", ["noleader", value]) => Ok(ConcCmd::Proclaim {
            leader: None,
            value: bytes(value)?,
        }),
        ("proclaim", [name, lease, value, opts @ ..]) => Ok(ConcCmd::Proclaim {
            leader: Some(leader_spec(name, lease, opts)?),
            value: bytes(value)?,
        }),
        ("resign", ["noleader"]) => Ok(ConcCmd::Resign { leader: None }),
        ("resign", [name, lease, opts @ ..]) => Ok(ConcCmd::Resign {
            leader: Some(leader_spec(name, lease, opts)?),
        }),
        ("leader", [name]) => Ok(ConcCmd::Leader { name: bytes(name)? }),
        ("observe", [stream, name]) => Ok(ConcCmd::Observe {
            stream: stream.to_string(),
            name: bytes(name)?,
        }),
        ("recv", [stream, n]) => Ok(ConcCmd::Recv {
            stream: stream.to_string(),
            n: n.parse().map_err(|_| format!("bad count `{n}`"))?,
        }),
        ("close", [stream]) => Ok(ConcCmd::Close {
            stream: stream.to_string(),
        }),
        _ => Err(format!(
            "bad `election {verb}` command (see compat-tests/README.md)"
        )),
    }
}

fn leader_spec(name: &str, lease: &str, opts: &[&str]) -> Result<LeaderSpec, String> {
    let mut spec = LeaderSpec {
        name: bytes(name)?,
        lease: lease_id(lease)?,
        rev: None,
        key: None,
    };
    for o in opts {
        match o.split_once('=') {
            Some(("rev", v)) => spec.rev = Some(int(v)?),
            Some(("key", v)) => spec.key = Some(bytes(v)?),
            _ => return Err(format!("unknown leader option `{o}` (rev=N, key=<k>)")),
        }
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: &str) -> Result<ConcCmd, String> {
        let toks = crate::dsl::tokenize(line).unwrap();
        parse_conc(&toks[0], &toks[1..])
    }

    #[test]
    fn parses() {
        assert_eq!(
            p("lock @w lk lease=0x10").unwrap(),
            ConcCmd::Lock {
                bg: Some("w".into()),
                name: b"lk".to_vec(),
                lease: 16
            }
        );
        assert_eq!(
            p("unlock lk lease=5").unwrap(),
            ConcCmd::Unlock {
                key: KeySpec::Lease {
                    name: b"lk".to_vec(),
                    lease: 5
                }
            }
        );
        assert_eq!(
            p("unlock lk/5").unwrap(),
            ConcCmd::Unlock {
                key: KeySpec::Raw(b"lk/5".to_vec())
            }
        );
        let ConcCmd::Proclaim {
            leader: Some(l), ..
        } = p("election proclaim e 0x10 v rev=3").unwrap()
        else {
            panic!()
        };
        assert_eq!((l.lease, l.rev), (16, Some(3)));
        assert!(matches!(
            p("election campaign @c e 1 v").unwrap(),
            ConcCmd::Campaign { bg: Some(_), .. }
        ));
        assert!(matches!(
            p("election resign noleader").unwrap(),
            ConcCmd::Resign { leader: None }
        ));
        assert!(p("await w").is_err());
        assert!(p("election recv s x").is_err());
    }
}
