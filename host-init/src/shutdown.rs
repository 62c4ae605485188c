//! The orderly shutdown: stop the workspaces, stop the API, unmount the
//! data partition, sync, then power off (or reboot, for Ctrl-Alt-Del).
//! It runs on its own thread so the supervisor keeps reaping meanwhile.

use crate::status::SCREEN;
use crate::{info, warn};
use nix::sys::reboot::{reboot, RebootMode};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

static STARTED: AtomicBool = AtomicBool::new(false);
/// The reboot is the box's own, for an update: running workspaces are
/// paused first and resumed after it (control's reboot_pause).
static KEEP_WORKSPACES: AtomicBool = AtomicBool::new(false);
/// How long the pauses before an update's reboot may take in all; a
/// workspace left over is stopped (lost) as at any reboot.
const PAUSE_BUDGET: Duration = Duration::from_secs(300);
static API_PID: AtomicU32 = AtomicU32::new(0);
static CONTROL: std::sync::OnceLock<std::sync::Arc<crate::control::service::Control>> =
    std::sync::OnceLock::new();

/// The control plane, whose database must be closed before /data unmounts.
pub fn set_control(c: std::sync::Arc<crate::control::service::Control>) {
    let _ = CONTROL.set(c);
}

#[derive(Clone, Copy, Debug)]
pub enum Then {
    PowerOff,
    Reboot,
}

pub fn set_api_pid(pid: u32) {
    API_PID.store(pid, Ordering::SeqCst);
}

pub fn in_progress() -> bool {
    STARTED.load(Ordering::SeqCst)
}

/// A reboot into an update: the running workspaces are paused first, to
/// be resumed once the box is up again.
pub fn begin_update_reboot(why: &str) {
    start(Then::Reboot, why, true);
}

pub fn begin(then: Then, why: &str) {
    start(then, why, false);
}

fn start(then: Then, why: &str, keep_workspaces: bool) {
    if STARTED.swap(true, Ordering::SeqCst) {
        return;
    }
    // Only the shutdown that started: a power button racing an update's
    // reboot does not make it pause anything.
    KEEP_WORKSPACES.store(keep_workspaces, Ordering::SeqCst);
    info!("shutdown requested ({why}); will {then:?} when done");
    SCREEN.update(|s| s.state = "shutting down".into());
    let _ = std::thread::Builder::new()
        .name("shutdown".into())
        .spawn(move || run(then));
}

fn run(then: Then) -> ! {
    // No template's VM starts while the workspaces are stopped.
    crate::control::template_snapshots::disable();
    // Nothing new starts (a create would race the pauses and the stops).
    if let Some(c) = CONTROL.get() {
        c.begin_closing();
    }
    if KEEP_WORKSPACES.load(Ordering::SeqCst) {
        if let Some(c) = CONTROL.get() {
            let (paused, not) = c.pause_all_for_reboot(PAUSE_BUDGET);
            info!("shutdown: {paused} workspace(s) paused for the reboot, {not} not");
        }
    }
    let stopped = crate::workspaces::stop_all(Duration::from_secs(10));
    info!("shutdown: {stopped} workspace(s) stopped");
    let api = API_PID.load(Ordering::SeqCst);
    if api != 0 {
        let pid = nix::unistd::Pid::from_raw(api as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = crate::children::CHILDREN.wait(api, Some(Duration::from_secs(3)));
    }
    if let Some(c) = CONTROL.get() {
        c.close();
    }
    // The workspaces' encrypted disks: their loop devices hold files on
    // /data open until the mappings go.
    for (name, e) in crate::keys::dmcrypt::close_all() {
        crate::warn!("shutdown: closing {name}: {e}");
    }
    match crate::storage::unmount() {
        Ok(()) => info!("shutdown: data partition unmounted cleanly"),
        Err(e) => {
            warn!("shutdown: data partition still busy ({e}); remounted read-only");
            // Who might hold it: every process but this one and kernel threads.
            warn!("shutdown: processes left: {}", crate::procfs::census());
        }
    }
    nix::unistd::sync();
    let mode = match then {
        Then::PowerOff => RebootMode::RB_POWER_OFF,
        Then::Reboot => RebootMode::RB_AUTOBOOT,
    };
    info!("shutdown: done; {then:?} now");
    crate::log::flush(Duration::from_secs(2));
    let _ = reboot(mode);
    crate::fatal::die("the kernel refused to power off")
}
