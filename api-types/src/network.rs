//! Private links between workspaces and ports published on the uplink.

use serde::{Deserialize, Serialize};

/// `POST /v1/links`: `from` may connect to `to` on `port`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    pub from: String,
    pub to: String,
    pub port: u16,
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
