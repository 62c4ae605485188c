//! The egress proxy: the firewall redirects a workspace's TCP connections
//! on its domain entries' ports here. The proxy reads the name the client
//! asks for (TLS SNI, or HTTP Host), checks it and the original port
//! against that workspace's allowlist, resolves the name itself, and opens
//! the upstream connection to what the name resolves to: the address the
//! guest dialled is ignored, so a connection that presents an allowed name
//! to some other address does not get that address.
//!
//! On plain HTTP every request on the connection is checked (see
//! `http_stream`), not only the first. Each workspace has a fair share of
//! the connections (`fair_share`).
//!
//! Refusals are counted per workspace; an HTTP client gets a 403 that
//! says why, a TLS client an `unrecognized_name` alert.

use super::fair_share::{FairShare, Permit};
use super::http_stream::{Refused, RequestStream};
use super::policy::Egress;
use super::policy_table;
use super::sni::{self, Peek};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long a client has to say where it is going.
const PEEK_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection idle this long in both directions is closed. Longer than
/// the keep-alive servers give (nginx 75 s, most CDNs 60-120 s) and the
/// usual long poll (<= 60 s), so a live client is not cut; short enough
/// that idle connections a workspace leaves open give their slots back
/// within two minutes. (A client that needs longer sends keepalives.)
const IDLE: Duration = Duration::from_secs(120);
/// Connections open at once, all workspaces together (each is two threads).
/// One workspace holds at most 256; the last 1024 go only to workspaces
/// holding fewer than 16, so busy workspaces never use up the pool: 64
/// more workspaces still get 16 each. Past its share a workspace's new
/// connections are closed at once (and counted).
static POOL: FairShare = FairShare::new(4096, 256, 16, 1024);
/// Refusals logged per workspace; the rest are only counted.
const MAX_LOGGED: u64 = 20;

static REFUSED: super::refusals::Refusals = super::refusals::Refusals::new();

/// Refused connections counted since the last call (the network services
/// process reports them to PID 1, which keeps the totals).
pub fn new_refusals() -> Vec<(String, u64)> {
    REFUSED.take_new()
}

pub fn forget(id: &str) {
    REFUSED.forget(id);
}

fn refuse(id: &str, why: &str) {
    if REFUSED.count(id) <= MAX_LOGGED {
        crate::info!("workspace {id}: egress refused: {why}");
    }
}

/// A refused connection, counted and recorded (`net::activity`) with
/// the name it gave, if any, and where it was aimed.
fn refused(id: &str, name: &str, dest: Option<SocketAddrV4>, why: &str, logged: &str) {
    refuse(id, logged);
    super::activity::connection(super::activity::Connection {
        id,
        name,
        dest,
        denied: Some(why),
        bytes_up: 0,
        bytes_down: 0,
        upstream_failed: false,
        mismatched: false,
        brokered: None,
    });
}

/// Serves workspaces' redirected connections on `listener` (bound by
/// PID 1) until it fails for good; why.
pub fn serve(listener: TcpListener) -> std::io::Error {
    loop {
        let conn = match listener.accept() {
            Ok((conn, _)) => conn,
            Err(e) if super::transient(&e) => continue,
            Err(e)
                if e.raw_os_error() == Some(libc::EMFILE)
                    || e.raw_os_error() == Some(libc::ENFILE) =>
            {
                // Out of descriptors: the connections that hold them end
                // within the idle limit.
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            Err(e) => return e,
        };
        let Ok(SocketAddr::V4(peer)) = conn.peer_addr() else {
            continue;
        };
        let Some((id, egress)) = policy_table::lookup(*peer.ip()) else {
            continue;
        };
        let Some(permit) = admit(&POOL, &id) else {
            continue;
        };
        // The permit goes back when the thread ends (or never starts).
        let _ = std::thread::Builder::new()
            .name("egress".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                handle(conn, peer, id, egress);
                drop(permit);
            });
    }
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

/// A slot in `pool` for workspace `id`, or a counted refusal.
fn admit(pool: &'static FairShare, id: &str) -> Option<Permit> {
    let permit = pool.acquire(id);
    if permit.is_none() {
        let why = "it holds its share of the proxy's connections";
        refused(id, "", None, why, why);
    }
    permit
}

fn handle(mut conn: TcpStream, peer: SocketAddrV4, id: String, egress: Egress) {
    let Some(dest) = original_destination(&conn) else {
        let why = "no original destination (not a redirected connection)";
        return refused(&id, "", None, why, why);
    };
    let _ = conn.set_read_timeout(Some(PEEK_TIMEOUT));
    // Relayed bytes go at once (small HTTP/2 frames would otherwise wait
    // for the peer's delayed ACK).
    let _ = conn.set_nodelay(true);
    let mut first = Vec::with_capacity(2048);
    let name = match read_name(&mut conn, &mut first) {
        Peek::Name(n) => n,
        Peek::Ech => {
            let why = "TLS with Encrypted Client Hello";
            return refused(&id, "", Some(dest), why, &format!("{dest}: {why}"));
        }
        Peek::NoName(why) => return refused(&id, "", Some(dest), why, &format!("{dest}: {why}")),
        Peek::NeedMore => return,
    };
    let tls = first.first() == Some(&0x16);
    // The box's own request endpoint: answered here, never forwarded.
    if name == super::dns::INTERNAL_NAME {
        if tls || dest.port() != super::firewall::REQUESTS_PORT {
            return deny(
                conn,
                tls,
                "paddock.internal answers plain HTTP on port 80 only",
            );
        }
        return super::requests::serve(conn, &id, &egress, first);
    }
    if !egress.allows(&name, dest.port()) {
        refused(
            &id,
            &name,
            Some(dest),
            "not on its allowlist",
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
            refused(
                &id,
                &name,
                Some(dest),
                "no address a workspace may reach",
                &format!("{name}: no address a workspace may reach"),
            );
            return deny(
                conn,
                tls,
                &format!("{name} has no address a workspace may reach"),
            );
        }
        Err(e) => {
            refused(&id, &name, Some(dest), &e.to_string(), &e.to_string());
            return deny(conn, tls, &e.to_string());
        }
    };
    // The guest named one host and dialled another address (the proxy
    // connects to the name's own addresses either way).
    let mismatched = !addrs.contains(dest.ip());
    let record = |bytes_up, bytes_down, upstream_failed| {
        super::activity::connection(super::activity::Connection {
            id: &id,
            name: &name,
            dest: Some(dest),
            denied: None,
            bytes_up,
            bytes_down,
            upstream_failed,
            mismatched,
            brokered: None,
        })
    };
    let Some(mut upstream) = addrs
        .iter()
        .filter(|a| super::dns::reachable(std::net::IpAddr::V4(**a)))
        .find_map(|a| {
            TcpStream::connect_timeout(&SocketAddr::from((*a, dest.port())), CONNECT_TIMEOUT).ok()
        })
    else {
        record(0, 0, true);
        return deny(conn, tls, &format!("{name}:{} did not answer", dest.port()));
    };
    let _ = upstream.set_nodelay(true);
    // A host one of the workspace's secrets goes to: the broker takes the
    // connection over (TLS ended here, each request checked and given
    // its secret).
    if let Some(plan) = super::broker::table::plan(&id, &name, tls) {
        let allowed = policy_allows(*peer.ip());
        let (n, p) = (name.clone(), dest.port());
        let outcome = super::broker::intercept::serve(
            conn,
            upstream,
            first,
            super::broker::intercept::Conn {
                id: id.clone(),
                name: name.clone(),
                port: dest.port(),
                tls,
                plan,
                allowed: Box::new(move || allowed(&n, p)),
            },
        );
        super::activity::connection(super::activity::Connection {
            id: &id,
            name: &name,
            dest: Some(dest),
            denied: None,
            bytes_up: outcome.bytes_up,
            bytes_down: outcome.bytes_down,
            upstream_failed: outcome.upstream_failed,
            mismatched,
            brokered: Some((outcome.injected, outcome.misuse)),
        });
        return;
    }
    // Plain HTTP: every request on the connection is checked, not only
    // the first (a keep-alive or pipelined request for another name would
    // reach whatever else this address serves); the checker starts with
    // the bytes read to learn the name. A brokered secret's placeholder
    // in a head stops the request (the secret may not go here this way).
    let requests = if tls {
        if upstream.write_all(&first).is_err() {
            return record(0, 0, true);
        }
        None
    } else {
        let refusing = super::broker::table::secrets_of(&id)
            .map(|secrets| {
                secrets
                    .iter()
                    .map(|s| {
                        let why = super::broker::rules::misuse_why(s, &name, false);
                        (s.placeholder.clone(), s.name.clone(), why)
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some((RequestStream::new(&name).refusing(refusing), first))
    };
    let (up, down) = splice(
        conn,
        upstream,
        Splice {
            allowed: policy_allows(*peer.ip()),
            id: id.clone(),
            name: name.clone(),
            port: dest.port(),
            requests,
        },
    );
    record(up, down, false);
}

/// Takes the bytes of `pending` that `requests` allows to go upstream,
/// and the refusal of what follows them, if any.
fn vet(requests: &mut RequestStream, pending: &mut Vec<u8>) -> (Vec<u8>, Option<Refused>) {
    let mut vetted = Vec::new();
    loop {
        match requests.check(pending) {
            Ok(0) => return (vetted, None),
            Ok(n) => vetted.extend(pending.drain(..n)),
            Err(refused) => return (vetted, Some(refused)),
        }
    }
}

fn deny(mut conn: TcpStream, tls: bool, why: &str) {
    if tls {
        // A fatal unrecognized_name alert, as a server without the name sends.
        let _ = conn.write_all(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x70]);
    } else {
        let body = format!("paddock: {why}\npaddock: {}\n", super::requests::HOW_TO_ASK);
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
/// After a refused request, how long the upstream may stay quiet before
/// the client is told and cut, even if the upstream has not closed: the
/// answers to the requests before it come first, and an upstream may be
/// slow (over a second on an emulated box).
const ANSWER_WAIT: Duration = Duration::from_secs(30);

type Allowed = Box<dyn Fn(&str, u16) -> bool + Send + Sync>;

/// Asks the current policy table about the workspace at `peer`.
fn policy_allows(peer: Ipv4Addr) -> Allowed {
    Box::new(move |name, port| {
        policy_table::lookup(peer).is_some_and(|(_, egress)| egress.allows(name, port))
    })
}

/// What one spliced connection is.
struct Splice {
    /// Whether the workspace's policy still allows (name, port).
    allowed: Allowed,
    id: String,
    name: String,
    port: u16,
    /// Plain HTTP: the request checker and the client's bytes it has not
    /// passed yet.
    requests: Option<(RequestStream, Vec<u8>)>,
}

/// Copies both ways until both sides are done, one is idle too long, or
/// the workspace's policy stops allowing `name`:`port` (then both sides
/// are cut within a second). The bytes that went up and came down.
fn splice(client: TcpStream, upstream: TcpStream, conn: Splice) -> (u64, u64) {
    let (Ok(client2), Ok(upstream2)) = (client.try_clone(), upstream.try_clone()) else {
        return (0, 0);
    };
    // Writes time out too: a peer that stops reading must not hold a pump
    // (and the connection's slot) past the policy and the idle limit.
    for s in [&client, &upstream] {
        let _ = s.set_read_timeout(Some(RECHECK));
        let _ = s.set_write_timeout(Some(RECHECK));
    }
    let Splice {
        allowed,
        id,
        name,
        port,
        requests,
    } = conn;
    let host = name.clone();
    let allowed = move || allowed(&name, port);
    let allowed = Arc::new(allowed);
    let allowed2 = Arc::clone(&allowed);
    let words: LastWords = Arc::default();
    let words2 = Arc::clone(&words);
    let (up, down) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let down2 = Arc::clone(&down);
    let back = std::thread::Builder::new()
        .name("egress-back".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            pump(
                upstream2,
                client2,
                &*allowed2,
                Side::Answers(&words2),
                &down2,
            )
        });
    let mut checker = requests.map(|(r, pending)| Checker {
        requests: r,
        pending,
        id,
        name: host,
        words,
    });
    let side = match checker.as_mut() {
        Some(c) => Side::Requests(c),
        None => Side::Opaque,
    };
    pump(client, upstream, &*allowed, side, &up);
    if let Ok(t) = back {
        let _ = t.join();
    }
    (up.load(Ordering::Relaxed), down.load(Ordering::Relaxed))
}

/// The client side of a plain-HTTP connection: what checks its requests.
struct Checker {
    requests: RequestStream,
    pending: Vec<u8>,
    id: String,
    name: String,
    words: LastWords,
}

/// The refusal the client gets once the upstream has answered what it was
/// sent before it (responses come in request order).
type LastWords = Arc<std::sync::Mutex<Option<Refusal>>>;

/// A refusal waiting for the answers before it, and since when.
struct Refusal {
    response: Vec<u8>,
    at: std::time::Instant,
}

/// What a pump copies.
enum Side<'a> {
    /// TLS: bytes it cannot read.
    Opaque,
    /// Plain HTTP from the client: every request checked.
    Requests(&'a mut Checker),
    /// From the upstream, and what to send the client when it is done.
    Answers(&'a std::sync::Mutex<Option<Refusal>>),
}

impl Side<'_> {
    /// Once the upstream is done (`quiet` None: it closed) or has been
    /// quiet for ANSWER_WAIT since a refusal: tells the client why and
    /// ends the connection. False if there was none, or not yet.
    fn last_words(
        &self,
        client: &mut TcpStream,
        upstream: &TcpStream,
        quiet: Option<Duration>,
    ) -> bool {
        let Side::Answers(words) = self else {
            return false;
        };
        let mut words = words.lock().unwrap_or_else(|e| e.into_inner());
        let due = match (&*words, quiet) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(r), Some(quiet)) => quiet.min(r.at.elapsed()) >= ANSWER_WAIT,
        };
        if !due {
            return false;
        }
        let Some(refusal) = words.take() else {
            return false;
        };
        drop(words);
        let _ = client.write_all(&refusal.response);
        cut(client, upstream);
        true
    }
}

impl Checker {
    /// Sends on what may go; on a refusal stops (the answers' pump tells
    /// the client why once the requests before it are answered).
    fn forward(
        &mut self,
        data: &[u8],
        upstream: &mut TcpStream,
        allowed: &dyn Fn() -> bool,
    ) -> Forwarded {
        self.pending.extend_from_slice(data);
        let (vetted, refused) = vet(&mut self.requests, &mut self.pending);
        if !write_patiently(upstream, &vetted, allowed) {
            return Forwarded::Failed;
        }
        match refused {
            None => Forwarded::Sent,
            Some(refused) => {
                self::refused(&self.id, "", None, &refused.why, &refused.why);
                if let Some(secret) = &refused.secret {
                    let kind = super::broker::table::secrets_of(&self.id)
                        .and_then(|all| {
                            all.iter()
                                .find(|s| s.name == *secret)
                                .map(|s| super::broker::rules::misuse_kind(s, &self.name, false))
                        })
                        .unwrap_or(super::broker::events::Misuse::OtherHost);
                    super::broker::events::record(super::broker::events::SecretEvent {
                        workspace: self.id.clone(),
                        secret: secret.clone(),
                        host: self.name.clone(),
                        method: String::new(),
                        path: String::new(),
                        misuse: Some(kind),
                    });
                }
                *self.words.lock().unwrap_or_else(|e| e.into_inner()) = Some(Refusal {
                    response: refused.response(),
                    at: std::time::Instant::now(),
                });
                Forwarded::Refused
            }
        }
    }
}

/// What became of the client's bytes.
enum Forwarded {
    Sent,
    /// A request was refused: nothing more goes up.
    Refused,
    /// The upstream stopped taking them (gone, or stuck past the limits).
    Failed,
}

/// Writes all of `data`, waiting on a peer that reads slowly but not on
/// one that has stopped: the connection ends once it has taken nothing for
/// IDLE, or at once when the policy no longer allows it. (The pump's own
/// checks run only between reads, which a blocked write never reaches.)
fn write_patiently(to: &mut TcpStream, mut data: &[u8], allowed: &dyn Fn() -> bool) -> bool {
    let mut stuck = Duration::ZERO;
    while !data.is_empty() {
        match to.write(data) {
            Ok(0) => return false,
            Ok(n) => {
                data = &data[n..];
                stuck = Duration::ZERO;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if timed_out(&e) => {
                stuck += RECHECK;
                if stuck >= IDLE || !allowed() {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
    true
}

/// A socket timeout: the read or write waited RECHECK (the kind depends
/// on the platform).
fn timed_out(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Ends both directions (the other pump sees the shutdown).
fn cut(a: &TcpStream, b: &TcpStream) {
    let _ = a.shutdown(Shutdown::Both);
    let _ = b.shutdown(Shutdown::Both);
}

/// Copies `from` to `to` (see `splice`), adding what it read to `bytes`.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    allowed: &dyn Fn() -> bool,
    mut side: Side<'_>,
    bytes: &AtomicU64,
) {
    let mut buf = [0u8; 16 * 1024];
    let mut idle = Duration::ZERO;
    let mut checked = std::time::Instant::now();
    // What the client sent before the splice (the bytes that named the
    // host) goes first, checked like the rest.
    if let Side::Requests(c) = &mut side {
        match c.forward(&[], &mut to, allowed) {
            Forwarded::Sent => {}
            Forwarded::Refused => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Forwarded::Failed => return cut(&from, &to),
        }
    }
    loop {
        match from.read(&mut buf) {
            Ok(0) => {
                if side.last_words(&mut to, &from, None) {
                    return;
                }
                break;
            }
            Ok(n) => {
                bytes.fetch_add(n as u64, Ordering::Relaxed);
                idle = Duration::ZERO;
                // A busy connection is checked as often as a quiet one.
                if checked.elapsed() >= RECHECK {
                    checked = std::time::Instant::now();
                    if !allowed() {
                        return cut(&from, &to);
                    }
                }
                let sent = match &mut side {
                    Side::Requests(c) => c.forward(&buf[..n], &mut to, allowed),
                    _ if write_patiently(&mut to, &buf[..n], allowed) => Forwarded::Sent,
                    _ => Forwarded::Failed,
                };
                if let Forwarded::Failed = sent {
                    return cut(&from, &to);
                }
                if let Forwarded::Refused = sent {
                    break;
                }
            }
            Err(e) if timed_out(&e) => {
                idle += RECHECK;
                if side.last_words(&mut to, &from, Some(idle)) {
                    return;
                }
                if idle >= IDLE || !allowed() {
                    return cut(&from, &to);
                }
            }
            Err(_) => break,
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

#[cfg(test)]
#[path = "proxy_tests.rs"]
mod tests;
