//! Published ports: a workspace port reachable from the appliance's uplink
//! at a port of the host's, when an admin asks for it, or a token whose
//! policy allows it (or an admin approves its ask: asked.rs). Enforced by
//! the firewall (DNAT from the uplink, the answers back out, nothing else).

use super::asked::Gate;
use super::{error, reply, store_err, Control, Outcome};
use crate::runner;
use crate::store::WORKSPACES;
use crate::tokens::{Scope, TokenRecord, Yellow};
use crate::workspace::{Published, WorkspaceRecord, WsState, PUBLISH_RANGE};
use paddock_api_channel::Verdict;
use paddock_api_types::{ApprovalAction, PortPublished, PublishRequest};
use serde_json::{json, Value};

impl Control {
    /// Puts the record's published ports into the firewall (running only).
    fn apply_published(&self, ws: &WorkspaceRecord) -> Result<(), Outcome> {
        let slot = ws.slot().ok_or_else(|| {
            error(
                Verdict::Conflict,
                format!("workspace {} has no network", ws.id),
            )
        })?;
        let entry =
            runner::ws_net(ws, slot).map_err(|e| error(Verdict::Unavailable, e.to_string()))?;
        paddock_net::firewall::set(entry).map_err(|e| error(Verdict::Unavailable, e.to_string()))
    }

    /// `POST /v1/workspaces/{id}/ports`: done for an admin or a token
    /// whose policy allows it, asked for when it says ask.
    pub(super) fn publish_port(
        &self,
        tok: &TokenRecord,
        id: &str,
        request: Value,
        what: &str,
    ) -> Result<Outcome, Outcome> {
        self.may_try(tok, Yellow::PublishPort, "publish_port", what)?;
        let ws = self.workspace(tok, id, Scope::Create, what)?;
        let req: PublishRequest = serde_json::from_value(request)
            .map_err(|e| error(Verdict::Invalid, format!("publish request: {e}")))?;
        if req.port == 0 {
            return Err(error(Verdict::Invalid, "port: 0 is not 1 to 65535"));
        }
        if let Some(h) = req.host_port.filter(|h| !PUBLISH_RANGE.contains(h)) {
            return Err(error(
                Verdict::Invalid,
                format!(
                    "host_port: {h} is not {} to {}",
                    PUBLISH_RANGE.start(),
                    PUBLISH_RANGE.end()
                ),
            ));
        }
        if ws.state != WsState::Running {
            return Err(error(
                Verdict::Conflict,
                format!("workspace {} is {:?}, not running", ws.id, ws.state),
            ));
        }
        if ws.published.iter().any(|p| p.port == req.port) {
            return Err(error(
                Verdict::Conflict,
                format!("port {} is already published", req.port),
            ));
        }
        let action = ApprovalAction::PublishPort {
            port: req.port,
            host_port: req.host_port,
        };
        let why = "publishing a port opens the workspace to the uplink";
        match self.gate(tok, Yellow::PublishPort, &ws, action, req.reason, why, what)? {
            Gate::Asked(o) => Ok(o),
            Gate::Go => {
                let done = self.do_publish(&ws.id, req.port, req.host_port, &tok.id, None)?;
                Ok(reply(Verdict::Created, done))
            }
        }
    }

    /// Publishes a running workspace's `port` at `host_port` (or the first
    /// free one), for `token` (and the approval that let it, if one did).
    pub(super) fn do_publish(
        &self,
        id: &str,
        port: u16,
        host_port: Option<u16>,
        token: &str,
        approval: Option<&str>,
    ) -> Result<PortPublished, Outcome> {
        // Admission is serial: two publishes cannot pick the same host port.
        let _admit = self.admission.lock().unwrap_or_else(|e| e.into_inner());
        let taken: Vec<u16> = self
            .store
            .list::<WorkspaceRecord>(WORKSPACES)
            .map_err(store_err)?
            .iter()
            .flat_map(|w| w.published.iter().map(|p| p.host_port))
            .collect();
        let host_port = match host_port {
            Some(h) if taken.contains(&h) => {
                return Err(error(
                    Verdict::Conflict,
                    format!("host port {h} is already published"),
                ))
            }
            Some(h) => h,
            None => PUBLISH_RANGE
                .clone()
                .find(|h| !taken.contains(h))
                .ok_or_else(|| {
                    error(
                        Verdict::Conflict,
                        "every host port of the publishing range is taken",
                    )
                })?,
        };
        // One transaction: a TTL or egress change meanwhile is kept.
        let changed = self
            .store
            .update(WORKSPACES, id, |ws: &mut WorkspaceRecord| {
                if ws.state != WsState::Running {
                    return Err(format!(
                        "workspace {} is {:?}, not running",
                        ws.id, ws.state
                    ));
                }
                if ws.published.iter().any(|p| p.port == port) {
                    return Err(format!("port {port} is already published"));
                }
                ws.published.push(Published {
                    port,
                    host_port,
                    published_by: Some(approval.unwrap_or(token).to_string()),
                });
                Ok(())
            })
            .map_err(store_err)?;
        let ws = match changed {
            None => return Err(error(Verdict::NotFound, format!("no workspace {id}"))),
            Some(Err(why)) => return Err(error(Verdict::Conflict, why)),
            Some(Ok(ws)) => ws,
        };
        if let Err(o) = self.apply_published(&ws) {
            let _ = self
                .store
                .update(WORKSPACES, id, |w: &mut WorkspaceRecord| {
                    w.published.retain(|p| p.port != port);
                    Ok::<(), ()>(())
                });
            return Err(o);
        }
        self.audit.record(
            "port_published",
            json!({"workspace": ws.id, "port": port, "host_port": host_port, "token": token, "approval": approval}),
        );
        Ok(PortPublished {
            workspace: ws.id,
            port,
            host_port,
        })
    }

    /// `DELETE /v1/workspaces/{id}/ports/{port}`: taking back needs no
    /// approval, only a token that may publish or ask to.
    pub(super) fn unpublish_port(
        &self,
        tok: &TokenRecord,
        id: &str,
        port: &str,
        what: &str,
    ) -> Result<Outcome, Outcome> {
        self.may_try(tok, Yellow::PublishPort, "publish_port", what)?;
        let ws = self.workspace(tok, id, Scope::Create, what)?;
        let port: u16 = port
            .parse()
            .map_err(|_| error(Verdict::NotFound, format!("no published port {port:?}")))?;
        if !ws.published.iter().any(|p| p.port == port) {
            return Err(error(
                Verdict::NotFound,
                format!("port {port} is not published"),
            ));
        }
        self.withdraw_port(&ws.id, port, None, &tok.id)?;
        let ws = self
            .store
            .get::<WorkspaceRecord>(WORKSPACES, &ws.id)
            .map_err(store_err)?
            .ok_or_else(|| error(Verdict::NotFound, format!("no workspace {id}")))?;
        Ok(reply(Verdict::Ok, ws.public()))
    }

    /// Takes a published port back (only the one `given` says, when
    /// given); `by` is the token or the approval that ended. Ok if it was
    /// not published.
    pub(super) fn withdraw_port(
        &self,
        id: &str,
        port: u16,
        given: Option<Given<'_>>,
        by: &str,
    ) -> Result<(), Outcome> {
        let matches = |p: &Published| p.port == port && given.is_none_or(|g| g.gave(p));
        // Serial with publishing, and the firewall first: if it refuses,
        // the record still says the port is open (as it still is), and the
        // next try (an expiry's, a caller's) finds it to take back.
        let _admit = self.admission.lock().unwrap_or_else(|e| e.into_inner());
        let Some(mut ws) = self
            .store
            .get::<WorkspaceRecord>(WORKSPACES, id)
            .map_err(store_err)?
        else {
            return Ok(());
        };
        if !ws.published.iter().any(matches) {
            return Ok(());
        }
        ws.published.retain(|p| !matches(p));
        if ws.state == WsState::Running {
            self.apply_published(&ws)?;
        }
        self.store
            .update(WORKSPACES, id, |w: &mut WorkspaceRecord| {
                w.published.retain(|p| !matches(p));
                Ok::<(), ()>(())
            })
            .map_err(store_err)?;
        self.audit.record(
            "port_unpublished",
            json!({"workspace": ws.id, "port": port, "by": by}),
        );
        Ok(())
    }
}

/// Which published port an ending approval gave.
#[derive(Clone, Copy)]
pub(super) struct Given<'a> {
    pub approval: &'a str,
    pub host_port: u16,
}

impl Given<'_> {
    /// Its own record; or, on a record from before `published_by`, the
    /// one at its host port (the best a record without it allows: a grant
    /// must not outlive its approval).
    fn gave(&self, p: &Published) -> bool {
        match &p.published_by {
            Some(by) => by == self.approval,
            None => p.host_port == self.host_port,
        }
    }
}
