//! Answers of the administrative calls: tokens revoked and rotated, the
//! TLS identity rotated, the disk keys' state, a quarantine's report, the
//! audit log; and who a bearer is (asked by the API process before it
//! admits a request).

use crate::Workspace;
use serde::{Deserialize, Serialize};

/// `DELETE /v1/tokens/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revoked {
    pub revoked: String,
}

/// `POST /v1/tokens/{id}/rotate`: the new secret, shown once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRotated {
    pub id: String,
    pub secret: String,
    pub note: String,
}

/// `POST /v1/tls/rotate`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsRotated {
    /// SHA-256 of the new certificate, colon-separated hex.
    pub fingerprint: String,
    pub note: String,
}

/// How the workspace disk keys are held.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    /// Sealed to the TPM (or software keys where the config allows them).
    Ready,
    /// Another boot state, or the TPM is missing: recovery needed.
    Locked,
    /// No TPM and software keys are not allowed.
    Unavailable,
}

/// `GET /v1/keys` and `POST /v1/keys/recover`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyStatus {
    pub state: KeyState,
    pub detail: String,
}

/// `POST /v1/workspaces/{id}/quarantine`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quarantined {
    pub workspace: Workspace,
    pub revoked_tokens: Vec<String>,
    /// The forensic snapshot's manifest (`ForensicManifest` in the
    /// document): its files, sizes and SHA-256s.
    pub snapshot: serde_json::Value,
}

/// `GET /v1/audit`: events, oldest first; each is an object with at least
/// `event` and `ts` (unix seconds), and the fields its kind records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEvents {
    pub events: Vec<serde_json::Value>,
}

/// Who a bearer is: what the API process needs to admit its request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhoAmI {
    pub token: String,
    pub admin: bool,
    /// The root of its token tree: requests are capped per tenant.
    pub tenant: String,
}
