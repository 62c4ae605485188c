//! host-init's side of the API process: start it with its privileges
//! dropped, hand it the TLS identity, and answer its requests.

use super::channel::{
    Call, CallReply, ChannelError, Endpoint, Init, Open, Request, Started, StatusReply, CHANNEL_FD,
};
use crate::control::service::Outcome;
use crate::warn;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Exchanges served at once (each on a thread of host-init's): one per
/// request the API process may run (paddock_api_server::admission:
/// tenants', admins' room, overflow), with as many again for the short
/// who-am-I exchange each request starts with, so only a misbehaving API
/// process, or exchanges left running by one that died, meet it.
const MAX_EXCHANGES: usize = 2
    * (paddock_api_server::admission::MAX_TENANT_REQUESTS
        + paddock_api_server::admission::ADMIN_RESERVE
        + paddock_api_server::admission::MAX_OVERFLOW);
/// The last of those exchanges serve only admin tokens' calls (and status
/// and who-am-I, which are quick), so an admin can still revoke, delete or
/// quarantine when the rest are taken.
const ADMIN_ROOM: usize = 64;
/// Exchanges in flight, across API processes: a call an API process left
/// behind when it died (a create) still holds its thread here.
static EXCHANGES: AtomicUsize = AtomicUsize::new(0);
/// How long an exchange may take to deliver its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The API process's own uid and gid (no other process uses them).
pub const API_UID: u32 = 900;
pub const API_GID: u32 = 900;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("starting the API process: {0}")]
    Spawn(std::io::Error),
    #[error("talking to the API process: {0}")]
    Channel(#[from] ChannelError),
    #[error("the API process could not start: {0}")]
    Failed(String),
}

/// The TLS identity (certificate and key, PEM) the next API process
/// starts with, once an admin has rotated it; None: the one from boot.
static IDENTITY: std::sync::Mutex<Option<(String, String)>> = std::sync::Mutex::new(None);
/// The running API process, for a restart after a rotation.
static API_PID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// SHA-256 of the certificate the running API process was given.
static SERVED: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// The fingerprint of the certificate the API process serves (the one
/// handed to the last one started), colon-separated hex.
pub fn served_fingerprint() -> Option<String> {
    SERVED.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Makes the next API process serve this identity.
pub fn replace_identity(cert_pem: &str, key_pem: &str) {
    *IDENTITY.lock().unwrap_or_else(|e| e.into_inner()) =
        Some((cert_pem.to_string(), key_pem.to_string()));
}

/// `init` with the rotated identity, if there is one.
pub fn current_init(init: &Init) -> Init {
    let mut i = init.clone();
    if let Some((cert, key)) = IDENTITY.lock().unwrap_or_else(|e| e.into_inner()).clone() {
        i.cert_pem = cert;
        i.key_pem = key;
    }
    i
}

/// Ends the API process after `delay` (SIGTERM); whoever watches it starts
/// a new one, which picks up `current_init`.
pub fn restart_soon(delay: Duration) {
    let _ = std::thread::Builder::new()
        .name("api-restart".into())
        .spawn(move || {
            std::thread::sleep(delay);
            let pid = API_PID.load(Ordering::SeqCst);
            if pid != 0 {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
        });
}

/// The API process's memory cgroup.
const API_CGROUP: &str = "paddock-api";
/// Its memory.max: requests hold at most a 1 MiB JSON body and 64 KiB of
/// stream buffers each (uploads and downloads are streamed), and an idle
/// connection tens of KiB, so the caps' worth fits in about 100 MiB; 256 MiB leaves room and still
/// stops a leak or a parser blow-up long before it squeezes workspaces.
/// The kernel's OOM kill is a crash like any other: the watcher restarts it.
const API_MEMORY_MAX: u64 = 256 << 20;

/// Puts the API process into its own memory cgroup (cgroup v2).
pub fn confine_memory(pid: u32) -> std::io::Result<()> {
    crate::children::confine_memory(API_CGROUP, API_MEMORY_MAX, pid)
}

pub struct Running {
    pub pid: u32,
    pub port: u16,
    /// Where it also listens without TLS, when configured.
    pub plain_port: Option<u16>,
    /// Why a configured plain listener is not serving.
    pub plain_error: Option<String>,
}

/// Starts `exe api-server`; `drop_to` is the (uid, gid) it runs as (None
/// only in tests that cannot switch users). `status` answers status
/// requests, `calls` everything else (with the caller's bearer secret).
pub fn spawn(
    exe: &Path,
    init: &Init,
    drop_to: Option<(u32, u32)>,
    status: impl Fn() -> StatusReply + Send + Sync + 'static,
    calls: impl Fn(&str, Call) -> Outcome + Send + Sync + 'static,
) -> Result<Running, ApiError> {
    let (ours, theirs) = Endpoint::pair()?;
    let theirs_fd = theirs.raw();
    let mut cmd = Command::new(exe);
    cmd.arg("api-server")
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    crate::children::reset_signals(&mut cmd);
    if let Some((uid, gid)) = drop_to {
        cmd.uid(uid).gid(gid);
    }
    // SAFETY: the closure runs between fork and exec and only makes
    // async-signal-safe system calls (dup2, prctl, setrlimit).
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(theirs_fd, CHANNEL_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            crate::children::confine_after_fork()
        });
    }
    let child = cmd.spawn().map_err(ApiError::Spawn)?;
    drop(theirs);
    let pid = child.id();
    // A handle on this process, not on its pid: PID 1's reaper may reap it
    // at any time, and a kill by pid could then hit whoever got the pid.
    let pidfd = crate::children::pidfd_open(pid);
    API_PID.store(pid, Ordering::SeqCst);
    // The child is reaped by PID 1's reaper, never through this handle.
    drop(child);

    ours.set_timeout(Some(Duration::from_secs(60)))?;
    ours.send(init, None::<&OwnedFd>)?;
    let (started, _) = ours.recv::<Started>()?;
    let (port, plain_port, plain_error) = match started {
        Started {
            port: Some(p),
            error: None,
            plain_port,
            plain_error,
        } => (p, plain_port, plain_error),
        Started { error: Some(e), .. } => return Err(ApiError::Failed(e)),
        _ => {
            return Err(ApiError::Failed(
                "it sent an inconsistent start-up reply".into(),
            ))
        }
    };
    ours.set_timeout(None)?;
    *SERVED.lock().unwrap_or_else(|e| e.into_inner()) =
        crate::tls::pem_to_der(&init.cert_pem).map(|der| crate::tls::fingerprint(&der));
    let handlers = Arc::new(Handlers {
        status: Box::new(status),
        calls: Box::new(calls),
    });
    std::thread::Builder::new()
        .name("api-control".into())
        .spawn(move || loop {
            let exchange = match ours.recv::<Open>() {
                Ok((Open, Some(fd))) => fd,
                Ok((Open, None)) => {
                    warn!("API process opened an exchange without a socket; closing its channel and ending it");
                    return end_misbehaving(pidfd.as_ref());
                }
                Err(ChannelError::Closed) => return,
                // host-init is at its descriptor limit: that request gets
                // "host-init did not answer"; the next ones are served.
                Err(ChannelError::DescriptorLost) => {
                    lost_descriptor_note();
                    continue;
                }
                Err(e) => {
                    // A misbehaving API process loses its channel; left
                    // running it would answer 503 to everything until a
                    // reboot, so it is ended and the watcher starts a
                    // fresh one.
                    warn!("API process sent a bad message ({e}); closing its channel and ending it");
                    return end_misbehaving(pidfd.as_ref());
                }
            };
            let before = EXCHANGES.fetch_add(1, Ordering::SeqCst);
            if before >= MAX_EXCHANGES {
                EXCHANGES.fetch_sub(1, Ordering::SeqCst);
                continue; // dropped: that request gets "host-init did not answer"
            }
            let crowded = before >= MAX_EXCHANGES - ADMIN_ROOM;
            let h = handlers.clone();
            let spawned = std::thread::Builder::new()
                .name("api-exchange".into())
                .spawn(move || {
                    serve_exchange(&h, exchange, crowded);
                    EXCHANGES.fetch_sub(1, Ordering::SeqCst);
                });
            if spawned.is_err() {
                EXCHANGES.fetch_sub(1, Ordering::SeqCst);
            }
        })
        .map_err(ApiError::Spawn)?;
    Ok(Running {
        pid,
        port,
        plain_port,
        plain_error,
    })
}

/// Kills an API process whose channel was closed for misbehaving (it
/// cannot be trusted to stop on a SIGTERM), through its pidfd: if it is
/// already gone, nothing else is hit.
fn end_misbehaving(pidfd: Option<&OwnedFd>) {
    if let Some(fd) = pidfd {
        crate::children::kill_pidfd(fd);
    }
}

/// Says (at most once a minute) that an exchange was lost for want of a
/// descriptor.
fn lost_descriptor_note() {
    static LAST: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
        *last = Some(std::time::Instant::now());
        warn!("an API request was dropped: host-init has no file descriptor left to take it");
    }
}

type StatusFn = dyn Fn() -> StatusReply + Send + Sync;
type CallsFn = dyn Fn(&str, Call) -> Outcome + Send + Sync;

struct Handlers {
    status: Box<StatusFn>,
    calls: Box<CallsFn>,
}

/// Whether `auth` is an admin token's secret (asked like any who-am-I).
fn is_admin(h: &Handlers, auth: &str) -> bool {
    let who = (h.calls)(auth, Call::WhoAmI);
    who.reply.verdict == super::channel::Verdict::Ok
        && who.reply.body.get("admin") == Some(&serde_json::Value::Bool(true))
}

/// One request from the API process and its answer; `crowded`: the
/// exchanges kept for admins are all that is left, so only their calls
/// (and status and who-am-I) are served.
fn serve_exchange(h: &Handlers, socket: OwnedFd, crowded: bool) {
    use nix::sys::socket::{getsockopt, sockopt, SockType};
    if getsockopt(&socket, sockopt::SockType) != Ok(SockType::SeqPacket) {
        warn!("API process opened an exchange on something other than a packet socket; ignored");
        return;
    }
    // Room for one whole answer of up to MAX_REPLY in the socket (a packet
    // socket takes a message only whole, and the default buffer holds
    // about 200 KiB); PID 1 may go past the system's cap.
    let room = super::channel::MAX_REPLY + (64 << 10);
    if nix::sys::socket::setsockopt(&socket, sockopt::SndBufForce, &room).is_err() {
        let _ = nix::sys::socket::setsockopt(&socket, sockopt::SndBuf, &room);
    }
    let ex =
        Endpoint::from(socket).with_limits(super::channel::MAX_REPLY, super::channel::MAX_LINE);
    if ex.set_timeout(Some(REQUEST_TIMEOUT)).is_err() {
        return;
    }
    let sent = match ex.recv::<Request>() {
        Ok((Request::Status, None)) => ex.send(&(h.status)(), None::<&OwnedFd>),
        Ok((Request::Call { auth, call }, None))
            if crowded && !matches!(call, Call::WhoAmI) && !is_admin(h, &auth) =>
        {
            let busy = CallReply {
                verdict: super::channel::Verdict::Unavailable,
                body: serde_json::json!(paddock_api_types::ErrorBody::new("host-init is serving as many calls as it allows for non-admin tokens; retry shortly")),
                fd: false,
            };
            ex.send(&busy, None::<&OwnedFd>)
        }
        Ok((Request::Call { auth, call }, None)) => {
            let out = (h.calls)(&auth, call);
            let mut reply = out.reply;
            reply.fd = out.stream.is_some();
            ex.send(&reply, out.stream.as_ref())
        }
        Ok((_, Some(_))) => {
            warn!("API process attached a descriptor to a request; ignored");
            return;
        }
        Err(ChannelError::Closed) => return,
        Err(e) => {
            warn!("API process sent a bad request ({e}); ignored");
            return;
        }
    };
    if let Err(e) = sent {
        warn!("answering the API process: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn outcome(status: u16, body: serde_json::Value) -> Outcome {
        Outcome {
            reply: CallReply {
                verdict: paddock_api_server::http::verdict_of(status).expect("a status we use"),
                body,
                fd: false,
            },
            stream: None,
        }
    }

    /// One exchange served as the control thread would when `crowded`.
    fn exchange(h: &Arc<Handlers>, request: &Request, crowded: bool) -> serde_json::Value {
        use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
        let (api_end, ours) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .expect("pair");
        let api_end = Endpoint::from(api_end);
        let h = h.clone();
        let served = std::thread::spawn(move || serve_exchange(&h, ours, crowded));
        api_end.send(request, None::<&OwnedFd>).expect("send");
        let (reply, _) = api_end.recv::<serde_json::Value>().expect("reply");
        served.join().expect("served");
        reply
    }

    #[test]
    fn the_last_exchanges_serve_admins_only() {
        let forwarded = Arc::new(AtomicUsize::new(0));
        let seen = forwarded.clone();
        let h = Arc::new(Handlers {
            status: Box::new(|| StatusReply {
                version: "t".into(),
                state: "ready".into(),
                workspaces: 0,
                uptime_s: 0,
            }),
            calls: Box::new(move |auth, call| {
                if matches!(call, Call::WhoAmI) {
                    return outcome(200, serde_json::json!({"admin": auth == "admin"}));
                }
                seen.fetch_add(1, Ordering::SeqCst);
                outcome(200, serde_json::json!({"tokens": []}))
            }),
        });
        let list = |auth: &str| Request::Call {
            auth: auth.into(),
            call: Call::ListTokens,
        };
        assert_eq!(exchange(&h, &list("tenant"), false)["verdict"], "ok");
        assert_eq!(forwarded.load(Ordering::SeqCst), 1);
        let refused = exchange(&h, &list("tenant"), true);
        assert_eq!(refused["verdict"], "unavailable", "{refused}");
        assert_eq!(forwarded.load(Ordering::SeqCst), 1, "not forwarded");
        assert_eq!(exchange(&h, &list("admin"), true)["verdict"], "ok");
        assert_eq!(forwarded.load(Ordering::SeqCst), 2);
        let who = Request::Call {
            auth: "tenant".into(),
            call: Call::WhoAmI,
        };
        assert_eq!(exchange(&h, &who, true)["verdict"], "ok");
        assert_eq!(exchange(&h, &Request::Status, true)["state"], "ready");
    }
}
