//! Seccomp pieces the confined roles (the API process, the network
//! services process) share: building filters, and the rule that lets a
//! process make threads but never another process.
//!
//! Why threads only: PID 1 ends a misbehaving role through a pidfd. A
//! role that could fork would leave a copy holding its inherited sockets
//! (the API's TLS port, the resolver's and proxy's), serving on after the
//! original was killed and competing with its replacement.

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
#[error("building a seccomp filter: {0}")]
pub struct RuleError(String);

impl RuleError {
    pub fn new(why: impl Into<String>) -> RuleError {
        RuleError(why.into())
    }
}

/// clone flags that make a new namespace.
const CLONE_NEW_ANY: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u64;

/// What any threaded Rust process on glibc calls whatever it serves:
/// memory, threads (bar `clone`, see `thread_only_clone`), signals (std's
/// stack guard, abort), time and randomness.
pub const THREADED_PROCESS: &[libc::c_long] = &[
    // memory
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    libc::SYS_brk,
    // threads
    libc::SYS_futex,
    libc::SYS_set_robust_list,
    libc::SYS_rseq,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    libc::SYS_gettid,
    libc::SYS_getpid,
    libc::SYS_exit,
    libc::SYS_exit_group,
    // signals
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_tgkill,
    // a sleep or wait interrupted by a stop (SIGSTOP, a debugger) resumes
    libc::SYS_restart_syscall,
    // time and randomness
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_getrandom,
];

/// Calls answered EACCES rather than allowed or fatal: opening files. The
/// confined roles have none to open, but glibc's allocator reads
/// /proc/sys/vm/overcommit_memory on its own and copes when it cannot.
pub const REFUSED: &[libc::c_long] = &[libc::SYS_openat, libc::SYS_open];

/// Calls to answer ENOSYS, as a kernel without them would: `clone3`,
/// whose flags sit in memory a filter cannot read (the C library then
/// falls back to `clone`, which `thread_only_clone` checks).
pub const ABSENT: &[libc::c_long] = &[libc::SYS_clone3];

pub fn cond(
    index: u8,
    len: SeccompCmpArgLen,
    op: SeccompCmpOp,
    value: u64,
) -> Result<SeccompCondition, RuleError> {
    SeccompCondition::new(index, len, op, value).map_err(|e| RuleError(e.to_string()))
}

pub fn rule(conds: Vec<SeccompCondition>) -> Result<SeccompRule, RuleError> {
    SeccompRule::new(conds).map_err(|e| RuleError(e.to_string()))
}

/// Argument `index` (its low 32 bits) equals `value`.
pub fn arg_is(index: u8, value: u64) -> Result<SeccompRule, RuleError> {
    rule(vec![cond(
        index,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::Eq,
        value,
    )?])
}

/// `clone` with CLONE_THREAD and no namespace flag: a thread.
pub fn thread_only_clone() -> Result<SeccompRule, RuleError> {
    let thread = libc::CLONE_THREAD as u64;
    rule(vec![cond(
        0,
        SeccompCmpArgLen::Qword,
        SeccompCmpOp::MaskedEq(thread | CLONE_NEW_ANY),
        thread,
    )?])
}

pub fn program(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    others: SeccompAction,
    listed: SeccompAction,
) -> Result<BpfProgram, RuleError> {
    let f = SeccompFilter::new(rules, others, listed, TargetArch::x86_64)
        .map_err(|e| RuleError(e.to_string()))?;
    f.try_into()
        .map_err(|e: seccompiler::BackendError| RuleError(e.to_string()))
}

/// A filter answering `calls` with `errno` and allowing everything else
/// (installed before an allow-list that lets `calls` through).
pub fn errno_filter(calls: &[libc::c_long], errno: i32) -> Result<BpfProgram, RuleError> {
    program(
        calls.iter().map(|s| (*s, Vec::new())).collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(errno as u32),
    )
}
