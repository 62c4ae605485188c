//! An HTTPS server for the secret broker's tests: HTTP/1.1 and HTTP/2
//! (by ALPN), answering every request with what it received (version,
//! host, path, headers, body) and keeping each request for the test to
//! read, so a test can tell what really arrived upstream even when the
//! broker scrubs the echo on its way back. `/big` answers 32 MiB (the
//! benchmark's throughput run).

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// One request as it arrived.
#[derive(Clone, Debug)]
pub struct Seen {
    pub version: String,
    pub host: String,
    pub path: String,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    /// Everything, as one text (for "the value is nowhere" checks).
    pub fn text(&self) -> String {
        let mut t = format!("{} {} {}\n", self.version, self.host, self.path);
        for (n, v) in &self.headers {
            t.push_str(&format!("{n}: {v}\n"));
        }
        t.push_str(&String::from_utf8_lossy(&self.body));
        t
    }
}

pub type Log = Arc<Mutex<Vec<Seen>>>;

/// A CA and a certificate it issued for `names`: (CA PEM, server config).
pub fn test_pki(names: &[&str]) -> (String, Arc<rustls::ServerConfig>) {
    let ca_key = KeyPair::generate().expect("key");
    let mut ca = CertificateParams::default();
    ca.distinguished_name
        .push(DnType::CommonName, "paddock test upstream CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).expect("ca");
    let key = KeyPair::generate().expect("key");
    let leaf = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
        .expect("params")
        .signed_by(&key, &ca_cert, &ca_key)
        .expect("leaf");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone(), ca_cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .expect("config");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    (ca_cert.pem(), Arc::new(config))
}

/// Serves `listener` on a thread of its own until the process ends.
pub fn start(listener: TcpListener, tls: Arc<rustls::ServerConfig>) -> Log {
    let log: Log = Arc::default();
    let l = log.clone();
    std::thread::spawn(move || serve_into(listener, tls, l));
    log
}

/// Serves `listener` on this thread until the process ends, keeping
/// requests in `l`.
pub fn serve_into(listener: TcpListener, tls: Arc<rustls::ServerConfig>, l: Log) {
    serve(listener, Some(tls), l);
}

/// The same over plain HTTP/1.1 (a receiver of webhooks).
pub fn serve_plain_into(listener: TcpListener, l: Log) {
    serve(listener, None, l);
}

fn serve(listener: TcpListener, tls: Option<Arc<rustls::ServerConfig>>, l: Log) {
    {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async move {
            let _ = listener.set_nonblocking(true);
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                return;
            };
            let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let log = l.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let log = log.clone();
                        async move { Ok::<_, std::convert::Infallible>(answer(req, log).await) }
                    });
                    let server = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    );
                    match acceptor {
                        Some(acceptor) => {
                            let Ok(tls) = acceptor.accept(tcp).await else {
                                return;
                            };
                            let _ = server
                                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                                .await;
                        }
                        None => {
                            let _ = server
                                .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                                .await;
                        }
                    }
                });
            }
        });
    }
}

async fn answer(
    req: hyper::Request<hyper::body::Incoming>,
    log: Log,
) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let host = parts
        .uri
        .authority()
        .map(|a| a.to_string())
        .or_else(|| {
            parts
                .headers
                .get("host")
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_default();
    let seen = Seen {
        version: format!("{:?}", parts.version),
        host,
        path: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).to_string(),
                )
            })
            .collect(),
        body,
    };
    // /sink keeps only the size of its body (a huge one stays out of the log).
    let mut seen = seen;
    if seen.path.starts_with("/sink") {
        let n = seen.body.len();
        seen.body = format!("({n} bytes)").into_bytes();
    }
    // /last answers with the previous request as it arrived (an
    // API that stores what it was sent and gives it back later).
    let last = log.lock().ok().and_then(|l| l.last().cloned());
    if let Ok(mut l) = log.lock() {
        l.push(seen.clone());
    }
    if seen.path.starts_with("/last") {
        let text = last.map(|s| s.text()).unwrap_or_default();
        return hyper::Response::new(Full::new(Bytes::from(text)));
    }
    if seen.path.starts_with("/sink") {
        return hyper::Response::new(Full::new(Bytes::from_static(b"ok")));
    }
    // A client that accepts gzip gets the echo gzip-compressed
    // (stored blocks: the bytes stay readable, and it is valid gzip).
    if seen
        .header("accept-encoding")
        .is_some_and(|v| v.contains("gzip"))
    {
        let mut r =
            hyper::Response::new(Full::new(Bytes::from(gzip_stored(seen.text().as_bytes()))));
        r.headers_mut().insert(
            "content-encoding",
            hyper::header::HeaderValue::from_static("gzip"),
        );
        return r;
    }
    if seen.path == "/big" {
        return hyper::Response::new(Full::new(Bytes::from(vec![b'x'; crate::fakenet::BIG])));
    }
    let mut r = hyper::Response::new(Full::new(Bytes::from(seen.text())));
    // An answer header that echoes the request's authorization, as some
    // debugging endpoints do.
    if let Some(v) = seen
        .header("authorization")
        .and_then(|v| hyper::header::HeaderValue::from_str(v).ok())
    {
        r.headers_mut().insert("x-echo-authorization", v);
    }
    r
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xedb8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// gzip with stored (uncompressed) deflate blocks.
pub fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    let chunks: Vec<&[u8]> = if data.is_empty() {
        vec![&[][..]]
    } else {
        data.chunks(65535).collect()
    };
    let n = chunks.len();
    for (i, c) in chunks.into_iter().enumerate() {
        out.push(u8::from(i + 1 == n));
        let len = c.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(c);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}
