//! The optional webhook (config `notify.webhook`): the audit events a
//! person should hear about at once (an agent asking for a destination, a
//! signal firing, a secret misused, a quarantine) are POSTed, as the same
//! JSON object the audit log keeps, to one URL the admin configured. The
//! box never sends anything anywhere else, and nothing a workspace says
//! chooses where it goes.
//!
//! Delivery is best effort and never in the way: a bounded queue (past
//! it, events are dropped and counted), one sender thread, three tries
//! each with a 10 s limit. With `secret` set, each body is signed
//! (`X-Paddock-Signature: sha256=<hex HMAC-SHA256 of the body>`) so the
//! receiver can tell it came from this box.

use crate::net::broker::upstream::{self, ReqBody};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::OnceLock;
use std::time::Duration;

/// The events sent when the configuration names none.
pub const DEFAULT_EVENTS: [&str; 5] = [
    "egress_requested",
    "approval_requested",
    "signal_fired",
    "secret_misuse",
    "workspace_quarantined",
];
const QUEUE: usize = 256;
const TRIES: u32 = 3;
const TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Webhook {
    pub target: Target,
    pub events: BTreeSet<String>,
    /// Signs each body (HMAC-SHA256) when set.
    pub secret: Option<String>,
    /// PEM: the receiver's certificate must chain to these instead of the
    /// public roots.
    pub ca: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// With its query, starting with '/'.
    pub path: String,
}

impl Target {
    fn authority(&self) -> String {
        let default = if self.tls { 443 } else { 80 };
        if self.port == default {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// `http(s)://host[:port][/path]`; no user info, no fragment.
pub fn parse_url(url: &str) -> Result<Target, String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!("{url:?} is not an http:// or https:// URL"));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.contains('@') || path.contains('#') {
        return Err(format!("{url:?}: no user info or fragment"));
    }
    if path.chars().any(|c| c.is_control() || c == ' ') {
        return Err(format!(
            "{url:?}: the path has spaces or control characters"
        ));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("{url:?}: {p:?} is not a port"))?,
        ),
        None => (authority, if tls { 443 } else { 80 }),
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let name_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if !name_ok {
        return Err(format!(
            "{url:?}: {host:?} is not a host name or IPv4 address"
        ));
    }
    Ok(Target {
        tls,
        host,
        port,
        path: path.to_string(),
    })
}

/// The configuration file's `notify` object.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileNotify {
    webhook: Option<FileWebhook>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileWebhook {
    url: String,
    events: Option<Vec<String>>,
    secret: Option<String>,
    ca: Option<String>,
}

/// The webhook `notify` configures, if any; or what is wrong with it.
pub fn from_config(notify: serde_json::Value) -> Result<Option<Webhook>, String> {
    let f: FileNotify = serde_json::from_value(notify).map_err(|e| e.to_string())?;
    let Some(w) = f.webhook else { return Ok(None) };
    let target = parse_url(&w.url).map_err(|e| format!("webhook.url: {e}"))?;
    let events: BTreeSet<String> = match w.events {
        Some(e) if e.is_empty() => {
            return Err("webhook.events: empty (leave it out for the defaults)".into())
        }
        Some(e) => e.into_iter().collect(),
        None => DEFAULT_EVENTS.iter().map(|e| e.to_string()).collect(),
    };
    if let Some(bad) = events.iter().find(|e| {
        e.is_empty() || e.len() > 64 || !e.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
    }) {
        return Err(format!(
            "webhook.events: {bad:?} is not an audit event name"
        ));
    }
    if let Some(ca) = &w.ca {
        use rustls::pki_types::pem::PemObject;
        let ok = rustls::pki_types::CertificateDer::pem_slice_iter(ca.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .is_ok_and(|c| !c.is_empty());
        if !ok {
            return Err("webhook.ca: not PEM certificates".into());
        }
    }
    if w.secret.as_deref().is_some_and(|s| s.len() < 16) {
        return Err("webhook.secret: at least 16 characters".into());
    }
    Ok(Some(Webhook {
        target,
        events,
        secret: w.secret,
        ca: w.ca,
    }))
}

struct Running {
    events: BTreeSet<String>,
    queue: SyncSender<Vec<u8>>,
}

static RUNNING: OnceLock<Running> = OnceLock::new();
static DROPPED: AtomicU64 = AtomicU64::new(0);
static FAILED: AtomicU64 = AtomicU64::new(0);

/// Starts the sender (once).
pub fn start(hook: Webhook) {
    let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE);
    let events = hook.events.clone();
    let spawned = std::thread::Builder::new()
        .name("webhook".into())
        .stack_size(1 << 20)
        .spawn(move || {
            while let Ok(body) = rx.recv() {
                let mut last = String::new();
                let sent = (0..TRIES).any(|i| {
                    if i > 0 {
                        std::thread::sleep(Duration::from_secs(2 << i));
                    }
                    match deliver(&hook, &body) {
                        Ok(()) => true,
                        Err(e) => {
                            last = e;
                            false
                        }
                    }
                });
                if !sent {
                    FAILED.fetch_add(1, Ordering::Relaxed);
                    crate::warn!("webhook {}: not delivered: {last}", hook.target.host);
                }
            }
        });
    if spawned.is_ok() {
        let _ = RUNNING.set(Running { events, queue: tx });
    }
}

/// Queues an audit event (its whole JSON object) if the webhook wants it.
pub fn offer(event: &paddock_api_types::AuditEvent) {
    let Some(r) = RUNNING.get() else { return };
    if !r.events.contains(&event.event) {
        return;
    }
    let Ok(body) = serde_json::to_vec(event) else {
        return;
    };
    match r.queue.try_send(body) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Events dropped (queue full) and not delivered after every try.
pub fn losses() -> (u64, u64) {
    (
        DROPPED.load(Ordering::Relaxed),
        FAILED.load(Ordering::Relaxed),
    )
}

fn signature(secret: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = ring::hmac::sign(&key, body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// One POST of `body`; Ok on a 2xx answer.
pub fn deliver(hook: &Webhook, body: &[u8]) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        tokio::time::timeout(TIMEOUT, post(hook, body))
            .await
            .map_err(|_| format!("no answer within {TIMEOUT:?}"))?
    })
}

async fn post(hook: &Webhook, body: &[u8]) -> Result<(), String> {
    let t = &hook.target;
    let addrs: Vec<Ipv4Addr> = match t.host.parse::<Ipv4Addr>() {
        Ok(ip) => vec![ip],
        Err(_) => crate::net::dns::resolve_blocking(&t.host).map_err(|e| e.to_string())?,
    };
    let addr = addrs
        .first()
        .ok_or_else(|| format!("{} has no IPv4 address", t.host))?;
    let tcp = tokio::net::TcpStream::connect(SocketAddr::from((*addr, t.port)))
        .await
        .map_err(|e| format!("connecting to {addr}:{}: {e}", t.port))?;
    let tls = if t.tls {
        Some(upstream::config_for(hook.ca.as_deref(), &t.host)?)
    } else {
        None
    };
    let sender = upstream::open(tcp, &t.host, tls).await?;
    let event = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["event"].as_str().map(str::to_string))
        .unwrap_or_default();
    let uri = if sender.is_h2() {
        format!(
            "{}://{}{}",
            if t.tls { "https" } else { "http" },
            t.authority(),
            t.path
        )
    } else {
        t.path.clone()
    };
    let mut req = http::Request::post(uri)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(
            http::header::USER_AGENT,
            concat!("paddock/", env!("CARGO_PKG_VERSION")),
        )
        .header("x-paddock-event", event);
    if !sender.is_h2() {
        req = req.header(http::header::HOST, t.authority());
    }
    if let Some(secret) = &hook.secret {
        req = req.header("x-paddock-signature", signature(secret, body));
    }
    let body: ReqBody = Full::new(Bytes::copy_from_slice(body))
        .map_err(|never| match never {})
        .boxed();
    let req = req.body(body).map_err(|e| e.to_string())?;
    let answer = sender.send(req).await.map_err(|e| e.to_string())?;
    if answer.status().is_success() {
        Ok(())
    } else {
        Err(format!("answered {}", answer.status()))
    }
}

#[cfg(test)]
#[path = "notify_tests.rs"]
mod tests;
