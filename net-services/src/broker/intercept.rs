//! One brokered connection: the guest's TLS ended here with the host's
//! certificate from the egress CA (or plain HTTP, where a secret allows
//! it), hyper serving the guest's HTTP/1.1 or HTTP/2, each request checked
//! and given its secrets (`rules`), then sent over the broker's own
//! connection to the real host (`upstream`). Answers go back with any
//! value the host echoed replaced by its placeholder.
//!
//! Each connection runs on a single-threaded runtime of its own, on a
//! thread of its own (`serve_blocking`): the proxy's per-workspace share
//! of connections holds as for any other connection, a brokered
//! connection shares nothing with another, and its CPU work stays off the
//! runtime the other workspaces' connections share.

use super::events::{self, Misuse, SecretEvent};
use super::io::{Guest, Scrubbed};
use super::rules::{self, Refusal};
use super::table;
use super::table::Plan;
use super::upstream::{self, BoxError, ReqBody, Sender};
use super::Brokered;
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};

/// How long the guest has to finish its TLS handshake, and a request head.
const HANDSHAKE: Duration = Duration::from_secs(10);
/// As the proxy's splice: quiet this long both ways, the connection ends.
const IDLE: Duration = Duration::from_secs(120);
/// How often the workspace's policy is asked again.
const RECHECK: Duration = Duration::from_secs(1);
/// The largest body a placeholder is replaced in, before and after.
pub const MAX_BODY: usize = 1 << 20;
/// The largest request head from the guest (with secrets in: `rules`).
const MAX_HEAD: usize = rules::MAX_HEAD;
/// Requests at once on one HTTP/2 connection (each may hold a body being
/// replaced in).
const MAX_STREAMS: u32 = 16;

/// A connection handed to the broker.
pub struct Conn {
    pub id: String,
    /// The host (SNI, or the first Host), lower case.
    pub name: String,
    pub port: u16,
    pub tls: bool,
    pub plan: Plan,
    /// Whether the workspace's policy still allows `name`:`port`.
    pub allowed: Box<dyn Fn() -> bool + Send + Sync>,
}

/// What one connection came to, for the network record.
#[derive(Debug, Default)]
pub struct Outcome {
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// Requests a secret was put into.
    pub injected: u64,
    /// Requests refused for a misplaced placeholder.
    pub misuse: u64,
    pub upstream_failed: bool,
}

#[derive(Default)]
pub(super) struct Stats {
    pub(super) up: AtomicU64,
    pub(super) down: AtomicU64,
    injected: AtomicU64,
    misuse: AtomicU64,
    upstream_failed: AtomicBool,
    /// A refusal was logged for this connection.
    logged: AtomicBool,
    last: Mutex<Option<Instant>>,
}

impl Stats {
    pub(super) fn touch(&self) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }
    fn idle(&self) -> Duration {
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map_or(Duration::ZERO, |t| t.elapsed())
    }
}

struct Ctx {
    conn: Conn,
    stats: Arc<Stats>,
    upstream: Result<Sender, String>,
}

/// The stack of a brokered connection's thread: TLS and HTTP/2 on a
/// runtime need far more than a small thread's (only the pages touched
/// are used).
pub const STACK: usize = 1 << 20;

/// `serve` on a single-threaded runtime of its own, for the thread the
/// proxy gives each brokered connection: its TLS and the scrubbing of
/// every answer are CPU work, kept off the runtime every other
/// workspace's connections and lookups share, so a guest that makes the
/// broker busy slows only its own threads (which the kernel schedules
/// fairly against the rest).
pub fn serve_blocking(
    client: std::net::TcpStream,
    upstream: std::net::TcpStream,
    first: Vec<u8>,
    conn: Conn,
) -> Outcome {
    let failed = Outcome {
        upstream_failed: true,
        ..Outcome::default()
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            log::warn!("secret broker: no runtime for a connection: {e}");
            return failed;
        }
    };
    rt.block_on(async move {
        let streams = [client, upstream].map(|s| {
            s.set_nonblocking(true)
                .and_then(|()| tokio::net::TcpStream::from_std(s))
        });
        match streams {
            [Ok(client), Ok(upstream)] => serve(client, upstream, first, conn).await,
            _ => failed,
        }
    })
}

/// Serves one connection to its end, on the current runtime: `client` is
/// the guest's (of which `first` was already read), `upstream` a
/// connection to an address our resolver gave for the name.
async fn serve(
    client: tokio::net::TcpStream,
    upstream: tokio::net::TcpStream,
    first: Vec<u8>,
    conn: Conn,
) -> Outcome {
    let stats = Arc::new(Stats::default());
    stats.touch();
    // A guest that leaves mid-handshake is not news; its connection is in
    // the network record either way.
    let _ = run(client, upstream, first, conn, stats.clone()).await;
    Outcome {
        bytes_up: stats.up.load(Ordering::Relaxed),
        bytes_down: stats.down.load(Ordering::Relaxed),
        injected: stats.injected.load(Ordering::Relaxed),
        misuse: stats.misuse.load(Ordering::Relaxed),
        upstream_failed: stats.upstream_failed.load(Ordering::Relaxed),
    }
}

async fn run(
    client: tokio::net::TcpStream,
    upstream: tokio::net::TcpStream,
    first: Vec<u8>,
    conn: Conn,
    stats: Arc<Stats>,
) -> Result<(), String> {
    let guest = Guest::new(client, first, stats.clone());
    // The guest's side first, so a host that fails can be explained to it
    // in an answer rather than a closed connection.
    let guest = match conn.plan.server.clone() {
        Some(server) => {
            let accepted = tokio::time::timeout(
                HANDSHAKE,
                tokio_rustls::TlsAcceptor::from(server).accept(guest),
            )
            .await
            .map_err(|_| format!("{}: the guest's TLS handshake timed out", conn.name))?
            .map_err(|e| format!("{}: the guest's TLS handshake: {e}", conn.name))?;
            GuestSide::Tls(Box::new(accepted))
        }
        None => GuestSide::Plain(guest),
    };
    let tls_config = if conn.tls {
        Some(upstream::client_config(&conn.plan.secrets, &conn.name)?)
    } else {
        None
    };
    let sender = upstream::open(upstream, &conn.name, tls_config).await;
    if let Err(e) = &sender {
        stats.upstream_failed.store(true, Ordering::Relaxed);
        log::info!("workspace {}: secret broker: {e}", conn.id);
    }
    let ctx = Arc::new(Ctx {
        conn,
        stats,
        upstream: sender,
    });
    match guest {
        GuestSide::Tls(tls) => {
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            serve_guest(TokioIo::new(*tls), h2, ctx).await
        }
        GuestSide::Plain(guest) => serve_guest(TokioIo::new(guest), false, ctx).await,
    }
    Ok(())
}

enum GuestSide {
    Tls(Box<tokio_rustls::server::TlsStream<Guest>>),
    Plain(Guest),
}

/// Serves the guest's requests until it is done, idle for IDLE, or its
/// policy no longer allows the host.
async fn serve_guest<I>(io: TokioIo<I>, h2: bool, ctx: Arc<Ctx>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let c = ctx.clone();
    let service = hyper::service::service_fn(move |req| {
        let ctx = c.clone();
        async move { Ok::<_, Infallible>(handle(req, &ctx).await) }
    });
    let watch = watchdog(&ctx);
    if h2 {
        let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .max_concurrent_streams(MAX_STREAMS)
            .max_header_list_size(MAX_HEAD as u32)
            .serve_connection(io, service);
        tokio::select! { _ = conn => {}, () = watch => {} }
    } else {
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HANDSHAKE)
            .max_buf_size(MAX_HEAD)
            .serve_connection(io, service);
        tokio::select! { _ = conn => {}, () = watch => {} }
    }
}

async fn watchdog(ctx: &Ctx) {
    loop {
        tokio::time::sleep(RECHECK).await;
        if !(ctx.conn.allowed)() || ctx.stats.idle() >= IDLE || !secrets_unchanged(ctx) {
            return;
        }
    }
}

type AnswerBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

fn text(status: StatusCode, why: &str) -> Response<AnswerBody> {
    let body = format!("paddock: {why}\n");
    let mut r = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// Headers that describe one hop, not the request: never passed on.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
        .collect();
    for n in named {
        headers.remove(n.as_str());
    }
    for h in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "proxy-authenticate",
    ] {
        headers.remove(h);
    }
}

/// Whether every name the request gives for its host (the target's
/// authority, the Host header) is the connection's: a request for
/// another host on a connection opened for this one is refused, as on
/// the plain proxy.
fn names_this_host(parts: &http::request::Parts, name: &str, port: u16) -> Result<(), String> {
    let matches = |given: &str| -> bool {
        let given = given.trim().to_ascii_lowercase();
        let (host, p) = match given.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') && !p.is_empty() => (h.to_string(), p.parse().ok()),
            _ => (given.clone(), Some(port)),
        };
        host.trim_end_matches('.') == name && p == Some(port)
    };
    let mut seen = false;
    if let Some(a) = parts.uri.authority() {
        seen = true;
        if !matches(a.as_str()) {
            return Err(format!("the request names {a}, the connection {name}"));
        }
    }
    for h in parts.headers.get_all(header::HOST) {
        seen = true;
        let h = h.to_str().unwrap_or("");
        if !matches(h) {
            return Err(format!("the request names {h}, the connection {name}"));
        }
    }
    if seen {
        Ok(())
    } else {
        Err("the request names no host".into())
    }
}

/// Whether a request head holds any of the secrets' placeholders.
fn head_holds_placeholder<'a>(
    secrets: &'a [Brokered],
    parts: &http::request::Parts,
) -> Option<&'a Brokered> {
    rules::placeholder_in(secrets, parts.uri.to_string().as_bytes()).or_else(|| {
        parts
            .headers
            .values()
            .find_map(|v| rules::placeholder_in(secrets, v.as_bytes()))
    })
}

fn event(ctx: &Ctx, secret: &str, parts: &http::request::Parts, misuse: Option<Misuse>) {
    events::record(SecretEvent {
        workspace: ctx.conn.id.clone(),
        secret: secret.to_string(),
        host: ctx.conn.name.clone(),
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        misuse,
    });
}

/// A refusal for a misplaced placeholder: counted, recorded, logged once
/// per connection.
fn misused(ctx: &Ctx, secret: &str, parts: &http::request::Parts, kind: Misuse) {
    ctx.stats.misuse.fetch_add(1, Ordering::Relaxed);
    event(ctx, secret, parts, Some(kind));
    if !ctx.stats.logged.swap(true, Ordering::Relaxed) {
        log::info!(
            "workspace {}: secret broker refused a request to {}: secret {secret}: {}",
            ctx.conn.id,
            ctx.conn.name,
            kind.text()
        );
    }
}

/// Whether the workspace's secrets are still those this connection
/// started with (a removal or rotation ends brokered connections, so no
/// request after it gets an old value).
fn secrets_unchanged(ctx: &Ctx) -> bool {
    table::secrets_of(&ctx.conn.id).is_some_and(|now| Arc::ptr_eq(&now, &ctx.conn.plan.secrets))
}

async fn handle(req: Request<Incoming>, ctx: &Ctx) -> Response<AnswerBody> {
    ctx.stats.touch();
    let conn = &ctx.conn;
    let secrets = &conn.plan.secrets;
    let (mut parts, body) = req.into_parts();
    if !secrets_unchanged(ctx) {
        // 421: the client retries on a new connection, which gets the
        // secrets as they are now.
        let mut r = text(
            StatusCode::MISDIRECTED_REQUEST,
            "the workspace's secrets changed; connect again",
        );
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return r;
    }
    if names_this_host(&parts, &conn.name, conn.port).is_err() {
        if let Some(s) = head_holds_placeholder(secrets, &parts) {
            misused(ctx, &s.name, &parts, Misuse::Misdirected);
        }
        return text(
            StatusCode::MISDIRECTED_REQUEST,
            &format!("this connection is for {} only", conn.name),
        );
    }
    if parts.method == http::Method::CONNECT || parts.headers.contains_key(header::UPGRADE) {
        return text(
            StatusCode::NOT_IMPLEMENTED,
            "the secret broker does not pass on CONNECT or protocol upgrades",
        );
    }
    if !(conn.allowed)() {
        return text(
            StatusCode::FORBIDDEN,
            &format!("{} is no longer on this workspace's allowlist", conn.name),
        );
    }
    let mut target = parts
        .uri
        .path_and_query()
        .map_or_else(|| "/".to_string(), |p| p.as_str().to_string());
    let wants_trailers = parts
        .headers
        .get(header::TE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    let applied = match rules::apply(
        secrets,
        &conn.name,
        conn.tls,
        &mut target,
        &mut parts.headers,
    ) {
        Ok(a) => a,
        Err(Refusal::Misuse(m)) => {
            misused(ctx, &m.secret, &parts, m.kind);
            return text(StatusCode::FORBIDDEN, &m.why);
        }
        Err(Refusal::TooLarge) => {
            return text(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "with its secrets in, the request head would be over 64 KiB",
            )
        }
    };
    let mut used = applied.used.clone();
    let body: ReqBody = if applied.in_body.is_empty() {
        body.map_err(BoxError::from).boxed()
    } else {
        let mut bytes = match Limited::new(body, MAX_BODY).collect().await {
            Ok(c) => c.to_bytes().to_vec(),
            Err(_) => {
                return text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "a body a secret is replaced in may be at most 1 MiB",
                )
            }
        };
        match rules::replace_in_body(secrets, &applied.in_body, &mut bytes, MAX_BODY) {
            None => {
                return text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "with its secrets in, the body would be over 1 MiB",
                )
            }
            Some(true) => {
                for &i in &applied.in_body {
                    if let Some(s) = secrets.get(i) {
                        if !used.contains(&s.name) {
                            used.push(s.name.clone());
                        }
                    }
                }
            }
            Some(false) => {}
        }
        parts
            .headers
            .insert(header::CONTENT_LENGTH, bytes.len().into());
        Full::new(Bytes::from(bytes))
            .map_err(|never| match never {})
            .boxed()
    };
    for name in &used {
        event(ctx, name, &parts, None);
    }
    if !used.is_empty() {
        ctx.stats.injected.fetch_add(1, Ordering::Relaxed);
    }
    let sender = match &ctx.upstream {
        Ok(s) => s,
        Err(e) => return text(StatusCode::BAD_GATEWAY, e),
    };
    let guest_version = parts.version;
    strip_hop_by_hop(&mut parts.headers);
    // Every answer on a brokered connection is scrubbed of the values,
    // which a compressed body would hide: ask for none.
    parts.headers.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    let default_port = if conn.tls { 443 } else { 80 };
    let authority = if conn.port == default_port {
        conn.name.clone()
    } else {
        format!("{}:{}", conn.name, conn.port)
    };
    let scheme = if conn.tls { "https" } else { "http" };
    let uri = if sender.is_h2() {
        parts.headers.remove(header::HOST);
        if wants_trailers {
            // gRPC needs it, and HTTP/2 allows exactly this value.
            parts
                .headers
                .insert(header::TE, HeaderValue::from_static("trailers"));
        }
        parts.version = Version::HTTP_2;
        format!("{scheme}://{authority}{target}")
    } else {
        if let Ok(v) = HeaderValue::from_str(&authority) {
            parts.headers.insert(header::HOST, v);
        }
        parts.version = Version::HTTP_11;
        target
    };
    parts.uri = match uri.parse() {
        Ok(u) => u,
        Err(_) => {
            return text(
                StatusCode::BAD_REQUEST,
                "a request target that cannot be passed on",
            )
        }
    };
    let answer = match sender.send(Request::from_parts(parts, body)).await {
        Ok(a) => a,
        Err(e) => {
            ctx.stats.upstream_failed.store(true, Ordering::Relaxed);
            return text(
                StatusCode::BAD_GATEWAY,
                &format!("{} did not answer: {e}", conn.name),
            );
        }
    };
    ctx.stats.touch();
    let (mut rparts, rbody) = answer.into_parts();
    strip_hop_by_hop(&mut rparts.headers);
    rparts.version = guest_version;
    // Hyper keeps an unusual reason phrase here and writes it back out:
    // text the host chose, not scrubbed. The guest gets the standard one.
    rparts.extensions = http::Extensions::new();
    let identity = rparts
        .headers
        .get(header::CONTENT_ENCODING)
        .is_none_or(|v| v.as_bytes().eq_ignore_ascii_case(b"identity"));
    if !identity {
        return text(
            StatusCode::BAD_GATEWAY,
            &format!(
                "{} compressed its answer though asked not to; the broker cannot check it for secrets",
                conn.name
            ),
        );
    }
    rules::scrub_headers(secrets, &mut rparts.headers);
    rparts.headers.remove(header::CONTENT_LENGTH);
    let body = Scrubbed::new(rbody, secrets.clone());
    Response::from_parts(rparts, body.boxed())
}
