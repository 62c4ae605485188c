//! How a process the box started ends, and how one starts: shared by
//! PID 1's reaper (`paddock-init`'s `children`, which re-exports both)
//! and the control plane's runner, which starts each workspace's jail.

use std::process::Command;

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit code {c}"),
            Exit::Signal(s) => write!(f, "signal {s}"),
        }
    }
}

/// Makes a child start with every signal unblocked and at its default
/// action, whatever PID 1's threads block or handle.
pub fn reset_signals(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: runs between fork and exec and only calls async-signal-safe
    // functions (sigemptyset, sigprocmask, signal).
    unsafe {
        cmd.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            for sig in [
                libc::SIGTERM,
                libc::SIGINT,
                libc::SIGPWR,
                libc::SIGHUP,
                libc::SIGCHLD,
                libc::SIGPIPE,
            ] {
                libc::signal(sig, libc::SIG_DFL);
            }
            Ok(())
        });
    }
}
