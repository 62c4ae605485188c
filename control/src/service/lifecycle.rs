//! A workspace's life through the API: create (admission, sealing its env
//! and secrets, booting it), stop and delete, and the rule that only an
//! admin ends a quarantined one.

use super::{error, mem_total_mib, reply, store_err, ttl, Control, Outcome, HOST_RESERVE_MIB};
use crate::audit::now_s;
use crate::layout;
use crate::runner;
use crate::store::WORKSPACES;
use crate::tokens::{Scope, TokenRecord};
use crate::workspace::SpecProblems as _;
use crate::workspace::{WorkspaceRecord, WorkspaceSpec, WsState};
use log::info;
use paddock_api_channel::Verdict;
use paddock_api_types::Deleted;
use serde_json::{json, Value};

impl Control {
    /// `DELETE /v1/workspaces/{id}`: its VMM stopped, its disk and record removed.
    pub(super) fn delete_workspace(
        &self,
        tok: &TokenRecord,
        id: String,
        what: &str,
    ) -> Result<Outcome, Outcome> {
        let ws = self.workspace(tok, &id, Scope::Delete, what)?;
        self.quarantine_is_admins(tok, &ws, what)?;
        let _claim = self.mark_busy(&ws.id, super::pause_calls::Busy::Ending)?;
        runner::destroy(&ws.id).map_err(|e| error(Verdict::Failed, e.to_string()))?;
        self.store.delete(WORKSPACES, &ws.id).map_err(store_err)?;
        self.drop_links_of(&ws.id);
        self.audit.record(
            "workspace_deleted",
            json!({"workspace": ws.id, "token": tok.id}),
        );
        Ok(reply(Verdict::Ok, Deleted { deleted: ws.id }))
    }

    /// `POST /v1/workspaces/{id}/stop`: its VMM stopped, its disk kept.
    pub(super) fn stop_workspace(
        &self,
        tok: &TokenRecord,
        id: String,
        what: &str,
    ) -> Result<Outcome, Outcome> {
        let mut ws = self.workspace(tok, &id, Scope::Delete, what)?;
        self.quarantine_is_admins(tok, &ws, what)?;
        let _claim = self.mark_busy(&ws.id, super::pause_calls::Busy::Ending)?;
        if ws.state == WsState::Paused {
            return Err(error(
                Verdict::Conflict,
                format!(
                    "workspace {} is paused: resume it first, or delete it",
                    ws.id
                ),
            ));
        }
        runner::stop(&ws.id);
        ws.state = WsState::Stopped;
        self.store.put(WORKSPACES, &ws.id, &ws).map_err(store_err)?;
        self.audit.record(
            "workspace_stopped",
            json!({"workspace": ws.id, "token": tok.id}),
        );
        Ok(reply(Verdict::Ok, ws.public()))
    }

    pub(super) fn create(
        &self,
        tok: &TokenRecord,
        spec: Value,
        what: &str,
    ) -> Result<Outcome, Outcome> {
        self.need(tok, Scope::Create, what)?;
        if tok.workspace_ids.is_some() {
            return Err(self.refuse(
                Verdict::Forbidden,
                "a token limited to given workspaces cannot create new ones",
                Some(&tok.id),
                what,
            ));
        }
        let mut spec: WorkspaceSpec = serde_json::from_value(spec)
            .map_err(|e| error(Verdict::Invalid, format!("workspace request: {e}")))?;
        for (k, v) in &tok.labels {
            match spec.labels.get(k) {
                Some(x) if x != v => {
                    return Err(error(
                        Verdict::Invalid,
                        format!("labels: this token only creates workspaces with {k}={v}"),
                    ))
                }
                _ => {
                    spec.labels.insert(k.clone(), v.clone());
                }
            }
        }
        let problems = spec.problems();
        if !problems.is_empty() {
            return Err(error(Verdict::Invalid, problems.join("; ")));
        }
        if let Some(why) = ttl::past_quota(tok, spec.ttl_s) {
            if tok.rule(crate::tokens::Yellow::ExtendTtl) != crate::tokens::ActionRule::Allow {
                return Err(self.refuse(
                    Verdict::Forbidden,
                    &format!("{why}: create it with at most that, then ask for more (POST /v1/workspaces/{{id}}/ttl)"),
                    Some(&tok.id),
                    what,
                ));
            }
        }
        // What egress a workspace starts with is the creating token's to
        // grant only within what it was granted (admins: any).
        tok.may_grant(&spec.egress)
            .map_err(|e| self.refuse(Verdict::Forbidden, &e.to_string(), Some(&tok.id), what))?;
        // A quarantine only an admin may end and whose snapshot outlives
        // the workspace is an admin's to ask for, by a signal too.
        let quarantines = paddock_api_types::signals::SIGNALS.iter().any(|s| {
            spec.signals.rule(s).map(|r| r.action)
                == Some(paddock_api_types::SignalAction::Quarantine)
        });
        if quarantines && !tok.has(Scope::Admin) {
            return Err(self.refuse(
                Verdict::Forbidden,
                "signals: the quarantine action needs the admin scope (use stop)",
                Some(&tok.id),
                what,
            ));
        }
        let Some(template_dev) = self.template_dev.clone() else {
            return Err(error(
                Verdict::Unavailable,
                "this image has no template partition",
            ));
        };
        if spec.test_unencrypted_disk && !self.probes_on() {
            return Err(error(
                Verdict::Invalid,
                "test_unencrypted_disk: only test images make unencrypted disks",
            ));
        }
        let ws = {
            let _g = self.admission.lock().unwrap_or_else(|e| e.into_inner());
            // A workspace being resumed holds its place already.
            let all = self.as_admitted(
                self.store
                    .list::<WorkspaceRecord>(WORKSPACES)
                    .map_err(store_err)?,
            );
            if let Some(why) =
                self.tree()
                    .quota_problem(tok, &all, spec.vcpus, spec.memory_mib, spec.disk_mib)
            {
                return Err(self.refuse(Verdict::Conflict, &why, Some(&tok.id), what));
            }
            let used_mem = self.live_memory_mib(&all);
            let mem_cap = mem_total_mib().saturating_sub(HOST_RESERVE_MIB);
            if used_mem + spec.memory_mib + crate::limits::VMM_OVERHEAD_MIB > mem_cap {
                return Err(self.refuse(
                    Verdict::Conflict,
                    &format!(
                        "capacity: {} MiB of memory requested, {} MiB free for workspaces",
                        spec.memory_mib,
                        mem_cap.saturating_sub(used_mem)
                    ),
                    Some(&tok.id),
                    what,
                ));
            }
            let need = spec.disk_mib + crate::console::LOG_DISK_MIB + self.pausing_mib(&all);
            if let Err(why) = crate::space::Partition::now(&all).admits(need, false) {
                return Err(self.refuse(
                    Verdict::Conflict,
                    &format!("capacity: {} MiB of disk requested: {why}", spec.disk_mib),
                    Some(&tok.id),
                    what,
                ));
            }
            // Last, so quota and capacity answers come first: a box whose
            // keys are locked still says what a request would exceed.
            if !spec.test_unencrypted_disk {
                if let Err(e) = paddock_keys::store().and_then(|s| s.check_ready()) {
                    return Err(error(Verdict::Unavailable, e.to_string()));
                }
            }
            let taken: Vec<u32> = all.iter().map(|w| w.uid).collect();
            let uid = (layout::WS_UID_BASE..)
                .find(|u| !taken.contains(u))
                .unwrap_or(layout::WS_UID_BASE);
            let now = now_s();
            let id = format!("ws_{}", crate::tokens::random_hex(6));
            let env_sealed = self.seal_env(&id, &spec.env)?;
            let (secrets, secrets_sealed) = self.seal_secrets(&id, &spec.secrets)?;
            let ws = WorkspaceRecord {
                id,
                owner: tok.id.clone(),
                template: spec.template.clone(),
                vcpus: spec.vcpus,
                memory_mib: spec.memory_mib,
                disk_mib: spec.disk_mib,
                labels: spec.labels.clone(),
                env: spec
                    .env
                    .keys()
                    .map(|k| (k.clone(), String::new()))
                    .collect(),
                env_sealed,
                created_at: now,
                expires_at: now + spec.ttl_s,
                state: WsState::Starting,
                uid,
                disk_mib_per_s: spec.disk_mib_per_s,
                disk_iops: spec.disk_iops,
                unencrypted_disk: spec.test_unencrypted_disk,
                egress: spec.egress.clone(),
                net_mib_per_s: spec.net_mib_per_s,
                net_connections_per_s: spec.net_connections_per_s,
                published: Vec::new(),
                signals: spec.signals,
                secrets,
                secrets_sealed,
                paused: None,
            };
            self.store.put(WORKSPACES, &ws.id, &ws).map_err(store_err)?;
            ws
        };
        // Its secrets reach the proxy before its first command can run.
        if let Err(e) = self.push_secrets(&ws) {
            let _ = runner::destroy(&ws.id);
            let _ = self.store.delete(WORKSPACES, &ws.id);
            return Err(e);
        }
        let started_at = std::time::Instant::now();
        match runner::start(&ws, &template_dev) {
            Ok(started) => {
                let start_ms = started_at.elapsed().as_millis() as u64;
                let from = if started.cloned { "snapshot" } else { "boot" };
                let mut ws = ws;
                ws.state = WsState::Running;
                self.store.put(WORKSPACES, &ws.id, &ws).map_err(store_err)?;
                self.audit.record("workspace_created", json!({"workspace": ws.id, "token": tok.id, "vcpus": ws.vcpus, "memory_mib": ws.memory_mib, "disk_mib": ws.disk_mib, "ttl_s": ws.expires_at - ws.created_at, "labels": ws.labels, "started_from": from, "start_ms": start_ms}));
                crate::metrics::count_start(started.cloned, start_ms);
                info!(
                    "workspace {} started from its {from} in {start_ms} ms (pid {}, uid {})",
                    ws.id, started.pid, ws.uid
                );
                Ok(reply(Verdict::Created, ws.public()))
            }
            Err(e) => {
                let _ = runner::destroy(&ws.id);
                let _ = self.store.delete(WORKSPACES, &ws.id);
                self.audit.record(
                    "workspace_failed",
                    json!({"workspace": ws.id, "token": tok.id, "reason": e.to_string()}),
                );
                Err(error(
                    Verdict::Unavailable,
                    format!("the workspace did not start: {e}"),
                ))
            }
        }
    }

    /// Encrypts a new workspace's env values under its (new) disk key.
    pub(super) fn seal_env(
        &self,
        id: &str,
        env: &std::collections::BTreeMap<String, String>,
    ) -> Result<Option<Vec<u8>>, Outcome> {
        if env.is_empty() {
            return Ok(None);
        }
        let name = layout::key_name(id);
        let store =
            paddock_keys::store().map_err(|e| error(Verdict::Unavailable, e.to_string()))?;
        let plain = serde_json::to_vec(env).map_err(|e| error(Verdict::Failed, e.to_string()))?;
        store
            .disk_key(&name)
            .and_then(|_| store.seal(&name, &plain))
            .map(Some)
            .map_err(|e| {
                error(
                    Verdict::Unavailable,
                    format!("sealing the workspace's env: {e}"),
                )
            })
    }

    /// A workspace's env values, decrypted for an exec.
    pub(super) fn open_env(
        &self,
        ws: &WorkspaceRecord,
    ) -> Result<std::collections::BTreeMap<String, String>, Outcome> {
        let mut env = self.open_plain_env(ws)?;
        // A brokered secret is there only as its placeholder.
        for s in &ws.secrets {
            env.insert(s.name.clone(), s.placeholder.clone());
        }
        Ok(env)
    }

    pub(super) fn open_plain_env(
        &self,
        ws: &WorkspaceRecord,
    ) -> Result<std::collections::BTreeMap<String, String>, Outcome> {
        let Some(sealed) = &ws.env_sealed else {
            return Ok(ws.env.clone());
        };
        let store =
            paddock_keys::store().map_err(|e| error(Verdict::Unavailable, e.to_string()))?;
        let plain = store
            .open_sealed(&layout::key_name(&ws.id), sealed)
            .map_err(|e| {
                error(
                    Verdict::Unavailable,
                    format!("opening the workspace's env: {e}"),
                )
            })?;
        serde_json::from_slice(&plain)
            .map_err(|e| error(Verdict::Failed, format!("the workspace's env: {e}")))
    }

    /// A quarantined workspace is evidence: only an admin stops or deletes it.
    pub(super) fn quarantine_is_admins(
        &self,
        tok: &TokenRecord,
        ws: &WorkspaceRecord,
        what: &str,
    ) -> Result<(), Outcome> {
        if ws.state == WsState::Quarantined && !tok.has(Scope::Admin) {
            return Err(self.refuse(
                Verdict::Forbidden,
                &format!(
                    "workspace {} is quarantined; only an admin may stop or delete it",
                    ws.id
                ),
                Some(&tok.id),
                what,
            ));
        }
        Ok(())
    }
}
