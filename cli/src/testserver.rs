//! A one-answer TLS server on 127.0.0.1 for the client's tests: it plays
//! an appliance (or something in its path) that misbehaves on purpose.

use crate::client::Api;
use crate::pinned::{fingerprint, Pinned};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::thread::JoinHandle;

/// How the server ends the connection once it has written its answer.
#[derive(Clone, Copy, Debug)]
pub enum Close {
    /// TLS close_notify, then FIN: an orderly end.
    Notify,
    /// FIN without close_notify: what a cut connection looks like.
    Cut,
}

pub struct Server {
    thread: JoinHandle<Vec<u8>>,
}

impl Server {
    /// The request the server read (head and body).
    pub fn request(self) -> Vec<u8> {
        self.thread.join().expect("server thread")
    }
}

/// Serves `answer` (raw bytes after the TLS handshake) to the first
/// connection; the `Api` is pinned to the server's certificate.
pub fn serve(answer: Vec<u8>, close: Close) -> (Api, Server) {
    let (cfg, fp) = tls_config();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let thread = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().expect("accept");
        let conn = rustls::ServerConnection::new(Arc::new(cfg)).expect("conn");
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let request = read_request(&mut tls);
        tls.write_all(&answer).expect("answer");
        if let Close::Notify = close {
            tls.conn.send_close_notify();
        }
        tls.flush().expect("flush");
        // The whole request was read, so this is a FIN, not a reset that
        // could take the answer's last bytes with it.
        let _ = tls.sock.shutdown(std::net::Shutdown::Write);
        // Until the client has read everything and hung up.
        let mut rest = Vec::new();
        let _ = tls.sock.read_to_end(&mut rest);
        request
    });
    (api(port, fp), Server { thread })
}

/// Answers every connection (one request each) with what `answer` makes
/// of its request, until the test ends; counts the requests.
pub fn serve_each(
    answer: impl Fn(&[u8]) -> Vec<u8> + Send + 'static,
) -> (Api, Arc<std::sync::atomic::AtomicUsize>) {
    let (cfg, fp) = tls_config();
    let cfg = Arc::new(cfg);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = count.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let Ok(conn) = rustls::ServerConnection::new(cfg.clone()) else {
                continue;
            };
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let request = read_request(&mut tls);
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = tls.write_all(&answer(&request));
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    (api(port, fp), count)
}

fn api(port: u16, fp: String) -> Api {
    Api {
        host: "127.0.0.1".into(),
        port,
        token: "pdk_test".into(),
        pin: Pinned::new(Some(fp)),
    }
}

fn tls_config() -> (rustls::ServerConfig, String) {
    let ck = rcgen::generate_simple_self_signed(vec!["paddock".to_string()]).expect("cert");
    let cert = ck.cert.der().clone();
    let fp = fingerprint(&cert);
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.key_pair.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("server config");
    (cfg, fp)
}

fn read_request(tls: &mut impl Read) -> Vec<u8> {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        match tls.read(&mut byte) {
            Ok(1) => got.push(byte[0]),
            _ => return got,
        }
    }
    let head = String::from_utf8_lossy(&got).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    tls.read_exact(&mut body).expect("request body");
    got.extend(body);
    got
}

/// The body of a request the server read.
pub fn body_of(request: &[u8]) -> &[u8] {
    request
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(&[][..], |i| &request[i + 4..])
}

/// An answer's head and `body`, with the headers given.
pub fn answer(status: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\n");
    for h in headers {
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}
