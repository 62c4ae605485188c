//! The API process itself: TLS on the API port, one thread per connection
//! (bounded), answers built from what host-init says over the channel.

use super::channel::{self, Init, Request, Started, StatusReply, CHANNEL_FD};
use super::http;
use std::io::BufReader;
use std::net::{TcpListener, TcpStream};
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const MAX_CONNECTIONS: usize = 64;
const IO_TIMEOUT: Duration = Duration::from_secs(15);

struct Shared {
    tls: Arc<rustls::ServerConfig>,
    channel: Mutex<(BufReader<UnixStream>, UnixStream)>,
    active: AtomicUsize,
}

fn tls_config(init: &Init) -> Result<rustls::ServerConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(init.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("certificate: {e:?}"))?;
    let key = PrivateKeyDer::from_pem_slice(init.key_pem.as_bytes())
        .map_err(|e| format!("key: {e:?}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())
}

fn status(shared: &Shared) -> Option<StatusReply> {
    let mut ch = shared.channel.lock().unwrap_or_else(|e| e.into_inner());
    let (reader, writer) = &mut *ch;
    channel::send(writer, &Request::Status).ok()?;
    channel::recv(reader).ok()
}

fn route(shared: &Shared, req: &http::Request) -> (u16, serde_json::Value) {
    let path = req.path.split('?').next().unwrap_or("");
    match (req.method.as_str(), path) {
        ("GET", "/v1/health") => match status(shared) {
            Some(s) => (
                200,
                serde_json::json!({
                    "status": if s.state == "ready" { "ok" } else { "degraded" },
                    "state": s.state,
                    "version": s.version,
                    "workspaces": s.workspaces,
                    "uptime_s": s.uptime_s,
                }),
            ),
            None => (
                503,
                serde_json::json!({"error": "host-init did not answer"}),
            ),
        },
        (_, "/v1/health") => (405, serde_json::json!({"error": "use GET"})),
        _ => (
            404,
            serde_json::json!({"error": format!("no such endpoint: {path}")}),
        ),
    }
}

fn handle(shared: &Shared, tcp: TcpStream) {
    let _ = tcp.set_read_timeout(Some(IO_TIMEOUT));
    let _ = tcp.set_write_timeout(Some(IO_TIMEOUT));
    let Ok(conn) = rustls::ServerConnection::new(shared.tls.clone()) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let (status, body) = match http::read_request(&mut tls) {
        Ok(req) => route(shared, &req),
        Err(http::HttpError::TooLarge) => {
            (413, serde_json::json!({"error": "request head too large"}))
        }
        Err(http::HttpError::Malformed(m)) => (400, serde_json::json!({"error": m})),
        Err(_) => return,
    };
    let _ = http::write_json(&mut tls, status, &body);
    tls.conn.send_close_notify();
    let _ = std::io::Write::flush(&mut tls);
}

/// Entry point of `paddock-init api-server`.
pub fn main() -> std::process::ExitCode {
    // SAFETY: host-init placed the channel at CHANNEL_FD before exec; this
    // process owns it from here on.
    let chan = unsafe { UnixStream::from_raw_fd(CHANNEL_FD) };
    let Ok(writer) = chan.try_clone() else {
        eprintln!("paddock-api: no channel at fd {CHANNEL_FD}");
        return std::process::ExitCode::from(2);
    };
    let mut reader = BufReader::new(chan);
    let mut writer = writer;
    let init: Init = match channel::recv(&mut reader) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("paddock-api: reading start-up message: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let fail = |writer: &mut UnixStream, msg: String| {
        let _ = channel::send(
            writer,
            &Started {
                port: None,
                error: Some(msg.clone()),
            },
        );
        eprintln!("paddock-api: {msg}");
        std::process::ExitCode::from(1)
    };
    let tls = match tls_config(&init) {
        Ok(t) => Arc::new(t),
        Err(e) => return fail(&mut writer, format!("TLS configuration: {e}")),
    };
    let listener = match TcpListener::bind(("0.0.0.0", init.port)) {
        Ok(l) => l,
        Err(e) => return fail(&mut writer, format!("binding port {}: {e}", init.port)),
    };
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(init.port);
    if let Err(e) = super::sandbox::apply() {
        return fail(&mut writer, e.to_string());
    }
    if channel::send(
        &mut writer,
        &Started {
            port: Some(port),
            error: None,
        },
    )
    .is_err()
    {
        return std::process::ExitCode::from(1);
    }
    let shared = Arc::new(Shared {
        tls,
        channel: Mutex::new((reader, writer)),
        active: AtomicUsize::new(0),
    });
    for conn in listener.incoming() {
        let Ok(tcp) = conn else { continue };
        if shared.active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
            continue; // dropped: the client sees a reset and retries
        }
        shared.active.fetch_add(1, Ordering::SeqCst);
        let s = shared.clone();
        let spawned = std::thread::Builder::new().spawn(move || {
            handle(&s, tcp);
            s.active.fetch_sub(1, Ordering::SeqCst);
        });
        if spawned.is_err() {
            shared.active.fetch_sub(1, Ordering::SeqCst);
        }
    }
    std::process::ExitCode::SUCCESS
}
