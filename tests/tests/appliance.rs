//! The appliance image end to end: it boots under UEFI with a TPM, shows
//! its status, serves TLS, runs a workspace under the nested KVM, grows and
//! keeps its data across boots, shuts down in order on the power button,
//! refuses to touch a damaged data partition, holds no shell, and builds
//! to the same bytes twice.

use paddock_image::gpt::{Gpt, SECTOR};
use paddock_image::LABEL_DATA;
use paddock_tests::appliance::{image_dir, repo_root, status_field, Appliance};
use paddock_tests::fakenet::{FakeNet, ALLOWED, DENIED, DNS, METADATA, RAW_LISTED, RAW_UNLISTED};
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

#[path = "appliance/broker.rs"]
mod broker;
#[path = "appliance/e2b.rs"]
mod e2b;
#[path = "appliance/egress_share.rs"]
mod egress_share;
#[path = "appliance/mcp.rs"]
mod mcp;
#[path = "appliance/sdk.rs"]
mod sdk;
#[path = "appliance/shell.rs"]
mod shell;
#[path = "appliance/signals.rs"]
mod signals;
#[path = "appliance/tenants.rs"]
mod tenants;
#[path = "appliance/yellow.rs"]
mod yellow;

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

/// Stdout of an exec's NDJSON stream, and its final event.
fn exec_output(stream: &[u8]) -> (String, serde_json::Value) {
    use base64::Engine as _;
    let mut out = Vec::new();
    let mut last = serde_json::Value::Null;
    for line in stream.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let v = json(line);
        if let Some(d) = v.get("stdout").and_then(|d| d.as_str()) {
            out.extend(
                base64::engine::general_purpose::STANDARD
                    .decode(d)
                    .expect("base64"),
            );
        } else {
            last = v;
        }
    }
    (String::from_utf8_lossy(&out).to_string(), last)
}

/// The workspace API against the booted appliance: tokens, scopes, create,
/// exec, files, TTL, delete, refusals, the audit log.
/// Returns the id of the workspace it deleted.
fn workspace_api(app: &mut Appliance, admin: &str) -> String {
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

/// Limits hold below the guest: inside workspace A a fork bomb, a memory
/// hog, a disk fill and a CPU spin run at once while workspace B executes a
/// command every 100 ms; B keeps answering, so does the API, and A's disk
/// fill stops at A's size. Prints B's worst exec latency.
fn limits_hold(app: &Appliance, admin: &str) {
    let call = |m: &str, p: &str, b: Option<&str>| {
        app.api(m, p, admin, b.map(str::as_bytes)).expect("curl")
    };
    let create = |body: &str| {
        let (code, out) = call("POST", "/v1/workspaces", Some(body));
        assert_eq!(code, 201, "{}", String::from_utf8_lossy(&out));
        json(&out)
    };
    let a = create(
        r#"{"ttl_s": 900, "memory_mib": 256, "disk_mib": 256, "labels": {"role": "hostile"}}"#,
    );
    let b = create(
        r#"{"ttl_s": 900, "memory_mib": 256, "disk_mib": 256, "labels": {"role": "probe"}}"#,
    );
    let (a, b) = (
        a["id"].as_str().expect("id").to_string(),
        b["id"].as_str().expect("id").to_string(),
    );
    let limits = &json(&call("GET", &format!("/v1/workspaces/{a}"), None).1)["limits"];
    assert_eq!(limits["cpu_max_us_per_100ms"], 100_000, "{limits}");
    assert_eq!(limits["pids_max"], 17, "{limits}");
    assert!(limits["io_max_bytes_per_s"].as_u64().is_some_and(|v| v > 0));

    let exec = |id: &str, argv: &[&str], timeout_s: u64| {
        let body = serde_json::json!({"argv": argv, "timeout_s": timeout_s}).to_string();
        let (code, stream) = call("POST", &format!("/v1/workspaces/{id}/exec"), Some(&body));
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&stream));
        exec_output(&stream)
    };
    // A CPU spin for the whole attack, beside one hostile thing after
    // another (together they would only starve each other inside A's one
    // vCPU, and prove less).
    let spin: &[&str] = &["sh", "-c", "while :; do :; done"];
    let attacks: [(&str, &[&str], u64); 3] = [
        (
            "disk fill",
            &[
                "sh",
                "-c",
                "dd if=/dev/zero of=/var/tmp/fill bs=1M 2>&1; sync; df -m / | tail -1",
            ],
            300,
        ),
        (
            "memory hog",
            &[
                "python3",
                "-c",
                "b = []\nwhile True: b.append(bytearray(16 << 20))",
            ],
            120,
        ),
        (
            "fork bomb",
            &["sh", "-c", "b() { b | b & }; b; sleep 30"],
            20,
        ),
    ];
    let done = std::sync::atomic::AtomicBool::new(false);
    let (worst, probes, ended) = std::thread::scope(|s| {
        let spinner = s.spawn(|| {
            let mut ends = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                exec(&a, spin, 15);
                ends += 1;
            }
            ends
        });
        let attacker = s.spawn(|| {
            attacks
                .iter()
                .map(|(what, argv, timeout)| {
                    let (out, last) = exec(&a, argv, *timeout);
                    eprintln!("limits: {what} ended: {last}");
                    (out, last)
                })
                .collect::<Vec<_>>()
        });
        let probe = s.spawn(|| {
            let mut worst = Duration::ZERO;
            let mut n = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let t = std::time::Instant::now();
                let (out, last) = exec(&b, &["echo", "alive"], 60);
                assert_eq!(
                    (out.as_str(), &last["exit_code"]),
                    ("alive\n", &serde_json::json!(0))
                );
                assert_eq!(app.https_get("/v1/health").expect("health").0, "200");
                worst = worst.max(t.elapsed());
                n += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            (worst, n)
        });
        let ended = attacker.join().expect("attacks");
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        let spins = spinner.join().expect("spinner");
        assert!(spins > 0, "the CPU spin ran");
        let (worst, n) = probe.join().expect("probe");
        (worst, n, ended)
    });
    let fill = &ended[0].0;
    assert_eq!(
        ended[0].1["timed_out"], false,
        "the disk fill ended on its own: {}",
        ended[0].1
    );
    let hog = &ended[1].1;
    assert!(
        hog["signal"] == 9 || hog["exit_code"] == 1,
        "the memory hog met the guest's own limit (OOM kill or MemoryError): {hog}"
    );
    eprintln!("limits: workspace B answered {probes} execs during the attack, worst {worst:?}");
    assert!(probes > 0, "B was probed during the attack");
    assert!(fill.contains("No space left on device"), "{fill}");
    // df's last line: the root overlay's size is A's disk, and it is full.
    let df: Vec<u64> = fill
        .lines()
        .last()
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(df.len() >= 3 && df[0] <= 256, "df: {fill}");
    // A still works after the storm (its agent and kernel survived it).
    assert_eq!(exec(&a, &["true"], 60).1["exit_code"], 0);
    let metrics = String::from_utf8_lossy(&call("GET", "/metrics", None).1).to_string();
    let used: u64 = metrics
        .lines()
        .find(|l| {
            l.starts_with(&format!(
                "paddock_workspace_disk_used_bytes{{workspace=\"{a}\"}}"
            ))
        })
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
        .expect("A's disk use in /metrics");
    assert!(
        used <= 256 << 20,
        "A's disk file holds {used} bytes, more than its 256 MiB"
    );
    for id in [&a, &b] {
        assert_eq!(call("DELETE", &format!("/v1/workspaces/{id}"), None).0, 200);
    }
}

/// A whole session through the `paddock` CLI: login (pinning the
/// fingerprint the console showed), create, exec python, copy a file in
/// and out, delete.
fn cli_session(app: &Appliance, admin: &str, fingerprint: &str) {
    let dir = scratch("cli");
    let cli = |args: &[&str]| {
        let bin = PathBuf::from(std::env::var("PADDOCK_STATIC_BIN").expect("PADDOCK_STATIC_BIN"))
            .join("paddock");
        let out = Command::new(bin)
            .args(args)
            .env("PADDOCK_CONFIG", dir.join("config.json"))
            .output()
            .expect("run paddock");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let url = format!("https://127.0.0.1:{}", app.port);
    let (code, _, err) = cli(&["login", &url, admin]);
    assert_eq!(
        code,
        Some(2),
        "login without a fingerprint asks for one: {err}"
    );
    assert!(
        err.contains(fingerprint),
        "it shows what the appliance presents: {err}"
    );
    let wrong = "00:".repeat(31) + "00";
    let (code, _, err) = cli(&["login", &url, admin, "--fingerprint", &wrong]);
    assert_eq!(code, Some(1), "a different certificate is refused: {err}");
    let (code, out, err) = cli(&["login", &url, admin, "--fingerprint", fingerprint]);
    assert_eq!(code, Some(0), "{out}{err}");

    let (code, id, err) = cli(&[
        "create",
        "--ttl",
        "900",
        "--memory-mib",
        "256",
        "--disk-mib",
        "512",
        "--label",
        "via=cli",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let id = id.trim().to_string();
    let (code, out, _) = cli(&["ls", "--label", "via=cli"]);
    assert_eq!(code, Some(0));
    assert!(out.contains(&id) && out.contains("running"), "{out}");
    let (code, out, err) = cli(&[
        "exec",
        &id,
        "--",
        "python3",
        "-c",
        "import sys; print(sum(range(10))); sys.exit(3)",
    ]);
    assert_eq!(
        (code, out.as_str()),
        (Some(3), "45\n"),
        "exec exits with the command's code: {err}"
    );
    let local = dir.join("in.txt");
    std::fs::write(&local, "round trip\n").expect("write");
    let remote = format!("{id}:/tmp/in.txt");
    assert_eq!(cli(&["cp", &local.to_string_lossy(), &remote]).0, Some(0));
    let back = dir.join("out.txt");
    assert_eq!(cli(&["cp", &remote, &back.to_string_lossy()]).0, Some(0));
    assert_eq!(
        std::fs::read_to_string(&back).expect("read back"),
        "round trip\n"
    );
    let (code, out, _) = cli(&["--json", "events", "--workspace", &id]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("exec_started") && out.contains("file_written"),
        "{out}"
    );
    assert_eq!(cli(&["rm", &id]).0, Some(0));
    let (code, _, err) = cli(&["exec", &id, "--", "true"]);
    assert_eq!(code, Some(1), "the workspace is gone: {err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Hang guards, not performance limits: TCG boots of OVMF are slow.
const BOOT_GUARD: Duration = Duration::from_secs(600);
const DISK_BYTES: u64 = 4 << 30;

/// The stop plan's quarantine: a workspace frozen below its guest, the
/// tokens scoped to it revoked at once, and a forensic snapshot an admin
/// can download that holds what the guest had in memory and on disk. The
/// snapshot outlives the workspace's TTL and its deletion.
fn quarantine_and_forensics(app: &Appliance, admin: &str) {
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
    let has = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
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

/// Rotations an operator needs in an incident, each in force at once: the
/// API's TLS identity (served and shown on the console within seconds) and
/// the bootstrap admin credential (the old secret refused from the next
/// request). Returns the new admin secret and the new fingerprint.
fn rotations(app: &mut Appliance, admin: &str, old_fingerprint: &str) -> (String, String) {
    let (code, body) = app
        .api(
            "POST",
            "/v1/tokens",
            admin,
            Some(br#"{"name": "ops", "scopes": ["read", "exec"], "ttl_s": 600}"#),
        )
        .expect("curl");
    assert_eq!(code, 201);
    let ops = json(&body)["secret"].as_str().expect("secret").to_string();
    assert_eq!(
        app.api("POST", "/v1/tls/rotate", &ops, None)
            .expect("curl")
            .0,
        403
    );
    assert_eq!(
        app.api("POST", "/v1/tokens/tok_bootstrap/rotate", &ops, None)
            .expect("curl")
            .0,
        403
    );

    let (code, body) = app
        .api("POST", "/v1/tls/rotate", admin, None)
        .expect("curl");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let fingerprint = json(&body)["fingerprint"]
        .as_str()
        .expect("fingerprint")
        .to_string();
    assert_eq!(fingerprint.len(), 95);
    assert_ne!(fingerprint, old_fingerprint);
    let started = std::time::Instant::now();
    loop {
        if app.served_fingerprint().ok().as_deref() == Some(fingerprint.as_str()) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the API never served the rotated certificate"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!(
        "rotations: new certificate served after {:?}",
        started.elapsed()
    );
    app.wait_for(&fingerprint, Duration::from_secs(30))
        .expect("the status screen shows the new fingerprint");

    let (code, body) = app
        .api("POST", "/v1/tokens/tok_bootstrap/rotate", admin, None)
        .expect("curl");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let new_admin = json(&body)["secret"].as_str().expect("secret").to_string();
    assert_ne!(new_admin, admin);
    assert_eq!(
        app.api("GET", "/v1/workspaces", admin, None)
            .expect("curl")
            .0,
        401
    );
    assert_eq!(
        app.api("GET", "/v1/workspaces", &new_admin, None)
            .expect("curl")
            .0,
        200
    );
    // Tokens the old secret's holder minted stay valid: same token, new secret.
    assert_eq!(
        app.api("GET", "/v1/workspaces", &ops, None)
            .expect("curl")
            .0,
        200
    );
    let (_, body) = app
        .api("GET", "/v1/audit?event=tls_rotated", &new_admin, None)
        .expect("curl");
    assert!(String::from_utf8_lossy(&body).contains(&fingerprint));
    let (_, body) = app
        .api("GET", "/v1/audit?event=token_rotated", &new_admin, None)
        .expect("curl");
    assert!(String::from_utf8_lossy(&body).contains("tok_bootstrap"));
    (new_admin, fingerprint)
}

/// The `paddock` CLI of the image under test, logged in to `app` as
/// `token` (pinning `fingerprint`) into the session file `config`.
fn cli_login(app: &Appliance, token: &str, fingerprint: &str, config: &Path) -> PathBuf {
    let bin = PathBuf::from(std::env::var("PADDOCK_STATIC_BIN").expect("PADDOCK_STATIC_BIN"))
        .join("paddock");
    let url = format!("https://127.0.0.1:{}", app.port);
    let login = Command::new(&bin)
        .args(["login", &url, token, "--fingerprint", fingerprint])
        .env("PADDOCK_CONFIG", config)
        .output()
        .expect("paddock login");
    assert!(
        login.status.success(),
        "{}",
        String::from_utf8_lossy(&login.stderr)
    );
    bin
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("paddock-appliance-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A copy of the image on a bigger "server disk".
fn fresh_disk(dir: &Path) -> PathBuf {
    let disk = dir.join("disk.img");
    std::fs::copy(image_dir().expect("image").join("paddock.img"), &disk).expect("copy image");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&disk)
        .and_then(|f| f.set_len(DISK_BYTES))
        .expect("grow disk file");
    disk
}

fn data_partition(disk: &Path) -> (u64, u64) {
    let mut f = std::fs::File::open(disk).expect("open disk");
    let table = Gpt::read(&mut f).expect("GPT");
    let (_, p) = table.find(LABEL_DATA).expect("data partition").clone();
    (p.first_lba, p.last_lba)
}

fn hash_range(disk: &Path, from: u64, len: u64) -> String {
    let mut f = std::fs::File::open(disk).expect("open disk");
    f.seek(SeekFrom::Start(from)).expect("seek");
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = f
            .read(&mut buf[..left.min(1 << 20) as usize])
            .expect("read");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        left -= n as u64;
    }
    format!("{:x}", h.finalize())
}

#[test]
fn appliance_boots_serves_keeps_data_and_shuts_down_in_order() {
    let dir = scratch("lifecycle");
    let disk = fresh_disk(&dir);
    let state = dir.join("state");

    // First boot: grows the data partition, makes the filesystem, the TLS
    // identity and the bootstrap credential, boots the demo workspace.
    let mut app = Appliance::boot(&disk, &state, &dir.join("boot1.log")).expect("boot 1");
    let console = app
        .wait_for("demo workspace: `uname -sr` says", BOOT_GUARD)
        .expect("a workspace boots inside the appliance and runs a command");
    eprintln!("{console}");
    assert!(
        console.contains("grown to fill the disk"),
        "first boot grows the data partition"
    );
    assert!(console.contains("created the data filesystem"));
    assert!(console.contains("bootstrap admin credential (shown once"));
    let fingerprint =
        status_field(&console, "TLS SHA-256").expect("fingerprint on the status screen");
    assert_eq!(fingerprint.len(), 95, "fingerprint {fingerprint:?}");
    let address = status_field(&console, "Address").expect("address on the status screen");
    assert!(
        address.contains("10.0.2.15/24 (dhcp)"),
        "address {address:?}"
    );
    let api = status_field(&console, "API").expect("API URL");
    assert!(api.starts_with("https://10.0.2.15:8443/"), "{api:?}");
    assert!(
        console.contains("Linux 6.12"),
        "the workspace runs our guest kernel"
    );

    let (code, body) = app.https_get("/v1/health").expect("health");
    assert_eq!(code, "200", "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).expect("JSON health");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["workspaces"], 1);
    let (code, _) = app.https_get("/v1/no-such-thing").expect("404");
    assert_eq!(code, "404");
    assert_eq!(
        app.served_fingerprint().expect("served cert"),
        fingerprint,
        "the API presents the certificate the screen shows"
    );
    assert!(!console.contains("login:"), "no login prompt anywhere");

    let admin = console
        .split_whitespace()
        .find(|w| w.starts_with("pdk_admin_"))
        .expect("bootstrap credential")
        .to_string();
    let deleted = workspace_api(&mut app, &admin);
    tenants::tenant_isolation(&app, &admin);
    quarantine_and_forensics(&app, &admin);
    limits_hold(&app, &admin);
    signals::signals_fire(&app, &admin);
    cli_session(&app, &admin, &fingerprint);
    e2b::e2b_session(&app, &admin, &fingerprint);
    mcp::mcp_session(&app, &admin, &fingerprint, &scratch("mcp"));
    shell::shell_session(&app, &admin, &fingerprint, &scratch("shell"));
    sdk::sdk_session(&app, &admin, &fingerprint);
    // From here on: the rotated credential and certificate (the second
    // boot checks that the rotated certificate is the one that persists).
    let (admin, fingerprint) = rotations(&mut app, &admin, &fingerprint);

    // The ACPI power button: workspaces stopped, data unmounted, power off.
    let exited = app
        .power_button(Duration::from_secs(180))
        .expect("QMP powerdown");
    let console = app.console();
    assert!(
        exited.is_some(),
        "powered off after the power button:\n{console}"
    );
    assert!(
        console.contains("shutdown: 1 workspace(s) stopped"),
        "{console}"
    );
    assert!(
        console.contains("shutdown: data partition unmounted cleanly"),
        "{console}"
    );
    drop(app);

    let (first, last) = data_partition(&disk);
    assert_eq!(
        last,
        DISK_BYTES / SECTOR - 34,
        "data partition ends at the disk's end"
    );
    assert!((last - first) * SECTOR > 3 << 30);
    // The env secret given at create is sealed under that workspace's key
    // in the database: nowhere on the partition in the clear (its id, in
    // the audit log, is: the scan works).
    let (from, len) = (first * SECTOR, (last - first + 1) * SECTOR);
    assert!(
        !occurs_in(&disk, from, len, b"s3cr3t-value"),
        "a workspace's env secret is on the data partition in the clear"
    );
    assert!(
        occurs_in(&disk, from, len, deleted.as_bytes()),
        "positive control"
    );

    // Second boot: same data, clean filesystem, same identity, no new
    // credential.
    let mut app = Appliance::boot(&disk, &state, &dir.join("boot2.log")).expect("boot 2");
    let console = app
        .wait_for("ready ", BOOT_GUARD)
        .and_then(|_| app.wait_for("TLS SHA-256", BOOT_GUARD))
        .expect("second boot");
    assert!(
        console.contains(", clean"),
        "filesystem clean after the orderly shutdown:\n{console}"
    );
    assert!(!console.contains("created the data filesystem"));
    assert!(!console.contains("grown to fill the disk"));
    assert!(
        !console.contains("bootstrap admin credential"),
        "the credential is shown once only"
    );
    assert!(!console.contains("made the API's TLS certificate"));
    assert!(
        console.contains(&fingerprint),
        "the TLS identity survives a reboot"
    );
    // Tokens and the audit log live in the data partition's database.
    let mut tries = 0;
    let audit = loop {
        let (code, body) = app
            .api(
                "GET",
                &format!("/v1/audit?workspace={deleted}"),
                &admin,
                None,
            )
            .expect("curl");
        if code == 200 || tries > 20 {
            assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
            break String::from_utf8_lossy(&body).to_string();
        }
        tries += 1;
        std::thread::sleep(Duration::from_secs(1));
    };
    assert!(audit.contains("workspace_deleted"), "{audit}");

    // Power cut with one workspace running and another half created: on
    // the next boot both are reported lost, their disks are gone, and the
    // database and audit log are whole.
    let (code, body) = app
        .api(
            "POST",
            "/v1/workspaces",
            &admin,
            Some(br#"{"ttl_s": 900, "memory_mib": 256, "disk_mib": 256, "labels": {"phase": "running"}}"#),
        )
        .expect("curl");
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    let running = json(&body)["id"].as_str().expect("id").to_string();
    let half = std::thread::scope(|s| {
        let creating = s.spawn(|| {
            app.api(
                "POST",
                "/v1/workspaces",
                &admin,
                Some(br#"{"ttl_s": 900, "memory_mib": 256, "disk_mib": 256, "labels": {"phase": "creating"}}"#),
            )
        });
        // Wait until the appliance has recorded it as starting, then cut.
        let mut half = None;
        for _ in 0..200 {
            let (_, body) = app
                .api("GET", "/v1/workspaces?label=phase=creating", &admin, None)
                .expect("curl");
            if let Some(w) = json(&body)["workspaces"]
                .as_array()
                .and_then(|a| a.first().cloned())
            {
                assert_eq!(w["state"], "starting", "{w}");
                half = Some(w["id"].as_str().expect("id").to_string());
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        app.power_cut();
        let (code, _) = creating.join().expect("create thread").expect("curl");
        assert_ne!(code, 201, "the cut came before the create finished");
        half.expect("the create was recorded as starting before the cut")
    });
    app.kill();
    drop(app);

    let mut app = Appliance::boot(&disk, &state, &dir.join("boot3.log")).expect("boot 3");
    let console = app
        .wait_for("ready ", BOOT_GUARD)
        .expect("third boot, after the power cut");
    assert!(
        console.contains(&format!(
            "workspace {running} was running before the restart"
        )),
        "{console}"
    );
    let mut tries = 0;
    let listed = loop {
        let (code, body) = app
            .api("GET", "/v1/workspaces", &admin, None)
            .expect("curl");
        if code == 200 || tries > 20 {
            assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
            break json(&body);
        }
        tries += 1;
        std::thread::sleep(Duration::from_secs(1));
    };
    for id in [&running, &half] {
        let w = listed["workspaces"]
            .as_array()
            .and_then(|a| a.iter().find(|w| w["id"] == id.as_str()).cloned())
            .unwrap_or_else(|| panic!("{id} is still listed after the cut: {listed}"));
        assert_eq!(w["state"], "lost", "{w}");
    }
    let (code, audit) = app
        .api("GET", "/v1/audit?event=workspace_lost", &admin, None)
        .expect("curl");
    assert_eq!(code, 200);
    let audit = String::from_utf8_lossy(&audit).to_string();
    assert!(audit.contains(&running) && audit.contains(&half), "{audit}");
    let exited = app.power_button(Duration::from_secs(180)).expect("QMP");
    assert!(exited.is_some(), "powered off:\n{}", app.console());
    drop(app);
    // Straight from the disk: no workspace directory is left behind.
    let (first, _) = data_partition(&disk);
    let debugfs = ["/usr/sbin/debugfs", "/sbin/debugfs"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("debugfs");
    let out = Command::new(debugfs)
        .args(["-R", "ls -p /workspaces"])
        .arg(format!("{}?offset={}", disk.display(), first * SECTOR))
        .output()
        .expect("debugfs");
    let listing = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && !listing.is_empty(),
        "debugfs: {listing}"
    );
    for id in [&running, &half] {
        assert!(
            !listing.contains(id.as_str()),
            "{id}'s disk is still there:\n{listing}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_damaged_data_partition_is_reported_and_never_reformatted() {
    let dir = scratch("damaged");
    let disk = fresh_disk(&dir);
    let state = dir.join("state");
    // Make it look like somebody's data: not blank, no filesystem.
    let (first, _) = data_partition(&disk);
    let start = first * SECTOR;
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&disk)
            .expect("open");
        f.seek(SeekFrom::Start(start)).expect("seek");
        f.write_all(&vec![0xA5u8; 64 * 1024]).expect("scribble");
    }
    let before = hash_range(&disk, start, 64 << 20);
    let mut app = Appliance::boot(&disk, &state, &dir.join("boot.log")).expect("boot");
    let console = app
        .wait_for("no data on the partition was touched", BOOT_GUARD)
        // The status screen is redrawn on its own thread, just after.
        .and_then(|_| app.wait_for("State        error", BOOT_GUARD))
        .expect("a clear error state");
    app.kill();
    eprintln!("{console}");
    assert!(
        console.contains("holds no ext4 filesystem and is not marked blank"),
        "{console}"
    );
    assert_eq!(status_field(&console, "State").as_deref(), Some("error"));
    assert_eq!(
        status_field(&console, "API").as_deref(),
        Some("(not serving)")
    );
    assert_eq!(
        hash_range(&disk, start, 64 << 20),
        before,
        "the partition's bytes are untouched"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_image_holds_no_shell_and_builds_to_the_same_bytes() {
    let images = image_dir().expect("image dir");
    let tool = PathBuf::from(std::env::var("PADDOCK_STATIC_BIN").expect("PADDOCK_STATIC_BIN"))
        .join("paddock-image");
    let out = Command::new(&tool)
        .arg("list")
        .arg(images.join("paddock.img"))
        .arg("--check-no-shell")
        .output()
        .expect("paddock-image list");
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{listing}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "initramfs 100755",
        " init\n",
        "usr/lib/paddock/paddock-vmm",
        "lib/modules/load.list",
        "esp EFI/BOOT/BOOTX64.EFI",
        "uki section .linux",
        "partition 3 paddock-data",
    ] {
        assert!(listing.contains(want), "{want:?} missing from the listing");
    }
    assert!(listing.contains("no shell, no interpreter, no script"));

    // Rebuild with the same inputs: every output byte-identical.
    let again = scratch("rebuild");
    let esp_config = images.join("esp-config.json");
    let status = Command::new(repo_root().join("image-build/build-image.sh"))
        .arg(&again)
        .arg("--esp-config")
        .arg(&esp_config)
        .status()
        .expect("build-image.sh");
    assert!(status.success());
    for f in ["paddock.img", "paddock.efi", "initramfs.cpio.zst"] {
        let a = std::fs::read(images.join(f)).expect("first build");
        let b = std::fs::read(again.join(f)).expect("second build");
        assert!(a == b, "{f} differs between two builds of the same inputs");
    }
    let _ = std::fs::remove_dir_all(&again);
}

/// Whether `needle` occurs anywhere in `len` bytes of `path` from `from`.
fn occurs_in(path: &Path, from: u64, len: u64, needle: &[u8]) -> bool {
    let mut f = std::fs::File::open(path).expect("open");
    f.seek(SeekFrom::Start(from)).expect("seek");
    let mut carry: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 8 << 20];
    let mut left = len;
    while left > 0 {
        let n = f
            .read(&mut buf[..left.min(8 << 20) as usize])
            .expect("read");
        if n == 0 {
            break;
        }
        left -= n as u64;
        carry.extend_from_slice(&buf[..n]);
        if carry.windows(needle.len()).any(|w| w == needle) {
            return true;
        }
        let keep = carry.len().min(needle.len());
        carry.drain(..carry.len() - keep);
    }
    false
}

/// A file of the data partition, copied out with debugfs.
fn dump_from_data(disk: &Path, inner: &str, out: &Path) -> Vec<u8> {
    let (first, _) = data_partition(disk);
    let _ = std::fs::remove_file(out);
    let status = Command::new(
        ["/usr/sbin/debugfs", "/sbin/debugfs"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or("debugfs"),
    )
    .args(["-R", &format!("dump {inner} {}", out.display())])
    .arg(format!("{}?offset={}", disk.display(), first * SECTOR))
    .output()
    .expect("debugfs");
    assert!(status.status.success(), "debugfs dump {inner}");
    std::fs::read(out).unwrap_or_else(|e| panic!("{inner} was not dumped: {e}"))
}

/// Issue 7 end to end, one appliance disk over six boots (and a seventh
/// of a new box without a TPM): disks encrypted with their own keys,
/// sealed to the boot state, erased for good.
#[test]
fn workspace_disks_are_encrypted_sealed_to_the_boot_state_and_erased_for_good() {
    let dir = scratch("keys");
    let disk = fresh_disk(&dir);
    let state = dir.join("state");
    let images = image_dir().expect("image");
    let probe = |app: &Appliance, admin: &str, id: &str| {
        let (code, body) = app
            .api(
                "POST",
                "/v1/debug/open-disk",
                admin,
                Some(format!(r#"{{"workspace": "{id}"}}"#).as_bytes()),
            )
            .expect("curl");
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
        json(&body)
    };
    let keys_state = |app: &Appliance, admin: &str| {
        let (code, body) = app.api("GET", "/v1/keys", admin, None).expect("curl");
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
        json(&body)
    };
    let power_off = |mut app: Appliance| {
        let exited = app.power_button(Duration::from_secs(180)).expect("QMP");
        assert!(exited.is_some(), "powered off:\n{}", app.console());
    };

    // Boot 1: a new key store sealed to PCR 4 and 7, its recovery secret
    // shown once. Two workspaces write the same plaintext.
    let mut app = Appliance::boot(&disk, &state, &dir.join("k1.log")).expect("boot 1");
    let console = app
        .wait_for("ready ", BOOT_GUARD)
        .and_then(|_| app.wait_for("disk-key recovery secret", BOOT_GUARD))
        .expect("boot 1");
    assert!(
        console.contains("Disk keys    sealed to the TPM (PCR 4,7)"),
        "{console}"
    );
    let recovery = console
        .lines()
        .skip_while(|l| !l.contains("(POST /v1/keys/recover)"))
        .nth(1)
        .map(|l| l.trim().to_string())
        .expect("the recovery secret on the first boot's screen");
    assert_eq!(recovery.len(), 71, "{recovery:?}");
    let admin = console
        .split_whitespace()
        .find(|w| w.starts_with("pdk_admin_"))
        .expect("bootstrap credential")
        .to_string();
    assert_eq!(keys_state(&app, &admin)["state"], "ready");
    let marker = format!(
        "PADDOCK-PLAINTEXT-{:x}",
        std::process::id() as u64 * 7919 + 17
    );
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (code, body) = app
            .api(
                "POST",
                "/v1/workspaces",
                &admin,
                Some(br#"{"ttl_s": 3600, "memory_mib": 256, "disk_mib": 256}"#),
            )
            .expect("curl");
        assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
        let id = json(&body)["id"].as_str().expect("id").to_string();
        // The marker in a file (through ext4 on the encrypted disk), and
        // zeros straight onto the disk's last 4 KiB, the same in both.
        let script = format!(
            "import os\n\
             open('/srv/marker.txt','w').write('{marker}\\n' * 4096)\n\
             os.sync()\n\
             f = os.open('/dev/vdb', os.O_RDWR)\n\
             n = os.lseek(f, 0, 2)\n\
             os.pwrite(f, bytes(4096), n - 4096)\n\
             os.fsync(f)\n\
             print(open('/srv/marker.txt').read(len('{marker}')))\n"
        );
        let body = serde_json::json!({"argv": ["python3", "-c", script], "user": "root"});
        let (code, stream) = app
            .api(
                "POST",
                &format!("/v1/workspaces/{id}/exec"),
                &admin,
                Some(body.to_string().as_bytes()),
            )
            .expect("curl");
        assert_eq!(code, 200);
        let (out, last) = exec_output(&stream);
        assert_eq!(last["exit_code"], 0, "{last} {out}");
        assert_eq!(out.trim(), marker, "the workspace reads back what it wrote");
        let (code, body) = app
            .api("POST", &format!("/v1/workspaces/{id}/stop"), &admin, None)
            .expect("curl");
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
        let p = probe(&app, &admin, &id);
        assert_eq!(p["opened"], true, "{p}");
        assert_eq!(p["ext4"], true, "the box reads its own disk: {p}");
        // The kernel's table names the key in the keyring, never holds it.
        let table = p["table"].as_str().expect("table");
        assert!(
            table.starts_with("aes-xts-plain64 :64:logon:paddock:"),
            "{table}"
        );
        let longest_hex = table
            .split(|c: char| !c.is_ascii_hexdigit())
            .map(str::len)
            .max()
            .unwrap_or(0);
        assert!(longest_hex < 32, "key material in the table: {table}");
        ids.push(id);
    }
    power_off(app);

    // From the raw data partition: the marker is nowhere (while the
    // workspace ids, in the database and audit log, are: the scan works),
    // and the same plaintext block is different ciphertext on each disk.
    let (first, last) = data_partition(&disk);
    let (from, len) = (first * SECTOR, (last - first + 1) * SECTOR);
    assert!(
        !occurs_in(&disk, from, len, marker.as_bytes()),
        "the marker a workspace wrote is on the data partition in the clear"
    );
    assert!(
        occurs_in(&disk, from, len, ids[0].as_bytes()),
        "positive control"
    );
    let e1 = dump_from_data(
        &disk,
        &format!("/workspaces/{}/disk.img", ids[0]),
        &dir.join("e1.img"),
    );
    let e2 = dump_from_data(
        &disk,
        &format!("/workspaces/{}/disk.img", ids[1]),
        &dir.join("e2.img"),
    );
    let (t1, t2) = (&e1[e1.len() - 4096..], &e2[e2.len() - 4096..]);
    assert!(
        t1.iter().any(|b| *b != 0) && t2.iter().any(|b| *b != 0),
        "zeros stored as zeros"
    );
    assert_ne!(t1, t2, "two workspaces' disks share a key");

    // The attacker's copy of the whole data disk, taken before the delete.
    let old = dir.join("old.img");
    let cp = Command::new("cp")
        .args(["--sparse=always"])
        .arg(&disk)
        .arg(&old)
        .status()
        .expect("cp");
    assert!(cp.success());

    // Boot 2: delete the first workspace; the second still opens.
    let mut app = Appliance::boot(&disk, &state, &dir.join("k2.log")).expect("boot 2");
    app.wait_for("ready ", BOOT_GUARD).expect("boot 2");
    let (code, body) = app
        .api(
            "DELETE",
            &format!("/v1/workspaces/{}", ids[0]),
            &admin,
            None,
        )
        .expect("curl");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let p = probe(&app, &admin, &ids[1]);
    assert_eq!(
        (p["opened"].clone(), p["ext4"].clone()),
        (true.into(), true.into()),
        "{p}"
    );
    assert!(app
        .console()
        .contains(&format!("key store: ws-{} erased", ids[0])));
    power_off(app);

    // Boot 3: the old copy, on the same box with the same TPM. Everything
    // the box holds is there, and neither disk of the copy opens: their
    // wrapped keys need an epoch the TPM no longer has.
    let mut app = Appliance::boot(&old, &state, &dir.join("k3.log")).expect("boot 3");
    app.wait_for("ready ", BOOT_GUARD).expect("boot 3");
    assert_eq!(keys_state(&app, &admin)["state"], "ready");
    for id in &ids {
        let p = probe(&app, &admin, id);
        assert_eq!(p["opened"], false, "the copy's disk {id} opened: {p}");
        assert!(
            p["error"].as_str().unwrap_or_default().contains("erased"),
            "{p}"
        );
    }
    power_off(app);
    let _ = std::fs::remove_file(&old);

    // Boot 4: the same disk and TPM, another kernel command line (direct
    // boot): the TPM keeps the keys, the console says why, nothing changes.
    let cmdline = std::fs::read_to_string(images.join("cmdline")).expect("cmdline");
    let extra: Vec<std::ffi::OsString> = vec![
        "--kernel".into(),
        images.join("vmlinuz").into(),
        "--initrd".into(),
        images.join("initramfs.cpio.zst").into(),
        "--append".into(),
        format!("{} paddock_test_modified_image=1", cmdline.trim()).into(),
    ];
    let mut app = Appliance::boot_with(&disk, &state, &dir.join("k4.log"), &extra).expect("boot 4");
    let console = app.wait_for("ready ", BOOT_GUARD).expect("boot 4");
    assert!(
        console.contains("the TPM will not release the disk keys"),
        "{console}"
    );
    assert_eq!(keys_state(&app, &admin)["state"], "locked");
    let (code, body) = app
        .api(
            "POST",
            "/v1/workspaces",
            &admin,
            Some(br#"{"ttl_s": 60, "memory_mib": 256, "disk_mib": 256}"#),
        )
        .expect("curl");
    assert_eq!(code, 503, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("locked"));
    let (code, _) = app
        .api(
            "POST",
            "/v1/keys/recover",
            &admin,
            Some(br#"{"recovery_secret": "00000000-00000000"}"#),
        )
        .expect("curl");
    assert_eq!(code, 403, "a wrong recovery secret");
    power_off(app);
    let after = dump_from_data(
        &disk,
        &format!("/workspaces/{}/disk.img", ids[1]),
        &dir.join("e2b.img"),
    );
    assert!(
        after == e2,
        "a locked boot changed the second workspace's disk"
    );

    // Boot 5: the TPM removed.
    let mut app = Appliance::boot_with(&disk, &state, &dir.join("k5.log"), &["--no-tpm".into()])
        .expect("boot 5");
    let console = app.wait_for("ready ", BOOT_GUARD).expect("boot 5");
    assert!(
        console.contains("sealed to a TPM and /dev/tpmrm0 is missing"),
        "{console}"
    );
    assert!(console.contains("TPM 2.0      absent"), "{console}");
    assert_eq!(keys_state(&app, &admin)["state"], "locked");
    power_off(app);

    // Boot 6: the right image with its TPM again: everything is back.
    let mut app = Appliance::boot(&disk, &state, &dir.join("k6.log")).expect("boot 6");
    app.wait_for("ready ", BOOT_GUARD).expect("boot 6");
    assert_eq!(keys_state(&app, &admin)["state"], "ready");
    let p = probe(&app, &admin, &ids[1]);
    assert_eq!(
        (p["opened"].clone(), p["ext4"].clone()),
        (true.into(), true.into()),
        "{p}"
    );
    let (code, body) = app
        .api(
            "POST",
            "/v1/keys/recover",
            &admin,
            Some(format!(r#"{{"recovery_secret": "{recovery}"}}"#).as_bytes()),
        )
        .expect("curl");
    assert_eq!(
        code,
        409,
        "nothing to recover: {}",
        String::from_utf8_lossy(&body)
    );
    power_off(app);

    // Boot 7: a new box without a TPM at all (fresh disk, fresh state):
    // encrypted workspaces are refused, and the screen says why.
    let _ = std::fs::remove_file(&disk);
    let bare = fresh_disk(&dir);
    let mut app = Appliance::boot_with(
        &bare,
        &dir.join("state-bare"),
        &dir.join("k7.log"),
        &["--no-tpm".into()],
    )
    .expect("boot 7");
    let console = app
        .wait_for("ready ", BOOT_GUARD)
        .and_then(|_| app.wait_for("bootstrap admin credential", BOOT_GUARD))
        .expect("boot 7");
    assert!(
        console.contains("Disk keys    no disk keys: no TPM 2.0 found"),
        "{console}"
    );
    assert!(!console.contains("disk-key recovery secret"), "{console}");
    let bare_admin = console
        .split_whitespace()
        .find(|w| w.starts_with("pdk_admin_"))
        .expect("bootstrap credential")
        .to_string();
    assert_eq!(keys_state(&app, &bare_admin)["state"], "unavailable");
    let (code, body) = app
        .api(
            "POST",
            "/v1/workspaces",
            &bare_admin,
            Some(br#"{"ttl_s": 60, "memory_mib": 256, "disk_mib": 256}"#),
        )
        .expect("curl");
    assert_eq!(code, 503, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("allow_software_keys"));
    power_off(app);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 6 end to end, on one boot: the appliance runs inside a fake
/// internet (tests/src/fakenet.rs) and its workspaces are checked from
/// inside: deny by default, the allowlist on names and CIDRs, the host's
/// resolver, forbidden addresses, isolation from each other, policy
/// changes on a running workspace, and the counters and audit that show it.
#[test]
fn workspace_networks_deny_by_default_and_open_only_what_is_listed() {
    let net = FakeNet::create().expect("the fake internet (needs root and ip(8))");
    let dir = scratch("network");
    let disk = fresh_disk(&dir);
    // This appliance also posts the events a person should hear about to
    // the fake internet's webhook receiver (the shared test image has no
    // webhook: the other tests have no fake internet to aim it at).
    let config = paddock_tests::esp_config::test_config_with(serde_json::json!({
        "notify": {"webhook": {"url": format!("http://{}/hook", paddock_tests::fakenet::HOOKS),
                               "secret": yellow::HOOK_SECRET}}
    }))
    .expect("configuration");
    paddock_tests::esp_config::set(
        &disk,
        &image_dir().expect("image").join("paddock.efi"),
        &config,
    )
    .expect("the ESP with a webhook");
    // 18080 in the fake internet's namespace reaches the appliance's 20080
    // (where a published port will be).
    let mut app = Appliance::boot_in(
        &disk,
        &dir.join("state"),
        &dir.join("network.log"),
        &["--forward".into(), "18080:20080".into()],
        &net.exec_prefix(),
    )
    .expect("boot");
    let console = app
        .wait_for("ready ", BOOT_GUARD)
        .and_then(|_| app.wait_for("bootstrap admin credential", BOOT_GUARD))
        .expect("boot");
    assert!(
        console.contains("workspace firewall installed"),
        "{}",
        paddock_tests::appliance::log_tail(&console, 40)
    );
    let admin = console
        .split_whitespace()
        .find(|w| w.starts_with("pdk_admin_"))
        .expect("bootstrap credential")
        .to_string();
    let call = |m: &str, p: &str, b: Option<&str>| {
        app.api(m, p, &admin, b.map(str::as_bytes)).expect("curl")
    };
    let create = |body: &str| {
        let (code, body) = call("POST", "/v1/workspaces", Some(body));
        assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
        json(&body)["id"].as_str().expect("id").to_string()
    };
    // A shell command in a workspace: (stdout and stderr, exit code).
    let sh_for = |id: &str, script: &str, timeout_s: u64| {
        let body = serde_json::json!({"argv": ["bash", "-c", format!("{script} 2>&1")], "timeout_s": timeout_s})
            .to_string();
        let (code, stream) = call("POST", &format!("/v1/workspaces/{id}/exec"), Some(&body));
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&stream));
        let (out, last) = exec_output(&stream);
        (out, last["exit_code"].as_i64().unwrap_or(-1))
    };
    let sh = |id: &str, script: &str| sh_for(id, script, 120);
    let metric = |name: &str, id: &str| -> f64 {
        let (code, body) = call("GET", "/metrics", None);
        assert_eq!(code, 200);
        let text = String::from_utf8_lossy(&body).to_string();
        let key = format!("{name}{{workspace=\"{id}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {key} in:\n{text}"))
    };
    // curl from a guest: the body, or the empty string if it failed.
    let curl = |id: &str, args: &str| {
        let (out, code) = sh(id, &format!("curl -sk --max-time 15 {args}"));
        if code == 0 {
            out
        } else {
            String::new()
        }
    };
    // Waits, inside the guest, until something is bound to `port` (TCP or
    // UDP): a server started in another exec takes a while to come up on an
    // emulated CPU, and how long depends on the build machine's load.
    let listening = |id: &str, port: u16| {
        let (out, _) = sh(
            id,
            &format!(
                "python3 -c \"import time\nfor _ in range(500):\n  if any(l.split()[1].endswith(':{port:04X}') for f in ('/proc/net/tcp','/proc/net/udp') for l in open(f).readlines()[1:]):\n    print('up'); break\n  time.sleep(0.2)\""
            ),
        );
        assert!(
            out.contains("up"),
            "nothing listens on {port} in {id}: {out}"
        );
    };
    // Ends the server processes whose command line matches `pattern` (a
    // regex written so that it does not match its own shell's).
    let stop = |id: &str, pattern: &str| {
        sh(id, &format!("pkill -f '{pattern}'"));
    };

    // Bad policies are refused with the entry named; nothing is created.
    let (code, body) = call(
        "POST",
        "/v1/workspaces",
        Some(r#"{"ttl_s": 600, "egress": {"domains": ["no_dots"], "cidrs": ["10.0.0.0/8"]}}"#),
    );
    assert_eq!(code, 422);
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("no_dots") && text.contains("give the ports"),
        "{text}"
    );

    // A: an allowlist. B: nothing (the default).
    let listed = format!("{RAW_LISTED}/32:8080");
    let a = create(
        &serde_json::json!({
            "ttl_s": 1800, "memory_mib": 256, "disk_mib": 512,
            "egress": {
                "domains": ["allowed.test", "*.allowed.test:443"],
                // Forbidden whatever the list says: the metadata address, the host.
                "cidrs": [listed, "169.254.169.254/32:80", "10.0.2.15/32:8443"]
            }
        })
        .to_string(),
    );
    let b = create(r#"{"ttl_s": 1800, "memory_mib": 256, "disk_mib": 512}"#);

    // network none: nothing resolves, nothing connects, no ping; counted.
    assert_eq!(curl(&b, &format!("https://{ALLOWED}/")), "");
    assert_eq!(curl(&b, "http://8.8.8.8/"), "");
    let (out, code) = sh(
        &b,
        "python3 -c \"import socket; print(socket.gethostbyname('allowed.test'))\"",
    );
    assert_ne!(code, 0, "B resolved a name: {out}");
    let (out, code) = sh(
        &b,
        "python3 -c \"import socket,time; s=socket.socket(socket.AF_INET,socket.SOCK_RAW,socket.IPPROTO_ICMP); s.settimeout(3); s.sendto(bytes([8,0,0xf7,0xff,0,0,0,0]),('203.0.113.10',0)); print(s.recv(100))\"",
    );
    assert_ne!(code, 0, "B got a ping reply: {out}");
    assert!(metric("paddock_workspace_denied_packets_total", &b) > 0.0);
    assert!(metric("paddock_workspace_denied_lookups_total", &b) > 0.0);

    // Allowlist: the listed name works over HTTPS and HTTP, by name.
    let body = curl(&a, "https://allowed.test/");
    assert_eq!(
        body,
        "server=allowed.test host=allowed.test sni=allowed.test\n"
    );
    assert!(curl(&a, "http://allowed.test/").starts_with("server=allowed.test"));
    // A wildcard entry covers the names below it, on its own ports only.
    assert_eq!(
        curl(&a, "https://www.allowed.test/"),
        "server=allowed.test host=www.allowed.test sni=www.allowed.test\n"
    );
    let body = curl(&a, "http://www.allowed.test/");
    assert!(
        body.contains("www.allowed.test:80 is not on this workspace's allowlist"),
        "port 80 is not in the wildcard entry: {body:?}"
    );
    // An unlisted name fails at DNS.
    let (out, code) = sh(&a, "curl -sk --max-time 15 https://denied.test/");
    assert_ne!(code, 0, "{out}");
    assert_eq!(code, 6, "curl's 'could not resolve host': {out}");
    // SNI allowed.test sent to denied.test's address: the proxy connects
    // to allowed.test, never to the address the guest dialled.
    let body = curl(
        &a,
        &format!("--connect-to allowed.test:443:{DENIED}:443 https://allowed.test/"),
    );
    assert_eq!(
        body, "server=allowed.test host=allowed.test sni=allowed.test\n",
        "never denied.test"
    );
    // The Host header the same way on port 80.
    let body = curl(&a, &format!("-H 'Host: allowed.test' http://{DENIED}/"));
    assert!(body.starts_with("server=allowed.test"), "{body:?}");
    // A name sharing allowed.test's address is not allowed.test.
    assert_eq!(
        curl(
            &a,
            &format!("--resolve other.test:443:{ALLOWED} https://other.test/")
        ),
        ""
    );
    let (out, _) = sh(
        &a,
        &format!("curl -s --max-time 15 -H 'Host: other.test' http://{ALLOWED}/"),
    );
    assert!(out.contains("not on this workspace's allowlist"), "{out}");
    // Smuggling (issue 14, item 3): on one allowed keep-alive connection
    // to a front end that serves other.test on the same address, a second,
    // pipelined request for other.test never reaches it.
    let pipelined = "python3 -c 'import socket\ns=socket.create_connection((\"allowed.test\",80),timeout=15)\ns.sendall(b\"GET /keepalive HTTP/1.1\\r\\nHost: allowed.test\\r\\n\\r\\nGET / HTTP/1.1\\r\\nHost: other.test\\r\\n\\r\\n\")\nd=b\"\"\nwhile True:\n  try:\n    x=s.recv(4096)\n  except Exception:\n    break\n  if not x:\n    break\n  d+=x\nprint(d.decode(errors=\"replace\"))'";
    let (out, _) = sh(&a, pipelined);
    assert!(
        out.contains("host=allowed.test"),
        "the first request is served: {out}"
    );
    assert!(
        !out.contains("host=other.test"),
        "the pipelined request reached other.test: {out}"
    );
    // Where A connected (issue 17): its lookups and proxied connections,
    // allowed and denied, with bytes, answers, and the connection that
    // named allowed.test but dialled denied.test's address flagged.
    let mut log = serde_json::Value::Null;
    let find = |log: &serde_json::Value, kind: &str, decision: &str, name: &str| {
        log["records"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["kind"] == kind && r["decision"] == decision && r["name"] == name)
            .cloned()
            .collect::<Vec<_>>()
    };
    for _ in 0..40 {
        log = json(&call("GET", &format!("/v1/workspaces/{a}/network"), None).1);
        if !find(&log, "tcp", "denied", "other.test").is_empty()
            && find(&log, "tcp", "allowed", "allowed.test")
                .iter()
                .any(|r| r["mismatched"].as_u64() > Some(0))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let lookups = find(&log, "dns", "allowed", "allowed.test");
    assert!(
        lookups
            .iter()
            .any(|r| r["answers"].to_string().contains(&ALLOWED.to_string())),
        "the lookup and its answer: {log}"
    );
    assert!(
        !find(&log, "dns", "denied", "denied.test").is_empty(),
        "{log}"
    );
    let conns = find(&log, "tcp", "allowed", "allowed.test");
    assert!(
        conns.iter().any(|r| r["bytes_down"].as_u64() > Some(0)
            && r["dest"].as_str().is_some_and(|d| d.ends_with(":443"))),
        "connections with their bytes: {log}"
    );
    assert!(
        conns.iter().any(|r| r["mismatched"].as_u64() > Some(0)
            && r["dest"]
                .as_str()
                .is_some_and(|d| d.starts_with(&format!("{DENIED}:")))),
        "named allowed.test, dialled denied.test's address: {log}"
    );
    let refused = find(&log, "tcp", "denied", "other.test");
    assert!(
        refused
            .iter()
            .any(|r| r["reason"] == "not on its allowlist"),
        "{log}"
    );
    let denied = json(
        &call(
            "GET",
            &format!("/v1/workspaces/{a}/network?decision=denied"),
            None,
        )
        .1,
    );
    assert!(
        denied["records"]
            .as_array()
            .is_some_and(|r| !r.is_empty() && r.iter().all(|r| r["decision"] == "denied")),
        "{denied}"
    );
    let (code, _) = call(
        "GET",
        &format!("/v1/workspaces/{a}/network?decision=maybe"),
        None,
    );
    assert_eq!(code, 422);
    // Egress requests a person approves (issue 17): A asks for denied.test
    // at the box's own endpoint, with its reason; it stays refused until an
    // admin approves it for a while, connects while the approval holds, and
    // is refused again once it ran out. A denied ask stays out.
    let ask = |host: &str, why: &str| {
        let (out, code) = sh(
            &a,
            &format!(
                "curl -s --max-time 15 http://paddock.internal/egress-requests -d '{{\"host\": \"{host}\", \"port\": 443, \"reason\": \"{why}\"}}'"
            ),
        );
        assert_eq!(code, 0, "{out}");
        json(out.trim().as_bytes())
    };
    let asked = ask("denied.test", "the task needs its API");
    assert_eq!(asked["status"], "pending", "{asked}");
    let approval = asked["id"].as_str().expect("id").to_string();
    let pending = |id: &str| {
        for _ in 0..40 {
            let list = json(&call("GET", "/v1/approvals?state=pending", None).1);
            if let Some(found) = list["approvals"]
                .as_array()
                .and_then(|l| l.iter().find(|x| x["id"] == id).cloned())
            {
                return found;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!("{id} never became a pending approval");
    };
    let found = pending(&approval);
    // A person hears of it at once, through the webhook.
    let told = yellow::hooked(&net, "egress_requested", &approval);
    assert_eq!(told["host"], "denied.test", "{told}");
    assert_eq!(
        (found["workspace"].as_str(), found["reason"].as_str()),
        (Some(a.as_str()), Some("the task needs its API")),
        "{found}"
    );
    let (out, code) = sh(&a, "curl -sk --max-time 15 https://denied.test/");
    assert_eq!(code, 6, "refused until decided: {out}");
    let (code, body) = call(
        "POST",
        &format!("/v1/approvals/{approval}"),
        Some(r#"{"approve": true, "ttl_s": 20, "reason": "for this run"}"#),
    );
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    assert!(
        curl(&a, "https://denied.test/").starts_with("server=denied.test"),
        "approved: it connects"
    );
    let (out, _) = sh(
        &a,
        "curl -s --max-time 15 'http://paddock.internal/egress-requests?host=denied.test&port=443'",
    );
    assert!(out.contains("\"allowed\""), "{out}");
    let mut refused_again = false;
    for _ in 0..120 {
        let (_, code) = sh(&a, "curl -sk --max-time 15 https://denied.test/");
        if code != 0 {
            refused_again = true;
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(refused_again, "the approval ran out and the entry left");
    let other = ask("other.test", "also this");
    let other_id = other["id"].as_str().expect("id").to_string();
    pending(&other_id);
    let (code, body) = call(
        "POST",
        &format!("/v1/approvals/{other_id}"),
        Some(r#"{"approve": false, "reason": "not for this task"}"#),
    );
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json(&body)["state"], "denied");
    let (code, _) = call(
        "POST",
        &format!("/v1/approvals/{other_id}"),
        Some(r#"{"approve": true}"#),
    );
    assert_eq!(code, 409, "decided once");
    let (_, audit) = call("GET", &format!("/v1/audit?workspace={a}"), None);
    let audit = String::from_utf8_lossy(&audit).to_string();
    for event in [
        "egress_requested",
        "egress_approved",
        "egress_grant_expired",
        "egress_denied",
    ] {
        assert!(audit.contains(event), "{event}: {audit}");
    }
    // The resolver and the proxy run in a confined process of their own
    // (issue 15). Killed with SIGKILL, it is started again by PID 1, not
    // by a reboot, with every workspace's policy; what it counted stays.
    let refused_before = metric("paddock_workspace_denied_connections_total", &a);
    let uptime = |body: &[u8]| json(body)["uptime_s"].as_u64().expect("uptime_s");
    let up_before = uptime(&call("GET", "/v1/health", None).1);
    let (code, body) = call("POST", "/v1/debug/kill-net-services", None);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    // Back by itself: queries and connections made while it restarts wait
    // in its sockets' queues; a few tries cover a slow restart.
    let mut body = String::new();
    for _ in 0..20 {
        body = curl(&a, "https://allowed.test/");
        if !body.is_empty() {
            break;
        }
    }
    assert_eq!(
        body, "server=allowed.test host=allowed.test sni=allowed.test\n",
        "egress after the restart"
    );
    let (out, code) = sh(&a, "curl -sk --max-time 15 https://denied.test/");
    assert_eq!(code, 6, "still refused at DNS after the restart: {out}");
    let (out, _) = sh(
        &a,
        &format!("curl -s --max-time 15 -H 'Host: other.test' http://{ALLOWED}/"),
    );
    assert!(out.contains("not on this workspace's allowlist"), "{out}");
    assert!(metric("paddock_workspace_denied_connections_total", &a) > refused_before);
    let (_, metrics) = call("GET", "/metrics", None);
    assert!(
        String::from_utf8_lossy(&metrics).contains("paddock_net_services_restarts_total 1"),
        "one restart counted"
    );
    assert!(
        uptime(&call("GET", "/v1/health", None).1) >= up_before,
        "the box did not reboot"
    );

    // Raw IP: the listed CIDR and port work, others do not.
    assert!(curl(&a, &format!("http://{RAW_LISTED}:8080/")).starts_with("server=raw-listed"));
    assert_eq!(curl(&a, &format!("http://{RAW_UNLISTED}:8080/")), "");
    // Listed but forbidden: metadata and the host's own address.
    assert_eq!(curl(&a, &format!("http://{METADATA}/")), "");
    assert_eq!(curl(&a, "https://10.0.2.15:8443/v1/health"), "");
    assert_eq!(curl(&a, "https://10.200.0.1:8443/v1/health"), "");
    // DNS elsewhere and QUIC are dropped.
    let (_, code) = sh(&a, &format!("python3 -c \"import socket; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(3); s.sendto(b'x'*20,('{DNS}',53)); s.recv(100)\""));
    assert_ne!(code, 0, "DNS to another resolver answered");

    // DNS: a random name in an unlisted zone never reaches the upstream.
    let probe = format!("x{}.exfil-zone.test", std::process::id());
    let (_, code) = sh(
        &a,
        &format!("python3 -c \"import socket; socket.gethostbyname('{probe}')\""),
    );
    assert_ne!(code, 0);
    assert!(
        !net.queries().iter().any(|q| q.contains("exfil-zone")),
        "the upstream saw {:?}",
        net.queries()
    );
    assert!(
        net.queries().iter().any(|q| q == "allowed.test"),
        "positive control"
    );
    // A listed name whose address is private gets no address (rebinding).
    let rebind = create(
        &serde_json::json!({"ttl_s": 600, "memory_mib": 256, "disk_mib": 512, "egress": {"domains": ["rebind.test"]}})
            .to_string(),
    );
    let (out, code) = sh(
        &rebind,
        "python3 -c \"import socket; print(socket.gethostbyname('rebind.test'))\"",
    );
    assert!(code != 0 || !out.contains("10.0.2.15"), "{out}");
    assert_eq!(curl(&rebind, "http://rebind.test/"), "");
    // The proxy's connections shared: A holds its share, the other still
    // connects (given allowed.test for it).
    let (code, body) = call(
        "PUT",
        &format!("/v1/workspaces/{rebind}/egress"),
        Some(r#"{"domains": ["allowed.test"]}"#),
    );
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    egress_share::a_greedy_workspace_leaves_the_proxy_to_the_others(&sh, &a, &rebind);
    let kill = || {
        let (code, body) = call("POST", "/v1/debug/kill-net-services", None);
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    };
    let long = |id: &str, script: &str| sh_for(id, script, 420);
    egress_share::a_workspace_at_full_rate_leaves_egress_to_the_others(
        &sh, &long, &a, &rebind, &kill,
    );
    call("DELETE", &format!("/v1/workspaces/{rebind}"), None);

    // Secrets brokered at egress, against the fake internet's echo.
    broker::secrets_brokered(&app, &admin, &net);

    // A and B cannot see each other: direct IP, broadcast.
    let (b_ip, _) = sh(&b, "python3 -c \"import socket; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.connect(('10.200.0.1',53)); print(s.getsockname()[0])\"");
    let b_ip = b_ip.trim().to_string();
    assert!(b_ip.starts_with("10.200."), "{b_ip}");
    // A server in B while A tries it (a command's processes end with it,
    // so the server runs in an exec of its own beside the others).
    let (from_b, from_a) = std::thread::scope(|scope| {
        let server = scope.spawn(|| sh(&b, "timeout 300 python3 -m http.server 8000"));
        listening(&b, 8000);
        let from_b = curl(&b, "http://127.0.0.1:8000/");
        let from_a = curl(&a, &format!("http://{b_ip}:8000/"));
        stop(&b, "http[.]server 8000");
        let _ = server.join();
        (from_b, from_a)
    });
    assert!(
        from_b.contains("Directory listing"),
        "positive control: {from_b:?}"
    );
    assert_eq!(from_a, "", "A reached B's server");
    let listener = std::thread::scope(|scope| {
        let h = scope.spawn(|| {
            sh(
                &b,
                "python3 -c \"import socket; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('',9999)); s.settimeout(10); print('got', s.recv(100))\"",
            )
        });
        listening(&b, 9999);
        sh(
            &a,
            &format!("python3 -c \"import socket; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.setsockopt(socket.SOL_SOCKET,socket.SO_BROADCAST,1); [s.sendto(b'hello',(d,9999)) for d in ('255.255.255.255','10.200.255.255','{b_ip}')]\""),
        );
        h.join().expect("listener")
    });
    assert!(!listener.0.contains("got"), "B heard A: {}", listener.0);

    // A directed private link A -> B:8080. B answers; B cannot open
    // anything to A; a third workspace C reaches neither; removing the link
    // cuts A's open connection.
    let c = create(r#"{"ttl_s": 1800, "memory_mib": 256, "disk_mib": 512}"#);
    let address = |id: &str| {
        json(&call("GET", &format!("/v1/workspaces/{id}"), None).1)["address"]
            .as_str()
            .expect("address")
            .to_string()
    };
    let a_ip = address(&a);
    assert_eq!(address(&b), b_ip);
    let (code, body) = call(
        "POST",
        "/v1/links",
        Some(&serde_json::json!({"from": a, "to": b, "port": 8080}).to_string()),
    );
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    let link = json(&body);
    assert_eq!(link["to_address"], b_ip.as_str());
    let link_id = link["id"].as_str().expect("link id").to_string();
    let (code, _) = call(
        "POST",
        "/v1/links",
        Some(&serde_json::json!({"from": a, "to": b, "port": 0}).to_string()),
    );
    assert_eq!(code, 422);
    let echo_server = "timeout 300 python3 -c 'import socket,threading\ns=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1); s.bind((\"\",8080)); s.listen()\ndef h(c):\n  while True:\n    d=c.recv(100)\n    if not d: break\n    c.sendall(d)\nwhile True:\n  c,_=s.accept(); threading.Thread(target=h,args=(c,),daemon=True).start()'";
    let echo_client = |ip: &str, secs: u32| {
        format!(
            "python3 -c 'import socket,time\nn=0\ntry:\n  c=socket.create_connection((\"{ip}\",8080),timeout=5); c.settimeout(5); t=time.time()\n  while time.time()-t<{secs}:\n    c.sendall(b\"ping\"); assert c.recv(100)==b\"ping\"; n+=1; time.sleep(0.5)\n  print(\"held\",n)\nexcept Exception as e:\n  print(\"cut\",n,type(e).__name__)'"
        )
    };
    let (a_once, held, b_to_a, c_to_b, c_to_a) = std::thread::scope(|scope| {
        let server = scope.spawn(|| sh(&b, echo_server));
        let a_server = scope.spawn(|| sh(&a, "timeout 300 python3 -m http.server 9000"));
        listening(&b, 8080);
        listening(&a, 9000);
        let a_once = sh(&a, &echo_client(&b_ip, 1)).0;
        let b_to_a = (
            curl(&b, &format!("http://{a_ip}:9000/")),
            sh(&b, &echo_client(&a_ip, 1)).0,
        );
        let c_to_b = sh(&c, &echo_client(&b_ip, 1)).0;
        let c_to_a = curl(&c, &format!("http://{a_ip}:9000/"));
        // A holds a connection; the link goes while it is open.
        let holder = scope.spawn(|| {
            let started = std::time::Instant::now();
            (sh(&a, &echo_client(&b_ip, 50)).0, started.elapsed())
        });
        std::thread::sleep(Duration::from_secs(8));
        let (code, body) = call("DELETE", &format!("/v1/links/{link_id}"), None);
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
        let held = holder.join().expect("holder");
        stop(&b, "s[.]bind..\"\",8080");
        stop(&a, "http[.]server 9000");
        let _ = server.join();
        let _ = a_server.join();
        (a_once, held, b_to_a, c_to_b, c_to_a)
    });
    assert!(
        a_once.starts_with("held"),
        "A reaches B over the link: {a_once}"
    );
    assert_eq!(b_to_a.0, "", "B opened a connection to A");
    assert!(
        b_to_a.1.starts_with("cut 0"),
        "B opened a connection to A: {}",
        b_to_a.1
    );
    assert!(c_to_b.starts_with("cut 0"), "C reached B: {c_to_b}");
    assert_eq!(c_to_a, "", "C reached A");
    let ((held_out, held_for), _) = (held, ());
    assert!(
        held_out.starts_with("cut "),
        "removing the link cut A's connection: {held_out}"
    );
    assert!(
        held_for < Duration::from_secs(45),
        "cut, not run out ({held_for:?})"
    );
    let (code, body) = call("GET", "/v1/links", None);
    assert_eq!(code, 200);
    assert_eq!(json(&body)["links"].as_array().map(Vec::len), Some(0));

    // A published port: reachable from outside only while published, and
    // never from another workspace.
    let outside = || {
        let out = Command::new("ip")
            .args(["netns", "exec", &net.name, "curl", "-s", "--max-time", "10"])
            .arg("http://127.0.0.1:18080/")
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let (before, published, from_b, after) = std::thread::scope(|scope| {
        let server = scope.spawn(|| sh(&a, "timeout 300 python3 -m http.server 8000"));
        listening(&a, 8000);
        let before = outside();
        let (code, body) = call(
            "POST",
            &format!("/v1/workspaces/{a}/ports"),
            Some(r#"{"port": 8000, "host_port": 20080}"#),
        );
        assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
        assert_eq!(json(&body)["host_port"], 20080);
        let published = outside();
        let from_b = curl(&b, "http://10.0.2.15:20080/");
        let (code, body) = call("DELETE", &format!("/v1/workspaces/{a}/ports/8000"), None);
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
        let after = outside();
        stop(&a, "http[.]server 8000");
        let _ = server.join();
        (before, published, from_b, after)
    });
    assert_eq!(before, "", "reachable before it was published");
    assert!(
        published.contains("Directory listing"),
        "published: {published:?}"
    );
    assert_eq!(from_b, "", "another workspace used the published port");
    assert_eq!(after, "", "reachable after it was unpublished");
    // The same, and a longer TTL and a link, asked for by a token whose
    // policy says ask, and approved by the admin (issue 17).
    yellow::asked_actions(&app, &admin, &net, &a, &b);

    // A running workspace's allowlist changes without a restart, and a
    // connection the new list no longer allows is cut.
    let slow = std::thread::scope(|scope| {
        let h = scope.spawn(|| {
            let started = std::time::Instant::now();
            let r = sh(&a, "curl -sk --max-time 100 https://allowed.test/slow");
            (r, started.elapsed())
        });
        std::thread::sleep(Duration::from_secs(8));
        let (code, body) = call(
            "PUT",
            &format!("/v1/workspaces/{a}/egress"),
            Some(r#"{"domains": ["denied.test"]}"#),
        );
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
        h.join().expect("slow download")
    });
    let ((out, code), took) = slow;
    assert_ne!(code, 0, "the cut download ended in an error: {out}");
    assert!(
        took < Duration::from_secs(60),
        "cut, not run to its end ({took:?})"
    );
    assert!(curl(&a, "https://denied.test/").starts_with("server=denied.test"));
    assert_eq!(curl(&a, "https://allowed.test/"), "");

    // Every refusal is counted; every policy change is audited.
    for m in [
        "paddock_workspace_denied_packets_total",
        "paddock_workspace_denied_lookups_total",
        "paddock_workspace_denied_connections_total",
    ] {
        assert!(metric(m, &a) > 0.0, "{m} for A");
    }
    assert!(metric("paddock_workspace_net_sent_bytes_total", &a) > 0.0);
    let (code, body) = call("GET", "/v1/audit", None);
    assert_eq!(code, 200);
    let audit = String::from_utf8_lossy(&body);
    assert!(
        audit.contains("workspace_egress_changed") && audit.contains("denied.test"),
        "{audit}"
    );
    assert!(
        audit.contains("link_created") && audit.contains("link_deleted"),
        "{audit}"
    );
    assert!(
        audit.contains("port_published") && audit.contains("port_unpublished"),
        "{audit}"
    );

    // Quarantine cuts a workspace off, links into it included: C, linked
    // to A, is refused at once (the firewall's reset), where a frozen guest
    // behind an open link would leave it waiting.
    let (code, body) = call(
        "POST",
        "/v1/links",
        Some(&serde_json::json!({"from": c, "to": a, "port": 8080}).to_string()),
    );
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    let reached = std::thread::scope(|scope| {
        let server = scope.spawn(|| sh(&a, echo_server));
        listening(&a, 8080);
        let r = sh(&c, &echo_client(&a_ip, 1)).0;
        stop(&a, "s[.]bind..\"\",8080");
        let _ = server.join();
        r
    });
    assert!(
        reached.starts_with("held"),
        "C reaches A over the link: {reached}"
    );
    let (code, body) = call("POST", &format!("/v1/workspaces/{a}/quarantine"), None);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let after = sh(&c, &echo_client(&a_ip, 1)).0;
    assert!(
        after.contains("ConnectionRefusedError"),
        "C after A's quarantine: {after}"
    );

    for id in [&a, &b, &c] {
        assert_eq!(call("DELETE", &format!("/v1/workspaces/{id}"), None).0, 200);
    }
    let exited = app.power_button(Duration::from_secs(180)).expect("QMP");
    assert!(exited.is_some(), "powered off");
    let _ = std::fs::remove_dir_all(&dir);
}
