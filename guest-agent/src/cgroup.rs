//! Each exec runs in its own cgroup, so a timeout or a vanished host kills
//! everything the command started, even processes that left its process
//! group or session. A command that ends normally may leave background
//! processes running (a server it started); their cgroup is removed once
//! they are gone.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

const BASE: &str = "/sys/fs/cgroup/paddock-exec";

pub struct ExecCgroup {
    path: String,
    /// cgroup.procs, opened before the fork so the child only has to write "0".
    procs: Option<OwnedFd>,
}

impl ExecCgroup {
    /// A fresh cgroup; None when cgroup2 is not mounted (the command then
    /// runs without one and is killed by process group instead).
    pub fn create() -> Option<ExecCgroup> {
        // Unit tests run on the build machine: its cgroups are not ours.
        if cfg!(test) {
            return None;
        }
        static NEXT: AtomicU64 = AtomicU64::new(1);
        std::fs::create_dir_all(BASE).ok()?;
        sweep_empty();
        let path = format!("{BASE}/{}", NEXT.fetch_add(1, Ordering::Relaxed));
        std::fs::create_dir(&path).ok()?;
        let procs = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("{path}/cgroup.procs"))
            .ok()
            .map(OwnedFd::from);
        Some(ExecCgroup { path, procs })
    }

    /// For the child between fork and exec: joins the cgroup. Only a
    /// write(2) on an already-open fd, so it is async-signal-safe.
    pub fn procs_fd(&self) -> Option<libc::c_int> {
        self.procs.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// The file whose write kills the cgroup, for callers that outlive `self`.
    pub fn kill_file(&self) -> String {
        format!("{}/cgroup.kill", self.path)
    }
}

/// Cgroups of finished execs that still had processes when their exec ended.
fn leftovers() -> std::sync::MutexGuard<'static, Vec<String>> {
    static L: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    L.lock().unwrap_or_else(|e| e.into_inner())
}

/// Removes leftover cgroups whose processes have all ended (rmdir refuses
/// non-empty ones, which is the check). Only finished execs' cgroups are
/// touched: a running exec's may be empty between its creation and its
/// child joining it.
fn sweep_empty() {
    leftovers().retain(|p| std::fs::remove_dir(p).is_err());
}

impl Drop for ExecCgroup {
    fn drop(&mut self) {
        self.procs = None;
        // Gone now if nothing was left running; otherwise a later sweep.
        if std::fs::remove_dir(&self.path).is_err() {
            leftovers().push(self.path.clone());
        }
    }
}
