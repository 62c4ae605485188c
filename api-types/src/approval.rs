//! Egress requests a person approves: a workspace asks for a destination
//! its allowlist lacks (at `http://paddock.internal/egress-requests`), and
//! an admin approves it for a while, or denies it (`/v1/approvals`).

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalState {
    /// Asked, not decided yet.
    Pending,
    /// In its allowlist until `expires_at`.
    Approved,
    Denied,
    /// Was approved; its time ran out and the entry left the allowlist.
    Expired,
}

/// One destination one workspace asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// Stable for the workspace, name and port: asking again is the same
    /// approval.
    pub id: String,
    pub workspace: String,
    pub host: String,
    pub port: u16,
    /// The workspace's own words (its latest ask's).
    pub reason: String,
    pub state: ApprovalState,
    /// When it was (last) asked, Unix seconds, and how many asks so far.
    pub asked_at: u64,
    pub asks: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

/// `GET /v1/approvals`, newest ask first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalList {
    pub approvals: Vec<Approval>,
}

/// `POST /v1/approvals/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalDecision {
    pub approve: bool,
    /// How long an approval holds (10 to 604800 s; default 3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
