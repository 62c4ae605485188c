//! The control plane's decisions: who the caller is, whether they may
//! (without revealing whether a workspace they may not see exists), whether
//! the box has room, and then doing it and writing it down. Each answer is
//! a `Verdict` and a body; what that is in HTTP is the API process's
//! business (api::http::status_of).

use super::access::TokenTree;
use super::audit::{now_s, AuditLog};
use super::forensics;
use super::runner;
use super::store::{Store, StoreError, TOKENS, WORKSPACES};
use super::tokens::{hash_secret, Scope, TokenRecord};
use super::workspace::SpecProblems as _;
use super::workspace::{WorkspaceRecord, WorkspaceSpec, WsState};
use crate::api::channel::{Call, CallReply, Purpose, Verdict};
use crate::net::policy::CheckEgress as _;
use crate::{info, warn};
use paddock_api_types::{
    AuditEvents, Deleted, ErrorBody, KeyState, KeyStatus, TlsRotated, WhoAmI, WorkspaceList,
};
use serde_json::{json, Value};
mod approvals;
#[cfg(test)]
mod approvals_tests;
mod asked;
#[cfg(test)]
mod asked_attack_tests;
#[cfg(test)]
mod asked_tests;
mod links;
mod ports;
mod probes;
mod quarantine;
mod report;
mod secret_calls;
mod signal_calls;
#[cfg(test)]
mod tests;
mod token_calls;
mod ttl;

use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The refusal for a workspace a token may not see, whether or not it
/// exists (the two are not told apart).
pub const NO_SUCH_WORKSPACE: &str = "no such workspace for this token";

/// Host memory kept for host-init, the API and the kernel.
const HOST_RESERVE_MIB: u64 = 1024;
/// How often an expired workspace whose destruction failed is tried again.
const EXPIRY_RETRY_S: u64 = 60;

pub struct Control {
    store: Store,
    pub audit: AuditLog,
    template_dev: Option<String>,
    /// Where the API's TLS identity lives (rotated by an admin's call).
    state_dir: std::path::PathBuf,
    /// The test suite's diagnostics (config `test_probes`); off in products.
    test_probes: std::sync::atomic::AtomicBool,
    /// Admission (capacity and quota checks plus the record) is serial.
    admission: Mutex<()>,
    /// Execs started per workspace since boot, for /metrics.
    execs: Mutex<std::collections::HashMap<String, u64>>,
    /// Every token, indexed by id and by secret hash (control::access).
    tokens: std::sync::RwLock<TokenTree>,
    /// Workspaces whose TTL ended but whose destruction failed: when to try
    /// again (unix seconds). Their records stay until it succeeds.
    expiry_retry: Mutex<std::collections::HashMap<String, u64>>,
    /// Each running workspace's figures over the last hour.
    samples: super::samples::Sampler,
    /// Each running workspace watched for the signals of a looping agent.
    signals: super::signals::Watch,
    /// Each workspace's command ends and fired signals, for its report
    /// (kept here, bounded, rather than searched for in the audit log).
    history: Mutex<std::collections::HashMap<String, report::History>>,
}

/// The control plane, for what reaches it other than through the API
/// (the network services' reports of egress requests).
static INSTANCE: std::sync::OnceLock<Arc<Control>> = std::sync::OnceLock::new();

pub fn register(c: Arc<Control>) {
    let _ = INSTANCE.set(c);
}

pub fn instance() -> Option<Arc<Control>> {
    INSTANCE.get().cloned()
}

/// A reply plus, for OpenAgent, the connection to pass.
pub struct Outcome {
    pub reply: CallReply,
    /// A descriptor passed back with the reply: an agent connection, or a
    /// file to send.
    pub stream: Option<OwnedFd>,
}

/// An answer: a wire type of paddock_api_types (or, for the shapes it does
/// not hold yet, a JSON value).
fn reply(verdict: Verdict, body: impl serde::Serialize) -> Outcome {
    let (verdict, body) = match serde_json::to_value(body) {
        Ok(body) => (verdict, body),
        // Only a map with non-string keys fails, and none of ours has one.
        Err(e) => (
            Verdict::Failed,
            json!(ErrorBody::new(format!("shaping the answer: {e}"))),
        ),
    };
    Outcome {
        reply: CallReply {
            verdict,
            body,
            fd: false,
        },
        stream: None,
    }
}

fn error(verdict: Verdict, msg: impl Into<String>) -> Outcome {
    reply(verdict, ErrorBody::new(msg))
}

fn store_err(e: StoreError) -> Outcome {
    warn!("state database: {e}");
    error(
        Verdict::Failed,
        "the state database failed; nothing was changed",
    )
}

fn mem_total_mib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kb| kb / 1024)
        .unwrap_or(0)
}

impl Control {
    pub fn open(
        state_dir: &Path,
        audit_dir: &Path,
        template_dev: Option<String>,
    ) -> Result<Control, StoreError> {
        let store = Store::open(&state_dir.join("paddock.redb"))?;
        let tokens = TokenTree::new(store.list::<TokenRecord>(TOKENS)?);
        Ok(Control {
            store,
            audit: AuditLog::new(audit_dir, 16 << 20, 8),
            template_dev,
            state_dir: state_dir.to_path_buf(),
            test_probes: std::sync::atomic::AtomicBool::new(false),
            admission: Mutex::new(()),
            execs: Mutex::new(std::collections::HashMap::new()),
            tokens: std::sync::RwLock::new(tokens),
            expiry_retry: Mutex::new(std::collections::HashMap::new()),
            samples: Default::default(),
            signals: Default::default(),
            history: Default::default(),
        })
    }

    /// The token tree, for reading.
    fn tree(&self) -> std::sync::RwLockReadGuard<'_, TokenTree> {
        self.tokens.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The tenant a token acts for (control::access::TokenTree::tenant_of).
    pub fn tenant_of(&self, tok: &TokenRecord) -> String {
        self.tree().tenant_of(tok)
    }

    /// Serves the test suite's diagnostics from now on (config
    /// `test_probes`), if this build has them (feature `test-probes`);
    /// says whether it does.
    pub fn enable_test_probes(&self) -> bool {
        if !cfg!(feature = "test-probes") {
            return false;
        }
        self.test_probes
            .store(true, std::sync::atomic::Ordering::SeqCst);
        true
    }

    /// Whether this control plane serves the test suite's diagnostics.
    fn probes_on(&self) -> bool {
        self.test_probes.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Closes the database for shutdown.
    pub fn close(&self) {
        self.store.close();
    }

    /// Records the bootstrap admin credential (its hash) on first boot.
    pub fn add_bootstrap(&self, hash: &str) -> Result<(), StoreError> {
        let t = TokenRecord::bootstrap(hash, now_s());
        self.store.put(TOKENS, &t.id, &t)?;
        self.tokens
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(t.clone());
        self.audit.record(
            "token_issued",
            json!({"token": t.id, "name": t.name, "scopes": t.scopes}),
        );
        Ok(())
    }

    /// After a host reboot nothing is running: whatever was is lost, and
    /// its disk is removed rather than left behind.
    pub fn recover_after_boot(&self) {
        let Ok(all) = self.store.list::<WorkspaceRecord>(WORKSPACES) else {
            return;
        };
        // A directory no record names (the power went between the two) is
        // removed too: nothing on the data partition outlives its record.
        if let Ok(dirs) = std::fs::read_dir(runner::WORKSPACES_DIR) {
            for d in dirs.flatten() {
                let name = d.file_name().to_string_lossy().to_string();
                // The demo workspace is not in the database; it manages its own.
                if name != crate::demo::NAME && !all.iter().any(|w| w.id == name) {
                    let _ = runner::destroy(&name);
                    info!("removed workspace data {name} that no record names");
                }
            }
        }
        self.drop_all_links();
        for mut ws in all {
            if matches!(ws.state, WsState::Running | WsState::Starting) {
                let _ = runner::destroy(&ws.id);
                ws.state = WsState::Lost;
                let _ = self.store.put(WORKSPACES, &ws.id, &ws);
                self.audit.record("workspace_lost", json!({"workspace": ws.id, "reason": "the host restarted while it ran; its disk was removed"}));
                info!(
                    "workspace {} was running before the restart: marked lost, disk removed",
                    ws.id
                );
            }
        }
    }

    /// Samples every running workspace's figures every few seconds; runs
    /// forever.
    pub fn sample_loop(self: Arc<Self>) {
        loop {
            if let Ok(all) = self.store.list::<WorkspaceRecord>(WORKSPACES) {
                let now = now_s();
                self.samples.take(&all, now);
                self.watch_signals(&all, now);
                self.expire_approvals(now);
                self.forget_history(&all);
            }
            std::thread::sleep(Duration::from_secs(super::samples::EVERY_S));
        }
    }

    /// Destroys workspaces whose TTL passed; runs forever.
    pub fn expire_loop(self: Arc<Self>) {
        loop {
            std::thread::sleep(Duration::from_millis(500));
            self.expire_due(now_s(), runner::destroy);
        }
    }

    /// Destroys (with `destroy`) the workspaces whose TTL passed by `now`,
    /// except those whose last failed attempt asks to wait.
    fn expire_due(&self, now: u64, destroy: impl Fn(&str) -> Result<(), runner::RunError>) {
        let Ok(all) = self.store.list::<WorkspaceRecord>(WORKSPACES) else {
            return;
        };
        for ws in all.into_iter().filter(|w| {
            w.expires_at <= now && !matches!(w.state, WsState::Starting | WsState::Quarantined)
        }) {
            if self
                .expiry_retry
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&ws.id)
                .is_some_and(|t| *t > now)
            {
                continue;
            }
            if let Err(e) = destroy(&ws.id) {
                // The record stays: it is what names the disk and key
                // still to erase, and what lets an admin see and retry.
                let first = self
                    .expiry_retry
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(ws.id.clone(), now + EXPIRY_RETRY_S)
                    .is_none();
                if first {
                    self.audit.record(
                        "workspace_expiry_failed",
                        json!({"workspace": ws.id, "reason": e.to_string(), "retry_every_s": EXPIRY_RETRY_S}),
                    );
                }
                warn!(
                    "expiring {}: {e}; its record stays and it is retried",
                    ws.id
                );
                continue;
            }
            self.expiry_retry
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&ws.id);
            // Written before the record goes, so whoever sees it gone
            // finds the reason already in the log.
            self.audit.record(
                "workspace_expired",
                json!({"workspace": ws.id, "owner": ws.owner, "ttl_ended_at": ws.expires_at}),
            );
            let _ = self.store.delete(WORKSPACES, &ws.id);
            self.drop_links_of(&ws.id);
            info!("workspace {} expired (TTL) and was destroyed", ws.id);
        }
    }

    fn refuse(&self, verdict: Verdict, why: &str, token: Option<&str>, what: &str) -> Outcome {
        self.audit.record(
            "request_refused",
            json!({"refusal": verdict, "reason": why, "token": token, "request": what}),
        );
        error(verdict, why)
    }

    fn authenticate(&self, secret: &str, what: &str) -> Result<TokenRecord, Outcome> {
        if secret.is_empty() {
            return Err(self.refuse(Verdict::Unauthenticated, "missing bearer token", None, what));
        }
        let hash = hash_secret(secret);
        let tree = self.tree();
        let Some(tok) = tree.by_hash(&hash).cloned() else {
            drop(tree);
            return Err(self.refuse(
                Verdict::Unauthenticated,
                "invalid, expired or revoked token",
                None,
                what,
            ));
        };
        // Revoking or expiring any ancestor ends every token minted under it.
        if !tree.is_live(&tok, now_s()) {
            drop(tree);
            return Err(self.refuse(
                Verdict::Unauthenticated,
                "invalid, expired or revoked token",
                Some(&tok.id),
                what,
            ));
        }
        Ok(tok)
    }

    fn need(&self, tok: &TokenRecord, scope: Scope, what: &str) -> Result<(), Outcome> {
        if tok.has(scope) {
            Ok(())
        } else {
            Err(self.refuse(
                Verdict::Forbidden,
                &format!("this token lacks the {scope:?} scope"),
                Some(&tok.id),
                what,
            ))
        }
    }

    fn workspace(
        &self,
        tok: &TokenRecord,
        id: &str,
        scope: Scope,
        what: &str,
    ) -> Result<WorkspaceRecord, Outcome> {
        self.need(tok, scope, what)?;
        let ws = self
            .store
            .get::<WorkspaceRecord>(WORKSPACES, id)
            .map_err(store_err)?;
        match ws {
            Some(w) if self.tree().sees(tok, &w) => Ok(w),
            None if tok.has(Scope::Admin) => {
                Err(error(Verdict::NotFound, format!("no workspace {id}")))
            }
            // The same answer whether it exists or not.
            _ => Err(self.refuse(Verdict::Forbidden, NO_SUCH_WORKSPACE, Some(&tok.id), what)),
        }
    }

    /// Every workspace the token may see (needs the read scope).
    fn visible(&self, tok: &TokenRecord, what: &str) -> Result<Vec<WorkspaceRecord>, Outcome> {
        self.need(tok, Scope::Read, what)?;
        let all = self
            .store
            .list::<WorkspaceRecord>(WORKSPACES)
            .map_err(store_err)?;
        let tree = self.tree();
        Ok(all.into_iter().filter(|w| tree.sees(tok, w)).collect())
    }

    pub fn call(&self, auth: &str, call: Call) -> Outcome {
        let what = match &call {
            Call::CreateWorkspace { .. } => "create_workspace".to_string(),
            Call::ListWorkspaces { .. } => "list_workspaces".into(),
            Call::GetWorkspace { id } => format!("get_workspace {id}"),
            Call::DeleteWorkspace { id } => format!("delete_workspace {id}"),
            Call::StopWorkspace { id } => format!("stop_workspace {id}"),
            Call::SetTtl { id, ttl_s, .. } => format!("set_ttl {id} {ttl_s}"),
            Call::QuarantineWorkspace { id } => format!("quarantine_workspace {id}"),
            Call::SetLimits { id, .. } => format!("set_limits {id}"),
            Call::SetEgress { id, .. } => format!("set_egress {id}"),
            Call::ListLinks => "list_links".into(),
            Call::PublishPort { id, .. } => format!("publish_port {id}"),
            Call::UnpublishPort { id, port } => format!("unpublish_port {id} {port}"),
            Call::CreateLink { .. } => "create_link".into(),
            Call::DeleteLink { id } => format!("delete_link {id}"),
            Call::ForensicFile { id, name } => format!("forensic_file {id} {name}"),
            Call::DeleteForensics { id } => format!("delete_forensics {id}"),
            Call::RotateToken { id } => format!("rotate_token {id}"),
            Call::RotateTls => "rotate_tls".into(),
            Call::KeyStatus => "key_status".into(),
            Call::RecoverKeys { .. } => "recover_keys".into(),
            Call::ScanProcesses { .. } => "scan_processes".into(),
            Call::ProbeDisk { id } => format!("probe_disk {id}"),
            Call::ReadConsole { name } => format!("read_console {name}"),
            Call::DropCaches => "drop_caches".into(),
            Call::KillNetServices => "kill_net_services".into(),
            Call::OpenAgent { id, .. } => format!("agent {id}"),
            Call::ExecEnded { id, .. } => format!("exec_ended {id}"),
            Call::CreateToken { .. } => "create_token".into(),
            Call::ListTokens => "list_tokens".into(),
            Call::RevokeToken { id } => format!("revoke_token {id}"),
            Call::ReadAudit { .. } => "read_audit".into(),
            Call::Metrics => "metrics".into(),
            Call::WorkspaceMetrics { id, .. } => format!("metrics of {id}"),
            Call::NetworkLog { id, .. } => format!("network log of {id}"),
            Call::WorkspaceReport { id } => format!("report of {id}"),
            Call::ListApprovals { .. } => "list_approvals".into(),
            Call::GetApproval { id } => format!("get_approval {id}"),
            Call::DecideApproval { id, .. } => format!("decide_approval {id}"),
            Call::ListSecrets { id } => format!("list_secrets {id}"),
            Call::SetSecret { id, name, .. } => format!("set_secret {id} {name}"),
            Call::RemoveSecret { id, name } => format!("remove_secret {id} {name}"),
            Call::WhoAmI => "whoami".into(),
        };
        let tok = match self.authenticate(auth, &what) {
            Ok(t) => t,
            Err(o) => return o,
        };
        match self.dispatch(&tok, call, &what) {
            Ok(o) | Err(o) => o,
        }
    }

    fn dispatch(&self, tok: &TokenRecord, call: Call, what: &str) -> Result<Outcome, Outcome> {
        match call {
            Call::CreateWorkspace { spec } => self.create(tok, spec, what),
            Call::ListWorkspaces { labels } => {
                let workspaces = self
                    .visible(tok, what)?
                    .iter()
                    .filter(|w| labels.iter().all(|(k, v)| w.labels.get(k) == Some(v)))
                    .map(WorkspaceRecord::public)
                    .collect();
                Ok(reply(Verdict::Ok, WorkspaceList { workspaces }))
            }
            Call::GetWorkspace { id } => Ok(reply(
                Verdict::Ok,
                self.workspace(tok, &id, Scope::Read, what)?.public(),
            )),
            Call::DeleteWorkspace { id } => {
                let ws = self.workspace(tok, &id, Scope::Delete, what)?;
                self.quarantine_is_admins(tok, &ws, what)?;
                runner::destroy(&ws.id).map_err(|e| error(Verdict::Failed, e.to_string()))?;
                self.store.delete(WORKSPACES, &ws.id).map_err(store_err)?;
                self.drop_links_of(&ws.id);
                self.audit.record(
                    "workspace_deleted",
                    json!({"workspace": ws.id, "token": tok.id}),
                );
                Ok(reply(Verdict::Ok, Deleted { deleted: ws.id }))
            }
            Call::StopWorkspace { id } => {
                let mut ws = self.workspace(tok, &id, Scope::Delete, what)?;
                self.quarantine_is_admins(tok, &ws, what)?;
                runner::stop(&ws.id);
                ws.state = WsState::Stopped;
                self.store.put(WORKSPACES, &ws.id, &ws).map_err(store_err)?;
                self.audit.record(
                    "workspace_stopped",
                    json!({"workspace": ws.id, "token": tok.id}),
                );
                Ok(reply(Verdict::Ok, ws.public()))
            }
            Call::SetTtl { id, ttl_s, reason } => self.set_ttl(tok, &id, ttl_s, reason, what),
            Call::SetLimits { id, request } => {
                self.need(tok, Scope::Admin, what)?;
                let ws = self.workspace(tok, &id, Scope::Admin, what)?;
                self.set_limits(tok, ws, request)
            }
            Call::ListLinks => self.list_links(tok, what),
            Call::PublishPort { id, request } => self.publish_port(tok, &id, request, what),
            Call::UnpublishPort { id, port } => self.unpublish_port(tok, &id, &port, what),
            Call::CreateLink { request } => self.create_link(tok, request, what),
            Call::DeleteLink { id } => self.delete_link(tok, &id, what),
            Call::SetEgress { id, request } => {
                self.need(tok, Scope::Admin, what)?;
                let ws = self.workspace(tok, &id, Scope::Admin, what)?;
                self.set_egress(tok, ws, request)
            }
            Call::QuarantineWorkspace { id } => {
                self.need(tok, Scope::Admin, what)?;
                let ws = self.workspace(tok, &id, Scope::Admin, what)?;
                self.quarantine(&tok.id, ws)
            }
            Call::ForensicFile { id, name } => {
                self.need(tok, Scope::Admin, what)?;
                if forensics::file(&id, &name).is_none() {
                    return Err(error(
                        Verdict::NotFound,
                        format!("no forensic {name:?} for workspace {id} (files: manifest, memory, disk, audit, network)"),
                    ));
                }
                let mut f = forensics::open(&id, &name).map_err(|e| {
                    error(
                        Verdict::Failed,
                        format!("opening forensic {name} of {id}: {e}"),
                    )
                })?;
                let path = forensics::snapshot_dir(&id).join(&name);
                let bytes = forensics::size(&mut f).map_err(|e| {
                    error(Verdict::Failed, format!("sizing {}: {e}", path.display()))
                })?;
                self.audit.record(
                    "forensics_read",
                    json!({"workspace": id, "token": tok.id, "file": name}),
                );
                Ok(Outcome {
                    reply: CallReply {
                        verdict: Verdict::Ok,
                        body: json!({"bytes": bytes}),
                        fd: true,
                    },
                    stream: Some(f.into()),
                })
            }
            Call::DeleteForensics { id } => {
                self.need(tok, Scope::Admin, what)?;
                match forensics::delete(&id) {
                    Ok(true) => {
                        self.audit.record(
                            "forensics_deleted",
                            json!({"workspace": id, "token": tok.id}),
                        );
                        Ok(reply(Verdict::Ok, Deleted { deleted: id }))
                    }
                    Ok(false) => Err(error(
                        Verdict::NotFound,
                        format!("no forensic snapshot of {id}"),
                    )),
                    Err(e) => Err(error(Verdict::Failed, e.to_string())),
                }
            }
            Call::OpenAgent { id, purpose } => {
                let scope = match purpose {
                    // Changes lists names and sizes as the guest's root
                    // sees them: as root file operations, it takes exec.
                    Purpose::Exec { .. } | Purpose::Process { .. } | Purpose::Changes => {
                        Scope::Exec
                    }
                    _ => Scope::Files,
                };
                let ws = self.workspace(tok, &id, scope, what)?;
                // A file operation as the guest's root reads what its
                // commands hold (their environments: the workspace's
                // secrets) and plants setuid binaries: only for a token that
                // may run commands as root anyway.
                let as_root = matches!(
                    purpose,
                    Purpose::ReadFile { root: true, .. }
                        | Purpose::WriteFile { root: true, .. }
                        | Purpose::Inspect { root: true, .. }
                        | Purpose::Modify { root: true, .. }
                );
                if as_root && !tok.has(Scope::Exec) {
                    return Err(self.refuse(
                        Verdict::Forbidden,
                        "file operations as root need the exec scope too (files alone run as the agent user)",
                        Some(&tok.id),
                        what,
                    ));
                }
                if ws.state != WsState::Running {
                    return Err(error(
                        Verdict::Conflict,
                        format!("workspace {id} is {:?}, not running", ws.state),
                    ));
                }
                let client = paddock_agent_client::AgentClient::new(runner::vsock_path(&ws.id));
                let stream = client.connect_raw().map_err(|e| {
                    error(Verdict::Unavailable, format!("the workspace's agent: {e}"))
                })?;
                match &purpose {
                    Purpose::Exec {
                        argv0,
                        root,
                        terminal,
                    } => {
                        *self
                            .execs
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .entry(ws.id.clone())
                            .or_insert(0) += 1;
                        self.audit.record(
                            "exec_started",
                            json!({"workspace": ws.id, "token": tok.id, "argv0": argv0, "user": if *root { "root" } else { "agent" }, "terminal": terminal}),
                        )
                    }
                    Purpose::ReadFile { path, root } => self.audit.record(
                        "file_read",
                        json!({"workspace": ws.id, "token": tok.id, "path": path, "user": if *root { "root" } else { "agent" }}),
                    ),
                    Purpose::WriteFile { path, root } => self.audit.record(
                        "file_written",
                        json!({"workspace": ws.id, "token": tok.id, "path": path, "user": if *root { "root" } else { "agent" }}),
                    ),
                    Purpose::Modify { op, path, to, root } => self.audit.record(
                        "file_changed",
                        json!({"workspace": ws.id, "token": tok.id, "op": op, "path": path, "to": to, "user": if *root { "root" } else { "agent" }}),
                    ),
                    Purpose::Process { action, pid, tag } => {
                        use crate::api::channel::ProcessAction as A;
                        let (event, detail) = match action {
                            A::Input { bytes } => ("process_input", json!({"bytes": bytes})),
                            A::CloseInput => ("process_input_closed", json!({})),
                            A::Signal { signal } => ("process_signalled", json!({"signal": signal})),
                            A::Attach => ("process_attached", json!({})),
                            A::List | A::Resize => ("", json!({})),
                        };
                        if !event.is_empty() {
                            let mut fields = json!({"workspace": ws.id, "token": tok.id, "pid": pid, "tag": tag});
                            if let (Some(f), Some(d)) = (fields.as_object_mut(), detail.as_object()) {
                                f.extend(d.clone());
                            }
                            self.audit.record(event, fields);
                        }
                    }
                    Purpose::Inspect { .. } | Purpose::Changes => {}
                }
                // The env (the workspace's secrets) goes to execs only.
                let env = match purpose {
                    Purpose::Exec { .. } => self.open_env(&ws)?,
                    _ => Default::default(),
                };
                Ok(Outcome {
                    reply: CallReply {
                        verdict: Verdict::Ok,
                        body: json!({"env": env}),
                        fd: true,
                    },
                    stream: Some(stream.into()),
                })
            }
            Call::ExecEnded {
                id,
                argv0,
                exit_code,
                signal,
                duration_ms,
                command,
            } => {
                let ws = self.workspace(tok, &id, Scope::Exec, what)?;
                self.audit.record(
                    "exec_ended",
                    json!({"workspace": ws.id, "token": tok.id, "argv0": argv0, "exit_code": exit_code, "signal": signal, "duration_ms": duration_ms}),
                );
                self.remember_command(&ws.id, &argv0, exit_code, signal, duration_ms);
                let command = if command.is_empty() { argv0 } else { command };
                let failed = exit_code != Some(0);
                if let Some(f) =
                    self.signals
                        .command_ended(&ws.id, &ws.signals, now_s(), &command, failed)
                {
                    self.fire(f);
                }
                Ok(reply(Verdict::Ok, json!({})))
            }
            Call::CreateToken { request } => self.mint_token(tok, request, what),
            Call::ListTokens => self.list_tokens(tok, what),
            Call::RevokeToken { id } => self.revoke_token(tok, &id, what),
            Call::RotateToken { id } => self.rotate_token(tok, &id, what),
            Call::RotateTls => {
                self.need(tok, Scope::Admin, what)?;
                let id = crate::tls::rotate(&self.state_dir).map_err(|e| {
                    error(Verdict::Failed, format!("rotating the TLS identity: {e}"))
                })?;
                crate::api::supervisor::replace_identity(&id.cert_pem, &id.key_pem);
                crate::status::SCREEN.update(|s| s.fingerprint = Some(id.fingerprint.clone()));
                self.audit.record(
                    "tls_rotated",
                    json!({"by": tok.id, "fingerprint": id.fingerprint}),
                );
                warn!(
                    "API TLS certificate rotated; new SHA-256 {}",
                    id.fingerprint
                );
                // This answer goes out through the API process serving the
                // old certificate; it is restarted with the new one once it
                // has had time to send it.
                crate::api::supervisor::restart_soon(Duration::from_millis(750));
                Ok(reply(
                    Verdict::Ok,
                    TlsRotated {
                        fingerprint: id.fingerprint,
                        note: "the API restarts with the new certificate within 2 s; pin the new fingerprint".into(),
                    },
                ))
            }
            Call::KeyStatus => {
                self.need(tok, Scope::Admin, what)?;
                let store =
                    crate::keys::store().map_err(|e| error(Verdict::Unavailable, e.to_string()))?;
                let (state, detail) = store.summary();
                Ok(reply(Verdict::Ok, KeyStatus { state, detail }))
            }
            Call::RecoverKeys { secret } => {
                self.need(tok, Scope::Admin, what)?;
                let store =
                    crate::keys::store().map_err(|e| error(Verdict::Unavailable, e.to_string()))?;
                match store.recover(&secret) {
                    Ok(summary) => {
                        self.audit
                            .record("keys_recovered", json!({"by": tok.id, "result": summary}));
                        warn!("disk keys: {summary}");
                        crate::status::SCREEN.update(|s| s.keys = Some(summary.clone()));
                        Ok(reply(
                            Verdict::Ok,
                            KeyStatus {
                                state: KeyState::Ready,
                                detail: summary,
                            },
                        ))
                    }
                    Err(e) => {
                        self.audit.record(
                            "keys_recovery_refused",
                            json!({"by": tok.id, "reason": e.to_string()}),
                        );
                        let verdict = match e {
                            crate::keys::KeyError::WrongRecovery => Verdict::Forbidden,
                            crate::keys::KeyError::NotLocked => Verdict::Conflict,
                            _ => Verdict::Failed,
                        };
                        Err(error(verdict, e.to_string()))
                    }
                }
            }
            call @ (Call::ScanProcesses { .. }
            | Call::DropCaches
            | Call::KillNetServices
            | Call::ReadConsole { .. }
            | Call::ProbeDisk { .. }) => self.probe(tok, call, what),
            Call::WhoAmI => Ok(reply(
                Verdict::Ok,
                WhoAmI {
                    token: tok.id.clone(),
                    admin: tok.has(Scope::Admin),
                    tenant: self.tenant_of(tok),
                },
            )),
            Call::ListApprovals { state } => self.list_approvals(tok, state),
            Call::GetApproval { id } => self.get_approval(tok, &id),
            Call::DecideApproval { id, request } => self.decide_approval(tok, &id, request, what),
            Call::ListSecrets { id } => self.list_secrets(tok, &id, what),
            Call::SetSecret { id, name, request } => {
                self.set_secret(tok, &id, &name, request, what)
            }
            Call::RemoveSecret { id, name } => self.remove_secret(tok, &id, &name, what),
            Call::WorkspaceReport { id } => {
                let ws = self.workspace(tok, &id, Scope::Read, what)?;
                Ok(reply(Verdict::Ok, self.report(&ws)))
            }
            Call::NetworkLog {
                id,
                since,
                decision,
                limit,
            } => {
                let ws = self.workspace(tok, &id, Scope::Read, what)?;
                Ok(reply(
                    Verdict::Ok,
                    paddock_api_types::NetworkLog {
                        records: super::netlog::read(&ws.id, since, decision.as_deref(), limit),
                    },
                ))
            }
            Call::WorkspaceMetrics { id, since } => {
                let ws = self.workspace(tok, &id, Scope::Read, what)?;
                Ok(reply(
                    Verdict::Ok,
                    paddock_api_types::WorkspaceMetrics {
                        samples: self.samples.series(&ws.id, since),
                    },
                ))
            }
            Call::Metrics => {
                let visible = self.visible(tok, what)?;
                let execs = self.execs.lock().unwrap_or_else(|e| e.into_inner()).clone();
                // The resolver's and the proxy's refusals, up to now.
                crate::net_services::flush();
                let mut text = super::metrics::render(&visible, &execs);
                self.render_signals(&visible, &mut text);
                Ok(reply(Verdict::Ok, json!({ "text": text })))
            }
            Call::ReadAudit { filters, limit } => {
                self.need(tok, Scope::Admin, what)?;
                Ok(reply(
                    Verdict::Ok,
                    AuditEvents {
                        events: self.audit.read(&filters, limit.clamp(1, 10_000)),
                    },
                ))
            }
        }
    }

    /// A quarantined workspace is evidence: only an admin stops or deletes it.
    fn quarantine_is_admins(
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

    /// New rate limits on a running workspace's disk, applied by its VMM
    /// before the guest's next request and kept in its record.
    fn set_limits(
        &self,
        tok: &TokenRecord,
        mut ws: WorkspaceRecord,
        request: Value,
    ) -> Result<Outcome, Outcome> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct LimitsRequest {
            disk_mib_per_s: Option<u64>,
            disk_iops: Option<u64>,
            net_mib_per_s: Option<u64>,
            net_connections_per_s: Option<u64>,
        }
        let req: LimitsRequest = serde_json::from_value(request)
            .map_err(|e| error(Verdict::Invalid, format!("limits request: {e}")))?;
        let disk = req.disk_mib_per_s.is_some() || req.disk_iops.is_some();
        let net = req.net_mib_per_s.is_some() || req.net_connections_per_s.is_some();
        if !disk && !net {
            return Err(error(
                Verdict::Invalid,
                "give one or more of disk_mib_per_s, disk_iops, net_mib_per_s, net_connections_per_s",
            ));
        }
        // The same bounds as at create.
        let mut check = super::workspace::spec_for_limits(ws.vcpus);
        check.disk_mib_per_s = req.disk_mib_per_s;
        check.disk_iops = req.disk_iops;
        check.net_mib_per_s = req.net_mib_per_s;
        check.net_connections_per_s = req.net_connections_per_s;
        let problems: Vec<String> = check
            .problems()
            .into_iter()
            .filter(|p| p.starts_with("disk_") || p.starts_with("net_"))
            .collect();
        if !problems.is_empty() {
            return Err(error(Verdict::Invalid, problems.join("; ")));
        }
        if ws.state != WsState::Running {
            return Err(error(
                Verdict::Conflict,
                format!("workspace {} is {:?}, not running", ws.id, ws.state),
            ));
        }
        if req.disk_mib_per_s.is_some() {
            ws.disk_mib_per_s = req.disk_mib_per_s;
        }
        if req.disk_iops.is_some() {
            ws.disk_iops = req.disk_iops;
        }
        if req.net_mib_per_s.is_some() {
            ws.net_mib_per_s = req.net_mib_per_s;
        }
        if req.net_connections_per_s.is_some() {
            ws.net_connections_per_s = req.net_connections_per_s;
        }
        let limits = super::limits::Limits::for_workspace(&ws);
        if disk {
            runner::set_rate(&ws.id, "data", limits.disk_bps, Some(limits.disk_iops))
                .map_err(|e| error(Verdict::Unavailable, e.to_string()))?;
        }
        if req.net_mib_per_s.is_some() {
            runner::set_rate(&ws.id, "net", limits.net_bps, None)
                .map_err(|e| error(Verdict::Unavailable, e.to_string()))?;
        }
        if req.net_connections_per_s.is_some() {
            if let Some(slot) = runner::slot(&ws) {
                let entry = runner::ws_net(&ws, slot)
                    .map_err(|e| error(Verdict::Unavailable, e.to_string()))?;
                crate::net::firewall::set(entry)
                    .map_err(|e| error(Verdict::Unavailable, e.to_string()))?;
            }
        }
        self.store.put(WORKSPACES, &ws.id, &ws).map_err(store_err)?;
        self.audit.record(
            "workspace_limits_changed",
            json!({"workspace": ws.id, "token": tok.id, "disk_bytes_per_s": limits.disk_bps, "disk_ops_per_s": limits.disk_iops, "net_bytes_per_s": limits.net_bps, "net_connections_per_s": limits.net_connections_per_s}),
        );
        Ok(reply(Verdict::Ok, ws.public()))
    }

    /// Replaces a workspace's egress allowlist; a running workspace's
    /// firewall, resolver and proxy use the new one when this returns.
    fn set_egress(
        &self,
        tok: &TokenRecord,
        mut ws: WorkspaceRecord,
        request: Value,
    ) -> Result<Outcome, Outcome> {
        let req: crate::net::policy::EgressRequest = serde_json::from_value(request)
            .map_err(|e| error(Verdict::Invalid, format!("egress request: {e}")))?;
        req.check()
            .map_err(|p| error(Verdict::Invalid, p.join("; ")))?;
        let (changed, before) = self.change_egress(&ws.id, |e| {
            *e = req;
            Ok(())
        })?;
        ws = changed;
        self.audit.record(
            "workspace_egress_changed",
            json!({"workspace": ws.id, "token": tok.id, "before": before, "after": ws.egress}),
        );
        Ok(reply(Verdict::Ok, ws.public()))
    }

    /// Changes a workspace's allowlist in one transaction (a running or
    /// stopped workspace only; `change` may refuse, with the verdict), then
    /// puts it in force if it runs; if that fails the change is undone.
    /// The record as changed, and the allowlist before.
    pub(super) fn change_egress(
        &self,
        id: &str,
        change: impl FnOnce(&mut crate::net::policy::EgressRequest) -> Result<(), (Verdict, String)>,
    ) -> Result<(WorkspaceRecord, crate::net::policy::EgressRequest), Outcome> {
        let mut before = None;
        let changed = self
            .store
            .update(WORKSPACES, id, |w: &mut WorkspaceRecord| {
                if !matches!(w.state, WsState::Running | WsState::Stopped) {
                    return Err((
                        Verdict::Conflict,
                        format!("workspace {} is {:?}", w.id, w.state),
                    ));
                }
                before = Some(w.egress.clone());
                change(&mut w.egress)?;
                w.egress
                    .check()
                    .map(|_| ())
                    .map_err(|p| (Verdict::Invalid, p.join("; ")))
            })
            .map_err(store_err)?;
        let ws = match changed {
            None => return Err(error(Verdict::NotFound, format!("no workspace {id}"))),
            Some(Err((verdict, why))) => return Err(error(verdict, why)),
            Some(Ok(ws)) => ws,
        };
        let before = before.unwrap_or_default();
        if ws.state == WsState::Running {
            if let Some(slot) = runner::slot(&ws) {
                let enforced = runner::ws_net(&ws, slot)
                    .map_err(|e| e.to_string())
                    .and_then(|entry| crate::net::firewall::set(entry).map_err(|e| e.to_string()));
                if let Err(e) = enforced {
                    let undo = before.clone();
                    let _ = self
                        .store
                        .update(WORKSPACES, id, |w: &mut WorkspaceRecord| {
                            w.egress = undo;
                            Ok::<(), ()>(())
                        });
                    return Err(error(Verdict::Unavailable, e));
                }
            }
        }
        Ok((ws, before))
    }

    /// Encrypts a new workspace's env values under its (new) disk key.
    fn seal_env(
        &self,
        id: &str,
        env: &std::collections::BTreeMap<String, String>,
    ) -> Result<Option<Vec<u8>>, Outcome> {
        if env.is_empty() {
            return Ok(None);
        }
        let name = runner::key_name(id);
        let store = crate::keys::store().map_err(|e| error(Verdict::Unavailable, e.to_string()))?;
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
    fn open_env(
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

    fn open_plain_env(
        &self,
        ws: &WorkspaceRecord,
    ) -> Result<std::collections::BTreeMap<String, String>, Outcome> {
        let Some(sealed) = &ws.env_sealed else {
            return Ok(ws.env.clone());
        };
        let store = crate::keys::store().map_err(|e| error(Verdict::Unavailable, e.to_string()))?;
        let plain = store
            .open_sealed(&runner::key_name(&ws.id), sealed)
            .map_err(|e| {
                error(
                    Verdict::Unavailable,
                    format!("opening the workspace's env: {e}"),
                )
            })?;
        serde_json::from_slice(&plain)
            .map_err(|e| error(Verdict::Failed, format!("the workspace's env: {e}")))
    }

    fn create(&self, tok: &TokenRecord, spec: Value, what: &str) -> Result<Outcome, Outcome> {
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
            if tok.rule(super::tokens::Yellow::ExtendTtl) != super::tokens::ActionRule::Allow {
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
            let all = self
                .store
                .list::<WorkspaceRecord>(WORKSPACES)
                .map_err(store_err)?;
            let live: Vec<&WorkspaceRecord> = all
                .iter()
                .filter(|w| matches!(w.state, WsState::Running | WsState::Starting))
                .collect();
            if let Some(why) =
                self.tree()
                    .quota_problem(tok, &all, spec.vcpus, spec.memory_mib, spec.disk_mib)
            {
                return Err(self.refuse(Verdict::Conflict, &why, Some(&tok.id), what));
            }
            let used_mem: u64 = live
                .iter()
                .map(|w| w.memory_mib + super::limits::VMM_OVERHEAD_MIB)
                .sum();
            let mem_cap = mem_total_mib().saturating_sub(HOST_RESERVE_MIB);
            if used_mem + spec.memory_mib + super::limits::VMM_OVERHEAD_MIB > mem_cap {
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
            let need = spec.disk_mib + super::console::LOG_DISK_MIB;
            if let Err(why) = super::space::Partition::now(&all).admits(need, false) {
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
                if let Err(e) = crate::keys::store().and_then(|s| s.check_ready()) {
                    return Err(error(Verdict::Unavailable, e.to_string()));
                }
            }
            let taken: Vec<u32> = all.iter().map(|w| w.uid).collect();
            let uid = (runner::WS_UID_BASE..)
                .find(|u| !taken.contains(u))
                .unwrap_or(runner::WS_UID_BASE);
            let now = now_s();
            let id = format!("ws_{}", super::tokens::random_hex(6));
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
        match runner::start(&ws, &template_dev) {
            Ok((pid, _)) => {
                let mut ws = ws;
                ws.state = WsState::Running;
                self.store.put(WORKSPACES, &ws.id, &ws).map_err(store_err)?;
                self.audit.record("workspace_created", json!({"workspace": ws.id, "token": tok.id, "vcpus": ws.vcpus, "memory_mib": ws.memory_mib, "disk_mib": ws.disk_mib, "ttl_s": ws.expires_at - ws.created_at, "labels": ws.labels}));
                info!("workspace {} started (pid {pid}, uid {})", ws.id, ws.uid);
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
}
