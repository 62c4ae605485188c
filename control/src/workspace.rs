//! What a workspace is to the control plane: the request that creates one
//! (validated field by field) and the record kept for it.

use paddock_net::policy::CheckEgress as _;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Longest TTL the server allows (the operator can lower it).
pub const MAX_TTL_S: u64 = 7 * 24 * 3600;
pub const MAX_VCPUS: u32 = 16;
pub const MIN_MEMORY_MIB: u64 = 128;
pub const MAX_MEMORY_MIB: u64 = 64 * 1024;
pub const MIN_DISK_MIB: u64 = 256;
pub const MAX_DISK_MIB: u64 = 1024 * 1024;
const MAX_ENV: usize = 64;
const MAX_LABELS: usize = 16;

/// The create request: the API's wire type, checked here field by field.
pub use paddock_api_types::{Published, WorkspaceSpec, WorkspaceState as WsState};

/// A workspace's network by default: plenty for package installs, not
/// enough for one workspace to fill a server's uplink.
pub const DEFAULT_NET_MIB_PER_S: u64 = 50;
pub const MAX_NET_MIB_PER_S: u64 = 1000;
pub const DEFAULT_NET_CONNECTIONS_PER_S: u64 = 50;
pub const MAX_NET_CONNECTIONS_PER_S: u64 = 1000;

/// Disk bandwidth and operations each vCPU of a workspace is worth: enough
/// for builds and package installs, low enough that one workspace cannot
/// starve the others (or the host's own writes) on a shared disk. A
/// request may ask for less, never more.
pub const IO_BPS_PER_VCPU: u64 = 100 << 20;
pub const IO_IOPS_PER_VCPU: u64 = 4000;

/// A spec that only carries what limit checks need (a running
/// workspace's new rate limits are checked like a create's).
pub fn spec_for_limits(vcpus: u32) -> WorkspaceSpec {
    let mut spec = WorkspaceSpec::new(1);
    spec.vcpus = vcpus;
    spec
}

fn label_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// Checking a create request (a trait: the request is the wire crate's type).
pub trait SpecProblems {
    /// Every problem, one per field.
    fn problems(&self) -> Vec<String>;
}

impl SpecProblems for WorkspaceSpec {
    fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.template != "default" {
            p.push(format!(
                "template: {:?} does not exist (available: default)",
                self.template
            ));
        }
        if !(1..=MAX_VCPUS).contains(&self.vcpus) {
            p.push(format!("vcpus: {} is not 1 to {MAX_VCPUS}", self.vcpus));
        }
        if !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&self.memory_mib) {
            p.push(format!(
                "memory_mib: {} is not {MIN_MEMORY_MIB} to {MAX_MEMORY_MIB}",
                self.memory_mib
            ));
        }
        if !(MIN_DISK_MIB..=MAX_DISK_MIB).contains(&self.disk_mib) {
            p.push(format!(
                "disk_mib: {} is not {MIN_DISK_MIB} to {MAX_DISK_MIB}",
                self.disk_mib
            ));
        }
        if !(1..=MAX_TTL_S).contains(&self.ttl_s) {
            p.push(format!(
                "ttl_s: {} is not 1 to {MAX_TTL_S} (the server maximum)",
                self.ttl_s
            ));
        }
        let vcpus = u64::from(self.vcpus.max(1));
        let max_mib_s = vcpus * (IO_BPS_PER_VCPU >> 20);
        let max_iops = vcpus * IO_IOPS_PER_VCPU;
        if let Some(v) = self.disk_mib_per_s.filter(|v| !(1..=max_mib_s).contains(v)) {
            p.push(format!(
                "disk_mib_per_s: {v} is not 1 to {max_mib_s} (100 per vCPU)"
            ));
        }
        if let Some(v) = self.disk_iops.filter(|v| !(1..=max_iops).contains(v)) {
            p.push(format!(
                "disk_iops: {v} is not 1 to {max_iops} (4000 per vCPU)"
            ));
        }
        if let Some(v) = self
            .net_mib_per_s
            .filter(|v| !(1..=MAX_NET_MIB_PER_S).contains(v))
        {
            p.push(format!(
                "net_mib_per_s: {v} is not 1 to {MAX_NET_MIB_PER_S}"
            ));
        }
        if let Some(v) = self
            .net_connections_per_s
            .filter(|v| !(1..=MAX_NET_CONNECTIONS_PER_S).contains(v))
        {
            p.push(format!(
                "net_connections_per_s: {v} is not 1 to {MAX_NET_CONNECTIONS_PER_S}"
            ));
        }
        if let Err(problem) = self.signals.check() {
            p.push(problem);
        }
        match self.egress.check() {
            Err(problems) => p.extend(problems.into_iter().map(|e| format!("egress.{e}"))),
            Ok(egress) => p.extend(super::secrets::problems_all(
                &self.secrets,
                &self.env,
                Some(&egress),
            )),
        }
        if self.env.len() > MAX_ENV {
            p.push(format!("env: more than {MAX_ENV} variables"));
        }
        for (k, v) in &self.env {
            if k.is_empty()
                || k.contains('=')
                || k.contains('\0')
                || v.contains('\0')
                || k.len() > 256
                || v.len() > 32 * 1024
            {
                p.push(format!("env: variable {k:?} has an invalid name or value"));
            }
        }
        if self.labels.len() > MAX_LABELS {
            p.push(format!("labels: more than {MAX_LABELS}"));
        }
        for (k, v) in &self.labels {
            if !label_ok(k) || !label_ok(v) {
                p.push(format!(
                    "labels: {k:?}={v:?} (keys and values: 1-63 of letters, digits, '-', '_', '.')"
                ));
            }
        }
        p
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceRecord {
    pub id: String,
    pub owner: String,
    pub template: String,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub disk_mib: u64,
    pub labels: BTreeMap<String, String>,
    /// Only the names: the values are in `env_sealed`.
    pub env: BTreeMap<String, String>,
    /// The env values (JSON), encrypted under a key derived from the
    /// workspace's disk key (keys::KeyStore::seal): never on the data
    /// partition in the clear, and unreadable once the workspace is deleted.
    #[serde(default)]
    pub env_sealed: Option<Vec<u8>>,
    pub created_at: u64,
    pub expires_at: u64,
    pub state: WsState,
    pub uid: u32,
    #[serde(default)]
    pub disk_mib_per_s: Option<u64>,
    #[serde(default)]
    pub disk_iops: Option<u64>,
    /// Its disk is a plain file (test images' benchmark peer only).
    #[serde(default)]
    pub unencrypted_disk: bool,
    /// Its egress allowlist as asked for (checked at create and change).
    #[serde(default)]
    pub egress: paddock_net::policy::EgressRequest,
    #[serde(default)]
    pub net_mib_per_s: Option<u64>,
    #[serde(default)]
    pub net_connections_per_s: Option<u64>,
    /// Its ports reachable from the uplink, each at a port of the host's.
    #[serde(default)]
    pub published: Vec<Published>,
    /// The signals it is watched for, as asked (defaults fill the rest).
    #[serde(default)]
    pub signals: paddock_api_types::SignalRules,
    /// Its brokered secrets, without their values.
    #[serde(default)]
    pub secrets: Vec<super::secrets::SecretMeta>,
    /// Their values (JSON, name → value), sealed like `env_sealed`.
    #[serde(default)]
    pub secrets_sealed: Option<Vec<u8>>,
    /// Set while it is paused: `expires_at` is then the paused TTL's end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<PausedAt>,
}

/// When a workspace was paused and the TTL it gets back on resume.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PausedAt {
    pub at: u64,
    pub ttl_left_s: u64,
    /// Paused by the box for its own reboot (an update's): the box resumes
    /// it once it is up again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub for_reboot: bool,
}

/// The uplink ports published workspace ports are given from.
pub const PUBLISH_RANGE: std::ops::RangeInclusive<u16> = 20000..=29999;

impl WorkspaceRecord {
    /// A VM host-init runs for itself (the demo, a template's snapshot
    /// VM), not in the state database: no owner's token, no TTL, no
    /// policy, and no slot unless its uid has one.
    pub fn internal(id: &str, uid: u32, vcpus: u32, memory_mib: u64, disk_mib: u64) -> Self {
        WorkspaceRecord {
            id: id.into(),
            owner: "host-init".into(),
            template: "default".into(),
            vcpus,
            memory_mib,
            disk_mib,
            labels: Default::default(),
            env: Default::default(),
            env_sealed: None,
            created_at: super::audit::now_s(),
            expires_at: u64::MAX,
            state: WsState::Running,
            uid,
            disk_mib_per_s: None,
            disk_iops: None,
            unencrypted_disk: false,
            egress: Default::default(),
            net_mib_per_s: None,
            net_connections_per_s: None,
            published: Vec::new(),
            signals: Default::default(),
            secrets: Vec::new(),
            secrets_sealed: None,
            paused: None,
        }
    }

    /// Its place on the host network, from its uid (the demo workspace,
    /// below the uid range, has none).
    pub fn slot(&self) -> Option<paddock_net::firewall::Slot> {
        self.uid
            .checked_sub(super::layout::WS_UID_BASE)
            .and_then(paddock_net::firewall::Slot::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_rates_are_bounded_by_the_vcpus() {
        let spec = |json: &str| -> WorkspaceSpec { serde_json::from_str(json).expect("parse") };
        assert!(
            spec(r#"{"ttl_s":60,"vcpus":2,"disk_mib_per_s":200,"disk_iops":8000}"#)
                .problems()
                .is_empty()
        );
        let p = spec(r#"{"ttl_s":60,"vcpus":2,"disk_mib_per_s":201,"disk_iops":0}"#).problems();
        assert!(
            p.iter().any(|e| e.starts_with("disk_mib_per_s: 201")),
            "{p:?}"
        );
        assert!(p.iter().any(|e| e.starts_with("disk_iops: 0")), "{p:?}");
    }

    #[test]
    fn every_bad_field_is_named() {
        let spec: WorkspaceSpec = serde_json::from_str(
            r#"{"template":"x","vcpus":0,"memory_mib":1,"disk_mib":99999999,"ttl_s":0,"labels":{"a b":"c"},"env":{"A=B":"x"}}"#,
        )
        .expect("parse");
        let p = spec.problems();
        for field in [
            "template",
            "vcpus",
            "memory_mib",
            "disk_mib",
            "ttl_s",
            "labels",
            "env",
        ] {
            assert!(
                p.iter().any(|m| m.starts_with(field)),
                "{field} not reported in {p:?}"
            );
        }
        assert!(
            serde_json::from_str::<WorkspaceSpec>(r#"{"vcpus":1}"#).is_err(),
            "ttl_s is required"
        );
        assert!(serde_json::from_str::<WorkspaceSpec>(r#"{"ttl_s":5,"bogus":1}"#).is_err());
        let ok: WorkspaceSpec = serde_json::from_str(r#"{"ttl_s":60}"#).expect("defaults");
        assert!(ok.problems().is_empty());
    }
}
