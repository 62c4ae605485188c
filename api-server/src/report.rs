//! `GET /v1/workspaces/{id}/report`: the control plane's part (record,
//! commands, signals, network) and, while it runs, what the workspace
//! changed on its disk against its template, asked of its agent here.

use crate::handling::{json_error, open_agent};
use crate::http::{self, status_of};
use crate::shared::{call, Shared};
use paddock_agent_client::AgentClient;
use paddock_api_channel::{Call, Purpose, Verdict};
use paddock_api_types::{FileChange, FileChanges, FileKind, WorkspaceReport, WorkspaceState};
use serde_json::Value;

/// Changes taken from an agent (a hostile one might send more).
const MAX_CHANGES: usize = 10_000;

pub fn report(shared: &Shared, req: &http::Request, id: &str) -> (u16, Value) {
    let (reply, _) = call(
        shared,
        &req.bearer,
        Call::WorkspaceReport { id: id.to_string() },
    );
    if reply.verdict != Verdict::Ok {
        return (status_of(reply.verdict), reply.body);
    }
    let mut report: WorkspaceReport = match serde_json::from_value(reply.body) {
        Ok(r) => r,
        Err(e) => return json_error(503, format!("host-init's report: {e}")),
    };
    report.files = if report.workspace.state == WorkspaceState::Running {
        changes(shared, &req.bearer, id)
    } else {
        unavailable(format!(
            "the workspace is {:?}; its agent lists its changes while it runs",
            report.workspace.state
        ))
    };
    match serde_json::to_value(&report) {
        Ok(v) => (200, v),
        Err(e) => json_error(500, format!("shaping the report: {e}")),
    }
}

fn unavailable(why: String) -> FileChanges {
    FileChanges {
        unavailable: Some(why),
        ..FileChanges::default()
    }
}

fn changes(shared: &Shared, bearer: &str, id: &str) -> FileChanges {
    let stream = match open_agent(shared, bearer, id, Purpose::Changes) {
        Ok((_, s)) => s,
        Err((_, body)) => {
            let why = body["error"].as_str().unwrap_or("refused").to_string();
            return unavailable(format!("its changed files: {why}"));
        }
    };
    let (listed, truncated) = match AgentClient::from_connected(stream).changes() {
        Ok(c) => c,
        Err(e) => return unavailable(format!("its agent: {e}")),
    };
    let more = listed.len() > MAX_CHANGES;
    FileChanges {
        changes: listed
            .into_iter()
            .take(MAX_CHANGES)
            .map(|c| FileChange {
                path: c.path,
                change: match c.kind {
                    paddock_proto::ChangeKind::Added => "added",
                    paddock_proto::ChangeKind::Modified => "modified",
                    paddock_proto::ChangeKind::Deleted => "deleted",
                }
                .into(),
                kind: match c.file_kind {
                    paddock_proto::FileKind::File => FileKind::File,
                    paddock_proto::FileKind::Dir => FileKind::Dir,
                    paddock_proto::FileKind::Symlink => FileKind::Symlink,
                    paddock_proto::FileKind::Other => FileKind::Other,
                },
                size: c.size,
            })
            .collect(),
        truncated: truncated || more,
        unavailable: None,
    }
}
