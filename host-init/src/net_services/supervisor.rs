//! PID 1's side of the network services process: bind its sockets once,
//! start it confined, push it the state, add up what it reports, and
//! start it again whenever it ends.
//!
//! The process is on the guest-facing side of the line, so nothing it
//! sends is trusted: reports are size-capped, counts are taken only for
//! workspaces that exist, a malformed message or a stalled channel ends
//! it (by pidfd), and no PID 1 thread waits on it for longer than
//! `SYNC_WAIT`.

use super::link::{self, CONNECTIONS, LOOKUPS};
use super::{diff, Report, Update, CHANNEL_FD, MAX_UPDATE, PROXY_FD, RESOLVER_FD};
use crate::api::channel::{ChannelError, Endpoint, MAX_LINE};
use crate::net::policy_table::{self, Table};
use crate::{error, info, warn};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
        Sockets::bind_at(
            (Ipv4Addr::UNSPECIFIED, DNS_PORT).into(),
            (Ipv4Addr::UNSPECIFIED, PROXY_PORT).into(),
            None,
        )
    }

    /// Binds both, made as `owner` where given: PID 1 binds them (port 53
    /// needs its privilege) but on a thread whose filesystem uid is the
    /// process's, so the kernel files the sockets under that uid and the
    /// firewall's fence (`meta skuid`) covers them. Root's sockets in the
    /// process's hands would not be fenced: it could shut the listener
    /// down and connect it anywhere, or send from port 53 anywhere.
    pub fn bind_at(
        resolver: SocketAddr,
        proxy: SocketAddr,
        owner: Option<u32>,
    ) -> Result<Sockets, NetServicesError> {
        let bind = move || {
            if let Some(uid) = owner {
                // SAFETY: setfsuid takes a plain value and changes only this
                // thread's filesystem uid (and its filesystem capabilities);
                // the thread ends right after.
                unsafe { libc::setfsuid(uid as libc::uid_t) };
            }
            let resolver = UdpSocket::bind(resolver).map_err(|source| NetServicesError::Bind {
                what: "resolver",
                source,
            })?;
            let proxy = TcpListener::bind(proxy).map_err(|source| NetServicesError::Bind {
                what: "proxy",
                source,
            })?;
            Ok(Sockets { resolver, proxy })
        };
        std::thread::scope(|s| {
            s.spawn(bind).join().unwrap_or_else(|_| {
                Err(NetServicesError::Failed(
                    "binding its sockets panicked".into(),
                ))
            })
        })
    }

    fn addrs(&self) -> std::io::Result<(SocketAddr, SocketAddr)> {
        Ok((self.resolver.local_addr()?, self.proxy.local_addr()?))
    }
}

/// Its threads at most (RLIMIT_NPROC, which counts its uid's).
const MAX_THREADS: libc::rlim_t = 10_000;

/// Restarts since boot, for /metrics.
static RESTARTS: AtomicU64 = AtomicU64::new(0);
/// The running process's pid and pidfd (the test probe kills it).
static RUNNING: Mutex<Option<(u32, Arc<OwnedFd>)>> = Mutex::new(None);
/// Reports a process may send in a second: one round of activity on its
/// tick (at most (8192 + 64) / 64 + 4 messages, net::activity and
/// net::requests), and a few per update; past that it is flooding PID 1
/// and is ended.
const MAX_REPORTS_PER_S: u32 = 400;

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

/// Starts the process (`exe net-services`) serving `sockets` on a thread
/// that starts it again whenever it ends (or fails to start), for as
/// long as the box runs.
/// `sockets` say where: each process gets fresh ones on those addresses,
/// owned by its uid (`Sockets::bind_at`), so whatever one did to its
/// sockets (shut the listener down, set odd flags) does not outlive it.
pub fn start(exe: PathBuf, sockets: Sockets, confine: Confine) -> Result<(), NetServicesError> {
    // From here on every change to the firewall's table goes to the
    // process (the table lives in `paddock-net`, which cannot call here).
    policy_table::push_with(|table| {
        link::push_policy(table).map(|t| policy_table::Ticket::new(move || t.wait()))
    });
    let addrs = sockets.addrs().map_err(NetServicesError::Spawn)?;
    drop(sockets);
    std::thread::Builder::new()
        .name("net-services".into())
        .spawn(move || supervise(exe, addrs, confine))
        .map(drop)
        .map_err(NetServicesError::Spawn)
}

struct Started {
    pid: u32,
    channel: Arc<Endpoint>,
    generation: u64,
}

fn supervise(exe: PathBuf, addrs: (SocketAddr, SocketAddr), confine: Confine) {
    let mut generation = 1;
    let owner = confine.drop_to.map(|(uid, _)| uid);
    loop {
        let running = loop {
            let started = Sockets::bind_at(addrs.0, addrs.1, owner)
                .and_then(|sockets| spawn(&exe, &sockets, confine, generation));
            match started {
                Ok(r) => break r,
                Err(e) => {
                    error!("{e}; trying again in 5 s");
                    std::thread::sleep(Duration::from_secs(5));
                }
            }
        };
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
        generation += 1;
        RESTARTS.fetch_add(1, Ordering::SeqCst);
    }
}

/// Its text for PID 1's log: one line, printable, bounded (the process is
/// on the guests' side of the line; its words must not pass for PID 1's).
fn sanitized(text: &str) -> String {
    // Control characters, and the format characters that reorder or hide
    // text (bidi overrides and isolates, zero-width ones).
    let shady = |c: char| {
        c.is_control()
            || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
    };
    text.trim_end_matches(['\r', '\n'])
        .chars()
        .take(300)
        .map(|c| if shady(c) { '?' } else { c })
        .collect()
}

/// Lines of the process's log relayed a second; past that they are
/// counted and the count said (a flood of refusals must not flood PID 1's
/// console, which is a slow serial line).
const MAX_LOG_LINES_PER_S: u32 = 5;

/// Puts the process's stderr into PID 1's log, line by line, labelled,
/// printable and bounded.
fn relay_log(err: std::process::ChildStderr) {
    use std::io::{BufRead, Read};
    let mut reader = std::io::BufReader::new(err);
    let mut line = Vec::new();
    let mut second = (Instant::now(), 0u32);
    let mut dropped = 0u64;
    loop {
        line.clear();
        // At most 4 KiB a line: a longer one is cut, the rest read as
        // further lines.
        match (&mut reader).take(4096).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if second.0.elapsed() >= Duration::from_secs(1) {
            if dropped > 0 {
                warn!("net-services: {dropped} more log lines dropped");
                dropped = 0;
            }
            second = (Instant::now(), 0);
        }
        second.1 += 1;
        if second.1 > MAX_LOG_LINES_PER_S {
            dropped += 1;
            continue;
        }
        info!(
            "net-services: {}",
            sanitized(&String::from_utf8_lossy(&line))
        );
    }
}

/// Reads the process's reports until it ends or misbehaves; then it is
/// unlinked and killed, and waiters are told.
fn serve_reports(running: &Started) {
    let mut second = (Instant::now(), 0u32);
    loop {
        let report = running.channel.recv::<Report>();
        if second.0.elapsed() >= Duration::from_secs(1) {
            second = (Instant::now(), 0);
        }
        second.1 += 1;
        if second.1 > MAX_REPORTS_PER_S {
            warn!("the network services process is flooding PID 1 with reports; ending it");
            break;
        }
        match report {
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
            Ok((Report::Activity { records }, None)) => {
                // Only for workspaces it serves, and checked again there
                // (control::netlog): this process is not trusted.
                let known = policy_table::ids();
                crate::control::netlog::add(
                    records
                        .into_iter()
                        .filter(|(k, _)| known.contains(&k.workspace))
                        .collect(),
                );
            }
            Ok((Report::Asks { asks }, None)) => {
                // Checked again here, as the proxy checked them: a
                // workspace PID 1 serves, a name an allowlist entry may
                // hold, one line of reason; at most a chunk per report.
                let known = policy_table::ids();
                let asks: Vec<_> = asks
                    .into_iter()
                    .take(super::ACTIVITY_CHUNK)
                    .filter(|a| known.contains(&a.workspace))
                    .filter(|a| {
                        crate::net::requests::checked(&a.host, a.port).as_deref()
                            == Ok(a.host.as_str())
                    })
                    .filter(|a| {
                        a.reason.chars().count() <= 500 && !a.reason.chars().any(char::is_control)
                    })
                    .collect();
                if let Some(c) = crate::control::service::instance() {
                    c.asked(asks);
                }
            }
            Ok((Report::Secrets { events }, None)) => {
                // Only secrets PID 1 gave it, of workspaces it serves: this
                // process is not trusted.
                let events: Vec<_> = events
                    .into_iter()
                    .take(super::SECRET_EVENT_CHUNK)
                    .filter(|(e, _)| super::secrets::has(&e.workspace, &e.secret))
                    .collect();
                if let Some(c) = crate::control::service::instance() {
                    c.secret_events(events);
                }
            }
            Ok((Report::Synced { seq }, None)) if link::was_sent(seq) => {
                link::synced(seq, running.generation);
            }
            Ok((Report::Synced { seq }, None)) => {
                warn!("the network services process confirmed update {seq}, which was never sent; ending it");
                break;
            }
            Ok((Report::Failed { error: e }, None)) => {
                error!("the network services process failed: {}", sanitized(&e));
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
        let mut slot = link::link();
        if slot.as_ref().map(|l| l.generation) == Some(running.generation) {
            *slot = None;
        }
    }
    kill_running();
    link::new_generation(running.generation + 1, 0);
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
    // Big policy updates go out; only small reports come back.
    let ours = ours.with_limits(MAX_UPDATE, MAX_LINE);
    let fds = [
        (theirs.raw(), CHANNEL_FD),
        (sockets.resolver.as_raw_fd(), RESOLVER_FD),
        (sockets.proxy.as_raw_fd(), PROXY_FD),
    ];
    let mut cmd = Command::new(exe);
    cmd.arg("net-services")
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        // Its log lines come to PID 1, which labels them (`relay_log`).
        .stderr(Stdio::piped());
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
            // Threads, all of its uid's together: two per proxied
            // connection (4096) and one per lookup in flight (256), with
            // room; not the box's whole pid space.
            let nproc = libc::rlimit {
                rlim_cur: MAX_THREADS,
                rlim_max: MAX_THREADS,
            };
            if libc::setrlimit(libc::RLIMIT_NPROC, &nproc) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            crate::children::confine_after_fork()
        });
    }
    let mut child = cmd.spawn().map_err(NetServicesError::Spawn)?;
    if let Some(err) = child.stderr.take() {
        let _ = std::thread::Builder::new()
            .name("net-services-log".into())
            .spawn(move || relay_log(err));
    }
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
    let mut slot = link::link();
    let table = policy_table::snapshot();
    let (upstream, host) = link::RESOLVERS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let seq = link::next_seq();
    let updates = std::iter::once(Update::Resolvers { upstream, host })
        .chain(diff(&Table::new(), &table))
        .chain(super::secrets::whole_state())
        .chain(std::iter::once(Update::Sync { seq }));
    // One deadline for the whole exchange, not one per message.
    let until = Instant::now() + START_WAIT;
    let left = || {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(NetServicesError::Failed(format!(
                "it did not take its state within {START_WAIT:?}"
            )))
        } else {
            Ok(left)
        }
    };
    for u in updates {
        channel.set_timeout(Some(left()?))?;
        channel.send(&u, None::<&OwnedFd>)?;
    }
    loop {
        channel.set_timeout(Some(left()?))?;
        match channel.recv::<Report>()? {
            (Report::Synced { seq: s }, None) if s == seq => break,
            // Nothing was counted yet; anything else before the answer is
            // out of turn.
            (
                Report::Refused { .. }
                | Report::Activity { .. }
                | Report::Asks { .. }
                | Report::Secrets { .. },
                None,
            ) => continue,
            (Report::Failed { error }, _) => {
                return Err(NetServicesError::Failed(sanitized(&error)))
            }
            (other, _) => {
                return Err(NetServicesError::Failed(sanitized(&format!(
                    "it answered {other:?} to its start-up state"
                ))))
            }
        }
    }
    channel.set_timeout(None)?;
    let channel = Arc::new(channel);
    link::new_generation(generation, seq);
    *slot = Some(link::Link {
        channel: channel.clone(),
        sent: table,
        generation,
    });
    Ok(channel)
}
