//! One client connection of the API process, from accept to close: the
//! deadlines that bound what a client can hold before it is authenticated,
//! authentication on the head, admission (api::admission), and the request.

use super::admission::{Refusal, AUTH_WINDOW, MAX_CONNECTIONS, MAX_PER_ADDRESS};
use super::channel::Call;
use super::http;
use super::server::{allowed_methods, call, json_error, route, segments, Shared, Tls, MAX_DRAIN};
use serde_json::Value;
use std::net::{IpAddr, TcpStream};
use std::time::{Duration, Instant};

/// Longest any single read or write may wait (an idle body, a stalled client).
pub const IO_TIMEOUT: Duration = Duration::from_secs(15);
/// From accept to a complete request head, TLS handshake included: a client
/// that sends half a head and waits is cut off here, before authentication.
pub const HEAD_DEADLINE: Duration = Duration::from_secs(10);
/// The same on an overflow slot (a client over a cap), which exists only to
/// say so, answer health and let an admin through.
pub const OVERFLOW_HEAD_DEADLINE: Duration = Duration::from_secs(5);
/// How long an answer given without reading the body (a refusal, health, an
/// unknown path) waits for that body before the connection closes: long
/// enough that a client still sending sees the answer, not a reset.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(2);
/// TCP keepalive: a peer that vanished (power, cable, a dropped NAT entry)
/// is noticed after about two minutes idle, not the kernel's two hours, so
/// a long exec whose client is gone ends (see `transfer::watch_client`).
const KEEPALIVE_IDLE_S: u32 = 60;
const KEEPALIVE_INTERVAL_S: u32 = 10;
const KEEPALIVE_PROBES: u32 = 6;

/// The TCP stream under TLS, with an optional deadline over all reads
/// (per-read timeouts alone let a client trickle a byte at a time forever).
pub struct Timed {
    tcp: TcpStream,
    deadline: Option<Instant>,
}

impl Timed {
    pub fn set_deadline(&mut self, within: Option<Duration>) {
        self.deadline = within.map(|d| Instant::now() + d);
    }

    /// A second handle on the client's socket, for watching it while
    /// another thread (the request's) reads and writes through TLS.
    pub fn watch_handle(&self) -> std::io::Result<TcpStream> {
        self.tcp.try_clone()
    }
}

impl std::io::Read for Timed {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let wait = match self.deadline {
            None => IO_TIMEOUT,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "request deadline passed",
                    ));
                }
                left.min(IO_TIMEOUT)
            }
        };
        self.tcp.set_read_timeout(Some(wait))?;
        self.tcp.read(buf)
    }
}

impl std::io::Write for Timed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tcp.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.tcp.flush()
    }
}

fn keepalive(tcp: &TcpStream) {
    use std::os::fd::AsRawFd;
    let set = |level: libc::c_int, name: libc::c_int, value: u32| {
        let value = value as libc::c_int;
        // SAFETY: setsockopt on a socket we own, with a pointer to a local
        // int and its size.
        unsafe {
            libc::setsockopt(
                tcp.as_raw_fd(),
                level,
                name,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        }
    };
    // Best effort: without them the connection still has its deadlines.
    set(libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, KEEPALIVE_IDLE_S);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, KEEPALIVE_INTERVAL_S);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPCNT, KEEPALIVE_PROBES);
}

/// Whether a request is answered without a token (and so before one is checked).
fn public(req: &http::Request) -> bool {
    req.method == "GET" && segments(&req.path) == ["v1", "health"]
}

/// Who the bearer is, asked before any body is read: Ok((tenant, admin)),
/// or the refusal to answer with.
fn who(shared: &Shared, bearer: &str) -> Result<(String, bool), (u16, Value)> {
    let (reply, _) = call(shared, bearer, Call::WhoAmI);
    let tenant = reply.body.get("tenant").and_then(Value::as_str);
    let admin = reply.body.get("admin").and_then(Value::as_bool);
    match (reply.status, tenant, admin) {
        (200, Some(t), Some(a)) => Ok((t.to_string(), a)),
        (200, _, _) => Err(json_error(503, "host-init gave no identity")),
        (status, _, _) => Err((status, reply.body)),
    }
}

/// Serves one connection from `address`; `overflow`: it came in over a
/// connection cap, so only health and admin tokens' requests are served on it.
pub fn handle(shared: &Shared, tcp: TcpStream, address: IpAddr, overflow: bool) {
    let _ = tcp.set_write_timeout(Some(IO_TIMEOUT));
    keepalive(&tcp);
    let Ok(conn) = rustls::ServerConnection::new(shared.tls.clone()) else {
        return;
    };
    let head_deadline = if overflow {
        OVERFLOW_HEAD_DEADLINE
    } else {
        HEAD_DEADLINE
    };
    let timed = Timed {
        tcp,
        deadline: Some(Instant::now() + head_deadline),
    };
    let mut tls = rustls::StreamOwned::new(conn, timed);
    let answer = match http::read_request(&mut tls) {
        Ok(req) => {
            // A body (once admitted) is read with the idle timeout per read.
            tls.sock.set_deadline(None);
            let answer = serve(shared, &req, &mut tls, address, overflow);
            if answer.is_some() {
                // Whatever body nobody took gets a short deadline, whoever
                // sent it: a trickled body never holds a connection.
                tls.sock.set_deadline(Some(DRAIN_DEADLINE));
                http::discard_body(&req, &mut tls, MAX_DRAIN);
            }
            answer
        }
        Err(http::HttpError::TooLarge) => Some(json_error(413, "request head too large")),
        Err(http::HttpError::Malformed(m)) => Some(json_error(400, m)),
        Err(_) => return,
    };
    if let Some((status, body)) = answer {
        let _ = http::write_json(&mut tls, status, &body);
    }
    tls.conn.send_close_notify();
    let _ = std::io::Write::flush(&mut tls);
}

/// Answers one request whose head has arrived (None: the answer is written).
/// Nothing of the body is read before the bearer is known and the request
/// admitted.
fn serve(
    shared: &Shared,
    req: &http::Request,
    tls: &mut Tls,
    address: IpAddr,
    overflow: bool,
) -> Option<(u16, Value)> {
    let allowed = allowed_methods(&segments(&req.path));
    if public(req) || allowed.is_none() {
        // Health, or no such endpoint: neither takes a token nor a body.
        return route(shared, req, tls);
    }
    if req.bearer.is_empty() {
        // No credential is not a guess, and not worth an audit event each:
        // a client sending none as fast as it can would otherwise write
        // host-init's audit log as fast (the same answer host-init gives).
        return Some(json_error(401, "missing bearer token"));
    }
    if shared.admission.auth_blocked(address) && !shared.admission.known_bearer(&req.bearer) {
        return Some(json_error(
            429,
            format!(
                "too many failed authentications from this address; retry in {} s",
                AUTH_WINDOW.as_secs()
            ),
        ));
    }
    let (tenant, admin) = match who(shared, &req.bearer) {
        Ok(id) => {
            shared.admission.accepted_bearer(&req.bearer);
            id
        }
        Err(refusal) => {
            if refusal.0 == 401 {
                shared.admission.auth_failed(address);
            }
            return Some(refusal);
        }
    };
    if overflow && !admin {
        return Some(json_error(
            503,
            format!(
                "the API is at its connection limit ({MAX_CONNECTIONS} in all, \
                 {MAX_PER_ADDRESS} per client address); retry shortly"
            ),
        ));
    }
    // Held until the request is answered.
    let _slot = match shared.admission.request(&tenant, admin) {
        Ok(slot) => slot,
        Err(e @ Refusal::Tenant) => return Some(json_error(429, e.to_string())),
        Err(e @ Refusal::Busy) => return Some(json_error(503, e.to_string())),
    };
    if let Some(methods) = allowed.filter(|m| !m.contains(&req.method.as_str())) {
        tls.sock.set_deadline(Some(DRAIN_DEADLINE));
        http::discard_body(req, tls, MAX_DRAIN);
        let _ = http::write_not_allowed(tls, methods);
        return None;
    }
    if http::write_continue(tls, req).is_err() {
        return None;
    }
    route(shared, req, tls)
}
