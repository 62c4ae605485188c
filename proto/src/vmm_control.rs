//! The host's requests to a running VMM over its control socket, and the
//! VMM's replies: one JSON request per connection, ended by a newline,
//! one JSON reply. (JSON rather than the agent protocol's postcard: the
//! socket is host-only and an operator can drive it with `socat`.)

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum VmmRequest {
    /// A device's new limits (a drive by its id, the NIC as "net"); an
    /// absent (or null) one is unlimited. (`drive` is the field's first
    /// name, still accepted.)
    SetRate {
        #[serde(alias = "drive")]
        device: String,
        #[serde(default)]
        bytes_per_s: Option<u64>,
        #[serde(default)]
        ops_per_s: Option<u64>,
    },
}

/// `{"ok": true}` or `{"error": "..."}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum VmmReply {
    Ok { ok: bool },
    Error { error: String },
}
