//! The API process's seccomp filter: the system calls a threaded TLS server
//! makes, nothing else. Anything outside the list kills the process (and
//! host-init restarts it and logs why).

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
#[error("building the seccomp filter: {0}")]
pub struct SandboxError(String);

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
    // memory
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    libc::SYS_brk,
    // threads
    libc::SYS_clone,
    libc::SYS_clone3,
    libc::SYS_futex,
    libc::SYS_set_robust_list,
    libc::SYS_rseq,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    libc::SYS_gettid,
    libc::SYS_getpid,
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_prctl,
    // signals (std's stack guard, abort)
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_tgkill,
    // time and randomness
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_getrandom,
];

pub fn filter() -> Result<BpfProgram, SandboxError> {
    let rules: BTreeMap<i64, Vec<seccompiler::SeccompRule>> =
        ALLOWED.iter().map(|s| (*s, Vec::new())).collect();
    let f = SeccompFilter::new(
        rules,
        SeccompAction::KillProcess,
        SeccompAction::Allow,
        TargetArch::x86_64,
    )
    .map_err(|e| SandboxError(e.to_string()))?;
    f.try_into()
        .map_err(|e: seccompiler::BackendError| SandboxError(e.to_string()))
}

/// Applies the filter to every thread of the process.
pub fn apply() -> Result<(), SandboxError> {
    let prog = filter()?;
    seccompiler::apply_filter_all_threads(&prog).map_err(|e| SandboxError(e.to_string()))
}
