//! What each call is called in the audit log and the log (`request` of a
//! refusal): its kind and the id it names, never a secret it carries; and
//! which calls start something a shutdown must not be racing.

use paddock_api_channel::Call;

/// The call as the audit log names it.
pub(super) fn what(call: &Call) -> String {
    match call {
        Call::CreateWorkspace { .. } => "create_workspace".to_string(),
        Call::ListWorkspaces { .. } => "list_workspaces".into(),
        Call::GetWorkspace { id } => format!("get_workspace {id}"),
        Call::DeleteWorkspace { id } => format!("delete_workspace {id}"),
        Call::StopWorkspace { id } => format!("stop_workspace {id}"),
        Call::PauseWorkspace { id, .. } => format!("pause_workspace {id}"),
        Call::ResumeWorkspace { id } => format!("resume_workspace {id}"),
        Call::SetTtl { id, ttl_s, .. } => format!("set_ttl {id} {ttl_s}"),
        Call::QuarantineWorkspace { id } => format!("quarantine_workspace {id}"),
        Call::SetLimits { id, .. } => format!("set_limits {id}"),
        Call::SetEgress { id, .. } => format!("set_egress {id}"),
        Call::ListLinks => "list_links".into(),
        Call::PublishPort { id, .. } => format!("publish_port {id}"),
        Call::UnpublishPort { id, port } => format!("unpublish_port {id} {port}"),
        Call::CreateLink { .. } => "create_link".into(),
        Call::DeleteLink { id } => format!("delete_link {id}"),
        Call::ForensicFile { id, name } => format!("forensic_file {id} {name}"),
        Call::DeleteForensics { id } => format!("delete_forensics {id}"),
        Call::RotateToken { id } => format!("rotate_token {id}"),
        Call::RotateTls => "rotate_tls".into(),
        Call::KeyStatus => "key_status".into(),
        Call::SystemStatus => "system_status".into(),
        Call::HostMetrics { .. } => "host_metrics".into(),
        Call::StageUpdate { .. } => "stage_update".into(),
        Call::ApplyUpdate { .. } => "apply_update".into(),
        Call::AbandonUpdate => "abandon_update".into(),
        Call::MakeBackup => "make_backup".into(),
        Call::StageRestore { .. } => "stage_restore".into(),
        Call::ApplyRestore { .. } => "apply_restore".into(),
        Call::AbandonRestore { .. } => "abandon_restore".into(),
        Call::RecoverKeys { .. } => "recover_keys".into(),
        Call::ScanProcesses { .. } => "scan_processes".into(),
        Call::ProbeDisk { id } => format!("probe_disk {id}"),
        Call::ReadConsole { name } => format!("read_console {name}"),
        Call::DropCaches => "drop_caches".into(),
        Call::KillNetServices => "kill_net_services".into(),
        Call::OpenAgent { id, .. } => format!("agent {id}"),
        Call::ExecEnded { id, .. } => format!("exec_ended {id}"),
        Call::CreateToken { .. } => "create_token".into(),
        Call::ListTokens => "list_tokens".into(),
        Call::RevokeToken { id } => format!("revoke_token {id}"),
        Call::ReadAudit { .. } => "read_audit".into(),
        Call::Metrics => "metrics".into(),
        Call::WorkspaceMetrics { id, .. } => format!("metrics of {id}"),
        Call::NetworkLog { id, .. } => format!("network log of {id}"),
        Call::WorkspaceReport { id } => format!("report of {id}"),
        Call::ListApprovals { .. } => "list_approvals".into(),
        Call::GetApproval { id } => format!("get_approval {id}"),
        Call::DecideApproval { id, .. } => format!("decide_approval {id}"),
        Call::ListSecrets { id } => format!("list_secrets {id}"),
        Call::SetSecret { id, name, .. } => format!("set_secret {id} {name}"),
        Call::RemoveSecret { id, name } => format!("remove_secret {id} {name}"),
        Call::WhoAmI => "whoami".into(),
        Call::ConsoleSession { opened: true } => "console sign-in".into(),
        Call::ConsoleSession { opened: false } => "console sign-out".into(),
    }
}

/// Calls that start something a shutdown would have to wait for, or that
/// the box must not take while its workspaces are paused for a reboot.
pub(super) fn starts_something(call: &Call) -> bool {
    matches!(
        call,
        Call::CreateWorkspace { .. }
            | Call::ResumeWorkspace { .. }
            | Call::PauseWorkspace { .. }
            | Call::StageUpdate { .. }
            | Call::ApplyUpdate { .. }
            | Call::MakeBackup
            | Call::StageRestore { .. }
            | Call::ApplyRestore { .. }
    )
}
