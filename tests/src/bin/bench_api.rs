//! Workspace API benchmark against the appliance booted in QEMU, side by
//! side: the image as built (workspaces cloned from a template snapshot)
//! and the same image with `template_snapshots` off (every workspace boots
//! its kernel), each on a fresh appliance. For each: create to first exec
//! output (median and p99 over N sequential workspaces, with the create and
//! exec parts), 4 and 10 creates at once, and the host memory each running
//! workspace costs (from /metrics: its cgroup's memory.current, and the
//! drop in the host's available memory). Prints a table; records nothing.

use paddock_tests::appliance::{image_dir, Appliance};
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

/// What one appliance measured.
struct Figures {
    create_s: Vec<f64>,
    exec_s: Vec<f64>,
    total_s: Vec<f64>,
    /// Per concurrency: (how many, ready, failed, wall, each ready one's).
    batches: Vec<(usize, usize, usize, f64, Vec<f64>)>,
    cgroup_mib: Vec<f64>,
    avail_drop_mib: f64,
    /// From /metrics at the end: starts from a snapshot, and booted.
    from_snapshot: f64,
    booted: f64,
}

/// The image's own `paddock.json` with `template_snapshots` set.
fn config(snapshots: bool) -> Result<Vec<u8>, String> {
    let path = image_dir()
        .map_err(|e| e.to_string())?
        .join("esp-config.json");
    let mut config: serde_json::Value = match std::fs::read(&path) {
        Ok(b) => json(&b)?,
        Err(_) => serde_json::json!({}),
    };
    config
        .as_object_mut()
        .ok_or(format!("{}: not a JSON object", path.display()))?
        .insert("template_snapshots".into(), snapshots.into());
    serde_json::to_vec(&config).map_err(|e| e.to_string())
}

fn measure(snapshots: bool, runs: usize, concurrent: &[usize]) -> Result<Figures, String> {
    let work = std::env::temp_dir().join(format!(
        "paddock-bench-api-{}-{}",
        std::process::id(),
        if snapshots { "snapshot" } else { "boot" }
    ));
    let config = config(snapshots)?;
    let (mut app, token) = Appliance::boot_fresh_configured(&work, 8 << 30, &[], Some(&config))
        .map_err(|e| e.to_string())?;
    // A shape's snapshot is built after its first create (the default
    // shape's at boot): one create first, on both sides, and with
    // snapshots on, until that shape's snapshot is ready.
    let warm_up = Api {
        app: &app,
        token: token.clone(),
    };
    let (id, _) = warm_up.create()?;
    warm_up.delete(&id)?;
    if snapshots {
        app.wait_for(
            "template snapshot template-1x128-nic ready",
            Duration::from_secs(600),
        )
        .map_err(|e| e.to_string())?;
    }
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

    let mut batches = Vec::new();
    let mut cgroup_mib = Vec::new();
    let mut avail_drop_mib = 0.0;
    for (k, &n) in concurrent.iter().enumerate() {
        // Memory before any workspace runs.
        let before = api.metrics()?;
        let avail_before = api
            .metric(&before, "paddock_host_memory_available_bytes")
            .ok_or("no host memory in /metrics")?;
        let started = Instant::now();
        let results: Vec<Result<(String, f64), String>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..n).map(|_| s.spawn(|| api.create())).collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err("thread panicked".into())))
                .collect()
        });
        let wall = started.elapsed().as_secs_f64();
        // Report what did not start rather than abort: on an emulated box
        // ten boots at once can outlast the readiness timeout.
        let (mut ids, mut each, mut failed) = (Vec::new(), Vec::new(), 0);
        for r in results {
            match r {
                Ok((id, s)) => {
                    ids.push(id);
                    each.push(s);
                }
                Err(e) => {
                    failed += 1;
                    eprintln!(
                        "concurrent create failed: {}",
                        e.chars().take(300).collect::<String>()
                    );
                }
            }
        }
        // The memory figures come from the largest batch (the last).
        if k + 1 == concurrent.len() && !ids.is_empty() {
            // Let the guests settle, then read what they cost.
            std::thread::sleep(Duration::from_secs(10));
            let after = api.metrics()?;
            let avail_after = api
                .metric(&after, "paddock_host_memory_available_bytes")
                .ok_or("no host memory in /metrics")?;
            for id in &ids {
                let v = api
                    .metric(
                        &after,
                        &format!("paddock_workspace_memory_bytes{{workspace=\"{id}\"}}"),
                    )
                    .ok_or(format!("no memory figure for {id}"))?;
                cgroup_mib.push(v / f64::from(1 << 20));
            }
            avail_drop_mib = (avail_before - avail_after) / ids.len() as f64 / f64::from(1 << 20);
        }
        for id in &ids {
            api.delete(id)?;
        }
        batches.push((n, ids.len(), failed, wall, each));
    }
    let end = api.metrics()?;
    let from_snapshot = api
        .metric(&end, "paddock_workspace_starts_total{from=\"snapshot\"}")
        .unwrap_or(0.0);
    let booted = api
        .metric(&end, "paddock_workspace_starts_total{from=\"boot\"}")
        .unwrap_or(0.0);
    app.kill();
    let _ = std::fs::remove_dir_all(&work);
    Ok(Figures {
        create_s,
        exec_s,
        total_s,
        batches,
        cgroup_mib,
        avail_drop_mib,
        from_snapshot,
        booted,
    })
}

fn run() -> Result<(), String> {
    let runs: usize = std::env::var("PADDOCK_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let concurrent: Vec<usize> = std::env::var("PADDOCK_BENCH_CONCURRENT")
        .unwrap_or_else(|_| "4,10".into())
        .split(',')
        .map(|n| {
            n.trim()
                .parse()
                .map_err(|_| format!("PADDOCK_BENCH_CONCURRENT: {n:?} is not a count"))
        })
        .collect::<Result<_, _>>()?;
    // Interleaving sides within one appliance is not possible (the switch
    // is read at boot): one fresh appliance each, snapshots first.
    let snap = measure(true, runs, &concurrent)?;
    let boot = measure(false, runs, &concurrent)?;

    println!(
        "workspace API on the appliance (QEMU q35, seconds; workspaces of 1 vCPU, 128 MiB, 256 MiB disk; {runs} sequential):"
    );
    println!(
        "  {:<44} {:>17} {:>17} {:>8}",
        "", "from snapshot", "booted", "booted /"
    );
    println!(
        "  {:<44} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "", "median", "p99", "median", "p99", "snapshot"
    );
    for (label, a, b) in [
        (
            "create (POST until 201: agent answers)",
            &snap.create_s,
            &boot.create_s,
        ),
        ("first exec (echo, output back)", &snap.exec_s, &boot.exec_s),
        ("create -> first exec output", &snap.total_s, &boot.total_s),
    ] {
        let (am, bm) = (percentile(a, 50.0), percentile(b, 50.0));
        println!(
            "  {label:<44} {am:>8.2} {:>8.2} {bm:>8.2} {:>8.2} {:>7.2}x",
            percentile(a, 99.0),
            percentile(b, 99.0),
            bm / am
        );
    }
    for (a, b) in snap.batches.iter().zip(&boot.batches) {
        let line = |(n, ready, failed, wall, each): &(usize, usize, usize, f64, Vec<f64>)| {
            format!(
                "{ready}/{n} ready ({failed} failed), all answered after {wall:.2} s, median {:.2} s",
                percentile(each, 50.0)
            )
        };
        println!("  {} creates at once:", a.0);
        println!("    from snapshot: {}", line(a));
        println!("    booted:        {}", line(b));
    }
    for (label, f) in [("from snapshot", &snap), ("booted", &boot)] {
        println!(
            "  {label}: idle workspace's cgroup memory.current median {:.1} MiB; host available memory dropped {:.1} MiB per workspace; starts counted in /metrics: {} from a snapshot, {} booted",
            percentile(&f.cgroup_mib, 50.0),
            f.avail_drop_mib,
            f.from_snapshot,
            f.booted
        );
    }
    Ok(())
}
