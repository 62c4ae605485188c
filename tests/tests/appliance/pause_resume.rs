//! Pause and resume against the booted appliance: a workspace's memory
//! (a marker only its guest RAM holds) survives a pause, a resume, and a
//! pause across a reboot of the box; while paused nothing reaches it and
//! its TTL stands still; on the data partition its memory is ciphertext
//! (the caller scans the disk image between the boots).

use super::*;

/// What the first boot leaves paused for the second.
pub(crate) struct Paused {
    pub id: String,
    /// A string that exists only in the guest's RAM (tmpfs), made there.
    pub marker: String,
    pub machine_id: String,
    pub uptime_s: f64,
}

pub(crate) fn run(app: &Appliance, token: &str, id: &str, script: &str) -> (u16, String) {
    // As root: /run (the guest's tmpfs) is root's.
    let body =
        serde_json::to_vec(&serde_json::json!({"argv": ["sh", "-c", script], "user": "root"}))
            .expect("JSON");
    let (code, stream) = app
        .api(
            "POST",
            &format!("/v1/workspaces/{id}/exec"),
            token,
            Some(&body),
        )
        .expect("curl");
    if code != 200 {
        return (code, String::from_utf8_lossy(&stream).to_string());
    }
    let (out, last) = exec_output(&stream);
    assert_eq!(last["exit_code"], 0, "{script}: {last}");
    (code, out)
}

/// Its marker, machine-id and uptime, read inside the guest.
fn inside(app: &Appliance, token: &str, id: &str) -> (String, String, f64) {
    const SCRIPT: &str = r#"printf 'marker=%s\n' "$(cat /run/marker)"
printf 'machine=%s\n' "$(cat /etc/machine-id 2>/dev/null || echo none)"
printf 'uptime=%s\n' "$(cut -d' ' -f1 /proc/uptime)""#;
    let (code, out) = run(app, token, id, SCRIPT);
    assert_eq!(code, 200, "{out}");
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} in {out:?}"))
            .trim()
            .to_string()
    };
    let uptime = field("uptime")
        .parse()
        .unwrap_or_else(|_| panic!("no uptime in {out:?}"));
    (field("marker"), field("machine"), uptime)
}

fn workspace(app: &Appliance, token: &str, id: &str) -> serde_json::Value {
    let (code, body) = app
        .api("GET", &format!("/v1/workspaces/{id}"), token, None)
        .expect("curl");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    json(&body)
}

fn pause(app: &Appliance, token: &str, id: &str, body: Option<&[u8]>) -> (u16, serde_json::Value) {
    let (code, body) = app
        .api("POST", &format!("/v1/workspaces/{id}/pause"), token, body)
        .expect("curl");
    (
        code,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    )
}

fn resume(app: &Appliance, token: &str, id: &str) -> (u16, serde_json::Value) {
    let (code, body) = app
        .api("POST", &format!("/v1/workspaces/{id}/resume"), token, None)
        .expect("curl");
    (
        code,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    )
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// First boot: a workspace paused, refused while paused, resumed whole,
/// and paused again for the next boot to resume.
pub(crate) fn pause_and_resume(app: &Appliance, admin: &str) -> Paused {
    let t = std::time::Instant::now();
    let (code, body) = app
        .api(
            "POST",
            "/v1/workspaces",
            admin,
            Some(br#"{"ttl_s": 900, "memory_mib": 256, "disk_mib": 256, "labels": {"phase": "paused"}}"#),
        )
        .expect("curl");
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    let create_ms = t.elapsed().as_millis();
    let id = json(&body)["id"].as_str().expect("id").to_string();
    // Made in the guest, so no request, log or audit entry on the host
    // ever holds it: only the guest's RAM (its /run is tmpfs).
    let (code, out) = run(
        app,
        admin,
        &id,
        "printf 'pdk%smem-%s' $((6*7)) $(cat /proc/sys/kernel/random/uuid) > /run/marker; echo ok",
    );
    assert_eq!((code, out.as_str()), (200, "ok\n"));
    let (marker, machine_id, uptime_before) = inside(app, admin, &id);
    assert!(
        marker.starts_with("pdk42mem-") && marker.len() > 30,
        "{marker:?}"
    );

    // Malformed and out-of-range requests change nothing.
    let (code, body) = pause(app, admin, &id, Some(b"{\"ttl_s\": \"soon\"}"));
    assert_eq!(code, 422, "{body}");
    let (code, body) = pause(app, admin, &id, Some(b"{\"ttl_s\": 0}"));
    assert_eq!(code, 422, "{body}");
    let (code, body) = resume(app, admin, &id);
    assert_eq!(code, 409, "a running workspace is not resumed: {body}");
    assert_eq!(workspace(app, admin, &id)["state"], "running");

    let before = now_s();
    let t = std::time::Instant::now();
    let (code, w) = pause(app, admin, &id, Some(br#"{"ttl_s": 7200}"#));
    let pause_ms = t.elapsed().as_millis();
    assert_eq!(code, 200, "{w}");
    assert_eq!(w["state"], "paused", "{w}");
    let left = w["resume_ttl_s"].as_u64().expect("resume_ttl_s");
    assert!((1..=900).contains(&left), "{w}");
    let deleted_at = w["expires_at"].as_u64().expect("expires_at");
    assert!(
        deleted_at >= before + 7200 - 5 && deleted_at <= now_s() + 7200 + 5,
        "its end is the paused TTL's: {w}"
    );
    // Nothing reaches a paused workspace, and it is not paused twice.
    let (code, out) = run(app, admin, &id, "echo no");
    assert_eq!(code, 409, "an exec while paused: {out}");
    let (code, body) = pause(app, admin, &id, None);
    assert_eq!(code, 409, "{body}");
    let (code, body) = app
        .api("POST", &format!("/v1/workspaces/{id}/stop"), admin, None)
        .expect("curl");
    assert_eq!(code, 409, "{}", String::from_utf8_lossy(&body));
    let (_, metrics) = app.api("GET", "/metrics", admin, None).expect("curl");
    let metrics = String::from_utf8_lossy(&metrics).to_string();
    // (E2B's session paused and resumed a sandbox before this one.)
    let pauses = metrics
        .lines()
        .find_map(|l| l.strip_prefix("paddock_workspace_pauses_total "))
        .and_then(|n| n.trim().parse::<u64>().ok());
    assert!(
        metrics.contains("paddock_workspaces{state=\"paused\"} 1") && pauses >= Some(1),
        "{metrics}"
    );

    // Its TTL stood still while paused: it gets back what it had left.
    let t = std::time::Instant::now();
    let (code, w) = resume(app, admin, &id);
    let resume_ms = t.elapsed().as_millis();
    // Side by side, for BENCHMARKS.md: the same workspace created cold and
    // resumed, each to the API's answer (the agent ready or resynced).
    eprintln!(
        "pause/resume figures: create {create_ms} ms, pause {pause_ms} ms, resume {resume_ms} ms"
    );
    assert_eq!(code, 200, "{w}");
    // Resumed into a new cgroup: capped as a fresh one is.
    let (_, metrics) = app.api("GET", "/metrics", admin, None).expect("curl");
    let metrics = String::from_utf8_lossy(&metrics).to_string();
    let cap = format!("paddock_workspace_cpu_limit_cpus{{workspace=\"{id}\"}} 1\n");
    assert!(
        metrics.contains(&cap),
        "the resumed workspace's cgroup holds no CPU cap:\n{metrics}"
    );
    assert_eq!(w["state"], "running", "{w}");
    assert!(w.get("resume_ttl_s").is_none(), "{w}");
    let ends = w["expires_at"].as_u64().expect("expires_at");
    assert!(
        ends >= before + left && ends <= now_s() + left + 5,
        "{left} s left when paused, ends at {ends}: {w}"
    );
    let (marker_after, machine_id_after, uptime_after) = inside(app, admin, &id);
    assert_eq!(marker_after, marker, "its memory came back");
    assert_eq!(
        machine_id_after, machine_id,
        "a resumed workspace is itself"
    );
    assert!(
        uptime_after >= uptime_before,
        "the same kernel runs on (uptime {uptime_before} then {uptime_after}), not a new boot"
    );
    // Its disk and network came back with it.
    let (code, out) = run(
        app,
        admin,
        &id,
        "echo kept > /home/agent/file && cat /home/agent/file",
    );
    assert_eq!((code, out.as_str()), (200, "kept\n"));

    let (code, w) = pause(app, admin, &id, None);
    assert_eq!(code, 200, "{w}");
    let (code, audit) = app
        .api("GET", &format!("/v1/audit?workspace={id}"), admin, None)
        .expect("curl");
    assert_eq!(code, 200);
    let audit = String::from_utf8_lossy(&audit).to_string();
    assert_eq!(audit.matches("workspace_paused").count(), 2, "{audit}");
    assert_eq!(audit.matches("workspace_resumed").count(), 1, "{audit}");
    // The figures for BENCHMARKS.md (the emulated appliance: TCG, nested).
    let events = json(audit.as_bytes());
    let list = events
        .get("events")
        .and_then(|e| e.as_array())
        .or_else(|| events.as_array())
        .cloned()
        .unwrap_or_default();
    for e in list
        .iter()
        .filter(|e| e["event"] == "workspace_paused" || e["event"] == "workspace_resumed")
    {
        eprintln!("pause/resume figures: {e}");
    }
    Paused {
        id,
        marker,
        machine_id,
        uptime_s: uptime_after,
    }
}

/// Second boot: the workspace paused in the first is still paused (not
/// lost), resumes with its memory, and its clock is set to now.
pub(crate) fn resume_after_reboot(app: &Appliance, admin: &str, paused: &Paused) {
    let id = &paused.id;
    let w = workspace(app, admin, id);
    assert_eq!(
        w["state"], "paused",
        "a restart keeps a paused workspace: {w}"
    );
    let (code, w) = resume(app, admin, id);
    assert_eq!(code, 200, "{w}");
    let (marker, machine_id, uptime) = inside(app, admin, id);
    assert_eq!(marker, paused.marker, "its memory survived the restart");
    assert_eq!(machine_id, paused.machine_id);
    assert!(uptime >= paused.uptime_s, "{uptime} < {}", paused.uptime_s);
    let (code, out) = run(app, admin, id, "date +%s");
    assert_eq!(code, 200, "{out}");
    let guest: i64 = out.trim().parse().expect("date");
    let host = now_s() as i64;
    assert!(
        (guest - host).abs() < 60,
        "the guest's clock was set at resume: guest {guest}, host {host}"
    );
    let (code, body) = app
        .api("DELETE", &format!("/v1/workspaces/{id}"), admin, None)
        .expect("curl");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
}
