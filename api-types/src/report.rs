//! `GET /v1/workspaces/{id}/report`: what a person reviews before trusting
//! what came out of a workspace: the commands it ran and how they ended,
//! the signals it raised, where it connected, and what it changed on its
//! disk against its template.

use crate::{FileKind, Workspace};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceReport {
    pub workspace: Workspace,
    /// When the report was made, Unix seconds.
    pub generated_at: u64,
    /// Commands started (execs and processes, terminals included).
    pub commands_started: u64,
    /// How each command that ended ended, oldest first.
    pub commands: Vec<CommandRun>,
    /// Signals of a looping agent that fired.
    pub signals: Vec<FiredSignal>,
    pub network: NetworkSummary,
    pub files: FileChanges,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRun {
    /// When it ended, Unix seconds.
    pub at: u64,
    pub argv0: String,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub duration_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FiredSignal {
    pub at: u64,
    pub signal: String,
    pub value: u64,
    pub action: String,
}

/// Its network record added up.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSummary {
    pub lookups_allowed: u64,
    pub lookups_denied: u64,
    pub connections_allowed: u64,
    pub connections_denied: u64,
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// Connections aimed at an address their name does not resolve to.
    pub mismatched: u64,
    /// Per name, kind and decision, most used first (at most 100).
    pub destinations: Vec<Destination>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    pub name: String,
    /// `dns` or `tcp`.
    pub kind: String,
    /// `allowed` or `denied`.
    pub decision: String,
    pub count: u64,
    pub bytes_up: u64,
    pub bytes_down: u64,
}

/// What it changed on its writable disk against its template.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileChanges {
    pub changes: Vec<FileChange>,
    /// More changed than the list holds (10,000 paths).
    pub truncated: bool,
    /// Why there is no list (the workspace is not running, or the token
    /// lacks the exec scope).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileChange {
    pub path: String,
    /// `added`, `modified` or `deleted`.
    pub change: String,
    pub kind: FileKind,
    pub size: u64,
}
