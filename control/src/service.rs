//! The control plane's decisions: who the caller is, whether they may
//! (without revealing whether a workspace they may not see exists), whether
//! the box has room, and then doing it and writing it down. Each answer is
//! a `Verdict` and a body; what that is in HTTP is the API process's
//! business (paddock_api_server::http::status_of).

use super::access::TokenTree;
use super::audit::{now_s, AuditLog};
use super::store::{Store, StoreError, TOKENS, WORKSPACES};
use super::tokens::{hash_secret, Scope, TokenRecord};
use super::workspace::{WorkspaceRecord, WsState};
use super::{layout, run_error, runner};
use log::{info, warn};
use paddock_api_channel::{Call, CallReply, Verdict};
use paddock_api_types::{AuditEvents, ErrorBody, WhoAmI, WorkspaceList};
use serde_json::json;
mod agent_calls;
mod approvals;
#[cfg(test)]
mod approvals_tests;
mod asked;
#[cfg(test)]
mod asked_attack_tests;
#[cfg(test)]
mod asked_tests;
mod backup_calls;
mod box_calls;
mod call_names;
mod housekeeping;
mod lifecycle;
mod links;
mod pause_calls;
#[cfg(test)]
mod pause_tests;
mod policy_calls;
mod ports;
mod probes;
mod quarantine;
mod reboot_pause;
mod report;
mod secret_calls;
mod signal_calls;
#[cfg(test)]
mod tests;
mod token_calls;
mod ttl;
mod update_calls;

use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The refusal for a workspace a token may not see (the API process
/// knows it by its text, so the channel holds it).
pub use paddock_api_channel::NO_SUCH_WORKSPACE;

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
    /// The host's own figures over the last hour.
    host_samples: super::host_samples::HostSampler,
    /// Each running workspace watched for the signals of a looping agent.
    signals: super::signals::Watch,
    /// Each workspace's command ends and fired signals, for its report
    /// (kept here, bounded, rather than searched for in the audit log).
    history: Mutex<std::collections::HashMap<String, report::History>>,
    /// Workspaces a pause or resume is under way on (pause_calls.rs).
    busy: Mutex<std::collections::HashMap<String, pause_calls::Busy>>,
    /// A backup being uploaded for a restore, or applied (backup_calls.rs).
    restore: Mutex<Option<backup_calls::Staged>>,
    /// One backup made at a time (each holds a file of its size).
    backing_up: Mutex<()>,
    /// Held for reading by every call but a restore's, for writing by the
    /// restore while it swaps the state: no call writes into the state it
    /// replaced, and none reads half of each.
    swap: std::sync::RwLock<()>,
    /// The box is shutting down: nothing new starts (creates, resumes,
    /// pauses, updates, backups, restores).
    closing: std::sync::atomic::AtomicBool,
}

/// The control plane, for what reaches it other than through the API
/// (the network services' reports of egress requests).
static INSTANCE: std::sync::OnceLock<Arc<Control>> = std::sync::OnceLock::new();

pub use reboot_pause::resume_after_reboot_soon;

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

/// An Ok answer with a descriptor passed back beside it (a file to send,
/// a file to fill, an agent connection).
fn with_fd(body: serde_json::Value, fd: impl Into<OwnedFd>) -> Outcome {
    Outcome {
        reply: CallReply {
            verdict: Verdict::Ok,
            body,
            fd: true,
        },
        stream: Some(fd.into()),
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
            busy: Mutex::new(std::collections::HashMap::new()),
            restore: Mutex::new(None),
            backing_up: Mutex::new(()),
            swap: std::sync::RwLock::new(()),
            closing: std::sync::atomic::AtomicBool::new(false),
            execs: Mutex::new(std::collections::HashMap::new()),
            tokens: std::sync::RwLock::new(tokens),
            expiry_retry: Mutex::new(std::collections::HashMap::new()),
            samples: Default::default(),
            host_samples: Default::default(),
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

    fn who_am_i(&self, tok: &TokenRecord) -> WhoAmI {
        WhoAmI {
            token: tok.id.clone(),
            admin: tok.has(Scope::Admin),
            tenant: self.tenant_of(tok),
            scopes: tok.scopes.clone(),
            expires_at: tok.expires_at,
        }
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

    /// The box begins to shut down: calls that would start something are
    /// refused from now on.
    pub fn begin_closing(&self) {
        self.closing
            .store(true, std::sync::atomic::Ordering::SeqCst);
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
        let what = call_names::what(&call);
        // A restore takes this for writing itself, once its backup is read
        // and checked; every other call waits while it swaps the state.
        let _gate = (!matches!(call, Call::ApplyRestore { .. }))
            .then(|| self.swap.read().unwrap_or_else(|e| e.into_inner()));
        let tok = match self.authenticate(auth, &what) {
            Ok(t) => t,
            Err(o) => return o,
        };
        if self.closing.load(std::sync::atomic::Ordering::SeqCst)
            && call_names::starts_something(&call)
        {
            return error(
                Verdict::Unavailable,
                "the box is shutting down (or rebooting into an update): nothing new starts",
            );
        }
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
            Call::DeleteWorkspace { id } => self.delete_workspace(tok, id, what),
            Call::StopWorkspace { id } => self.stop_workspace(tok, id, what),
            Call::PauseWorkspace { id, ttl_s } => self.pause_workspace(tok, &id, ttl_s, what),
            Call::ResumeWorkspace { id } => self.resume_workspace(tok, &id, what),
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
            Call::ForensicFile { id, name } => self.forensic_file(tok, id, name, what),
            Call::DeleteForensics { id } => self.delete_forensics(tok, id, what),
            Call::OpenAgent { id, purpose } => self.open_agent(tok, id, purpose, what),
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
            Call::RotateTls => self.rotate_tls(tok, what),
            Call::KeyStatus => self.key_status(tok, what),
            Call::SystemStatus => self.system_status(tok, what),
            Call::HostMetrics { since } => self.host_metrics(tok, since, what),
            Call::StageUpdate { bytes } => self.stage_update(tok, bytes, what),
            Call::ApplyUpdate { reboot_at, force } => {
                self.apply_update(tok, reboot_at, force, what)
            }
            Call::AbandonUpdate => self.abandon_update(tok, what),
            Call::MakeBackup => self.make_backup(tok, what),
            Call::StageRestore { bytes } => self.stage_restore(tok, bytes, what),
            Call::ApplyRestore {
                staged,
                recovery_secret,
            } => self.apply_restore(tok, staged, recovery_secret, what),
            Call::AbandonRestore { staged } => self.abandon_restore(tok, staged, what),
            Call::RecoverKeys { secret } => self.recover_keys(tok, secret, what),
            call @ (Call::ScanProcesses { .. }
            | Call::DropCaches
            | Call::KillNetServices
            | Call::ReadConsole { .. }
            | Call::ProbeDisk { .. }) => self.probe(tok, call, what),
            Call::WhoAmI => Ok(reply(Verdict::Ok, self.who_am_i(tok))),
            Call::ConsoleSession { opened } => {
                let kind = if opened {
                    "console_signed_in"
                } else {
                    "console_signed_out"
                };
                self.audit
                    .record(kind, serde_json::json!({"token": tok.id}));
                Ok(reply(Verdict::Ok, self.who_am_i(tok)))
            }
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
                crate::host::get().flush_net_services();
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
}
