//! seccomp filters, one per kind of VMM thread, compiled into the binary.
//!
//! The guest attacks the VMM through its devices; whatever thread it
//! subverts can then make only the system calls that thread's job needs.
//! Every thread installs its own filter before it handles anything of the
//! guest's: vCPUs before their first KVM_RUN, device workers before their
//! first queue. Anything off a thread's list kills the whole process.
//!
//! Filters stack: a thread inherits its creator's filter and may only narrow
//! it. Device workers are started when the guest activates a device, from a
//! vCPU thread; so that vCPUs need no thread creation of their own, workers
//! are created by one spawner thread (see `threads.rs`) whose list is the
//! union of the workers' lists plus what starting a thread takes.
//!
//! One exception to "kill": opening a file fails with EACCES. The VMM opens
//! nothing after start-up, but glibc does on its own (its allocator reads
//! /proc/sys/vm/overcommit_memory the first time a heap shrinks) and copes
//! with a refusal; a kill there would end the VM at random.

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("building the {kind:?} seccomp filter: {message}")]
    Build { kind: ThreadKind, message: String },
    #[error("installing the {kind:?} seccomp filter: {message}")]
    Apply { kind: ThreadKind, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ThreadKind {
    /// Sets the VM up, then only waits for its end and cleans up.
    Main,
    Vcpu,
    /// Writes console output (devices::detached).
    ConsoleOut,
    /// Feeds stdin to the serial port (interactive use only).
    ConsoleIn,
    /// Starts device workers on behalf of vCPUs.
    Spawner,
    Block,
    Vsock,
    Rng,
    Net,
    /// Serves the host's control socket (control.rs).
    Control,
}

impl ThreadKind {
    pub const ALL: [ThreadKind; 10] = [
        ThreadKind::Main,
        ThreadKind::Vcpu,
        ThreadKind::ConsoleOut,
        ThreadKind::ConsoleIn,
        ThreadKind::Spawner,
        ThreadKind::Block,
        ThreadKind::Vsock,
        ThreadKind::Rng,
        ThreadKind::Net,
        ThreadKind::Control,
    ];
    const WORKERS: [ThreadKind; 4] = [
        ThreadKind::Block,
        ThreadKind::Vsock,
        ThreadKind::Rng,
        ThreadKind::Net,
    ];
}

/// `_IO(KVMIO, 0x80)`: the ioctl a vCPU thread makes once running.
const KVM_RUN: u64 = 0xae80;

/// KVM ioctl numbers for the state a snapshot reads, from the kernel's
/// definitions (`_IOR`/`_IOWR` on KVMIO with the structure's size).
mod kvm_state_ioctls {
    use kvm_bindings::*;
    use std::mem::size_of;
    use vmm_sys_util::ioctl::ioctl_expr;
    const KVMIO: u32 = 0xae;
    const R: u32 = 2;
    const RW: u32 = 3;

    const fn io(dir: u32, nr: u32, size: usize) -> u64 {
        ioctl_expr(dir, KVMIO, nr, size as u32) as u64
    }

    /// What a parked vCPU reads of itself (snapshot/kvm.rs `save_vcpu`).
    pub const VCPU: [u64; 9] = [
        io(R, 0x81, size_of::<kvm_regs>()),
        io(R, 0x83, size_of::<kvm_sregs>()),
        io(RW, 0x88, size_of::<kvm_msrs>()),
        io(R, 0x8e, size_of::<kvm_lapic_state>()),
        io(R, 0x98, size_of::<kvm_mp_state>()),
        io(R, 0x9f, size_of::<kvm_vcpu_events>()),
        io(R, 0xa1, size_of::<kvm_debugregs>()),
        io(R, 0xa4, size_of::<kvm_xsave>()),
        io(R, 0xa6, size_of::<kvm_xcrs>()),
    ];
    /// What the control thread reads of the VM (`save_vm`).
    pub const VM: [u64; 3] = [
        io(RW, 0x62, size_of::<kvm_irqchip>()),
        io(R, 0x9f, size_of::<kvm_pit_state2>()),
        io(R, 0x7c, size_of::<kvm_clock_data>()),
    ];
}

/// What every thread may do: memory, locks, time, leaving, and writing an
/// error to stderr. Panics abort (tgkill), which must not be what kills.
const COMMON: &[libc::c_long] = &[
    libc::SYS_futex,
    libc::SYS_write,
    libc::SYS_close,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    libc::SYS_brk,
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigprocmask,
    libc::SYS_sigaltstack,
    libc::SYS_restart_syscall,
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_sched_yield,
    libc::SYS_getrandom,
    libc::SYS_gettid,
    libc::SYS_getpid,
    libc::SYS_tgkill,
];

/// Calls answered with EACCES rather than allowed or fatal.
const REFUSED: &[libc::c_long] = &[libc::SYS_open, libc::SYS_openat];

/// Starting a thread: clone, the new thread's own set-up in glibc and std
/// (robust futex list, rseq, its name), and installing its filter.
const THREAD_START: &[libc::c_long] = &[
    libc::SYS_clone,
    libc::SYS_clone3,
    libc::SYS_set_robust_list,
    libc::SYS_rseq,
    libc::SYS_seccomp,
    libc::SYS_sched_getaffinity,
];

/// A worker's event loop: epoll on its queue and stop eventfds.
const WORKER_LOOP: &[libc::c_long] = &[libc::SYS_epoll_wait, libc::SYS_epoll_pwait, libc::SYS_read];

type Rules = BTreeMap<i64, Vec<SeccompRule>>;

fn cond(arg: u8, value: u64) -> Result<SeccompCondition, seccompiler::BackendError> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Qword, SeccompCmpOp::Eq, value)
}

/// An `int` argument equal to `value` (only its low 32 bits are defined).
fn cond32(arg: u8, value: u64) -> Result<SeccompCondition, seccompiler::BackendError> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, value)
}

/// Each allowed value of an `int` argument as a rule of its own.
fn one_of(arg: u8, values: &[u64]) -> Result<Vec<SeccompRule>, seccompiler::BackendError> {
    values
        .iter()
        .map(|v| SeccompRule::new(vec![cond32(arg, *v)?]))
        .collect()
}

/// The system calls `kind` may make (with argument checks where a call is
/// only needed in one form), besides the refused ones.
fn rules(kind: ThreadKind) -> Result<Rules, seccompiler::BackendError> {
    let mut r: Rules = BTreeMap::new();
    let mut allow = |calls: &[libc::c_long]| {
        for c in calls {
            r.insert(*c, Vec::new());
        }
    };
    allow(COMMON);
    // Calls allowed only in some forms, added once `allow` is done with `r`.
    // realloc's growing of large blocks: never MREMAP_FIXED or
    // MREMAP_DONTUNMAP, which would let a subverted thread move guest
    // memory under another address (issue 14, item 10), and never an
    // old size of 0, which on a shared mapping (guest RAM is one) makes a
    // second mapping of the same pages.
    let mut narrow: Vec<(i64, Vec<SeccompRule>)> = vec![(
        libc::SYS_mremap,
        [0, libc::MREMAP_MAYMOVE as u64]
            .iter()
            .map(|flags| {
                SeccompRule::new(vec![
                    cond32(3, *flags)?,
                    SeccompCondition::new(1, SeccompCmpArgLen::Qword, SeccompCmpOp::Ne, 0)?,
                ])
            })
            .collect::<Result<_, _>>()?,
    )];
    match kind {
        ThreadKind::Main => {
            // The end of the VM: its vsock socket file is removed.
            allow(&[libc::SYS_unlink, libc::SYS_unlinkat]);
        }
        ThreadKind::Vcpu => {
            // KVM_RUN, and reading its own state when parked for a
            // snapshot: reads only, nothing that sets state.
            let mut ioctls = vec![SeccompRule::new(vec![cond(1, KVM_RUN)?])?];
            for nr in kvm_state_ioctls::VCPU {
                ioctls.push(SeccompRule::new(vec![cond(1, nr)?])?);
            }
            r.insert(libc::SYS_ioctl, ioctls);
            // Activating a virtio device hands copies of its queue eventfds
            // to the worker.
            r.insert(
                libc::SYS_fcntl,
                vec![SeccompRule::new(vec![cond(
                    1,
                    libc::F_DUPFD_CLOEXEC as u64,
                )?])?],
            );
        }
        ThreadKind::ConsoleOut => {}
        ThreadKind::ConsoleIn => allow(&[libc::SYS_read]),
        // One connection at a time on the listener main bound for it.
        // std reads a socket with recv (recvfrom) and writes it with send
        // (sendto).
        ThreadKind::Control => {
            // Requests come with recvmsg (descriptors for a snapshot);
            // a snapshot is written with pwrite and sized with ftruncate
            // into the files the host passed.
            allow(&[
                libc::SYS_accept4,
                libc::SYS_read,
                libc::SYS_recvfrom,
                libc::SYS_recvmsg,
                libc::SYS_sendto,
                libc::SYS_pwrite64,
                libc::SYS_ftruncate,
                // Finding the written parts of guest RAM's memfds, and a
                // device's size.
                libc::SYS_lseek,
                // Whether the memory file is a block device.
                libc::SYS_fstat,
            ]);
            r.insert(
                libc::SYS_ioctl,
                kvm_state_ioctls::VM
                    .iter()
                    .map(|nr| SeccompRule::new(vec![cond(1, *nr)?]))
                    .collect::<Result<_, _>>()?,
            );
            // std checks a descriptor is open before closing it (debug
            // builds).
            r.insert(
                libc::SYS_fcntl,
                vec![SeccompRule::new(vec![cond(1, libc::F_GETFD as u64)?])?],
            );
        }
        ThreadKind::Rng => allow(WORKER_LOOP),
        // Frames in and out of the tap (read, write), its watch switched
        // off and on, the rate timer. The tap's descriptor is all the
        // network it has: no socket calls.
        ThreadKind::Net => {
            allow(WORKER_LOOP);
            allow(&[
                libc::SYS_epoll_ctl,
                libc::SYS_timerfd_settime,
                libc::SYS_timerfd_gettime,
            ]);
        }
        ThreadKind::Block => {
            allow(WORKER_LOOP);
            allow(&[
                libc::SYS_pread64,
                libc::SYS_pwrite64,
                libc::SYS_preadv,
                libc::SYS_pwritev,
                libc::SYS_fdatasync,
                libc::SYS_fsync,
            ]);
        }
        ThreadKind::Vsock => {
            allow(WORKER_LOOP);
            allow(&[
                libc::SYS_epoll_ctl,
                libc::SYS_accept4,
                libc::SYS_connect,
                libc::SYS_readv,
                libc::SYS_writev,
                libc::SYS_recvfrom,
                libc::SYS_sendto,
                libc::SYS_shutdown,
                libc::SYS_fcntl,
            ]);
            // Only Unix stream sockets, only made non-blocking.
            r.insert(
                libc::SYS_socket,
                vec![SeccompRule::new(vec![cond(0, libc::AF_UNIX as u64)?])?],
            );
            r.insert(
                libc::SYS_ioctl,
                vec![SeccompRule::new(vec![cond(1, libc::FIONBIO)?])?],
            );
        }
        ThreadKind::Spawner => {
            allow(THREAD_START);
            // A new thread's name, and no_new_privs before its own filter;
            // no other prctl (PR_SET_VMA would rename mappings, PR_SET_MM
            // rewrite the process's memory map description).
            narrow.push((
                libc::SYS_prctl,
                one_of(
                    0,
                    &[libc::PR_SET_NAME as u64, libc::PR_SET_NO_NEW_PRIVS as u64],
                )?,
            ));
            // A worker's stop eventfd and epoll, made before it starts.
            allow(&[
                libc::SYS_eventfd2,
                libc::SYS_epoll_create1,
                libc::SYS_epoll_ctl,
                libc::SYS_fcntl,
            ]);
            // Workers start under this filter and then narrow it to their
            // own: it must allow everything any of them needs.
            for w in ThreadKind::WORKERS {
                for (call, worker_rules) in rules(w)? {
                    merge(&mut r, call, worker_rules);
                }
            }
        }
    }
    for (call, rules) in narrow {
        merge(&mut r, call, rules);
    }
    Ok(r)
}

/// Adds `call` with `rules` to `into`; no rules means "any arguments",
/// which wins over argument checks.
fn merge(into: &mut Rules, call: i64, rules: Vec<SeccompRule>) {
    match into.get_mut(&call) {
        None => {
            into.insert(call, rules);
        }
        Some(existing) if existing.is_empty() => {}
        Some(_) if rules.is_empty() => {
            into.insert(call, rules);
        }
        Some(existing) => existing.extend(rules),
    }
}

fn compile(
    rules: Rules,
    others: SeccompAction,
    listed: SeccompAction,
) -> Result<BpfProgram, String> {
    let f =
        SeccompFilter::new(rules, others, listed, TargetArch::x86_64).map_err(|e| e.to_string())?;
    f.try_into()
        .map_err(|e: seccompiler::BackendError| e.to_string())
}

/// Every thread kind's filters, compiled once at start-up.
pub struct Filters {
    /// For each kind: the refusal of `open`, then the allow-list.
    by_kind: BTreeMap<ThreadKind, [BpfProgram; 2]>,
}

impl Filters {
    pub fn compile() -> Result<Filters, SeccompError> {
        let mut by_kind = BTreeMap::new();
        for kind in ThreadKind::ALL {
            let build = |message: String| SeccompError::Build { kind, message };
            let refusal: Rules = REFUSED.iter().map(|c| (*c, Vec::new())).collect();
            let mut allowed = rules(kind).map_err(|e| build(e.to_string()))?;
            for c in REFUSED {
                allowed.insert(*c, Vec::new());
            }
            let progs = [
                compile(
                    refusal,
                    SeccompAction::Allow,
                    SeccompAction::Errno(libc::EACCES as u32),
                )
                .map_err(build)?,
                compile(allowed, SeccompAction::Trap, SeccompAction::Allow).map_err(build)?,
            ];
            by_kind.insert(kind, progs);
        }
        Ok(Filters { by_kind })
    }

    /// Installs `kind`'s filters on the calling thread, for good.
    pub fn apply(&self, kind: ThreadKind) -> Result<(), SeccompError> {
        THREAD_KIND.with(|k| k.set(kind as u8));
        let progs = self.by_kind.get(&kind).ok_or(SeccompError::Apply {
            kind,
            message: "no filter compiled for it".into(),
        })?;
        for p in progs {
            seccompiler::apply_filter(p).map_err(|e| SeccompError::Apply {
                kind,
                message: e.to_string(),
            })?;
        }
        Ok(())
    }
}

thread_local! {
    /// The calling thread's kind, for the report of a forbidden call.
    static THREAD_KIND: std::cell::Cell<u8> = const { std::cell::Cell::new(u8::MAX) };
}

/// Exit status of a VMM stopped for a forbidden call: what a kill by SIGSYS
/// would give, so host-init's report reads the same either way.
pub const FORBIDDEN_EXIT: i32 = 128 + libc::SIGSYS;

/// Handles the SIGSYS a filter raises (SECCOMP_RET_TRAP): says which call
/// in which kind of thread, on stderr, and ends the process. Installed
/// before any filter. Only async-signal-safe work: formatting into a stack
/// buffer, write(2), _exit(2).
pub fn install_report_handler() -> std::io::Result<()> {
    extern "C" fn report(_sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
        // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO
        // handler; for SIGSYS from seccomp, si_syscall sits right after
        // si_addr (offset 24 on x86_64), which `libc` does not expose.
        let nr = unsafe { *(info.cast::<u8>().add(24).cast::<libc::c_int>()) };
        let kind = THREAD_KIND.with(|k| k.get());
        let kind_name = ThreadKind::ALL
            .iter()
            .find(|k| **k as u8 == kind)
            .map_or("unfiltered", |k| k.name());
        let mut buf = [0u8; 200];
        let mut len = 0;
        let mut put = |bytes: &[u8]| {
            for &b in bytes {
                if len < buf.len() {
                    buf[len] = b;
                    len += 1;
                }
            }
        };
        put(b"paddock-vmm: seccomp: forbidden system call ");
        put_number(&mut put, i64::from(nr).unsigned_abs(), 10);
        // The first two arguments tell most calls apart (ioctl and fcntl
        // requests, socket families).
        // SAFETY: for an SA_SIGINFO handler the third argument is the
        // interrupted context, a valid ucontext_t.
        let regs = unsafe { &(*ctx.cast::<libc::ucontext_t>()).uc_mcontext.gregs };
        put(b" (arguments 0x");
        put_number(&mut put, regs[libc::REG_RDI as usize] as u64, 16);
        put(b", 0x");
        put_number(&mut put, regs[libc::REG_RSI as usize] as u64, 16);
        put(b")");
        put(b" in a ");
        put(kind_name.as_bytes());
        put(b" thread; stopping the VM\n");
        // SAFETY: write(2) of a stack buffer and _exit(2), both
        // async-signal-safe and allowed by every filter.
        unsafe {
            libc::write(2, buf.as_ptr().cast(), len);
            libc::_exit(FORBIDDEN_EXIT);
        }
    }
    // SAFETY: a zeroed sigaction is valid; we set the handler and flags,
    // and `report` has the SA_SIGINFO signature.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = report as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut sa.sa_mask);
        if libc::sigaction(libc::SIGSYS, &sa, std::ptr::null_mut()) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Writes `n` in `base` through `put`, without allocating.
fn put_number(put: &mut impl FnMut(&[u8]), mut n: u64, base: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b"0123456789abcdef"[(n % base) as usize];
        n /= base;
        if n == 0 || i == 0 {
            break;
        }
    }
    put(&digits[i..]);
}

impl ThreadKind {
    fn name(self) -> &'static str {
        match self {
            ThreadKind::Main => "main",
            ThreadKind::Vcpu => "vCPU",
            ThreadKind::ConsoleOut => "console-out",
            ThreadKind::ConsoleIn => "console-in",
            ThreadKind::Spawner => "spawner",
            ThreadKind::Block => "virtio-blk",
            ThreadKind::Vsock => "virtio-vsock",
            ThreadKind::Rng => "virtio-rng",
            ThreadKind::Net => "virtio-net",
            ThreadKind::Control => "control",
        }
    }
}

#[cfg(test)]
#[path = "seccomp_tests.rs"]
mod tests;
