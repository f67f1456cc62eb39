//! TLS on the component link (issue 12): the trust anchors and the name the
//! server's certificate must carry, made once when the config is loaded so
//! that `--check-config` finds an unreadable CA file or a bad name, not the
//! first connection.
//!
//! The link is direct TLS: the socket starts with a TLS handshake and the
//! XEP-0114 stream runs inside it, which is what ejabberd's
//! `ejabberd_service` with `tls: true` and Prosody's `ssl_ports`
//! (mod_net_multiplex) expect. The server's name is always verified: there
//! is no switch to skip it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

/// Why the TLS settings could not be made; the config names the key.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a PEM file of certificates: {message}")]
    Pem { path: PathBuf, message: String },
    #[error(
        "{path} holds no certificate (expected one or more -----BEGIN CERTIFICATE----- blocks)"
    )]
    NoCertificate { path: PathBuf },
    #[error("certificate {index} in {path} cannot be a trust anchor: {source}")]
    BadAnchor {
        path: PathBuf,
        index: usize,
        source: rustls::Error,
    },
    #[error(
        "no system root certificates were found (install Debian's ca-certificates, or give the CA that signed the server's certificate in component.ca_file)"
    )]
    NoSystemRoots,
    #[error("{name:?} is not a DNS name or an IP address")]
    BadServerName { name: String },
    #[error("cannot set up TLS: {0}")]
    Setup(#[from] rustls::Error),
}

/// What the component link needs to open TLS: verified against `roots`,
/// for `server_name`.
#[derive(Clone)]
pub struct LinkTls {
    /// The name the server's certificate must be valid for (DNS name or IP
    /// address); also sent as SNI when it is a DNS name. That of the first
    /// of `component.server`'s servers.
    pub server_name: ServerName<'static>,
    /// Each server's name (`component.server` may list a cluster's nodes,
    /// each with a certificate of its own name).
    names: Vec<(String, ServerName<'static>)>,
    /// Where the trust anchors came from, for the log.
    pub roots: RootsSource,
    pub client: Arc<ClientConfig>,
}

impl fmt::Debug for LinkTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkTls")
            .field("server_name", &self.server_name)
            .field("roots", &self.roots)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootsSource {
    /// `component.ca_file`: only the CAs in it are trusted.
    File(PathBuf),
    /// The operating system's store (rustls-native-certs).
    System,
}

impl fmt::Display for RootsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RootsSource::File(p) => write!(f, "{}", p.display()),
            RootsSource::System => f.write_str("the system's root certificates"),
        }
    }
}

/// A name for the server's certificate: a DNS name or an IP address.
pub fn server_name(name: &str) -> Result<ServerName<'static>, TlsConfigError> {
    ServerName::try_from(name.to_owned()).map_err(|_| TlsConfigError::BadServerName {
        name: name.to_owned(),
    })
}

/// The host of `host:port` (`[v6]:port` too), as the default server name.
pub fn host_of(server: &str) -> &str {
    let host = server.rsplit_once(':').map_or(server, |(h, _)| h);
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// The trust anchors of a PEM bundle: every certificate in it.
pub fn roots_from_file(path: &Path) -> Result<RootCertStore, TlsConfigError> {
    let pem = std::fs::read(path).map_err(|source| TlsConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut roots = RootCertStore::empty();
    for (index, cert) in CertificateDer::pem_slice_iter(&pem).enumerate() {
        let cert = cert.map_err(|e| TlsConfigError::Pem {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        roots
            .add(cert)
            .map_err(|source| TlsConfigError::BadAnchor {
                path: path.to_owned(),
                index: index + 1,
                source,
            })?;
    }
    if roots.is_empty() {
        return Err(TlsConfigError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(roots)
}

/// The operating system's trust anchors. Unreadable entries are skipped as
/// rustls-native-certs reports them; none at all is an error.
pub fn system_roots() -> Result<RootCertStore, TlsConfigError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        return Err(TlsConfigError::NoSystemRoots);
    }
    Ok(roots)
}

impl LinkTls {
    /// The client side: aws-lc-rs, rustls' default provider, which offers
    /// post-quantum key exchange (X25519MLKEM768) where the server has it,
    /// and which rustls deprecated ring's provider for. Named here rather
    /// than installed process-wide; rustls' safe protocol versions; no
    /// client certificate.
    /// `names`: each server (`host:port`) with the name its certificate
    /// must carry; at least one.
    pub fn new(
        names: Vec<(String, ServerName<'static>)>,
        roots: RootCertStore,
        source: RootsSource,
    ) -> Result<Self, TlsConfigError> {
        let server_name = names.first().map(|(_, name)| name.clone()).ok_or_else(|| {
            TlsConfigError::BadServerName {
                name: String::new(),
            }
        })?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(LinkTls {
            server_name,
            names,
            roots: source,
            client: Arc::new(client),
        })
    }
}

impl LinkTls {
    /// The name `server`'s certificate must be valid for.
    pub fn name_for(&self, server: &str) -> ServerName<'static> {
        self.names
            .iter()
            .find(|(s, _)| s == server)
            .map_or_else(|| self.server_name.clone(), |(_, name)| name.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_name_is_the_host_of_the_server_address() {
        assert_eq!(host_of("xmpp.example.org:5347"), "xmpp.example.org");
        assert_eq!(host_of("127.0.0.1:5347"), "127.0.0.1");
        assert_eq!(host_of("[::1]:5347"), "::1");
    }

    #[test]
    fn names_are_dns_names_or_ip_addresses() {
        assert!(matches!(
            server_name("xmpp.example.org"),
            Ok(ServerName::DnsName(_))
        ));
        assert!(matches!(
            server_name("127.0.0.1"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(server_name("::1"), Ok(ServerName::IpAddress(_))));
        for bad in ["", "exa mple.org", "a..b", "host:5347"] {
            assert!(
                matches!(server_name(bad), Err(TlsConfigError::BadServerName { .. })),
                "{bad:?}"
            );
        }
    }
}
