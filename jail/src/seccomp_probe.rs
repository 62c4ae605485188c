//! Runs a probe under a confined role's seccomp filters in a forked child,
//! for the roles' filter tests (paddock-api-server's sandbox, the network
//! services' sandbox). Feature `seccomp-probe` only: dev-dependencies
//! turn it on, no product build has it.

use seccompiler::BpfProgram;

/// Runs `probe` in a forked child under `filters`; its wait status (for
/// the roles' filter tests).
pub fn run_under(filters: &[BpfProgram], probe: fn() -> i32) -> nix::sys::wait::WaitStatus {
    // SAFETY: the child only installs the prebuilt filters, makes raw
    // system calls and exits; it allocates nothing.
    match unsafe { nix::unistd::fork() }.expect("fork") {
        nix::unistd::ForkResult::Child => {
            for p in filters {
                if seccompiler::apply_filter(p).is_err() {
                    // SAFETY: leaving the forked child at once.
                    unsafe { libc::_exit(90) };
                }
            }
            let code = probe();
            // SAFETY: as above.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            nix::sys::wait::waitpid(child, None).expect("wait")
        }
    }
}
