//! One client connection of the API process, from accept to close, on
//! tokio and hyper (HTTP/1.1 with keep-alive, or HTTP/2 by ALPN): the
//! deadlines that bound what a client holds before it is authenticated,
//! authentication on the head, admission (crate::admission), and the handoff
//! of an admitted request to a blocking handler (crate::bridge).
//!
//! Everything before admission runs here, on the runtime's two worker
//! threads, and asks host-init who a bearer is without holding a thread:
//! a flood of unauthenticated requests costs sockets and memory, never the
//! blocking threads that admitted requests run on.

use crate::admission::{
    Connection, Refusal, TenantRequest, AUTH_WINDOW, MAX_CONNECTIONS, MAX_PER_ADDRESS,
};
use crate::bridge::{ApiBody, BodyReader, Exchange, Head, Responder};
use crate::dispatch::route;
use crate::handling::{json_error, MAX_DRAIN};
use crate::http::{self, HttpError, Request};
use crate::routes::{self, Route};
use crate::routes::{allowed_methods, segments};
use crate::shared::{call_async, status_async, Shared};
use paddock_api_channel::{Call, Verdict};
use serde_json::Value;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest any single wait on a client may last: the next piece of a body,
/// room for the next piece of an answer.
pub const IO_TIMEOUT: Duration = Duration::from_secs(15);
/// From accept to a complete first request head, TLS handshake included,
/// and from one answer to the next head on a kept-alive HTTP/1.1
/// connection: a client that sends half a head and waits is cut off here,
/// before authentication.
pub const HEAD_DEADLINE: Duration = Duration::from_secs(10);
/// The same on an overflow slot (a client over a cap), which exists only to
/// say so, answer health and let an admin through; it serves one request.
pub const OVERFLOW_HEAD_DEADLINE: Duration = Duration::from_secs(5);
/// How long an HTTP/2 connection may stay open with no request in flight.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an answer given without reading the body (a refusal, health, an
/// unknown path) waits for that body: long enough that a client still
/// sending sees the answer, not a reset.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(2);
/// Requests one HTTP/2 connection may have open at once.
pub const MAX_STREAMS: u32 = 8;
/// HTTP/2 flow control: what a client may send before anything reads it,
/// per connection and per stream, and what is buffered for a client slow
/// to read, per stream. hyper's defaults (1 MiB each way) would let one
/// address's connections buffer 64 MiB before authentication.
const H2_CONNECTION_WINDOW: u32 = 128 << 10;
const H2_STREAM_WINDOW: u32 = 64 << 10;
const H2_SEND_BUFFER: usize = 64 << 10;
/// Largest HTTP/1.1 read buffer: a head over `http::MAX_HEAD` but within
/// this gets a 413 from us; beyond, hyper's 431.
const MAX_READ_BUFFER: usize = 64 << 10;
/// TCP keepalive: a peer that vanished (power, cable, a dropped NAT entry)
/// is noticed after about two minutes idle, not the kernel's two hours, so
/// a long exec whose client is gone ends.
const KEEPALIVE_IDLE_S: u32 = 60;
const KEEPALIVE_INTERVAL_S: u32 = 10;
const KEEPALIVE_PROBES: u32 = 6;
/// How often a connection's idle limit is checked.
const TICK: Duration = Duration::from_millis(500);

fn keepalive(tcp: &tokio::net::TcpStream) {
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

/// Requests in flight on a connection and when the last one ended, for
/// closing connections that hold a slot and do nothing.
struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `opened` when a request last ended; 0: none yet.
    last_end_ms: AtomicU64,
}

/// A request in flight on a connection. Only an admitted one, when it
/// ends, counts as activity that keeps the connection open: health, 404s
/// and refusals answered over and over must not hold a slot for ever.
struct Busy {
    activity: Arc<Activity>,
    admitted: bool,
}

impl Activity {
    fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        Busy {
            activity: self.clone(),
            admitted: false,
        }
    }

    /// Whether the connection has been idle past its limit: before its
    /// first request, `first` from accept; after, `IDLE_TIMEOUT`.
    fn idle_too_long(&self, first: Duration) -> bool {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return false;
        }
        let now = self.opened.elapsed();
        match self.last_end_ms.load(Ordering::SeqCst) {
            0 => now > first,
            end => now.saturating_sub(Duration::from_millis(end)) > IDLE_TIMEOUT,
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let a = &self.activity;
        if self.admitted {
            let ms = (a.opened.elapsed().as_millis() as u64).max(1);
            a.last_end_ms.store(ms, Ordering::SeqCst);
        }
        a.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Which listener a connection came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Tls,
    /// The plain-HTTP listener (crate::plain): HTTP/1.1 only.
    Plain,
}

/// Serves one accepted connection from `address` on its admission slot;
/// an overflow slot serves health and admin tokens' requests only.
pub async fn serve_connection(
    shared: Arc<Shared>,
    tcp: tokio::net::TcpStream,
    address: IpAddr,
    slot: Connection,
    via: Transport,
) {
    let overflow = slot.is_overflow();
    keepalive(&tcp);
    // An answer goes out as several TLS records (head, body pieces, a
    // stream's chunks); with Nagle's algorithm each after the first waits
    // for the client's delayed ACK, 40 ms on Linux.
    let _ = tcp.set_nodelay(true);
    let first = if overflow {
        OVERFLOW_HEAD_DEADLINE
    } else {
        HEAD_DEADLINE
    };
    match via {
        Transport::Plain => serve_http(shared, tcp, address, overflow, true, first, false).await,
        Transport::Tls => {
            let config = if overflow {
                shared.tls_h1.clone()
            } else {
                shared.tls.clone()
            };
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            if let Ok(Ok(tls)) = tokio::time::timeout(first, acceptor.accept(tcp)).await {
                serve_http(shared, tls, address, overflow, overflow, first, true).await;
            }
        }
    }
    drop(slot);
}

/// HTTP/1.1 or HTTP/2 (unless `h1_only`) on an accepted, handshaken
/// connection, until it closes or idles out.
async fn serve_http<I>(
    shared: Arc<Shared>,
    io: I,
    address: IpAddr,
    overflow: bool,
    h1_only: bool,
    first: Duration,
    tls: bool,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    let activity = Arc::new(Activity {
        opened: Instant::now(),
        in_flight: AtomicUsize::new(0),
        last_end_ms: AtomicU64::new(0),
    });
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |req| {
            let busy = activity.begin();
            let shared = shared.clone();
            async move {
                Ok::<_, std::convert::Infallible>(
                    request(shared, req, address, overflow, tls, busy).await,
                )
            }
        })
    };
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(first)
        .max_buf_size(MAX_READ_BUFFER)
        .keep_alive(!overflow);
    builder
        .http2()
        .timer(TokioTimer::new())
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .max_send_buf_size(H2_SEND_BUFFER)
        .max_concurrent_streams(MAX_STREAMS)
        .max_header_list_size(MAX_READ_BUFFER as u32)
        .keep_alive_interval(Some(Duration::from_secs(KEEPALIVE_IDLE_S as u64)));
    if h1_only {
        builder = builder.http1_only();
    }
    let conn = builder.serve_connection(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    let mut closing: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = conn.as_mut() => break,
            _ = tokio::time::sleep(TICK) => {
                match closing {
                    None if activity.idle_too_long(first) => {
                        conn.as_mut().graceful_shutdown();
                        closing = Some(Instant::now());
                    }
                    // A client that will not let a graceful close finish.
                    Some(at) if at.elapsed() > DRAIN_DEADLINE => break,
                    _ => {}
                }
            }
        }
    }
}

/// What the asynchronous part decided about a request.
enum Decision {
    /// Answer at once (the body, if any, is drained first).
    Answer(u16, Value),
    NotAllowed(&'static [&'static str]),
    /// Admitted: hand it to a blocking handler, holding the tenant's slot.
    Run(Option<TenantRequest>),
}

fn response(head: Head, body: ApiBody) -> hyper::Response<ApiBody> {
    let mut r = hyper::Response::new(body);
    *r.status_mut() = hyper::StatusCode::from_u16(head.status)
        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in head.headers {
        if let Ok(v) = hyper::header::HeaderValue::from_str(&value) {
            r.headers_mut().append(name, v);
        }
    }
    r
}

fn full((head, body): (Head, Vec<u8>)) -> hyper::Response<ApiBody> {
    response(head, ApiBody::full(body))
}

/// Whether an answer given without reading the body should drain it
/// first: a body small enough, that the client is sending (one waiting for
/// a go-ahead has sent nothing, and a refused request gets none).
fn should_drain(req: &Request, body: &BodyReader) -> bool {
    req.has_body()
        && !body.taken()
        && !req.expect_continue
        && req.content_length.unwrap_or(0) <= MAX_DRAIN
}

async fn request(
    shared: Arc<Shared>,
    req: hyper::Request<hyper::body::Incoming>,
    address: IpAddr,
    overflow: bool,
    tls: bool,
    busy: Busy,
) -> hyper::Response<ApiBody> {
    use http_body::Body as _;
    let rt = tokio::runtime::Handle::current();
    let (parts, incoming) = req.into_parts();
    let has_body = !incoming.is_end_stream();
    let (mut body, pump) = BodyReader::new(incoming, rt, IO_TIMEOUT);
    tokio::spawn(pump);
    let mut req = match Request::from_parts(&parts, has_body) {
        Ok(req) => {
            body.expect_length(req.content_length);
            req
        }
        Err(e @ HttpError::TooLarge) => {
            return full(http::json_answer(413, &json_error(413, e.to_string()).1))
        }
        Err(HttpError::Malformed(m)) => return full(http::json_answer(400, &json_error(400, m).1)),
    };
    req.tls = tls;
    // The web console's pages, and a console session standing in for its
    // token: both settled before anything else looks at the request.
    let early = match crate::console::page(&req) {
        Some(page) => Some(page),
        None => crate::sessions::authenticate(&shared.sessions, &mut req, crate::sessions::now_s())
            .err()
            .map(|(status, value)| crate::sessions::refusal(&req, status, &value)),
    };
    if let Some(answer) = early {
        if should_drain(&req, &body) {
            body.drain_async(MAX_DRAIN, DRAIN_DEADLINE).await;
        }
        drop(busy);
        return full(answer);
    }
    let mut answer = match decide(&shared, &req, address, overflow).await {
        Decision::Run(slot) => return run(shared, req, body, slot, busy).await,
        Decision::Answer(status, value) if crate::e2b::is_e2b_path(&req.path) => {
            let message = value["error"].as_str().unwrap_or("refused").to_string();
            http::json_answer(status, &crate::e2b::error(status, message).1)
        }
        Decision::Answer(status, value) => http::json_answer(status, &value),
        Decision::NotAllowed(methods) => http::not_allowed_answer(methods),
    };
    // Refusals and unknown paths close an HTTP/1.1 connection: answered
    // over and over, they would keep a slot for a client that never
    // authenticates. Health keeps it (monitors poll it).
    if !public(&req) && parts.version < hyper::Version::HTTP_2 {
        answer
            .0
            .headers
            .push((hyper::header::CONNECTION, "close".into()));
    }
    // Whatever body nobody took gets a short deadline, whoever sent it: a
    // trickled body never holds a connection.
    if should_drain(&req, &body) {
        body.drain_async(MAX_DRAIN, DRAIN_DEADLINE).await;
    }
    drop(busy);
    full(answer)
}

/// Runs an admitted request's handler on the blocking pool; its answer as
/// soon as the head is known (a stream's body follows as it is written).
async fn run(
    shared: Arc<Shared>,
    req: Request,
    body: BodyReader,
    slot: Option<TenantRequest>,
    busy: Busy,
) -> hyper::Response<ApiBody> {
    let (mut out, arrives) = Responder::new(tokio::runtime::Handle::current(), IO_TIMEOUT);
    let mut busy = busy;
    busy.admitted = true;
    // The tenant's slot and the connection's activity last as long as the
    // answer's body: a streamed answer the client is slow to take still
    // counts against its tenant.
    out.hold(Box::new((busy, slot)));
    let job = tokio::task::spawn_blocking(move || {
        let mut io = Exchange { body, out };
        match route(&shared, &req, &mut io) {
            Some((status, value)) => {
                if should_drain(&req, &io.body) {
                    io.body.drain(MAX_DRAIN, DRAIN_DEADLINE);
                }
                http::json(&mut io.out, status, &value);
            }
            None if !io.out.started() => {
                http::json(&mut io.out, 500, &json_error(500, "no answer was given").1);
            }
            None => {}
        }
    });
    match arrives.await {
        Ok((head, body)) => response(head, body),
        // The handler ended without a head. (A panic cannot get here:
        // release builds abort on panic, and host-init restarts the
        // process.)
        Err(_) => {
            let _ = job.await;
            full(http::json_answer(
                500,
                &json_error(500, "the request failed inside the API process").1,
            ))
        }
    }
}

/// Whether a request is answered without a token (and so before one is checked).
fn public(req: &Request) -> bool {
    req.method == "GET" && segments(&req.path) == ["v1", "health"]
}

/// Who the bearer is, asked before any body is read: Ok((tenant, admin)),
/// or the refusal to answer with.
async fn who(shared: &Arc<Shared>, bearer: &str) -> Result<(String, bool), (u16, Value)> {
    let reply = call_async(shared, bearer, Call::WhoAmI).await;
    match reply.verdict {
        Verdict::Ok => match serde_json::from_value::<paddock_api_types::WhoAmI>(reply.body) {
            Ok(who) => Ok((who.tenant, who.admin)),
            Err(_) => Err(json_error(503, "host-init gave no identity")),
        },
        verdict => Err((http::status_of(verdict), reply.body)),
    }
}

/// Decides about a request whose head has arrived, before any of its body
/// is read: answered here (health, unknown paths, refusals), or admitted.
async fn decide(shared: &Arc<Shared>, req: &Request, address: IpAddr, overflow: bool) -> Decision {
    let answer = |(status, value): (u16, Value)| Decision::Answer(status, value);
    let allowed = allowed_methods(&segments(&req.path));
    if public(req) {
        return answer(health(shared).await);
    }
    if allowed.is_none() {
        // Not ours: nothing past this point (authentication, a handler)
        // is spent on it.
        return match routes::resolve(&req.method, &req.path) {
            Route::BadWorkspaceId => answer(json_error(404, "no such endpoint")),
            _ => answer(json_error(
                404,
                format!("no such endpoint: {} {}", req.method, req.path),
            )),
        };
    }
    if req.bearer.is_empty() {
        // No credential is not a guess, and not worth an audit event each:
        // a client sending none as fast as it can would otherwise write
        // host-init's audit log as fast (the same answer host-init gives).
        return answer(json_error(401, "missing bearer token"));
    }
    if shared.admission.auth_blocked(address) && !shared.admission.known_bearer(&req.bearer) {
        return answer(json_error(
            429,
            format!(
                "too many failed authentications from this address; retry in {} s",
                AUTH_WINDOW.as_secs()
            ),
        ));
    }
    let Some(asking) = shared.admission.begin_asking(address) else {
        return answer(json_error(
            429,
            "too many requests from this address are being authenticated at once; retry shortly",
        ));
    };
    // In a task of its own, which counts the outcome even when the client
    // gives up first (a reset stream): the guess was made all the same.
    let checked = {
        let shared = shared.clone();
        let bearer = req.bearer.clone();
        let session = req.session_cookie.clone().filter(|_| req.via_session);
        tokio::spawn(async move {
            let _asking = asking;
            let who = who(&shared, &bearer).await;
            match &who {
                Ok(_) => shared.admission.accepted_bearer(&bearer),
                // A session whose token was revoked, rotated or expired
                // ends with it; its use is not a guess.
                Err((401, _)) if session.is_some() => {
                    if let Some(cookie) = &session {
                        shared.sessions.close(cookie);
                    }
                }
                Err((401, _)) => shared.admission.auth_failed(address),
                Err(_) => {}
            }
            who
        })
    };
    let (tenant, admin) = match checked.await {
        Ok(Ok(id)) => id,
        Ok(Err(refusal)) => return answer(refusal),
        Err(_) => return answer(json_error(503, "authentication failed; retry shortly")),
    };
    if overflow && !admin {
        return answer(json_error(
            503,
            format!(
                "the API is at its connection limit ({MAX_CONNECTIONS} in all, \
                 {MAX_PER_ADDRESS} per client address); retry shortly"
            ),
        ));
    }
    let slot = match shared.admission.request(&tenant, admin) {
        Ok(slot) => slot,
        Err(e @ Refusal::Tenant) => return answer(json_error(429, e.to_string())),
        Err(e @ Refusal::Busy) => return answer(json_error(503, e.to_string())),
    };
    match allowed.filter(|m| !m.contains(&req.method.as_str())) {
        Some(methods) => Decision::NotAllowed(methods),
        None => Decision::Run(slot),
    }
}

async fn health(shared: &Arc<Shared>) -> (u16, Value) {
    match status_async(shared).await {
        Some(s) => (
            200,
            serde_json::json!(paddock_api_types::Health {
                status: if s.state == "ready" { "ok" } else { "degraded" }.into(),
                state: s.state,
                version: s.version,
                workspaces: s.workspaces,
                uptime_s: s.uptime_s,
            }),
        ),
        None => json_error(503, "host-init did not answer"),
    }
}
