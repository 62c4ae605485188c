//! The native API against a booted appliance: workspaces created, listed,
//! exec'd into, their files, limits and refusals, through curl.

use super::*;

/// The workspace API against the booted appliance: tokens, scopes, create,
/// exec, files, TTL, delete, refusals, the audit log.
/// Returns the id of the workspace it deleted.
pub(crate) fn workspace_api(app: &mut Appliance, admin: &str) -> String {
    let call = |m: &str, p: &str, t: &str, b: Option<&str>| {
        app.api(m, p, t, b.map(str::as_bytes)).expect("curl")
    };

    // Who are you: 401 before anything else.
    assert_eq!(call("GET", "/v1/workspaces", "", None).0, 401);
    assert_eq!(
        call("GET", "/v1/workspaces", "pdk_not_a_token", None).0,
        401
    );

    // Bad requests: clear 4xx, nothing created.
    let (code, body) = call("POST", "/v1/workspaces", admin, Some("{not json"));
    assert_eq!(code, 400, "{}", String::from_utf8_lossy(&body));
    let (code, body) = call(
        "POST",
        "/v1/workspaces",
        admin,
        Some(r#"{"ttl_s": 60, "surprise": true}"#),
    );
    assert_eq!(code, 422);
    assert!(String::from_utf8_lossy(&body).contains("surprise"));
    let (code, body) = call(
        "POST",
        "/v1/workspaces",
        admin,
        Some(r#"{"ttl_s": 0, "memory_mib": 99999999, "vcpus": 1000}"#),
    );
    assert_eq!(code, 422);
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("ttl_s") && text.contains("memory_mib") && text.contains("vcpus"),
        "{text}"
    );
    let (code, _) = call(
        "POST",
        "/v1/workspaces",
        admin,
        Some(r#"{"memory_mib": 256}"#),
    );
    assert_eq!(code, 422, "ttl_s is required");
    let (code, body) = call(
        "POST",
        "/v1/workspaces",
        admin,
        Some(r#"{"ttl_s": 60, "memory_mib": 60000}"#),
    );
    assert_eq!(
        code,
        409,
        "more memory than the box has: {}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(
        json(&call("GET", "/v1/workspaces", admin, None).1)["workspaces"]
            .as_array()
            .map(Vec::len),
        Some(0)
    );

    // Create, exec (with a secret in env), files.
    let (code, body) = call(
        "POST",
        "/v1/workspaces",
        admin,
        Some(
            r#"{"ttl_s": 900, "memory_mib": 256, "disk_mib": 512, "labels": {"team": "a"}, "env": {"SECRET_X": "s3cr3t-value"}}"#,
        ),
    );
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    let ws = json(&body);
    let id = ws["id"].as_str().expect("id").to_string();
    assert_eq!(ws["state"], "running");
    assert!(
        !String::from_utf8_lossy(&body).contains("s3cr3t"),
        "env values are never returned"
    );
    let exec_body =
        r#"{"argv": ["python3", "-c", "import os; print(6*7, os.environ['SECRET_X'])"]}"#;
    let (code, stream) = call(
        "POST",
        &format!("/v1/workspaces/{id}/exec"),
        admin,
        Some(exec_body),
    );
    assert_eq!(code, 200);
    let (out, last) = exec_output(&stream);
    assert_eq!(out, "42 s3cr3t-value\n");
    assert_eq!(last["exit_code"], 0, "{last}");

    // With the workspace running and its secret just used: no process on
    // the host holds it in its argv or environment (the test image's
    // process scan; it sees every process, jailed VMMs included, as the
    // positive control shows), and the appliance's log never printed it.
    let scan = |needle: &str| {
        let (code, body) = call(
            "POST",
            "/v1/debug/process-scan",
            admin,
            Some(&format!(r#"{{"needle": "{needle}"}}"#)),
        );
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
        json(&body)
    };
    let found = scan("/usr/lib/paddock/paddock-vmm");
    assert!(
        found["matches"].as_array().is_some_and(|m| m
            .iter()
            .any(|p| p["comm"] == "paddock-vmm" && p["in"] == "argv")),
        "the scan sees the jailed VMMs: {found}"
    );
    let found = scan("s3cr3t-value");
    assert_eq!(found["matches"], serde_json::json!([]), "{found}");
    assert!(found["scanned"].as_u64().unwrap_or(0) > 5, "{found}");
    eprintln!(
        "secret scan: {} host processes, none holds the secret",
        found["scanned"]
    );
    assert!(
        !app.console().contains("s3cr3t"),
        "the appliance's log has no secret"
    );
    let (code, _) = call(
        "POST",
        "/v1/debug/process-scan",
        "pdk_not_a_token",
        Some(r#"{"needle": "s3cr3t-value"}"#),
    );
    assert_eq!(code, 401);
    let (code, _) = call(
        "PUT",
        &format!("/v1/workspaces/{id}/files?path=/tmp/hello.txt&mode=600"),
        admin,
        Some("hello paddock"),
    );
    assert_eq!(code, 200);
    let (code, got) = call(
        "GET",
        &format!("/v1/workspaces/{id}/files?path=/tmp/hello.txt"),
        admin,
        None,
    );
    assert_eq!((code, got.as_slice()), (200, &b"hello paddock"[..]));
    let (code, _) = call(
        "GET",
        &format!("/v1/workspaces/{id}/files?path=/no/such/file"),
        admin,
        None,
    );
    assert_eq!(code, 404);
    // Asking for a directory that is there already leaves its mode.
    let (code, _) = call(
        "POST",
        &format!("/v1/workspaces/{id}/dir?path=/tmp&mode=755&user=root"),
        admin,
        None,
    );
    assert_eq!(code, 201);
    let (_, body) = call(
        "GET",
        &format!("/v1/workspaces/{id}/dir?path=/"),
        admin,
        None,
    );
    let root = json(&body);
    let tmp = root["entries"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["name"] == "tmp"))
        .expect("/tmp");
    assert_eq!(tmp["mode"], "1777", "{tmp}");
    // Directories: made with parents, listed as the agent user sees
    // them, removed (a non-empty one only when recursive).
    let (code, body) = call(
        "POST",
        &format!("/v1/workspaces/{id}/dir?path=/tmp/d/e&mode=750"),
        admin,
        None,
    );
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    let (code, body) = call(
        "GET",
        &format!("/v1/workspaces/{id}/dir?path=/tmp"),
        admin,
        None,
    );
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let listing = json(&body);
    let names: Vec<(&str, &str)> = listing["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or(""),
                e["kind"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert!(
        names.contains(&("d", "dir")) && names.contains(&("hello.txt", "file")),
        "{listing}"
    );
    let hello = listing["entries"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["name"] == "hello.txt"))
        .expect("hello.txt");
    assert_eq!(
        (hello["size"].as_u64(), hello["mode"].as_str()),
        (Some(13), Some("600"))
    );
    let (code, _) = call(
        "DELETE",
        &format!("/v1/workspaces/{id}/files?path=/tmp/d"),
        admin,
        None,
    );
    assert_eq!(
        code, 422,
        "a directory that is not empty needs recursive=true"
    );
    let (code, _) = call(
        "DELETE",
        &format!("/v1/workspaces/{id}/files?path=/tmp/d&recursive=true"),
        admin,
        None,
    );
    assert_eq!(code, 200);
    let (code, _) = call(
        "GET",
        &format!("/v1/workspaces/{id}/dir?path=/tmp/d"),
        admin,
        None,
    );
    assert_eq!(code, 404);

    // Scoped tokens: no escalation, 403 without learning what exists.
    let (code, body) = call(
        "POST",
        "/v1/tokens",
        admin,
        Some(r#"{"name": "reader", "scopes": ["read"]}"#),
    );
    assert_eq!(code, 201);
    let reader = json(&body);
    let reader_secret = reader["secret"].as_str().expect("secret").to_string();
    assert_eq!(
        call("GET", &format!("/v1/workspaces/{id}"), &reader_secret, None).0,
        403,
        "another token's workspace"
    );
    assert_eq!(
        call(
            "GET",
            "/v1/workspaces/ws_doesnotexist",
            &reader_secret,
            None
        )
        .0,
        403,
        "same answer when it does not exist"
    );
    assert_eq!(
        call(
            "POST",
            &format!("/v1/workspaces/{id}/exec"),
            &reader_secret,
            Some(exec_body)
        )
        .0,
        403
    );
    assert_eq!(
        call(
            "POST",
            "/v1/tokens",
            &reader_secret,
            Some(r#"{"name": "up", "scopes": ["admin"]}"#)
        )
        .0,
        403
    );
    assert_eq!(call("GET", "/v1/audit", &reader_secret, None).0, 403);
    let (code, body) = call(
        "POST",
        "/v1/tokens",
        admin,
        Some(r#"{"name": "team-a", "scopes": ["read", "exec"], "labels": {"team": "a"}}"#),
    );
    assert_eq!(code, 201);
    let team = json(&body)["secret"].as_str().expect("secret").to_string();
    assert_eq!(
        call("GET", &format!("/v1/workspaces/{id}"), &team, None).0,
        200,
        "label-scoped token sees team a"
    );
    let (code, stream) = call(
        "POST",
        &format!("/v1/workspaces/{id}/exec"),
        &team,
        Some(r#"{"argv": ["sh", "-c", "exit 7"]}"#),
    );
    assert_eq!(code, 200);
    assert_eq!(exec_output(&stream).1["exit_code"], 7);
    assert_eq!(
        call("DELETE", &format!("/v1/workspaces/{id}"), &team, None).0,
        403,
        "no delete scope"
    );
    // A token's expiry takes effect by itself.
    let (code, body) = call(
        "POST",
        "/v1/tokens",
        admin,
        Some(r#"{"name": "brief", "scopes": ["read"], "ttl_s": 2}"#),
    );
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    let brief = json(&body)["secret"].as_str().expect("secret").to_string();
    assert_eq!(call("GET", "/v1/workspaces", &brief, None).0, 200);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        call("GET", "/v1/workspaces", &brief, None).0,
        401,
        "expired"
    );
    // File paths: relative ones and NUL bytes are refused before anything
    // reaches the workspace.
    for bad in ["../../etc/passwd", "etc/passwd", "/tmp/a%00b"] {
        let (code, body) = call(
            "PUT",
            &format!("/v1/workspaces/{id}/files?path={bad}"),
            admin,
            Some("x"),
        );
        assert_eq!(code, 422, "{bad}: {}", String::from_utf8_lossy(&body));
    }
    // Metrics: per workspace and host totals, for a token that may read.
    assert_eq!(call("GET", "/metrics", "", None).0, 401);
    let (code, text) = call("GET", "/metrics", admin, None);
    assert_eq!(code, 200);
    let text = String::from_utf8_lossy(&text).to_string();
    for want in [
        format!("paddock_workspace_execs_total{{workspace=\"{id}\"}} 2"),
        format!("paddock_workspace_memory_bytes{{workspace=\"{id}\"}}"),
        format!("paddock_workspace_cpu_seconds_total{{workspace=\"{id}\"}}"),
        format!("paddock_workspace_cpu_throttled_seconds_total{{workspace=\"{id}\"}}"),
        format!("paddock_workspace_cpu_limit_cpus{{workspace=\"{id}\"}} 1\n"),
        format!("paddock_workspace_disk_used_bytes{{workspace=\"{id}\"}}"),
        "paddock_host_memory_total_bytes".to_string(),
    ] {
        assert!(
            text.contains(&want),
            "{want} missing from /metrics:\n{text}"
        );
    }
    // Revocation takes effect on the next request.
    let reader_id = reader["id"].as_str().expect("id");
    assert_eq!(
        call("DELETE", &format!("/v1/tokens/{reader_id}"), admin, None).0,
        200
    );
    assert_eq!(call("GET", "/v1/workspaces", &reader_secret, None).0, 401);

    // Delete; then the audit log tells the story, without secrets.
    assert_eq!(
        call("DELETE", &format!("/v1/workspaces/{id}"), admin, None).0,
        200
    );
    assert_eq!(
        call("GET", &format!("/v1/workspaces/{id}"), admin, None).0,
        404
    );
    // TTL (with the first one gone, so the emulated box runs one workspace
    // besides the demo): a 5 s workspace is destroyed by the appliance on its own.
    let (code, body) = call(
        "POST",
        "/v1/workspaces",
        admin,
        Some(r#"{"ttl_s": 5, "memory_mib": 256, "disk_mib": 256}"#),
    );
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    let short = json(&body)["id"].as_str().expect("id").to_string();
    let mut gone = false;
    for _ in 0..120 {
        if call("GET", &format!("/v1/workspaces/{short}"), admin, None).0 == 404 {
            gone = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(gone, "the 5 s workspace outlived its TTL");

    let (code, audit) = call("GET", "/v1/audit?limit=500", admin, None);
    assert_eq!(code, 200);
    let audit_text = String::from_utf8_lossy(&audit).to_string();
    for event in [
        "token_issued",
        "workspace_created",
        "exec_started",
        "exec_ended",
        "file_written",
        "workspace_expired",
        "workspace_deleted",
        "token_revoked",
        "request_refused",
    ] {
        assert!(
            audit_text.contains(event),
            "audit log lacks {event}: {audit_text}"
        );
    }
    assert!(
        audit_text.contains(&short),
        "the expiry names the workspace"
    );
    assert!(
        !audit_text.contains("s3cr3t") && !audit_text.contains("pdk_"),
        "no secrets in the audit log"
    );
    let only = json(
        &call(
            "GET",
            &format!("/v1/audit?workspace={id}&event=exec_ended"),
            admin,
            None,
        )
        .1,
    );
    let events = only["events"].as_array().expect("events");
    assert_eq!(events.len(), 2, "{only}");
    assert!(events
        .iter()
        .all(|e| e["argv0"].is_string() && e.get("stdout").is_none()));
    id
}
