//! Tenants against each other through the real API (issue 14, items 1, 5,
//! 6 and 11): a token minted by a tenant to name another tenant's
//! workspace, by id or by its labels, reaches it on no route; quotas are
//! shared by a tenant's whole tree; revoking a root ends its deepest
//! descendant; egress at create is only what the token was granted.

use super::{exec_output, json};
use paddock_tests::appliance::Appliance;

/// Every route that names a workspace, as (method, path, body).
fn routes(id: &str) -> Vec<(&'static str, String, Option<String>)> {
    let w = format!("/v1/workspaces/{id}");
    vec![
        ("GET", w.clone(), None),
        (
            "POST",
            format!("{w}/exec"),
            Some(r#"{"argv": ["cat", "/proc/1/environ"]}"#.into()),
        ),
        ("GET", format!("{w}/files?path=/etc/hostname"), None),
        (
            "PUT",
            format!("{w}/files?path=/tmp/planted"),
            Some("x".into()),
        ),
        ("POST", format!("{w}/stop"), None),
        (
            "POST",
            format!("{w}/limits"),
            Some(r#"{"disk_iops": 100}"#.into()),
        ),
        (
            "PUT",
            format!("{w}/egress"),
            Some(r#"{"domains": ["evil.test"]}"#.into()),
        ),
        ("POST", format!("{w}/ports"), Some(r#"{"port": 22}"#.into())),
        ("POST", format!("{w}/quarantine"), None),
        ("DELETE", format!("{w}/forensics"), None),
        ("GET", format!("{w}/forensics/memory"), None),
        (
            "POST",
            "/v1/links".into(),
            Some(format!(r#"{{"from": "{id}", "to": "{id}", "port": 80}}"#)),
        ),
        ("DELETE", w, None),
    ]
}

fn mint(app: &Appliance, by: &str, body: &str) -> (u16, serde_json::Value) {
    let (code, out) = app
        .api("POST", "/v1/tokens", by, Some(body.as_bytes()))
        .expect("curl");
    (code, json(&out))
}

fn secret(v: &serde_json::Value) -> String {
    v["secret"].as_str().expect("secret").to_string()
}

pub fn tenant_isolation(app: &Appliance, admin: &str) {
    let call = |m: &str, p: &str, t: &str, b: Option<&str>| {
        app.api(m, p, t, b.map(str::as_bytes)).expect("curl")
    };
    let all = r#""scopes": ["create", "read", "exec", "files", "delete"]"#;
    // Alice: one workspace for her whole tree.
    let (code, alice) = mint(
        app,
        admin,
        &format!(r#"{{"name": "alice", {all}, "quotas": {{"max_workspaces": 1}}}}"#),
    );
    assert_eq!(code, 201, "{alice}");
    let alice_s = secret(&alice);
    let (_, c1) = mint(app, &alice_s, &format!(r#"{{"name": "alice-1", {all}}}"#));
    let (_, c2) = mint(app, &alice_s, &format!(r#"{{"name": "alice-2", {all}}}"#));
    let (c1, c2) = (secret(&c1), secret(&c2));
    let (code, body) = call(
        "POST",
        "/v1/workspaces",
        &c1,
        Some(
            r#"{"ttl_s": 900, "memory_mib": 256, "disk_mib": 256, "labels": {"team": "a"}, "env": {"VICTIM_SECRET": "v1ct1m-value"}}"#,
        ),
    );
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    let victim = json(&body)["id"].as_str().expect("id").to_string();
    let (code, body) = call(
        "POST",
        "/v1/workspaces",
        &c2,
        Some(r#"{"ttl_s": 900, "memory_mib": 256, "disk_mib": 256}"#),
    );
    assert_eq!(
        code,
        409,
        "the parent's max_workspaces is shared by its children: {}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(
        call("GET", &format!("/v1/workspaces/{victim}"), &alice_s, None).0,
        200,
        "a parent sees what its children created"
    );

    // Mallory, another tenant, mints children naming alice's workspace.
    let (_, mallory) = mint(app, admin, &format!(r#"{{"name": "mallory", {all}}}"#));
    let mallory_s = secret(&mallory);
    let by_id = format!(r#"{{"name": "by-id", {all}, "workspace_ids": ["{victim}"]}}"#);
    let by_label = format!(r#"{{"name": "by-label", {all}, "labels": {{"team": "a"}}}}"#);
    for (how, req) in [("id", by_id), ("labels", by_label)] {
        let (code, child) = mint(app, &mallory_s, &req);
        assert_eq!(code, 201, "minting narrows, so it is allowed: {child}");
        let child = secret(&child);
        for (m, path, body) in routes(&victim) {
            let (code, out) = call(m, &path, &child, body.as_deref());
            let text = String::from_utf8_lossy(&out);
            assert_eq!(
                code, 403,
                "a child minted by {how} reached {m} {path}: {code} {text}"
            );
            assert!(!text.contains("v1ct1m"), "{m} {path}: {text}");
        }
        let (code, list) = call("GET", "/v1/workspaces", &child, None);
        assert_eq!(code, 200);
        assert!(
            !String::from_utf8_lossy(&list).contains(&victim),
            "listed by a child minted by {how}"
        );
        let (_, metrics) = call("GET", "/metrics", &child, None);
        assert!(!String::from_utf8_lossy(&metrics).contains(&victim));
    }
    // Still there, untouched, and alice's child still reaches it.
    let (code, stream) = call(
        "POST",
        &format!("/v1/workspaces/{victim}/exec"),
        &c1,
        Some(r#"{"argv": ["sh", "-c", "test -e /tmp/planted || echo clean"]}"#),
    );
    assert_eq!(code, 200);
    assert_eq!(exec_output(&stream).0, "clean\n");

    // Egress at create: only what the token was granted.
    let (code, body) = call(
        "POST",
        "/v1/workspaces",
        &mallory_s,
        Some(r#"{"ttl_s": 60, "egress": {"domains": ["exfil.test"]}}"#),
    );
    assert_eq!(code, 403, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("egress_allow"));
    let (code, body) = mint(
        app,
        &mallory_s,
        r#"{"name": "wider", "scopes": ["create"], "egress_allow": {"domains": ["*.evil.test"]}}"#,
    );
    assert_eq!(code, 403, "{body}");

    // Revocation reaches the deepest descendant; depth is capped.
    let (_, root) = mint(app, admin, r#"{"name": "root", "scopes": ["read"]}"#);
    let root_id = root["id"].as_str().expect("id").to_string();
    let mut last = secret(&root);
    let mut depth = 2; // admin, root
    loop {
        let (code, next) = mint(app, &last, r#"{"name": "deeper", "scopes": ["read"]}"#);
        if code != 201 {
            assert_eq!(code, 403, "{next}");
            assert!(next["error"].as_str().unwrap_or("").contains("levels deep"));
            break;
        }
        last = secret(&next);
        depth += 1;
        assert!(depth <= 64, "minting never stops");
    }
    assert_eq!(depth, 16, "the chain stops at 16 levels");
    assert_eq!(call("GET", "/v1/workspaces", &last, None).0, 200);
    assert_eq!(
        call("DELETE", &format!("/v1/tokens/{root_id}"), admin, None).0,
        200
    );
    assert_eq!(
        call("GET", "/v1/workspaces", &last, None).0,
        401,
        "the deepest descendant of a revoked root"
    );

    // Cleanup by the owner's tree.
    assert_eq!(
        call(
            "DELETE",
            &format!("/v1/workspaces/{victim}"),
            &alice_s,
            None
        )
        .0,
        200
    );
}
