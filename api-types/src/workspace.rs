//! Workspaces: the create request, the view every answer shows, lists.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a workspace may reach: `{"domains": ["pypi.org", "*.example.com:443"],
/// "cidrs": ["203.0.113.0/24:8080"]}`. Empty (the default): nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Egress {
    #[serde(default)]
    pub domains: Vec<String>,
    #[serde(default)]
    pub cidrs: Vec<String>,
}

/// `POST /v1/workspaces`. Only `ttl_s` is required: every workspace ends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceSpec {
    #[serde(default = "default_template")]
    pub template: String,
    #[serde(default = "default_vcpus")]
    pub vcpus: u32,
    #[serde(default = "default_memory")]
    pub memory_mib: u64,
    #[serde(default = "default_disk")]
    pub disk_mib: u64,
    pub ttl_s: u64,
    /// Secrets for the workspace's commands; never logged, never returned.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Rate limits on its disk (at most, and by default, what its vCPUs get).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_mib_per_s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_iops: Option<u64>,
    /// Test images only (benchmarks): a disk without dm-crypt.
    #[serde(default, skip_serializing_if = "is_false")]
    pub test_unencrypted_disk: bool,
    #[serde(default)]
    pub egress: Egress,
    /// Its NIC's bandwidth, each direction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net_mib_per_s: Option<u64>,
    /// New connections it may open per second, all destinations together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net_connections_per_s: Option<u64>,
    /// Signals of a looping or misbehaving agent it is watched for (each
    /// left out keeps its default).
    #[serde(default)]
    pub signals: crate::SignalRules,
    /// Secrets the egress proxy adds to its requests to named hosts; the
    /// workspace holds only placeholders (docs/secrets.md).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, crate::SecretSpec>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

pub const DEFAULT_TEMPLATE: &str = "default";
pub const DEFAULT_VCPUS: u32 = 1;
pub const DEFAULT_MEMORY_MIB: u64 = 512;
pub const DEFAULT_DISK_MIB: u64 = 2048;

fn default_template() -> String {
    DEFAULT_TEMPLATE.into()
}
fn default_vcpus() -> u32 {
    DEFAULT_VCPUS
}
fn default_memory() -> u64 {
    DEFAULT_MEMORY_MIB
}
fn default_disk() -> u64 {
    DEFAULT_DISK_MIB
}

impl WorkspaceSpec {
    /// The defaults, living `ttl_s` seconds.
    pub fn new(ttl_s: u64) -> WorkspaceSpec {
        WorkspaceSpec {
            template: default_template(),
            vcpus: DEFAULT_VCPUS,
            memory_mib: DEFAULT_MEMORY_MIB,
            disk_mib: DEFAULT_DISK_MIB,
            ttl_s,
            env: BTreeMap::new(),
            labels: BTreeMap::new(),
            disk_mib_per_s: None,
            disk_iops: None,
            test_unencrypted_disk: false,
            egress: Egress::default(),
            net_mib_per_s: None,
            net_connections_per_s: None,
            signals: crate::SignalRules::default(),
            secrets: BTreeMap::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkspaceState {
    Starting,
    Running,
    Stopped,
    /// The host rebooted while it ran; its disk was removed.
    Lost,
    /// Frozen for an incident, its tokens revoked, a forensic snapshot
    /// taken; only an admin's stop or delete ends it.
    Quarantined,
    /// Its VM written to the data partition (memory and devices,
    /// encrypted under its disk key) and ended; `resume` starts it again
    /// where it was, also after the host restarts. Its TTL stands still;
    /// `expires_at` is when it is deleted if nobody resumes it.
    Paused,
}

/// A workspace port reachable from the uplink at a port of the host's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    pub port: u16,
    pub host_port: u16,
    /// Who published it: the approval that gave it (`apr_...`), or the
    /// token that did (`tok_...`). An ending approval takes back its own
    /// port and no other, even one published again at the same host port
    /// by other means since. None on records written before this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_by: Option<String>,
}

/// The limits the host enforces on a workspace (cgroup, VMM, firewall).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceLimits {
    pub cpu_max_us_per_100ms: u64,
    pub memory_max_bytes: u64,
    pub pids_max: u64,
    pub io_max_bytes_per_s: u64,
    pub io_max_ops_per_s: u64,
    pub disk_bytes_per_s: u64,
    pub disk_ops_per_s: u64,
    pub net_bytes_per_s: u64,
    pub net_connections_per_s: u64,
}

/// A workspace as every answer shows it (env values never appear).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workspace {
    pub id: String,
    pub template: String,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub disk_mib: u64,
    pub labels: BTreeMap<String, String>,
    pub env_keys: Vec<String>,
    pub created_at: u64,
    pub expires_at: u64,
    pub state: WorkspaceState,
    pub limits: WorkspaceLimits,
    pub disk_encrypted: bool,
    pub egress: Egress,
    pub published: Vec<Published>,
    /// Its NIC's address (what a private link's `from` connects to).
    pub address: Option<String>,
    /// The signals it is watched for, defaults filled in.
    #[serde(default)]
    pub signals: crate::SignalRules,
    /// The names of its brokered secrets (`GET .../secrets` for more).
    #[serde(default)]
    pub secrets: Vec<String>,
    /// When it was paused (paused workspaces only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_at: Option<u64>,
    /// The TTL it gets back when resumed: what was left when it paused
    /// (paused workspaces only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_ttl_s: Option<u64>,
}

/// `GET /v1/workspaces`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceList {
    pub workspaces: Vec<Workspace>,
}

/// The answer to a delete.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    pub deleted: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_create_needs_only_a_ttl_and_refuses_unknown_fields() {
        let spec: WorkspaceSpec = serde_json::from_str(r#"{"ttl_s": 60}"#).expect("parse");
        assert_eq!(spec, WorkspaceSpec::new(60));
        assert!(serde_json::from_str::<WorkspaceSpec>(r#"{"vcpus": 1}"#).is_err());
        assert!(serde_json::from_str::<WorkspaceSpec>(r#"{"ttl_s": 5, "bogus": 1}"#).is_err());
        assert!(
            serde_json::from_str::<WorkspaceSpec>(r#"{"ttl_s": 5, "egress": {"hosts": []}}"#)
                .is_err()
        );
        // What a client sends round-trips, without the fields it left out.
        let text = serde_json::to_string(&WorkspaceSpec::new(60)).expect("json");
        assert!(!text.contains("test_unencrypted_disk"), "{text}");
        assert_eq!(
            serde_json::from_str::<WorkspaceSpec>(&text).expect("back"),
            WorkspaceSpec::new(60)
        );
    }
}

/// `POST /v1/workspaces/{id}/pause` (the body is optional).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PauseRequest {
    /// How long it may stay paused before it is deleted (default a day;
    /// at most the server maximum and the token's `max_ttl_s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_s: Option<u64>,
}

/// `POST /v1/workspaces/{id}/ttl`: end it this many seconds from now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TtlRequest {
    pub ttl_s: u64,
    /// Why, for the person who approves it when it is past the token's
    /// `max_ttl_s` and its policy says ask.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
