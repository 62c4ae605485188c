//! Published ports: a workspace port reachable from the appliance's uplink
//! at a port of the host's, only when an admin asks for it. Enforced by the
//! firewall (DNAT from the uplink, the answers back out, nothing else).

use super::{error, reply, store_err, Control, Outcome};
use crate::api::channel::Verdict;
use crate::control::runner;
use crate::control::store::WORKSPACES;
use crate::control::tokens::{Scope, TokenRecord};
use crate::control::workspace::{Published, WorkspaceRecord, WsState, PUBLISH_RANGE};
use paddock_api_types::{PortPublished, PublishRequest};
use serde_json::{json, Value};

impl Control {
    /// Puts the record's published ports into the firewall (running only).
    fn apply_published(&self, ws: &WorkspaceRecord) -> Result<(), Outcome> {
        let slot = runner::slot(ws).ok_or_else(|| {
            error(
                Verdict::Conflict,
                format!("workspace {} has no network", ws.id),
            )
        })?;
        let entry =
            runner::ws_net(ws, slot).map_err(|e| error(Verdict::Unavailable, e.to_string()))?;
        crate::net::firewall::set(entry).map_err(|e| error(Verdict::Unavailable, e.to_string()))
    }

    pub(super) fn publish_port(
        &self,
        tok: &TokenRecord,
        id: &str,
        request: Value,
        what: &str,
    ) -> Result<Outcome, Outcome> {
        self.need(tok, Scope::Admin, what)?;
        let mut ws = self.workspace(tok, id, Scope::Admin, what)?;
        let req: PublishRequest = serde_json::from_value(request)
            .map_err(|e| error(Verdict::Invalid, format!("publish request: {e}")))?;
        if req.port == 0 {
            return Err(error(Verdict::Invalid, "port: 0 is not 1 to 65535"));
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
        // Admission is serial: two publishes cannot pick the same host port.
        let _admit = self.admission.lock().unwrap_or_else(|e| e.into_inner());
        let taken: Vec<u16> = self
            .store
            .list::<WorkspaceRecord>(WORKSPACES)
            .map_err(store_err)?
            .iter()
            .flat_map(|w| w.published.iter().map(|p| p.host_port))
            .collect();
        let host_port = match req.host_port {
            Some(h) if !PUBLISH_RANGE.contains(&h) => {
                return Err(error(
                    Verdict::Invalid,
                    format!(
                        "host_port: {h} is not {} to {}",
                        PUBLISH_RANGE.start(),
                        PUBLISH_RANGE.end()
                    ),
                ))
            }
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
        ws.published.push(Published {
            port: req.port,
            host_port,
        });
        self.apply_published(&ws)?;
        self.store.put(WORKSPACES, &ws.id, &ws).map_err(store_err)?;
        self.audit.record(
            "port_published",
            json!({"workspace": ws.id, "port": req.port, "host_port": host_port, "token": tok.id}),
        );
        Ok(reply(
            Verdict::Created,
            PortPublished {
                workspace: ws.id,
                port: req.port,
                host_port,
            },
        ))
    }

    pub(super) fn unpublish_port(
        &self,
        tok: &TokenRecord,
        id: &str,
        port: &str,
        what: &str,
    ) -> Result<Outcome, Outcome> {
        self.need(tok, Scope::Admin, what)?;
        let mut ws = self.workspace(tok, id, Scope::Admin, what)?;
        let port: u16 = port
            .parse()
            .map_err(|_| error(Verdict::NotFound, format!("no published port {port:?}")))?;
        let before = ws.published.len();
        ws.published.retain(|p| p.port != port);
        if ws.published.len() == before {
            return Err(error(
                Verdict::NotFound,
                format!("port {port} is not published"),
            ));
        }
        if ws.state == WsState::Running {
            self.apply_published(&ws)?;
        }
        self.store.put(WORKSPACES, &ws.id, &ws).map_err(store_err)?;
        self.audit.record(
            "port_unpublished",
            json!({"workspace": ws.id, "port": port, "token": tok.id}),
        );
        Ok(reply(Verdict::Ok, ws.public()))
    }
}
