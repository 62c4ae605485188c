//! Directed private links between workspaces: "A may connect to B on TCP
//! port P". B answers; B cannot open anything to A; nothing else passes
//! between them. Kept in the state database, enforced by the firewall
//! (net/firewall.rs), removed with either end.

use super::asked::Gate;
use super::{error, reply, store_err, Control, Outcome};
use crate::store::{LINKS, WORKSPACES};
use crate::tokens::{Scope, TokenRecord, Yellow};
use crate::workspace::{WorkspaceRecord, WsState};
use paddock_api_channel::Verdict;
use paddock_api_types::{ApprovalAction, Deleted, Link, LinkList, LinkRequest};
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
    ws.slot().map(|s| s.guest().to_string())
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
            .map(|l| paddock_net::firewall::Link {
                id: l.id,
                from: l.from,
                to: l.to,
                port: l.port,
            })
            .collect();
        paddock_net::firewall::set_links(links).map_err(|e| {
            error(
                Verdict::Unavailable,
                format!("the firewall refused the links: {e}"),
            )
        })
    }

    /// `GET /v1/links`: every link for an admin; for a token whose policy
    /// lets it link, those whose ends it both sees.
    pub(super) fn list_links(&self, tok: &TokenRecord, what: &str) -> Result<Outcome, Outcome> {
        self.may_try(tok, Yellow::Link, "link", what)?;
        let mut links = Vec::new();
        for l in self.links()? {
            let end = |id: &str| {
                self.store
                    .get::<WorkspaceRecord>(WORKSPACES, id)
                    .ok()
                    .flatten()
            };
            let (from, to) = (end(&l.from), end(&l.to));
            let seen = tok.has(Scope::Admin) || {
                let tree = self.tree();
                [&from, &to]
                    .iter()
                    .all(|w| w.as_ref().is_some_and(|w| tree.sees(tok, w)))
            };
            if seen {
                links.push(l.public(to.as_ref().and_then(address)));
            }
        }
        Ok(reply(Verdict::Ok, LinkList { links }))
    }

    /// `POST /v1/links`: done for an admin or a token whose policy allows
    /// it, asked for (on `from`'s behalf) when it says ask.
    pub(super) fn create_link(
        &self,
        tok: &TokenRecord,
        request: Value,
        what: &str,
    ) -> Result<Outcome, Outcome> {
        self.may_try(tok, Yellow::Link, "link", what)?;
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
        let from = self.workspace(tok, &req.from, Scope::Create, what)?;
        let to = self.workspace(tok, &req.to, Scope::Create, what)?;
        for ws in [&from, &to] {
            if ws.state != WsState::Running || address(ws).is_none() {
                return Err(error(
                    Verdict::Conflict,
                    format!("workspace {} is {:?} or has no network", ws.id, ws.state),
                ));
            }
        }
        self.no_such_link(&req.from, &req.to, req.port)?;
        let action = ApprovalAction::Link {
            to: req.to.clone(),
            port: req.port,
            link: None,
        };
        let why = "a link lets one workspace reach another";
        match self.gate(tok, Yellow::Link, &from, action, req.reason, why, what)? {
            Gate::Asked(o) => Ok(o),
            Gate::Go => {
                let link = self.do_link(&from, &to, req.port, &tok.id, None)?;
                Ok(reply(Verdict::Created, link.public(address(&to))))
            }
        }
    }

    fn no_such_link(&self, from: &str, to: &str, port: u16) -> Result<(), Outcome> {
        match self
            .links()?
            .into_iter()
            .find(|l| l.from == from && l.to == to && l.port == port)
        {
            Some(l) => Err(error(
                Verdict::Conflict,
                format!("link {} already allows that", l.id),
            )),
            None => Ok(()),
        }
    }

    /// Makes the link `from` → `to` on `port`, for `token` (and the
    /// approval that let it, if one did). Both ends must run now.
    pub(super) fn do_link(
        &self,
        from: &WorkspaceRecord,
        to: &WorkspaceRecord,
        port: u16,
        token: &str,
        approval: Option<&str>,
    ) -> Result<LinkRecord, Outcome> {
        for ws in [from, to] {
            if ws.state != WsState::Running || address(ws).is_none() {
                return Err(error(
                    Verdict::Conflict,
                    format!("workspace {} is {:?} or has no network", ws.id, ws.state),
                ));
            }
        }
        // Serial, so two equal links cannot both pass the check.
        let _admit = self.admission.lock().unwrap_or_else(|e| e.into_inner());
        self.no_such_link(&from.id, &to.id, port)?;
        let link = LinkRecord {
            id: format!("lnk_{}", crate::tokens::random_hex(6)),
            from: from.id.clone(),
            to: to.id.clone(),
            port,
            created_at: crate::audit::now_s(),
            created_by: token.to_string(),
        };
        self.store.put(LINKS, &link.id, &link).map_err(store_err)?;
        if let Err(e) = self.apply_links() {
            let _ = self.store.delete(LINKS, &link.id);
            return Err(e);
        }
        self.audit.record(
            "link_created",
            json!({"link": link.id, "from": link.from, "to": link.to, "port": link.port, "token": token, "approval": approval}),
        );
        Ok(link)
    }

    /// `DELETE /v1/links/{id}`: an admin's, or that of a token whose policy
    /// lets it link and that sees both ends; taking back needs no approval.
    pub(super) fn delete_link(
        &self,
        tok: &TokenRecord,
        id: &str,
        what: &str,
    ) -> Result<Outcome, Outcome> {
        self.may_try(tok, Yellow::Link, "link", what)?;
        let Some(link) = self.store.get::<LinkRecord>(LINKS, id).map_err(store_err)? else {
            return Err(error(Verdict::NotFound, format!("no link {id}")));
        };
        if !tok.has(Scope::Admin) {
            for end in [&link.from, &link.to] {
                // A link whose end it cannot see is one it cannot see.
                self.workspace(tok, end, Scope::Create, what)
                    .map_err(|_| error(Verdict::NotFound, format!("no link {id}")))?;
            }
        }
        self.remove_link(&link.id, &tok.id)?;
        Ok(reply(Verdict::Ok, Deleted { deleted: link.id }))
    }

    /// Removes a link; `by` is the token or the approval that ended. Ok if
    /// it was gone.
    pub(super) fn remove_link(&self, id: &str, by: &str) -> Result<(), Outcome> {
        let Some(link) = self.store.get::<LinkRecord>(LINKS, id).map_err(store_err)? else {
            return Ok(());
        };
        self.store.delete(LINKS, id).map_err(store_err)?;
        if let Err(o) = self.apply_links() {
            // Still in the firewall: back in the record, for the next try.
            let _ = self.store.put(LINKS, &link.id, &link);
            return Err(o);
        }
        self.audit.record(
            "link_deleted",
            json!({"link": link.id, "from": link.from, "to": link.to, "port": link.port, "by": by}),
        );
        Ok(())
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
