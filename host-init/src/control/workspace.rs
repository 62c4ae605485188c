//! What a workspace is to the control plane: the request that creates one
//! (validated field by field) and the record kept for it.

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

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
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
    /// Required: every workspace ends.
    pub ttl_s: u64,
    /// Secrets for the workspace's commands; never logged, never returned.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn default_template() -> String {
    "default".into()
}
fn default_vcpus() -> u32 {
    1
}
fn default_memory() -> u64 {
    512
}
fn default_disk() -> u64 {
    2048
}

fn label_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

impl WorkspaceSpec {
    /// Every problem, one per field.
    pub fn problems(&self) -> Vec<String> {
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WsState {
    Starting,
    Running,
    Stopped,
    /// The host rebooted while it ran; its disk was removed.
    Lost,
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
    /// Kept so execs get them; never returned by the API.
    pub env: BTreeMap<String, String>,
    pub created_at: u64,
    pub expires_at: u64,
    pub state: WsState,
    pub uid: u32,
}

impl WorkspaceRecord {
    /// The record as the API shows it (no env values).
    pub fn public(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "template": self.template,
            "vcpus": self.vcpus,
            "memory_mib": self.memory_mib,
            "disk_mib": self.disk_mib,
            "labels": self.labels,
            "env_keys": self.env.keys().collect::<Vec<_>>(),
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "state": self.state,
            "limits": super::limits::Limits::for_workspace(self).public(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
