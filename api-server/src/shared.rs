//! What every connection and handler of the API process shares: its TLS
//! configurations, its admission, and the channel to host-init with the
//! calls made on it (blocking for handlers on threads, detached for the
//! async side, which must never block).

use crate::admission::Admission;
use paddock_api_channel::{
    Call, CallReply, ChannelError, Endpoint, Open, Request, StatusReply, Verdict, MAX_LINE,
};
use paddock_api_types::ErrorBody;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

pub struct Shared {
    /// TLS offering HTTP/2 and HTTP/1.1 by ALPN.
    pub tls: Arc<rustls::ServerConfig>,
    /// TLS offering HTTP/1.1 only, for overflow slots (one request each).
    pub tls_h1: Arc<rustls::ServerConfig>,
    /// The control socket to host-init; each request opens its own
    /// exchange through it.
    pub(crate) control: Endpoint,
    pub admission: Arc<Admission>,
    /// Exchanges with host-init before admission (who-am-I, health) at
    /// once: each is quick, but HTTP/2 lets one connection ask many, and
    /// host-init serves each on a thread of its own (paddock_init::api::supervisor).
    pub asking: tokio::sync::Semaphore,
    /// The box's domain for E2B's host names, when configured.
    pub domain: Option<String>,
    /// The web console's signed-in browsers.
    pub sessions: crate::sessions::Sessions,
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

pub(crate) async fn status_async(shared: &Arc<Shared>) -> Option<StatusReply> {
    ask_detached(shared, Request::Status).await.ok()
}

/// `call` for the asynchronous side: authentication before admission.
/// Calls that pass a descriptor back are not made this way.
pub(crate) async fn call_async(shared: &Arc<Shared>, auth: &str, call: Call) -> CallReply {
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
