//! Signals of a looping agent, and the workspace's report, on a booted
//! appliance (issue 17): a
//! workspace whose rules are tightened at create runs the same failing
//! command until `repeated_failure` fires, then retries names it may not
//! look up until `denied_burst` fires and, as its rule asks, stops it. The
//! audit log says who stopped it; the metrics count what fired; a bad rule
//! is refused with its field named.

use paddock_tests::appliance::Appliance;
use std::time::Duration;

pub fn signals_fire(app: &Appliance, admin: &str) {
    let call = |m: &str, p: &str, b: Option<&str>| {
        app.api(m, p, admin, b.map(str::as_bytes)).expect("curl")
    };
    let (code, out) = call(
        "POST",
        "/v1/workspaces",
        Some(r#"{"ttl_s": 60, "signals": {"cpu_pinned": {"threshold": 101, "window_s": 60}}}"#),
    );
    let text = String::from_utf8_lossy(&out);
    assert_eq!(code, 422, "{text}");
    assert!(text.contains("signals.cpu_pinned.threshold"), "{text}");

    let (code, out) = call(
        "POST",
        "/v1/workspaces",
        Some(
            r#"{"ttl_s": 900, "memory_mib": 256, "disk_mib": 256, "labels": {"role": "looping"},
                "signals": {"repeated_failure": {"threshold": 3, "window_s": 300},
                            "denied_burst": {"threshold": 10, "window_s": 60, "action": "stop"}}}"#,
        ),
    );
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&out));
    let ws = crate::json(&out);
    let id = ws["id"].as_str().expect("id").to_string();
    assert_eq!(ws["signals"]["repeated_failure"]["threshold"], 3, "{ws}");
    assert_eq!(
        ws["signals"]["cpu_pinned"]["threshold"], 95,
        "the rules left out keep their defaults: {ws}"
    );
    let exec = |argv: &[&str]| {
        let body = serde_json::json!({"argv": argv, "timeout_s": 60}).to_string();
        let (code, stream) = call("POST", &format!("/v1/workspaces/{id}/exec"), Some(&body));
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&stream));
        crate::exec_output(&stream).1["exit_code"].clone()
    };
    let events = |event: &str, signal: Option<&str>| {
        let (code, audit) = call(
            "GET",
            &format!("/v1/audit?event={event}&workspace={id}"),
            None,
        );
        assert_eq!(code, 200);
        let audit = crate::json(&audit);
        audit["events"]
            .as_array()
            .expect("events")
            .iter()
            .filter(|e| signal.is_none_or(|s| e["signal"] == s))
            .count()
    };
    let fired = |signal: &str| events("signal_fired", Some(signal));
    // An exec's end is recorded just after its answer ends: wait for the
    // n-th before looking at what it fired.
    let ended = |n: usize| {
        for _ in 0..60 {
            if events("exec_ended", None) >= n {
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!("exec_ended {n} was never recorded");
    };
    // Another command failing in between does not count toward it, and
    // two failures are not yet three.
    for argv in [
        &["sh", "-c", "exit 3"][..],
        &["false"],
        &["sh", "-c", "exit 3"],
    ] {
        assert_ne!(exec(argv), 0);
    }
    ended(3);
    assert_eq!(fired("repeated_failure"), 0);
    assert_eq!(exec(&["sh", "-c", "exit 3"]), 3);
    ended(4);
    assert_eq!(
        fired("repeated_failure"),
        1,
        "the third failure of the same command"
    );
    assert_eq!(exec(&["sh", "-c", "exit 3"]), 3);
    ended(5);
    assert_eq!(fired("repeated_failure"), 1, "once while it keeps failing");
    let (_, metrics) = call("GET", "/metrics", None);
    let metrics = String::from_utf8_lossy(&metrics).to_string();
    assert!(
        metrics.contains(&format!(
            "paddock_workspace_signals_total{{workspace=\"{id}\",signal=\"repeated_failure\"}} 1"
        )),
        "{metrics}"
    );

    // Its report while it runs: the commands and how they ended, the
    // signal, and what it changed on its disk against the template.
    let body = serde_json::json!({"argv": ["sh", "-c", "echo result > /var/tmp/result.txt; rm -f /etc/debian_version"], "user": "root", "timeout_s": 60}).to_string();
    let (code, _) = call("POST", &format!("/v1/workspaces/{id}/exec"), Some(&body));
    assert_eq!(code, 200);
    ended(6);
    let (code, out) = call("GET", &format!("/v1/workspaces/{id}/report"), None);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&out));
    let report = crate::json(&out);
    assert!(report["commands_started"].as_u64() >= Some(6), "{report}");
    let exits: Vec<i64> = report["commands"]
        .as_array()
        .expect("commands")
        .iter()
        .filter_map(|c| c["exit_code"].as_i64())
        .collect();
    assert_eq!(exits, [3, 1, 3, 3, 3, 0], "{report}");
    assert_eq!(
        report["signals"][0]["signal"], "repeated_failure",
        "{report}"
    );
    let changes = report["files"]["changes"].as_array().expect("changes");
    let change = |path: &str| {
        changes
            .iter()
            .find(|c| c["path"] == path)
            .map(|c| c["change"].as_str().unwrap_or("").to_string())
    };
    assert_eq!(
        change("/var/tmp/result.txt").as_deref(),
        Some("added"),
        "{report}"
    );
    assert_eq!(
        change("/etc/debian_version").as_deref(),
        Some("deleted"),
        "{report}"
    );
    // Names it may not look up, over and over: refused by the resolver,
    // counted, and the burst stops the workspace within a sample or two.
    // (The resolver drops queries past a workspace's fair share when it is
    // busy, uncounted, and the guest's resolver then waits out its own
    // timeout: under emulation one burst can fall short, so up to three.)
    let mut state = String::new();
    for _ in 0..3 {
        // Not the exec helper: the stop may land while this runs.
        let burst = serde_json::json!({"argv": ["sh", "-c", "for i in $(seq 15); do getent hosts denied$i.example >/dev/null; done; true"], "timeout_s": 60}).to_string();
        let started = std::time::Instant::now();
        let _ = call("POST", &format!("/v1/workspaces/{id}/exec"), Some(&burst));
        // A burst has been seen to take minutes with the guest's own
        // timers late (its exec's 60 s timeout included): how long, and
        // how long its CPU cap held it back, for whoever reads the log.
        let (_, metrics) = call("GET", "/metrics", None);
        let throttled = String::from_utf8_lossy(&metrics)
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "paddock_workspace_cpu_throttled_seconds_total{{workspace=\"{id}\"}}"
                ))
            })
            .map(str::to_string);
        eprintln!(
            "signals: a burst of lookups took {:.1} s; {}",
            started.elapsed().as_secs_f64(),
            throttled
                .as_deref()
                .unwrap_or("(no throttling figure: stopped)")
        );
        for _ in 0..30 {
            let (_, out) = call("GET", &format!("/v1/workspaces/{id}"), None);
            state = crate::json(&out)["state"]
                .as_str()
                .unwrap_or("")
                .to_string();
            if state == "stopped" {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        if state == "stopped" {
            break;
        }
    }
    if state != "stopped" {
        // What the box saw of it, to tell where the chain broke.
        let (_, metrics) = call("GET", "/metrics", None);
        let metrics = String::from_utf8_lossy(&metrics).to_string();
        let mine: Vec<&str> = metrics.lines().filter(|l| l.contains(&id)).collect();
        let (_, log) = call("GET", &format!("/v1/workspaces/{id}/network"), None);
        let (_, audit) = call("GET", &format!("/v1/audit?workspace={id}"), None);
        panic!(
            "denied_burst's action did not stop it ({state}):\n{}\n{}\n{}",
            mine.join("\n"),
            String::from_utf8_lossy(&log),
            String::from_utf8_lossy(&audit)
        );
    }
    assert_eq!(fired("denied_burst"), 1);
    let (_, audit) = call(
        "GET",
        &format!("/v1/audit?event=workspace_stopped&workspace={id}"),
        None,
    );
    assert!(
        String::from_utf8_lossy(&audit).contains("signal:denied_burst"),
        "the stop is on the signal's account: {}",
        String::from_utf8_lossy(&audit)
    );
    // Stopped: its report says so for the files, and has the rest.
    let (code, out) = call("GET", &format!("/v1/workspaces/{id}/report"), None);
    assert_eq!(code, 200);
    let report = crate::json(&out);
    assert!(
        report["files"]["unavailable"].as_str().is_some(),
        "{report}"
    );
    assert!(
        report["network"]["lookups_denied"].as_u64() >= Some(10),
        "{report}"
    );
    assert!(
        report["signals"].as_array().is_some_and(|s| s
            .iter()
            .any(|s| s["signal"] == "denied_burst" && s["action"] == "stop")),
        "{report}"
    );
    let (code, _) = call("DELETE", &format!("/v1/workspaces/{id}"), None);
    assert_eq!(code, 200);
}
