//! Processes that outlive the call that started them, terminals among
//! them: `/v1/workspaces/{id}/processes` (docs/api.md, "Processes and
//! terminals"). Their streams carry `ExecEvent`s, the first a `Started`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A terminal's size in character cells (each 1 to 4096).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PtySize {
    pub cols: u16,
    pub rows: u16,
}

/// `POST /v1/workspaces/{id}/processes`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessRequest {
    pub argv: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// `root`, or the workspace's unprivileged user (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// A name to find it by besides its pid (unique among running ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Run it on a terminal of this size (its output is then one stream,
    /// `stdout`, and input is typed at the terminal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pty: Option<PtySize>,
    /// Keep its stdin open for `input` (always so on a terminal).
    #[serde(default)]
    pub stdin: bool,
    /// Kill it (and all it started) after this long, whoever watches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<u64>,
}

/// A running process, as `GET .../processes` lists it (its environment is
/// left out: it holds the workspace's secrets).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessInfo {
    pub pid: u32,
    pub tag: Option<String>,
    pub argv: Vec<String>,
    pub cwd: String,
    pub pty: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessList {
    pub processes: Vec<ProcessInfo>,
}

/// `POST .../processes/{pid}/signal`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalRequest {
    /// 1 to 64 (SIGTERM is 15, SIGKILL 9, SIGINT 2).
    pub signal: i32,
}
