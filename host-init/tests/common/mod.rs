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

/// What the fake host-init answers: a plain reply without a descriptor.
#[allow(dead_code)] // not every test binary that includes this module uses it
pub fn outcome(status: u16, body: serde_json::Value) -> paddock_init::control::service::Outcome {
    paddock_init::control::service::Outcome {
        reply: paddock_init::api::channel::CallReply {
            status,
            body,
            fd: false,
        },
        stream: None,
    }
}

/// The HTTP status curl gets for `args` (a URL and options), "000" when it
/// got no answer within `max_time_s`.
#[allow(dead_code)] // not every test binary that includes this module uses it
pub fn curl_status(max_time_s: u32, args: &[&str]) -> String {
    let out = std::process::Command::new("curl")
        .args(["-sk", "--max-time", &max_time_s.to_string()])
        .args(["-o", "/dev/null", "-w", "%{http_code}"])
        .args(args)
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).to_string()
}
