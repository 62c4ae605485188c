//! Egress requests a person approves (issue 17, part 2). A workspace asks
//! for a destination at the box's request endpoint (net::requests, in the
//! network services process); PID 1 records the ask here as a pending
//! approval; an admin approves it for a while (the entry joins the
//! workspace's allowlist until then) or denies it; the sample loop takes
//! expired entries out again. Every step is audited: who asked and why,
//! who decided, when it ended.

use super::{error, reply, store_err, Control, Outcome};
use crate::api::channel::Verdict;
use crate::control::audit::now_s;
use crate::control::store::{APPROVALS, WORKSPACES};
use crate::control::tokens::TokenRecord;
use crate::control::workspace::{WorkspaceRecord, WsState};
use crate::net::requests::{approval_id, Ask};
use crate::warn;
use paddock_api_types::{Approval, ApprovalDecision, ApprovalList, ApprovalState, Scope};
use serde_json::{json, Value};

/// Pending approvals one workspace may have at once (more asks wait).
const MAX_PENDING_PER_WORKSPACE: usize = 32;
const DEFAULT_TTL_S: u64 = 3600;
const MAX_TTL_S: u64 = 7 * 24 * 3600;
const MIN_TTL_S: u64 = 10;
const MAX_REASON: usize = 500;

fn entry(a: &Approval) -> String {
    format!("{}:{}", a.host, a.port)
}

impl Control {
    /// The asks the network services process reported.
    pub fn asked(&self, asks: Vec<Ask>) {
        let now = now_s();
        for ask in asks {
            let ws = match self
                .store
                .get::<WorkspaceRecord>(WORKSPACES, &ask.workspace)
            {
                Ok(Some(ws)) if ws.state == WsState::Running => ws,
                _ => continue,
            };
            let id = approval_id(&ws.id, &ask.host, ask.port);
            let reason: String = ask
                .reason
                .chars()
                .filter(|c| !c.is_control())
                .take(MAX_REASON)
                .collect();
            let existing = self.store.get::<Approval>(APPROVALS, &id).ok().flatten();
            let mut a = match existing {
                // Asking again while it is pending or approved changes
                // nothing but the count and the words.
                Some(mut a)
                    if matches!(a.state, ApprovalState::Pending | ApprovalState::Approved) =>
                {
                    a.asks += 1;
                    a.reason = reason;
                    a.asked_at = now;
                    let _ = self.store.put(APPROVALS, &id, &a);
                    continue;
                }
                Some(mut a) => {
                    a.state = ApprovalState::Pending;
                    a.asks += 1;
                    a.decided_by = None;
                    a.decided_at = None;
                    a.decision_reason = None;
                    a.expires_at = None;
                    a
                }
                None => Approval {
                    id: id.clone(),
                    workspace: ws.id.clone(),
                    host: ask.host.clone(),
                    port: ask.port,
                    reason: String::new(),
                    state: ApprovalState::Pending,
                    asked_at: now,
                    asks: 1,
                    decided_by: None,
                    decided_at: None,
                    decision_reason: None,
                    expires_at: None,
                },
            };
            let pending = self
                .store
                .list::<Approval>(APPROVALS)
                .unwrap_or_default()
                .iter()
                .filter(|p| p.workspace == ws.id && p.state == ApprovalState::Pending)
                .count();
            if pending >= MAX_PENDING_PER_WORKSPACE {
                warn!(
                    "workspace {}: {pending} egress requests are pending already; {}:{} not recorded",
                    ws.id, ask.host, ask.port
                );
                continue;
            }
            a.reason = reason;
            a.asked_at = now;
            if let Err(e) = self.store.put(APPROVALS, &id, &a) {
                warn!("recording egress request {id}: {e}");
                continue;
            }
            self.audit.record(
                "egress_requested",
                json!({"workspace": a.workspace, "approval": a.id, "host": a.host, "port": a.port, "reason": a.reason}),
            );
        }
    }

    /// `GET /v1/approvals[?state=]` (admin).
    pub(super) fn list_approvals(
        &self,
        tok: &TokenRecord,
        state: Option<String>,
        what: &str,
    ) -> Result<Outcome, Outcome> {
        self.need(tok, Scope::Admin, what)?;
        let mut approvals: Vec<Approval> = self
            .store
            .list::<Approval>(APPROVALS)
            .map_err(store_err)?
            .into_iter()
            .filter(|a| {
                state.as_deref().is_none_or(|s| {
                    serde_json::to_value(a.state)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        == Some(s.to_string())
                })
            })
            .collect();
        approvals.sort_by(|a, b| b.asked_at.cmp(&a.asked_at).then_with(|| a.id.cmp(&b.id)));
        Ok(reply(Verdict::Ok, ApprovalList { approvals }))
    }

    /// `POST /v1/approvals/{id}` (admin): approve for a while, or deny.
    pub(super) fn decide_approval(
        &self,
        tok: &TokenRecord,
        id: &str,
        request: Value,
        what: &str,
    ) -> Result<Outcome, Outcome> {
        self.need(tok, Scope::Admin, what)?;
        let d: ApprovalDecision = serde_json::from_value(request)
            .map_err(|e| error(Verdict::Invalid, format!("decision: {e}")))?;
        let ttl = d.ttl_s.unwrap_or(DEFAULT_TTL_S);
        if !(MIN_TTL_S..=MAX_TTL_S).contains(&ttl) {
            return Err(error(
                Verdict::Invalid,
                format!("ttl_s: {ttl} is not {MIN_TTL_S} to {MAX_TTL_S}"),
            ));
        }
        let why = d.reason.unwrap_or_default();
        if why.chars().count() > MAX_REASON || why.chars().any(char::is_control) {
            return Err(error(
                Verdict::Invalid,
                format!("reason: at most {MAX_REASON} characters, one line"),
            ));
        }
        let mut a = self
            .store
            .get::<Approval>(APPROVALS, id)
            .map_err(store_err)?
            .ok_or_else(|| error(Verdict::NotFound, format!("no approval {id}")))?;
        if a.state != ApprovalState::Pending {
            return Err(error(
                Verdict::Conflict,
                format!("approval {id} is {:?}, not pending", a.state),
            ));
        }
        let now = now_s();
        if d.approve {
            let mut ws = self
                .store
                .get::<WorkspaceRecord>(WORKSPACES, &a.workspace)
                .map_err(store_err)?
                .filter(|w| matches!(w.state, WsState::Running | WsState::Stopped))
                .ok_or_else(|| {
                    error(
                        Verdict::Conflict,
                        format!("workspace {} is gone or not running", a.workspace),
                    )
                })?;
            let e = entry(&a);
            if ws.egress.domains.contains(&e) {
                // Its expiry would take out an entry someone else put there.
                return Err(error(
                    Verdict::Conflict,
                    format!("{e} is on {}'s allowlist already", ws.id),
                ));
            }
            ws.egress.domains.push(e);
            crate::net::policy::CheckEgress::check(&ws.egress)
                .map_err(|p| error(Verdict::Invalid, p.join("; ")))?;
            self.apply_egress(&ws)?;
            a.state = ApprovalState::Approved;
            a.expires_at = Some(now + ttl);
        } else {
            a.state = ApprovalState::Denied;
        }
        a.decided_by = Some(tok.id.clone());
        a.decided_at = Some(now);
        a.decision_reason = (!why.is_empty()).then_some(why);
        self.store.put(APPROVALS, id, &a).map_err(store_err)?;
        self.audit.record(
            if d.approve {
                "egress_approved"
            } else {
                "egress_denied"
            },
            json!({"workspace": a.workspace, "approval": a.id, "host": a.host, "port": a.port,
                   "token": tok.id, "expires_at": a.expires_at, "reason": a.decision_reason}),
        );
        Ok(reply(Verdict::Ok, a))
    }

    /// Takes expired approvals' entries out of their workspaces' allowlists
    /// (and forgets approvals of workspaces that are gone).
    pub(super) fn expire_approvals(&self, now: u64) {
        let Ok(all) = self.store.list::<Approval>(APPROVALS) else {
            return;
        };
        for mut a in all {
            let ws = self
                .store
                .get::<WorkspaceRecord>(WORKSPACES, &a.workspace)
                .ok()
                .flatten();
            let Some(mut ws) = ws else {
                let _ = self.store.delete(APPROVALS, &a.id);
                continue;
            };
            let due = a.state == ApprovalState::Approved && a.expires_at.is_some_and(|t| t <= now);
            if !due {
                continue;
            }
            let e = entry(&a);
            ws.egress.domains.retain(|d| d != &e);
            if let Err(o) = self.apply_egress(&ws) {
                warn!(
                    "approval {}: taking {e} out of {}'s allowlist: {}",
                    a.id, ws.id, o.reply.body
                );
                continue;
            }
            a.state = ApprovalState::Expired;
            let _ = self.store.put(APPROVALS, &a.id, &a);
            self.audit.record(
                "egress_grant_expired",
                json!({"workspace": a.workspace, "approval": a.id, "host": a.host, "port": a.port}),
            );
        }
    }
}
