//! Quarantine: a workspace frozen, its tokens revoked, its forensic
//! snapshot taken, downloaded and checked; what a non-admin may not do.

use super::*;

/// The stop plan's quarantine: a workspace frozen below its guest, the
/// tokens scoped to it revoked at once, and a forensic snapshot an admin
/// can download that holds what the guest had in memory and on disk. The
/// snapshot outlives the workspace's TTL and its deletion.
pub(crate) fn quarantine_and_forensics(app: &Appliance, admin: &str) {
    let call = |m: &str, p: &str, t: &str, b: Option<&str>| {
        app.api(m, p, t, b.map(str::as_bytes)).expect("curl")
    };
    let created = std::time::Instant::now();
    let ttl_s = 60;
    let (code, body) = call(
        "POST",
        "/v1/workspaces",
        admin,
        Some(&format!(
            r#"{{"ttl_s": {ttl_s}, "memory_mib": 128, "disk_mib": 256, "disk_mib_per_s": 2}}"#
        )),
    );
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    let id = json(&body)["id"].as_str().expect("id").to_string();
    assert_eq!(json(&body)["limits"]["disk_bytes_per_s"], 2u64 << 20);
    // The VMM's token bucket on its disk: 8 MiB written and synced at
    // 2 MiB/s (after at most 2 MiB of burst) cannot take less than 3 s.
    let (code, stream) = call(
        "POST",
        &format!("/v1/workspaces/{id}/exec"),
        admin,
        Some(
            r#"{"argv": ["dd", "if=/dev/zero", "of=/home/agent/rate-test", "bs=1M", "count=8", "conv=fsync"]}"#,
        ),
    );
    assert_eq!(code, 200);
    let (_, end) = exec_output(&stream);
    assert_eq!(end["exit_code"], 0, "{end}");
    let ms = end["duration_ms"].as_u64().expect("duration");
    eprintln!("rate limit: 8 MiB written and synced at 2 MiB/s in {ms} ms");
    assert!(ms >= 2_500, "8 MiB at 2 MiB/s took only {ms} ms");
    // Lowered while it runs: the VMM takes the new limit at the guest's
    // next request. 6 MiB at 1 MiB/s (1 MiB of burst) cannot take under
    // 5 s; at the old 2 MiB/s it would take about 2.
    let (code, body) = call(
        "POST",
        &format!("/v1/workspaces/{id}/limits"),
        admin,
        Some(r#"{"disk_mib_per_s": 0}"#),
    );
    assert_eq!(code, 422, "{}", String::from_utf8_lossy(&body));
    let (code, body) = call(
        "POST",
        &format!("/v1/workspaces/{id}/limits"),
        admin,
        Some(r#"{"disk_mib_per_s": 1}"#),
    );
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json(&body)["limits"]["disk_bytes_per_s"], 1u64 << 20);
    let (code, stream) = call(
        "POST",
        &format!("/v1/workspaces/{id}/exec"),
        admin,
        Some(
            r#"{"argv": ["dd", "if=/dev/zero", "of=/home/agent/rate-test-2", "bs=1M", "count=6", "conv=fsync"]}"#,
        ),
    );
    assert_eq!(code, 200);
    let (_, end) = exec_output(&stream);
    assert_eq!(end["exit_code"], 0, "{end}");
    let ms = end["duration_ms"].as_u64().expect("duration");
    eprintln!("rate limit lowered at run time: 6 MiB at 1 MiB/s in {ms} ms");
    assert!(ms >= 4_500, "6 MiB at 1 MiB/s took only {ms} ms");
    let (code, body) = call(
        "POST",
        "/v1/tokens",
        admin,
        Some(&format!(
            r#"{{"name": "agent-q", "scopes": ["exec", "read"], "ttl_s": 3600, "workspace_ids": ["{id}"]}}"#
        )),
    );
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    let scoped = json(&body);
    let scoped_secret = scoped["secret"].as_str().expect("secret").to_string();
    // Markers built by the shell, so they exist only as the guest wrote
    // them: one in tmpfs (guest RAM only), one on the workspace's disk.
    let marker_cmd = r#"{"user": "root", "argv": ["sh", "-c", "m=PADDOCK-MEM; echo \"$m-MARKER-$((6*7))\" > /run/forensic-marker; d=PADDOCK-DISK; echo \"$d-MARKER-$((6*7))\" > /root/disk-marker; sync"]}"#;
    let (code, stream) = call(
        "POST",
        &format!("/v1/workspaces/{id}/exec"),
        &scoped_secret,
        Some(marker_cmd),
    );
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&stream));
    assert_eq!(exec_output(&stream).1["exit_code"], 0);

    let (code, body) = call(
        "POST",
        &format!("/v1/workspaces/{id}/quarantine"),
        admin,
        None,
    );
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let q = json(&body);
    assert_eq!(q["workspace"]["state"], "quarantined", "{q}");
    assert_eq!(
        q["revoked_tokens"],
        serde_json::json!([scoped["id"]]),
        "{q}"
    );
    assert_eq!(
        q["snapshot"]["files"]["memory"]["bytes"],
        128u64 << 20,
        "{q}"
    );
    assert_eq!(q["snapshot"]["files"]["disk"]["bytes"], 256u64 << 20, "{q}");
    eprintln!("quarantine: {}", q["snapshot"]["files"]);

    // At once: its tokens answer 401, nothing reaches the guest, a second
    // quarantine or a non-admin download is refused.
    assert_eq!(call("GET", "/v1/workspaces", &scoped_secret, None).0, 401);
    let (code, body) = call(
        "POST",
        &format!("/v1/workspaces/{id}/exec"),
        admin,
        Some(r#"{"argv": ["true"]}"#),
    );
    assert_eq!(code, 409, "{}", String::from_utf8_lossy(&body));
    let (code, body) = call(
        "PUT",
        &format!("/v1/workspaces/{id}/files?path=/tmp/x"),
        admin,
        Some("x"),
    );
    assert_eq!(code, 409, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        call(
            "POST",
            &format!("/v1/workspaces/{id}/quarantine"),
            admin,
            None
        )
        .0,
        409
    );
    let (code, body) = call(
        "POST",
        "/v1/tokens",
        admin,
        Some(
            r#"{"name": "reader", "scopes": ["read", "exec", "files", "create", "delete"], "ttl_s": 600}"#,
        ),
    );
    assert_eq!(code, 201);
    let reader = json(&body)["secret"].as_str().expect("secret").to_string();
    assert_eq!(
        call(
            "GET",
            &format!("/v1/workspaces/{id}/forensics/memory"),
            &reader,
            None
        )
        .0,
        403,
        "forensics are for admins only"
    );
    assert_eq!(
        call(
            "GET",
            &format!("/v1/workspaces/{id}/forensics/other"),
            admin,
            None
        )
        .0,
        404
    );

    // The snapshot holds what the guest wrote, and matches its manifest.
    let (code, memory) = call(
        "GET",
        &format!("/v1/workspaces/{id}/forensics/memory"),
        admin,
        None,
    );
    assert_eq!(code, 200);
    assert_eq!(memory.len(), 128 << 20);
    let sha = |b: &[u8]| format!("{:x}", sha2::Sha256::digest(b));
    assert_eq!(
        q["snapshot"]["files"]["memory"]["sha256"].as_str(),
        Some(sha(&memory).as_str())
    );
    let has = |hay: &[u8], needle: &[u8]| memchr::memmem::find(hay, needle).is_some();
    assert!(
        has(&memory, b"PADDOCK-MEM-MARKER-42\n"),
        "the memory snapshot holds the marker written to the guest's tmpfs"
    );
    drop(memory);
    let (code, disk) = call(
        "GET",
        &format!("/v1/workspaces/{id}/forensics/disk"),
        admin,
        None,
    );
    assert_eq!(code, 200);
    assert_eq!(
        q["snapshot"]["files"]["disk"]["sha256"].as_str(),
        Some(sha(&disk).as_str())
    );
    assert!(
        has(&disk, b"PADDOCK-DISK-MARKER-42\n"),
        "the disk snapshot holds the file the guest synced"
    );
    drop(disk);
    let (code, audit) = call(
        "GET",
        &format!("/v1/workspaces/{id}/forensics/audit"),
        admin,
        None,
    );
    assert_eq!(code, 200);
    let audit = String::from_utf8_lossy(&audit);
    for event in ["workspace_created", "exec_started", "workspace_quarantined"] {
        assert!(audit.contains(event), "{event} in the trail: {audit}");
    }
    // Its network record goes with it (JSON lines, as its manifest says).
    let (code, network) = call(
        "GET",
        &format!("/v1/workspaces/{id}/forensics/network"),
        admin,
        None,
    );
    assert_eq!(code, 200);
    assert_eq!(
        Some(network.len() as u64),
        q["snapshot"]["files"]["network"]["bytes"].as_u64(),
        "{q}"
    );

    // Its TTL has no hold on it: still there, still frozen, after it ran out.
    if let Some(left) = Duration::from_secs(ttl_s + 2).checked_sub(created.elapsed()) {
        std::thread::sleep(left);
    }
    let (code, body) = call("GET", &format!("/v1/workspaces/{id}"), admin, None);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json(&body)["state"], "quarantined");

    // Deleting the workspace keeps the snapshot; only its own delete goes.
    assert_eq!(
        call("DELETE", &format!("/v1/workspaces/{id}"), admin, None).0,
        200
    );
    let (code, manifest) = call(
        "GET",
        &format!("/v1/workspaces/{id}/forensics/manifest"),
        admin,
        None,
    );
    assert_eq!(code, 200);
    assert_eq!(json(&manifest)["workspace"]["id"], id.as_str());
    assert_eq!(
        call(
            "DELETE",
            &format!("/v1/workspaces/{id}/forensics"),
            admin,
            None
        )
        .0,
        200
    );
    assert_eq!(
        call(
            "GET",
            &format!("/v1/workspaces/{id}/forensics/manifest"),
            admin,
            None
        )
        .0,
        404
    );
    let (code, body) = call("GET", "/v1/audit?event=workspace_quarantined", admin, None);
    assert_eq!(code, 200);
    assert!(String::from_utf8_lossy(&body).contains(&id));
}
