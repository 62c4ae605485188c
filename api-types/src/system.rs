//! The box itself: `GET /v1/system` (what it runs, how its disk keys are
//! held, how full its data partition is, which certificate it serves) and
//! `GET /v1/system/metrics` (its CPU and memory over the last hour).

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
