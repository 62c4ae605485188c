//! Tokens: scopes, quotas, minting, and how tokens are shown.

use crate::workspace::Egress;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Create,
    Exec,
    Files,
    Delete,
    Read,
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 6] = [
        Scope::Create,
        Scope::Exec,
        Scope::Files,
        Scope::Delete,
        Scope::Read,
        Scope::Admin,
    ];
}

/// What a token that is not an admin may do about an action its scopes
/// alone do not cover. Ordered: a child never gets a later one than its
/// parent has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionRule {
    /// Refused (403).
    #[default]
    Deny,
    /// Recorded as a pending approval (202 and the approval); done when an
    /// admin approves it.
    Ask,
    /// Done.
    Allow,
}

/// Per-token policy for the "yellow" actions: those a scoped token may be
/// let to ask for, or do, though they widen what a workspace may do or
/// how long it lives. Admin tokens do them all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionPolicy {
    /// A TTL past the token's `max_ttl_s` quota.
    #[serde(default)]
    pub extend_ttl: ActionRule,
    /// Publishing a workspace's port on the uplink (and taking it back).
    #[serde(default)]
    pub publish_port: ActionRule,
    /// A link between two workspaces the token sees (and removing it).
    #[serde(default)]
    pub link: ActionRule,
}

/// Caps on what a token's tree may hold at once.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quotas {
    pub max_workspaces: Option<u32>,
    pub max_vcpus: Option<u32>,
    pub max_memory_mib: Option<u64>,
    /// Disk of every workspace the token's tree holds, stopped ones too.
    #[serde(default)]
    pub max_disk_mib: Option<u64>,
    /// The longest a workspace it creates or extends may live from then
    /// on; past it, its `actions.extend_ttl` rule decides.
    #[serde(default)]
    pub max_ttl_s: Option<u64>,
}

/// How a token's secret is written. Only its look differs (both are as
/// random and stored only as a hash): `e2b` keys are `e2b_` and 40 hex
/// digits, the shape E2B's SDKs and the tools built on them expect of an
/// API key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretFormat {
    /// `pdk_` and 64 hex digits.
    #[default]
    Paddock,
    E2b,
}

/// `POST /v1/tokens`: a child of the calling token, never wider than it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MintRequest {
    pub name: String,
    pub scopes: Vec<Scope>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_s: Option<u64>,
    #[serde(default)]
    pub quotas: Quotas,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_ids: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_allow: Option<Egress>,
    /// Which yellow actions it may do or ask for; absent: none (never
    /// more than the parent's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions: Option<ActionPolicy>,
    /// How its secret looks (and the secrets rotation gives it later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_format: Option<SecretFormat>,
}

/// The answer to a mint: the secret, shown this once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MintedToken {
    pub id: String,
    pub secret: String,
    pub scopes: Vec<Scope>,
    pub expires_at: Option<u64>,
    pub note: String,
}

/// A token as an admin's list shows it (never its secret or hash).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenView {
    pub id: String,
    pub name: String,
    pub scopes: Vec<Scope>,
    pub expires_at: Option<u64>,
    pub revoked: bool,
    pub parent: Option<String>,
    pub quotas: Quotas,
    pub labels: BTreeMap<String, String>,
    pub workspace_ids: Option<Vec<String>>,
    pub egress_allow: Option<Egress>,
    #[serde(default)]
    pub actions: ActionPolicy,
}

/// `GET /v1/tokens`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenList {
    pub tokens: Vec<TokenView>,
}
