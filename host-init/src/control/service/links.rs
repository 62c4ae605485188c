//! Directed private links between workspaces: "A may connect to B on TCP
//! port P". B answers; B cannot open anything to A; nothing else passes
//! between them. Kept in the state database, enforced by the firewall
//! (net/firewall.rs), removed with either end.

use super::{error, reply, store_err, Control, Outcome};
use crate::api::channel::Verdict;
use crate::control::store::{LINKS, WORKSPACES};
use crate::control::tokens::{Scope, TokenRecord};
use crate::control::workspace::{WorkspaceRecord, WsState};
use paddock_api_types::{Deleted, Link, LinkList, LinkRequest};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkRecord {
    pub id: String,
    pub from: String,
    pub to: String,
    pub port: u16,
    pub created_at: u64,
    pub created_by: String,
}

impl LinkRecord {
    fn public(&self, to_address: Option<String>) -> Link {
        Link {
            id: self.id.clone(),
            from: self.from.clone(),
            to: self.to.clone(),
            port: self.port,
            created_at: self.created_at,
            to_address,
        }
    }
}

/// A workspace's address on its NIC, if it has one.
pub fn address(ws: &WorkspaceRecord) -> Option<String> {
    super::runner::slot(ws).map(|s| s.guest().to_string())
}

impl Control {
    fn links(&self) -> Result<Vec<LinkRecord>, Outcome> {
        self.store.list::<LinkRecord>(LINKS).map_err(store_err)
    }

    /// Hands the firewall every link (it enforces those whose ends both run).
    fn apply_links(&self) -> Result<(), Outcome> {
        let links = self
            .links()?
            .into_iter()
            .map(|l| crate::net::firewall::Link {
                id: l.id,
                from: l.from,
                to: l.to,
                port: l.port,
            })
            .collect();
        crate::net::firewall::set_links(links).map_err(|e| {
            error(
                Verdict::Unavailable,
                format!("the firewall refused the links: {e}"),
            )
        })
    }

    pub(super) fn list_links(&self, tok: &TokenRecord, what: &str) -> Result<Outcome, Outcome> {
        self.need(tok, Scope::Admin, what)?;
        let links = self
            .links()?
            .iter()
            .map(|l| {
                let to = self
                    .store
                    .get::<WorkspaceRecord>(WORKSPACES, &l.to)
                    .ok()
                    .flatten();
                l.public(to.as_ref().and_then(address))
            })
            .collect();
        Ok(reply(Verdict::Ok, LinkList { links }))
    }

    pub(super) fn create_link(
        &self,
        tok: &TokenRecord,
        request: Value,
        what: &str,
    ) -> Result<Outcome, Outcome> {
        self.need(tok, Scope::Admin, what)?;
        let req: LinkRequest = serde_json::from_value(request)
            .map_err(|e| error(Verdict::Invalid, format!("link request: {e}")))?;
        if req.port == 0 {
            return Err(error(Verdict::Invalid, "port: 0 is not 1 to 65535"));
        }
        if req.from == req.to {
            return Err(error(
                Verdict::Invalid,
                "from and to are the same workspace",
            ));
        }
        let from = self.workspace(tok, &req.from, Scope::Admin, what)?;
        let to = self.workspace(tok, &req.to, Scope::Admin, what)?;
        for ws in [&from, &to] {
            if ws.state != WsState::Running || address(ws).is_none() {
                return Err(error(
                    Verdict::Conflict,
                    format!("workspace {} is {:?} or has no network", ws.id, ws.state),
                ));
            }
        }
        let existing = self.links()?;
        if let Some(l) = existing
            .iter()
            .find(|l| l.from == req.from && l.to == req.to && l.port == req.port)
        {
            return Err(error(
                Verdict::Conflict,
                format!("link {} already allows that", l.id),
            ));
        }
        let link = LinkRecord {
            id: format!("lnk_{}", crate::control::tokens::random_hex(6)),
            from: req.from,
            to: req.to,
            port: req.port,
            created_at: crate::control::audit::now_s(),
            created_by: tok.id.clone(),
        };
        self.store.put(LINKS, &link.id, &link).map_err(store_err)?;
        if let Err(e) = self.apply_links() {
            let _ = self.store.delete(LINKS, &link.id);
            return Err(e);
        }
        self.audit.record(
            "link_created",
            json!({"link": link.id, "from": link.from, "to": link.to, "port": link.port, "token": tok.id}),
        );
        Ok(reply(Verdict::Created, link.public(address(&to))))
    }

    pub(super) fn delete_link(
        &self,
        tok: &TokenRecord,
        id: &str,
        what: &str,
    ) -> Result<Outcome, Outcome> {
        self.need(tok, Scope::Admin, what)?;
        let Some(link) = self.store.get::<LinkRecord>(LINKS, id).map_err(store_err)? else {
            return Err(error(Verdict::NotFound, format!("no link {id}")));
        };
        self.store.delete(LINKS, id).map_err(store_err)?;
        self.apply_links()?;
        self.audit.record(
            "link_deleted",
            json!({"link": link.id, "from": link.from, "to": link.to, "port": link.port, "token": tok.id}),
        );
        Ok(reply(Verdict::Ok, Deleted { deleted: link.id }))
    }

    /// Removes the links of a workspace that is going away.
    pub(super) fn drop_links_of(&self, workspace: &str) {
        let Ok(all) = self.links() else {
            return;
        };
        let mut changed = false;
        for l in all
            .iter()
            .filter(|l| l.from == workspace || l.to == workspace)
        {
            if self.store.delete(LINKS, &l.id).is_ok() {
                changed = true;
                self.audit.record(
                    "link_deleted",
                    json!({"link": l.id, "from": l.from, "to": l.to, "port": l.port, "reason": format!("workspace {workspace} is gone")}),
                );
            }
        }
        if changed {
            let _ = self.apply_links();
        }
    }

    /// After a reboot no workspace runs: every link is gone with them.
    pub(super) fn drop_all_links(&self) {
        if let Ok(all) = self.links() {
            for l in all {
                let _ = self.store.delete(LINKS, &l.id);
            }
        }
    }
}
