//! Running workspaces across the box's own reboot for an update: paused
//! before it (memory and devices to the data partition, encrypted under
//! each one's key, as any pause), resumed once the box is up again and its
//! slot proved itself (docs/updates.md). One that cannot be paused in time
//! is stopped as at any reboot, and is lost.

use super::{error, mem_total_mib, Control, Outcome, HOST_RESERVE_MIB};
use crate::store::WORKSPACES;
use crate::workspace::{WorkspaceRecord, WsState};
use log::{info, warn};
use paddock_api_channel::Verdict;
use serde_json::json;
use std::time::{Duration, Instant};

/// How long a workspace paused for a reboot waits for the box to come
/// back before it is deleted: the paused TTL any pause has by default.
const REBOOT_PAUSED_TTL_S: u64 = super::pause_calls::DEFAULT_PAUSED_TTL_S;
/// How long the resume waits for the key store after boot.
const KEYS_WAIT: Duration = Duration::from_secs(600);

impl Control {
    /// Pauses every running workspace for the box's reboot, one after the
    /// other, while `budget` lasts; answers how many were paused and how
    /// many were not (those are stopped with the rest).
    pub fn pause_all_for_reboot(&self, budget: Duration) -> (usize, usize) {
        let started = Instant::now();
        let mut running: Vec<WorkspaceRecord> = match self.store.list::<WorkspaceRecord>(WORKSPACES)
        {
            Ok(all) => all
                .into_iter()
                .filter(|w| w.state == WsState::Running)
                .collect(),
            Err(e) => {
                warn!("reboot: the workspaces are not paused (state database: {e})");
                return (0, 0);
            }
        };
        // Smallest first: one tenant's big workspaces cannot spend the
        // budget before everyone else's small ones are kept.
        running.sort_by_key(|w| (w.memory_mib, w.created_at));
        let mut paused = 0;
        for ws in &running {
            if started.elapsed() >= budget {
                warn!(
                    "reboot: {} s spent pausing; workspace {} is stopped instead",
                    budget.as_secs(),
                    ws.id
                );
                continue;
            }
            match self.pause_now(&ws.id, REBOOT_PAUSED_TTL_S, None, "pause_for_reboot", true) {
                Ok(_) => paused += 1,
                Err(o) => warn!(
                    "reboot: workspace {} was not paused ({}); it is stopped",
                    ws.id, o.reply.body
                ),
            }
        }
        (paused, running.len() - paused)
    }

    /// Resumes every workspace the box paused for its reboot. One that
    /// does not resume stays paused, for its owner to resume or delete.
    pub fn resume_after_reboot(&self) {
        let Ok(all) = self.store.list::<WorkspaceRecord>(WORKSPACES) else {
            return;
        };
        for ws in all {
            if ws.state != WsState::Paused || !ws.paused.is_some_and(|p| p.for_reboot) {
                continue;
            }
            let id = ws.id.clone();
            match self.resume_for_box(&id) {
                Ok(_) => info!("workspace {id} resumed after the reboot"),
                // Its owner got there first (a resume, a delete): theirs.
                Err(o) if o.reply.verdict == Verdict::Conflict && self.busy_with(&id).is_some() => {
                    info!("workspace {id}: its owner is at it; not resumed by the box");
                }
                Err(o) => {
                    let reason = o.reply.body.get("error").cloned().unwrap_or_default();
                    warn!("workspace {id} was not resumed after the reboot: {reason}; it stays paused");
                    self.audit.record(
                        "workspace_resume_failed",
                        json!({"workspace": id, "reason": reason}),
                    );
                    // Its owner decides now; the next boot does not retry.
                    let _ = self
                        .store
                        .update(WORKSPACES, &id, |w: &mut WorkspaceRecord| {
                            if let Some(p) = w.paused.as_mut() {
                                p.for_reboot = false;
                            }
                            Ok::<(), ()>(())
                        });
                }
            }
        }
    }

    /// A resume the box asks for: no token's quotas (its owner's held it
    /// before the reboot), only the box's memory.
    fn resume_for_box(&self, id: &str) -> Result<Outcome, Outcome> {
        let _busy = self.mark_busy(id, super::pause_calls::Busy::Resuming)?;
        let ws = self.fresh(id)?;
        let Some(paused) = ws
            .paused
            .filter(|p| ws.state == WsState::Paused && p.for_reboot)
        else {
            return Err(error(Verdict::Conflict, "no longer paused for the reboot"));
        };
        let Some(template_dev) = self.template_dev.clone() else {
            return Err(error(
                Verdict::Unavailable,
                "this image has no template partition",
            ));
        };
        {
            let _g = self.admission.lock().unwrap_or_else(|e| e.into_inner());
            let all = self
                .store
                .list::<WorkspaceRecord>(WORKSPACES)
                .map_err(super::store_err)?;
            let others: Vec<WorkspaceRecord> = self
                .as_admitted(all)
                .into_iter()
                .filter(|w| w.id != ws.id)
                .collect();
            // Its owner's quotas, as at any resume: creates made while it
            // waited count.
            {
                let tree = self.tree();
                let chain = tree.get(&ws.owner).cloned();
                if let Some(why) = chain.and_then(|t| {
                    tree.quota_problem(&t, &others, ws.vcpus, ws.memory_mib, ws.disk_mib)
                }) {
                    return Err(error(Verdict::Forbidden, why));
                }
            }
            let used = self.live_memory_mib(&others);
            let cap = mem_total_mib().saturating_sub(HOST_RESERVE_MIB);
            if used + ws.memory_mib + crate::limits::VMM_OVERHEAD_MIB > cap {
                return Err(error(
                    Verdict::Conflict,
                    format!(
                        "capacity: it needs {} MiB of memory, {} MiB are free for workspaces",
                        ws.memory_mib,
                        cap.saturating_sub(used)
                    ),
                ));
            }
        }
        self.resume_now(ws, paused, &template_dev, None)
    }
}

/// Resumes the workspaces paused for the reboot once the key store is
/// ready, on a thread of its own (a few seconds each).
pub fn resume_after_reboot_soon() {
    let spawned = std::thread::Builder::new().name("resume".into()).spawn(|| {
        let Some(c) = super::instance() else {
            return;
        };
        let until = Instant::now() + KEYS_WAIT;
        while paddock_keys::store().and_then(|s| s.check_ready()).is_err() {
            if Instant::now() > until {
                warn!("the key store is not ready: workspaces paused for the reboot stay paused");
                return;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        c.resume_after_reboot();
    });
    if let Err(e) = spawned {
        warn!("resuming the workspaces paused for the reboot: {e}");
    }
}
