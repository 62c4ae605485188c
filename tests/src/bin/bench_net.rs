//! Workspace networking, one appliance run inside the fake internet
//! (tests/src/fakenet.rs): what each path costs a guest. The same 32 MiB
//! download and the same small request go (1) straight to an address a
//! CIDR entry opens (routed and masqueraded by the host), (2) through the
//! egress proxy over HTTP (Host checked, name resolved by the host), (3)
//! through the proxy over HTTPS (SNI checked); then the NIC's token bucket
//! at 4 MiB/s; and DNS answers for an allowed name (forwarded upstream)
//! and a refused one (NXDOMAIN from the host). Everything crosses QEMU's
//! user-mode network under TCG, which caps the absolute figures; the
//! paths are compared with each other in the same run. Prints a table.

use paddock_tests::appliance::Appliance;
use paddock_tests::bench::{self, json, median};
use paddock_tests::fakenet::{FakeNet, BIG, RAW_LISTED};
use std::time::Duration;

/// Runs `script` (bash) in the workspace; its stdout.
fn sh(app: &Appliance, token: &str, id: &str, script: &str) -> Result<String, String> {
    let exec = serde_json::json!({"argv": ["bash", "-c", script], "timeout_s": 600});
    let (code, stream) = app
        .api(
            "POST",
            &format!("/v1/workspaces/{id}/exec"),
            token,
            Some(exec.to_string().as_bytes()),
        )
        .map_err(|e| e.to_string())?;
    if code != 200 {
        return Err(format!("exec: {code} {}", String::from_utf8_lossy(&stream)));
    }
    Ok(String::from_utf8_lossy(&bench::exec_stdout(&stream)?).to_string())
}

/// curl's own timings of one transfer: (seconds to connect, to the first
/// byte, in all; bytes).
fn curl(app: &Appliance, token: &str, id: &str, url: &str) -> Result<[f64; 4], String> {
    let out = sh(
        app,
        token,
        id,
        &format!(
            "curl -sk -o /dev/null --max-time 300 -w '%{{time_connect}} %{{time_starttransfer}} %{{time_total}} %{{size_download}}' {url}"
        ),
    )?;
    let v: Vec<f64> = out
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    match v.as_slice() {
        [a, b, c, d] => Ok([*a, *b, *c, *d]),
        _ => Err(format!("curl {url}: {out:?}")),
    }
}

fn create(app: &Appliance, token: &str, spec: serde_json::Value) -> Result<String, String> {
    let (code, body) = app
        .api(
            "POST",
            "/v1/workspaces",
            token,
            Some(spec.to_string().as_bytes()),
        )
        .map_err(|e| e.to_string())?;
    if code != 201 {
        return Err(format!("create: {code} {}", String::from_utf8_lossy(&body)));
    }
    Ok(json(&body)?["id"].as_str().unwrap_or_default().to_string())
}

fn main() -> std::process::ExitCode {
    bench::exit("bench-net", run())
}

fn run() -> Result<(), String> {
    let runs = bench::runs();
    let net = FakeNet::create().map_err(|e| e.to_string())?;
    let work = std::env::temp_dir().join(format!("paddock-bench-net-{}", std::process::id()));
    let (mut app, token) =
        Appliance::boot_fresh_in(&work, 8 << 30, &net.exec_prefix()).map_err(|e| e.to_string())?;
    // The test image boots a demo workspace at "ready"; a create while it
    // boots was seen to take minutes under nested emulation (two guests
    // booting on the appliance's one emulated CPU), so the timings start
    // once it is done, as the tests do.
    app.wait_for("demo workspace: `uname -sr` says", Duration::from_secs(600))
        .map_err(|e| e.to_string())?;
    let egress = serde_json::json!({"domains": ["allowed.test"], "cidrs": [format!("{RAW_LISTED}/32:8080")]});
    let ws = create(
        &app,
        &token,
        serde_json::json!({"ttl_s": 3600, "memory_mib": 256, "disk_mib": 512, "egress": egress, "net_mib_per_s": 1000}),
    )?;
    let slow = create(
        &app,
        &token,
        serde_json::json!({"ttl_s": 3600, "memory_mib": 256, "disk_mib": 512, "egress": egress, "net_mib_per_s": 4}),
    )?;
    let paths = [
        (
            "direct (CIDR entry)",
            ws.clone(),
            format!("http://{RAW_LISTED}:8080"),
        ),
        ("proxy, HTTP", ws.clone(), "http://allowed.test".to_string()),
        (
            "proxy, HTTPS",
            ws.clone(),
            "https://allowed.test".to_string(),
        ),
        (
            "direct, NIC at 4 MiB/s",
            slow.clone(),
            format!("http://{RAW_LISTED}:8080"),
        ),
    ];
    let mut rows = Vec::new();
    for (label, id, base) in &paths {
        let (mut mib_s, mut connect, mut first) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..runs {
            let big = curl(&app, &token, id, &format!("{base}/big"))?;
            if big[3] as usize != BIG {
                return Err(format!("{label}: {} of {BIG} bytes", big[3]));
            }
            mib_s.push(big[3] / (big[2] - big[1]).max(1e-6) / f64::from(1 << 20));
            let small = curl(&app, &token, id, &format!("{base}/"))?;
            connect.push(small[0] * 1e3);
            first.push(small[1] * 1e3);
            eprintln!("run {i} {label}: {big:?} {small:?}");
        }
        rows.push((label, median(&mib_s), median(&connect), median(&first)));
    }
    let lookup = |name: &str| -> Result<f64, String> {
        let mut v = Vec::new();
        for _ in 0..runs.max(5) {
            let out = sh(
                &app,
                &token,
                &ws,
                &format!("python3 -c \"import socket,time; t=time.monotonic()\ntry: socket.gethostbyname('{name}')\nexcept OSError: pass\nprint((time.monotonic()-t)*1e3)\""),
            )?;
            v.push(
                out.trim()
                    .parse::<f64>()
                    .map_err(|e| format!("{e}: {out}"))?,
            );
        }
        Ok(median(&v))
    };
    let allowed = lookup("allowed.test")?;
    let refused = lookup("x.unlisted.test")?;
    for id in [&ws, &slow] {
        let _ = app.api("DELETE", &format!("/v1/workspaces/{id}"), &token, None);
    }
    let _ = app.power_button(Duration::from_secs(120));
    drop(app);
    let _ = std::fs::remove_dir_all(&work);

    println!("\nWorkspace network paths, median of {runs} (1 vCPU guest; appliance under TCG behind QEMU user networking)\n");
    println!("| path | 32 MiB download (MiB/s) | connect (ms) | first byte of a small GET (ms) |");
    println!("| --- | --- | --- | --- |");
    for (label, mib, c, f) in rows {
        println!("| {label} | {mib:.1} | {c:.1} | {f:.1} |");
    }
    println!("\nDNS from the guest (median ms): allowed name (asked upstream) {allowed:.1}, refused name (NXDOMAIN from the host) {refused:.1}");
    Ok(())
}
