//! The workspaces this box runs (for now: the demo workspace), and stopping
//! them all for shutdown. Each is one paddock-vmm process, watched by its
//! own thread, which alone collects its exit from the reaper.

use crate::process::Exit;
use log::info;
use nix::sys::signal::{kill as send_signal, Signal};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Table {
    running: BTreeMap<String, u32>,
    ended: BTreeMap<String, Exit>,
}

static TABLE: Mutex<Table> = Mutex::new(Table {
    running: BTreeMap::new(),
    ended: BTreeMap::new(),
});
static CHANGED: Condvar = Condvar::new();

/// The names of the VMs host-init runs for itself (template_snapshots.rs):
/// stopped like the others, counted as no one's workspace.
pub const INTERNAL_PREFIX: &str = "template-";

fn workspaces_in(running: &BTreeMap<String, u32>) -> usize {
    running
        .keys()
        .filter(|n| !n.starts_with(INTERNAL_PREFIX))
        .count()
}

fn lock() -> std::sync::MutexGuard<'static, Table> {
    TABLE.lock().unwrap_or_else(|e| e.into_inner())
}

fn publish_count(n: usize) {
    crate::host::get().show_workspaces(n as u32);
}

/// Registers a started VMM and watches for its end.
pub fn add(name: &str, pid: u32) {
    let n = {
        let mut t = lock();
        t.ended.remove(name);
        t.running.insert(name.to_string(), pid);
        workspaces_in(&t.running)
    };
    publish_count(n);
    let name = name.to_string();
    let _ = std::thread::Builder::new()
        .name(format!("ws-{name}"))
        .spawn(move || {
            let exit = crate::host::get().wait_exit(pid);
            let n = {
                let mut t = lock();
                t.running.remove(&name);
                t.ended.insert(name, exit);
                workspaces_in(&t.running)
            };
            CHANGED.notify_all();
            publish_count(n);
        });
}

pub fn count() -> u32 {
    workspaces_in(&lock().running) as u32
}

/// Waits until workspace `name` has ended; returns how.
pub fn wait_ended(name: &str, timeout: Option<Duration>) -> Option<Exit> {
    let until = timeout.map(|t| Instant::now() + t);
    let mut t = lock();
    loop {
        if let Some(e) = t.ended.get(name) {
            return Some(*e);
        }
        // Never started in this boot (a stopped workspace, or one from
        // before a restart): there is nothing to wait for.
        if !t.running.contains_key(name) {
            return None;
        }
        let left = match until {
            Some(u) => u.saturating_duration_since(Instant::now()),
            None => Duration::from_secs(3600),
        };
        if left.is_zero() {
            return None;
        }
        t = CHANGED
            .wait_timeout(t, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

fn wait_all(until: Instant) -> bool {
    let mut t = lock();
    while !t.running.is_empty() {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        t = CHANGED
            .wait_timeout(t, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    true
}

fn signal_all(sig: Signal) -> Vec<String> {
    let t = lock();
    for pid in t.running.values() {
        let _ = send_signal(Pid::from_raw(*pid as i32), sig);
    }
    t.running.keys().cloned().collect()
}

/// The pid of a workspace's jail (the process host-init started), if it runs.
pub fn pid(name: &str) -> Option<u32> {
    lock().running.get(name).copied()
}

/// Ends a workspace's VMM at once: SIGKILL to its jail (the VMM, its
/// child, dies with it). For a frozen workspace, whose jail cannot act on
/// a SIGTERM.
pub fn kill_now(name: &str) {
    if let Some(pid) = pid(name) {
        let _ = send_signal(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
}

/// Ends one workspace's VMM, if it runs: SIGTERM to its jail, which kills
/// the VMM and exits once it is gone (its mounts released with it); SIGKILL
/// to the jail if it is still there after `JAIL_GRACE`.
pub fn kill(name: &str) {
    let Some(pid) = lock().running.get(name).copied() else {
        return;
    };
    let _ = send_signal(Pid::from_raw(pid as i32), Signal::SIGTERM);
    if wait_ended(name, Some(JAIL_GRACE)).is_none() {
        let _ = send_signal(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
}

/// How long a jail gets to end its VMM before it is killed itself.
const JAIL_GRACE: Duration = Duration::from_secs(5);

/// Stops every workspace: SIGTERM to each VMM, then SIGKILL to any still
/// there after `grace`. Returns how many workspaces were running.
pub fn stop_all(grace: Duration) -> usize {
    let names = signal_all(Signal::SIGTERM);
    if !wait_all(Instant::now() + grace) {
        let left = signal_all(Signal::SIGKILL);
        info!("workspaces {left:?} ignored SIGTERM; killed");
        wait_all(Instant::now() + Duration::from_secs(5));
    }
    let t = lock();
    for n in &names {
        match t.ended.get(n) {
            Some(e) => info!("workspace {n} stopped ({e})"),
            None => info!("workspace {n} did not stop"),
        }
    }
    names
        .iter()
        .filter(|n| !n.starts_with(INTERNAL_PREFIX))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_for_a_workspace_that_never_ran_returns_at_once() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(wait_ended(
                "ws_never_started",
                Some(Duration::from_secs(3600)),
            ));
        });
        // A liveness check, not a timing: before, this waited the whole
        // hour (every stop of a stopped workspace waited its 10 s).
        let got = rx.recv_timeout(Duration::from_secs(60));
        assert!(matches!(got, Ok(None)), "{got:?}");
    }
}
