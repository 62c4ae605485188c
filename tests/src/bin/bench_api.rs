//! Workspace API benchmark against the appliance booted in QEMU: create to
//! first exec output (median and p99 over N sequential workspaces, with the
//! create and exec parts), 10 creates at once, and the host memory each
//! running workspace costs (from /metrics: its cgroup's memory.current, and
//! the drop in the host's available memory). Prints a table; records
//! nothing.

use paddock_tests::appliance::Appliance;
use std::time::{Duration, Instant};

/// The smallest workspace the API allows: the benchmark measures our
/// overhead, not the guest's appetite.
const SPEC: &str = r#"{"ttl_s": 1800, "memory_mib": 128, "disk_mib": 256}"#;

fn percentile(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    v[i.min(v.len() - 1)]
}

fn json(b: &[u8]) -> Result<serde_json::Value, String> {
    serde_json::from_slice(b).map_err(|e| format!("{e}: {}", String::from_utf8_lossy(b)))
}

struct Api<'a> {
    app: &'a Appliance,
    token: String,
}

impl Api<'_> {
    fn call(&self, m: &str, p: &str, body: Option<&str>) -> Result<(u16, Vec<u8>), String> {
        self.app
            .api(m, p, &self.token, body.map(str::as_bytes))
            .map_err(|e| e.to_string())
    }

    /// Creates one workspace; its id and how long the create took.
    fn create(&self) -> Result<(String, f64), String> {
        let t = Instant::now();
        let (code, body) = self.call("POST", "/v1/workspaces", Some(SPEC))?;
        if code != 201 {
            return Err(format!("create: {code} {}", String::from_utf8_lossy(&body)));
        }
        let id = json(&body)?["id"].as_str().unwrap_or_default().to_string();
        Ok((id, t.elapsed().as_secs_f64()))
    }

    /// Runs `echo ready` in it; seconds until the output was back.
    fn first_exec(&self, id: &str) -> Result<f64, String> {
        let t = Instant::now();
        let (code, body) = self.call(
            "POST",
            &format!("/v1/workspaces/{id}/exec"),
            Some(r#"{"argv": ["echo", "ready"]}"#),
        )?;
        // "ready\n" in base64.
        if code != 200 || !String::from_utf8_lossy(&body).contains("cmVhZHkK") {
            return Err(format!("exec: {code} {}", String::from_utf8_lossy(&body)));
        }
        Ok(t.elapsed().as_secs_f64())
    }

    fn delete(&self, id: &str) -> Result<(), String> {
        match self.call("DELETE", &format!("/v1/workspaces/{id}"), None)? {
            (200, _) => Ok(()),
            (code, body) => Err(format!("delete: {code} {}", String::from_utf8_lossy(&body))),
        }
    }

    /// One Prometheus sample's value.
    fn metric(&self, text: &str, name: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse().ok())
    }

    fn metrics(&self) -> Result<String, String> {
        let (code, body) = self.call("GET", "/metrics", None)?;
        if code != 200 {
            return Err(format!("metrics: {code}"));
        }
        Ok(String::from_utf8_lossy(&body).to_string())
    }
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-api: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let runs: usize = std::env::var("PADDOCK_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let concurrent: usize = std::env::var("PADDOCK_BENCH_CONCURRENT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let work = std::env::temp_dir().join(format!("paddock-bench-api-{}", std::process::id()));
    let (mut app, token) = Appliance::boot_fresh(&work, 8 << 30).map_err(|e| e.to_string())?;
    let api = Api { app: &app, token };

    // Sequential: create, first exec, delete; N times.
    let (mut create_s, mut exec_s, mut total_s) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        let (id, c) = api.create()?;
        let e = api.first_exec(&id)?;
        api.delete(&id)?;
        eprintln!("run {i}: create {c:.2} s + first exec {e:.2} s");
        create_s.push(c);
        exec_s.push(e);
        total_s.push(c + e);
    }

    // Memory before any workspace runs.
    let before = api.metrics()?;
    let avail_before = api
        .metric(&before, "paddock_host_memory_available_bytes")
        .ok_or("no host memory in /metrics")?;

    // Concurrent: N creates at once.
    let started = Instant::now();
    let results: Vec<Result<(String, f64), String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..concurrent).map(|_| s.spawn(|| api.create())).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("thread panicked".into())))
            .collect()
    });
    let wall = started.elapsed().as_secs_f64();
    // Report what did not start rather than abort: on an emulated box ten
    // boots at once can outlast the readiness timeout.
    let mut ids = Vec::new();
    let mut each = Vec::new();
    let mut failed = Vec::new();
    for r in results {
        match r {
            Ok((id, s)) => {
                ids.push(id);
                each.push(s);
            }
            Err(e) => failed.push(e),
        }
    }
    for e in &failed {
        eprintln!(
            "concurrent create failed: {}",
            e.chars().take(300).collect::<String>()
        );
    }
    if ids.is_empty() {
        return Err("no concurrent create succeeded".into());
    }
    // Let the guests settle, then read what they cost.
    std::thread::sleep(Duration::from_secs(10));
    let after = api.metrics()?;
    let avail_after = api
        .metric(&after, "paddock_host_memory_available_bytes")
        .ok_or("no host memory in /metrics")?;
    let mut cgroup = Vec::new();
    for id in &ids {
        let v = api
            .metric(
                &after,
                &format!("paddock_workspace_memory_bytes{{workspace=\"{id}\"}}"),
            )
            .ok_or(format!("no memory figure for {id}"))?;
        cgroup.push(v / f64::from(1 << 20));
    }
    for id in &ids {
        api.delete(id)?;
    }
    app.kill();
    let _ = std::fs::remove_dir_all(&work);

    let n = ids.len() as f64;
    println!("workspace API on the appliance (QEMU q35, seconds; workspaces of 1 vCPU, 128 MiB, 256 MiB disk):");
    println!("  {:<40} {:>8} {:>8}", "", "median", "p99");
    for (label, v) in [
        ("create (POST until 201: booted, agent ready)", &create_s),
        ("first exec (echo, output back)", &exec_s),
        ("create -> first exec output", &total_s),
    ] {
        println!(
            "  {label:<40} {:>8.2} {:>8.2}",
            percentile(v, 50.0),
            percentile(v, 99.0)
        );
    }
    println!("  ({runs} sequential workspaces)");
    println!(
        "{concurrent} creates at once: {} ready, {} failed, all answered after {wall:.2} s; the ready ones: median {:.2} s, slowest {:.2} s",
        ids.len(),
        failed.len(),
        percentile(&each, 50.0),
        percentile(&each, 100.0)
    );
    println!(
        "host memory per running idle workspace: cgroup memory.current median {:.1} MiB (guest RAM touched + VMM); host available memory dropped {:.1} MiB per workspace",
        percentile(&cgroup, 50.0),
        (avail_before - avail_after) / n / f64::from(1 << 20)
    );
    Ok(())
}
