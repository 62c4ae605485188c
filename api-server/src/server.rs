//! The API process itself: TLS on the API port, served by hyper on a small
//! tokio runtime (one connection's life in crate::conn, bounded by
//! crate::admission, each endpoint's handler in crate::dispatch), answers
//! built from what host-init says over the channel.

use crate::admission::{Admission, Permits};
use crate::conn::{serve_connection, Exchange, Transport};
use crate::http::{self, status_of};
pub use crate::routes::{allowed_methods, segments, valid_id};
use paddock_api_channel::{
    Call, CallReply, ChannelError, Endpoint, Init, Open, Purpose, Request, Started, StatusReply,
    Verdict, CHANNEL_FD, MAX_LINE,
};
use paddock_api_types::ErrorBody;
use serde_json::Value;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

pub struct Shared {
    /// TLS offering HTTP/2 and HTTP/1.1 by ALPN.
    pub tls: Arc<rustls::ServerConfig>,
    /// TLS offering HTTP/1.1 only, for overflow slots (one request each).
    pub tls_h1: Arc<rustls::ServerConfig>,
    /// The control socket to host-init; each request opens its own
    /// exchange through it.
    control: Endpoint,
    pub admission: Arc<Admission>,
    /// Exchanges with host-init before admission (who-am-I, health) at
    /// once: each is quick, but HTTP/2 lets one connection ask many, and
    /// host-init serves each on a thread of its own (paddock_init::api::supervisor).
    pub asking: tokio::sync::Semaphore,
    /// The box's domain for E2B's host names, when configured.
    pub domain: Option<String>,
}

/// `Shared::asking`'s permits: with the tenants' cap, within host-init's
/// exchanges less the room it keeps for admins.
pub const MAX_ASKING: usize = 192;

/// A new exchange with host-init: a fresh socket pair, one end handed over.
fn exchange(shared: &Shared) -> Option<Endpoint> {
    open_exchange(shared, false)
}

/// A new exchange; `now`: for the async side, which must never block, so
/// when host-init is behind on taking new exchanges this fails at once
/// ("busy") instead of holding one of the runtime's two threads.
fn open_exchange(shared: &Shared, now: bool) -> Option<Endpoint> {
    let (mine, theirs) = Endpoint::pair().ok()?;
    let sent = if now {
        shared.control.send_now(&Open, Some(&theirs))
    } else {
        shared.control.send(&Open, Some(&theirs))
    };
    sent.ok()?;
    Some(mine.with_limits(MAX_LINE, paddock_api_channel::MAX_REPLY))
}

/// Largest JSON body of a route whose body travels to host-init: the
/// channel's message cap less room for the envelope (a bigger one could
/// never reach host-init anyway).
pub const MAX_FORWARDED_JSON: u64 = (MAX_LINE - 4096) as u64;
/// Most of a body nobody took that is read and dropped so the answer
/// reaches a client still sending (bigger: the connection just closes).
pub const MAX_DRAIN: u64 = 1 << 20;
/// Largest file upload or download through the API.
pub const MAX_FILE: u64 = 256 << 20;
/// Bodies parsed at once in the whole process. Parsed JSON takes many
/// times its size (an array of small numbers: 32 bytes a value, from 2
/// bytes of text), so this, not the number of requests, bounds that memory;
/// parsing is quick and CPU-bound, so waiting here costs little.
static PARSING: Permits = Permits::new(2);
/// How long a request waits for a parse permit before its 503.
const PARSE_WAIT: Duration = Duration::from_secs(5);

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

/// Sends one request on a new exchange and waits for the reply without
/// holding a thread: the runtime wakes this when host-init has answered.
async fn ask<T: serde::de::DeserializeOwned>(
    shared: &Shared,
    request: &Request,
) -> Result<T, ChannelError> {
    let _permit = shared
        .asking
        .acquire()
        .await
        .map_err(|_| ChannelError::Closed)?;
    let ex = open_exchange(shared, true).ok_or(ChannelError::Closed)?;
    // A fresh pair with nothing queued: this send never waits.
    ex.send_now(request, None::<&OwnedFd>)?;
    // SAFETY: the Endpoint owns its socket for the AsyncFd's whole life
    // and always reports that same descriptor.
    let ex = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(ex, tokio::io::Interest::READABLE)
    }
    .map_err(|e| ChannelError::Io(e.into()))?;
    // Readable: the reply (one whole message on a SOCK_SEQPACKET pair) is
    // there, or host-init closed its end; either way recv does not block.
    let _ready = ex.readable().await?;
    ex.get_ref().recv().map(|(reply, _)| reply)
}

/// `ask`, in a task of its own: a client that gives up (a reset HTTP/2
/// stream, a closed connection) drops the request's future, but host-init
/// goes on serving the exchange, so the `asking` permit must stay taken
/// until it has answered.
async fn ask_detached<T: serde::de::DeserializeOwned + Send + 'static>(
    shared: &Arc<Shared>,
    request: Request,
) -> Result<T, ChannelError> {
    let shared = shared.clone();
    tokio::spawn(async move { ask(&shared, &request).await })
        .await
        .unwrap_or(Err(ChannelError::Closed))
}

pub(super) async fn status_async(shared: &Arc<Shared>) -> Option<StatusReply> {
    ask_detached(shared, Request::Status).await.ok()
}

/// `call` for the asynchronous side: authentication before admission.
/// Calls that pass a descriptor back are not made this way.
pub(super) async fn call_async(shared: &Arc<Shared>, auth: &str, call: Call) -> CallReply {
    let req = Request::Call {
        auth: auth.to_string(),
        call,
    };
    match ask_detached::<CallReply>(shared, req).await {
        Ok(reply) if !reply.fd => reply,
        _ => CallReply {
            verdict: Verdict::Unavailable,
            body: serde_json::json!(ErrorBody::new("host-init did not answer")),
            fd: false,
        },
    }
}

/// One call to host-init; the connection it passes back, if any.
pub fn call(shared: &Shared, auth: &str, call: Call) -> (CallReply, Option<UnixStream>) {
    let (reply, fd) = call_fd(shared, auth, call);
    (reply, fd.map(UnixStream::from))
}

/// A call whose reply may carry a descriptor of any kind.
pub fn call_fd(shared: &Shared, auth: &str, call: Call) -> (CallReply, Option<OwnedFd>) {
    let failed = || CallReply {
        verdict: Verdict::Unavailable,
        body: serde_json::json!(ErrorBody::new("host-init did not answer")),
        fd: false,
    };
    let Some(ex) = exchange(shared) else {
        return (failed(), None);
    };
    let req = Request::Call {
        auth: auth.to_string(),
        call,
    };
    match ex.send(&req, None::<&OwnedFd>) {
        Ok(()) => {}
        Err(ChannelError::TooLong(_)) => {
            let too_long = CallReply {
                verdict: Verdict::TooLarge,
                body: serde_json::json!(ErrorBody::new(format!(
                    "request over the {MAX_LINE}-byte limit of calls to the control plane"
                ))),
                fd: false,
            };
            return (too_long, None);
        }
        Err(_) => return (failed(), None),
    }
    match ex.recv::<CallReply>() {
        Ok((reply, fd)) if reply.fd == fd.is_some() => (reply, fd),
        _ => (failed(), None),
    }
}

pub fn json_error(status: u16, msg: impl Into<String>) -> (u16, Value) {
    (status, serde_json::json!(ErrorBody::new(msg)))
}

/// The answer to a body that could not be read; `what` names it ("body",
/// "file") in the size refusal.
pub fn body_refusal(e: http::BodyError, what: &str) -> (u16, Value) {
    match e {
        http::BodyError::TooLarge(cap) => json_error(413, format!("{what} over {cap} bytes")),
        http::BodyError::Io(e) => json_error(400, format!("reading the body: {e}")),
    }
}

/// Asks host-init for a connection to the workspace's agent: its reply body
/// and the connection, or (when refused) the answer to give.
pub fn open_agent(
    shared: &Shared,
    bearer: &str,
    id: &str,
    purpose: Purpose,
) -> Result<(Value, UnixStream), (u16, Value)> {
    let (reply, stream) = call(
        shared,
        bearer,
        Call::OpenAgent {
            id: id.to_string(),
            purpose,
        },
    );
    match stream.filter(|_| reply.verdict == Verdict::Ok) {
        Some(s) => Ok((reply.body, s)),
        None => Err((status_of(reply.verdict), reply.body)),
    }
}

pub(super) fn read_json<T: serde::de::DeserializeOwned>(
    req: &http::Request,
    io: &mut Exchange,
) -> Result<T, (u16, Value)> {
    let body = http::read_body(req, &mut io.body, MAX_FORWARDED_JSON)
        .map_err(|e| body_refusal(e, "body"))?;
    parse_json(&body)
}

/// Parses a request body (under a `PARSING` permit): 400 for bad JSON, 422
/// for JSON of the wrong shape.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, (u16, Value)> {
    if body.is_empty() {
        return Err(json_error(400, "a JSON body is required"));
    }
    let Some(_permit) = PARSING.take(PARSE_WAIT) else {
        return Err(json_error(
            503,
            "too many requests being parsed; retry shortly",
        ));
    };
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => json_error(422, format!("request body: {e}")),
        _ => json_error(400, format!("malformed JSON: {e}")),
    })
}

pub fn query<'a>(req: &'a http::Request, key: &str) -> Option<&'a str> {
    req.query
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Pause after a failed accept.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Threads that serve connections and everything before admission.
const WORKER_THREADS: usize = 2;
/// Most handlers running at once. Only admitted requests get one: tenants'
/// are capped by admission, and beyond those are admins' own.
const MAX_HANDLERS: usize = 512;
/// Each thread's stack (std's default is 2 MiB): TLS, the JSON parser (its
/// recursion stops at 128 levels) and the agent client fit in a fraction
/// of this.
const THREAD_STACK: usize = 512 << 10;
/// Descriptors the API process may hold: each connection takes its socket,
/// and each request an exchange with host-init and perhaps an agent
/// connection.
const OPEN_FILES: u64 = 8192;

/// Raises the soft limit on open descriptors toward `OPEN_FILES` (within
/// the hard limit), before the seccomp filter forbids it.
fn raise_open_files() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit with a pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max.min(OPEN_FILES).max(lim.rlim_cur);
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Keeps freed memory from piling up under the memory cgroup's limit.
/// glibc gives each of many threads its own arena (up to 8 per core), each
/// keeping what its thread freed, and raises its mmap threshold after every
/// large free, so the next large buffers (a parsed body, a TLS record) land
/// in arenas and stay there: RSS creeps up with the number of threads that
/// ever parsed something big. Two arenas and a fixed threshold give large
/// buffers back to the kernel when freed.
fn tune_allocator() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets allocator parameters; called before any
    // thread of ours is started.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 << 10);
    }
}

/// Entry point of `paddock-init api-server`.
pub fn main() -> std::process::ExitCode {
    // SAFETY: host-init placed the control socket (SOCK_SEQPACKET) at
    // CHANNEL_FD before exec; this process owns it from here on.
    let control = unsafe { Endpoint::from_raw(CHANNEL_FD) };
    tune_allocator();
    let init: Init = match control.recv() {
        Ok((i, _)) => i,
        Err(e) => {
            eprintln!("paddock-api: reading start-up message: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let fail = |control: &Endpoint, msg: String| {
        let _ = control.send(
            &Started {
                port: None,
                error: Some(msg.clone()),
                plain_port: None,
                plain_error: None,
            },
            None::<&OwnedFd>,
        );
        eprintln!("paddock-api: {msg}");
        std::process::ExitCode::from(1)
    };
    let mut tls = match tls_config(&init) {
        Ok(t) => t,
        Err(e) => return fail(&control, format!("TLS configuration: {e}")),
    };
    let mut tls_h1 = tls.clone();
    tls_h1.alpn_protocols = vec![b"http/1.1".to_vec()];
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let listener = match std::net::TcpListener::bind(("0.0.0.0", init.port)) {
        Ok(l) => l,
        Err(e) => return fail(&control, format!("binding port {}: {e}", init.port)),
    };
    if let Err(e) = listener.set_nonblocking(true) {
        return fail(&control, format!("listening socket: {e}"));
    }
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(init.port);
    // A plain listener that cannot bind (its interface absent, its port
    // taken) is reported; the TLS port serves regardless, so a bad
    // setting never leaves the box unreachable.
    let (plain, plain_error) = match init.plain_http.as_ref().map(crate::plain::bind) {
        None => (None, None),
        Some(Ok(l)) => (Some(l), None),
        Some(Err(e)) => (None, Some(e.to_string())),
    };
    let plain_port = plain
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .map(|a| a.port());
    raise_open_files();
    if let Err(e) = crate::sandbox::apply() {
        return fail(&control, e.to_string());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .max_blocking_threads(MAX_HANDLERS)
        .thread_stack_size(THREAD_STACK)
        .enable_io()
        .enable_time()
        .build();
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => return fail(&control, format!("starting the runtime: {e}")),
    };
    let listeners = runtime.block_on(async {
        let tls = tokio::net::TcpListener::from_std(listener)?;
        let plain = plain.map(tokio::net::TcpListener::from_std).transpose()?;
        Ok::<_, std::io::Error>((tls, plain))
    });
    let (listener, plain) = match listeners {
        Ok(l) => l,
        Err(e) => return fail(&control, format!("listening socket: {e}")),
    };
    let started = Started {
        port: Some(port),
        error: None,
        plain_port,
        plain_error,
    };
    if control.send(&started, None::<&OwnedFd>).is_err() {
        return std::process::ExitCode::from(1);
    }
    let shared = Arc::new(Shared {
        tls: Arc::new(tls),
        tls_h1: Arc::new(tls_h1),
        control,
        admission: Arc::new(Admission::default()),
        asking: tokio::sync::Semaphore::new(MAX_ASKING),
        // E2B's SDK puts no port in the host names it makes from this:
        // off 443, the port goes with the domain (E2B_DOMAIN=box.lan:8443).
        domain: init.domain.as_ref().map(|d| match port {
            443 => d.clone(),
            p => format!("{d}:{p}"),
        }),
    });
    if let Some(plain) = plain {
        runtime.spawn(accept_loop(shared.clone(), plain, Transport::Plain));
    }
    runtime.block_on(accept_loop(shared, listener, Transport::Tls));
    std::process::ExitCode::SUCCESS
}

async fn accept_loop(shared: Arc<Shared>, listener: tokio::net::TcpListener, via: Transport) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(_) => {
                // Out of descriptors or memory: the pending connection
                // stays queued, so retrying at once would spin on it.
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // Over the caps a client gets an overflow slot (health, admins,
        // else 503); over those too it is closed unread. Both listeners
        // share the caps.
        let Some(slot) = shared.admission.connect(peer.ip()) else {
            continue;
        };
        tokio::spawn(serve_connection(shared.clone(), tcp, peer.ip(), slot, via));
    }
}
