//! What the control plane asks of PID 1: the few things only PID 1 can do,
//! because it alone holds them (the reaper, the status screen, the API
//! process and the network services process it supervises, the webhook
//! sender). A hook rather than a dependency: the control plane must not
//! depend on PID 1 (`paddock-init` depends on it), so PID 1 installs its
//! `Host` once at boot, before it opens the control plane.
//!
//! Where nothing is installed (unit tests, tools), `NoHost` stands in: it
//! does what that code did without PID 1 before, which is nothing.

use crate::process::Exit;
use paddock_net_services::broker::Brokered;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

/// What the resolver and the proxy refused one workspace so far.
#[derive(Clone, Copy, Debug, Default)]
pub struct Refused {
    pub lookups: u64,
    pub connections: u64,
}

/// Why an update step was refused, in the API's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpdateRefusal {
    /// Another update is being staged or written.
    Busy(String),
    /// The bundle is not one this box takes (unsigned, another key,
    /// corrupted, older, truncated, malformed): says which.
    Bundle(String),
    /// Too big for the box, or for the room on its data partition.
    TooLarge(String),
    /// The box cannot take updates (not booted by its boot manager).
    Unavailable(String),
    /// Something on the box failed.
    Failed(String),
}

/// What the update's writer reports when it is done (on its own thread).
pub type UpdateDone = Box<dyn FnOnce(Result<paddock_api_types::UpdateStatus, String>) + Send>;

/// PID 1's side of what the control plane decides. Every method has the
/// do-nothing default that `NoHost` uses.
pub trait Host: Send + Sync {
    /// An event just audited, offered to the box's webhook.
    fn audited(&self, _event: &paddock_api_types::AuditEvent) {}

    /// Waits for a process the control plane started (a workspace's jail)
    /// to end. PID 1's reaper collects every exit; a wait of our own
    /// would race it and lose. Without a reaper, the control plane is the
    /// parent and waits itself.
    fn wait_exit(&self, pid: u32) -> Exit {
        use nix::sys::wait::{waitpid, WaitStatus};
        loop {
            match waitpid(nix::unistd::Pid::from_raw(pid as i32), None) {
                Ok(WaitStatus::Exited(_, code)) => return Exit::Code(code),
                Ok(WaitStatus::Signaled(_, sig, _)) => return Exit::Signal(sig as i32),
                Ok(_) => continue,
                Err(_) => return Exit::Code(-1),
            }
        }
    }

    /// How many workspaces run, for the status screen.
    fn show_workspaces(&self, _running: u32) {}

    /// The disk keys' state after a recovery, for the status screen.
    fn show_keys(&self, _summary: &str) {}

    /// A new TLS identity for the API: written under `state_dir`, handed
    /// to the API process for its next start and shown on the status
    /// screen. Returns its SHA-256 fingerprint.
    fn rotate_tls(&self, _state_dir: &Path) -> Result<String, String> {
        Err("no API process to give a new identity".into())
    }

    /// The image slots as the boot manager holds them.
    fn slots(&self) -> Vec<paddock_api_types::SlotInfo> {
        Vec::new()
    }

    /// A file to stage an update bundle of `bytes` in.
    fn stage_update(&self, _bytes: u64) -> Result<std::fs::File, UpdateRefusal> {
        Err(UpdateRefusal::Unavailable(
            "no PID 1 to take updates".into(),
        ))
    }

    /// Verifies the staged bundle (all of it, before anything is written)
    /// and starts writing it to the slot this boot does not run; `done`
    /// hears how the writing ended.
    fn apply_update(
        &self,
        _reboot_at: Option<u64>,
        _force: bool,
        _done: UpdateDone,
    ) -> Result<paddock_api_types::UpdateStatus, UpdateRefusal> {
        Err(UpdateRefusal::Unavailable(
            "no PID 1 to take updates".into(),
        ))
    }

    /// Drops a staged bundle that did not arrive whole.
    fn abandon_update(&self) {}

    /// The update being written or waiting for its reboot.
    fn update_status(&self) -> Option<paddock_api_types::UpdateStatus> {
        None
    }

    /// SHA-256 of the certificate the API serves, colon-separated hex.
    fn tls_fingerprint(&self) -> Option<String> {
        None
    }

    /// Restarts the API process after `delay` (with its new identity).
    fn restart_api_soon(&self, _delay: Duration) {}

    /// Gathers what the network services process has counted so far.
    fn flush_net_services(&self) {}

    /// What the resolver and the proxy refused workspace `id`.
    fn refused(&self, _id: &str) -> Refused {
        Refused::default()
    }

    /// Workspace `id` is gone: its counts go, here and in the process.
    fn forget_workspace(&self, _id: &str) {}

    /// Makes `secrets` workspace `id`'s brokered secrets (empty: none) and
    /// returns once the network services process has them.
    fn set_secrets(&self, _id: &str, _secrets: Vec<Brokered>) -> Result<(), String> {
        Ok(())
    }

    /// Workspace `id` has no brokered secrets any more.
    fn clear_secrets(&self, _id: &str) {}

    /// How often the network services process was started again.
    fn net_services_restarts(&self) -> u64 {
        0
    }

    /// SIGKILLs the network services process; its pid, if one ran. For
    /// the test suite's probe of its restart.
    #[cfg(feature = "test-probes")]
    fn kill_net_services(&self) -> Option<u32> {
        None
    }
}

/// The stand-in where no PID 1 installed itself.
pub struct NoHost;

impl Host for NoHost {}

static HOST: OnceLock<Box<dyn Host>> = OnceLock::new();

/// Installs PID 1's hooks (once; a later call changes nothing).
pub fn install(host: Box<dyn Host>) {
    let _ = HOST.set(host);
}

/// The installed hooks, or `NoHost`.
pub fn get() -> &'static dyn Host {
    match HOST.get() {
        Some(h) => h.as_ref(),
        None => &NoHost,
    }
}
