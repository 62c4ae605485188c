//! PID 1's side of the control plane's hooks (`paddock_control::host`):
//! the few things the control plane decides but only PID 1 can do, because
//! it alone holds them: its reaper, its status screen, the API process and
//! the network services process it supervises, the webhook. Installed at
//! boot, before the control plane opens.

use crate::children::{Exit, CHILDREN};
use crate::status::SCREEN;
use paddock_control::host::{Host, Refused, UpdateDone, UpdateRefusal};
use paddock_net_services::broker::Brokered;
use std::path::Path;
use std::time::Duration;

struct Pid1;

impl Host for Pid1 {
    fn audited(&self, event: &paddock_api_types::AuditEvent) {
        crate::notify::offer(event);
    }

    fn wait_exit(&self, pid: u32) -> Exit {
        CHILDREN.wait(pid, None).unwrap_or(Exit::Code(-1))
    }

    fn show_workspaces(&self, running: u32) {
        SCREEN.update(|s| s.workspaces = running);
    }

    fn show_keys(&self, summary: &str) {
        SCREEN.update(|s| s.keys = Some(summary.to_string()));
    }

    fn rotate_tls(&self, state_dir: &Path) -> Result<String, String> {
        let id = crate::tls::rotate(state_dir).map_err(|e| e.to_string())?;
        crate::api::supervisor::replace_identity(&id.cert_pem, &id.key_pem);
        SCREEN.update(|s| s.fingerprint = Some(id.fingerprint.clone()));
        Ok(id.fingerprint)
    }

    fn stage_update(&self, bytes: u64) -> Result<std::fs::File, UpdateRefusal> {
        crate::update::stage(bytes)
    }

    fn apply_update(
        &self,
        reboot_at: Option<u64>,
        force: bool,
        done: UpdateDone,
    ) -> Result<paddock_api_types::UpdateStatus, UpdateRefusal> {
        crate::update::apply(reboot_at, force, done)
    }

    fn abandon_update(&self) {
        crate::update::abandon()
    }

    fn update_status(&self) -> Option<paddock_api_types::UpdateStatus> {
        crate::update::status()
    }

    fn slots(&self) -> Vec<paddock_api_types::SlotInfo> {
        crate::slot::slots()
    }

    fn tls_fingerprint(&self) -> Option<String> {
        crate::api::supervisor::served_fingerprint()
    }

    fn restart_api_soon(&self, delay: Duration) {
        crate::api::supervisor::restart_soon(delay);
    }

    fn flush_net_services(&self) {
        crate::net_services::flush();
    }

    fn refused(&self, id: &str) -> Refused {
        Refused {
            lookups: crate::net_services::refused_lookups(id),
            connections: crate::net_services::refused_connections(id),
        }
    }

    fn forget_workspace(&self, id: &str) {
        crate::net_services::forget(id);
    }

    fn set_secrets(&self, id: &str, secrets: Vec<Brokered>) -> Result<(), String> {
        crate::net_services::secrets::set(id, secrets).map_err(|e| e.to_string())
    }

    fn clear_secrets(&self, id: &str) {
        crate::net_services::secrets::clear(id);
    }

    fn net_services_restarts(&self) -> u64 {
        crate::net_services::supervisor::restarts()
    }

    #[cfg(feature = "test-probes")]
    fn kill_net_services(&self) -> Option<u32> {
        crate::net_services::supervisor::kill_running()
    }
}

/// Installs PID 1's hooks (once): at boot, and in tests that serve the
/// API process from a control plane of their own, as PID 1 would.
pub fn install() {
    paddock_control::host::install(Box::new(Pid1));
}
