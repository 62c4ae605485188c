//! A fake internet for the network tests, in a network namespace the test
//! makes: no route leaves it, so nothing a test sends can reach a real
//! address. The appliance's QEMU runs inside it (its user-mode network
//! opens its outbound connections in the namespace), and so do the
//! servers below, each on addresses of the namespace's loopback:
//!
//! - a DNS server (203.0.113.53) that logs every name it is asked;
//! - allowed.test (203.0.113.10) and denied.test (203.0.113.20): HTTPS on
//!   443 and HTTP on 80; other.test also resolves to allowed.test's address;
//! - 203.0.113.30 and 203.0.113.31: HTTP on 8080 (raw-IP targets, one of
//!   them listed in a test's CIDRs);
//! - 169.254.169.254: an HTTP "metadata" server on 80, to show it is
//!   unreachable even when listed;
//! - api.broker.test and second.broker.test (203.0.113.40): HTTPS on 443
//!   (HTTP/1.1 and HTTP/2) from a CA of the test's own, echoing and
//!   keeping every request it receives (`echo_https`): where a brokered
//!   secret is seen to arrive;
//! - 203.0.113.60: plain HTTP on 80 keeping every request (`hooks`): a
//!   webhook receiver an appliance's `notify.webhook` may name.
//!
//! Every server answers with who it is, so a test can tell which server a
//! connection really reached.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};

pub const DNS: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 53);
pub const ALLOWED: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
pub const DENIED: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 20);
pub const RAW_LISTED: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 30);
pub const RAW_UNLISTED: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 31);
/// Bytes `/big` sends.
pub const BIG: usize = 32 << 20;
pub const METADATA: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
pub const BROKER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 40);
pub const BROKER_NAMES: [&str; 2] = ["api.broker.test", "second.broker.test"];
/// Where the webhook receiver listens (HTTP, port 80).
pub const HOOKS: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 60);

#[derive(Debug, thiserror::Error)]
pub enum FakeNetError {
    #[error("{what}: {detail}")]
    Setup { what: String, detail: String },
}

fn setup(what: impl Into<String>, detail: impl ToString) -> FakeNetError {
    FakeNetError::Setup {
        what: what.into(),
        detail: detail.to_string(),
    }
}

/// Names the fake DNS server knows.
fn zone() -> BTreeMap<&'static str, Ipv4Addr> {
    BTreeMap::from([
        ("allowed.test", ALLOWED),
        ("www.allowed.test", ALLOWED),
        ("denied.test", DENIED),
        ("other.test", ALLOWED),
        (BROKER_NAMES[0], BROKER),
        (BROKER_NAMES[1], BROKER),
        // A name that resolves into the host's private range (rebinding).
        ("rebind.test", Ipv4Addr::new(10, 0, 2, 15)),
    ])
}

pub struct FakeNet {
    pub name: String,
    /// Every name the DNS server was asked, in order.
    pub queries: Arc<Mutex<Vec<String>>>,
    /// What the echoing HTTPS server at BROKER received.
    pub echo: crate::echo_https::Log,
    /// The CA (PEM) its certificate chains to.
    pub echo_ca: String,
    /// What the webhook receiver at HOOKS received.
    pub hooks: crate::echo_https::Log,
}

/// Runs ip(8) with `args`; its complaint if it fails.
pub fn ip(args: &[&str]) -> Result<(), FakeNetError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| setup("running ip(8)", e))?;
    if !out.status.success() {
        return Err(setup(
            format!("ip {}", args.join(" ")),
            String::from_utf8_lossy(&out.stderr).trim(),
        ));
    }
    Ok(())
}

/// Moves the calling thread into the namespace.
pub fn enter(name: &str) -> Result<(), FakeNetError> {
    let f = std::fs::File::open(format!("/run/netns/{name}"))
        .map_err(|e| setup(format!("opening netns {name}"), e))?;
    // SAFETY: setns on a namespace descriptor we opened; affects this thread.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(setup("setns", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Runs `serve` on a thread of its own inside the namespace.
fn in_netns(name: &str, serve: impl FnOnce() + Send + 'static) -> Result<(), FakeNetError> {
    let name = name.to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || match enter(&name) {
        Ok(()) => {
            let _ = tx.send(Ok(()));
            serve();
        }
        Err(e) => {
            let _ = tx.send(Err(e));
        }
    });
    rx.recv()
        .map_err(|e| setup("starting a server thread", e))?
}

impl FakeNet {
    pub fn create() -> Result<FakeNet, FakeNetError> {
        let name = format!("pdk-fakenet-{}", std::process::id());
        let _ = ip(&["netns", "del", &name]);
        ip(&["netns", "add", &name])?;
        ip(&["-n", &name, "link", "set", "lo", "up"])?;
        for a in [
            DNS,
            ALLOWED,
            DENIED,
            RAW_LISTED,
            RAW_UNLISTED,
            METADATA,
            BROKER,
            HOOKS,
        ] {
            ip(&["-n", &name, "addr", "add", &format!("{a}/32"), "dev", "lo"])?;
        }
        // QEMU's user-mode network forwards the appliance's DNS to the
        // resolver in its /etc/resolv.conf, which `ip netns exec` takes
        // from here.
        let etc = PathBuf::from("/etc/netns").join(&name);
        std::fs::create_dir_all(&etc).map_err(|e| setup("creating /etc/netns", e))?;
        std::fs::write(etc.join("resolv.conf"), format!("nameserver {DNS}\n"))
            .map_err(|e| setup("writing resolv.conf", e))?;
        let (echo_ca, echo_tls) = crate::echo_https::test_pki(&BROKER_NAMES);
        let net = FakeNet {
            name,
            queries: Arc::default(),
            echo: Arc::default(),
            echo_ca,
            hooks: Arc::default(),
        };
        let l = net.bind(HOOKS, 80)?;
        let log = net.hooks.clone();
        in_netns(&net.name, move || {
            crate::echo_https::serve_plain_into(l, log);
        })?;
        let l = net.bind(BROKER, 443)?;
        let log = net.echo.clone();
        in_netns(&net.name, move || {
            crate::echo_https::serve_into(l, echo_tls, log);
        })?;
        net.start_dns()?;
        for (addr, who) in [(ALLOWED, "allowed.test"), (DENIED, "denied.test")] {
            net.start_http(addr, 80, who)?;
            net.start_https(addr, who)?;
        }
        net.start_http(RAW_LISTED, 8080, "raw-listed")?;
        net.start_http(RAW_UNLISTED, 8080, "raw-unlisted")?;
        net.start_http(METADATA, 80, "metadata")?;
        Ok(net)
    }

    /// The command line prefix that runs a program in the namespace.
    pub fn exec_prefix(&self) -> Vec<String> {
        vec![
            "ip".into(),
            "netns".into(),
            "exec".into(),
            self.name.clone(),
        ]
    }

    pub fn queries(&self) -> Vec<String> {
        self.queries.lock().map(|q| q.clone()).unwrap_or_default()
    }

    fn start_dns(&self) -> Result<(), FakeNetError> {
        let log = self.queries.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        in_netns(&self.name, move || {
            let sock = match UdpSocket::bind((DNS, 53)) {
                Ok(s) => {
                    let _ = tx.send(Ok(()));
                    s
                }
                Err(e) => {
                    let _ = tx.send(Err(setup("binding the fake DNS server", e)));
                    return;
                }
            };
            let zone = zone();
            let mut buf = [0u8; 1500];
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                if let Some((name, reply)) = dns_reply(&buf[..n], &zone) {
                    if let Ok(mut l) = log.lock() {
                        l.push(name);
                    }
                    let _ = sock.send_to(&reply, from);
                }
            }
        })?;
        rx.recv().map_err(|e| setup("fake DNS", e))?
    }

    fn start_http(&self, addr: Ipv4Addr, port: u16, who: &'static str) -> Result<(), FakeNetError> {
        let l = self.bind(addr, port)?;
        in_netns(&self.name, move || {
            for conn in l.incoming().flatten() {
                std::thread::spawn(move || serve_http(conn, who, ""));
            }
        })
    }

    fn start_https(&self, addr: Ipv4Addr, who: &'static str) -> Result<(), FakeNetError> {
        let l = self.bind(addr, 443)?;
        let ck = rcgen::generate_simple_self_signed(vec![who.to_string()])
            .map_err(|e| setup("a test certificate", e))?;
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.key_pair.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| setup("TLS", e))?
            .with_no_client_auth()
            .with_single_cert(vec![ck.cert.der().clone()], key)
            .map_err(|e| setup("TLS", e))?;
        let cfg = Arc::new(cfg);
        in_netns(&self.name, move || {
            for conn in l.incoming().flatten() {
                let cfg = cfg.clone();
                std::thread::spawn(move || {
                    let Ok(tls) = rustls::ServerConnection::new(cfg) else {
                        return;
                    };
                    let mut s = rustls::StreamOwned::new(tls, conn);
                    // The SNI the client sent, once the handshake is done.
                    let mut first = [0u8; 1];
                    if s.read(&mut first).unwrap_or(0) == 0 {
                        return;
                    }
                    let sni = s.conn.server_name().unwrap_or("").to_string();
                    serve_tls(s, first[0], who, &sni);
                });
            }
        })
    }

    fn bind(&self, addr: Ipv4Addr, port: u16) -> Result<TcpListener, FakeNetError> {
        let name = self.name.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let r = enter(&name).and_then(|()| {
                TcpListener::bind((addr, port))
                    .map_err(|e| setup(format!("binding {addr}:{port}"), e))
            });
            let _ = tx.send(r);
        });
        rx.recv().map_err(|e| setup("binding", e))?
    }
}

impl Drop for FakeNet {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
        let _ = std::fs::remove_dir_all(PathBuf::from("/etc/netns").join(&self.name));
    }
}

/// Reads one request head and answers `server=WHO host=HOST sni=SNI`;
/// `/slow` trickles a byte every 200 ms for a minute instead; `/big`
/// sends 32 MiB (for the network benchmark); `/keepalive` answers and then
/// serves the next request on the same connection, as a shared front end
/// (a CDN serving many names on one address) does.
fn answer<S: Read + Write>(mut s: S, first: Option<u8>, who: &str, sni: &str) {
    let mut first = first;
    loop {
        if !answer_one(&mut s, first.take(), who, sni) {
            return;
        }
    }
}

/// One request; true when the connection stays open for another.
fn answer_one<S: Read + Write>(s: &mut S, first: Option<u8>, who: &str, sni: &str) -> bool {
    let mut head = Vec::new();
    if let Some(b) = first {
        head.push(b);
    }
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return false,
        }
    }
    let text = String::from_utf8_lossy(&head).to_string();
    let host = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("Host: ")
                .or_else(|| l.strip_prefix("host: "))
        })
        .unwrap_or("")
        .trim()
        .to_string();
    if text.starts_with("GET /big ") {
        let _ = s.write_all(
            format!("HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        let chunk = vec![b'x'; 64 << 10];
        for _ in 0..BIG / chunk.len() {
            if s.write_all(&chunk).is_err() {
                return false;
            }
        }
        let _ = s.flush();
        return false;
    }
    if text.starts_with("GET /slow ") {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 300\r\nConnection: close\r\n\r\n");
        for _ in 0..300 {
            if s.write_all(b".").and_then(|()| s.flush()).is_err() {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        return false;
    }
    let keep = text.starts_with("GET /keepalive ");
    let body = format!("server={who} host={host} sni={sni}\n");
    let close = if keep { "" } else { "Connection: close\r\n" };
    let sent = s.write_all(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n{close}\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    let _ = s.flush();
    keep && sent.is_ok()
}

fn serve_http(conn: TcpStream, who: &str, sni: &str) {
    answer(conn, None, who, sni);
}

fn serve_tls(
    s: rustls::StreamOwned<rustls::ServerConnection, TcpStream>,
    first: u8,
    who: &str,
    sni: &str,
) {
    let mut s = s;
    answer(&mut s, Some(first), who, sni);
    s.conn.send_close_notify();
    let _ = s.flush();
}

/// The query's name (lower case, no trailing dot) and an answer: the
/// zone's A record, NXDOMAIN for names it lacks, an empty answer for
/// other types.
fn dns_reply(q: &[u8], zone: &BTreeMap<&str, Ipv4Addr>) -> Option<(String, Vec<u8>)> {
    if q.len() < 12 {
        return None;
    }
    let mut labels = Vec::new();
    let mut at = 12;
    loop {
        let len = usize::from(*q.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(q.get(at..at + len)?).to_ascii_lowercase());
        at += len;
    }
    let qtype = u16::from_be_bytes([*q.get(at)?, *q.get(at + 1)?]);
    let question_end = at + 4;
    let name = labels.join(".");
    let found = zone.get(name.as_str()).copied();
    let mut r = q.get(..question_end)?.to_vec();
    r[2] = 0x81 | (q[2] & 0x01); // response, recursion desired as asked
    r[3] = if found.is_some() { 0x80 } else { 0x83 }; // RA; NOERROR or NXDOMAIN
    r[6..12].copy_from_slice(&[0, 0, 0, 0, 0, 0]);
    if let (Some(addr), 1) = (found, qtype) {
        r[7] = 1;
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        r.extend_from_slice(&addr.octets());
    }
    Some((name, r))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curl(net: &FakeNet, args: &[&str]) -> String {
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            &net.name,
            "curl",
            "-sk",
            "--max-time",
            "10",
        ])
        .args(args);
        let out = cmd.output().expect("curl");
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    #[test]
    fn the_fake_internet_answers_by_name_and_logs_lookups() {
        let net = FakeNet::create().expect("fake internet (needs root and ip(8))");
        // DNS through the namespace's resolv.conf, then HTTPS with SNI.
        let body = curl(&net, &["https://allowed.test/"]);
        assert_eq!(
            body,
            "server=allowed.test host=allowed.test sni=allowed.test\n"
        );
        let body = curl(&net, &["http://denied.test/"]);
        assert_eq!(body, "server=denied.test host=denied.test sni=\n");
        let body = curl(&net, &[&format!("http://{RAW_LISTED}:8080/")]);
        assert!(body.starts_with("server=raw-listed"), "{body}");
        assert!(curl(&net, &["http://nowhere.test/"]).is_empty());
        let q = net.queries();
        assert!(
            q.iter().any(|n| n == "allowed.test") && q.iter().any(|n| n == "nowhere.test"),
            "{q:?}"
        );
        // Nothing leaves the namespace: no route to anywhere else.
        assert!(curl(&net, &["http://192.0.2.1/"]).is_empty());
    }
}
