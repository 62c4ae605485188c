//! A workspace's figures over time: `GET /v1/workspaces/{id}/metrics`.

use serde::{Deserialize, Serialize};

/// One sample, taken every 5 s while the workspace runs (an hour's kept).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkspaceSample {
    /// Unix seconds.
    pub t: u64,
    /// CPU used since the sample before, in percent of its vCPUs (0 to 100).
    pub cpu_pct: f64,
    pub vcpus: u32,
    pub memory_bytes: u64,
    pub memory_limit_bytes: u64,
    /// Bytes its disk file holds, and its size.
    pub disk_used_bytes: u64,
    pub disk_bytes: u64,
    /// Bytes its NIC sent and received since it started (counters: a
    /// graph shows their rate between samples). 0 without a network slot.
    #[serde(default)]
    pub net_sent_bytes: u64,
    #[serde(default)]
    pub net_received_bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkspaceMetrics {
    pub samples: Vec<WorkspaceSample>,
}
