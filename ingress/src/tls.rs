//! HTTPS and mutual TLS (rustls, ring provider).
//!
//! [`TlsListener`] accepts TCP connections and runs each TLS handshake in its own task (a slow
//! or silent client never holds up the others; at most `max_tls_handshakes` run at once, each
//! within `tls_handshake_timeout`, both [`ConnectionLimits`]). Each connection carries a [`Peer`]: its address and, when the client
//! presented a certificate, the DID in it. The certificate chain, validity and
//! `clientAuth` key usage are checked by webpki during the handshake against the configured
//! client CA bundle; the DID is the first URI SAN starting with `did:`, else a subject common
//! name starting with `did:`.
//!
//! What a peer DID is used for is decided by [`MtlsMode`] in the auth layers
//! ([`crate::auth`]): in `hybrid` it must equal the token's client id, in `mtls` it is the
//! caller.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::Listener;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
pub use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::body::refuse;
use crate::caller::Caller;
use crate::error::EdgeError;
use crate::server::ConnectionLimits;

/// Handshakes completed but not yet taken by the HTTP server.
const ACCEPT_BACKLOG: usize = 1024;

pub use bindu_engine::config::MtlsMode;

/// The remote end of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub addr: SocketAddr,
    /// The DID of the verified client certificate, `None` without one (or without a DID).
    pub did: Option<String>,
    /// Whether the client presented a verified certificate at all.
    pub has_certificate: bool,
}

/// Files and policy of the HTTPS server.
#[derive(Debug, Clone)]
pub struct TlsFiles<'a> {
    /// PEM: the server certificate, then its chain.
    pub cert: &'a Path,
    /// PEM: the server's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: &'a Path,
    /// PEM bundle of CAs whose client certificates are accepted; `None`: no client certs.
    pub client_ca: Option<&'a Path>,
    /// Refuse the handshake without a valid client certificate (else it is optional).
    pub require_client_cert: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("TLS configuration: {0}")]
    Config(String),
    /// The private key file is open to other users (as `private.pem` would be refused).
    #[error("{path} can be read by other users (mode {mode:o}); run `chmod 600 {path}`")]
    KeyPermissions { path: String, mode: u32 },
}

fn file_error(path: &Path, message: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(|e| file_error(path, e))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, format!("not a PEM certificate file ({e})")))?;
    if certs.is_empty() {
        return Err(file_error(path, "no CERTIFICATE block found"));
    }
    Ok(certs)
}

/// Builds the rustls server configuration (HTTP/1.1 over TLS 1.2/1.3).
pub fn server_config(files: &TlsFiles<'_>) -> Result<Arc<ServerConfig>, TlsError> {
    // The TLS key is checked like the identity key: readable by its owner only.
    match bindu_engine::identity::check_private_file(files.key) {
        Ok(()) => {}
        Err(bindu_engine::identity::KeyError::Permissions { path, mode }) => {
            return Err(TlsError::KeyPermissions {
                path: path.display().to_string(),
                mode,
            })
        }
        Err(bindu_engine::identity::KeyError::Io { source, .. }) => {
            return Err(file_error(files.key, source))
        }
        Err(e) => return Err(file_error(files.key, e)),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = read_certs(files.cert)?;
    let key_pem = std::fs::read(files.key).map_err(|e| file_error(files.key, e))?;
    // Never echo key material: the parse error names the file only.
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|_| file_error(files.key, "no usable PEM private key found"))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs(ca)? {
                roots
                    .add(cert)
                    .map_err(|e| file_error(ca, format!("unusable CA certificate ({e})")))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if files.require_client_cert {
                verifier.build()
            } else {
                verifier.allow_unauthenticated().build()
            }
            .map_err(|e| TlsError::Config(format!("client certificate verifier: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(format!("server certificate and key: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The DID a client certificate names: the first URI SAN starting with `did:`, else a
/// subject CN starting with `did:`.
pub fn certificate_did(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::URI(uri) = name {
                if uri.starts_with("did:") {
                    return Some(uri.to_string());
                }
            }
        }
    }
    let did = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .find(|cn| cn.starts_with("did:"))
        .map(str::to_string);
    did
}

/// A TCP listener that hands out TLS connections once their handshake is done.
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, Peer)>,
    _stop: tokio_util::sync::DropGuard,
}

impl TlsListener {
    pub fn new(
        tcp: TcpListener,
        config: Arc<ServerConfig>,
        limits: &ConnectionLimits,
    ) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(ACCEPT_BACKLOG);
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(
            tcp,
            TlsAcceptor::from(config),
            Handshakes {
                permits: Arc::new(tokio::sync::Semaphore::new(
                    limits.max_tls_handshakes.max(1),
                )),
                timeout: limits.tls_handshake_timeout,
            },
            tx,
            stop.clone(),
        ));
        Ok(TlsListener {
            local,
            ready,
            _stop: stop.drop_guard(),
        })
    }
}

/// How many TLS handshakes may run at once, and for how long each.
struct Handshakes {
    permits: Arc<tokio::sync::Semaphore>,
    timeout: Duration,
}

async fn accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshakes: Handshakes,
    ready: mpsc::Sender<(TlsStream<TcpStream>, Peer)>,
    stop: CancellationToken,
) {
    loop {
        // At the cap, new connections wait in the kernel's accept backlog.
        let permit = tokio::select! {
            _ = stop.cancelled() => return,
            p = handshakes.permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                // The semaphore is never closed.
                Err(_) => return,
            },
        };
        let (stream, addr) = tokio::select! {
            _ = stop.cancelled() => return,
            r = tcp.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting a TCP connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let ready = ready.clone();
        let timeout = handshakes.timeout;
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(timeout, acceptor.accept(stream)).await;
            drop(permit);
            let tls = match handshake {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%addr, error = %e, "TLS handshake refused");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%addr, "TLS handshake timed out");
                    return;
                }
            };
            let leaf = tls.get_ref().1.peer_certificates().and_then(|c| c.first());
            let peer = Peer {
                addr,
                has_certificate: leaf.is_some(),
                did: leaf.and_then(|c| certificate_did(c.as_ref())),
            };
            let _ = ready.send((tls, peer)).await;
        });
    }
}

/// The DID of the request's verified client certificate.
pub(crate) fn certificate_caller(req: &axum::extract::Request) -> Result<String, EdgeError> {
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<Peer>>()
        .map(|c| &c.0);
    match peer {
        Some(Peer {
            did: Some(did),
            has_certificate: true,
            ..
        }) => Ok(did.clone()),
        Some(Peer {
            has_certificate: true,
            ..
        }) => Err(EdgeError::CertificateLacksDid),
        _ => Err(EdgeError::CertificateMissing),
    }
}

/// Allowed callers when the certificate is the only credential (`MTLS__MODE=mtls`).
#[derive(Debug, Clone, Default)]
pub struct CertificateAuth {
    /// `AUTH__ALLOWED_DIDS`: empty admits every certificate the CA bundle vouches for.
    pub allowed_dids: Arc<Vec<String>>,
}

/// The axum middleware of `MTLS__MODE=mtls`: the certificate's DID is the caller.
pub async fn certificate_layer(
    axum::extract::State(auth): axum::extract::State<CertificateAuth>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let did = match certificate_caller(&req) {
        Ok(did) => did,
        Err(why) => return refuse(req, why).await,
    };
    if !auth.allowed_dids.is_empty() && !auth.allowed_dids.contains(&did) {
        return refuse(req, EdgeError::CertificateDidNotAdmitted).await;
    }
    req.extensions_mut().insert(Caller(did));
    next.run(req).await
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept loop only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(Peer {
            addr: self.local,
            did: None,
            has_certificate: false,
        })
    }
}

/// Serves `router` over TLS on `listener` until `shutdown` fires, then lets in-flight
/// requests finish. Each request carries `ConnectInfo<Peer>`.
pub async fn serve_tls(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    router: axum::Router,
    shutdown: CancellationToken,
    limits: ConnectionLimits,
) -> std::io::Result<()> {
    let listener = TlsListener::new(listener, config, &limits)?;
    crate::server::serve_http1(listener, router, shutdown, &limits, |peer| {
        Some(axum::extract::ConnectInfo(peer))
    })
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_not_a_certificate() {
        assert_eq!(certificate_did(b"not a certificate"), None);
        assert_eq!(certificate_did(&[]), None);
    }
}
