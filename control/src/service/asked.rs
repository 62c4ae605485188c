//! Yellow actions (issue 17, part 2): a TTL past the token's quota, a
//! published port, a link. A token's policy (`actions`) says, per action,
//! whether it is refused, done, or recorded as a pending approval that an
//! admin decides. An approved action is done then, with the asker's reach
//! at that moment (a token revoked, expired or no longer seeing the
//! workspace meanwhile voids it), and a port or a link is taken back when
//! the approval expires.

use super::approvals::{check_reason, new_pending, reopen, MAX_PENDING_PER_WORKSPACE};

/// Pending token asks one token may have at once, on all its workspaces.
const MAX_PENDING_PER_TOKEN: usize = 64;
/// Pending token asks on the box at once: what an admin's queue holds.
const MAX_PENDING_ASKS: usize = 1024;
use super::{error, reply, store_err, Control, Outcome};
use crate::audit::now_s;
use crate::store::{APPROVALS, WORKSPACES};
use crate::tokens::{ActionRule, Scope, TokenRecord, Yellow};
use crate::workspace::{WorkspaceRecord, WsState};
use log::warn;
use paddock_api_channel::Verdict;
use paddock_api_types::{Approval, ApprovalAction, ApprovalState};
use serde_json::json;
use sha2::{Digest, Sha256};

/// What the caller of `gate` does next.
pub(super) enum Gate {
    /// It may: go on and do it.
    Go,
    /// It was recorded for an admin to decide: answer this.
    Asked(Outcome),
}

/// Why an approved action was not done.
pub(super) enum NotDone {
    /// It can never be, as asked: the approval ends denied.
    Void(String),
    /// Not now (a port taken meanwhile, the firewall failing): it stays
    /// pending for another decision.
    Failed(Outcome),
}

/// Why an ask was not recorded.
enum Refused {
    /// Its approval holds until then.
    Held(u64),
    NoRoom,
}

/// Stable for the workspace, the asker and the request (not what it was
/// given): asking again is the same approval.
fn asked_id(workspace: &str, token: &str, action: &ApprovalAction) -> String {
    let what = match action {
        ApprovalAction::Egress { host, port } => format!("{host}\0{port}"),
        ApprovalAction::ExtendTtl { ttl_s } => ttl_s.to_string(),
        ApprovalAction::PublishPort { port, host_port } => format!("{port}\0{host_port:?}"),
        ApprovalAction::Link { to, port, .. } => format!("{to}\0{port}"),
    };
    let d = Sha256::digest(format!("{workspace}\0{token}\0{}\0{what}", action.kind()).as_bytes());
    let hex: String = d[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("apr_{hex}")
}

/// The action's fields for an audit record.
fn fields(a: &Approval) -> serde_json::Value {
    let mut v = serde_json::to_value(&a.action).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("workspace".into(), json!(a.workspace));
        o.insert("approval".into(), json!(a.id));
        o.insert("asked_by".into(), json!(a.asked_by));
    }
    v
}

impl Control {
    /// The policy's answer for `tok` doing `action` on `ws`; `why` says
    /// what makes it yellow.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn gate(
        &self,
        tok: &TokenRecord,
        yellow: Yellow,
        ws: &WorkspaceRecord,
        action: ApprovalAction,
        reason: Option<String>,
        why: &str,
        what: &str,
    ) -> Result<Gate, Outcome> {
        match tok.rule(yellow) {
            ActionRule::Allow => Ok(Gate::Go),
            ActionRule::Deny => Err(self.refuse(
                Verdict::Forbidden,
                &format!("{why}, and this token's actions.{} is deny", action.kind()),
                Some(&tok.id),
                what,
            )),
            ActionRule::Ask => self.ask_for(tok, ws, action, reason).map(Gate::Asked),
        }
    }

    /// Refuses a token whose policy neither allows nor lets it ask for
    /// `yellow`, before anything else is looked at.
    pub(super) fn may_try(
        &self,
        tok: &TokenRecord,
        yellow: Yellow,
        name: &str,
        what: &str,
    ) -> Result<(), Outcome> {
        if tok.rule(yellow) == ActionRule::Deny {
            return Err(self.refuse(
                Verdict::Forbidden,
                &format!(
                    "{name} takes the admin scope, or a token whose actions.{name} is ask or allow"
                ),
                Some(&tok.id),
                what,
            ));
        }
        self.need(tok, Scope::Create, what)
    }

    /// Records (or asks again for) a pending approval: 202 and the approval.
    fn ask_for(
        &self,
        tok: &TokenRecord,
        ws: &WorkspaceRecord,
        action: ApprovalAction,
        reason: Option<String>,
    ) -> Result<Outcome, Outcome> {
        let reason = reason.unwrap_or_default();
        check_reason(&reason)?;
        if ws.state != WsState::Running {
            return Err(error(
                Verdict::Conflict,
                format!("workspace {} is {:?}, not running", ws.id, ws.state),
            ));
        }
        let id = asked_id(&ws.id, &tok.id, &action);
        let now = now_s();
        // Token asks are counted apart from the workspace's own egress
        // requests (neither crowds out the other), per workspace, per
        // asking token and on the whole box.
        let pending: Vec<Approval> = self
            .store
            .list_readable::<Approval>(APPROVALS)
            .map_err(store_err)?
            .into_iter()
            .filter(|p| {
                p.state == ApprovalState::Pending
                    && !matches!(p.action, ApprovalAction::Egress { .. })
            })
            .collect();
        let room = pending.iter().filter(|p| p.workspace == ws.id).count()
            < MAX_PENDING_PER_WORKSPACE
            && pending
                .iter()
                .filter(|p| p.asked_by.as_deref() == Some(&tok.id))
                .count()
                < MAX_PENDING_PER_TOKEN
            && pending.len() < MAX_PENDING_ASKS;
        let mut fresh = false;
        // Pending: counted, with the newer words. Approved and not yet
        // ended (in force, or being carried out right now): refused, so an
        // ask never reopens what a decision holds. Decided otherwise (a
        // one-off done, a denial, a grant that ended): a new ask, if there
        // is room.
        let changed = self
            .store
            .update(APPROVALS, &id, |a: &mut Approval| {
                if a.state == ApprovalState::Approved && a.expires_at.is_some() {
                    return Err(Refused::Held(a.expires_at.unwrap_or_default()));
                }
                if a.state != ApprovalState::Pending && !room {
                    return Err(Refused::NoRoom);
                }
                fresh = a.state != ApprovalState::Pending;
                reopen(a);
                a.asks = a.asks.saturating_add(1);
                a.action = action.clone();
                a.reason = reason.clone();
                a.asked_at = now;
                Ok(())
            })
            .map_err(store_err)?;
        let a = match changed {
            Some(Ok(a)) => a,
            None if room => {
                let a = new_pending(&id, &ws.id, action, Some(tok.id.clone()), reason, now);
                self.store.put(APPROVALS, &id, &a).map_err(store_err)?;
                fresh = true;
                a
            }
            Some(Err(Refused::Held(until))) => {
                return Err(error(
                    Verdict::Conflict,
                    format!("approval {id} is approved until {until}: ask again after"),
                ))
            }
            Some(Err(Refused::NoRoom)) | None => {
                return Err(error(
                    Verdict::TooMany,
                    "too many approvals are pending for this workspace or this token: ask again once they are decided",
                ))
            }
        };
        if fresh {
            let mut record = fields(&a);
            record["reason"] = json!(a.reason);
            self.audit.record("approval_requested", record);
        }
        Ok(reply(Verdict::Accepted, a))
    }

    /// Does what an admin just approved, as the asker may now. Returns the
    /// action as done (the host port given, the link made).
    pub(super) fn carry_out(&self, a: &Approval) -> Result<ApprovalAction, NotDone> {
        let Some(asker_id) = a.asked_by.as_deref() else {
            return Err(NotDone::Void("nobody asked for it".into()));
        };
        let asker = {
            let tree = self.tree();
            match tree.get(asker_id) {
                Some(t) if tree.is_live(t, now_s()) => t.clone(),
                _ => {
                    return Err(NotDone::Void(format!(
                        "{asker_id}, which asked, is revoked or expired"
                    )))
                }
            }
        };
        let sees = |id: &str| -> Result<WorkspaceRecord, NotDone> {
            let ws = self
                .store
                .get::<WorkspaceRecord>(WORKSPACES, id)
                .map_err(|e| NotDone::Failed(store_err(e)))?;
            match ws {
                Some(w) if asker.has(Scope::Create) && self.tree().sees(&asker, &w) => Ok(w),
                _ => Err(NotDone::Void(format!(
                    "{asker_id}, which asked, no longer reaches workspace {id}"
                ))),
            }
        };
        let ws = sees(&a.workspace)?;
        match &a.action {
            ApprovalAction::ExtendTtl { ttl_s } => {
                let before = ws.expires_at;
                // Only ever later: ending it sooner takes the delete scope,
                // which an ask for more time does not stand for.
                let done =
                    self.apply_ttl(&ws.id, *ttl_s, true)
                        .map_err(|o| match o.reply.verdict {
                            Verdict::Conflict => NotDone::Void(
                                o.reply.body["error"]
                                    .as_str()
                                    .unwrap_or("not running")
                                    .to_string(),
                            ),
                            _ => NotDone::Failed(o),
                        })?;
                self.audit.record(
                    "workspace_ttl_changed",
                    json!({"workspace": ws.id, "token": asker_id, "approval": a.id,
                           "expires_at_before": before, "expires_at": done.expires_at}),
                );
                Ok(a.action.clone())
            }
            ApprovalAction::PublishPort { port, host_port } => {
                let given = self
                    .do_publish(&ws.id, *port, *host_port, asker_id, Some(&a.id))
                    .map_err(NotDone::Failed)?;
                Ok(ApprovalAction::PublishPort {
                    port: *port,
                    host_port: Some(given.host_port),
                })
            }
            ApprovalAction::Link { to, port, .. } => {
                let to_ws = sees(to)?;
                let link = self
                    .do_link(&ws, &to_ws, *port, asker_id, Some(&a.id))
                    .map_err(NotDone::Failed)?;
                Ok(ApprovalAction::Link {
                    to: to.clone(),
                    port: *port,
                    link: Some(link.id),
                })
            }
            ApprovalAction::Egress { .. } => Err(NotDone::Void(
                "an egress request is not a token's action".into(),
            )),
        }
    }

    /// Takes back what an expired approval gave (a port, a link). Ok when
    /// it is gone, whoever took it.
    pub(super) fn take_back(&self, a: &Approval) -> Result<(), Outcome> {
        match &a.action {
            ApprovalAction::PublishPort {
                port,
                host_port: Some(h),
            } => {
                let given = super::ports::Given {
                    approval: &a.id,
                    host_port: *h,
                };
                self.withdraw_port(&a.workspace, *port, Some(given), &a.id)
            }
            ApprovalAction::Link { link: Some(l), .. } => self.remove_link(l, &a.id),
            _ => Ok(()),
        }
    }

    /// `GET /v1/approvals/{id}`: an admin's, or the token's own ask.
    pub(super) fn get_approval(&self, tok: &TokenRecord, id: &str) -> Result<Outcome, Outcome> {
        let a = self
            .store
            .get::<Approval>(APPROVALS, id)
            .map_err(store_err)?;
        match a {
            Some(a) if tok.has(Scope::Admin) || a.asked_by.as_deref() == Some(&tok.id) => {
                Ok(reply(Verdict::Ok, a))
            }
            // The same answer whether it exists or not.
            _ => Err(error(Verdict::NotFound, format!("no approval {id}"))),
        }
    }

    /// Ends an approval that can never be carried out, as denied.
    pub(super) fn void(&self, id: &str, why: &str) {
        let ended = self.store.update(APPROVALS, id, |a: &mut Approval| {
            a.state = ApprovalState::Denied;
            a.expires_at = None;
            a.decision_reason = Some(format!("void: {why}"));
            Ok::<(), ()>(())
        });
        if let Err(e) = ended {
            warn!("approval {id}: ending it void: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_per_workspace_asker_and_request_not_what_was_given() {
        let port = |host_port| ApprovalAction::PublishPort {
            port: 80,
            host_port,
        };
        let a = asked_id("ws_1", "tok_a", &port(None));
        assert_eq!(a, asked_id("ws_1", "tok_a", &port(None)));
        assert_ne!(a, asked_id("ws_2", "tok_a", &port(None)));
        assert_ne!(a, asked_id("ws_1", "tok_b", &port(None)));
        assert_ne!(a, asked_id("ws_1", "tok_a", &port(Some(20000))));
        let link = |l: Option<&str>| ApprovalAction::Link {
            to: "ws_2".into(),
            port: 80,
            link: l.map(str::to_string),
        };
        assert_eq!(
            asked_id("ws_1", "tok_a", &link(None)),
            asked_id("ws_1", "tok_a", &link(Some("lnk_1")))
        );
        assert!(a.starts_with("apr_") && a.len() == 20);
    }
}
