//! The control plane's own upkeep, outside any call: what a reboot left
//! (workspaces that ran are lost), the samplers, and the TTL's expiry.

use super::*;

impl Control {
    /// After a host reboot nothing is running: whatever was is lost, and
    /// its disk is removed rather than left behind.
    pub fn recover_after_boot(&self) {
        let Ok(all) = self.store.list::<WorkspaceRecord>(WORKSPACES) else {
            return;
        };
        // A directory no record names (the power went between the two) is
        // removed too: nothing on the data partition outlives its record.
        if let Ok(dirs) = std::fs::read_dir(layout::WORKSPACES_DIR) {
            for d in dirs.flatten() {
                let name = d.file_name().to_string_lossy().to_string();
                // The demo workspace is not in the database; it manages its own.
                if name != crate::layout::DEMO_NAME && !all.iter().any(|w| w.id == name) {
                    let _ = runner::destroy(&name);
                    info!("removed workspace data {name} that no record names");
                }
            }
        }
        self.drop_all_links();
        for mut ws in all {
            if matches!(ws.state, WsState::Running | WsState::Starting) {
                let _ = runner::destroy(&ws.id);
                ws.state = WsState::Lost;
                let _ = self.store.put(WORKSPACES, &ws.id, &ws);
                self.audit.record("workspace_lost", json!({"workspace": ws.id, "reason": "the host restarted while it ran; its disk was removed"}));
                info!(
                    "workspace {} was running before the restart: marked lost, disk removed",
                    ws.id
                );
            }
        }
    }

    /// Samples every running workspace's figures every few seconds; runs
    /// forever.
    pub fn sample_loop(self: Arc<Self>) {
        loop {
            self.host_samples.take(now_s());
            if let Ok(all) = self.store.list::<WorkspaceRecord>(WORKSPACES) {
                let now = now_s();
                self.samples.take(&all, now);
                self.watch_signals(&all, now);
                self.expire_approvals(now);
                self.forget_history(&all);
            }
            std::thread::sleep(Duration::from_secs(crate::samples::EVERY_S));
        }
    }

    /// Destroys workspaces whose TTL passed; runs forever.
    pub fn expire_loop(self: Arc<Self>) {
        loop {
            std::thread::sleep(Duration::from_millis(500));
            self.expire_due(now_s(), runner::destroy);
        }
    }

    /// Destroys (with `destroy`) the workspaces whose TTL passed by `now`,
    /// except those whose last failed attempt asks to wait.
    pub(super) fn expire_due(
        &self,
        now: u64,
        destroy: impl Fn(&str) -> Result<(), run_error::RunError>,
    ) {
        let Ok(all) = self.store.list::<WorkspaceRecord>(WORKSPACES) else {
            return;
        };
        for ws in all.into_iter().filter(|w| {
            w.expires_at <= now && !matches!(w.state, WsState::Starting | WsState::Quarantined)
        }) {
            // Not while a pause, resume or other end of it is under way;
            // claimed for the destroy, so none starts meanwhile.
            let Ok(_claim) = self.mark_busy(&ws.id, pause_calls::Busy::Ending) else {
                continue;
            };
            if self
                .expiry_retry
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&ws.id)
                .is_some_and(|t| *t > now)
            {
                continue;
            }
            if let Err(e) = destroy(&ws.id) {
                // The record stays: it is what names the disk and key
                // still to erase, and what lets an admin see and retry.
                let first = self
                    .expiry_retry
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(ws.id.clone(), now + EXPIRY_RETRY_S)
                    .is_none();
                if first {
                    self.audit.record(
                        "workspace_expiry_failed",
                        json!({"workspace": ws.id, "reason": e.to_string(), "retry_every_s": EXPIRY_RETRY_S}),
                    );
                }
                warn!(
                    "expiring {}: {e}; its record stays and it is retried",
                    ws.id
                );
                continue;
            }
            self.expiry_retry
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&ws.id);
            // Written before the record goes, so whoever sees it gone
            // finds the reason already in the log.
            self.audit.record(
                "workspace_expired",
                json!({"workspace": ws.id, "owner": ws.owner, "ttl_ended_at": ws.expires_at}),
            );
            let _ = self.store.delete(WORKSPACES, &ws.id);
            self.drop_links_of(&ws.id);
            info!("workspace {} expired (TTL) and was destroyed", ws.id);
        }
    }
}
