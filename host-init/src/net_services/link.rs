//! PID 1's line to the running network services process: what it pushes
//! (policy, resolvers, forget), the confirmations it waits for, and the
//! counts it keeps from the process's reports.
//!
//! Nothing the process says is trusted: a confirmation of a number never
//! sent, or none within `SYNC_WAIT`, ends it (the restart pushes the whole
//! state again), and no send may block longer than `SEND_WAIT` in all.

use super::Update;
use crate::api::channel::Endpoint;
use crate::net::policy_table::Table;
use crate::warn;
use paddock_net_services::refusals::Refusals;
use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Longest a PID 1 thread waits for the process to confirm an update; a
/// process that does not is ended, and its successor gets the update with
/// the rest of the state.
pub const SYNC_WAIT: Duration = Duration::from_secs(10);
/// Longest one batch of sends to the process may block, all together: one
/// that stops reading is ended rather than allowed to hold PID 1.
pub const SEND_WAIT: Duration = Duration::from_secs(5);

/// The running process, as PID 1 talks to it.
pub(super) struct Link {
    pub channel: Arc<Endpoint>,
    /// The policy table as last pushed.
    pub sent: Table,
    pub generation: u64,
}

static LINK: Mutex<Option<Link>> = Mutex::new(None);
/// The upstream resolvers and the host's addresses, as last set.
pub(super) static RESOLVERS: Mutex<(Vec<Ipv4Addr>, Vec<Ipv4Addr>)> =
    Mutex::new((Vec::new(), Vec::new()));
pub(super) static LOOKUPS: Refusals = Refusals::new();
pub(super) static CONNECTIONS: Refusals = Refusals::new();
/// The next `Sync` number; never reused, across processes.
static SEQ: AtomicU64 = AtomicU64::new(1);

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

pub(super) fn link() -> std::sync::MutexGuard<'static, Option<Link>> {
    LINK.lock().unwrap_or_else(|e| e.into_inner())
}

pub(super) fn next_seq() -> u64 {
    SEQ.fetch_add(1, Ordering::SeqCst)
}

/// Whether `seq` is a number PID 1 has handed out (a confirmation of any
/// other is a lie).
pub(super) fn was_sent(seq: u64) -> bool {
    seq < SEQ.load(Ordering::SeqCst)
}

/// A confirmation heard from the process of `generation`.
pub(super) fn synced(seq: u64, generation: u64) {
    let (lock, cv) = &SYNCED;
    let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
    if s.generation == generation {
        s.seq = s.seq.max(seq);
    }
    cv.notify_all();
}

/// A new process of `generation` is linked, having confirmed `seq`; or
/// (`seq` 0) the process before it is gone. Either way, waiters on the
/// one before stop waiting.
pub(super) fn new_generation(generation: u64, seq: u64) {
    let (lock, cv) = &SYNCED;
    let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
    s.generation = generation;
    s.seq = seq;
    cv.notify_all();
}

/// Sends `updates` and a `Sync` to the running process, if there is one,
/// within SEND_WAIT in all; a `Ticket` to wait on. A failed send ends the
/// process (the restart pushes everything again).
fn send_and_sync(
    slot: &mut Option<Link>,
    updates: &[Update],
    after: impl FnOnce(&mut Link),
) -> Option<Ticket> {
    let link = slot.as_mut()?;
    let seq = next_seq();
    let until = Instant::now() + SEND_WAIT;
    let sent = updates
        .iter()
        .chain(std::iter::once(&Update::Sync { seq }))
        .try_for_each(|u| {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(crate::api::channel::ChannelError::Io(
                    std::io::ErrorKind::TimedOut.into(),
                ));
            }
            link.channel.set_send_timeout(Some(left))?;
            link.channel.send(u, None::<&OwnedFd>)
        });
    match sent {
        Ok(()) => {
            after(link);
            Some(Ticket {
                seq,
                generation: link.generation,
            })
        }
        Err(e) => {
            warn!("network services: sending an update: {e}; ending the process");
            *slot = None;
            super::supervisor::kill_running();
            None
        }
    }
}

/// An update sent; `wait` returns once the process has confirmed it.
#[must_use = "an update is in force only once waited for"]
pub struct Ticket {
    seq: u64,
    generation: u64,
}

impl Ticket {
    /// Waits (at most SYNC_WAIT) until the process has confirmed this
    /// update; one that does not in time is ended.
    pub fn wait(self) {
        let until = Instant::now() + SYNC_WAIT;
        let (lock, cv) = &SYNCED;
        let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
        while s.seq < self.seq && s.generation == self.generation {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                drop(s);
                warn!(
                    "network services: update {} not confirmed within {SYNC_WAIT:?}; ending the process",
                    self.seq
                );
                end_generation(self.generation);
                return;
            }
            s = cv
                .wait_timeout(s, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// Unlinks and kills the process of `generation`, if it is still the one
/// running.
fn end_generation(generation: u64) {
    let mut slot = link();
    if slot.as_ref().map(|l| l.generation) == Some(generation) {
        *slot = None;
        super::supervisor::kill_running();
    }
}

/// Sends the policy `table` to the process (the changes since the last
/// push); the ticket to wait on, after the caller has let go of whatever
/// lock it holds. None until the process has started (it gets the whole
/// table then).
pub fn push_policy(table: &Table) -> Option<Ticket> {
    let mut slot = link();
    let updates = super::diff(&slot.as_ref()?.sent, table);
    send_and_sync(&mut slot, &updates, |l| l.sent = table.clone())
}

/// Sends `updates` to the running process; the ticket to wait on (none
/// while no process runs: a new one gets the whole state).
pub(super) fn push(updates: &[Update]) -> Option<Ticket> {
    send_and_sync(&mut link(), updates, |_| {})
}

/// Where allowed names are asked, and the host's own addresses. Kept for
/// every later start of the process; the firewall's fence around the
/// process follows.
pub fn set_resolvers(upstream: &[Ipv4Addr], host: &[Ipv4Addr]) {
    // The fence moves first: the process may ask these, never reach those.
    if let Err(e) = crate::net::firewall::set_services_fence(upstream, host) {
        warn!("fencing the network services process: {e}");
    }
    *RESOLVERS.lock().unwrap_or_else(|e| e.into_inner()) = (upstream.to_vec(), host.to_vec());
    // PID 1's own lookups (the webhook's host) ask the same upstreams.
    crate::net::dns::configure(upstream, host);
    let update = Update::Resolvers {
        upstream: upstream.to_vec(),
        host: host.to_vec(),
    };
    if let Some(t) = send_and_sync(&mut link(), &[update], |_| {}) {
        t.wait();
    }
}

/// A workspace is gone: its counts go, here and in the process.
pub fn forget(id: &str) {
    LOOKUPS.forget(id);
    CONNECTIONS.forget(id);
    let update = Update::Forget { id: id.to_string() };
    // Not waited for: nothing depends on the process's counts being gone.
    let _ = send_and_sync(&mut link(), &[update], |_| {});
}

/// Gathers what the process has counted so far (before /metrics reads).
pub fn flush() {
    if let Some(t) = send_and_sync(&mut link(), &[], |_| {}) {
        t.wait();
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
