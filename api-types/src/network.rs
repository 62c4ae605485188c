//! Private links between workspaces and ports published on the uplink.

use serde::{Deserialize, Serialize};

/// `POST /v1/links`: `from` may connect to `to` on `port`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    pub from: String,
    pub to: String,
    pub port: u16,
    /// Why, for the person who approves it when the token may only ask.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A private link as answers show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub id: String,
    pub from: String,
    pub to: String,
    pub port: u16,
    pub created_at: u64,
    /// Where `from` connects: `to`'s address (none while `to` has no
    /// network slot).
    pub to_address: Option<String>,
}

/// `GET /v1/links`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkList {
    pub links: Vec<Link>,
}

/// `POST /v1/workspaces/{id}/ports`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    pub port: u16,
    /// 20000-29999; absent: the first free one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<u16>,
    /// Why, for the person who approves it when the token may only ask.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The answer to a publish.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortPublished {
    pub workspace: String,
    pub port: u16,
    pub host_port: u16,
}

/// `GET /v1/health` (no token needed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// "ok" when ready, else "degraded".
    pub status: String,
    pub state: String,
    pub version: String,
    pub workspaces: u32,
    pub uptime_s: u64,
}

/// One record of where a workspace connected (`GET
/// /v1/workspaces/{id}/network`): what the resolver or the egress proxy
/// saw, counted over a window of up to a minute. Never payloads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRecord {
    /// The window, Unix seconds.
    pub from: u64,
    pub to: u64,
    /// `dns` (a lookup) or `tcp` (a connection through the proxy).
    pub kind: String,
    /// The name looked up, or named by SNI or Host ("" when none was).
    pub name: String,
    /// Where the guest aimed the connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest: Option<String>,
    /// `allowed` or `denied`.
    pub decision: String,
    /// What allowed it, or why it was denied.
    pub reason: String,
    pub count: u64,
    #[serde(default)]
    pub bytes_up: u64,
    #[serde(default)]
    pub bytes_down: u64,
    /// Connections whose upstream did not answer.
    #[serde(default)]
    pub upstream_failed: u64,
    /// Connections aimed at an address the name does not resolve to.
    #[serde(default)]
    pub mismatched: u64,
    /// Requests the egress proxy added a brokered secret to.
    #[serde(default)]
    pub secrets_injected: u64,
    /// Requests refused for carrying a secret's placeholder where it may
    /// not go.
    #[serde(default)]
    pub secret_misuse: u64,
    /// A lookup's answers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answers: Vec<String>,
}

/// `GET /v1/workspaces/{id}/network`, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkLog {
    pub records: Vec<NetworkRecord>,
}
