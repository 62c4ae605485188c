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

/// `POST /v1/keys/recover`: the secret shown at first boot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoverRequest {
    pub recovery_secret: String,
}

impl RecoverRequest {
    /// Longest secret the server reads (the one it prints is far shorter).
    pub const MAX_LEN: usize = 256;
}

/// `POST /v1/workspaces/{id}/quarantine`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quarantined {
    pub workspace: Workspace,
    pub revoked_tokens: Vec<String>,
    pub snapshot: ForensicManifest,
}

/// One file of a forensic snapshot, as stored (encrypted).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForensicFile {
    pub bytes: u64,
    /// Lowercase hex SHA-256 of the stored bytes.
    pub sha256: String,
}

/// The files a forensic snapshot holds, each fetched by its name from
/// `GET /v1/workspaces/{id}/forensics/{file}`. Unknown fields are kept
/// out of the way, not refused: a snapshot is evidence read back long
/// after, by clients older or newer than the box that took it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForensicFiles {
    /// The guest's memory.
    pub memory: ForensicFile,
    /// Its writable disk.
    pub disk: ForensicFile,
    /// Its audit trail, one event per line.
    pub audit: ForensicFile,
    /// Its network record, one connection per line (absent from
    /// snapshots taken before the record existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<ForensicFile>,
}

impl ForensicFiles {
    /// A file by the name the download takes.
    pub fn get(&self, name: &str) -> Option<&ForensicFile> {
        match name {
            "memory" => Some(&self.memory),
            "disk" => Some(&self.disk),
            "audit" => Some(&self.audit),
            "network" => self.network.as_ref(),
            _ => None,
        }
    }
}

/// A quarantine's forensic snapshot: what was taken, when, by whom; also
/// stored beside the files as `manifest.json` (read leniently, as
/// `ForensicFiles` says).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ForensicManifest {
    pub workspace: Workspace,
    /// Unix seconds.
    pub taken_at: u64,
    /// The admin token's id.
    pub taken_by: String,
    pub files: ForensicFiles,
    /// Memory and disk are stored encrypted (docs/keys.md).
    pub encrypted: bool,
    /// How, in words (absent from the earliest snapshots).
    #[serde(default)]
    pub encryption: String,
}

/// `GET /v1/audit`: events, oldest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEvents {
    pub events: Vec<AuditEvent>,
}

/// One audit event: when, what kind, and the fields its kind records
/// (docs/api.md names which calls record which kind). The fields stay a map: the log is
/// append-only across versions, so a reader meets kinds and fields older
/// and newer than itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Unix seconds.
    pub ts: u64,
    pub event: String,
    #[serde(flatten)]
    pub fields: serde_json::Map<String, serde_json::Value>,
}

impl AuditEvent {
    /// A field as text, if it is a string.
    pub fn text(&self, field: &str) -> Option<&str> {
        self.fields.get(field).and_then(|v| v.as_str())
    }
}

/// Who a bearer is: what the API process needs to admit its request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhoAmI {
    pub token: String,
    pub admin: bool,
    /// The root of its token tree: requests are capped per tenant.
    pub tenant: String,
    /// What it may do (the console shows only what these allow).
    #[serde(default)]
    pub scopes: Vec<crate::Scope>,
    /// Unix seconds; None for the bootstrap admin credential. A console
    /// session signed in with it ends then at the latest.
    #[serde(default)]
    pub expires_at: Option<u64>,
}

/// A web console session (`/v1/session`): who it signed in as, and the
/// token the console sends back in `X-Paddock-CSRF` with every change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Session {
    /// The token it signed in with (its id, not its secret).
    pub token: String,
    pub tenant: String,
    pub admin: bool,
    pub scopes: Vec<crate::Scope>,
    /// Unix seconds when the session ends: the token's expiry or
    /// `session_max_s` after sign-in, whichever comes first.
    pub expires_at: u64,
    pub csrf_token: String,
}
