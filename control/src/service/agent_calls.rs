//! Opening a connection to a workspace's agent for the API process (an
//! exec, a file operation, a process call): who may, what is audited, and
//! the env that goes to execs only.

use super::{error, with_fd, Control, Outcome};
use crate::layout;
use crate::tokens::{Scope, TokenRecord};
use crate::workspace::WsState;
use paddock_api_channel::{Purpose, Verdict};
use serde_json::json;

impl Control {
    /// A connection to a workspace's agent for the API process: checked against the purpose's scope, audited, with the env for execs.
    pub(super) fn open_agent(
        &self,
        tok: &TokenRecord,
        id: String,
        purpose: Purpose,
        what: &str,
    ) -> Result<Outcome, Outcome> {
        let scope = match purpose {
            // Changes lists names and sizes as the guest's root
            // sees them: as root file operations, it takes exec.
            Purpose::Exec { .. } | Purpose::Process { .. } | Purpose::Changes => Scope::Exec,
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
        let client = paddock_agent_client::AgentClient::new(layout::vsock_path(&ws.id));
        let stream = client
            .connect_raw()
            .map_err(|e| error(Verdict::Unavailable, format!("the workspace's agent: {e}")))?;
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
                use paddock_api_channel::ProcessAction as A;
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
        Ok(with_fd(json!({"env": env}), stream))
    }
}
