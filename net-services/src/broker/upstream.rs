//! The broker's side towards the real host: its own TLS, verified
//! against the public roots (Mozilla's, built in: the appliance has no
//! system store) or, when the host's secrets name one, only against that
//! CA; then HTTP/2 or HTTP/1.1 as the host offers.

use super::Brokered;
use http_body_util::combinators::BoxBody;
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::sync::{Arc, OnceLock};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type ReqBody = BoxBody<Bytes, BoxError>;

fn config_with(roots: rustls::RootCertStore) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

fn public() -> Result<Arc<rustls::ClientConfig>, String> {
    static PUBLIC: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    PUBLIC
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            config_with(roots).map(Arc::new)
        })
        .clone()
}

/// The client configuration for `host`: its secrets' own CAs if any
/// names one, else the public roots.
pub fn client_config(
    secrets: &[Brokered],
    host: &str,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let own: Vec<&str> = secrets
        .iter()
        .filter(|s| s.hosts.iter().any(|h| h == host))
        .filter_map(|s| s.upstream_ca.as_deref())
        .collect();
    roots_from(&own, host)
}

/// The client configuration trusting `ca` (PEM) if given, else the
/// public roots.
pub fn config_for(ca: Option<&str>, host: &str) -> Result<Arc<rustls::ClientConfig>, String> {
    roots_from(&ca.into_iter().collect::<Vec<_>>(), host)
}

fn roots_from(own: &[&str], host: &str) -> Result<Arc<rustls::ClientConfig>, String> {
    if own.is_empty() {
        return public();
    }
    let mut roots = rustls::RootCertStore::empty();
    for pem in own {
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.map_err(|e| format!("the upstream CA for {host}: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("the upstream CA for {host}: {e}"))?;
        }
    }
    config_with(roots).map(Arc::new)
}

/// Where requests go: one connection to the real host.
pub enum Sender {
    H1(tokio::sync::Mutex<http1::SendRequest<ReqBody>>),
    H2(http2::SendRequest<ReqBody>),
}

impl Sender {
    pub fn is_h2(&self) -> bool {
        matches!(self, Sender::H2(_))
    }

    /// Sends one request (an HTTP/1.1 connection takes one at a time).
    pub async fn send(
        &self,
        req: http::Request<ReqBody>,
    ) -> Result<http::Response<Incoming>, hyper::Error> {
        match self {
            Sender::H1(s) => {
                let fut = {
                    let mut s = s.lock().await;
                    s.ready().await?;
                    s.send_request(req)
                };
                fut.await
            }
            Sender::H2(s) => {
                let mut s = s.clone();
                s.ready().await?;
                s.send_request(req).await
            }
        }
    }
}

/// Opens the upstream side on `tcp` (already connected to an address our
/// resolver gave for `host`): TLS with SNI `host`, or plain.
pub async fn open(
    tcp: tokio::net::TcpStream,
    host: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<Sender, String> {
    match tls {
        Some(config) => {
            let name = ServerName::try_from(host.to_string())
                .map_err(|e| format!("{host} is not a name TLS can verify: {e}"))?;
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS to {host}: {e}"))?;
            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            handshake(TokioIo::new(stream), h2).await
        }
        None => handshake(TokioIo::new(tcp), false).await,
    }
}

async fn handshake<T>(io: TokioIo<T>, h2: bool) -> Result<Sender, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    if h2 {
        let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| format!("HTTP/2 with the host: {e}"))?;
        tokio::spawn(conn);
        Ok(Sender::H2(sender))
    } else {
        let (sender, conn) = http1::handshake(io)
            .await
            .map_err(|e| format!("HTTP/1.1 with the host: {e}"))?;
        tokio::spawn(conn);
        Ok(Sender::H1(tokio::sync::Mutex::new(sender)))
    }
}
