//! A guest that floods its serial console (issue 14, item 4): what the
//! console keeps on the data partition stays within its bound (two files
//! of 8 MiB), the box goes on answering, and a delete still works.

use super::{exec_output, json};
use paddock_tests::appliance::Appliance;

/// Bytes the guest writes to its serial port: more than the bound of
/// 16 MiB, so an unbounded log would show it. Minutes under nested
/// emulation (each byte is a VM exit).
const FLOOD: u64 = 20 << 20;
const PART: u64 = 4 << 20;
const BOUND: u64 = 16 << 20;

fn console_bytes(app: &Appliance, admin: &str, id: &str) -> u64 {
    let (code, text) = app.api("GET", "/metrics", admin, None).expect("curl");
    assert_eq!(code, 200);
    let text = String::from_utf8_lossy(&text).to_string();
    let key = format!("paddock_workspace_console_bytes{{workspace=\"{id}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or_else(|| panic!("{key} missing from /metrics:\n{text}"))
}

pub fn console_flood(app: &Appliance, admin: &str) {
    let call = |m: &str, p: &str, b: Option<&str>| {
        app.api(m, p, admin, b.map(str::as_bytes)).expect("curl")
    };
    let (code, body) = call(
        "POST",
        "/v1/workspaces",
        Some(r#"{"ttl_s": 900, "memory_mib": 256, "disk_mib": 256}"#),
    );
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    let id = json(&body)["id"].as_str().expect("id").to_string();
    // In parts: each exec answers within the harness's per-call limit
    // even at the slowest serial rate seen under nested emulation.
    let started = std::time::Instant::now();
    for part in 0..FLOOD / PART {
        let script =
            format!("head -c {PART} /dev/zero | tr '\\0' x > /dev/ttyS0; echo flooded {part}");
        let exec =
            serde_json::json!({"argv": ["sh", "-c", script], "user": "root", "timeout_s": 1800});
        let (code, stream) = call(
            "POST",
            &format!("/v1/workspaces/{id}/exec"),
            Some(&exec.to_string()),
        );
        assert_eq!(code, 200);
        let (out, last) = exec_output(&stream);
        assert_eq!(out, format!("flooded {part}\n"), "{last}");
    }
    let secs = started.elapsed().as_secs_f64();
    let held = console_bytes(app, admin, &id);
    eprintln!(
        "console flood: the guest wrote {} MiB to its serial port in {secs:.0} s; the data partition holds {:.1} MiB of it",
        FLOOD >> 20,
        held as f64 / (1u64 << 20) as f64
    );
    assert!(held <= BOUND, "console holds {held} bytes, over {BOUND}");
    assert!(
        held > BOUND / 2,
        "the log rotated and kept its newest part ({held})"
    );
    // The box goes on: another call, and the delete.
    assert_eq!(call("GET", &format!("/v1/workspaces/{id}"), None).0, 200);
    assert_eq!(call("DELETE", &format!("/v1/workspaces/{id}"), None).0, 200);
}
