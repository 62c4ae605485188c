//! E2B's pause and resume on a Paddock box: `POST /sandboxes/{id}/pause`,
//! the older `POST /sandboxes/{id}/resume`, and `connect` on a paused
//! sandbox, each the native pause or resume (control/src/pausing.rs) with
//! E2B's answers. What E2B offers and Paddock does not (a resume that
//! reboots instead of restoring memory, a pause that keeps no memory) is
//! refused with the reason, never done another way.

use crate::bridge::Exchange;
use crate::e2b::{ask, error, reshaped};
use crate::handling::read_optional_json;
use crate::http;
use crate::shared::Shared;
use paddock_api_channel::Call;
use paddock_api_types::{Workspace, WorkspaceState};
use serde::Deserialize;
use serde_json::Value;

/// Pause's body (E2B's `SandboxPauseRequest`), all of it optional; older
/// SDKs send none.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PauseBody {
    /// false: keep the disk only. A Paddock pause always keeps memory.
    #[serde(default)]
    memory: Option<bool>,
    /// Pause only a guest that answers: Paddock's pause always needs the
    /// VMM to answer, and refuses otherwise.
    #[serde(default)]
    require_healthy_guest: Option<bool>,
}

/// The older resume's body (`ResumedSandbox`).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ResumeBody {
    #[serde(default)]
    timeout: Option<u64>,
    #[serde(default)]
    auto_pause: Option<bool>,
}

fn workspace_any(shared: &Shared, bearer: &str, id: &str) -> Result<Workspace, (u16, Value)> {
    let v = ask(shared, bearer, Call::GetWorkspace { id: id.to_string() })?;
    serde_json::from_value(v).map_err(|e| error(503, format!("host-init's answer: {e}")))
}

/// `POST /sandboxes/{id}/pause`: 204; 409 when it is paused already (the
/// SDK's "already paused"), 404 when this key cannot see it.
pub fn pause(shared: &Shared, req: &http::Request, io: &mut Exchange, id: &str) -> (u16, Value) {
    let body: PauseBody = match read_optional_json(req, io) {
        Ok(b) => b.unwrap_or_default(),
        Err(refusal) => return reshaped(refusal),
    };
    let _ = body.require_healthy_guest;
    if body.memory == Some(false) {
        return error(
            501,
            "a pause without memory: Paddock's pause keeps the VM's memory (send memory: true or nothing)",
        );
    }
    let ws = match workspace_any(shared, &req.bearer, id) {
        Ok(ws) => ws,
        Err(e) => return e,
    };
    match ws.state {
        WorkspaceState::Paused => return error(409, format!("sandbox {id} is already paused")),
        WorkspaceState::Running => {}
        other => return error(404, format!("sandbox {id} is {other:?}")),
    }
    let c = Call::PauseWorkspace {
        id: id.to_string(),
        ttl_s: None,
    };
    match ask(shared, &req.bearer, c) {
        Ok(_) => (204, Value::Null),
        // Anything else that is "not now" (no room on the data partition,
        // a pause under way) is not "already paused" to the SDK.
        Err((409, body)) => (503, body),
        Err(e) => e,
    }
}

/// A paused sandbox started again, its end `timeout` from now if given
/// (for `connect` and the older `resume`). Answers the running workspace.
pub fn resume_paused(
    shared: &Shared,
    bearer: &str,
    id: &str,
    timeout: Option<u64>,
) -> Result<Workspace, (u16, Value)> {
    let v = ask(shared, bearer, Call::ResumeWorkspace { id: id.to_string() })?;
    let mut ws: Workspace =
        serde_json::from_value(v).map_err(|e| error(503, format!("host-init's answer: {e}")))?;
    if let Some(t) = timeout.filter(|t| *t > 0) {
        let c = Call::SetTtl {
            id: id.to_string(),
            ttl_s: t,
            reason: None,
        };
        let v = ask(shared, bearer, c)?;
        ws = serde_json::from_value(v)
            .map_err(|e| error(503, format!("host-init's answer: {e}")))?;
    }
    Ok(ws)
}

/// `POST /sandboxes/{id}/resume` (older SDKs): 201 and the sandbox; 409
/// when it is not paused.
pub fn resume(shared: &Shared, req: &http::Request, io: &mut Exchange, id: &str) -> (u16, Value) {
    let body: ResumeBody = match read_optional_json(req, io) {
        Ok(b) => b.unwrap_or_default(),
        Err(refusal) => return reshaped(refusal),
    };
    if body.auto_pause == Some(true) {
        return error(
            501,
            "autoPause: Paddock does not pause a sandbox at its timeout; it ends then (pause it before)",
        );
    }
    let ws = match workspace_any(shared, &req.bearer, id) {
        Ok(ws) => ws,
        Err(e) => return e,
    };
    if ws.state != WorkspaceState::Paused {
        return error(409, format!("sandbox {id} is not paused"));
    }
    match resume_paused(shared, &req.bearer, id, body.timeout) {
        Ok(ws) => (201, crate::e2b::sandbox_of(shared, &ws, &req.bearer)),
        Err(e) => e,
    }
}
