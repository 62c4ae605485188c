//! Shared by host-init's integration tests.

// Each test binary compiles this module and uses only some of it.
#![allow(dead_code)]

pub mod fake_api;
pub mod real_api;

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
            verdict: paddock_api_server::http::verdict_of(status).expect("a status the fake uses"),
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

/// Writes `body` as an executable Python program `dir/name` (a stand-in
/// for a confined role that misbehaves on demand). Its `#!` line names the
/// python3 on this process's PATH by absolute path: roles start with an
/// empty environment, so `#!/usr/bin/env` would not find one outside
/// /usr/bin (pyenv).
pub fn python_program(dir: &std::path::Path, name: &str, body: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let python3 = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("python3"))
        .find(|p| p.is_file())
        .expect("python3 on PATH (scripts/install-deps.sh)");
    let exe = dir.join(name);
    std::fs::write(&exe, format!("#!{}\n{body}", python3.display())).expect("write program");
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    exe
}

/// Whether `pid` runs (not a zombie, not gone).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, r)| r.starts_with('Z')))
        == Some(false)
}
