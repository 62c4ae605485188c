//! What a person approves (issue 17, part 2). A workspace asks for a
//! destination at the box's request endpoint (net::requests, in the
//! network services process); PID 1 records the ask here as a pending
//! approval; an admin approves it for a while (the entry joins the
//! workspace's allowlist until then) or denies it; the sample loop takes
//! expired entries out again. A token's yellow actions (asked.rs) are
//! decided here the same way. Every step is audited: who asked and why,
//! who decided, when it ended.

use super::asked::NotDone;
use super::{error, reply, store_err, Control, Outcome};
use crate::audit::now_s;
use crate::store::{APPROVALS, WORKSPACES};
use crate::tokens::TokenRecord;
use crate::workspace::{WorkspaceRecord, WsState};
use log::warn;
use paddock_api_channel::Verdict;
use paddock_api_types::{
    Approval, ApprovalAction, ApprovalDecision, ApprovalList, ApprovalState, Scope,
};
use paddock_net_services::requests::{approval_id, Ask};
use serde_json::{json, Value};

/// Pending approvals one workspace may have at once (more asks wait).
pub(super) const MAX_PENDING_PER_WORKSPACE: usize = 32;
const DEFAULT_TTL_S: u64 = 3600;
const MAX_TTL_S: u64 = 7 * 24 * 3600;
const MIN_TTL_S: u64 = 10;
const MAX_REASON: usize = 500;
/// Denied and expired approvals are kept this long after their decision.
const KEEP_DECIDED_S: u64 = 7 * 24 * 3600;

/// A new approval, pending: what a workspace (`asked_by` None) or a token
/// asked for, and why.
pub(super) fn new_pending(
    id: &str,
    workspace: &str,
    action: ApprovalAction,
    asked_by: Option<String>,
    reason: String,
    now: u64,
) -> Approval {
    Approval {
        id: id.to_string(),
        workspace: workspace.to_string(),
        action,
        asked_by,
        reason,
        state: ApprovalState::Pending,
        asked_at: now,
        asks: 1,
        decided_by: None,
        decided_at: None,
        decision_reason: None,
        expires_at: None,
    }
}

/// Makes a decided approval pending again, with no trace of the decision.
pub(super) fn reopen(a: &mut Approval) {
    a.state = ApprovalState::Pending;
    a.decided_by = None;
    a.decided_at = None;
    a.decision_reason = None;
    a.expires_at = None;
}

/// The allowlist entry an egress approval puts in, if it is one.
fn entry(a: &Approval) -> Option<String> {
    match &a.action {
        ApprovalAction::Egress { host, port } => Some(format!("{host}:{port}")),
        _ => None,
    }
}

/// A character that would not show as itself where a person reads a
/// reason: controls, line and paragraph separators, and the invisible
/// format characters (bidirectional marks, overrides and isolates,
/// zero-width ones), which can make text read as other text.
pub(super) fn unprintable(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}' | '\u{feff}')
}

/// An asker's or a decider's words: one line, at most MAX_REASON, every
/// character one that shows.
pub(super) fn check_reason(why: &str) -> Result<(), Outcome> {
    if why.chars().count() > MAX_REASON || why.chars().any(unprintable) {
        return Err(error(
            Verdict::Invalid,
            format!("reason: at most {MAX_REASON} characters, one line, no invisible characters"),
        ));
    }
    Ok(())
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
                .filter(|c| !unprintable(*c))
                .take(MAX_REASON)
                .collect();
            // The workspace's own asks have a cap of their own, so it
            // cannot crowd out what its tokens ask about it, nor they it;
            // a store that cannot be read has no room.
            let room = self
                .store
                .list_readable::<Approval>(APPROVALS)
                .map(|all| {
                    all.iter()
                        .filter(|p| {
                            p.workspace == ws.id
                                && p.state == ApprovalState::Pending
                                && matches!(p.action, ApprovalAction::Egress { .. })
                        })
                        .count()
                        < MAX_PENDING_PER_WORKSPACE
                })
                .unwrap_or(false);
            // Asking again is one transaction on the record: while pending
            // it counts and takes the newer words; once approved it only
            // counts (what the approver read stays); after a denial or an
            // expiry it is pending again, if there is room.
            let mut again = false;
            let changed = self.store.update(APPROVALS, &id, |a: &mut Approval| {
                a.asks = a.asks.saturating_add(1);
                match a.state {
                    ApprovalState::Pending => {
                        a.reason = reason.clone();
                        a.asked_at = now;
                    }
                    ApprovalState::Approved => {}
                    ApprovalState::Denied | ApprovalState::Expired if room => {
                        again = true;
                        reopen(a);
                        a.reason = reason.clone();
                        a.asked_at = now;
                    }
                    ApprovalState::Denied | ApprovalState::Expired => {}
                }
                Ok::<(), ()>(())
            });
            match changed {
                Ok(Some(_)) if !again => continue,
                Ok(Some(_)) => {}
                Ok(None) if room => {
                    let a = new_pending(
                        &id,
                        &ws.id,
                        ApprovalAction::Egress {
                            host: ask.host.clone(),
                            port: ask.port,
                        },
                        None,
                        reason.clone(),
                        now,
                    );
                    if let Err(e) = self.store.put(APPROVALS, &id, &a) {
                        warn!("recording egress request {id}: {e}");
                        continue;
                    }
                }
                // No room: its pending asks wait for a decision first.
                Ok(None) => continue,
                Err(e) => {
                    warn!("recording egress request {id}: {e}");
                    continue;
                }
            }
            self.audit.record(
                "egress_requested",
                json!({"workspace": ws.id, "approval": id, "host": ask.host, "port": ask.port, "reason": reason}),
            );
        }
    }

    /// `GET /v1/approvals[?state=]`: every one for an admin, its own asks
    /// for any other token.
    pub(super) fn list_approvals(
        &self,
        tok: &TokenRecord,
        state: Option<String>,
    ) -> Result<Outcome, Outcome> {
        let admin = tok.has(Scope::Admin);
        let mut approvals: Vec<Approval> = self
            .store
            .list_readable::<Approval>(APPROVALS)
            .map_err(store_err)?
            .into_iter()
            .filter(|a| admin || a.asked_by.as_deref() == Some(&tok.id))
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
        check_reason(&why)?;
        let now = now_s();
        let decided_reason = (!why.is_empty()).then_some(why);
        // The approval first, in one transaction: of two decisions at once
        // only one finds it pending.
        let decided = self
            .store
            .update(APPROVALS, id, |a: &mut Approval| {
                if a.state != ApprovalState::Pending {
                    return Err(format!("approval {id} is {:?}, not pending", a.state));
                }
                a.state = if d.approve {
                    ApprovalState::Approved
                } else {
                    ApprovalState::Denied
                };
                a.expires_at = d.approve.then_some(now + ttl);
                a.decided_by = Some(tok.id.clone());
                a.decided_at = Some(now);
                a.decision_reason = decided_reason.clone();
                Ok(())
            })
            .map_err(store_err)?;
        let a = match decided {
            None => return Err(error(Verdict::NotFound, format!("no approval {id}"))),
            Some(Err(why)) => return Err(error(Verdict::Conflict, why)),
            Some(Ok(a)) => a,
        };
        let a = if d.approve { self.put_in_force(a)? } else { a };
        let record = json!({"workspace": a.workspace, "approval": a.id, "token": tok.id,
                            "expires_at": a.expires_at, "reason": a.decision_reason});
        match &a.action {
            ApprovalAction::Egress { host, port } => {
                let mut record = record;
                record["host"] = json!(host);
                record["port"] = json!(port);
                let event = if d.approve {
                    "egress_approved"
                } else {
                    "egress_denied"
                };
                self.audit.record(event, record);
            }
            action => {
                let mut record = record;
                record["kind"] = json!(action.kind());
                record["asked_by"] = json!(a.asked_by);
                record["action"] = json!(action);
                let event = if d.approve {
                    "approval_approved"
                } else {
                    "approval_denied"
                };
                self.audit.record(event, record);
            }
        }
        Ok(reply(Verdict::Ok, a))
    }

    /// Puts what an approval (just recorded approved) grants in force: the
    /// allowlist entry, or the asker's action. Not in force: back to
    /// pending for another decision, or denied if it never can be.
    fn put_in_force(&self, a: Approval) -> Result<Approval, Outcome> {
        let id = a.id.clone();
        let done = match entry(&a) {
            Some(e) => self
                .change_egress(&a.workspace, |egress| {
                    if egress.domains.contains(&e) {
                        // Its expiry would take out an entry someone else put there.
                        return Err((
                            Verdict::Conflict,
                            format!("{e} is on the workspace's allowlist already"),
                        ));
                    }
                    egress.domains.push(e.clone());
                    Ok(())
                })
                .map(|_| a.action.clone())
                .map_err(NotDone::Failed),
            None => self.carry_out(&a),
        };
        match done {
            Ok(action) => {
                // The one-offs hold nothing that could expire.
                let lasting = !matches!(action, ApprovalAction::ExtendTtl { .. });
                // Only onto the decision just made: an ask cannot reopen an
                // approval while it is carried out (ask_for), and nothing
                // else writes it, but what was done must never be left
                // without a record that takes it back.
                let recorded = self.store.update(APPROVALS, &id, |x: &mut Approval| {
                    if x.state != ApprovalState::Approved || x.decided_at != a.decided_at {
                        return Err(());
                    }
                    x.action = action.clone();
                    if !lasting {
                        x.expires_at = None;
                    }
                    Ok(())
                });
                match recorded {
                    Ok(Some(Ok(a))) => Ok(a),
                    _ => {
                        let done = Approval { action, ..a };
                        if let Err(o) = self.take_back(&done) {
                            warn!(
                                "approval {id}: taking back what could not be recorded: {}",
                                o.reply.body
                            );
                        }
                        Err(error(
                            Verdict::Failed,
                            format!("approval {id} was carried out but could not be recorded, so it was undone"),
                        ))
                    }
                }
            }
            Err(NotDone::Void(why)) => {
                self.void(&id, &why);
                Err(error(
                    Verdict::Conflict,
                    format!("approval {id} is void: {why}"),
                ))
            }
            Err(NotDone::Failed(o)) => {
                let _ = self.store.update(APPROVALS, &id, |a: &mut Approval| {
                    reopen(a);
                    Ok::<(), ()>(())
                });
                Err(o)
            }
        }
    }

    /// Takes expired approvals' entries out of their workspaces' allowlists
    /// (each step one transaction), forgets the approvals of workspaces that
    /// are gone, and those decided more than a week ago.
    pub(super) fn expire_approvals(&self, now: u64) {
        let Ok(all) = self.store.list_readable::<Approval>(APPROVALS) else {
            return;
        };
        for a in all {
            let exists = matches!(
                self.store.get::<WorkspaceRecord>(WORKSPACES, &a.workspace),
                Ok(Some(_))
            );
            let stale = matches!(a.state, ApprovalState::Denied | ApprovalState::Expired)
                && a.decided_at
                    .or(Some(a.asked_at))
                    .is_some_and(|t| now.saturating_sub(t) > KEEP_DECIDED_S);
            if !exists || stale {
                let _ = self.store.delete(APPROVALS, &a.id);
                continue;
            }
            // A grant ends with its time, or with the token that asked for
            // it: a revoked or expired asker's ports and links go too.
            let asker_gone = a.asked_by.as_deref().is_some_and(|id| {
                let tree = self.tree();
                tree.get(id).is_none_or(|t| !tree.is_live(t, now))
            });
            let due = a.state == ApprovalState::Approved
                && a.expires_at.is_some_and(|t| t <= now || asker_gone);
            if !due {
                continue;
            }
            let removed = match entry(&a) {
                Some(e) => self
                    .change_egress(&a.workspace, |egress| {
                        egress.domains.retain(|d| d != &e);
                        Ok(())
                    })
                    .map(|_| ()),
                None => self.take_back(&a),
            };
            match removed {
                Ok(()) => {}
                // Stopped, quarantined or lost: nothing of it runs; the
                // entry goes from the record when it can, and the approval
                // ends now either way.
                Err(o) if o.reply.verdict == Verdict::Conflict => {}
                Err(o) => {
                    warn!(
                        "approval {}: taking back what it gave {}: {}",
                        a.id, a.workspace, o.reply.body
                    );
                    continue;
                }
            }
            let ended = self.store.update(APPROVALS, &a.id, |x: &mut Approval| {
                if x.state != ApprovalState::Approved {
                    return Err(());
                }
                x.state = ApprovalState::Expired;
                Ok(())
            });
            if matches!(ended, Ok(Some(Ok(_)))) {
                let (event, mut record) = match &a.action {
                    ApprovalAction::Egress { host, port } => {
                        ("egress_grant_expired", json!({"host": host, "port": port}))
                    }
                    action => (
                        "approval_expired",
                        json!({"kind": action.kind(), "action": action, "asked_by": a.asked_by}),
                    ),
                };
                record["workspace"] = json!(a.workspace);
                record["approval"] = json!(a.id);
                self.audit.record(event, record);
            }
        }
    }
}
