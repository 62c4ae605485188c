//! The API process's own costs, measured on the real process (as the
//! appliance runs it, with a fake host-init behind it that answers at
//! once): requests per second and latency for `GET /v1/workspaces/{id}`
//! and a small exec, each with a new TLS connection per request and on
//! kept-alive connections, 8 clients at once. `just bench-api-http` runs it
//! twice, against a baseline revision (built with its own copy of this
//! file) and against this one, into one table. Loopback only.

use paddock_init::api::channel::{Call, CallReply, Init, Purpose, StatusReply};
use paddock_init::api::supervisor::{spawn, Running};
use paddock_init::control::service::Outcome;
use paddock_proto::{read_frame, write_frame, AgentMsg, HostMsg};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const CLIENTS: usize = 8;

/// A successful reply. Built from JSON so that this file also builds
/// against revisions whose replies carried an HTTP status instead of a
/// verdict (`just bench-api-http` builds it beside the baseline, whose
/// channel speaks the older shape).
fn outcome(body: serde_json::Value, stream: Option<OwnedFd>) -> Outcome {
    let fd = stream.is_some();
    let reply = serde_json::from_value::<CallReply>(
        serde_json::json!({"verdict": "ok", "body": body.clone(), "fd": fd}),
    )
    .or_else(|_| {
        serde_json::from_value(serde_json::json!({"status": 200, "body": body, "fd": fd}))
    });
    match reply {
        Ok(reply) => Outcome { reply, stream },
        Err(e) => panic!("this revision's CallReply has neither shape: {e}"),
    }
}

/// An agent that runs `echo`: its arguments back, exit 0.
fn agent(mut s: UnixStream) {
    let Ok(HostMsg::Hello { protocol }) = read_frame::<HostMsg, _>(&mut s) else {
        return;
    };
    let hello = AgentMsg::HelloOk {
        protocol,
        agent_version: "bench".into(),
    };
    if write_frame(&mut s, &hello).is_err() {
        return;
    }
    if let Ok(HostMsg::Exec(req)) = read_frame::<HostMsg, _>(&mut s) {
        let _ = write_frame(&mut s, &AgentMsg::Started { pid: 1 });
        let said = req.argv[1..].join(" ").into_bytes();
        let _ = write_frame(&mut s, &AgentMsg::Stdout(said));
        let exited = paddock_proto::ExitStatus {
            code: Some(0),
            signal: None,
            timed_out: false,
        };
        let _ = write_frame(&mut s, &AgentMsg::Exited(exited));
    }
}

fn control(_auth: &str, call: Call) -> Outcome {
    match call {
        Call::WhoAmI => outcome(
            serde_json::json!({"token": "t", "admin": true, "tenant": "t"}),
            None,
        ),
        Call::OpenAgent {
            purpose: Purpose::Exec { .. },
            ..
        } => {
            let Ok((ours, theirs)) = UnixStream::pair() else {
                return outcome(serde_json::json!({}), None);
            };
            std::thread::spawn(move || agent(theirs));
            outcome(serde_json::json!({}), Some(OwnedFd::from(ours)))
        }
        Call::GetWorkspace { id } => outcome(
            serde_json::json!({"id": id, "state": "running", "template": "default",
                "vcpus": 1, "memory_mib": 512, "disk_mib": 2048, "labels": {}}),
            None,
        ),
        _ => outcome(serde_json::json!({}), None),
    }
}

fn start(exe: &Path) -> Result<(Running, String), String> {
    let id = paddock_init::tls::generate().map_err(|e| e.to_string())?;
    let init = Init {
        cert_pem: id.cert_pem.clone(),
        key_pem: id.key_pem,
        port: 0,
        plain_http: None,
        domain: None,
    };
    let status = || StatusReply {
        version: "bench".into(),
        state: "ready".into(),
        workspaces: 1,
        uptime_s: 1,
    };
    let running = spawn(exe, &init, None, status, control).map_err(|e| e.to_string())?;
    Ok((running, id.cert_pem))
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn client_config(cert_pem: &str) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes()) {
        roots
            .add(cert.map_err(|e| format!("{e:?}"))?)
            .map_err(|e| e.to_string())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn connect(config: &Arc<rustls::ClientConfig>, port: u16) -> Result<Tls, String> {
    let name = rustls::pki_types::ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(config.clone(), name).map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    Ok(rustls::StreamOwned::new(conn, tcp))
}

/// Sends `request` and reads one whole answer (Content-Length or chunked),
/// which must be a 200; whether the server keeps the connection open.
fn ask(c: &mut Tls, request: &[u8]) -> Result<bool, String> {
    c.write_all(request).map_err(|e| e.to_string())?;
    c.flush().map_err(|e| e.to_string())?;
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = c.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed before a whole answer".into());
        }
        got.extend_from_slice(&buf[..n]);
        let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
        if !head.starts_with("http/1.1 200") {
            return Err(format!(
                "answered {}: {}",
                head.lines().next().unwrap_or(""),
                String::from_utf8_lossy(&got[end + 4..])
            ));
        }
        let body = &got[end + 4..];
        let len = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok());
        let whole = match len {
            Some(len) => body.len() >= len,
            None => body.ends_with(b"0\r\n\r\n"),
        };
        if whole {
            return Ok(!head.contains("connection: close"));
        }
    }
}

fn percentile(v: &mut [Duration], pct: usize) -> Duration {
    v.sort();
    v[(v.len() * pct / 100).min(v.len() - 1)]
}

/// `n` requests from CLIENTS threads: (per second, p50, p99).
fn run(
    config: &Arc<rustls::ClientConfig>,
    port: u16,
    request: &[u8],
    n: usize,
    keep_alive: bool,
) -> Result<(f64, Duration, Duration), String> {
    let start = Instant::now();
    let results: Vec<Result<Vec<Duration>, String>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..CLIENTS)
            .map(|_| {
                s.spawn(|| {
                    let mut times = Vec::with_capacity(n / CLIENTS);
                    let mut kept = None;
                    for _ in 0..n / CLIENTS {
                        let t = Instant::now();
                        let mut fresh;
                        let c = if keep_alive {
                            match kept.as_mut() {
                                Some(c) => c,
                                None => kept.insert(connect(config, port)?),
                            }
                        } else {
                            fresh = connect(config, port)?;
                            &mut fresh
                        };
                        // A server that closes after each answer gets a
                        // new connection for the next request, as a
                        // keep-alive client would open.
                        if !ask(c, request)? {
                            kept = None;
                        }
                        times.push(t.elapsed());
                    }
                    Ok(times)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|_| Err("a client panicked".into())))
            .collect()
    });
    let elapsed = start.elapsed();
    let mut times = Vec::new();
    for r in results {
        times.extend(r?);
    }
    let rate = times.len() as f64 / elapsed.as_secs_f64();
    Ok((rate, percentile(&mut times, 50), percentile(&mut times, 99)))
}

/// Prints one row; whether it was measured.
fn row(label: &str, r: Result<(f64, Duration, Duration), String>) -> bool {
    match r {
        Ok((rate, p50, p99)) => {
            println!(
                "| {label} | {rate:.0} | {:.2} | {:.2} |",
                p50.as_secs_f64() * 1e3,
                p99.as_secs_f64() * 1e3
            );
            true
        }
        Err(e) => {
            println!("| {label} | failed: {e} | | |");
            false
        }
    }
}

/// Every row for the binary `exe`; whether all were measured.
fn bench(name: &str, exe: &Path, n: usize) -> Result<bool, String> {
    let (running, cert) = start(exe)?;
    let config = client_config(&cert)?;
    let port = running.port;
    let get = b"GET /v1/workspaces/ws_bench HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n\r\n";
    let body = r#"{"argv":["echo","hi"]}"#;
    let exec = format!(
        "POST /v1/workspaces/ws_bench/exec HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    // Warm up (first connections, allocator).
    let _ = run(&config, port, get, CLIENTS * 4, false);
    let mut all = true;
    for (what, request) in [("GET workspace", &get[..]), ("exec echo", exec.as_bytes())] {
        for (how, keep_alive) in [("new connection each", false), ("kept alive", true)] {
            all &= row(
                &format!("{name}: {what}, {how}"),
                run(&config, port, request, n, keep_alive),
            );
        }
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(running.pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(running.pid as i32), None);
    Ok(all)
}

fn main() -> std::process::ExitCode {
    let n: usize = std::env::var("PADDOCK_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4000);
    let Some(exe) = std::env::var_os("PADDOCK_INIT_BIN") else {
        eprintln!("set PADDOCK_INIT_BIN to the paddock-init binary to measure");
        return std::process::ExitCode::from(2);
    };
    let label = std::env::var("PADDOCK_BENCH_LABEL").unwrap_or_else(|_| "now".into());
    if std::env::var_os("PADDOCK_BENCH_NO_HEADER").is_none() {
        println!("API process, {CLIENTS} clients at once, {n} requests per row, loopback, TLS 1.3");
        println!();
        println!("| what | requests/s | p50 ms | p99 ms |");
        println!("| --- | --- | --- | --- |");
    }
    match bench(&label, Path::new(&exe), n) {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("{label}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
