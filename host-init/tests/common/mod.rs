//! Shared by host-init's integration tests.

/// A child process (the API process) that must not outlive a failed
/// assertion: it inherits the test's output, and the harness would wait on
/// it forever.
pub struct KillOnDrop(pub u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0 as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(pid, None);
    }
}
