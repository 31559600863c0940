//! TLS on every port, with certificates made at run time (rcgen): the etcd
//! API port for etcdctl and the `etcd-client` crate, client certificates
//! required by `--api.ca-filename`, mutual TLS between Raft peers (a peer
//! without a certificate of the cluster's CA is refused), REST over TLS, and
//! a certificate replaced on disk being served without a restart.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use armada::pb::etcdserverpb::kv_client::KvClient;
use armada::pb::etcdserverpb::{PutRequest, RangeRequest};
use armada::pb::raft::raft_client::RaftClient;
use armada::pb::raft::GroupRequest;
use common::{local_keys, wait_until, Cluster, Ports, Server};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// A certificate authority that signs leaf certificates into `dir`.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
    dir: PathBuf,
    name: String,
}

/// A leaf certificate's files and its DER (to compare with what a server presents).
struct Leaf {
    cert: PathBuf,
    key: PathBuf,
    der: Vec<u8>,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        Ca {
            cert,
            key,
            dir: dir.to_path_buf(),
            name: name.to_string(),
        }
    }

    fn pem_path(&self) -> PathBuf {
        self.dir.join(format!("{}.pem", self.name))
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A certificate for 127.0.0.1 good for both server and client auth,
    /// written to `<file>.pem` and `<file>.key`.
    fn leaf(&self, cn: &str, file: &str) -> Leaf {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let leaf = Leaf {
            cert: self.dir.join(format!("{file}.pem")),
            key: self.dir.join(format!("{file}.key")),
            der: cert.der().to_vec(),
        };
        // Written aside and renamed into place, as a certificate manager
        // does: a reader never sees half a file.
        for (path, text) in [(&leaf.key, key.serialize_pem()), (&leaf.cert, cert.pem())] {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, path).unwrap();
        }
        leaf
    }
}

fn flag(name: &str, path: &Path) -> String {
    format!("--{name}={}", path.display())
}

/// etcdctl 3.4 against `endpoint` with extra flags; (success, stdout+stderr).
fn etcdctl(endpoint: &str, extra: &[String], args: &[&str]) -> (bool, String) {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(["--dial-timeout=2s", "--command-timeout=5s"])
        .args(extra)
        .args(args)
        .output()
        .expect("run etcdctl (Debian's etcd-client package)");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// The certificate a TLS server on `port` presents (DER), trusting `ca`.
async fn presented_cert(port: u16, ca: &Ca, alpn: &[u8]) -> std::io::Result<Vec<u8>> {
    let conn = tls_connect(port, ca, alpn).await?;
    let (_, session) = conn.get_ref();
    Ok(session.peer_certificates().unwrap()[0].to_vec())
}

async fn tls_connect(
    port: u16,
    ca: &Ca,
    alpn: &[u8],
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert.der().clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

fn client_tls(ca: &Ca, client: Option<&Leaf>) -> ClientTlsConfig {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca.pem()));
    if let Some(c) = client {
        tls = tls.identity(Identity::from_pem(
            std::fs::read(&c.cert).unwrap(),
            std::fs::read(&c.key).unwrap(),
        ));
    }
    tls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_and_rest_over_tls_serve_etcdctl_and_etcd_client() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let api = ca.leaf("api", "api");
    let rest = ca.leaf("rest", "rest");
    let ports = Ports::pick();
    let api_addr = format!("--api.address=https://127.0.0.1:{}", ports.api);
    let rest_addr = format!("--rest.address=https://127.0.0.1:{}", ports.rest);
    let args = [
        api_addr,
        flag("api.cert-filename", &api.cert),
        flag("api.key-filename", &api.key),
        rest_addr,
        flag("rest.cert-filename", &rest.cert),
        flag("rest.key-filename", &rest.key),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server =
        Server::start(&dir.path().join("data"), ports, &args).with_tls(client_tls(&ca, None));
    server.ready().await;
    let endpoint = server.endpoint.clone();
    assert!(endpoint.starts_with("https://"));

    let cacert = vec![flag("cacert", &ca.pem_path())];
    let (ok, out) = etcdctl(&endpoint, &cacert, &["put", "foo", "bar"]);
    assert!(ok, "etcdctl put over TLS: {out}");
    let (ok, out) = etcdctl(&endpoint, &cacert, &["get", "foo"]);
    assert!(ok && out == "foo\nbar\n", "etcdctl get over TLS: {out}");
    // The member's client URL is advertised as https.
    let (ok, out) = etcdctl(&endpoint, &cacert, &["member", "list"]);
    assert!(ok && out.contains(&endpoint), "member list: {out}");
    // Not trusting the server's CA, etcdctl refuses the server.
    let (ok, out) = etcdctl(&endpoint, &[], &["get", "foo"]);
    assert!(!ok, "etcdctl without --cacert succeeded: {out}");
    eprintln!("refused as expected: {}", out.trim());
    // Plain HTTP/2 to the TLS port gets nowhere.
    let (ok, out) = etcdctl(
        &format!("http://127.0.0.1:{}", ports.api),
        &[],
        &["get", "foo"],
    );
    assert!(!ok, "plaintext etcdctl to the TLS port succeeded: {out}");
    eprintln!("refused as expected: {}", out.trim());

    // The Rust etcd-client crate over TLS.
    let options = etcd_client::ConnectOptions::new().with_tls(
        etcd_client::TlsOptions::new().ca_certificate(etcd_client::Certificate::from_pem(ca.pem())),
    );
    let mut client = etcd_client::Client::connect([endpoint.as_str()], Some(options))
        .await
        .unwrap();
    client.put("rust", "client", None).await.unwrap();
    let got = client.get("foo", None).await.unwrap();
    assert_eq!(got.kvs()[0].value(), b"bar");

    // REST over TLS (HTTP/1.1): /healthz once the node has a raft leader.
    let body = wait_until("/healthz over TLS", Duration::from_secs(30), async || {
        let mut conn = tls_connect(ports.rest, &ca, b"http/1.1").await.ok()?;
        let req = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
        conn.write_all(req.as_bytes()).await.ok()?;
        let mut raw = String::new();
        // A TLS server may close without close_notify; what was read counts.
        let _ = conn.read_to_string(&mut raw).await;
        raw.starts_with("HTTP/1.1 200").then_some(raw)
    })
    .await;
    assert!(body.contains("ok revision="), "{body}");
    assert_eq!(
        presented_cert(ports.rest, &ca, b"http/1.1").await.unwrap(),
        rest.der
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_ca_requires_client_certificates_of_that_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let other_ca = Ca::new(dir.path(), "other-ca");
    let api = ca.leaf("api", "api");
    let client = ca.leaf("client", "client");
    let stranger = other_ca.leaf("client", "stranger");
    let ports = Ports::pick();
    let args = [
        format!("--api.address=https://127.0.0.1:{}", ports.api),
        flag("api.cert-filename", &api.cert),
        flag("api.key-filename", &api.key),
        flag("api.ca-filename", &ca.pem_path()),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start(&dir.path().join("data"), ports, &args)
        .with_tls(client_tls(&ca, Some(&client)));
    server.ready().await;
    let endpoint = server.endpoint.clone();

    let with = |leaf: &Leaf| {
        vec![
            flag("cacert", &ca.pem_path()),
            flag("cert", &leaf.cert),
            flag("key", &leaf.key),
        ]
    };
    let (ok, out) = etcdctl(&endpoint, &with(&client), &["put", "k", "v"]);
    assert!(ok, "etcdctl with a client certificate: {out}");
    let (ok, out) = etcdctl(
        &endpoint,
        &with(&client),
        &["get", "k", "--print-value-only"],
    );
    assert!(ok && out == "v\n", "{out}");
    let (ok, out) = etcdctl(&endpoint, &[flag("cacert", &ca.pem_path())], &["get", "k"]);
    assert!(!ok, "etcdctl without a client certificate succeeded: {out}");
    eprintln!("refused as expected: {}", out.trim());
    // Armada's own table command, with etcdctl's TLS flags.
    let tables = Command::new(env!("CARGO_BIN_EXE_armada"))
        .args(["table", "list", "--endpoint", &endpoint])
        .args(with(&client))
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&tables.stdout);
    assert!(
        tables.status.success() && listed.starts_with("default\t"),
        "armada table list over TLS: {listed} {}",
        String::from_utf8_lossy(&tables.stderr)
    );
    let (ok, out) = etcdctl(&endpoint, &with(&stranger), &["get", "k"]);
    assert!(
        !ok,
        "etcdctl with another CA's certificate succeeded: {out}"
    );
    eprintln!("refused as expected: {}", out.trim());
}

/// A raft call straight to a raft port, as a peer would make it; `Ok` means
/// the node's raft service answered (here, that it has no such group).
async fn raw_raft_call(port: u16, tls: Option<ClientTlsConfig>) -> Result<tonic::Code, String> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://127.0.0.1:{port}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5));
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).unwrap();
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    let reply = RaftClient::new(channel)
        .vote(GroupRequest {
            group: "no-such-group".into(),
            payload: Vec::new(),
        })
        .await;
    match reply {
        Err(s) if s.code() == tonic::Code::NotFound && s.message().contains("no raft group") => {
            Ok(s.code())
        }
        other => Err(format!("{other:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_mutual_tls_elects_replicates_and_refuses_strangers() {
    let certs = tempfile::tempdir().unwrap();
    let ca = Ca::new(certs.path(), "raft-ca");
    let other_ca = Ca::new(certs.path(), "other-ca");
    let node = ca.leaf("node", "node");
    let stranger = other_ca.leaf("node", "stranger");
    let args = [
        flag("raft.cert-filename", &node.cert),
        flag("raft.key-filename", &node.key),
        flag("raft.ca-filename", &ca.pem_path()),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let cluster = Cluster::start(3, &args);
    let leader = cluster.wait_leader().await;
    let follower = if leader == 1 { 2 } else { 1 };
    KvClient::new(cluster.channel(follower).await)
        .put(PutRequest {
            key: b"over".to_vec(),
            value: b"mtls".to_vec(),
            ..Default::default()
        })
        .await
        .expect("a write through a raft follower (forwarded over mTLS)");
    for id in 1..=3 {
        let ch = cluster.channel(id).await;
        wait_until(
            "the write on every node",
            Duration::from_secs(30),
            async || {
                let keys = local_keys(&ch, "over").await;
                (keys.get("over").map(String::as_str) == Some("mtls")).then_some(())
            },
        )
        .await;
    }
    let (ok, out) = etcdctl(&cluster.endpoint(1), &[], &["member", "list"]);
    assert!(
        ok && out.matches("https://127.0.0.1:").count() == 3,
        "peer URLs: {out}"
    );

    let port = cluster.server(leader).ports.raft;
    // The control: a client with a certificate of the cluster's CA reaches
    // the raft service, which answers for itself.
    raw_raft_call(port, Some(client_tls(&ca, Some(&node))))
        .await
        .expect("raft call with the cluster's certificate");
    // No client certificate, another CA's certificate, or no TLS at all: refused.
    for (what, tls) in [
        ("no client certificate", Some(client_tls(&ca, None))),
        (
            "another CA's certificate",
            Some(client_tls(&ca, Some(&stranger))),
        ),
        ("plaintext", None),
    ] {
        let refused = raw_raft_call(port, tls).await;
        assert!(refused.is_err(), "{what}: raft port answered");
        eprintln!("{what}: refused: {}", refused.unwrap_err());
    }
    // The cluster still agrees after the strangers were turned away.
    let reads = KvClient::new(cluster.channel(leader).await)
        .range(RangeRequest {
            key: b"over".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reads.kvs[0].value, b"mtls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_certificate_replaced_on_disk_is_served_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let first = ca.leaf("api-1", "api");
    let ports = Ports::pick();
    let args = [
        format!("--api.address=https://127.0.0.1:{}", ports.api),
        flag("api.cert-filename", &first.cert),
        flag("api.key-filename", &first.key),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server =
        Server::start(&dir.path().join("data"), ports, &args).with_tls(client_tls(&ca, None));
    let ch = server.ready().await;
    assert_eq!(
        presented_cert(ports.api, &ca, b"h2").await.unwrap(),
        first.der
    );
    let pid = server.pid();

    // Same paths, new key and certificate.
    let second = ca.leaf("api-2", "api");
    assert_ne!(first.der, second.der);
    wait_until(
        "the new certificate presented",
        Duration::from_secs(20),
        async || {
            let der = presented_cert(ports.api, &ca, b"h2").await.ok()?;
            (der == second.der).then_some(())
        },
    )
    .await;
    assert_eq!(server.pid(), pid);
    // Connections made before the change keep working, and new ones too.
    KvClient::new(ch)
        .put(PutRequest {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
    let fresh = server.ready().await;
    let got = KvClient::new(fresh)
        .range(RangeRequest {
            key: b"k".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.kvs[0].value, b"v");
}
