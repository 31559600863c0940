//! Command line: `armada leader`, `armada follower`, `armada table ...` and
//! `armada version`.
//!
//! Flag names follow Regatta's (`--api.*`, `--raft.*`, `--rest.*`,
//! `--storage.*`, `--replication.*`). Every flag can also come from an
//! `ARMADA_<FLAG>` environment variable (dots and dashes become `_`, e.g.
//! `ARMADA_API_ADDRESS`) or from a TOML config file given with `--config`
//! whose keys are the flag names (`"api.address" = "..."`, or `[api]
//! address = "..."`). Precedence: command line, then environment, then file.

mod parse;
mod tls;

pub(crate) use parse::{parse_duration, parse_size};
use tls::{port_tls, raft_tls, server_tls};

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use openraft::BasicNode;

use crate::error::{Error, Result};
use crate::raft::group::GroupConfig;
use crate::raft::registry::RegistryConfig;
use crate::replication::follower::FollowerConfig;
use crate::replication::{Identity, TlsFiles};
use crate::server::{NodeConfig, ReplicationServe};
use crate::storage::log::LogEngine;

#[derive(Parser, Debug)]
#[command(
    name = "armada",
    version,
    about = "An etcd-compatible key-value store with per-table Raft groups"
)]
#[command(args_override_self = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start a node of the leader cluster, serving etcd's API.
    Leader(Box<LeaderArgs>),
    /// Start a node of a follower cluster: pulls every table from a leader
    /// cluster, serves reads locally and forwards writes to the leader.
    Follower(Box<FollowerArgs>),
    /// Manage tables on a running node.
    Table(TableArgs),
    /// Print the version.
    Version,
}

#[derive(Args, Debug)]
pub struct TableArgs {
    /// etcd API endpoint of a node.
    #[arg(
        long,
        global = true,
        default_value = "http://127.0.0.1:2379",
        env = "ARMADA_ENDPOINT"
    )]
    pub endpoint: String,
    /// CA of the server's certificate, for an `https://` endpoint (etcdctl's --cacert).
    #[arg(long, global = true, env = "ARMADA_CACERT")]
    pub cacert: Option<PathBuf>,
    /// Client certificate, when the server requires one (etcdctl's --cert).
    #[arg(long, global = true, env = "ARMADA_CERT", requires = "key")]
    pub cert: Option<PathBuf>,
    /// Private key of --cert (etcdctl's --key).
    #[arg(long, global = true, env = "ARMADA_KEY", requires = "cert")]
    pub key: Option<PathBuf>,
    #[command(subcommand)]
    pub action: TableAction,
}

#[derive(Subcommand, Debug)]
pub enum TableAction {
    /// Create a table.
    Create { name: String },
    /// Delete a table and all of its data.
    Delete { name: String },
    /// List tables.
    List,
}

#[derive(Args, Debug)]
pub struct LeaderArgs {
    /// TOML config file; keys are flag names.
    #[arg(long, env = "ARMADA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Root of all data. The --raft.*-dir flags override parts of it.
    #[arg(
        long = "data-dir",
        env = "ARMADA_DATA_DIR",
        default_value = "./armada-data"
    )]
    pub data_dir: PathBuf,
    /// Member name reported by Cluster.MemberList (default: armada-<node id>).
    #[arg(long, env = "ARMADA_NAME")]
    pub name: Option<String>,
    /// Log level: DEBUG/INFO/WARN/ERROR.
    #[arg(long = "log-level", env = "ARMADA_LOG_LEVEL", default_value = "INFO")]
    pub log_level: String,
    /// Development mode: verbose, human-friendly logs.
    #[arg(long = "dev-mode", env = "ARMADA_DEV_MODE")]
    pub dev_mode: bool,
    /// Tests only: abort the process at this named step (see crash_point).
    #[arg(long = "debug.crash-at", hide = true)]
    pub debug_crash_at: Option<String>,

    /// etcd API server address.
    #[arg(
        long = "api.address",
        env = "ARMADA_API_ADDRESS",
        default_value = "http://127.0.0.1:2379"
    )]
    pub api_address: String,
    /// Advertised etcd API address, reported as the member's client URL.
    #[arg(long = "api.advertise-address", env = "ARMADA_API_ADVERTISE_ADDRESS")]
    pub api_advertise_address: Option<String>,
    /// Table for etcd requests without the `armada-table` metadata.
    #[arg(
        long = "api.default-table",
        env = "ARMADA_API_DEFAULT_TABLE",
        default_value = "default"
    )]
    pub api_default_table: String,
    /// The most tables a leader cluster holds: each costs file descriptors,
    /// address space, a raft group and a replication worker per follower
    /// cluster, so Tables.Create past it is refused (ResourceExhausted).
    #[arg(long = "tables.max", env = "ARMADA_TABLES_MAX", default_value_t = 100)]
    pub tables_max: usize,
    /// How often a watcher created with `progress_notify` gets a progress
    /// notification when it had no events (etcd's
    /// `--experimental-watch-progress-notify-interval`; at least 100ms).
    #[arg(long = "api.watch-progress-notify-interval", env = "ARMADA_API_WATCH_PROGRESS_NOTIFY_INTERVAL", default_value = "10m", value_parser = parse_duration)]
    pub api_watch_progress_notify_interval: Duration,
    /// How often the remaining TTL of each lease longer than this is
    /// checkpointed through the log, so a new raft leader continues it
    /// rather than granting the full TTL again (etcd's lease
    /// checkpointing); 0 turns it off.
    #[arg(long = "lease.checkpoint-interval", env = "ARMADA_LEASE_CHECKPOINT_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub lease_checkpoint_interval: Duration,
    /// The largest response the API port sends (gRPC's send limit, with
    /// units: `64MiB`). A Range, Txn or DeleteRange answer over it fails
    /// with grpc-go's `trying to send message larger than max` (a write is
    /// still applied, as in etcd) and is never built in memory. The default
    /// is etcd's, `math.MaxInt32`.
    #[arg(long = "api.max-send-bytes", env = "ARMADA_API_MAX_SEND_BYTES", default_value = "2147483647", value_parser = parse_size)]
    pub api_max_send_bytes: u64,
    /// The most concurrent gRPC streams (requests, watch and keep-alive
    /// streams) one client connection may hold open on the API port
    /// (etcd's --max-concurrent-streams); unlimited by default, as in etcd.
    #[arg(long = "api.max-concurrent-streams", env = "ARMADA_API_MAX_CONCURRENT_STREAMS", default_value_t = u32::MAX)]
    pub api_max_concurrent_streams: u32,
    /// TLS certificate (PEM chain) of the API server; with
    /// --api.key-filename, the API port serves TLS only and --api.address
    /// is written `https://`. Re-read when the file changes.
    #[arg(long = "api.cert-filename", env = "ARMADA_API_CERT_FILENAME")]
    pub api_cert_filename: Option<PathBuf>,
    /// Private key (PEM) of --api.cert-filename.
    #[arg(long = "api.key-filename", env = "ARMADA_API_KEY_FILENAME")]
    pub api_key_filename: Option<PathBuf>,
    /// CA (PEM): every API client must present a certificate signed by it
    /// (etcd's --client-cert-auth --trusted-ca-file). Needs TLS on.
    #[arg(long = "api.ca-filename", env = "ARMADA_API_CA_FILENAME")]
    pub api_ca_filename: Option<PathBuf>,

    /// Raft node id (>= 1).
    #[arg(
        long = "raft.node-id",
        env = "ARMADA_RAFT_NODE_ID",
        default_value_t = 1
    )]
    pub raft_node_id: u64,
    /// Raft address other nodes reach this node at; also its peer URL.
    #[arg(
        long = "raft.address",
        env = "ARMADA_RAFT_ADDRESS",
        default_value = "127.0.0.1:5012"
    )]
    pub raft_address: String,
    /// Address the Raft transport listens on (default: --raft.address), e.g.
    /// `0.0.0.0:5012` behind NAT.
    #[arg(long = "raft.listen-address", env = "ARMADA_RAFT_LISTEN_ADDRESS")]
    pub raft_listen_address: Option<String>,
    /// Initial members of the cluster, `1=host:port,2=host:port,3=host:port`
    /// (node id = raft address), identical on every node and including this
    /// one. Every table's Raft group starts with these voters. Empty: a
    /// single-node cluster of this node.
    #[arg(
        long = "raft.initial-members",
        env = "ARMADA_RAFT_INITIAL_MEMBERS",
        default_value = ""
    )]
    pub raft_initial_members: String,
    /// Round trip time between nodes: the logical clock tick.
    #[arg(long = "raft.rtt", env = "ARMADA_RAFT_RTT", default_value = "50ms", value_parser = parse_duration)]
    pub raft_rtt: Duration,
    /// Heartbeat interval in RTTs.
    #[arg(
        long = "raft.heartbeat-rtt",
        env = "ARMADA_RAFT_HEARTBEAT_RTT",
        default_value_t = 1
    )]
    pub raft_heartbeat_rtt: u64,
    /// Election timeout in RTTs: a follower that hears nothing from the
    /// raft leader for this long (randomised up to 4/3 of it) campaigns.
    #[arg(
        long = "raft.election-rtt",
        env = "ARMADA_RAFT_ELECTION_RTT",
        default_value_t = 20
    )]
    pub raft_election_rtt: u64,
    /// Take a snapshot every this many applied entries (0: never).
    #[arg(
        long = "raft.snapshot-entries",
        env = "ARMADA_RAFT_SNAPSHOT_ENTRIES",
        default_value_t = 10000
    )]
    pub raft_snapshot_entries: u64,
    /// The raft log's engine: wal (append-only segment files, one fsync
    /// per write batch) or lmdb (an LMDB environment). A table's log keeps
    /// the engine it was created with.
    #[arg(
        long = "raft.logdb",
        env = "ARMADA_RAFT_LOGDB",
        default_value = "wal",
        value_parser = |s: &str| s.parse::<LogEngine>().map_err(|e| e.to_string())
    )]
    pub raft_logdb: LogEngine,
    /// Entries kept in the log after a snapshot.
    #[arg(
        long = "raft.compaction-overhead",
        env = "ARMADA_RAFT_COMPACTION_OVERHEAD",
        default_value_t = 5000
    )]
    pub raft_compaction_overhead: u64,
    /// Target bytes of unapplied entries held in memory (bounds append batches).
    #[arg(
        long = "raft.max-in-mem-log-size",
        env = "ARMADA_RAFT_MAX_IN_MEM_LOG_SIZE",
        default_value = "6291456",
        value_parser = parse_size
    )]
    pub raft_max_in_mem_log_size: u64,
    /// Writes that may wait for the table's raft leader to propose and
    /// commit them at once; more are refused with etcd's `etcdserver: too
    /// many requests` (a leader cut off from its quorum stays bounded).
    #[arg(
        long = "raft.max-pending-proposals",
        env = "ARMADA_RAFT_MAX_PENDING_PROPOSALS",
        default_value_t = 10000
    )]
    pub raft_max_pending_proposals: usize,
    /// TLS certificate (PEM chain) of this node on the Raft port, presented
    /// both as server and as client (mutual TLS between nodes); it must
    /// name the host of --raft.address. The three --raft.*-filename flags
    /// go together. Re-read when the file changes.
    #[arg(long = "raft.cert-filename", env = "ARMADA_RAFT_CERT_FILENAME")]
    pub raft_cert_filename: Option<PathBuf>,
    /// Private key (PEM) of --raft.cert-filename.
    #[arg(long = "raft.key-filename", env = "ARMADA_RAFT_KEY_FILENAME")]
    pub raft_key_filename: Option<PathBuf>,
    /// CA (PEM) that signs every node's Raft certificate: a peer without a
    /// certificate signed by it is refused, and peers' servers are checked
    /// against it.
    #[arg(long = "raft.ca-filename", env = "ARMADA_RAFT_CA_FILENAME")]
    pub raft_ca_filename: Option<PathBuf>,
    /// Raft internal storage: table catalogue and snapshots (default <data-dir>/raft).
    #[arg(long = "raft.node-host-dir", env = "ARMADA_RAFT_NODE_HOST_DIR")]
    pub raft_node_host_dir: Option<PathBuf>,
    /// Raft log environments (default <node-host-dir>/wal).
    #[arg(long = "raft.wal-dir", env = "ARMADA_RAFT_WAL_DIR")]
    pub raft_wal_dir: Option<PathBuf>,
    /// State machine environments (default <data-dir>/state-machine).
    #[arg(long = "raft.state-machine-dir", env = "ARMADA_RAFT_STATE_MACHINE_DIR")]
    pub raft_state_machine_dir: Option<PathBuf>,

    /// REST address: /healthz, /readyz, /metrics.
    #[arg(
        long = "rest.address",
        env = "ARMADA_REST_ADDRESS",
        default_value = "http://127.0.0.1:8079"
    )]
    pub rest_address: String,
    /// TLS certificate (PEM chain) of the REST server; with
    /// --rest.key-filename, --rest.address is written `https://`. Re-read
    /// when the file changes.
    #[arg(long = "rest.cert-filename", env = "ARMADA_REST_CERT_FILENAME")]
    pub rest_cert_filename: Option<PathBuf>,
    /// Private key (PEM) of --rest.cert-filename.
    #[arg(long = "rest.key-filename", env = "ARMADA_REST_KEY_FILENAME")]
    pub rest_key_filename: Option<PathBuf>,
    /// How long a REST client may take to send a request's headers; a
    /// slower one is disconnected.
    #[arg(long = "rest.read-timeout", env = "ARMADA_REST_READ_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub rest_read_timeout: Duration,

    /// LMDB map size per environment (bytes, or with a unit: 64MiB, 8GiB);
    /// writes past 90% of it raise etcd's NOSPACE alarm.
    #[arg(long = "storage.map-size", env = "ARMADA_STORAGE_MAP_SIZE", default_value = "8GiB", value_parser = parse_size)]
    pub storage_map_size: u64,
    /// Accepted for Regatta compatibility; LMDB uses the OS page cache instead.
    #[arg(
        long = "storage.block-cache-size",
        env = "ARMADA_STORAGE_BLOCK_CACHE_SIZE",
        default_value = "16777216",
        value_parser = parse_size
    )]
    pub storage_block_cache_size: u64,
    /// Accepted for Regatta compatibility; LMDB keeps no table cache.
    #[arg(
        long = "storage.table-cache-size",
        env = "ARMADA_STORAGE_TABLE_CACHE_SIZE",
        default_value_t = 1024
    )]
    pub storage_table_cache_size: u64,

    /// Replication API address served to follower clusters (cross-cluster replication).
    #[arg(
        long = "replication.address",
        env = "ARMADA_REPLICATION_ADDRESS",
        default_value = "http://127.0.0.1:8444"
    )]
    pub replication_address: String,
    /// Whether the replication API is served to follower clusters.
    #[arg(
        long = "replication.enabled",
        env = "ARMADA_REPLICATION_ENABLED",
        default_value_t = false
    )]
    pub replication_enabled: bool,
    /// Target maximum size of one replication message sent to followers
    /// (a single larger log entry is still sent whole).
    #[arg(
        long = "replication.max-send-message-size-bytes",
        env = "ARMADA_REPLICATION_MAX_SEND_MESSAGE_SIZE_BYTES",
        default_value = "4194304",
        value_parser = parse_size
    )]
    pub replication_max_send_message_size_bytes: u64,
    /// Replication TLS certificate: the server's on a leader, the client's
    /// on a follower (mTLS).
    #[arg(
        long = "replication.cert-filename",
        env = "ARMADA_REPLICATION_CERT_FILENAME"
    )]
    pub replication_cert_filename: Option<PathBuf>,
    /// Private key of --replication.cert-filename.
    #[arg(
        long = "replication.key-filename",
        env = "ARMADA_REPLICATION_KEY_FILENAME"
    )]
    pub replication_key_filename: Option<PathBuf>,
    /// CA that signs the other side's certificate: on a leader, clients
    /// must present one (mTLS); on a follower, the leader's is checked (on
    /// its own, without a certificate of the follower's: server-only TLS).
    #[arg(
        long = "replication.ca-filename",
        env = "ARMADA_REPLICATION_CA_FILENAME"
    )]
    pub replication_ca_filename: Option<PathBuf>,
}

/// `armada follower`: every node flag of `armada leader`, plus where and
/// how to pull from the leader cluster (Regatta's follower flags).
#[derive(Args, Debug)]
pub struct FollowerArgs {
    #[command(flatten)]
    pub node: LeaderArgs,
    /// Address of the leader cluster's replication API.
    #[arg(
        long = "replication.leader-address",
        env = "ARMADA_REPLICATION_LEADER_ADDRESS",
        default_value = "localhost:8444"
    )]
    pub leader_address: String,
    /// How long a worker waits before retrying after a failed or ended poll
    /// (the log stream itself is held open and pushes new entries).
    #[arg(long = "replication.poll-interval", env = "ARMADA_REPLICATION_POLL_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub poll_interval: Duration,
    /// How often the table list is reconciled with the leader's.
    #[arg(long = "replication.reconcile-interval", env = "ARMADA_REPLICATION_RECONCILE_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub reconcile_interval: Duration,
    /// Interval in which workers renew their table leases.
    #[arg(long = "replication.lease-interval", env = "ARMADA_REPLICATION_LEASE_INTERVAL", default_value = "15s", value_parser = parse_duration)]
    pub lease_interval: Duration,
    /// The log RPC timeout: the longest wait for the stream to open or for
    /// its next message (the leader sends one at least every 5 s).
    #[arg(long = "replication.log-rpc-timeout", env = "ARMADA_REPLICATION_LOG_RPC_TIMEOUT", default_value = "1m0s", value_parser = parse_duration)]
    pub log_rpc_timeout: Duration,
    /// Timeout for a full snapshot recovery RPC.
    #[arg(long = "replication.snapshot-rpc-timeout", env = "ARMADA_REPLICATION_SNAPSHOT_RPC_TIMEOUT", default_value = "1h0m0s", value_parser = parse_duration)]
    pub snapshot_rpc_timeout: Duration,
    /// Rate limit for snapshot reception in bytes per second (0: none).
    #[arg(
        long = "replication.max-snapshot-recv-bytes-per-second",
        env = "ARMADA_REPLICATION_MAX_SNAPSHOT_RECV_BYTES_PER_SECOND",
        default_value = "0",
        value_parser = parse_size
    )]
    pub max_snapshot_recv_bytes_per_second: u64,
    /// Maximum number of concurrent snapshot recoveries.
    #[arg(
        long = "replication.max-recovery-in-flight",
        env = "ARMADA_REPLICATION_MAX_RECOVERY_IN_FLIGHT",
        default_value_t = 1
    )]
    pub max_recovery_in_flight: u64,
    /// Ping the leader after this long without activity (at least 10s).
    #[arg(long = "replication.keepalive-time", env = "ARMADA_REPLICATION_KEEPALIVE_TIME", default_value = "1m0s", value_parser = parse_duration)]
    pub keepalive_time: Duration,
    /// Close the connection when a keepalive ping is not answered within this.
    #[arg(long = "replication.keepalive-timeout", env = "ARMADA_REPLICATION_KEEPALIVE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub keepalive_timeout: Duration,
}

impl FollowerArgs {
    pub fn node_config(&self) -> Result<NodeConfig> {
        let mut cfg = self.node.node_config()?;
        if self.lease_interval.is_zero() || self.reconcile_interval.is_zero() {
            return Err(Error::InvalidInput(
                "--replication.lease-interval and --replication.reconcile-interval must be positive"
                    .into(),
            ));
        }
        // The leader cluster decides lease expiry; its revokes replicate.
        cfg.registry.group.expire_leases = false;
        cfg.follow = Some(FollowerConfig {
            leader_address: self.leader_address.clone(),
            tls: self.node.replication_tls()?,
            // A zero interval would turn every retry into a busy loop.
            poll_interval: self.poll_interval.max(Duration::from_millis(10)),
            reconcile_interval: self.reconcile_interval,
            lease_interval: self.lease_interval,
            log_rpc_timeout: self.log_rpc_timeout.max(Duration::from_secs(1)),
            snapshot_rpc_timeout: self.snapshot_rpc_timeout,
            max_snapshot_recv_bytes_per_second: self.max_snapshot_recv_bytes_per_second,
            max_recovery_in_flight: self.max_recovery_in_flight.max(1) as usize,
            keepalive_time: self.keepalive_time,
            keepalive_timeout: self.keepalive_timeout,
        });
        Ok(cfg)
    }
}

/// `1=host:port,2=host:port` to the initial voters; empty is none.
pub(crate) fn parse_initial_members(value: &str) -> Result<BTreeMap<u64, BasicNode>> {
    let mut members = BTreeMap::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || {
            Error::InvalidInput(format!(
                "--raft.initial-members: {part:?} is not <node id>=<host:port>"
            ))
        };
        let (id, addr) = part.split_once('=').ok_or_else(bad)?;
        let id: u64 = id.trim().parse().map_err(|_| bad())?;
        let addr = addr.trim();
        if id == 0 || addr.is_empty() || addr.contains("://") {
            return Err(bad());
        }
        if members.insert(id, BasicNode::new(addr)).is_some() {
            return Err(Error::InvalidInput(format!(
                "--raft.initial-members: node {id} is listed twice"
            )));
        }
    }
    Ok(members)
}

/// `http://host:port`, `https://host:port` or `host:port` to a socket address.
pub(crate) fn parse_address(flag: &str, value: &str) -> Result<SocketAddr> {
    let hostport = value
        .strip_prefix("http://")
        .or_else(|| value.strip_prefix("https://"))
        .unwrap_or(value);
    hostport
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| Error::InvalidInput(format!("--{flag}: cannot resolve {value:?}")))
}

impl LeaderArgs {
    /// The `--replication.{cert,key,ca}-filename` files, read: the
    /// replication server's identity and the CA its clients must present a
    /// certificate of (mTLS) on a leader, the client's on a follower.
    pub(crate) fn replication_tls(&self) -> Result<Option<TlsFiles>> {
        let read = |flag: &str, path: &Option<PathBuf>| -> Result<Option<Vec<u8>>> {
            path.as_ref()
                .map(|p| {
                    std::fs::read(p).map_err(|e| {
                        Error::InvalidInput(format!(
                            "--replication.{flag}-filename {}: {e}",
                            p.display()
                        ))
                    })
                })
                .transpose()
        };
        let cert = read("cert", &self.replication_cert_filename)?;
        let key = read("key", &self.replication_key_filename)?;
        let ca = read("ca", &self.replication_ca_filename)?;
        let identity = match (cert, key) {
            (Some(cert), Some(key)) => Some(Identity { cert, key }),
            (None, None) => None,
            _ => {
                return Err(Error::InvalidInput(
                    "--replication.cert-filename and --replication.key-filename go together".into(),
                ))
            }
        };
        // A CA alone: a follower checking the leader's certificate (a
        // leader serving TLS needs its own, checked where it serves).
        Ok((identity.is_some() || ca.is_some()).then_some(TlsFiles { identity, ca }))
    }

    pub fn node_config(&self) -> Result<NodeConfig> {
        if let Some(point) = &self.debug_crash_at {
            crate::crash_point::arm(point)?;
        }
        let api_tls = port_tls(
            "api",
            &self.api_address,
            &self.api_cert_filename,
            &self.api_key_filename,
            &self.api_ca_filename,
        )?;
        let rest_tls = port_tls(
            "rest",
            &self.rest_address,
            &self.rest_cert_filename,
            &self.rest_key_filename,
            &None,
        )?;
        let raft_tls = raft_tls(
            &self.raft_cert_filename,
            &self.raft_key_filename,
            &self.raft_ca_filename,
        )?;
        if self.raft_node_id == 0 {
            return Err(Error::InvalidInput("--raft.node-id must be >= 1".into()));
        }
        if self.api_watch_progress_notify_interval < Duration::from_millis(100) {
            return Err(Error::InvalidInput(
                "--api.watch-progress-notify-interval must be at least 100ms".into(),
            ));
        }
        let members = parse_initial_members(&self.raft_initial_members)?;
        if !members.is_empty() {
            match members.get(&self.raft_node_id) {
                Some(node) if node.addr == self.raft_address => {}
                Some(node) => {
                    return Err(Error::InvalidInput(format!(
                        "--raft.initial-members gives node {} the address {:?}, but --raft.address is {:?}",
                        self.raft_node_id, node.addr, self.raft_address
                    )))
                }
                None => {
                    return Err(Error::InvalidInput(format!(
                        "--raft.initial-members does not include this node (--raft.node-id {})",
                        self.raft_node_id
                    )))
                }
            }
        }
        let raft_listen = parse_address(
            "raft.listen-address",
            self.raft_listen_address
                .as_deref()
                .unwrap_or(&self.raft_address),
        )?;
        let replication = if self.replication_enabled {
            Some(ReplicationServe {
                listen: parse_address("replication.address", &self.replication_address)?,
                tls: self.replication_tls()?,
                max_send: usize::try_from(self.replication_max_send_message_size_bytes)
                    .unwrap_or(usize::MAX)
                    .max(1),
            })
        } else {
            None
        };
        let api_listen = parse_address("api.address", &self.api_address)?;
        let rest_listen = parse_address("rest.address", &self.rest_address)?;
        let node_host_dir = self
            .raft_node_host_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("raft"));
        let wal_dir = self
            .raft_wal_dir
            .clone()
            .unwrap_or_else(|| node_host_dir.join("wal"));
        let state_machine_dir = self
            .raft_state_machine_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("state-machine"));
        let rtt_ms = u64::try_from(self.raft_rtt.as_millis())
            .map_err(|_| Error::InvalidInput("--raft.rtt is too large".into()))?
            .max(1);
        let ticks = |rtts: u64, flag: &str| {
            rtt_ms
                .checked_mul(rtts)
                .ok_or_else(|| Error::InvalidInput(format!("--raft.rtt times {flag} is too large")))
        };
        let heartbeat_ms = ticks(self.raft_heartbeat_rtt.max(1), "--raft.heartbeat-rtt")?;
        let election_ms = ticks(self.raft_election_rtt.max(2), "--raft.election-rtt")?;
        // A follower must see several heartbeats within the shortest
        // election timeout (a third of the election RTTs, see raft::group).
        if election_ms <= 3 * heartbeat_ms {
            return Err(Error::InvalidInput(
                "--raft.election-rtt must be more than 3 times --raft.heartbeat-rtt".into(),
            ));
        }
        let scheme = if api_tls.is_some() { "https" } else { "http" };
        let advertise = self
            .api_advertise_address
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{api_listen}"));
        let peer_tls = raft_tls
            .as_ref()
            .map(|p| {
                crate::tls::client_config(p)
                    .map_err(|e| Error::InvalidInput(format!("--raft.*-filename: {e}")))
            })
            .transpose()?;
        Ok(NodeConfig {
            name: self
                .name
                .clone()
                .unwrap_or_else(|| format!("armada-{}", self.raft_node_id)),
            api_listen,
            api_advertise: advertise,
            api_tls: server_tls("api", api_tls, &[crate::tls::ALPN_H2])?,
            rest_tls: server_tls("rest", rest_tls, &[crate::tls::ALPN_HTTP1])?,
            raft_tls: server_tls("raft", raft_tls, &[crate::tls::ALPN_H2])?,
            default_table: self.api_default_table.clone(),
            max_tables: self.tables_max,
            watch_progress_interval: self.api_watch_progress_notify_interval,
            max_concurrent_streams: self.api_max_concurrent_streams,
            rest_listen,
            rest_read_timeout: self.rest_read_timeout,
            raft_listen,
            replication,
            follow: None,
            registry: RegistryConfig {
                node_host_dir,
                wal_dir,
                state_machine_dir,
                peer_tls,
                group: GroupConfig {
                    node_id: self.raft_node_id,
                    raft_address: self.raft_address.clone(),
                    members,
                    wal_dir: PathBuf::new(),
                    state_machine_dir: PathBuf::new(),
                    snapshot_dir: PathBuf::new(),
                    map_size: usize::try_from(self.storage_map_size).map_err(|_| {
                        Error::InvalidInput("--storage.map-size is too large".into())
                    })?,
                    heartbeat_ms,
                    election_ms,
                    log_engine: self.raft_logdb,
                    snapshot_entries: self.raft_snapshot_entries,
                    compaction_overhead: self.raft_compaction_overhead,
                    // Bound one append batch by the in-memory log budget,
                    // assuming small (~1 KiB) entries.
                    max_payload_entries: (self.raft_max_in_mem_log_size / 1024).clamp(64, 4096),
                    max_pending_proposals: self.raft_max_pending_proposals,
                    expire_leases: true,
                    lease_checkpoint_interval: self.lease_checkpoint_interval,
                    send_limit: self.api_max_send_bytes,
                },
            },
        })
    }
}

/// Merges a `--config` TOML file into argv: every key not given on the
/// command line or in the environment becomes `--key=value`.
pub fn args_with_config_file(mut argv: Vec<String>) -> Result<Vec<String>> {
    let path = argv.iter().enumerate().find_map(|(i, a)| {
        a.strip_prefix("--config=").map(str::to_string).or_else(|| {
            (a == "--config")
                .then(|| argv.get(i + 1).cloned())
                .flatten()
        })
    });
    let Some(path) = path.or_else(|| std::env::var("ARMADA_CONFIG").ok()) else {
        return Ok(argv);
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::InvalidInput(format!("--config {path}: {e}")))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| Error::InvalidInput(format!("--config {path}: {e}")))?;
    let mut flat = Vec::new();
    flatten("", &table, &mut flat);
    for (key, value) in flat {
        let given = argv
            .iter()
            .any(|a| a == &format!("--{key}") || a.starts_with(&format!("--{key}=")));
        let env = format!("ARMADA_{}", key.to_uppercase().replace(['.', '-'], "_"));
        if !given && std::env::var_os(env).is_none() {
            argv.push(format!("--{key}={value}"));
        }
    }
    Ok(argv)
}

fn flatten(prefix: &str, table: &toml::Table, out: &mut Vec<(String, String)>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => flatten(&key, t, out),
            toml::Value::String(s) => out.push((key, s.clone())),
            other => out.push((key, other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests;
