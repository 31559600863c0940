//! TLS for the API, REST and Raft ports: rustls server and client
//! configurations built from PEM files, a certificate source that re-reads
//! the certificate and key when the files change (certificates rotate
//! without a restart, as Regatta's do), the accept loop that turns a TCP
//! listener into plain or TLS connections, and the connector the Raft client
//! dials its peers with.
//!
//! A leaf utility at the crate root, like `error`: the server layer uses it
//! for its listeners and the raft layer for its peer connections, and it
//! depends on neither (raft must not depend on server).
//!
//! What reloads: the certificate chain and private key, checked at most once
//! per [`RELOAD_CHECK`] on the next handshake. The CA a peer's certificate
//! must chain to is read once at start.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::ResolvesClientCert;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig, SignatureScheme};
use tonic::codegen::http::Uri;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::error::{Error, Result};

/// The longest a changed certificate file goes unnoticed: a handshake checks
/// the files' metadata when the last check is older than this, so a busy
/// port stats them at most once a second.
pub(crate) const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// A TLS handshake that takes longer is dropped, so a client that connects
/// and sends nothing cannot hold a handshake task forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// ALPN of gRPC (the API and Raft ports); grpc-go clients require it.
pub(crate) const ALPN_H2: &[u8] = b"h2";
/// ALPN of the REST port (axum serves HTTP/1.1 only).
pub(crate) const ALPN_HTTP1: &[u8] = b"http/1.1";

/// PEM files of one port: its certificate chain and key, and the CA the
/// other side's certificate must chain to.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct TlsPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: Option<PathBuf>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn invalid(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::InvalidInput(format!("{}: {e}", path.display()))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).map_err(|e| invalid(path, e))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| invalid(path, e))?;
    if certs.is_empty() {
        return Err(invalid(path, "no PEM certificate in the file"));
    }
    Ok(certs)
}

fn read_roots(path: &Path) -> Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path)? {
        roots.add(cert).map_err(|e| invalid(path, e))?;
    }
    Ok(Arc::new(roots))
}

/// Reads a certificate chain and its private key, and checks that they belong together.
fn load_certified(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey> {
    let chain = read_certs(cert)?;
    let pem = std::fs::read(key).map_err(|e| invalid(key, e))?;
    let der = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| invalid(key, e))?;
    CertifiedKey::from_der(chain, der, provider)
        .map_err(|e| Error::InvalidInput(format!("{} with {}: {e}", cert.display(), key.display())))
}

/// What identifies one version of a file: mtime, size and inode (a file
/// replaced by rename has a new inode even with an equal mtime).
type Stamp = Option<(SystemTime, u64, u64)>;

fn stamp(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

/// A certificate and key that follow their files on disk; the server and
/// client certificate source of every TLS port.
pub(crate) struct CertReloader {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: Mutex<Current>,
}

struct Current {
    key: Arc<CertifiedKey>,
    /// The files' stamps when `key` was read.
    stamps: [Stamp; 2],
    /// Stamps whose files did not load: warned about once, not retried.
    failed: Option<[Stamp; 2]>,
    checked: Instant,
}

impl CertReloader {
    /// Reads the files now: a bad certificate or key fails at start, not at
    /// the first handshake.
    pub(crate) fn new(cert: &Path, key: &Path, provider: Arc<CryptoProvider>) -> Result<Arc<Self>> {
        // Stamps first: a change while reading is seen by the next check.
        let stamps = [stamp(cert), stamp(key)];
        let loaded = load_certified(cert, key, &provider)?;
        Ok(Arc::new(CertReloader {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            provider,
            current: Mutex::new(Current {
                key: Arc::new(loaded),
                stamps,
                failed: None,
                checked: Instant::now(),
            }),
        }))
    }

    /// The certificate to present, re-read first if its files changed. A
    /// change that does not load (a key not yet replaced, a half-written
    /// file) keeps the previous certificate until the files change again.
    pub(crate) fn current(&self) -> Arc<CertifiedKey> {
        let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if cur.checked.elapsed() >= RELOAD_CHECK {
            cur.checked = Instant::now();
            let stamps = [stamp(&self.cert), stamp(&self.key)];
            if stamps != cur.stamps && Some(stamps) != cur.failed {
                match load_certified(&self.cert, &self.key, &self.provider) {
                    Ok(loaded) => {
                        tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                        cur.key = Arc::new(loaded);
                        cur.stamps = stamps;
                        cur.failed = None;
                    }
                    Err(e) => {
                        tracing::warn!(
                            "TLS certificate not reloaded, keeping the previous one: {e}"
                        );
                        cur.failed = Some(stamps);
                    }
                }
            }
        }
        cur.key.clone()
    }
}

impl std::fmt::Debug for CertReloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Paths only: never print key material.
        f.debug_struct("CertReloader")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish()
    }
}

impl ResolvesServerCert for CertReloader {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl ResolvesClientCert for CertReloader {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A server configuration presenting `paths.cert`; with `paths.ca`, every
/// client must present a certificate signed by that CA.
pub(crate) fn server_config(paths: &TlsPaths, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>> {
    let provider = provider();
    let certs = CertReloader::new(&paths.cert, &paths.key, provider.clone())?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::InvalidInput(format!("TLS: {e}")))?;
    let builder = match &paths.ca {
        Some(ca) => builder.with_client_cert_verifier(
            WebPkiClientVerifier::builder_with_provider(read_roots(ca)?, provider)
                .build()
                .map_err(|e| invalid(ca, e))?,
        ),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(certs);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// A client configuration for mutual TLS: presents `paths.cert` and accepts
/// only a server certificate signed by `paths.ca` for the dialled host.
pub(crate) fn client_config(paths: &TlsPaths) -> Result<Arc<ClientConfig>> {
    let ca = paths.ca.as_ref().ok_or_else(|| {
        Error::InvalidInput("TLS client: a CA is needed to check the server".into())
    })?;
    let provider = provider();
    let certs = CertReloader::new(&paths.cert, &paths.key, provider.clone())?;
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::InvalidInput(format!("TLS: {e}")))?
        .with_root_certificates(read_roots(ca)?)
        .with_client_cert_resolver(certs);
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// One accepted connection: plain TCP, or TLS over TCP.
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => s.get_ref().0,
        }
    }
}

/// Delegates an `AsyncRead`/`AsyncWrite` method to whichever stream `$self` holds.
macro_rules! delegate {
    ($self:ident, $s:ident => $call:expr) => {
        match $self.get_mut() {
            Conn::Plain($s) => $call,
            Conn::Tls($s) => $call,
        }
    };
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.tcp().connect_info()
    }
}

/// The connections of one listening port, TLS handshakes (if any) done.
pub struct Incoming {
    rx: mpsc::Receiver<(Conn, SocketAddr)>,
    local: SocketAddr,
}

/// Listens on `addr`; with `tls`, every connection is a TLS server
/// connection. Handshakes run concurrently, off the accept loop, so one slow
/// client delays nobody else; a failed handshake is dropped (and logged at
/// debug: scanners and refused clients are not the server's trouble).
pub(crate) async fn bind(addr: SocketAddr, tls: Option<Arc<ServerConfig>>) -> Result<Incoming> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    // A small queue: accepted connections wait here only until the server's
    // own loop takes them.
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(accept_loop(
        listener,
        tls.map(tokio_rustls::TlsAcceptor::from),
        tx,
    ));
    Ok(Incoming { rx, local })
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    tx: mpsc::Sender<(Conn, SocketAddr)>,
) {
    loop {
        let accepted = tokio::select! {
            _ = tx.closed() => return, // the server stopped
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: pause rather than
                // spin, as Go's http.Server does.
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true); // latency only; never worth refusing the connection
        let Some(acceptor) = &tls else {
            if tx.send((Conn::Plain(tcp), peer)).await.is_err() {
                return;
            }
            continue;
        };
        let (acceptor, tx) = (acceptor.clone(), tx.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(conn)) => {
                    let _ = tx.send((Conn::Tls(Box::new(conn)), peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

impl Incoming {
    /// The connections as tonic's `serve_with_incoming` takes them.
    pub(crate) fn into_stream(self) -> impl futures::Stream<Item = io::Result<Conn>> {
        use futures::StreamExt;
        tokio_stream::wrappers::ReceiverStream::new(self.rx).map(|(conn, _)| Ok(conn))
    }
}

impl axum::serve::Listener for Incoming {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            // The accept loop only ends when this receiver is gone.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// Dials `host:port` of a URI and runs a TLS client handshake over it, for
/// tonic's `Endpoint::connect_with_connector`. The server's certificate is
/// checked against the URI's host (an IP address or a DNS name).
#[derive(Clone)]
pub(crate) struct TlsConnector(pub(crate) Arc<ClientConfig>);

type Dialed = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;

/// A [`TlsConnector`] dial that failed before any request could be sent
/// (TCP connect or TLS handshake): callers may retry elsewhere.
#[derive(Debug)]
pub(crate) struct ConnectFailed(io::Error);

impl std::fmt::Display for ConnectFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "connect error: {}", self.0)
    }
}

impl std::error::Error for ConnectFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

impl tonic::codegen::Service<Uri> for TlsConnector {
    type Response = Dialed;
    type Error = ConnectFailed;
    type Future = Pin<Box<dyn Future<Output = Result<Dialed, ConnectFailed>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ConnectFailed>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let config = self.0.clone();
        Box::pin(async move {
            let bad = || {
                ConnectFailed(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("bad peer URI {uri}"),
                ))
            };
            // IPv6 hosts come bracketed in a URI, and bare in a server name.
            let host = uri
                .host()
                .ok_or_else(bad)?
                .trim_matches(['[', ']'])
                .to_string();
            let port = uri.port_u16().ok_or_else(bad)?;
            let name = ServerName::try_from(host.clone()).map_err(|_| bad())?;
            // The raft client reads ConnectFailed as "the request was never
            // sent" (see raft::network::CallError).
            let tcp = TcpStream::connect((host.as_str(), port))
                .await
                .map_err(ConnectFailed)?;
            let _ = tcp.set_nodelay(true);
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(ConnectFailed)?;
            Ok(TokioIo::new(tls))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a fresh self-signed certificate and its key to `cert` and
    /// `key` (each by rename, as a certificate manager does), and returns
    /// the certificate's DER.
    fn write_pair(cert: &Path, key: &Path, cn: &str) -> Vec<u8> {
        let pair = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let c = params.self_signed(&pair).unwrap();
        for (path, text) in [(key, pair.serialize_pem()), (cert, c.pem())] {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, path).unwrap();
        }
        c.der().to_vec()
    }

    /// Polls `reloader` (as handshakes would) until it presents `der`.
    fn wait_for(reloader: &CertReloader, der: &[u8]) -> bool {
        let deadline = Instant::now() + 10 * RELOAD_CHECK;
        while Instant::now() < deadline {
            if reloader.current().cert[0].as_ref() == der {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20)); // a poll interval, not a wait for time to pass
        }
        false
    }

    #[test]
    fn follows_the_files_and_keeps_the_old_pair_when_the_new_one_is_broken() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        let first = write_pair(&cert, &key, "first");
        let reloader = CertReloader::new(&cert, &key, provider()).unwrap();
        assert_eq!(reloader.current().cert[0].as_ref(), first);

        let second = write_pair(&cert, &key, "second");
        assert!(
            wait_for(&reloader, &second),
            "the new pair was not picked up"
        );

        // A key that is not the certificate's: the previous pair stays.
        let stale_key = std::fs::read(&key).unwrap();
        write_pair(&cert, &dir.path().join("other.pem"), "third");
        let before = Instant::now();
        while before.elapsed() < 2 * RELOAD_CHECK {
            assert_eq!(reloader.current().cert[0].as_ref(), second);
            std::thread::sleep(Duration::from_millis(20)); // a poll interval, not a wait for time to pass
        }
        assert_eq!(std::fs::read(&key).unwrap(), stale_key);
        // Once both files agree again, the new pair is served.
        let fourth = write_pair(&cert, &key, "fourth");
        assert!(wait_for(&reloader, &fourth));
    }
}
