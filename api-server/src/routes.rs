//! Which endpoint a request is for: method and path to a `Route`, with no
//! I/O, so the whole table is unit-tested here. The server (server.rs)
//! reads bodies and forwards the call a route stands for.

/// One endpoint, with the ids its path names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Health,
    /// The web console's session (crate::signin): sign in, who, sign out.
    OpenSession,
    SessionInfo,
    CloseSession,
    CreateWorkspace,
    ListWorkspaces,
    GetWorkspace(String),
    DeleteWorkspace(String),
    StopWorkspace(String),
    PauseWorkspace(String),
    ResumeWorkspace(String),
    SetTtl(String),
    SetLimits(String),
    PublishPort(String),
    UnpublishPort {
        id: String,
        port: String,
    },
    SetEgress(String),
    Quarantine(String),
    DeleteForensics(String),
    ForensicFile {
        id: String,
        name: String,
    },
    Exec(String),
    /// Any method: the files handler answers 405 for the ones it lacks.
    Files(String),
    ListLinks,
    CreateLink,
    DeleteLink(String),
    CreateToken,
    ListTokens,
    RevokeToken(String),
    RotateToken(String),
    RotateTls,
    KeyStatus,
    SystemStatus,
    HostMetrics,
    SystemUpdate,
    SystemBackup,
    SystemRestore,
    RecoverKeys,
    Metrics,
    Audit,
    /// The test suite's probes (host-init answers 404 unless built and
    /// configured with them: control/service/probes.rs).
    ProcessScan,
    DropCaches,
    KillNetServices,
    ReadConsole(String),
    OpenDisk,
    /// A workspace path whose id cannot be one (never forwarded).
    BadWorkspaceId,
    NotFound,
    /// E2B's control plane (crate::e2b), and envd's health.
    E2bCreate,
    E2bList,
    E2bGet(String),
    E2bKill(String),
    E2bTimeout(String),
    E2bConnect(String),
    E2bPause(String),
    E2bResume(String),
    E2bNetwork(String),
    E2bMetrics(String),
    EnvdHealth,
    /// An envd Connect call: its service and method.
    EnvdRpc(String, String),
    /// A workspace's directory: list or make (crate::dirs).
    Dir(String),
    /// A workspace's samples over the last hour.
    WorkspaceMetrics(String),
    NetworkLog(String),
    Report(String),
    ListSecrets(String),
    SetSecret {
        id: String,
        name: String,
    },
    RemoveSecret {
        id: String,
        name: String,
    },
    ListApprovals,
    GetApproval(String),
    DecideApproval(String),
    /// A workspace's spawned processes (crate::processes).
    Processes(String, ProcessOp),
    EnvdReadFile,
    EnvdWriteFile,
}

/// What a call names after `/processes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessOp {
    Start,
    List,
    Output(u32),
    Input(u32),
    CloseInput(u32),
    Signal(u32),
    Resize(u32),
}

impl ProcessOp {
    /// The operation of `method` on `rest` (the segments after
    /// `/processes`), if it is one.
    pub fn parse(method: &str, rest: &[&str]) -> Option<ProcessOp> {
        let pid = |p: &str| p.parse::<u32>().ok().filter(|p| *p > 0);
        Some(match (method, rest) {
            ("POST", []) => ProcessOp::Start,
            ("GET", []) => ProcessOp::List,
            ("GET", [p, "output"]) => ProcessOp::Output(pid(p)?),
            ("POST", [p, "input"]) => ProcessOp::Input(pid(p)?),
            ("POST", [p, "close-input"]) => ProcessOp::CloseInput(pid(p)?),
            ("POST", [p, "signal"]) => ProcessOp::Signal(pid(p)?),
            ("POST", [p, "resize"]) => ProcessOp::Resize(pid(p)?),
            _ => return None,
        })
    }
}

/// A workspace's id as E2B's SDK sees it: `ws-…` instead of `ws_…`,
/// because the SDK makes host names of it (`49983-{id}.{domain}`), where
/// an underscore is not allowed.
pub fn e2b_id(native: &str) -> String {
    match native.strip_prefix("ws_") {
        Some(rest) => format!("ws-{rest}"),
        None => native.to_string(),
    }
}

/// The native id of a sandbox id (either spelling).
pub fn native_id(e2b: &str) -> String {
    match e2b.strip_prefix("ws-") {
        Some(rest) => format!("ws_{rest}"),
        None => e2b.to_string(),
    }
}

/// A workspace, token or console id as the server makes them.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The path's segments after the leading '/', ignoring a trailing '/'.
pub fn segments(path: &str) -> Vec<&str> {
    path.trim_end_matches('/').split('/').skip(1).collect()
}

/// The methods a known resource has; None for paths that are not ours.
pub fn allowed_methods(segs: &[&str]) -> Option<&'static [&'static str]> {
    Some(match segs {
        ["v1", "health"]
        | ["metrics"]
        | ["v1", "audit"]
        | ["v1", "keys"]
        | ["v1", "approvals"]
        | ["v1", "system"]
        | ["v1", "system", "metrics"]
        | ["v1", "system", "backup"] => &["GET"],
        ["v1", "approvals", _] => &["GET", "POST"],
        ["v1", "session"] => &["GET", "POST", "DELETE"],
        ["v1", "workspaces"] | ["v1", "tokens"] | ["v1", "links"] => &["GET", "POST"],
        ["v1", "links", _] => &["DELETE"],
        ["v1", "workspaces", _] => &["GET", "DELETE"],
        ["v1", "workspaces", _, "stop" | "pause" | "resume" | "exec" | "quarantine" | "limits" | "ttl"] => {
            &["POST"]
        }
        ["v1", "workspaces", _, "egress"] => &["PUT"],
        ["v1", "workspaces", _, "ports"] => &["POST"],
        ["v1", "workspaces", _, "secrets"] => &["GET"],
        ["v1", "workspaces", _, "secrets", _] => &["PUT", "DELETE"],
        ["v1", "workspaces", _, "ports", _] => &["DELETE"],
        ["v1", "workspaces", _, "forensics"] => &["DELETE"],
        ["v1", "workspaces", _, "forensics", _] => &["GET"],
        ["v1", "workspaces", _, "files"] => &["GET", "PUT", "DELETE"],
        ["v1", "workspaces", _, "dir"] => &["GET", "POST"],
        ["v1", "workspaces", _, "metrics" | "network" | "report"] => &["GET"],
        ["v1", "workspaces", _, "processes"] => &["GET", "POST"],
        ["v1", "workspaces", _, "processes", _, "output"] => &["GET"],
        ["v1", "workspaces", _, "processes", _, "input" | "close-input" | "signal" | "resize"] => {
            &["POST"]
        }
        ["v1", "tokens", _] => &["DELETE"],
        ["v1", "tokens", _, "rotate"]
        | ["v1", "tls", "rotate"]
        | ["v1", "keys", "recover"]
        | ["v1", "system", "update"]
        | ["v1", "system", "restore"] => &["POST"],
        // The test suite's probes: authenticated and admitted like any
        // call (host-init then answers 404 unless this is a test image).
        ["v1", "debug", "process-scan" | "drop-caches" | "kill-net-services" | "open-disk"] => {
            &["POST"]
        }
        ["v1", "debug", "console", _] => &["GET"],
        ["sandboxes"] | ["v2", "sandboxes"] => &["GET", "POST"],
        ["sandboxes", _] => &["GET", "DELETE"],
        ["sandboxes", _, "timeout" | "connect" | "pause" | "resume"]
        | ["v2", "sandboxes", _, "connect"] => &["POST"],
        ["sandboxes", _, "network"] => &["PUT"],
        ["sandboxes", _, "metrics"] => &["GET"],
        ["health"] => &["GET"],
        ["process.Process" | "filesystem.Filesystem", _] => &["POST"],
        ["files"] => &["GET", "POST"],
        _ => return None,
    })
}

pub fn resolve(method: &str, path: &str) -> Route {
    use Route as R;
    let segs = segments(path);
    let s = |x: &&str| x.to_string();
    match (method, segs.as_slice()) {
        ("GET", ["v1", "health"]) => R::Health,
        ("POST", ["v1", "session"]) => R::OpenSession,
        ("GET", ["v1", "session"]) => R::SessionInfo,
        ("DELETE", ["v1", "session"]) => R::CloseSession,
        ("POST", ["v1", "workspaces"]) => R::CreateWorkspace,
        ("GET", ["v1", "workspaces"]) => R::ListWorkspaces,
        (_, ["v1", "workspaces", id, ..]) if !valid_id(id) => R::BadWorkspaceId,
        ("GET", ["v1", "workspaces", id]) => R::GetWorkspace(s(id)),
        ("DELETE", ["v1", "workspaces", id]) => R::DeleteWorkspace(s(id)),
        ("POST", ["v1", "workspaces", id, "stop"]) => R::StopWorkspace(s(id)),
        ("POST", ["v1", "workspaces", id, "pause"]) => R::PauseWorkspace(s(id)),
        ("POST", ["v1", "workspaces", id, "resume"]) => R::ResumeWorkspace(s(id)),
        ("POST", ["v1", "workspaces", id, "ttl"]) => R::SetTtl(s(id)),
        ("POST", ["v1", "workspaces", id, "limits"]) => R::SetLimits(s(id)),
        ("POST", ["v1", "workspaces", id, "ports"]) => R::PublishPort(s(id)),
        ("DELETE", ["v1", "workspaces", id, "ports", port]) => R::UnpublishPort {
            id: s(id),
            port: s(port),
        },
        ("PUT", ["v1", "workspaces", id, "egress"]) => R::SetEgress(s(id)),
        ("POST", ["v1", "workspaces", id, "quarantine"]) => R::Quarantine(s(id)),
        ("DELETE", ["v1", "workspaces", id, "forensics"]) => R::DeleteForensics(s(id)),
        ("GET", ["v1", "workspaces", id, "forensics", name]) => R::ForensicFile {
            id: s(id),
            name: s(name),
        },
        ("POST", ["v1", "workspaces", id, "exec"]) => R::Exec(s(id)),
        (_, ["v1", "workspaces", id, "files"]) => R::Files(s(id)),
        ("GET" | "POST", ["v1", "workspaces", id, "dir"]) => R::Dir(s(id)),
        ("GET", ["v1", "workspaces", id, "metrics"]) => R::WorkspaceMetrics(s(id)),
        ("GET", ["v1", "workspaces", id, "network"]) => R::NetworkLog(s(id)),
        ("GET", ["v1", "workspaces", id, "report"]) => R::Report(s(id)),
        ("GET", ["v1", "workspaces", id, "secrets"]) => R::ListSecrets(s(id)),
        ("PUT", ["v1", "workspaces", id, "secrets", name]) => R::SetSecret {
            id: s(id),
            name: s(name),
        },
        ("DELETE", ["v1", "workspaces", id, "secrets", name]) => R::RemoveSecret {
            id: s(id),
            name: s(name),
        },
        ("GET", ["v1", "approvals"]) => R::ListApprovals,
        ("GET", ["v1", "approvals", id]) if valid_id(id) => R::GetApproval(s(id)),
        ("POST", ["v1", "approvals", id]) if valid_id(id) => R::DecideApproval(s(id)),
        (m, ["v1", "workspaces", id, "processes", rest @ ..]) => match ProcessOp::parse(m, rest) {
            Some(op) => R::Processes(s(id), op),
            None => R::NotFound,
        },
        ("GET", ["v1", "links"]) => R::ListLinks,
        ("POST", ["v1", "links"]) => R::CreateLink,
        ("DELETE", ["v1", "links", id]) => R::DeleteLink(s(id)),
        ("POST", ["v1", "tokens"]) => R::CreateToken,
        ("GET", ["v1", "tokens"]) => R::ListTokens,
        ("DELETE", ["v1", "tokens", id]) if valid_id(id) => R::RevokeToken(s(id)),
        ("POST", ["v1", "tokens", id, "rotate"]) if valid_id(id) => R::RotateToken(s(id)),
        ("POST", ["v1", "tls", "rotate"]) => R::RotateTls,
        ("GET", ["v1", "keys"]) => R::KeyStatus,
        ("GET", ["v1", "system"]) => R::SystemStatus,
        ("GET", ["v1", "system", "metrics"]) => R::HostMetrics,
        ("POST", ["v1", "system", "update"]) => R::SystemUpdate,
        ("GET", ["v1", "system", "backup"]) => R::SystemBackup,
        ("POST", ["v1", "system", "restore"]) => R::SystemRestore,
        ("POST", ["v1", "keys", "recover"]) => R::RecoverKeys,
        ("POST", ["v1", "debug", "process-scan"]) => R::ProcessScan,
        ("POST", ["v1", "debug", "drop-caches"]) => R::DropCaches,
        ("POST", ["v1", "debug", "kill-net-services"]) => R::KillNetServices,
        ("GET", ["v1", "debug", "console", name]) if valid_id(name) => R::ReadConsole(s(name)),
        ("POST", ["v1", "debug", "open-disk"]) => R::OpenDisk,
        ("GET", ["metrics"]) => R::Metrics,
        ("POST", ["sandboxes"] | ["v2", "sandboxes"]) => R::E2bCreate,
        ("GET", ["sandboxes"] | ["v2", "sandboxes"]) => R::E2bList,
        (_, ["sandboxes", id, ..] | ["v2", "sandboxes", id, ..]) if !valid_id(&native_id(id)) => {
            R::BadWorkspaceId
        }
        ("GET", ["sandboxes", id]) => R::E2bGet(native_id(id)),
        ("DELETE", ["sandboxes", id]) => R::E2bKill(native_id(id)),
        ("POST", ["sandboxes", id, "timeout"]) => R::E2bTimeout(native_id(id)),
        ("POST", ["sandboxes", id, "connect"] | ["v2", "sandboxes", id, "connect"]) => {
            R::E2bConnect(native_id(id))
        }
        ("POST", ["sandboxes", id, "pause"]) => R::E2bPause(native_id(id)),
        ("POST", ["sandboxes", id, "resume"]) => R::E2bResume(native_id(id)),
        ("PUT", ["sandboxes", id, "network"]) => R::E2bNetwork(native_id(id)),
        ("GET", ["sandboxes", id, "metrics"]) => R::E2bMetrics(native_id(id)),
        ("GET", ["health"]) => R::EnvdHealth,
        ("POST", [service @ ("process.Process" | "filesystem.Filesystem"), method]) => {
            R::EnvdRpc(s(service), s(method))
        }
        ("GET", ["files"]) => R::EnvdReadFile,
        ("POST", ["files"]) => R::EnvdWriteFile,
        ("GET", ["v1", "audit"]) => R::Audit,
        _ => R::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Route as R;

    #[test]
    fn every_endpoint_resolves() {
        let id = || "ws_1".to_string();
        let table = [
            ("GET", "/v1/health", R::Health),
            ("POST", "/v1/session", R::OpenSession),
            ("GET", "/v1/session", R::SessionInfo),
            ("DELETE", "/v1/session", R::CloseSession),
            ("POST", "/v1/workspaces", R::CreateWorkspace),
            ("GET", "/v1/workspaces/", R::ListWorkspaces),
            ("GET", "/v1/workspaces/ws_1", R::GetWorkspace(id())),
            ("DELETE", "/v1/workspaces/ws_1", R::DeleteWorkspace(id())),
            ("POST", "/v1/workspaces/ws_1/stop", R::StopWorkspace(id())),
            ("POST", "/v1/workspaces/ws_1/pause", R::PauseWorkspace(id())),
            (
                "POST",
                "/v1/workspaces/ws_1/resume",
                R::ResumeWorkspace(id()),
            ),
            ("POST", "/v1/workspaces/ws_1/ttl", R::SetTtl(id())),
            ("GET", "/v1/approvals/apr_1", R::GetApproval("apr_1".into())),
            (
                "POST",
                "/v1/approvals/apr_1",
                R::DecideApproval("apr_1".into()),
            ),
            ("POST", "/v1/workspaces/ws_1/limits", R::SetLimits(id())),
            ("POST", "/v1/workspaces/ws_1/ports", R::PublishPort(id())),
            (
                "DELETE",
                "/v1/workspaces/ws_1/ports/8080",
                R::UnpublishPort {
                    id: id(),
                    port: "8080".into(),
                },
            ),
            ("PUT", "/v1/workspaces/ws_1/egress", R::SetEgress(id())),
            (
                "POST",
                "/v1/workspaces/ws_1/quarantine",
                R::Quarantine(id()),
            ),
            (
                "DELETE",
                "/v1/workspaces/ws_1/forensics",
                R::DeleteForensics(id()),
            ),
            (
                "GET",
                "/v1/workspaces/ws_1/forensics/memory",
                R::ForensicFile {
                    id: id(),
                    name: "memory".into(),
                },
            ),
            ("POST", "/v1/workspaces/ws_1/exec", R::Exec(id())),
            ("GET", "/v1/workspaces/ws_1/files", R::Files(id())),
            ("GET", "/v1/workspaces/ws_1/dir", R::Dir(id())),
            (
                "POST",
                "/v1/workspaces/ws_1/processes",
                R::Processes(id(), ProcessOp::Start),
            ),
            (
                "GET",
                "/v1/workspaces/ws_1/processes/12/output",
                R::Processes(id(), ProcessOp::Output(12)),
            ),
            (
                "POST",
                "/v1/workspaces/ws_1/processes/12/resize",
                R::Processes(id(), ProcessOp::Resize(12)),
            ),
            ("POST", "/v1/workspaces/ws_1/processes/0/input", R::NotFound),
            (
                "POST",
                "/v1/workspaces/ws_1/processes/x/signal",
                R::NotFound,
            ),
            ("PATCH", "/v1/workspaces/ws_1/files", R::Files(id())),
            ("GET", "/v1/links", R::ListLinks),
            ("POST", "/v1/links", R::CreateLink),
            ("DELETE", "/v1/links/lnk_1", R::DeleteLink("lnk_1".into())),
            ("POST", "/v1/tokens", R::CreateToken),
            ("GET", "/v1/tokens", R::ListTokens),
            ("DELETE", "/v1/tokens/tok_1", R::RevokeToken("tok_1".into())),
            (
                "POST",
                "/v1/tokens/tok_1/rotate",
                R::RotateToken("tok_1".into()),
            ),
            ("POST", "/v1/tls/rotate", R::RotateTls),
            ("GET", "/v1/keys", R::KeyStatus),
            ("GET", "/v1/system", R::SystemStatus),
            ("GET", "/v1/system/metrics", R::HostMetrics),
            ("POST", "/v1/system/update", R::SystemUpdate),
            ("GET", "/v1/system/backup", R::SystemBackup),
            ("POST", "/v1/system/restore", R::SystemRestore),
            ("POST", "/v1/keys/recover", R::RecoverKeys),
            ("POST", "/v1/debug/process-scan", R::ProcessScan),
            ("POST", "/v1/debug/drop-caches", R::DropCaches),
            ("POST", "/v1/debug/kill-net-services", R::KillNetServices),
            (
                "GET",
                "/v1/debug/console/demo",
                R::ReadConsole("demo".into()),
            ),
            ("POST", "/v1/debug/open-disk", R::OpenDisk),
            ("GET", "/metrics", R::Metrics),
            ("GET", "/v1/audit", R::Audit),
        ];
        for (method, path, want) in table {
            assert_eq!(resolve(method, path), want, "{method} {path}");
            // A route the method table does not know is answered 404
            // before it is routed (pause and resume once were). The files
            // route takes every method and answers the wrong ones itself.
            if matches!(want, R::Files(_)) {
                continue;
            }
            let allowed = allowed_methods(&segments(path.split('?').next().unwrap_or(path)));
            assert!(
                allowed.is_some_and(|m| m.contains(&method)),
                "{method} {path}: not in allowed_methods"
            );
        }
    }

    /// The 405 table (allowed_methods) and the routes agree: a method
    /// that routes is allowed, and an allowed one routes.
    #[test]
    fn the_method_table_matches_the_routes() {
        let paths = [
            "/v1/health",
            "/metrics",
            "/v1/audit",
            "/v1/keys",
            "/v1/workspaces",
            "/v1/tokens",
            "/v1/links",
            "/v1/links/lnk_1",
            "/v1/workspaces/ws_1",
            "/v1/workspaces/ws_1/stop",
            "/v1/workspaces/ws_1/exec",
            "/v1/workspaces/ws_1/quarantine",
            "/v1/workspaces/ws_1/limits",
            "/v1/workspaces/ws_1/egress",
            "/v1/workspaces/ws_1/ports",
            "/v1/workspaces/ws_1/ports/80",
            "/v1/workspaces/ws_1/forensics",
            "/v1/workspaces/ws_1/forensics/disk",
            "/v1/workspaces/ws_1/files",
            "/v1/workspaces/ws_1/network",
            "/v1/workspaces/ws_1/report",
            "/v1/approvals",
            "/v1/approvals/apr_1",
            "/v1/tokens/tok_1",
            "/v1/tokens/tok_1/rotate",
            "/v1/tls/rotate",
            "/v1/keys/recover",
        ];
        for path in paths {
            let allowed = allowed_methods(&segments(path)).unwrap_or_else(|| panic!("{path}"));
            for method in ["GET", "POST", "PUT", "DELETE"] {
                let routes = !matches!(resolve(method, path), R::NotFound | R::BadWorkspaceId);
                // The files handler takes every method and answers 405 itself.
                if path.ends_with("/files") {
                    continue;
                }
                assert_eq!(routes, allowed.contains(&method), "{method} {path}");
            }
        }
        assert_eq!(allowed_methods(&segments("/v2/nothing")), None);
    }

    /// What an attacker sends to reach something it should not: ids that
    /// would escape a path or a database key, methods an endpoint lacks,
    /// paths near real ones.
    #[test]
    fn malformed_paths_and_methods_reach_nothing() {
        for (method, path, want) in [
            ("GET", "/v1/workspaces/..", R::BadWorkspaceId),
            ("GET", "/v1/workspaces/ws_1%2F..", R::BadWorkspaceId),
            ("DELETE", "/v1/workspaces/a.b/forensics", R::BadWorkspaceId),
            ("POST", "/v1/workspaces//exec", R::BadWorkspaceId),
            (
                "GET",
                &format!("/v1/workspaces/{}", "a".repeat(65)),
                R::BadWorkspaceId,
            ),
            ("PUT", "/v1/workspaces/ws_1", R::NotFound),
            ("GET", "/v1/workspaces/ws_1/exec", R::NotFound),
            ("DELETE", "/v1/tokens/../tok", R::NotFound),
            ("POST", "/v1/tokens/tok-1/rotate", R::NotFound),
            ("GET", "/v1/debug/console/../../etc", R::NotFound),
            ("GET", "/v1/debug/console/a b", R::NotFound),
            ("GET", "/v2/health", R::NotFound),
            ("GET", "/", R::NotFound),
            ("GET", "", R::NotFound),
            ("get", "/v1/health", R::NotFound),
        ] {
            assert_eq!(resolve(method, path), want, "{method} {path}");
        }
    }
}
