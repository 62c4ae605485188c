//! The box itself: `GET /v1/system` (what it runs, how its disk keys are
//! held, how full its data partition is, which certificate it serves, its
//! image slots and update), `GET /v1/system/metrics` (its CPU and memory
//! over the last hour) and `POST /v1/system/update`.

use crate::KeyStatus;
use serde::{Deserialize, Serialize};

/// `GET /v1/system` (admin).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemStatus {
    pub version: String,
    pub uptime_s: u64,
    /// SHA-256 of the certificate the API serves, colon-separated hex (what
    /// clients pin); null where no API process was given one.
    pub tls_fingerprint: Option<String>,
    pub keys: KeyStatus,
    pub data: DiskUse,
    /// The newest host sample (null in the first seconds after boot).
    pub host: Option<HostSample>,
    /// The image slots, A and B (empty where the box did not boot through
    /// its boot manager).
    #[serde(default)]
    pub slots: Vec<SlotInfo>,
    /// The update being written or waiting for its reboot, if any (until
    /// the reboot; a failed one until the next attempt).
    #[serde(default)]
    pub update: Option<UpdateStatus>,
}

/// `POST /v1/system/update` and `GET /v1/system`'s `update`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateStatus {
    /// The bundle's version.
    pub version: String,
    /// The slot it goes to ("a" or "b"): the one this boot does not run.
    pub slot: String,
    pub state: UpdateState,
    /// When the box reboots into it (Unix seconds); null: at the next
    /// reboot, whenever that is.
    pub reboot_at: Option<u64>,
    /// Why it failed.
    pub detail: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateState {
    /// Verified; being written to its slot.
    Writing,
    /// Written and read back: the next boot tries it.
    Ready,
    /// Writing it failed; the slot it went to holds no image.
    Failed,
}

/// One image slot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotInfo {
    /// "a" or "b".
    pub slot: String,
    /// Its image's version (os-release VERSION_ID); null for an empty slot.
    pub version: Option<String>,
    pub state: SlotState,
    /// Boots the boot manager will still try, while on trial.
    pub tries_left: Option<u32>,
    /// The slot this boot runs.
    pub booted: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlotState {
    /// Blessed: it came up and was found good.
    Good,
    /// Installed, not yet blessed: the boot manager counts its tries.
    Trial,
    /// Its tries ran out: booted only when nothing else is left.
    Bad,
    /// No image.
    Empty,
}

/// A filesystem's size and use, as `statvfs` counts it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskUse {
    pub total_bytes: u64,
    pub used_bytes: u64,
    /// What an unprivileged writer may still use (less than total − used:
    /// the filesystem's reserve is not counted).
    pub available_bytes: u64,
}

/// One sample of the host, taken every 5 s (an hour's kept).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSample {
    /// Unix seconds.
    pub t: u64,
    /// CPU used since the sample before, in percent of all the host's CPUs
    /// (0 to 100).
    pub cpu_pct: f64,
    pub cpus: u32,
    /// RAM in use: total less what the kernel counts as available.
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    /// The 1-minute load average.
    pub load1: f64,
}

/// `GET /v1/system/metrics` (admin).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostMetrics {
    pub samples: Vec<HostSample>,
}

/// `POST /v1/system/restore`: what a backup put in place.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreReport {
    /// When the backup was made (Unix seconds).
    pub backup_created_at: u64,
    /// The version of the box that made it.
    pub backup_version: String,
    /// Which of its key slots opened it: "tpm" (this box's TPM, in this
    /// boot state) or "recovery" (the recovery secret).
    pub opened_with: String,
    /// Tokens now on this box: the backup's; the ones this box had before
    /// are gone.
    pub tokens: u64,
    /// Workspace records restored. Their disks are not in a backup: every
    /// one is `lost`.
    pub workspaces: u64,
    /// Approvals restored.
    pub approvals: u64,
    /// Audit log bytes restored (before this box's own events).
    pub audit_bytes: u64,
}
