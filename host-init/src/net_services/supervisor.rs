//! PID 1's side of the network services process: bind its sockets once,
//! start it confined, push it the state, add up what it reports, and
//! start it again whenever it ends.
//!
//! The process is on the guest-facing side of the line, so nothing it
//! sends is trusted: reports are size-capped, counts are taken only for
//! workspaces that exist, a malformed message or a stalled channel ends
//! it (by pidfd), and no PID 1 thread waits on it for longer than
//! `SYNC_WAIT`.

use super::{diff, Report, Update, CHANNEL_FD, MAX_UPDATE, PROXY_FD, RESOLVER_FD};
use crate::api::channel::{ChannelError, Endpoint};
use crate::net::policy_table::{self, Table};
use crate::net::refusals::Refusals;
use crate::{error, info, warn};
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Longest a PID 1 thread waits for the process to confirm an update
/// (policy changes are in force when the call that made them returns,
/// unless this runs out; then the restart that follows pushes them).
const SYNC_WAIT: Duration = Duration::from_secs(5);
/// Longest a send to the process may block: one that stops reading is
/// ended rather than allowed to hold the firewall's lock.
const SEND_WAIT: Duration = Duration::from_secs(5);
/// Longest a fresh process may take to take the state and answer.
const START_WAIT: Duration = Duration::from_secs(30);
/// Its cgroup and memory.max: up to 4096 proxied connections at two small
/// threads and two buffers each, and 256 lookups in flight, fit in well
/// under half of this; a leak ends in its own OOM kill and a restart.
const CGROUP: &str = "paddock-net";
const MEMORY_MAX: u64 = 512 << 20;

#[derive(Debug, thiserror::Error)]
pub enum NetServicesError {
    #[error("binding the {what} socket: {source}")]
    Bind {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("starting the network services process: {0}")]
    Spawn(std::io::Error),
    #[error("the network services process: {0}")]
    Channel(#[from] ChannelError),
    #[error("the network services process could not start: {0}")]
    Failed(String),
}

/// The sockets the process serves; PID 1 holds them for its whole life.
pub struct Sockets {
    pub resolver: UdpSocket,
    pub proxy: TcpListener,
}

impl Sockets {
    /// The appliance's: udp/53 and the proxy's port on every address (the
    /// firewall lets only workspaces reach them).
    pub fn bind() -> Result<Sockets, NetServicesError> {
        use crate::net::firewall::{DNS_PORT, PROXY_PORT};
        let resolver = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, DNS_PORT)).map_err(|source| {
            NetServicesError::Bind {
                what: "resolver",
                source,
            }
        })?;
        let proxy = TcpListener::bind((Ipv4Addr::UNSPECIFIED, PROXY_PORT)).map_err(|source| {
            NetServicesError::Bind {
                what: "proxy",
                source,
            }
        })?;
        Ok(Sockets { resolver, proxy })
    }
}

/// The running process, as PID 1 talks to it.
struct Link {
    channel: Arc<Endpoint>,
    /// The policy table as last pushed.
    sent: Table,
    generation: u64,
}

static LINK: Mutex<Option<Link>> = Mutex::new(None);
/// The upstream resolvers and the host's addresses, as last set.
static RESOLVERS: Mutex<(Vec<Ipv4Addr>, Vec<Ipv4Addr>)> = Mutex::new((Vec::new(), Vec::new()));
static LOOKUPS: Refusals = Refusals::new();
static CONNECTIONS: Refusals = Refusals::new();
static SEQ: AtomicU64 = AtomicU64::new(1);
/// Restarts since boot, for /metrics.
static RESTARTS: AtomicU64 = AtomicU64::new(0);
/// The running process's pid and pidfd (the test probe kills it).
static RUNNING: Mutex<Option<(u32, Arc<OwnedFd>)>> = Mutex::new(None);

/// The highest `Synced` heard, and the generation of the process that
/// said it: a waiter stops waiting when the first reaches its number or
/// the second changes (the process it asked is gone).
struct Synced {
    seq: u64,
    generation: u64,
}
static SYNCED: (Mutex<Synced>, Condvar) = (
    Mutex::new(Synced {
        seq: 0,
        generation: 0,
    }),
    Condvar::new(),
);

fn link() -> std::sync::MutexGuard<'static, Option<Link>> {
    LINK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sends `updates` and a `Sync` to the running process (if there is one);
/// what to wait for. A failed send ends the process (the restart pushes
/// everything again).
fn send_and_sync(
    slot: &mut Option<Link>,
    updates: &[Update],
    after: impl FnOnce(&mut Link),
) -> Option<(u64, u64)> {
    let link = slot.as_mut()?;
    let seq = SEQ.fetch_add(1, Ordering::SeqCst);
    let sent = updates
        .iter()
        .chain(std::iter::once(&Update::Sync { seq }))
        .try_for_each(|u| link.channel.send(u, None::<&OwnedFd>));
    match sent {
        Ok(()) => {
            after(link);
            Some((seq, link.generation))
        }
        Err(e) => {
            warn!("network services: sending an update: {e}; ending the process");
            *slot = None;
            kill_running();
            None
        }
    }
}

/// Waits (at most SYNC_WAIT) until the process has confirmed `seq`.
fn wait_synced((seq, generation): (u64, u64)) {
    let until = Instant::now() + SYNC_WAIT;
    let (lock, cv) = &SYNCED;
    let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
    while s.seq < seq && s.generation == generation {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            warn!("network services: update {seq} not confirmed within {SYNC_WAIT:?}");
            return;
        }
        s = cv
            .wait_timeout(s, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

/// Has the resolver and the proxy follow the policy `table`; returns once
/// they have (or SYNC_WAIT ran out). A no-op until the process started.
pub fn push_policy(table: &Table) {
    let wait = {
        let mut slot = link();
        let updates = match slot.as_ref() {
            Some(l) => diff(&l.sent, table),
            None => return,
        };
        send_and_sync(&mut slot, &updates, |l| l.sent = table.clone())
    };
    if let Some(w) = wait {
        wait_synced(w);
    }
}

/// Where allowed names are asked, and the host's own addresses. Kept for
/// every later start of the process.
pub fn set_resolvers(upstream: &[Ipv4Addr], host: &[Ipv4Addr]) {
    *RESOLVERS.lock().unwrap_or_else(|e| e.into_inner()) = (upstream.to_vec(), host.to_vec());
    let update = Update::Resolvers {
        upstream: upstream.to_vec(),
        host: host.to_vec(),
    };
    let wait = send_and_sync(&mut link(), &[update], |_| {});
    if let Some(w) = wait {
        wait_synced(w);
    }
}

/// A workspace is gone: its counts go, here and in the process.
pub fn forget(id: &str) {
    LOOKUPS.forget(id);
    CONNECTIONS.forget(id);
    let update = Update::Forget { id: id.to_string() };
    let _ = send_and_sync(&mut link(), &[update], |_| {});
}

/// Gathers what the process has counted so far (before /metrics reads).
pub fn flush() {
    let wait = send_and_sync(&mut link(), &[], |_| {});
    if let Some(w) = wait {
        wait_synced(w);
    }
}

/// Lookups of workspace `id` its allowlist refused.
pub fn refused_lookups(id: &str) -> u64 {
    LOOKUPS.get(id)
}

/// Connections of workspace `id` the proxy refused.
pub fn refused_connections(id: &str) -> u64 {
    CONNECTIONS.get(id)
}

/// How often the process was started again since boot.
pub fn restarts() -> u64 {
    RESTARTS.load(Ordering::SeqCst)
}

/// The running process's pid, if one runs.
pub fn pid() -> Option<u32> {
    RUNNING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .map(|r| r.0)
}

/// SIGKILLs the running process (through its pidfd); its pid, if one ran.
pub fn kill_running() -> Option<u32> {
    let running = RUNNING.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let (pid, fd) = running?;
    crate::children::kill_pidfd(&fd);
    Some(pid)
}

/// How the process is confined beyond what it does itself (seccomp, and
/// no_new_privs and no core dumps, set at its start).
#[derive(Clone, Copy, Debug)]
pub struct Confine {
    /// The (uid, gid) it runs as (None only in tests that cannot switch
    /// users).
    pub drop_to: Option<(u32, u32)>,
    /// Whether it gets its own memory cgroup (the appliance; not a test
    /// on a build machine, whose cgroups are not ours to change).
    pub memory_cgroup: bool,
}

impl Confine {
    /// The appliance's.
    pub const APPLIANCE: Confine = Confine {
        drop_to: Some((super::UID, super::GID)),
        memory_cgroup: true,
    };
}

/// Starts the process (`exe net-services`) serving `sockets`, and a
/// thread that starts it again whenever it ends. Returns the first
/// process's pid.
pub fn start(exe: PathBuf, sockets: Sockets, confine: Confine) -> Result<u32, NetServicesError> {
    let first = spawn(&exe, &sockets, confine, 1)?;
    let pid = first.pid;
    std::thread::Builder::new()
        .name("net-services".into())
        .spawn(move || supervise(exe, sockets, confine, first))
        .map_err(NetServicesError::Spawn)?;
    Ok(pid)
}

struct Started {
    pid: u32,
    channel: Arc<Endpoint>,
    generation: u64,
}

fn supervise(exe: PathBuf, sockets: Sockets, confine: Confine, first: Started) {
    let mut running = first;
    loop {
        serve_reports(&running);
        let pid = running.pid;
        let exit = crate::children::CHILDREN.wait(pid, Some(Duration::from_secs(5)));
        if crate::shutdown::in_progress() {
            return;
        }
        warn!(
            "the network services process (pid {pid}) ended ({}); starting it again",
            exit.map(|e| e.to_string())
                .unwrap_or_else(|| "still ending".into())
        );
        std::thread::sleep(Duration::from_secs(1));
        let generation = running.generation + 1;
        running = loop {
            match spawn(&exe, &sockets, confine, generation) {
                Ok(r) => break r,
                Err(e) => {
                    error!("{e}");
                    std::thread::sleep(Duration::from_secs(5));
                }
            }
        };
        RESTARTS.fetch_add(1, Ordering::SeqCst);
    }
}

/// Reads the process's reports until it ends or misbehaves; then it is
/// killed and unlinked, and waiters are told.
fn serve_reports(running: &Started) {
    loop {
        match running.channel.recv::<Report>() {
            Ok((
                Report::Refused {
                    lookups,
                    connections,
                },
                None,
            )) => {
                let known = policy_table::ids();
                for (counts, reported) in [(&LOOKUPS, lookups), (&CONNECTIONS, connections)] {
                    for (id, n) in reported.into_iter().filter(|(id, _)| known.contains(id)) {
                        counts.add(&id, n);
                    }
                }
            }
            Ok((Report::Synced { seq }, None)) => {
                let (lock, cv) = &SYNCED;
                let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
                if s.generation == running.generation {
                    s.seq = s.seq.max(seq);
                }
                cv.notify_all();
            }
            Ok((Report::Failed { error: e }, None)) => {
                error!("the network services process failed: {e}");
                break;
            }
            Ok((_, Some(_))) => {
                warn!("the network services process attached a descriptor to a report; ending it");
                break;
            }
            Err(ChannelError::Closed) => break,
            Err(e) => {
                warn!("the network services process sent a bad report ({e}); ending it");
                break;
            }
        }
    }
    {
        let mut slot = link();
        if slot.as_ref().map(|l| l.generation) == Some(running.generation) {
            *slot = None;
        }
    }
    kill_running();
    let (lock, cv) = &SYNCED;
    lock.lock().unwrap_or_else(|e| e.into_inner()).generation = running.generation + 1;
    cv.notify_all();
}

/// Starts one process and gives it the whole state; it serves once it
/// has confirmed it.
fn spawn(
    exe: &Path,
    sockets: &Sockets,
    confine: Confine,
    generation: u64,
) -> Result<Started, NetServicesError> {
    let (ours, theirs) = Endpoint::pair()?;
    let ours = ours.with_limit(MAX_UPDATE);
    let fds = [
        (theirs.raw(), CHANNEL_FD),
        (sockets.resolver.as_raw_fd(), RESOLVER_FD),
        (sockets.proxy.as_raw_fd(), PROXY_FD),
    ];
    let mut cmd = Command::new(exe);
    cmd.arg("net-services")
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    crate::children::reset_signals(&mut cmd);
    if let Some((uid, gid)) = confine.drop_to {
        // As root, std also drops the supplementary groups.
        cmd.uid(uid).gid(gid);
    }
    // SAFETY: the closure runs between fork and exec and only makes
    // async-signal-safe system calls (fcntl, dup2, prctl, setrlimit).
    unsafe {
        cmd.pre_exec(move || {
            // Each descriptor is first copied above the targets, so one
            // that already sits at a target is not overwritten before it
            // is moved (the copies close at exec).
            let mut high = [0; 3];
            for (h, (fd, _)) in high.iter_mut().zip(fds) {
                *h = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10);
                if *h < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (h, (_, target)) in high.iter().zip(fds) {
                if libc::dup2(*h, target) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            crate::children::confine_after_fork()
        });
    }
    let child = cmd.spawn().map_err(NetServicesError::Spawn)?;
    drop(theirs);
    let pid = child.id();
    // Reaped by PID 1's reaper, never through this handle.
    drop(child);
    match crate::children::pidfd_open(pid) {
        Some(fd) => {
            *RUNNING.lock().unwrap_or_else(|e| e.into_inner()) = Some((pid, Arc::new(fd)));
        }
        None => {
            warn!("no pidfd for the network services process: it cannot be ended if it misbehaves")
        }
    }
    if confine.memory_cgroup {
        if let Err(e) = crate::children::confine_memory(CGROUP, MEMORY_MAX, pid) {
            warn!("the network services process's memory cgroup: {e}");
        }
    }
    let started = hand_state(ours, generation).inspect_err(|_| {
        kill_running();
    })?;
    info!("network services (resolver, egress proxy) serving as pid {pid}");
    Ok(Started {
        pid,
        channel: started,
        generation,
    })
}

/// Sends the whole state to a fresh process and waits for its `Synced`;
/// the channel, linked for later updates. Holds the link's lock
/// throughout, so no update can slip between the state and the link.
fn hand_state(channel: Endpoint, generation: u64) -> Result<Arc<Endpoint>, NetServicesError> {
    let mut slot = link();
    let table = policy_table::snapshot();
    let (upstream, host) = RESOLVERS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let seq = SEQ.fetch_add(1, Ordering::SeqCst);
    let updates = std::iter::once(Update::Resolvers { upstream, host })
        .chain(diff(&Table::new(), &table))
        .chain(std::iter::once(Update::Sync { seq }));
    channel.set_timeout(Some(START_WAIT))?;
    for u in updates {
        channel.send(&u, None::<&OwnedFd>)?;
    }
    loop {
        match channel.recv::<Report>()? {
            (Report::Synced { seq: s }, None) if s == seq => break,
            // Nothing was counted yet; anything else before the answer is
            // out of turn.
            (Report::Refused { .. }, None) => continue,
            (Report::Failed { error }, _) => return Err(NetServicesError::Failed(error)),
            (other, _) => {
                return Err(NetServicesError::Failed(format!(
                    "it answered {other:?} to its start-up state"
                )))
            }
        }
    }
    channel.set_timeout(None)?;
    channel.set_send_timeout(Some(SEND_WAIT))?;
    let channel = Arc::new(channel);
    {
        let (lock, cv) = &SYNCED;
        let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
        s.generation = generation;
        s.seq = s.seq.max(seq);
        cv.notify_all();
    }
    *slot = Some(Link {
        channel: channel.clone(),
        sent: table,
        generation,
    });
    Ok(channel)
}
