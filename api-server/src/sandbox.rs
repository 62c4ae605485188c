//! The API process's seccomp filter: the system calls a TLS server on a
//! tokio runtime makes, nothing else. Anything outside the list kills the process (and
//! host-init restarts it and logs why).
//!
//! One exception: opening a file fails with EACCES instead of killing. The
//! API process has no file to open, but glibc's allocator does, on its own:
//! it reads /proc/sys/vm/overcommit_memory the first time a thread's heap
//! shrinks, and copes when that fails. Killed there, the process died at
//! random under load, dropping every request in flight.

use paddock_jail::seccomp_rules::{
    errno_filter, program, thread_only_clone, RuleError, ABSENT, REFUSED, THREADED_PROCESS,
};
use seccompiler::{BpfProgram, SeccompAction, SeccompRule};
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
#[error("building the API process's seccomp filter: {0}")]
pub struct SandboxError(#[from] RuleError);

const ALLOWED: &[libc::c_long] = &[
    // sockets and the channel
    libc::SYS_accept4,
    libc::SYS_accept,
    libc::SYS_read,
    libc::SYS_readv,
    libc::SYS_write,
    libc::SYS_writev,
    libc::SYS_recvfrom,
    libc::SYS_sendto,
    libc::SYS_recvmsg,
    libc::SYS_sendmsg,
    libc::SYS_shutdown,
    // one socket pair per request to host-init
    libc::SYS_socketpair,
    libc::SYS_close,
    libc::SYS_setsockopt,
    libc::SYS_getsockopt,
    libc::SYS_getsockname,
    libc::SYS_getpeername,
    libc::SYS_fcntl,
    libc::SYS_poll,
    libc::SYS_ppoll,
    // the async runtime's reactor and its wake-ups
    libc::SYS_epoll_create1,
    libc::SYS_epoll_ctl,
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_eventfd2,
    // threads may name themselves (clone itself: threads only, in `filters`)
    libc::SYS_prctl,
];

/// The three filters, in the order they must be installed: the two errno
/// answers (files: EACCES; clone3: ENOSYS), then the allow-list (which
/// lets those through to them, makes clone threads only, and forbids
/// installing anything after it). The kernel runs all three and takes
/// the strictest answer.
pub fn filters() -> Result<[BpfProgram; 3], SandboxError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = ALLOWED
        .iter()
        .chain(THREADED_PROCESS)
        .chain(REFUSED)
        .chain(ABSENT)
        .map(|s| (*s, Vec::new()))
        .collect();
    rules.insert(libc::SYS_clone, vec![thread_only_clone()?]);
    Ok([
        errno_filter(REFUSED, libc::EACCES)?,
        errno_filter(ABSENT, libc::ENOSYS)?,
        program(rules, SeccompAction::KillProcess, SeccompAction::Allow)?,
    ])
}

/// Applies the filters to every thread of the process.
pub fn apply() -> Result<(), SandboxError> {
    for prog in filters()? {
        seccompiler::apply_filter_all_threads(&prog)
            .map_err(|e| SandboxError(RuleError::new(e.to_string())))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `probe` in a child under the filters; its wait status.
    fn under_filters(probe: fn() -> i32) -> nix::sys::wait::WaitStatus {
        paddock_jail::seccomp_probe::run_under(&filters().expect("filters"), probe)
    }

    #[test]
    fn opening_files_fails_but_does_not_kill() {
        let status = under_filters(|| {
            let path = c"/proc/sys/vm/overcommit_memory";
            // SAFETY: a plain open of a NUL-terminated path.
            let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY) };
            // SAFETY: reading errno right after the call.
            let errno = unsafe { *libc::__errno_location() };
            if fd < 0 && errno == libc::EACCES {
                0
            } else {
                1
            }
        });
        assert_eq!(
            status,
            nix::sys::wait::WaitStatus::Exited(status.pid().expect("pid"), 0)
        );
    }

    #[test]
    fn a_fork_kills_and_clone3_is_absent() {
        let status = under_filters(|| {
            // SAFETY: a raw fork-like clone; a child, if there were one,
            // exits at once.
            let r = unsafe {
                libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_ulong, 0, 0, 0, 0)
            };
            if r == 0 {
                // SAFETY: leaving the forked child at once.
                unsafe { libc::_exit(0) };
            }
            0
        });
        assert!(
            matches!(
                status,
                nix::sys::wait::WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGSYS, _)
            ),
            "{status:?}"
        );
        let status = under_filters(|| {
            // SAFETY: clone3 with a null argument (EFAULT unfiltered).
            let r = unsafe { libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0) };
            // SAFETY: reading errno right after the call.
            let errno = unsafe { *libc::__errno_location() };
            i32::from(!(r < 0 && errno == libc::ENOSYS))
        });
        assert_eq!(
            status,
            nix::sys::wait::WaitStatus::Exited(status.pid().expect("pid"), 0)
        );
    }

    #[test]
    fn anything_off_the_list_kills() {
        let status = under_filters(|| {
            // SAFETY: a system call with no arguments that is not allowed.
            unsafe { libc::syscall(libc::SYS_getppid) };
            0
        });
        assert!(
            matches!(
                status,
                nix::sys::wait::WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGSYS, _)
            ),
            "{status:?}"
        );
    }
}
