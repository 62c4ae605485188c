//! The egress proxy: the firewall redirects a workspace's TCP connections
//! on its domain entries' ports here. The proxy reads the name the client
//! asks for (TLS SNI, or HTTP Host), checks it and the original port
//! against that workspace's allowlist, resolves the name itself, and opens
//! the upstream connection to what the name resolves to: the address the
//! guest dialled is ignored, so a connection that presents an allowed name
//! to some other address does not get that address.
//!
//! Refusals are counted per workspace; an HTTP client gets a 403 that
//! says why, a TLS client an `unrecognized_name` alert.

use super::firewall;
use super::sni::{self, Peek};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// How long a client has to say where it is going.
const PEEK_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection idle this long in both directions is closed.
const IDLE: Duration = Duration::from_secs(900);
/// Connections open at once, all workspaces together; past it new ones
/// are closed at once (and counted).
const MAX_CONNECTIONS: usize = 4096;
/// Refusals logged per workspace; the rest are only counted.
const MAX_LOGGED: u64 = 20;

static REFUSED: super::refusals::Refusals = super::refusals::Refusals::new();
static OPEN: AtomicUsize = AtomicUsize::new(0);

/// Connections this workspace made that the proxy refused.
pub fn refused(id: &str) -> u64 {
    REFUSED.get(id)
}

pub fn forget(id: &str) {
    REFUSED.forget(id);
}

fn refuse(id: &str, why: &str) {
    if REFUSED.count(id) <= MAX_LOGGED {
        crate::info!("workspace {id}: egress refused: {why}");
    }
}

pub fn start() -> std::io::Result<()> {
    let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, firewall::PROXY_PORT))?;
    std::thread::Builder::new()
        .name("egress-proxy".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else {
                    continue;
                };
                if OPEN.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                    OPEN.fetch_sub(1, Ordering::AcqRel);
                    continue;
                }
                let spawned = std::thread::Builder::new()
                    .name("egress".into())
                    .stack_size(64 * 1024)
                    .spawn(move || {
                        handle(conn);
                        OPEN.fetch_sub(1, Ordering::AcqRel);
                    });
                if spawned.is_err() {
                    OPEN.fetch_sub(1, Ordering::AcqRel);
                }
            }
        })?;
    Ok(())
}

/// The address the guest dialled, before the redirect (SO_ORIGINAL_DST).
fn original_destination(s: &TcpStream) -> Option<SocketAddrV4> {
    const SO_ORIGINAL_DST: libc::c_int = 80;
    // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `addr`, which we own.
    let r = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_IP,
            SO_ORIGINAL_DST,
            (&mut addr as *mut libc::sockaddr_in).cast(),
            &mut len,
        )
    };
    (r == 0).then(|| {
        SocketAddrV4::new(
            Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)),
            u16::from_be(addr.sin_port),
        )
    })
}

/// Reads until the first bytes name a destination (or can't).
fn read_name(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Peek {
    let mut chunk = [0u8; 4096];
    loop {
        match sni::peek(buf) {
            Peek::NeedMore => {}
            decided => return decided,
        }
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return Peek::NoName("the client said nothing in time"),
            Ok(n) => {
                let room = sni::MAX_PEEK.saturating_sub(buf.len());
                buf.extend_from_slice(&chunk[..n.min(room)]);
            }
        }
        if buf.len() >= sni::MAX_PEEK {
            if let Peek::NeedMore = sni::peek(buf) {
                return Peek::NoName("no name in the first 16 KiB");
            }
        }
    }
}

fn handle(mut conn: TcpStream) {
    let Ok(SocketAddr::V4(peer)) = conn.peer_addr() else {
        return;
    };
    let Some((id, egress)) = firewall::policy_of(*peer.ip()) else {
        return;
    };
    let Some(dest) = original_destination(&conn) else {
        return refuse(&id, "no original destination (not a redirected connection)");
    };
    let _ = conn.set_read_timeout(Some(PEEK_TIMEOUT));
    let mut first = Vec::with_capacity(2048);
    let name = match read_name(&mut conn, &mut first) {
        Peek::Name(n) => n,
        Peek::Ech => return refuse(&id, &format!("{dest}: TLS with Encrypted Client Hello")),
        Peek::NoName(why) => return refuse(&id, &format!("{dest}: {why}")),
        Peek::NeedMore => return,
    };
    let tls = first.first() == Some(&0x16);
    if !egress.allows(&name, dest.port()) {
        refuse(
            &id,
            &format!("{name}:{} is not on its allowlist", dest.port()),
        );
        return deny(
            conn,
            tls,
            &format!(
                "{name}:{} is not on this workspace's allowlist",
                dest.port()
            ),
        );
    }
    let addrs = match super::dns::resolve(&name) {
        Ok(a) if !a.is_empty() => a,
        Ok(_) => {
            refuse(&id, &format!("{name}: no address a workspace may reach"));
            return deny(
                conn,
                tls,
                &format!("{name} has no address a workspace may reach"),
            );
        }
        Err(e) => {
            refuse(&id, &e.to_string());
            return deny(conn, tls, &e.to_string());
        }
    };
    let Some(mut upstream) = addrs
        .iter()
        .filter(|a| super::dns::reachable(std::net::IpAddr::V4(**a)))
        .find_map(|a| {
            TcpStream::connect_timeout(&SocketAddr::from((*a, dest.port())), CONNECT_TIMEOUT).ok()
        })
    else {
        return deny(conn, tls, &format!("{name}:{} did not answer", dest.port()));
    };
    if upstream.write_all(&first).is_err() {
        return;
    }
    splice(conn, upstream, *peer.ip(), name, dest.port());
}

fn deny(mut conn: TcpStream, tls: bool, why: &str) {
    if tls {
        // A fatal unrecognized_name alert, as a server without the name sends.
        let _ = conn.write_all(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x70]);
    } else {
        let body = format!("paddock: {why}\n");
        let _ = conn.write_all(
            format!(
                "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    }
    let _ = conn.shutdown(Shutdown::Both);
}

/// How often a quiet connection checks that its workspace's policy still
/// allows it.
const RECHECK: Duration = Duration::from_secs(1);

/// Copies both ways until both sides are done, one is idle too long, or
/// the workspace's policy stops allowing `name`:`port` (then both sides
/// are cut within a second).
fn splice(client: TcpStream, upstream: TcpStream, peer: Ipv4Addr, name: String, port: u16) {
    let (Ok(client2), Ok(upstream2)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    for s in [&client, &upstream] {
        let _ = s.set_read_timeout(Some(RECHECK));
    }
    let allowed =
        move || firewall::policy_of(peer).is_some_and(|(_, egress)| egress.allows(&name, port));
    let allowed2 = allowed.clone();
    let back = std::thread::Builder::new()
        .name("egress-back".into())
        .stack_size(64 * 1024)
        .spawn(move || pump(upstream2, client2, &allowed2));
    pump(client, upstream, &allowed);
    if let Ok(t) = back {
        let _ = t.join();
    }
}

/// Ends both directions (the other pump sees the shutdown).
fn cut(a: &TcpStream, b: &TcpStream) {
    let _ = a.shutdown(Shutdown::Both);
    let _ = b.shutdown(Shutdown::Both);
}

fn pump(mut from: TcpStream, mut to: TcpStream, allowed: &dyn Fn() -> bool) {
    let mut buf = [0u8; 16 * 1024];
    let mut idle = Duration::ZERO;
    let mut checked = std::time::Instant::now();
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                idle = Duration::ZERO;
                // A busy connection is checked as often as a quiet one.
                if checked.elapsed() >= RECHECK {
                    checked = std::time::Instant::now();
                    if !allowed() {
                        return cut(&from, &to);
                    }
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                idle += RECHECK;
                if idle >= IDLE || !allowed() {
                    return cut(&from, &to);
                }
            }
            Err(_) => break,
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
