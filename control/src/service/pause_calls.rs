//! `POST /v1/workspaces/{id}/pause` and `/resume`: a workspace's VM kept
//! on the data partition, encrypted under its key (pausing.rs), with its
//! TTL standing still and a paused TTL of its own; then started again
//! where it was, also after the host restarts.

use super::{error, mem_total_mib, reply, store_err, ttl, Control, Outcome, HOST_RESERVE_MIB};
use crate::audit::now_s;
use crate::pausing;
use crate::runner;
use crate::store::WORKSPACES;
use crate::tokens::{Scope, TokenRecord};
use crate::workspace::{PausedAt, WorkspaceRecord, WsState, MAX_TTL_S};
use log::info;
use paddock_api_channel::Verdict;
use serde_json::json;
use std::time::Instant;

/// How long a workspace stays paused when the request does not say.
pub const DEFAULT_PAUSED_TTL_S: u64 = 24 * 3600;

/// What is under way on a workspace that no other lifecycle call may
/// overlap (a stop or delete in the middle of a pause would race the VMM
/// writing its snapshot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Busy {
    Pausing,
    Resuming,
    /// A stop, delete, expiry or signal's stop.
    Ending,
    Quarantining,
}

/// Marks a workspace busy until dropped.
pub(crate) struct BusyGuard<'a> {
    control: &'a Control,
    id: String,
}

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        self.control.busy_map().remove(&self.id);
    }
}

impl Control {
    fn busy_map(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Busy>> {
        self.busy.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What is under way on `id`, if anything.
    pub(crate) fn busy_with(&self, id: &str) -> Option<Busy> {
        self.busy_map().get(id).copied()
    }

    /// Claims `id` for a lifecycle call (pause, resume, stop, delete,
    /// expiry, quarantine) until the guard drops; refused while another
    /// holds it, so no two of them overlap on one workspace.
    pub(super) fn mark_busy(&self, id: &str, what: Busy) -> Result<BusyGuard<'_>, Outcome> {
        let mut map = self.busy_map();
        if let Some(b) = map.get(id) {
            return Err(error(
                Verdict::Conflict,
                format!(
                    "workspace {id} is {}; try again when that is done",
                    busy_word(*b)
                ),
            ));
        }
        map.insert(id.to_string(), what);
        Ok(BusyGuard {
            control: self,
            id: id.to_string(),
        })
    }

    pub(super) fn fresh(&self, id: &str) -> Result<WorkspaceRecord, Outcome> {
        self.store
            .get::<WorkspaceRecord>(WORKSPACES, id)
            .map_err(store_err)?
            .ok_or_else(|| error(Verdict::NotFound, format!("no workspace {id}")))
    }

    pub(super) fn pause_workspace(
        &self,
        tok: &TokenRecord,
        id: &str,
        ttl_s: Option<u64>,
        what: &str,
    ) -> Result<Outcome, Outcome> {
        // Pausing ends its running, like a stop: the delete scope.
        let seen = self.workspace(tok, id, Scope::Delete, what)?;
        self.quarantine_is_admins(tok, &seen, what)?;
        let paused_ttl = ttl_s.unwrap_or_else(|| {
            DEFAULT_PAUSED_TTL_S.min(tok.quotas.max_ttl_s.unwrap_or(DEFAULT_PAUSED_TTL_S))
        });
        if !(1..=MAX_TTL_S).contains(&paused_ttl) {
            return Err(error(
                Verdict::Invalid,
                format!("ttl_s: {paused_ttl} is not 1 to {MAX_TTL_S} (the server maximum)"),
            ));
        }
        if let Some(why) = ttl::past_quota(tok, paused_ttl) {
            return Err(self.refuse(Verdict::Forbidden, &why, Some(&tok.id), what));
        }
        self.pause_now(&seen.id, paused_ttl, Some(&tok.id), what, false)
    }

    /// Pauses `id` for `by` (a token's id; None: the box itself): the
    /// part of a pause after the asker's checks. `for_reboot`: the box
    /// pauses it for its reboot, and resumes it once up again.
    pub(super) fn pause_now(
        &self,
        id: &str,
        paused_ttl: u64,
        by: Option<&str>,
        what: &str,
        for_reboot: bool,
    ) -> Result<Outcome, Outcome> {
        let _busy = self.mark_busy(id, Busy::Pausing)?;
        let ws = self.fresh(id)?;
        if ws.state != WsState::Running {
            return Err(error(
                Verdict::Conflict,
                format!(
                    "workspace {} is {}; only a running workspace can be paused",
                    ws.id,
                    state_word(ws.state)
                ),
            ));
        }
        // Its memory goes to the data partition: room for all of it, and
        // for every other pause under way (reserved while they write).
        {
            let _g = self.admission.lock().unwrap_or_else(|e| e.into_inner());
            let all = self
                .store
                .list::<WorkspaceRecord>(WORKSPACES)
                .map_err(store_err)?;
            let need = self.pausing_mib(&all);
            if let Err(why) = crate::space::Partition::now(&all).admits(need, true) {
                return Err(self.refuse(
                    Verdict::Conflict,
                    &format!("capacity: its {} MiB of memory: {why}", ws.memory_mib),
                    by,
                    what,
                ));
            }
        }
        let started = Instant::now();
        let stored = pausing::pause(&ws).map_err(|e| {
            error(
                Verdict::Unavailable,
                format!("workspace {} was not paused (it runs on): {e}", ws.id),
            )
        })?;
        runner::stop(&ws.id);
        let now = now_s();
        // Its TTL as it is now (a TTL change during the pause counts), and
        // only if nothing else changed its state meanwhile.
        let updated = self
            .store
            .update(WORKSPACES, &ws.id, |w: &mut WorkspaceRecord| {
                if w.state != WsState::Running {
                    return Err(format!(
                        "workspace {} became {} during the pause",
                        w.id,
                        state_word(w.state)
                    ));
                }
                w.state = WsState::Paused;
                w.paused = Some(PausedAt {
                    at: now,
                    ttl_left_s: w.expires_at.saturating_sub(now).max(1),
                    for_reboot,
                });
                w.expires_at = now + paused_ttl;
                Ok(())
            })
            .map_err(store_err)?;
        let ws = match updated {
            Some(Ok(ws)) => ws,
            other => {
                pausing::discard(&ws.id);
                let why = match other {
                    Some(Err(why)) => why,
                    _ => format!("workspace {id} is gone"),
                };
                return Err(error(Verdict::Conflict, why));
            }
        };
        let paused = ws.paused.unwrap_or(PausedAt {
            at: now,
            ttl_left_s: 1,
            for_reboot,
        });
        let ms = started.elapsed().as_millis() as u64;
        self.audit.record(
            "workspace_paused",
            json!({"workspace": ws.id, "token": by, "stored_bytes": stored, "paused_ttl_s": paused_ttl, "resume_ttl_s": paused.ttl_left_s, "ms": ms, "for_reboot": for_reboot}),
        );
        crate::metrics::count_pause(ms);
        info!(
            "workspace {} paused in {ms} ms ({} MiB kept)",
            ws.id,
            stored >> 20
        );
        Ok(reply(Verdict::Ok, ws.public()))
    }

    pub(super) fn resume_workspace(
        &self,
        tok: &TokenRecord,
        id: &str,
        what: &str,
    ) -> Result<Outcome, Outcome> {
        let seen = self.workspace(tok, id, Scope::Create, what)?;
        self.quarantine_is_admins(tok, &seen, what)?;
        let _busy = self.mark_busy(&seen.id, Busy::Resuming)?;
        let ws = self.fresh(&seen.id)?;
        let Some(paused) = ws.paused.filter(|_| ws.state == WsState::Paused) else {
            return Err(error(
                Verdict::Conflict,
                format!(
                    "workspace {} is {}; only a paused workspace can be resumed",
                    ws.id,
                    state_word(ws.state)
                ),
            ));
        };
        let Some(template_dev) = self.template_dev.clone() else {
            return Err(error(
                Verdict::Unavailable,
                "this image has no template partition",
            ));
        };
        self.admit_resume(tok, &ws, what)?;
        self.resume_now(ws, paused, &template_dev, Some(&tok.id))
    }

    /// Resumes `ws` (paused as `paused`) for `by` (a token's id; None:
    /// the box itself): the part of a resume after the asker's checks and
    /// the admission.
    pub(super) fn resume_now(
        &self,
        ws: WorkspaceRecord,
        paused: PausedAt,
        template_dev: &str,
        by: Option<&str>,
    ) -> Result<Outcome, Outcome> {
        let id = ws.id.clone();
        if let Err(e) = paddock_keys::store().and_then(|s| s.check_ready()) {
            return Err(error(Verdict::Unavailable, e.to_string()));
        }
        // Its secrets reach the proxy before its first command can run.
        self.push_secrets(&ws)?;
        let started = Instant::now();
        let pid = pausing::resume(&ws, template_dev).map_err(|e| {
            crate::host::get().clear_secrets(&ws.id);
            error(
                Verdict::Unavailable,
                format!("workspace {} was not resumed (it stays paused): {e}", ws.id),
            )
        })?;
        let now = now_s();
        let updated = self
            .store
            .update(WORKSPACES, &ws.id, |w: &mut WorkspaceRecord| {
                if w.state != WsState::Paused {
                    return Err(format!(
                        "workspace {} became {} during the resume",
                        w.id,
                        state_word(w.state)
                    ));
                }
                w.state = WsState::Running;
                w.paused = None;
                w.expires_at = now + paused.ttl_left_s;
                Ok(())
            })
            .map_err(store_err);
        let ws = match updated {
            Ok(Some(Ok(ws))) => ws,
            other => {
                // Nothing may run that no record accounts for.
                runner::stop(&ws.id);
                crate::host::get().clear_secrets(&ws.id);
                return Err(match other {
                    Ok(Some(Err(why))) => error(Verdict::Conflict, why),
                    Err(e) => e,
                    _ => error(Verdict::NotFound, format!("no workspace {id}")),
                });
            }
        };
        let ms = started.elapsed().as_millis() as u64;
        self.audit.record(
            "workspace_resumed",
            json!({"workspace": ws.id, "token": by, "paused_s": now.saturating_sub(paused.at), "ms": ms, "after_reboot": paused.for_reboot}),
        );
        crate::metrics::count_resume(ms);
        info!("workspace {} resumed in {ms} ms (pid {pid})", ws.id);
        Ok(reply(Verdict::Ok, ws.public()))
    }

    /// A resumed workspace runs again: the token's quotas and the box's
    /// memory must have room for it, as at create.
    fn admit_resume(
        &self,
        tok: &TokenRecord,
        ws: &WorkspaceRecord,
        what: &str,
    ) -> Result<(), Outcome> {
        let _g = self.admission.lock().unwrap_or_else(|e| e.into_inner());
        let all = self
            .store
            .list::<WorkspaceRecord>(WORKSPACES)
            .map_err(store_err)?;
        let others: Vec<WorkspaceRecord> = self
            .as_admitted(all)
            .into_iter()
            .filter(|w| w.id != ws.id)
            .collect();
        // Its owner's quotas (a parent resuming a child's workspace does
        // not skip the child's), and the resumer's.
        {
            let tree = self.tree();
            let owner = tree.get(&ws.owner).cloned();
            for t in owner.iter().chain(std::iter::once(tok)) {
                if let Some(why) =
                    tree.quota_problem(t, &others, ws.vcpus, ws.memory_mib, ws.disk_mib)
                {
                    drop(tree);
                    return Err(self.refuse(Verdict::Conflict, &why, Some(&tok.id), what));
                }
            }
        }
        let used = self.live_memory_mib(&others);
        let cap = mem_total_mib().saturating_sub(HOST_RESERVE_MIB);
        if used + ws.memory_mib + crate::limits::VMM_OVERHEAD_MIB > cap {
            return Err(self.refuse(
                Verdict::Conflict,
                &format!(
                    "capacity: it needs {} MiB of memory, {} MiB are free for workspaces",
                    ws.memory_mib,
                    cap.saturating_sub(used)
                ),
                Some(&tok.id),
                what,
            ));
        }
        Ok(())
    }

    /// `all` as the quota and capacity checks must see it: a workspace
    /// being resumed holds its resources already (it is still `paused` in
    /// its record until it runs).
    pub(super) fn as_admitted(&self, all: Vec<WorkspaceRecord>) -> Vec<WorkspaceRecord> {
        all.into_iter()
            .map(|mut w| {
                if self.busy_with(&w.id) == Some(Busy::Resuming) {
                    w.state = WsState::Starting;
                }
                w
            })
            .collect()
    }

    /// The data partition space the pauses under way may write (each
    /// one's memory), reserved until their records say paused.
    pub(super) fn pausing_mib(&self, all: &[WorkspaceRecord]) -> u64 {
        all.iter()
            .filter(|w| self.busy_with(&w.id) == Some(Busy::Pausing))
            .map(|w| w.memory_mib)
            .sum()
    }

    /// The memory the running, starting and resuming workspaces of `all`
    /// hold, with each VMM's own.
    pub(super) fn live_memory_mib(&self, all: &[WorkspaceRecord]) -> u64 {
        all.iter()
            .filter(|w| {
                matches!(w.state, WsState::Running | WsState::Starting)
                    || self.busy_with(&w.id) == Some(Busy::Resuming)
            })
            .map(|w| w.memory_mib + crate::limits::VMM_OVERHEAD_MIB)
            .sum()
    }
}

fn busy_word(b: Busy) -> &'static str {
    match b {
        Busy::Pausing => "being paused",
        Busy::Resuming => "being resumed",
        Busy::Ending => "being stopped or deleted",
        Busy::Quarantining => "being quarantined",
    }
}

fn state_word(s: WsState) -> &'static str {
    match s {
        WsState::Starting => "starting",
        WsState::Running => "running",
        WsState::Stopped => "stopped",
        WsState::Lost => "lost",
        WsState::Quarantined => "quarantined",
        WsState::Paused => "paused",
    }
}
