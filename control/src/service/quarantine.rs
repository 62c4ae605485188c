//! Quarantine: a running workspace frozen, cut off, its scoped tokens
//! revoked and a forensic snapshot taken where the data partition has room.

use super::{error, reply, store_err, Control, Outcome};
use crate::audit::now_s;
use crate::store::WORKSPACES;
use crate::tokens::TokenRecord;
use crate::workspace::{WorkspaceRecord, WsState};
use crate::{forensics, layout, space};
use log::warn;
use paddock_api_channel::Verdict;
use serde_json::json;

impl Control {
    /// Quarantine (docs/runbook.md): freeze it below the guest, so it runs
    /// nothing more; refuse every way in (exec and files need a running
    /// workspace; it has no network yet); revoke the tokens scoped to it;
    /// take the forensic snapshot. The VMM stays frozen, memory and all,
    /// until an admin stops or deletes the workspace.
    /// `by`: the token that asked, or the signal that fired.
    pub(super) fn quarantine(&self, by: &str, ws: WorkspaceRecord) -> Result<Outcome, Outcome> {
        // Not in the middle of a pause (which would end the VM the
        // quarantine freezes) or another end of it.
        let _claim = self.mark_busy(&ws.id, super::pause_calls::Busy::Quarantining)?;
        // As it is now, not as the caller read it.
        let mut ws = self
            .store
            .get::<WorkspaceRecord>(WORKSPACES, &ws.id)
            .map_err(store_err)?
            .unwrap_or(ws);
        if ws.state != WsState::Running {
            return Err(error(
                Verdict::Conflict,
                format!(
                    "workspace {} is {:?}; only a running workspace can be quarantined",
                    ws.id, ws.state
                ),
            ));
        }
        let jail = crate::workspaces::pid(&ws.id).ok_or_else(|| {
            error(
                Verdict::Conflict,
                format!("the VMM of {} is not running", ws.id),
            )
        })?;
        forensics::freeze(&layout::cgroup_dir(&ws.id))
            .map_err(|e| error(Verdict::Failed, e.to_string()))?;
        // Cut its network: without its entry, its tap reaches nothing (not
        // even the resolver) and its open proxied connections find no policy.
        if let Err(e) = paddock_net::firewall::remove(&ws.id) {
            warn!("quarantine of {}: removing its network: {e}", ws.id);
        }
        ws.state = WsState::Quarantined;
        self.store.put(WORKSPACES, &ws.id, &ws).map_err(store_err)?;
        let mut revoked = Vec::new();
        let tokens: Vec<TokenRecord> = self.tree().all().cloned().collect();
        for mut t in tokens {
            let scoped = t
                .workspace_ids
                .as_ref()
                .is_some_and(|ids| ids.contains(&ws.id));
            if scoped && !t.revoked {
                t.revoked = true;
                self.save_token(&t)?;
                self.audit.record(
                    "token_revoked",
                    json!({"token": t.id, "by": by, "reason": "quarantine", "workspace": ws.id}),
                );
                revoked.push(t.id);
            }
        }
        self.audit.record(
            "workspace_quarantined",
            json!({"workspace": ws.id, "token": by, "revoked_tokens": revoked}),
        );
        warn!("workspace {} quarantined by {}", ws.id, by);
        let vmm = forensics::vmm_pid(jail).ok_or_else(|| {
            error(
                Verdict::Failed,
                format!("the VMM of {} was not found", ws.id),
            )
        })?;
        // The snapshot is evidence, not a right to the partition: it is
        // taken only where it fits beside what workspaces were promised,
        // or a quarantine (by any holder of the scope) could fill the disk
        // under everyone else. The workspace stays frozen either way.
        let all = self
            .store
            .list::<WorkspaceRecord>(WORKSPACES)
            .map_err(store_err)?;
        if let Err(why) = space::Partition::now(&all).admits(space::snapshot_mib(&ws), true) {
            self.audit.record(
                "forensics_skipped",
                json!({"workspace": ws.id, "token": by, "reason": why}),
            );
            return Err(error(
                Verdict::NoSpace,
                format!("the workspace is frozen and its tokens revoked, but there is no room for its forensic snapshot: {why}"),
            ));
        }
        let trail = self
            .audit
            .read(&[("workspace".to_string(), ws.id.clone())], 100_000);
        let network = crate::netlog::read(&ws.id, 0, None, usize::MAX);
        let manifest =
            forensics::snapshot(&ws, vmm, &trail, &network, now_s(), by).map_err(|e| {
                error(
                    Verdict::Failed,
                    format!(
                    "the workspace is frozen and its tokens revoked, but the snapshot failed: {e}"
                ),
                )
            })?;
        self.audit.record(
            "forensics_taken",
            json!({"workspace": ws.id, "token": by, "files": manifest.files}),
        );
        Ok(reply(
            Verdict::Ok,
            paddock_api_types::Quarantined {
                workspace: ws.public(),
                revoked_tokens: revoked,
                snapshot: manifest,
            },
        ))
    }
}
