//! Wires one node: storage and Raft groups (the table registry), then the
//! etcd gRPC API and the REST endpoints, until `shutdown` resolves
//! (mini-redis's `run(listener, shutdown)` shape).

pub mod authority;
pub mod rest;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::api::cluster::ClusterService;
use crate::api::election::ElectionService;
use crate::api::kv::KvService;
use crate::api::lease::{IdGen, LeaseService};
use crate::api::lock::LockService;
use crate::api::maintenance::MaintenanceService;
use crate::api::tables::TablesService;
use crate::api::watch::WatchService;
use crate::api::watch_codec::WatchServer;
use crate::api::{member_id, stable_id, ApiMetrics, Context, Forwarded, Member, Upstream};
use crate::error::{Error, Result};
use crate::kv::command::Command;
use crate::kv::validate::{MAX_GRPC_DECODE_BYTES, MAX_GRPC_RECV_BYTES};
use crate::pb::armada::tables_server::TablesServer;
use crate::pb::etcdserverpb::cluster_server::ClusterServer;
use crate::pb::etcdserverpb::kv_server::KvServer;
use crate::pb::etcdserverpb::lease_server::LeaseServer;
use crate::pb::etcdserverpb::maintenance_server::MaintenanceServer;
use crate::pb::raft::raft_server::RaftServer;
use crate::pb::replication::log_server::LogServer;
use crate::pb::replication::metadata_server::MetadataServer;
use crate::pb::replication::replication_server::ReplicationServer;
use crate::pb::replication::snapshot_server::SnapshotServer;
use crate::pb::v3electionpb::election_server::ElectionServer;
use crate::pb::v3lockpb::lock_server::LockServer;
use crate::raft::group::GroupConfig;
use crate::raft::network::MAX_RAFT_MESSAGE;
use crate::raft::registry::{MemberInfo, Registry, RegistryConfig};
use crate::raft::transport::RaftService;
use crate::raft::NodeId;
use crate::replication::follower::{Follower, FollowerConfig};
use crate::replication::leader::LeaderService;
use crate::replication::status::StatusService;
use crate::replication::TlsFiles;
use crate::tls;
use tokio_rustls::rustls::ServerConfig;

/// The etcd version Armada reports: a 3.5-series semver, so clients that
/// gate features on it (kube-apiserver) treat Armada as a modern etcd.
pub const ETCD_VERSION: &str = "3.5.17";

/// Everything a node needs, resolved from flags, config file and environment.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub name: String,
    pub api_listen: SocketAddr,
    pub api_advertise: String,
    /// TLS of the API port (`--api.*-filename`), client certificates
    /// required when it has a CA; plain when unset.
    pub api_tls: Option<Arc<ServerConfig>>,
    /// TLS of the REST port.
    pub rest_tls: Option<Arc<ServerConfig>>,
    /// Mutual TLS of the Raft port; the client half is in the registry's config.
    pub raft_tls: Option<Arc<ServerConfig>>,
    pub default_table: String,
    /// `--tables.max`.
    pub max_tables: usize,
    /// `--api.watch-progress-notify-interval`.
    pub watch_progress_interval: Duration,
    /// `--api.max-concurrent-streams`: per client connection.
    pub max_concurrent_streams: u32,
    pub rest_listen: SocketAddr,
    /// `--rest.read-timeout`: how long a REST client may take to send a
    /// request's headers.
    pub rest_read_timeout: Duration,
    pub raft_listen: SocketAddr,
    /// Serve the replication API to follower clusters.
    pub replication: Option<ReplicationServe>,
    /// Set for `armada follower`: pull every table from this leader cluster.
    pub follow: Option<FollowerConfig>,
    pub registry: RegistryConfig,
}

/// The replication API's listener, TLS and message size target.
#[derive(Clone, Debug)]
pub struct ReplicationServe {
    pub listen: SocketAddr,
    pub tls: Option<TlsFiles>,
    pub max_send: usize,
}

impl NodeConfig {
    pub fn group(&self) -> &GroupConfig {
        &self.registry.group
    }

    /// Where snapshot copies for and from other clusters are written.
    pub(crate) fn replication_scratch_dir(&self) -> PathBuf {
        self.registry.node_host_dir.join("replication")
    }
}

/// A running node's handles, for the REST endpoints.
pub struct Node {
    pub ctx: Arc<Context>,
    pub follower: Option<Arc<Follower>>,
}

/// A follower cluster's path for client writes: the leader cluster.
struct ForwardToLeader(Arc<Follower>);

#[tonic::async_trait]
impl Upstream for ForwardToLeader {
    async fn write(
        &self,
        table: &str,
        cmd: Command,
    ) -> std::result::Result<Forwarded, tonic::Status> {
        let (applied, epoch) = self.0.forward_write(table, cmd).await?;
        Ok(Forwarded { applied, epoch })
    }

    fn channel(&self) -> tonic::transport::Channel {
        self.0.leader_channel()
    }
}

pub async fn serve(
    cfg: NodeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let registry = Registry::open(cfg.registry.clone()).await?;
    // Copies streamed to or from other clusters live only as long as their
    // stream or recovery: whatever a crash left there is garbage.
    match std::fs::remove_dir_all(cfg.replication_scratch_dir()) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    let follower = match &cfg.follow {
        Some(f) => Some(Follower::new(
            f.clone(),
            registry.clone(),
            cfg.replication_scratch_dir(),
        )?),
        None => None,
    };
    let group = cfg.group();
    let peer_scheme = if cfg.raft_tls.is_some() {
        "https"
    } else {
        "http"
    };
    let members: BTreeMap<NodeId, Member> = group
        .voters()
        .iter()
        .map(|(id, node)| {
            let peer_url = format!("{}://{}", peer_scheme, node.addr);
            let member = Member {
                id: member_id(*id, &peer_url),
                name: String::new(),
                client_urls: Vec::new(),
                peer_urls: vec![peer_url],
            };
            (*id, member)
        })
        .collect();
    let cluster_id = stable_id(&format!(
        "armada-cluster/{}",
        members
            .iter()
            .map(|(id, m)| format!("{id}={}", m.peer_urls[0]))
            .collect::<Vec<_>>()
            .join(",")
    ));
    let me = Member {
        name: cfg.name.clone(),
        client_urls: vec![cfg.api_advertise.clone()],
        ..members[&group.node_id].clone()
    };
    let ctx = Arc::new(Context {
        upstream: follower
            .clone()
            .map(|f| Arc::new(ForwardToLeader(f)) as Arc<dyn Upstream>),
        registry: registry.clone(),
        default_table: cfg.default_table.clone(),
        max_tables: cfg.max_tables,
        send_limit: group.send_limit,
        cluster_id,
        node_id: group.node_id,
        member: me.clone(),
        members,
        version: ETCD_VERSION,
        min_lease_ttl: min_lease_ttl(group.election_ms),
        lease_ids: IdGen::new(me.id),
        metrics: ApiMetrics::default(),
    });

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let wait_stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    let raft = tonic::transport::Server::builder()
        .add_service(
            RaftServer::new(RaftService {
                registry: registry.clone(),
            })
            .max_decoding_message_size(MAX_RAFT_MESSAGE)
            .max_encoding_message_size(MAX_RAFT_MESSAGE),
        )
        .serve_with_incoming_shutdown(
            tls::bind(cfg.raft_listen, cfg.raft_tls.clone())
                .await?
                .into_stream(),
            wait_stop(stop_rx.clone()),
        );
    tokio::spawn(bootstrap(
        registry.clone(),
        // A follower cluster mirrors the leader's tables, default included.
        (cfg.follow.is_none()).then(|| cfg.default_table.clone()),
        MemberInfo {
            name: me.name,
            client_urls: me.client_urls,
        },
        stop_rx.clone(),
    ));

    if let Some(f) = &follower {
        tokio::spawn(f.clone().run(stop_rx.clone()));
    }
    let rest = rest::serve(
        tls::bind(cfg.rest_listen, cfg.rest_tls.clone()).await?,
        Arc::new(Node {
            ctx: ctx.clone(),
            follower: follower.clone(),
        }),
        cfg.rest_read_timeout,
        wait_stop(stop_rx.clone()),
    );
    let grpc = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(7200)))
        .max_concurrent_streams(cfg.max_concurrent_streams)
        .add_service(kv_server(&ctx))
        .add_service(
            MaintenanceServer::new(MaintenanceService { ctx: ctx.clone() })
                .max_decoding_message_size(MAX_GRPC_RECV_BYTES),
        )
        .add_service(
            ClusterServer::new(ClusterService { ctx: ctx.clone() })
                .max_decoding_message_size(MAX_GRPC_RECV_BYTES),
        )
        .add_service(WatchServer::new(
            WatchService {
                ctx: ctx.clone(),
                progress_interval: cfg.watch_progress_interval,
                stop: stop_rx.clone(),
            },
            MAX_GRPC_RECV_BYTES,
        ))
        .add_service(lease_server(&ctx))
        .add_service(LockServer::new(LockService { ctx: ctx.clone() }))
        .add_service(ElectionServer::new(ElectionService { ctx: ctx.clone() }))
        .add_service(TablesServer::new(TablesService { ctx: ctx.clone() }))
        .add_service(ReplicationServer::new(StatusService {
            registry: registry.clone(),
            follower: follower.clone(),
        }))
        .serve_with_incoming_shutdown(
            api_incoming(cfg.api_listen, cfg.api_tls.clone()).await?,
            wait_stop(stop_rx.clone()),
        );
    let replication = serve_replication(&cfg, &ctx, wait_stop(stop_rx.clone()));
    tracing::info!(
        api = %cfg.api_listen, rest = %cfg.rest_listen, raft = %cfg.raft_listen,
        replication = ?cfg.replication.as_ref().map(|r| r.listen),
        leader = ?cfg.follow.as_ref().map(|f| &f.leader_address),
        "armada {} serving etcd",
        if cfg.follow.is_some() { "follower" } else { "leader" }
    );
    let (grpc, rest, raft, replication) = tokio::join!(grpc, rest, raft, replication);
    registry.shutdown().await;
    grpc.map_err(|e| Error::Internal(format!("gRPC server: {e}")))?;
    raft.map_err(|e| Error::Internal(format!("raft transport: {e}")))?;
    replication?;
    rest
}

/// etcd's KV service with etcd's message limits (the API port, and the
/// replication port for follower clusters' forwarded writes).
/// Responses over `--api.max-send-bytes` are refused before they are
/// built (see `kv::range::SendBudget`); the encoder's limit catches the
/// header bytes filled in after that check.
fn kv_server(ctx: &Arc<Context>) -> KvServer<KvService> {
    let send_limit = usize::try_from(ctx.send_limit).unwrap_or(usize::MAX);
    KvServer::new(KvService { ctx: ctx.clone() })
        .max_decoding_message_size(MAX_GRPC_DECODE_BYTES)
        .max_encoding_message_size(send_limit)
}

fn lease_server(ctx: &Arc<Context>) -> LeaseServer<LeaseService> {
    LeaseServer::new(LeaseService { ctx: ctx.clone() })
        .max_decoding_message_size(MAX_GRPC_DECODE_BYTES)
}

/// etcd's minimum lease TTL (`minTTL` in etcd's `NewServer`): 1.5 election
/// timeouts, rounded up to whole seconds.
fn min_lease_ttl(election_ms: u64) -> i64 {
    (3 * election_ms / 2).div_ceil(1000) as i64
}

/// The replication API for follower clusters, when enabled.
async fn serve_replication(
    cfg: &NodeConfig,
    ctx: &Arc<Context>,
    stop: impl Future<Output = ()>,
) -> Result<()> {
    let Some(serve) = &cfg.replication else {
        return Ok(());
    };
    let service = LeaderService::new(
        ctx.registry.clone(),
        serve.max_send,
        cfg.replication_scratch_dir(),
    );
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &serve.tls {
        let id = tls.identity.as_ref().ok_or_else(|| {
            Error::InvalidInput(
                "serving replication over TLS needs --replication.cert-filename and \
                 --replication.key-filename"
                    .into(),
            )
        })?;
        let mut config = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(&id.cert, &id.key));
        if let Some(ca) = &tls.ca {
            // mTLS: a follower must present a certificate signed by `ca`.
            config = config.client_ca_root(tonic::transport::Certificate::from_pem(ca));
        }
        builder = builder
            .tls_config(config)
            .map_err(|e| Error::InvalidInput(format!("replication TLS: {e}")))?;
    }
    builder
        .add_service(MetadataServer::new(service.clone()))
        .add_service(LogServer::new(service.clone()).max_encoding_message_size(usize::MAX))
        .add_service(SnapshotServer::new(service).max_encoding_message_size(usize::MAX))
        // Writes and lease calls forwarded by follower clusters, as from
        // any etcd client.
        .add_service(kv_server(ctx))
        .add_service(lease_server(ctx))
        .add_service(
            MaintenanceServer::new(MaintenanceService { ctx: ctx.clone() })
                .max_decoding_message_size(MAX_GRPC_RECV_BYTES),
        )
        .serve_with_shutdown(serve.listen, stop)
        .await
        .map_err(|e| Error::Internal(format!("replication API: {e}")))
}

/// Once the metadata group has a raft leader: records how clients reach
/// this node, and creates the default table unless it exists. Retries until
/// both are done (a node may start before a quorum of its peers).
async fn bootstrap(
    registry: Arc<Registry>,
    default_table: Option<String>,
    info: MemberInfo,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(50);
    while !*stop.borrow() {
        let done = async {
            // Member info first: a node whose default table exists is complete.
            registry.register_member(&info).await?;
            match &default_table {
                Some(table) => registry.ensure(table).await,
                None => Ok(()),
            }
        };
        match done.await {
            Ok(()) => return,
            Err(e) => tracing::debug!("bootstrap (default table, member info): {e}"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// The etcd port's connections (TLS when configured), each behind
/// [`authority::LenientAuthority`] so that etcd 3.4 clients' `http://`
/// authorities are accepted. The rewriter reads HTTP/2 frames, so it sits
/// above TLS: TCP, then TLS, then the rewriter, then tonic.
async fn api_incoming(
    addr: SocketAddr,
    tls: Option<Arc<ServerConfig>>,
) -> Result<impl futures::Stream<Item = std::io::Result<authority::LenientAuthority<tls::Conn>>>> {
    use futures::StreamExt;
    let incoming = tls::bind(addr, tls).await?.into_stream();
    Ok(incoming.map(|conn| conn.map(authority::LenientAuthority::new)))
}
