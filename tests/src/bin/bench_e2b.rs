//! From nothing to a command's first output in a new sandbox, through
//! E2B's own Python SDK against Paddock's E2B API, side by side with the
//! native API through curl, on one booted appliance: E2B's
//! `Sandbox.create()` then `commands.run("echo ready")` until its output
//! arrives, and `POST /v1/workspaces` then `POST .../exec` of the same
//! command; each sandbox is deleted after its round. Rounds alternate, so
//! drift in the emulated machine hits both alike. Prints median and p99
//! (the largest, for few runs); records nothing.

use paddock_tests::appliance::Appliance;
use paddock_tests::bench::{self, json, median};
use std::process::Command;
use std::time::{Duration, Instant};

/// One E2B round, timed inside Python (its start-up is not counted):
/// prints `{"create": s, "first_output": s}` (first output from the start
/// of the create).
const SCRIPT: &str = r#"
import json, time
from e2b import Sandbox
t0 = time.monotonic()
sbx = Sandbox.create(timeout=300)
created = time.monotonic() - t0
first = []
sbx.commands.run("echo ready", on_stdout=lambda s: first.append(time.monotonic() - t0) if not first else None)
sbx.kill()
print(json.dumps({"create": created, "first_output": first[0]}))
"#;

fn main() -> std::process::ExitCode {
    bench::exit("bench-e2b", run())
}

fn e2b_round(app: &Appliance, token: &str, python: &str, cert: &str) -> Result<(f64, f64), String> {
    let url = format!("https://localhost:{}", app.port);
    let out = Command::new(python)
        .args(["-c", SCRIPT])
        .env("E2B_API_KEY", token)
        .env("E2B_API_URL", &url)
        .env("E2B_SANDBOX_URL", &url)
        .env("SSL_CERT_FILE", cert)
        .output()
        .map_err(|e| format!("python: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "the SDK's round failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let r = json(out.stdout.trim_ascii())?;
    match (r["create"].as_f64(), r["first_output"].as_f64()) {
        (Some(c), Some(f)) => Ok((c, f)),
        _ => Err(format!("unexpected: {r}")),
    }
}

fn native_round(app: &Appliance, token: &str) -> Result<(f64, f64), String> {
    let call =
        |m: &str, p: &str, b: Option<&[u8]>| app.api(m, p, token, b).map_err(|e| e.to_string());
    let t0 = Instant::now();
    let (code, body) = call("POST", "/v1/workspaces", Some(br#"{"ttl_s": 300}"#))?;
    let created = t0.elapsed().as_secs_f64();
    if code != 201 {
        return Err(format!("create: {code} {}", String::from_utf8_lossy(&body)));
    }
    let id = json(&body)?["id"].as_str().unwrap_or_default().to_string();
    let exec = br#"{"argv": ["sh", "-c", "echo ready"]}"#;
    let (code, stream) = call("POST", &format!("/v1/workspaces/{id}/exec"), Some(exec))?;
    let first = t0.elapsed().as_secs_f64();
    if code != 200 || bench::exec_stdout(&stream)? != b"ready\n" {
        return Err(format!("exec: {code} {}", String::from_utf8_lossy(&stream)));
    }
    let (code, _) = call("DELETE", &format!("/v1/workspaces/{id}"), None)?;
    if code != 200 {
        return Err(format!("delete: {code}"));
    }
    Ok((created, first))
}

fn p99(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64) * 0.99).ceil() as usize;
    v.get(i.saturating_sub(1)).copied().unwrap_or(f64::NAN)
}

fn run() -> Result<(), String> {
    let runs = bench::runs();
    let python = std::env::var("PADDOCK_E2B_PYTHON")
        .map_err(|_| "PADDOCK_E2B_PYTHON is not set (the Justfile sets it)".to_string())?;
    let work = std::env::temp_dir().join(format!("paddock-bench-e2b-{}", std::process::id()));
    let (mut app, token) = Appliance::boot_fresh(&work, 8 << 30).map_err(|e| e.to_string())?;
    let cert = work.join("api.pem");
    std::fs::write(&cert, app.served_pem().map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let cert = cert.to_string_lossy().into_owned();
    let (mut e2b, mut native) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let n = native_round(&app, &token)?;
        let e = e2b_round(&app, &token, &python, &cert)?;
        eprintln!("run {i}: native {n:?}, e2b {e:?}");
        native.push(n);
        e2b.push(e);
    }
    let _ = app.power_button(Duration::from_secs(120));
    drop(app);
    let _ = std::fs::remove_dir_all(&work);

    let col = |v: &[(f64, f64)], first: bool| -> Vec<f64> {
        v.iter().map(|(c, f)| if first { *f } else { *c }).collect()
    };
    println!("\nA new sandbox to its first output, {runs} rounds each (seconds)\n");
    println!("| | E2B SDK median | E2B SDK p99 | native (curl) median | native (curl) p99 |");
    println!("| --- | --- | --- | --- | --- |");
    for (label, first) in [("create", false), ("create → first output", true)] {
        let (e, n) = (col(&e2b, first), col(&native, first));
        println!(
            "| {label} | {:.2} | {:.2} | {:.2} | {:.2} |",
            median(&e),
            p99(&e),
            median(&n),
            p99(&n)
        );
    }
    Ok(())
}
