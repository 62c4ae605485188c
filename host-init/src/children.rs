//! The one reaper. PID 1 inherits every orphan on the box, so exactly one
//! place calls wait: the supervisor loop's `reap_all`. Code that starts a
//! process collects its status here instead of waiting on it itself, which
//! would race the reaper and lose.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

/// How a process ended, and the reset every child of PID 1 starts with,
/// are shared with the control plane, which starts the workspaces' jails.
pub use paddock_control::process::{reset_signals, Exit};

/// Unclaimed exits are kept for a while; orphans nobody asks about are
/// dropped oldest-first beyond this many.
const MAX_UNCLAIMED: usize = 1024;

#[derive(Default)]
pub struct Children {
    exited: Mutex<(HashMap<u32, Exit>, Vec<u32>)>,
    cv: Condvar,
}

pub static CHILDREN: std::sync::LazyLock<Children> = std::sync::LazyLock::new(Children::default);

impl Children {
    /// Collects every child that has ended. Called on SIGCHLD.
    pub fn reap_all(&self) {
        loop {
            let exit = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, Exit::Code(code)),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, Exit::Signal(sig as i32)),
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => continue,
            };
            let mut g = self.exited.lock().unwrap_or_else(|e| e.into_inner());
            let pid = exit.0.as_raw() as u32;
            g.0.insert(pid, exit.1);
            g.1.push(pid);
            if g.1.len() > MAX_UNCLAIMED {
                let old = g.1.remove(0);
                g.0.remove(&old);
            }
            self.cv.notify_all();
        }
    }

    /// Waits up to `timeout` for `pid` to end.
    pub fn wait(&self, pid: u32, timeout: Option<Duration>) -> Option<Exit> {
        let until = timeout.map(|t| Instant::now() + t);
        let mut g = self.exited.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(e) = g.0.remove(&pid) {
                g.1.retain(|p| *p != pid);
                return Some(e);
            }
            match until {
                None => g = self.cv.wait(g).unwrap_or_else(|e| e.into_inner()),
                Some(u) => {
                    let left = u.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    g = self
                        .cv
                        .wait_timeout(g, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
    }
}

/// For `pre_exec` closures of confined children (the API process, VMMs):
/// no_new_privs, so no exec can gain privileges, and no core dumps, which
/// could spill guest memory or keys. Async-signal-safe.
pub fn confine_after_fork() -> std::io::Result<()> {
    let no_core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prctl and setrlimit with plain values and a pointer to a
    // local; nothing allocates between fork and exec.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0
            || libc::setrlimit(libc::RLIMIT_CORE, &no_core) < 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Runs a tool to completion and returns its exit and stderr.
pub fn run(mut cmd: Command) -> std::io::Result<(Exit, String)> {
    reset_signals(&mut cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    let pid = child.id();
    drop(child);
    let exit = CHILDREN
        .wait(pid, None)
        .ok_or_else(|| std::io::Error::other("child vanished"))?;
    Ok((exit, err))
}

/// A pidfd for `pid` (None on a kernel without pidfd_open: then no kill).
/// A handle on the process, not its number: PID 1's reaper may reap it at
/// any time, and a kill by number could then hit whoever got it next.
pub fn pidfd_open(pid: u32) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::{FromRawFd, OwnedFd};
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor
    // or -1; nothing of ours is passed by pointer.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    // SAFETY: a non-negative return is a descriptor the kernel just made
    // for us alone.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// SIGKILLs the process behind `pidfd` (nothing, if it is gone).
pub fn kill_pidfd(pidfd: &std::os::fd::OwnedFd) {
    use std::os::fd::AsRawFd;
    // SAFETY: pidfd_send_signal with our own pidfd, a signal number, no
    // siginfo (null) and no flags.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        );
    }
}

/// Puts `pid` into cgroup `/sys/fs/cgroup/<name>` (cgroup v2) with
/// `memory.max` at `max` bytes and no swap: a confined child's leak or
/// blow-up ends in its own OOM kill, not in the box's.
pub fn confine_memory(name: &str, max: u64, pid: u32) -> std::io::Result<()> {
    let root = std::path::Path::new("/sys/fs/cgroup");
    // Enabling a controller that is already on is a no-op.
    std::fs::write(root.join("cgroup.subtree_control"), "+memory")?;
    let cg = root.join(name);
    match std::fs::create_dir(&cg) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    std::fs::write(cg.join("memory.max"), max.to_string())?;
    std::fs::write(cg.join("memory.swap.max"), "0").ok();
    std::fs::write(cg.join("cgroup.procs"), pid.to_string())
}
