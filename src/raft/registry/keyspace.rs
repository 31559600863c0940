//! The metadata group's keyspace, typed: every key the cluster keeps about
//! itself and the format of its value, in one place.
//!
//! The metadata group is an etcd keyspace like a table's, written only by
//! Armada itself. Its keys:
//!
//! ```text
//! tables/<name>               Incarnation: "<epoch>" or "<epoch> seed=<node>"
//! members/<node id>           MemberInfo (JSON)
//! cluster/id                  this cluster's identity (UUID text)
//! replication/leader-cluster  the leader cluster a follower cluster follows
//! leases/<table>              a follower cluster's replication worker lease (JSON)
//! ```
//!
//! A key or value that does not decode is `Corrupt`, reported to the
//! caller, never skipped: only Armada writes these keys, so one that does
//! not parse is a bug or a damaged store.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::raft::NodeId;

/// A key of the metadata group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MetaKey<'a> {
    /// A table's current [`Incarnation`].
    Table(&'a str),
    /// How clients reach a member ([`super::MemberInfo`]).
    Member(NodeId),
    /// This cluster's identity.
    ClusterId,
    /// On a follower cluster: the identity of the leader cluster it follows.
    FollowedCluster,
    /// On a follower cluster: which node runs a table's replication worker.
    WorkerLease(&'a str),
}

/// The keys listed by prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MetaPrefix {
    Tables,
    Members,
}

impl MetaPrefix {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            MetaPrefix::Tables => "tables/",
            MetaPrefix::Members => "members/",
        }
    }

    /// The part of `key` after this prefix, as text.
    pub(crate) fn rest(self, key: &[u8]) -> Result<&str> {
        key.strip_prefix(self.as_str().as_bytes())
            .and_then(|rest| std::str::from_utf8(rest).ok())
            .ok_or_else(|| Error::Corrupt(format!("metadata key {key:?}")))
    }
}

impl MetaKey<'_> {
    pub(crate) fn encode(&self) -> String {
        match self {
            MetaKey::Table(name) => format!("{}{name}", MetaPrefix::Tables.as_str()),
            MetaKey::Member(id) => format!("{}{id}", MetaPrefix::Members.as_str()),
            MetaKey::ClusterId => "cluster/id".into(),
            MetaKey::FollowedCluster => "replication/leader-cluster".into(),
            MetaKey::WorkerLease(table) => format!("leases/{table}"),
        }
    }
}

/// A member's node id from its `members/<id>` key.
pub(crate) fn member_id(key: &[u8]) -> Result<NodeId> {
    let rest = MetaPrefix::Members.rest(key)?;
    rest.parse()
        .map_err(|_| Error::Corrupt(format!("member id {rest:?}")))
}

/// A JSON value of the metadata group.
pub(crate) fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| Error::Corrupt(format!("encoding metadata: {e}")))
}

/// Decodes the JSON value of `key`.
pub(crate) fn from_json<T: DeserializeOwned>(key: &MetaKey<'_>, raw: &[u8]) -> Result<T> {
    serde_json::from_slice(raw).map_err(|e| Error::Corrupt(format!("{}: {e}", key.encode())))
}

/// A table's incarnation as the catalogue records it: `"<epoch>"`, or
/// `"<epoch> seed=<node>"` for one seeded from a snapshot on that node
/// (a follower cluster's recovery), which the other nodes must not
/// initialize.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Incarnation {
    pub(crate) epoch: u64,
    pub(crate) seed: Option<NodeId>,
}

impl Incarnation {
    pub(crate) fn decode(table: &str, raw: &[u8]) -> Result<Incarnation> {
        let corrupt = || Error::Corrupt(format!("epoch of table {table:?}"));
        let s = std::str::from_utf8(raw).map_err(|_| corrupt())?;
        let (epoch, seed) = match s.split_once(" seed=") {
            Some((e, n)) => (e, Some(n.parse().map_err(|_| corrupt())?)),
            None => (s, None),
        };
        Ok(Incarnation {
            epoch: epoch.parse().map_err(|_| corrupt())?,
            seed,
        })
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }
}

impl std::fmt::Display for Incarnation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.seed {
            Some(n) => write!(f, "{} seed={n}", self.epoch),
            None => write!(f, "{}", self.epoch),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_round_trip() {
        assert_eq!(MetaKey::Table("users").encode(), "tables/users");
        assert_eq!(MetaPrefix::Tables.rest(b"tables/users").unwrap(), "users");
        assert_eq!(
            member_id(MetaKey::Member(7).encode().as_bytes()).unwrap(),
            7
        );
        assert!(member_id(b"members/x").is_err());
        assert!(MetaPrefix::Members.rest(b"tables/x").is_err());
        for inc in [
            Incarnation {
                epoch: 42,
                seed: None,
            },
            Incarnation {
                epoch: 43,
                seed: Some(2),
            },
        ] {
            assert_eq!(Incarnation::decode("t", &inc.encode()).unwrap(), inc);
        }
        for bad in [&b"x"[..], b"1 seed=", b"1 seed=x", b"", b"\xff"] {
            assert!(Incarnation::decode("t", bad).is_err(), "{bad:?}");
        }
        let key = MetaKey::WorkerLease("t");
        assert!(from_json::<Vec<u8>>(&key, b"{").is_err());
    }
}
