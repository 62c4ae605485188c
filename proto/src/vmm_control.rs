//! The host's requests to a running VMM over its control socket, and the
//! VMM's replies: one JSON request per connection, ended by a newline,
//! one JSON reply. (JSON rather than the agent protocol's postcard: the
//! socket is host-only and an operator can drive it with `socat`, all but
//! `snapshot`, whose files travel as descriptors.)

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
    /// Stops every vCPU and device worker until `resume`. The guest's
    /// kvmclock goes on with the host's, so a resumed guest sees the time
    /// it spent paused; a restored one sees none (its clock is the
    /// snapshot's until the agent is sent `Renew`).
    /// (Empty braces rather than unit variants: serde applies
    /// `deny_unknown_fields` to struct variants only.)
    Pause {},
    Resume {},
    /// Writes the paused VM into the two files whose descriptors come with
    /// the request (SCM_RIGHTS): the state file, then the memory file
    /// (empty, writable). The VM stays paused.
    Snapshot {},
}

/// `{"ok": true}` or `{"error": "..."}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum VmmReply {
    Ok { ok: bool },
    Error { error: String },
}
