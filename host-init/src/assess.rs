//! Whether a slot on trial really came up, then blessing it, or giving the
//! try up. A slot is good when its data partition is mounted, its disk keys
//! are ready, its API serves and a workspace boots from its template and
//! runs a command; then its UKI loses its boot counter (`slot::bless`). A
//! slot that is not good reboots, so the boot manager counts the try; after
//! its last try the boot manager goes back to the other slot. A blessed
//! slot is never rebooted for failing: there is nothing to go back to.

use crate::control::layout;
use crate::control::runner;
use crate::control::workspace::WorkspaceRecord;
use crate::shutdown::{self, Then};
use crate::slot::Booted;
use crate::status::SCREEN;
use crate::{error, info, warn};
use paddock_agent_client::AgentClient;
use paddock_proto::{ExecRequest, User};
use std::time::Duration;

/// The probe workspace: the control plane's name space leaves it alone
/// (it is not in the state database and gone before anyone could ask).
const PROBE: &str = "slot-probe";
/// Below the demo's and the template snapshots' uids.
const PROBE_UID: u32 = layout::WS_UID_BASE - 3;
/// How long the log and the screen show why, before the reboot.
const BEFORE_REBOOT: Duration = Duration::from_secs(10);

/// What the boot found, for the check.
pub struct Found {
    pub booted: Booted,
    pub esp_dev: Option<String>,
    pub keys_ready: bool,
    pub keys_summary: String,
    pub api_port: Option<u16>,
    pub template_dev: Option<String>,
    /// Tries the boot manager has left for this slot after this one.
    pub tries_left: u32,
    /// Whether the other slot holds an image the boot manager would boot
    /// instead (blessed or on trial with tries left).
    pub fallback: bool,
}

/// Runs the check on its own thread when this boot is a slot on trial.
pub fn start(found: Found) {
    let Some(on_trial) = found.booted.on_trial.clone() else {
        return;
    };
    let spawned = std::thread::Builder::new()
        .name("assess".into())
        .spawn(move || assess(found, on_trial));
    if let Err(e) = spawned {
        error!("the slot check: {e}; the slot is not blessed");
    }
}

fn assess(found: Found, on_trial: String) {
    let slot = found
        .booted
        .slot
        .map(|s| s.to_string())
        .unwrap_or_else(|| "?".into());
    SCREEN.update(|s| s.notes.push(format!("slot {slot} on trial: checking")));
    let checked = check(&found);
    // Workspaces paused for the update's reboot run again once the slot
    // proved itself, or once the box stays up as it is; a slot that fails
    // reboots, and the one the box falls back to resumes them.
    // Counted once, only for a failed check (it writes the count).
    let failed = if checked.is_err() {
        failed_tries(&slot)
    } else {
        0
    };
    let stays = checked.is_ok()
        || failed > paddock_image::slots::TRIES
        || (found.tries_left == 0 && !found.fallback);
    if stays {
        crate::control::service::resume_after_reboot_soon();
    }
    match checked {
        Ok(()) => {
            let Some(esp) = &found.esp_dev else {
                error!("slot {slot} is good but the ESP was not found: not blessed");
                return;
            };
            match crate::storage::with_esp(esp, true, |root| crate::slot::bless(root, &on_trial)) {
                Ok(Ok(name)) => {
                    // The API's view first: whoever reads the log line
                    // next may ask for the slots.
                    let booted = Booted {
                        on_trial: None,
                        ..found.booted.clone()
                    };
                    crate::update::set_booted(booted.clone());
                    crate::slot::refresh(esp, &booted);
                    forget_failed_tries();
                    info!("slot {slot} is good: blessed ({name})");
                    note(format!("slot {slot} blessed"));
                }
                Ok(Err(e)) => error!("slot {slot} is good but blessing it failed: {e}"),
                Err(e) => error!("slot {slot} is good but blessing it failed: {e}"),
            }
        }
        Err(why) if failed > paddock_image::slots::TRIES => {
            // The boot manager should have given up on this slot by now;
            // it did not count (its file could not be renamed?): a reboot
            // would only come back here.
            error!("slot {slot} is not good ({why}) and has failed more tries than it has: staying up as it is");
            note(format!(
                "slot {slot} failed its check ({why}); its tries are not being counted"
            ));
        }
        Err(why) if found.tries_left == 0 && !found.fallback => {
            // Its tries are used up and there is nothing else to boot: a
            // reboot would only come back here.
            error!("slot {slot} is not good ({why}) and there is no other slot to go back to: staying up as it is");
            note(format!(
                "slot {slot} failed its check ({why}); no other slot"
            ));
        }
        Err(why) => {
            error!(
                "slot {slot} on trial is not good ({why}): rebooting in {} s so the boot manager counts the try ({} left)",
                BEFORE_REBOOT.as_secs(),
                found.tries_left
            );
            note(format!("slot {slot} failed its check ({why}); rebooting"));
            std::thread::sleep(BEFORE_REBOOT);
            shutdown::begin(Then::Reboot, "a slot on trial failed its check");
        }
    }
}

/// Failed checks of `slot` on trial, counted on the data partition
/// (this one included), in case the boot manager does not count them.
fn failed_tries(slot: &str) -> u32 {
    let path = std::path::Path::new(crate::storage::DATA_MOUNT).join("state/slot-trial-failures");
    let (last, n) = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| {
            let (s, n) = t.trim().split_once(' ')?;
            Some((s.to_string(), n.parse::<u32>().ok()?))
        })
        .unwrap_or_default();
    let n = if last == slot { n.saturating_add(1) } else { 1 };
    if let Err(e) = std::fs::write(&path, format!("{slot} {n}\n")) {
        warn!("counting the slot's failed tries: {e}");
    }
    n
}

/// A slot blessed, or a new image written to one: the count of failed
/// tries starts again.
pub fn forget_failed_tries() {
    let path = std::path::Path::new(crate::storage::DATA_MOUNT).join("state/slot-trial-failures");
    let _ = std::fs::remove_file(path);
}

fn note(text: String) {
    SCREEN.update(|s| {
        s.notes.retain(|n| !n.starts_with("slot "));
        s.notes.push(text);
    });
}

fn check(found: &Found) -> Result<(), String> {
    if !found.keys_ready {
        return Err(format!("disk keys: {}", found.keys_summary));
    }
    if found.api_port.is_none() {
        return Err("the API is not serving".into());
    }
    let Some(template) = &found.template_dev else {
        return Err("no template partition for this slot".into());
    };
    probe_workspace(template)
}

/// A workspace from this slot's template boots and runs `true`.
fn probe_workspace(template_dev: &str) -> Result<(), String> {
    if !std::path::Path::new("/dev/kvm").exists() {
        return Err("no /dev/kvm: no workspace can start".into());
    }
    let ws = WorkspaceRecord::internal(PROBE, PROBE_UID, 1, 256, 256);
    let started = runner::start(&ws, template_dev).map_err(|e| format!("a workspace: {e}"));
    let result = started.and_then(|_| {
        let client =
            AgentClient::new(layout::vsock_path(PROBE)).with_timeout(Duration::from_secs(120));
        let (status, _, _) = client
            .exec_collect(ExecRequest {
                argv: vec!["true".into()],
                env: Vec::new(),
                cwd: None,
                user: User::Agent,
                stdin: false,
                timeout_ms: Some(60_000),
            })
            .map_err(|e| format!("a workspace's agent: {e}"))?;
        info!("slot check: a workspace booted and ran `true` ({status:?})");
        Ok(())
    });
    if let Err(e) = runner::destroy(PROBE) {
        warn!("slot check: removing the probe workspace: {e}");
    }
    result
}
