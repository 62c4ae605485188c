//! A workspace record as the API shows it: the record's fields without
//! env values, with the limits derived from it and its guest address.

use super::limits::Limits;
use super::workspace::WorkspaceRecord;

impl WorkspaceRecord {
    /// The record as the API shows it (no env values).
    pub fn public(&self) -> paddock_api_types::Workspace {
        paddock_api_types::Workspace {
            id: self.id.clone(),
            template: self.template.clone(),
            vcpus: self.vcpus,
            memory_mib: self.memory_mib,
            disk_mib: self.disk_mib,
            labels: self.labels.clone(),
            env_keys: self.env.keys().cloned().collect(),
            created_at: self.created_at,
            expires_at: self.expires_at,
            state: self.state,
            limits: Limits::for_workspace(self).public(),
            disk_encrypted: !self.unencrypted_disk,
            egress: self.egress.clone(),
            published: self.published.clone(),
            address: self.slot().map(|s| s.guest().to_string()),
            signals: self.signals.effective(),
            secrets: self.secrets.iter().map(|s| s.name.clone()).collect(),
            paused_at: self.paused.map(|p| p.at),
            resume_ttl_s: self.paused.map(|p| p.ttl_left_s),
        }
    }
}
