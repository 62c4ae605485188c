//! The types name the same fields, and the same enum values, as the
//! schemas of docs/openapi.yaml. (What values the server accepts and
//! answers is checked against the document by host-init's openapi test,
//! with schemathesis; this catches a field added to one and not the other.)

use paddock_api_types::*;
use std::collections::{BTreeMap, BTreeSet};

const DOC: &str = include_str!("../../docs/openapi.yaml");

/// The lines of `components.schemas.<name>`, found by indentation (the
/// document's own layout: schemas at 4 spaces, their keys at 6).
fn schema(name: &str) -> Vec<&'static str> {
    let start = format!("    {name}:");
    let mut lines = DOC
        .lines()
        .skip_while(|l| *l != "  schemas:")
        .skip_while(|l| *l != start)
        .skip(1);
    let mut out = Vec::new();
    for l in lines.by_ref() {
        if !l.starts_with("      ") && !l.trim().is_empty() {
            break;
        }
        out.push(l);
    }
    assert!(!out.is_empty(), "no schema {name} in docs/openapi.yaml");
    out
}

/// The property names directly under `properties:` (indent 8).
fn properties(name: &str) -> BTreeSet<String> {
    schema(name)
        .into_iter()
        .skip_while(|l| *l != "      properties:")
        .skip(1)
        .take_while(|l| l.starts_with("        ") || l.trim().is_empty())
        .filter(|l| l.len() > 8 && !l[8..].starts_with(' '))
        .filter_map(|l| {
            l.trim()
                .split(':')
                .next()
                .map(|k| k.trim_matches('"').to_string())
        })
        .collect()
}

/// The `enum: [...]` of a string schema.
fn enum_values(name: &str) -> BTreeSet<String> {
    let line = schema(name)
        .into_iter()
        .find(|l| l.trim_start().starts_with("enum:"))
        .unwrap_or_else(|| panic!("{name} has no enum"));
    list_after(line, "enum:")
}

fn list_after(line: &str, key: &str) -> BTreeSet<String> {
    let rest = &line[line.find(key).expect("key") + key.len()..];
    let inner = rest
        .trim()
        .trim_start_matches('[')
        .split(']')
        .next()
        .unwrap_or("");
    inner
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The keys a value of the type serializes to (samples below set every
/// optional field, so none is skipped).
fn keys<T: serde::Serialize>(v: &T) -> BTreeSet<String> {
    match serde_json::to_value(v).expect("serialize") {
        serde_json::Value::Object(m) => m.keys().cloned().collect(),
        other => panic!("not an object: {other}"),
    }
}

fn egress() -> Egress {
    Egress {
        domains: vec!["example.com".into()],
        cidrs: vec!["203.0.113.0/24:443".into()],
    }
}

#[test]
fn request_types_name_the_documented_fields() {
    let mut spec = WorkspaceSpec::new(60);
    spec.disk_mib_per_s = Some(1);
    spec.disk_iops = Some(1);
    spec.net_mib_per_s = Some(1);
    spec.net_connections_per_s = Some(1);
    spec.secrets.insert(
        "K".into(),
        serde_json::from_str(r#"{"value":"v","hosts":["a.test"]}"#).expect("secret"),
    );
    let mut spec_keys = keys(&spec);
    // Test images' benchmark switch: refused by product images, so not in
    // the public document.
    spec.test_unencrypted_disk = true;
    assert!(keys(&spec).contains("test_unencrypted_disk"));
    spec_keys.remove("test_unencrypted_disk");
    assert_eq!(spec_keys, properties("WorkspaceSpec"));

    assert_eq!(keys(&egress()), properties("Egress"));
    let exec = ExecRequest {
        argv: vec!["true".into()],
        env: BTreeMap::from([("A".into(), "b".into())]),
        cwd: Some("/".into()),
        user: Some("root".into()),
        timeout_s: Some(1),
        stdin: Some(String::new()),
    };
    assert_eq!(keys(&exec), properties("ExecRequest"));
    let mint = MintRequest {
        name: "n".into(),
        scopes: vec![Scope::Read],
        ttl_s: Some(1),
        quotas: Quotas::default(),
        labels: BTreeMap::new(),
        workspace_ids: Some(vec![]),
        egress_allow: Some(egress()),
        actions: Some(paddock_api_types::ActionPolicy::default()),
        secret_format: Some(paddock_api_types::SecretFormat::E2b),
    };
    assert_eq!(keys(&mint), properties("TokenRequest"));
    let process = ProcessRequest {
        argv: vec!["sh".into()],
        env: BTreeMap::from([("A".into(), "b".into())]),
        cwd: Some("/".into()),
        user: Some("root".into()),
        tag: Some("t".into()),
        pty: Some(PtySize { cols: 80, rows: 24 }),
        stdin: true,
        timeout_s: Some(1),
    };
    assert_eq!(keys(&process), properties("ProcessRequest"));
    assert_eq!(keys(&PtySize { cols: 1, rows: 1 }), properties("PtySize"));
    assert_eq!(keys(&Quotas::default()), properties("Quotas"));
    assert_eq!(
        keys(&TtlRequest {
            ttl_s: 60,
            reason: Some("r".into())
        }),
        properties("TtlRequest")
    );
    assert_eq!(
        keys(&paddock_api_types::ActionPolicy::default()),
        properties("ActionPolicy")
    );
}

#[test]
fn answer_types_name_the_documented_fields() {
    let limits = WorkspaceLimits {
        cpu_max_us_per_100ms: 1,
        memory_max_bytes: 1,
        pids_max: 1,
        io_max_bytes_per_s: 1,
        io_max_ops_per_s: 1,
        disk_bytes_per_s: 1,
        disk_ops_per_s: 1,
        net_bytes_per_s: 1,
        net_connections_per_s: 1,
    };
    let ws = Workspace {
        id: "ws_x".into(),
        template: "default".into(),
        vcpus: 1,
        memory_mib: 1,
        disk_mib: 1,
        labels: BTreeMap::new(),
        env_keys: vec![],
        created_at: 0,
        expires_at: 0,
        state: WorkspaceState::Running,
        limits,
        disk_encrypted: true,
        egress: egress(),
        published: vec![],
        address: None,
        signals: SignalRules::default().effective(),
        secrets: vec!["K".into()],
        paused_at: Some(1),
        resume_ttl_s: Some(1),
    };
    assert_eq!(keys(&ws), properties("Workspace"));
    let secret = Secret {
        name: "K".into(),
        placeholder: "paddock_secret_0".into(),
        hosts: vec!["a.test".into()],
        header: Some("Authorization".into()),
        format: Some("Bearer {}".into()),
        replace_in: vec![SecretPlace::Headers],
        allow_plain_http: false,
        upstream_ca: false,
        updated_at: 0,
    };
    assert_eq!(keys(&secret), properties("Secret"));
    assert_eq!(
        keys(&SecretList {
            secrets: vec![],
            egress_ca: String::new()
        }),
        properties("SecretList")
    );
    assert_eq!(
        keys(&SecretRemoved {
            workspace: "ws_x".into(),
            removed: "K".into()
        }),
        properties("SecretRemoved")
    );
    let spec = SecretSpec {
        value: "v".into(),
        hosts: vec!["a.test".into()],
        header: Some("Authorization".into()),
        format: Some("Bearer {}".into()),
        replace_in: vec![SecretPlace::Headers],
        allow_plain_http: true,
        upstream_ca: Some("pem".into()),
    };
    assert_eq!(keys(&spec), properties("SecretSpec"));
    assert_eq!(keys(&ws.signals), properties("SignalRules"));
    let rule = SignalRule {
        threshold: 1,
        window_s: 5,
        action: SignalAction::Stop,
        off: true,
    };
    assert_eq!(keys(&rule), properties("SignalRule"));
    let record = NetworkRecord {
        from: 0,
        to: 1,
        kind: "dns".into(),
        name: "a.test".into(),
        dest: Some("203.0.113.1:443".into()),
        decision: "allowed".into(),
        reason: "allowlist".into(),
        count: 1,
        bytes_up: 1,
        bytes_down: 1,
        upstream_failed: 0,
        mismatched: 0,
        secrets_injected: 0,
        secret_misuse: 0,
        answers: vec!["203.0.113.1".into()],
    };
    assert_eq!(keys(&record), properties("NetworkRecord"));
    assert_eq!(
        keys(&NetworkLog { records: vec![] }),
        properties("NetworkLog")
    );
    let report = WorkspaceReport {
        workspace: ws.clone(),
        generated_at: 0,
        commands_started: 0,
        commands: vec![],
        signals: vec![],
        network: NetworkSummary::default(),
        files: FileChanges::default(),
    };
    assert_eq!(keys(&report), properties("WorkspaceReport"));
    // Each kind names its own fields; together they are the document's.
    let mut approval_keys = BTreeSet::new();
    for action in [
        ApprovalAction::Egress {
            host: "a.test".into(),
            port: 443,
        },
        ApprovalAction::ExtendTtl { ttl_s: 60 },
        ApprovalAction::PublishPort {
            port: 80,
            host_port: Some(20000),
        },
        ApprovalAction::Link {
            to: "ws_y".into(),
            port: 80,
            link: Some("lnk_1".into()),
        },
    ] {
        let approval = Approval {
            id: "apr_1".into(),
            workspace: "ws_x".into(),
            action,
            asked_by: Some("tok_x".into()),
            reason: "r".into(),
            state: ApprovalState::Approved,
            asked_at: 0,
            asks: 1,
            decided_by: Some("tok_x".into()),
            decided_at: Some(1),
            decision_reason: Some("ok".into()),
            expires_at: Some(2),
        };
        let back: Approval =
            serde_json::from_value(serde_json::to_value(&approval).expect("json")).expect("back");
        assert_eq!(back, approval);
        approval_keys.extend(keys(&approval));
    }
    assert_eq!(approval_keys, properties("Approval"));
    assert_eq!(
        keys(&ApprovalList { approvals: vec![] }),
        properties("ApprovalList")
    );
    let decision = ApprovalDecision {
        approve: true,
        ttl_s: Some(60),
        reason: Some("r".into()),
    };
    assert_eq!(keys(&decision), properties("ApprovalDecision"));
    assert_eq!(keys(&ErrorBody::new("x")), properties("Error"));
    let token = TokenView {
        id: "tok_x".into(),
        name: "n".into(),
        scopes: vec![],
        expires_at: None,
        revoked: false,
        parent: None,
        quotas: Quotas::default(),
        labels: BTreeMap::new(),
        workspace_ids: None,
        egress_allow: None,
        actions: paddock_api_types::ActionPolicy::default(),
    };
    assert_eq!(keys(&token), properties("Token"));
    let link = Link {
        id: "lnk_x".into(),
        from: "ws_a".into(),
        to: "ws_b".into(),
        port: 80,
        created_at: 0,
        to_address: None,
    };
    assert_eq!(keys(&link), properties("Link"));
    let health = Health {
        status: "ok".into(),
        state: "ready".into(),
        version: "0".into(),
        workspaces: 0,
        uptime_s: 0,
    };
    assert_eq!(keys(&health), properties("Health"));
    let revoked = Revoked {
        revoked: "tok_x".into(),
    };
    assert_eq!(keys(&revoked), properties("Revoked"));
    let rotated = TokenRotated {
        id: "tok_x".into(),
        secret: "pdk_x".into(),
        note: "n".into(),
    };
    assert_eq!(keys(&rotated), properties("TokenRotated"));
    let tls = TlsRotated {
        fingerprint: "AA".into(),
        note: "n".into(),
    };
    assert_eq!(keys(&tls), properties("TlsRotated"));
    let entry = FileEntry {
        name: "a".into(),
        kind: FileKind::File,
        size: 1,
        mode: "644".into(),
        uid: 0,
        gid: 0,
        mtime: 0,
    };
    assert_eq!(keys(&entry), properties("FileEntry"));
    let listing = DirListing {
        path: "/".into(),
        entries: vec![entry],
    };
    assert_eq!(keys(&listing), properties("DirListing"));
    let sample = WorkspaceSample {
        t: 1,
        cpu_pct: 0.5,
        vcpus: 1,
        memory_bytes: 1,
        memory_limit_bytes: 1,
        disk_used_bytes: 1,
        disk_bytes: 1,
        net_sent_bytes: 1,
        net_received_bytes: 1,
    };
    assert_eq!(keys(&sample), properties("WorkspaceSample"));
    let session = paddock_api_types::Session {
        token: "tok_x".into(),
        tenant: "tok_x".into(),
        admin: false,
        scopes: vec![paddock_api_types::Scope::Read],
        expires_at: 1,
        csrf_token: "c".into(),
    };
    assert_eq!(keys(&session), properties("Session"));
    let key_status = KeyStatus {
        state: KeyState::Ready,
        detail: "d".into(),
    };
    assert_eq!(keys(&key_status), properties("KeyStatus"));
    let host = paddock_api_types::HostSample {
        t: 1,
        cpu_pct: 1.0,
        cpus: 1,
        memory_used_bytes: 1,
        memory_total_bytes: 1,
        load1: 1.0,
    };
    assert_eq!(keys(&host), properties("HostSample"));
    let data = paddock_api_types::DiskUse {
        total_bytes: 1,
        used_bytes: 1,
        available_bytes: 1,
    };
    assert_eq!(keys(&data), properties("DiskUse"));
    let system = paddock_api_types::SystemStatus {
        version: "v".into(),
        uptime_s: 1,
        tls_fingerprint: Some("f".into()),
        keys: key_status.clone(),
        data,
        host: Some(host.clone()),
        slots: Vec::new(),
        update: None,
    };
    assert_eq!(keys(&system), properties("SystemStatus"));
    let slot = paddock_api_types::SlotInfo {
        slot: "a".into(),
        version: Some("1".into()),
        state: paddock_api_types::SlotState::Trial,
        tries_left: Some(2),
        booted: true,
    };
    assert_eq!(keys(&slot), properties("SlotInfo"));
    let update = paddock_api_types::UpdateStatus {
        version: "1".into(),
        slot: "b".into(),
        state: paddock_api_types::UpdateState::Ready,
        reboot_at: Some(1),
        detail: Some("d".into()),
    };
    assert_eq!(keys(&update), properties("UpdateStatus"));
    let metrics = paddock_api_types::HostMetrics {
        samples: vec![host],
    };
    assert_eq!(keys(&metrics), properties("HostMetrics"));
    let file = ForensicFile {
        bytes: 1,
        sha256: "0".repeat(64),
    };
    assert_eq!(keys(&file), properties("ForensicFile"));
    let files = ForensicFiles {
        memory: file.clone(),
        disk: file.clone(),
        audit: file.clone(),
        network: Some(file),
    };
    assert_eq!(keys(&files), properties("ForensicFiles"));
    let manifest = ForensicManifest {
        workspace: ws.clone(),
        taken_at: 1,
        taken_by: "tok_a".into(),
        files,
        encrypted: true,
        encryption: "e".into(),
    };
    assert_eq!(keys(&manifest), properties("ForensicManifest"));
    let quarantined = Quarantined {
        workspace: ws,
        revoked_tokens: vec![],
        snapshot: manifest,
    };
    assert_eq!(keys(&quarantined), properties("Quarantined"));
    let recover = RecoverRequest {
        recovery_secret: "s".into(),
    };
    assert_eq!(keys(&recover), properties("RecoverRequest"));
    // An event names `ts` and `event`; its kind's fields sit beside them.
    let event: AuditEvent =
        serde_json::from_str(r#"{"ts":1,"event":"workspace_created","workspace":"ws_a"}"#)
            .expect("event");
    assert_eq!(event.text("workspace"), Some("ws_a"));
    let mut bare = keys(&event);
    bare.remove("workspace");
    assert_eq!(bare, properties("AuditEvent"));
}

#[test]
fn enums_have_the_documented_values() {
    let names = |v: &[serde_json::Value]| -> BTreeSet<String> {
        v.iter()
            .map(|x| x.as_str().expect("string").to_string())
            .collect()
    };
    let scopes: Vec<_> = Scope::ALL
        .iter()
        .map(|s| serde_json::to_value(s).expect("scope"))
        .collect();
    assert_eq!(names(&scopes), enum_values("Scope"));
    let states: Vec<_> = [
        WorkspaceState::Starting,
        WorkspaceState::Running,
        WorkspaceState::Stopped,
        WorkspaceState::Lost,
        WorkspaceState::Quarantined,
        WorkspaceState::Paused,
    ]
    .iter()
    .map(|s| serde_json::to_value(s).expect("state"))
    .collect();
    let state_line = schema("Workspace")
        .into_iter()
        .find(|l| l.trim_start().starts_with("state:"))
        .expect("Workspace.state");
    assert_eq!(names(&states), list_after(state_line, "enum:"));
    let key_states: Vec<_> = [KeyState::Ready, KeyState::Locked, KeyState::Unavailable]
        .iter()
        .map(|s| serde_json::to_value(s).expect("key state"))
        .collect();
    assert_eq!(names(&key_states), enum_values("KeyState"));
}

#[test]
fn manifests_of_other_versions_still_read() {
    // A snapshot is evidence read back long after: one from before the
    // network record and the encryption note, and one from a newer box
    // with a field this version does not know, both read.
    let file = r#"{"bytes": 1, "sha256": "00"}"#;
    let old = format!(r#"{{"memory": {file}, "disk": {file}, "audit": {file}}}"#);
    let files: ForensicFiles = serde_json::from_str(&old).expect("an early snapshot's files");
    assert!(files.get("network").is_none() && files.get("memory").is_some());
    let newer = format!(
        r#"{{"memory": {file}, "disk": {file}, "audit": {file}, "network": {file}, "screenshots": {file}}}"#
    );
    let files: ForensicFiles = serde_json::from_str(&newer).expect("a newer snapshot's files");
    assert_eq!(files.get("network").map(|f| f.bytes), Some(1));
}
