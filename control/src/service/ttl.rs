//! A running workspace's end moved (`POST /v1/workspaces/{id}/ttl`): sooner
//! takes the delete scope, later than the token's `max_ttl_s` quota is a
//! yellow action its policy decides (asked.rs).

use super::asked::Gate;
use super::{error, reply, store_err, Control, Outcome};
use crate::audit::now_s;
use crate::store::WORKSPACES;
use crate::tokens::{Scope, TokenRecord, Yellow};
use crate::workspace::{WorkspaceRecord, WsState, MAX_TTL_S};
use paddock_api_channel::Verdict;
use paddock_api_types::ApprovalAction;
use serde_json::json;

/// Why a TTL is past what this token may give on its own, if it is.
pub(super) fn past_quota(tok: &TokenRecord, ttl_s: u64) -> Option<String> {
    let max = tok.quotas.max_ttl_s?;
    (ttl_s > max && !tok.has(Scope::Admin))
        .then(|| format!("ttl_s {ttl_s} is past this token's max_ttl_s {max}"))
}

impl Control {
    pub(super) fn set_ttl(
        &self,
        tok: &TokenRecord,
        id: &str,
        ttl_s: u64,
        reason: Option<String>,
        what: &str,
    ) -> Result<Outcome, Outcome> {
        let seen = self.workspace(tok, id, Scope::Create, what)?;
        self.quarantine_is_admins(tok, &seen, what)?;
        if !(1..=MAX_TTL_S).contains(&ttl_s) {
            return Err(error(
                Verdict::Invalid,
                format!("ttl_s: {ttl_s} is not 1 to {MAX_TTL_S} (the server maximum)"),
            ));
        }
        // Ending it sooner is ending it: that takes delete scope.
        if now_s() + ttl_s < seen.expires_at {
            self.workspace(tok, id, Scope::Delete, what)?;
        }
        if let Some(why) = past_quota(tok, ttl_s) {
            let action = ApprovalAction::ExtendTtl { ttl_s };
            match self.gate(tok, Yellow::ExtendTtl, &seen, action, reason, &why, what)? {
                Gate::Go => {}
                Gate::Asked(o) => return Ok(o),
            }
        }
        let ws = self.apply_ttl(&seen.id, ttl_s, false)?;
        self.audit.record(
            "workspace_ttl_changed",
            json!({"workspace": ws.id, "token": tok.id, "expires_at_before": seen.expires_at, "expires_at": ws.expires_at}),
        );
        Ok(reply(Verdict::Ok, ws.public()))
    }

    /// Ends a running workspace `ttl_s` from now (`only_later`: unless it
    /// ends later already). Checked and changed in one transaction, and only
    /// its end: a quarantine or a policy change committed meanwhile is never
    /// written over.
    pub(super) fn apply_ttl(
        &self,
        id: &str,
        ttl_s: u64,
        only_later: bool,
    ) -> Result<WorkspaceRecord, Outcome> {
        let until = now_s() + ttl_s;
        let changed = self
            .store
            .update(WORKSPACES, id, |ws: &mut WorkspaceRecord| {
                if ws.state != WsState::Running {
                    return Err(format!("workspace {} is {:?}", ws.id, ws.state));
                }
                if only_later && until < ws.expires_at {
                    return Err(format!(
                        "workspace {} already ends at {}, later than asked",
                        ws.id, ws.expires_at
                    ));
                }
                ws.expires_at = until;
                Ok(())
            })
            .map_err(store_err)?;
        match changed {
            None => Err(error(Verdict::NotFound, format!("no workspace {id}"))),
            Some(Err(why)) => Err(error(Verdict::Conflict, why)),
            Some(Ok(ws)) => Ok(ws),
        }
    }
}
