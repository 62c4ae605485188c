//! `paddock mcp --listen ADDR`: MCP's streamable HTTP transport, for agent
//! clients that connect to a server rather than spawn one.
//!
//! Each client presents a Paddock token as its bearer, and the tools call
//! the appliance's API with that token: this server holds no credential of
//! its own, so one server serves several agents, each with exactly its own
//! token's scopes, limits and audit trail. Background commands are kept
//! per token, so one client cannot poll another's.
//!
//! Plain HTTP carries those tokens, so it binds loopback addresses only,
//! and it answers only requests whose Host (and Origin, when a browser
//! sends one) is a loopback name: a web page cannot reach it by DNS
//! rebinding. Stateless: one JSON answer per POSTed request, no session id
//! and no server-initiated stream (GET and DELETE are 405, which MCP
//! clients take as "not offered").

use super::auth::{CallSlot, Clients, Refusal};
use super::tools::Tools;
use crate::client::Api;
use crate::CliError;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONNECTION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// The endpoint's path.
pub const PATH: &str = "/mcp";

/// What one server lets its clients take.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections open at once; more are closed at accept.
    pub connections: usize,
    /// Tool calls running at once (each holds a thread and an API call).
    pub calls: usize,
    /// How long a request's head may take to arrive, and how long a
    /// connection may sit idle between requests.
    pub head: Duration,
    /// How long a request's body may take to arrive.
    pub body: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            connections: 64,
            calls: 16,
            head: Duration::from_secs(30),
            body: Duration::from_secs(60),
        }
    }
}

struct Server {
    clients: Clients,
    calls: Semaphore,
    /// Token checks with the appliance at once (apart from the calls, so
    /// long calls do not keep new clients out).
    checks: Semaphore,
    limits: Limits,
}

/// Serves `addr` (loopback only) until the process ends; `upstream`
/// is the saved session, whose address and pinned certificate the
/// clients' calls use (not its token).
pub fn serve(addr: SocketAddr, upstream: Api, limits: Limits) -> Result<(), CliError> {
    if !addr.ip().is_loopback() {
        return Err(CliError::Usage(format!(
            "--listen {addr}: plain HTTP carries the clients' tokens, so it binds loopback \
             addresses only (127.0.0.1 or [::1]); reach it from elsewhere through a tunnel or \
             a TLS proxy of your own"
        )));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::Api(format!("starting the server's runtime: {e}")))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| CliError::Api(format!("binding {addr}: {e}")))?;
        let local = listener
            .local_addr()
            .map_err(|e| CliError::Api(format!("binding {addr}: {e}")))?;
        eprintln!("paddock mcp: serving MCP over streamable HTTP at http://{local}{PATH}");
        run(listener, upstream, limits).await
    })
}

/// The accept loop (separate from `serve` for the tests' own listener).
pub async fn run(
    listener: tokio::net::TcpListener,
    upstream: Api,
    limits: Limits,
) -> Result<(), CliError> {
    let server = Arc::new(Server {
        clients: Clients::new(upstream),
        calls: Semaphore::new(limits.calls),
        checks: Semaphore::new(8),
        limits,
    });
    let connections = Arc::new(Semaphore::new(limits.connections));
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors, most likely: wait for some to close
                // rather than spin.
                eprintln!("paddock mcp: accepting a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = connections.clone().try_acquire_owned() else {
            drop(tcp);
            continue;
        };
        let server = server.clone();
        tokio::spawn(async move {
            connection(server, tcp).await;
            drop(slot);
        });
    }
}

async fn connection(server: Arc<Server>, tcp: tokio::net::TcpStream) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let head = server.limits.head;
    let service = hyper::service::service_fn(move |req| {
        let server = server.clone();
        async move { Ok::<_, std::convert::Infallible>(request(&server, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(head)
        .max_buf_size(64 << 10)
        .serve_connection(TokioIo::new(tcp), service);
    let _ = conn.await;
}

type Answer = Response<Full<Bytes>>;

fn answer(status: StatusCode, body: Option<&Value>) -> Answer {
    let mut r = Response::new(Full::new(Bytes::from(
        body.map(|b| b.to_string()).unwrap_or_default(),
    )));
    *r.status_mut() = status;
    if body.is_some() {
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    r
}

/// An HTTP-level refusal, with a JSON-RPC error body saying why (MCP
/// clients surface it to their caller). The connection closes after it:
/// a client refused does not keep a slot by asking again on it.
fn refuse(status: StatusCode, message: &str) -> Answer {
    let mut r = answer(
        status,
        Some(&json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32600, "message": message}})),
    );
    r.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    r
}

async fn request(server: &Server, req: Request<Incoming>) -> Answer {
    if req.uri().path() != PATH {
        return refuse(StatusCode::NOT_FOUND, "the MCP endpoint is /mcp");
    }
    if let Err(why) = loopback_names(&req) {
        return refuse(StatusCode::FORBIDDEN, &why);
    }
    if req.method() != Method::POST {
        let mut r = refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            "this server is stateless: POST messages; it opens no stream of its own",
        );
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST"));
        return r;
    }
    let Some(token) = bearer(&req) else {
        let mut r = refuse(
            StatusCode::UNAUTHORIZED,
            "a Paddock token is needed: Authorization: Bearer pdk_...",
        );
        r.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"paddock\""),
        );
        return r;
    };
    if let Some(v) = req.headers().get("mcp-protocol-version") {
        let v = v.to_str().unwrap_or("");
        if !super::VERSIONS.contains(&v) {
            return refuse(
                StatusCode::BAD_REQUEST,
                &format!(
                    "MCP-Protocol-Version {v:?} is not one this server speaks ({})",
                    super::VERSIONS.join(", ")
                ),
            );
        }
    }
    let json_body = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    if !json_body {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a message is a JSON body (Content-Type: application/json)",
        );
    }
    // The token is checked (with the appliance, cached a while) before a
    // byte of the body is read: without one the appliance takes, a client
    // gets no buffer and no call.
    let tools = {
        let Ok(_check) = server.checks.acquire().await else {
            return refuse(StatusCode::SERVICE_UNAVAILABLE, "the server is stopping");
        };
        let clients = server.clients.clone();
        match tokio::task::spawn_blocking(move || clients.tools_for(&token)).await {
            Ok(Ok(t)) => t,
            Ok(Err(refusal)) => return refused(refusal),
            Err(e) => {
                return refuse(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("checking the token: {e}"),
                )
            }
        }
    };
    let too_big = || {
        refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("a message is at most {} bytes", super::MAX_LINE),
        )
    };
    // Refused before a byte of it is read when its length says so.
    if hyper::body::Body::size_hint(req.body()).lower() > super::MAX_LINE as u64 {
        return too_big();
    }
    let limited = Limited::new(req.into_body(), super::MAX_LINE);
    let body = match tokio::time::timeout(server.limits.body, limited.collect()).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return too_big(),
        Ok(Err(e)) => return refuse(StatusCode::BAD_REQUEST, &format!("reading the body: {e}")),
        Err(_) => {
            return refuse(
                StatusCode::REQUEST_TIMEOUT,
                "the body did not arrive in time",
            )
        }
    };
    let Ok(_permit) = server.calls.acquire().await else {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "the server is stopping");
    };
    // The tools make blocking API calls: off the runtime's threads, holding
    // one of the token's call slots.
    let (tools, slot): (Arc<Tools>, CallSlot) = tools;
    let done = tokio::task::spawn_blocking(move || {
        let reply = super::handle(&tools, &body);
        drop(slot);
        reply
    })
    .await;
    match done {
        Ok(Some(reply)) => {
            // A message that was not JSON-RPC at all is the client's error.
            let status = if reply["id"].is_null() && reply.get("error").is_some() {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::OK
            };
            answer(status, Some(&reply))
        }
        // A notification or an answer: accepted, nothing to say.
        Ok(None) => answer(StatusCode::ACCEPTED, None),
        Err(e) => refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("the call failed: {e}"),
        ),
    }
}

/// A token the server will not serve now, as HTTP.
fn refused(refusal: Refusal) -> Answer {
    match refusal {
        Refusal::Unauthorized(why) => {
            let mut r = refuse(StatusCode::UNAUTHORIZED, &why);
            r.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"paddock\", error=\"invalid_token\""),
            );
            r
        }
        Refusal::Unreachable(why) => refuse(StatusCode::SERVICE_UNAVAILABLE, &why),
        Refusal::Busy(why) => refuse(StatusCode::TOO_MANY_REQUESTS, &why),
    }
}

/// The bearer token, if the request carries a well-formed one.
fn bearer(req: &Request<Incoming>) -> Option<String> {
    let v = req
        .headers()
        .get(hyper::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = v.split_once(' ')?;
    let token = token.trim();
    // It goes into the API's request head: visible ASCII only, bounded.
    (scheme.eq_ignore_ascii_case("bearer")
        && (1..=256).contains(&token.len())
        && token.bytes().all(|b| b.is_ascii_graphic()))
    .then(|| token.to_string())
}

/// Refuses a request whose Host, or Origin when one is sent, is not a
/// loopback name: what a page on another site would send after pointing
/// its own name at 127.0.0.1.
fn loopback_names(req: &Request<Incoming>) -> Result<(), String> {
    let host = req
        .headers()
        .get(hyper::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !is_loopback_authority(host) {
        return Err(format!(
            "Host {host:?} is not a loopback name (localhost, 127.0.0.1, [::1])"
        ));
    }
    if let Some(origin) = req.headers().get(hyper::header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .unwrap_or("");
        if !is_loopback_authority(authority) {
            return Err(format!("Origin {origin:?} is not a loopback origin"));
        }
    }
    Ok(())
}

/// `name[:port]` where name is localhost, 127.0.0.1 or [::1].
pub fn is_loopback_authority(authority: &str) -> bool {
    let name = match authority.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((ip, port)) if port.is_empty() || port.starts_with(':') => {
                return ip == "::1" && port_ok(port.trim_start_matches(':'), port.is_empty())
            }
            _ => return false,
        },
        None => authority,
    };
    let (name, port) = match name.split_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (name, None),
    };
    (name.eq_ignore_ascii_case("localhost") || name == "127.0.0.1")
        && port.is_none_or(|p| port_ok(p, false))
}

fn port_ok(port: &str, absent: bool) -> bool {
    absent || port.parse::<u16>().is_ok()
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
