//! A real API process (`paddock-init api-server`) on loopback with a fake
//! host-init behind it: two bearers, agents that record what reached them,
//! and clients that connect from a loopback address of their choosing (the
//! caps are per address).

use paddock_init::api::channel::{Call, CallReply, Init, Purpose, StatusReply};
use paddock_init::api::supervisor::{spawn, API_GID, API_UID};
use paddock_init::control::service::Outcome;
use paddock_proto::{read_frame, write_frame, AgentMsg, HostMsg};
use std::io::Read;
use std::net::TcpStream;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::KillOnDrop;

/// What the fake control plane and agent saw.
#[derive(Default)]
pub struct Seen {
    /// Every call that reached the control plane, before it looked at
    /// the bearer.
    pub calls: AtomicUsize,
    /// Who-am-I calls: every authentication the API process asked for.
    pub who_am_i: AtomicUsize,
    /// Calls past who-am-I that reached the control plane.
    pub forwarded: AtomicUsize,
    /// Exec sessions whose host side closed (the agent would kill the command).
    pub exec_sessions_ended: AtomicUsize,
    pub uploaded_bytes: AtomicU64,
    pub uploads_done: AtomicUsize,
    pub uploads_cut: AtomicUsize,
}

pub fn outcome(status: u16, body: serde_json::Value, stream: Option<OwnedFd>) -> Outcome {
    Outcome {
        reply: CallReply {
            verdict: paddock_api_server::http::verdict_of(status).expect("a status the fake uses"),
            body,
            fd: stream.is_some(),
        },
        stream,
    }
}

pub fn hello(s: &mut UnixStream) -> Option<()> {
    match read_frame::<HostMsg, _>(s).ok()? {
        HostMsg::Hello { protocol } => write_frame(
            s,
            &AgentMsg::HelloOk {
                protocol,
                agent_version: "fake".into(),
            },
        )
        .ok(),
        _ => None,
    }
}

/// An agent running a command: `echo ARGS` prints its arguments and
/// exits; any other never ends (`sleep infinity`). It counts the session's
/// end.
pub fn fake_exec(mut s: UnixStream, seen: Arc<Seen>) {
    if hello(&mut s).is_none() {
        return;
    }
    if let Ok(HostMsg::Exec(req)) = read_frame::<HostMsg, _>(&mut s) {
        let _ = write_frame(&mut s, &AgentMsg::Started { pid: 7 });
        if req.argv.first().is_some_and(|a| a == "echo") {
            let said = req.argv[1..].join(" ").into_bytes();
            let _ = write_frame(&mut s, &AgentMsg::Stdout(said));
            let exited = paddock_proto::ExitStatus {
                code: Some(0),
                signal: None,
                timed_out: false,
            };
            let _ = write_frame(&mut s, &AgentMsg::Exited(exited));
        }
        while read_frame::<HostMsg, _>(&mut s).is_ok() {}
    }
    seen.exec_sessions_ended.fetch_add(1, Ordering::SeqCst);
}

/// An agent taking an upload: counts its bytes, and whether it ended with
/// DataEnd (the file is renamed into place) or was cut (it is not).
pub fn fake_upload(mut s: UnixStream, seen: Arc<Seen>) {
    if hello(&mut s).is_none() {
        return;
    }
    loop {
        match read_frame::<HostMsg, _>(&mut s) {
            Ok(HostMsg::AsUser(_)) | Ok(HostMsg::WriteFile { .. }) => {}
            Ok(HostMsg::Data(d)) => {
                seen.uploaded_bytes
                    .fetch_add(d.len() as u64, Ordering::SeqCst);
            }
            Ok(HostMsg::DataEnd) => {
                let _ = write_frame(&mut s, &AgentMsg::Done);
                seen.uploads_done.fetch_add(1, Ordering::SeqCst);
                return;
            }
            _ => {
                seen.uploads_cut.fetch_add(1, Ordering::SeqCst);
                return;
            }
        }
    }
}

/// The control plane reduced to a few bearers, "admin", "tenant" and
/// "tenant-N"; any other gets 401. Agent connections go to the fakes above.
pub fn control(seen: Arc<Seen>) -> impl Fn(&str, Call) -> Outcome {
    move |auth, call| {
        seen.calls.fetch_add(1, Ordering::SeqCst);
        if matches!(call, Call::WhoAmI) {
            seen.who_am_i.fetch_add(1, Ordering::SeqCst);
        }
        let admin = match auth {
            "admin" => true,
            // "tenant", and "tenant-N": tenants of their own.
            t if t == "tenant" || t.starts_with("tenant-") => false,
            _ => return outcome(401, serde_json::json!({"error": "invalid token"}), None),
        };
        if matches!(call, Call::WhoAmI) {
            return outcome(
                200,
                serde_json::json!({"token": auth, "admin": admin, "tenant": auth}),
                None,
            );
        }
        seen.forwarded.fetch_add(1, Ordering::SeqCst);
        match call {
            Call::OpenAgent { purpose, .. } => {
                let (ours, theirs) = UnixStream::pair().expect("pair");
                let s = seen.clone();
                match purpose {
                    Purpose::Exec { .. } => std::thread::spawn(move || fake_exec(theirs, s)),
                    _ => std::thread::spawn(move || fake_upload(theirs, s)),
                };
                outcome(200, serde_json::json!({}), Some(OwnedFd::from(ours)))
            }
            _ => outcome(200, serde_json::json!({"workspaces": []}), None),
        }
    }
}

pub struct Api {
    pub port: u16,
    pub pid: u32,
    pub cert_pem: String,
    pub seen: Arc<Seen>,
    pub _guard: KillOnDrop,
}

pub fn start() -> Api {
    let id = paddock_init::tls::generate().expect("identity");
    let init = Init {
        cert_pem: id.cert_pem.clone(),
        key_pem: id.key_pem.clone(),
        port: 0,
        plain_http: None,
        domain: None,
    };
    let root = nix::unistd::geteuid().is_root();
    let seen = Arc::new(Seen::default());
    let running = spawn(
        Path::new(env!("CARGO_BIN_EXE_paddock-init")),
        &init,
        root.then_some((API_UID, API_GID)),
        || StatusReply {
            version: "test".into(),
            state: "ready".into(),
            workspaces: 0,
            uptime_s: 1,
        },
        control(seen.clone()),
    )
    .expect("API process starts");
    Api {
        port: running.port,
        pid: running.pid,
        cert_pem: id.cert_pem,
        seen,
        _guard: KillOnDrop(running.pid),
    }
}

/// curl from a loopback address of its own (the caps are per address):
/// the status, and the body.
pub fn curl(from: &str, args: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args([
            "-sk",
            "--interface",
            from,
            "--max-time",
            "20",
            "-w",
            "\n%{http_code}",
        ])
        .args(args)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.to_string(), body.to_string())
}

/// A TCP connection to the API from `from` (a loopback address).
pub fn connect_from(from: &str, port: u16) -> TcpStream {
    let addr = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let src = addr(from.parse().expect("address"), 0);
    let dst = addr(std::net::Ipv4Addr::LOCALHOST, port);
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: a new socket we own at once; bind and connect read the
    // sockaddr_in structs above, of the size given.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let owned = OwnedFd::from_raw_fd(fd);
        let bound = libc::bind(fd, (&src as *const libc::sockaddr_in).cast(), len);
        assert_eq!(bound, 0, "bind {from}: {}", std::io::Error::last_os_error());
        let connected = libc::connect(fd, (&dst as *const libc::sockaddr_in).cast(), len);
        assert_eq!(connected, 0, "connect: {}", std::io::Error::last_os_error());
        TcpStream::from(owned)
    }
}

pub type TlsClient = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS client from `from` that trusts the API's certificate.
pub fn tls_from(api: &Api, from: &str) -> TlsClient {
    tls_alpn(api, from, &[])
}

/// The same, offering `protocols` by ALPN (b"h2", b"http/1.1").
pub fn tls_alpn(api: &Api, from: &str, protocols: &[&[u8]]) -> TlsClient {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(api.cert_pem.as_bytes()) {
        roots.add(cert.expect("PEM")).expect("root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut config = config;
    config.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
    let tcp = connect_from(from, api.port);
    tcp.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    rustls::StreamOwned::new(conn, tcp)
}

/// Whether the server has closed `c` (EOF or an error on read; a read that
/// only times out means it is still open). Answers it sent are skipped.
pub fn closed(c: &mut TlsClient) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match c.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

pub fn proc_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
