//! The TLS flags of each port (`--<port>.address` with
//! `--<port>.{cert,key,ca}-filename`): which combinations are allowed, and
//! the rustls server configuration they make. Files are read only by
//! [`server_tls`]; the rest checks the flags.

use std::path::PathBuf;
use std::sync::Arc;

use tokio_rustls::rustls;

use crate::error::{Error, Result};
use crate::tls::TlsPaths;

/// Whether a port serves TLS, from its address and certificate flags
/// (`--<port>.address`, `--<port>.{cert,key,ca}-filename`): `https://` needs
/// a certificate and key, `http://` refuses them, and a bare `host:port`
/// follows the certificate flags. Checks the flags only; files are read later.
pub(super) fn port_tls(
    port: &str,
    address: &str,
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
    ca: &Option<PathBuf>,
) -> Result<Option<TlsPaths>> {
    let paths = match (cert, key) {
        (Some(cert), Some(key)) => Some(TlsPaths {
            cert: cert.clone(),
            key: key.clone(),
            ca: ca.clone(),
        }),
        (None, None) if ca.is_none() => None,
        (None, None) => {
            return Err(Error::InvalidInput(format!(
            "--{port}.ca-filename needs TLS: set --{port}.cert-filename and --{port}.key-filename"
        )))
        }
        _ => {
            return Err(Error::InvalidInput(format!(
                "--{port}.cert-filename and --{port}.key-filename go together"
            )))
        }
    };
    if address.starts_with("https://") && paths.is_none() {
        return Err(Error::InvalidInput(format!(
            "--{port}.address {address:?} is https:// but --{port}.cert-filename and --{port}.key-filename are not set"
        )));
    }
    if address.starts_with("http://") && paths.is_some() {
        return Err(Error::InvalidInput(format!(
            "--{port}.address {address:?} is http:// but TLS certificate flags are set: write it https://"
        )));
    }
    Ok(paths)
}

/// The server configuration of a port's TLS, its files read (errors name the port's flags).
pub(super) fn server_tls(
    port: &str,
    paths: Option<TlsPaths>,
    alpn: &[&[u8]],
) -> Result<Option<Arc<rustls::ServerConfig>>> {
    paths
        .map(|p| {
            crate::tls::server_config(&p, alpn)
                .map_err(|e| Error::InvalidInput(format!("--{port}.*-filename: {e}")))
        })
        .transpose()
}

/// The Raft port's TLS files: all three flags or none (Raft TLS is mutual).
pub(super) fn raft_tls(
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
    ca: &Option<PathBuf>,
) -> Result<Option<TlsPaths>> {
    Ok(match (cert, key, ca) {
            (None, None, None) => None,
            (Some(cert), Some(key), Some(ca)) => Some(TlsPaths {
                cert: cert.clone(),
                key: key.clone(),
                ca: Some(ca.clone()),
            }),
            _ => {
                return Err(Error::InvalidInput(
                    "--raft.cert-filename, --raft.key-filename and --raft.ca-filename go together (Raft TLS is mutual)"
                        .into(),
                ))
            }
        })
}
