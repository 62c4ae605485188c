//! Brokered secrets (issue 17, part 1): set at create or on a running
//! workspace, kept sealed under the workspace's key, given to the network
//! services process's broker, listed without values, and what the broker
//! reports audited as `secret_used` and `secret_misuse`.

use super::{error, reply, store_err, Control, Outcome};
use crate::audit::now_s;
use crate::layout;
use crate::secrets::{self, SecretMeta};
use crate::store::WORKSPACES;
use crate::tokens::TokenRecord;
use crate::workspace::{WorkspaceRecord, WsState};
use paddock_api_channel::Verdict;
use paddock_api_types::{Scope, SecretList, SecretRemoved, SecretSpec};
use paddock_net::policy::CheckEgress as _;
use paddock_net_services::broker::events::SecretEvent;
use serde_json::{json, Value};
use std::collections::BTreeMap;

type Values = BTreeMap<String, String>;

/// The record a secrets transaction committed, or why it did not.
fn committed(
    changed: Option<Result<WorkspaceRecord, String>>,
    id: &str,
) -> Result<WorkspaceRecord, Outcome> {
    match changed {
        None => Err(error(Verdict::NotFound, format!("no workspace {id}"))),
        Some(Err(why)) => Err(error(Verdict::Conflict, why)),
        Some(Ok(ws)) => Ok(ws),
    }
}

fn cut(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
}

impl Control {
    /// A new workspace's secrets: their records, and their values sealed.
    pub(super) fn seal_secrets(
        &self,
        id: &str,
        specs: &BTreeMap<String, SecretSpec>,
    ) -> Result<(Vec<SecretMeta>, Option<Vec<u8>>), Outcome> {
        if specs.is_empty() {
            return Ok((Vec::new(), None));
        }
        let now = now_s();
        let metas = specs
            .iter()
            .map(|(name, spec)| SecretMeta::new(name, spec, secrets::placeholder(), now))
            .collect();
        let values: Values = specs
            .iter()
            .map(|(n, s)| (n.clone(), s.value.clone()))
            .collect();
        Ok((metas, Some(self.seal_values(id, &values)?)))
    }

    fn seal_values(&self, id: &str, values: &Values) -> Result<Vec<u8>, Outcome> {
        let name = layout::key_name(id);
        let store =
            paddock_keys::store().map_err(|e| error(Verdict::Unavailable, e.to_string()))?;
        let plain =
            serde_json::to_vec(values).map_err(|e| error(Verdict::Failed, e.to_string()))?;
        store
            .disk_key(&name)
            .and_then(|_| store.seal(&name, &plain))
            .map_err(|e| error(Verdict::Unavailable, format!("sealing its secrets: {e}")))
    }

    fn open_values(&self, ws: &WorkspaceRecord) -> Result<Values, Outcome> {
        let Some(sealed) = &ws.secrets_sealed else {
            return Ok(Values::new());
        };
        let store =
            paddock_keys::store().map_err(|e| error(Verdict::Unavailable, e.to_string()))?;
        let plain = store
            .open_sealed(&layout::key_name(&ws.id), sealed)
            .map_err(|e| error(Verdict::Unavailable, format!("opening its secrets: {e}")))?;
        serde_json::from_slice(&plain)
            .map_err(|e| error(Verdict::Failed, format!("its sealed secrets: {e}")))
    }

    /// Gives the broker the workspace's secrets as its record has them.
    pub(super) fn push_secrets(&self, ws: &WorkspaceRecord) -> Result<(), Outcome> {
        if ws.secrets.is_empty() {
            crate::host::get().clear_secrets(&ws.id);
            return Ok(());
        }
        let values = self.open_values(ws)?;
        let brokered = ws
            .secrets
            .iter()
            .filter_map(|m| values.get(&m.name).map(|v| m.brokered(v)))
            .collect();
        crate::host::get()
            .set_secrets(&ws.id, brokered)
            .map_err(|e| error(Verdict::Unavailable, format!("the secret broker: {e}")))
    }

    pub(super) fn list_secrets(
        &self,
        tok: &TokenRecord,
        id: &str,
        what: &str,
    ) -> Result<Outcome, Outcome> {
        let ws = self.workspace(tok, id, Scope::Read, what)?;
        let egress_ca = crate::egress_ca::get()
            .map(|ca| ca.cert_pem.clone())
            .unwrap_or_default();
        Ok(reply(
            Verdict::Ok,
            SecretList {
                secrets: ws.secrets.iter().map(SecretMeta::public).collect(),
                egress_ca,
            },
        ))
    }

    pub(super) fn set_secret(
        &self,
        tok: &TokenRecord,
        id: &str,
        name: &str,
        request: Value,
        what: &str,
    ) -> Result<Outcome, Outcome> {
        let ws = self.workspace(tok, id, Scope::Create, what)?;
        self.quarantine_is_admins(tok, &ws, what)?;
        let spec: SecretSpec = serde_json::from_value(request)
            .map_err(|e| error(Verdict::Invalid, format!("the secret: {e}")))?;
        let egress = ws
            .egress
            .check()
            .map_err(|p| error(Verdict::Failed, p.join("; ")))?;
        let mut problems = secrets::problems(name, &spec, Some(&egress));
        if ws.env.contains_key(name) {
            problems.push(format!("secrets.{name}: also in env (one or the other)"));
        }
        if let Some(other) = ws.secrets.iter().find(|s| {
            s.name != name
                && s.upstream_ca != spec.upstream_ca
                && s.hosts.iter().any(|h| spec.hosts.contains(h))
        }) {
            problems.push(format!(
                "secrets.{name}.upstream_ca: secret {} goes to one of its hosts with another upstream_ca; secrets for one host must trust the same CA",
                other.name
            ));
        }
        let known = ws.secrets.iter().any(|s| s.name == name);
        if !known && ws.secrets.len() >= secrets::MAX_SECRETS {
            problems.push(format!(
                "secrets: a workspace has at most {}",
                secrets::MAX_SECRETS
            ));
        }
        if !problems.is_empty() {
            return Err(error(Verdict::Invalid, problems.join("; ")));
        }
        let mut values = self.open_values(&ws)?;
        values.insert(name.to_string(), spec.value.clone());
        let sealed = self.seal_values(&ws.id, &values)?;
        let now = now_s();
        let before = ws.secrets.clone();
        // One transaction, and only on a running workspace: a stop, a
        // quarantine or another change committed meanwhile is not undone.
        let changed = self
            .store
            .update(WORKSPACES, &ws.id, |w: &mut WorkspaceRecord| {
                if w.state != WsState::Running {
                    return Err(format!("workspace {} is {:?}", w.id, w.state));
                }
                if w.secrets != before {
                    return Err("its secrets changed meanwhile; ask again".to_string());
                }
                let placeholder = w
                    .secrets
                    .iter()
                    .find(|s| s.name == name)
                    .map_or_else(secrets::placeholder, |s| s.placeholder.clone());
                w.secrets.retain(|s| s.name != name);
                w.secrets
                    .push(SecretMeta::new(name, &spec, placeholder, now));
                w.secrets.sort_by(|a, b| a.name.cmp(&b.name));
                w.secrets_sealed = Some(sealed);
                Ok(())
            })
            .map_err(store_err)?;
        let ws = committed(changed, id)?;
        self.push_secrets(&ws)?;
        self.unless_still_running(&ws.id);
        self.audit.record(
            "secret_set",
            json!({"workspace": ws.id, "token": tok.id, "secret": name, "hosts": spec.hosts, "rotated": known}),
        );
        let shown = ws
            .secrets
            .iter()
            .find(|s| s.name == name)
            .map(SecretMeta::public);
        Ok(reply(
            if known { Verdict::Ok } else { Verdict::Created },
            shown,
        ))
    }

    pub(super) fn remove_secret(
        &self,
        tok: &TokenRecord,
        id: &str,
        name: &str,
        what: &str,
    ) -> Result<Outcome, Outcome> {
        let ws = self.workspace(tok, id, Scope::Create, what)?;
        self.quarantine_is_admins(tok, &ws, what)?;
        if !ws.secrets.iter().any(|s| s.name == name) {
            return Err(error(
                Verdict::NotFound,
                format!("workspace {} has no secret {name:?}", ws.id),
            ));
        }
        let mut values = self.open_values(&ws)?;
        values.remove(name);
        let sealed = if values.is_empty() {
            None
        } else {
            Some(self.seal_values(&ws.id, &values)?)
        };
        let before = ws.secrets.clone();
        let changed = self
            .store
            .update(WORKSPACES, &ws.id, |w: &mut WorkspaceRecord| {
                // The values sealed here were read with `before`: a change
                // committed meanwhile must not be undone by them.
                if w.secrets != before {
                    return Err("its secrets changed meanwhile; ask again".to_string());
                }
                w.secrets.retain(|s| s.name != name);
                w.secrets_sealed = sealed;
                Ok(())
            })
            .map_err(store_err)?;
        let ws = committed(changed, id)?;
        if ws.state == WsState::Running {
            self.push_secrets(&ws)?;
            self.unless_still_running(&ws.id);
        }
        self.audit.record(
            "secret_removed",
            json!({"workspace": ws.id, "token": tok.id, "secret": name}),
        );
        Ok(reply(
            Verdict::Ok,
            SecretRemoved {
                workspace: ws.id,
                removed: name.to_string(),
            },
        ))
    }

    /// A stop that committed between a change and its push cleared the
    /// broker before the push re-filled it: clear it again.
    fn unless_still_running(&self, id: &str) {
        let running = matches!(
            self.store.get::<WorkspaceRecord>(WORKSPACES, id),
            Ok(Some(w)) if w.state == WsState::Running
        );
        if !running {
            crate::host::get().clear_secrets(id);
        }
    }

    /// What the broker reported: audited, one record per kind of use.
    pub fn secret_events(&self, events: Vec<(SecretEvent, u64)>) {
        for (e, count) in events {
            let mut fields = json!({
                "workspace": cut(&e.workspace, 64),
                "secret": cut(&e.secret, 64),
                "host": cut(&e.host, 253),
                "method": cut(&e.method, 16),
                "path": cut(&e.path, 200),
                "count": count,
            });
            let event = match e.misuse {
                Some(kind) => {
                    fields["reason"] = json!(kind.text());
                    "secret_misuse"
                }
                None => "secret_used",
            };
            self.audit.record(event, fields);
        }
    }
}
