//! `just bench-boot`: boots the same guest kernel and initramfs in
//! paddock-vmm and in QEMU microvm, PADDOCK_BENCH_RUNS times each, on the
//! same KVM (nested in QEMU TCG here, or hardware KVM), and prints median
//! and spread of: launch to the guest init's console marker, launch to
//! exit, paddock-vmm's own boot-timer figure, and resident memory beyond
//! guest RAM; then the ratios.

use paddock_tests::harness::{agent_stage, base_stage, run_script, Artifacts, Outcome};
use paddock_tests::measure::Measurement;
use std::path::{Path, PathBuf};
use std::process::Command;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// QEMU with the shared libraries and firmware it needs, laid out so it
/// runs in the L1 through its own dynamic loader.
fn add_qemu(stage: &mut paddock_tests::harness::Stage) -> Result<()> {
    let qemu = which("qemu-system-x86_64")?;
    stage.add_host_file("qemu/bin/qemu-system-x86_64", &qemu, 0o755)?;
    let ldd = Command::new("ldd").arg(&qemu).output()?;
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let path = line
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .map(PathBuf::from);
        if let Some(p) = path {
            let name = p
                .file_name()
                .ok_or("library without a name")?
                .to_string_lossy()
                .to_string();
            stage.add_host_file(
                &format!("qemu/lib/{name}"),
                &std::fs::canonicalize(&p)?,
                0o755,
            )?;
        }
    }
    for fw in [
        "bios-microvm.bin",
        "qboot.rom",
        "pvh.bin",
        "linuxboot_dma.bin",
        "kvmvapic.bin",
    ] {
        let p = Path::new("/usr/share/qemu").join(fw);
        if p.exists() {
            stage.add_host_file(
                &format!("qemu/share/{fw}"),
                &std::fs::canonicalize(&p)?,
                0o644,
            )?;
        }
    }
    Ok(())
}

fn which(cmd: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").ok_or("PATH is not set")?;
    std::env::split_paths(&path)
        .map(|d| d.join(cmd))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("{cmd} not found on PATH").into())
}

struct Stats {
    median: f64,
    min: f64,
    max: f64,
    n: usize,
}

fn stats(mut v: Vec<f64>) -> Option<Stats> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(Stats {
        median,
        min: v[0],
        max: v[n - 1],
        n,
    })
}

fn collect(o: &Outcome, prefix: &str) -> Vec<Measurement> {
    o.facts
        .iter()
        .filter(|f| f.scenario == "bench" && f.key.starts_with(prefix))
        .map(|f| Measurement::parse(&f.value))
        .collect()
}

fn row(label: &str, unit: &str, ours: Option<Stats>, qemu: Option<Stats>) {
    let fmt = |s: &Option<Stats>| match s {
        Some(s) => format!(
            "{:>9.1} [{:>8.1} .. {:>8.1}] n={:<2}",
            s.median, s.min, s.max, s.n
        ),
        None => format!("{:>9} {:>22}", "n/a", ""),
    };
    let ratio = match (&ours, &qemu) {
        (Some(a), Some(b)) if a.median > 0.0 => format!("{:>6.2}x", b.median / a.median),
        _ => format!("{:>7}", "-"),
    };
    println!(
        "{label:<34} {unit:<4} {}   {}   {ratio}",
        fmt(&ours),
        fmt(&qemu)
    );
}

/// The restore figures: the ticking guest cold and restored in both VMMs,
/// and an agent workspace restored in ours.
fn restore_rows(o: &Outcome) {
    let marker = |prefix: &str| {
        stats(
            collect(o, prefix)
                .iter()
                .map(|m| m.launch_to_marker_ms)
                .collect(),
        )
    };
    println!();
    row(
        "launch -> first tick, cold boot",
        "ms",
        marker("tick_cold_"),
        marker("qemu_tick_cold_"),
    );
    row(
        "launch -> first tick, restore",
        "ms",
        marker("tick_restore_"),
        marker("qemu_tick_restore_"),
    );
    let speedup = |cold: Option<Stats>, restore: Option<Stats>| match (cold, restore) {
        (Some(c), Some(r)) if r.median > 0.0 => format!("{:.1}x", c.median / r.median),
        _ => "-".into(),
    };
    println!(
        "{:<34} {:<4} {:>36}   {:>36}",
        "cold boot / restore",
        "",
        speedup(marker("tick_cold_"), marker("tick_restore_")),
        speedup(marker("qemu_tick_cold_"), marker("qemu_tick_restore_"))
    );
    let ws = |key: &str| {
        let v = o
            .facts
            .iter()
            .filter(|f| f.scenario == "bench" && f.key.starts_with("ws_restore_"))
            .filter_map(|f| {
                f.value
                    .split(',')
                    .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                    .and_then(|v| v.parse::<f64>().ok())
            })
            .collect();
        stats(v)
    };
    row(
        "restore -> first exec output (workspace)",
        "ms",
        ws("first_output_ms"),
        None,
    );
    row(
        "restore -> renewed (workspace)",
        "ms",
        ws("renewed_ms"),
        None,
    );
    let clone = |key: &str| stats(field_values(o, "tpl_clone_", key));
    let cold: Vec<f64> = field_values(o, "agent_", "ready_ms")
        .iter()
        .zip(field_values(o, "agent_", "first_output_ms"))
        .map(|(r, f)| r + f)
        .collect();
    row(
        "new workspace: launch -> first exec output, cold boot",
        "ms",
        stats(cold.clone()),
        None,
    );
    row(
        "new workspace: launch -> first exec output, template clone",
        "ms",
        clone("first_output_ms"),
        None,
    );
    row(
        "template clone: launch -> provisioned",
        "ms",
        clone("provisioned_ms"),
        None,
    );
    println!(
        "{:<34} {:<4} {:>36}",
        "new workspace: cold / clone",
        "",
        speedup(stats(cold), clone("first_output_ms"))
    );
}

/// Ten workspaces alive at once, cold-booted against cloned from one
/// template snapshot: their VMMs' memory per workspace.
fn memory_rows(o: &Outcome) {
    let per_ws = |prefix: &str, key: &str| {
        let n = field_values(o, prefix, "n").first().copied()?;
        let kib = field_values(o, prefix, key).first().copied()?;
        Some(kib / n / 1024.0)
    };
    let Some(n) = field_values(o, "mem10_cold", "n").first().copied() else {
        return;
    };
    println!();
    println!(
        "{n} agent workspaces (512 MiB each) alive at once, each after one exec; MiB per workspace:"
    );
    println!(
        "{:<34} {:>12} {:>12} {:>12}",
        "", "cold boot", "clone", "cold / clone"
    );
    for (label, key) in [
        ("RSS", "rss_kib"),
        ("PSS (shared pages split)", "pss_kib"),
        ("shared with another process", "shared_kib"),
        ("private", "private_kib"),
    ] {
        let (c, r) = (per_ws("mem10_cold", key), per_ws("mem10_restored", key));
        let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
        let ratio = match (c, r) {
            (Some(c), Some(r)) if r > 0.0 => format!("{:.2}x", c / r),
            _ => "-".into(),
        };
        println!("{label:<34} {:>12} {:>12} {:>12}", f(c), f(r), ratio);
    }
}

/// The values of `key` in the comma-separated facts named `prefix*`.
fn field_values(o: &Outcome, prefix: &str, key: &str) -> Vec<f64> {
    o.facts
        .iter()
        .filter(|f| f.scenario == "bench" && f.key.starts_with(prefix))
        .filter_map(|f| {
            f.value
                .split(',')
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .collect()
}

fn main() -> Result<()> {
    let runs: u32 = std::env::var("PADDOCK_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let a = Artifacts::from_env()?;
    // With a template, the workspace readiness figures come too.
    let mut stage = if a.template.is_some() {
        agent_stage(&a)?
    } else {
        base_stage(&a)?
    };
    add_qemu(&mut stage)?;
    stage.add("bench/runs", runs.to_string().into_bytes(), 0o644);
    let o = run_script("bench.sh", &stage)?;

    let ours_t = collect(&o, "paddock_time_");
    let qemu_t = collect(&o, "qemu_time_");
    let ours_m = collect(&o, "paddock_mem_");
    let qemu_m = collect(&o, "qemu_mem_");
    let failed: Vec<String> = o
        .facts
        .iter()
        .filter(|f| f.scenario == "bench")
        .filter(|f| {
            if f.key.starts_with("agent_")
                || f.key.starts_with("ws_restore_")
                || f.key.starts_with("tpl_clone_")
            {
                !f.value.contains("first_output_ms=")
            } else if f.key.starts_with("mem10_") {
                !f.value.contains("pss_kib=")
            } else if f.key.ends_with("snapshot_taken") {
                !f.value.starts_with("ms=")
            } else if f.key == "qemu_state_written" {
                f.value != "1"
            } else {
                !f.value.contains("exit_code=0")
            }
        })
        .map(|f| format!("{}={}", f.key, f.value))
        .collect();

    println!();
    println!(
        "boot benchmark: {runs} runs each, {:?} KVM path, guest 1 vCPU / 256 MiB,",
        o.path
    );
    println!("same vmlinux (PVH) and initramfs for both; figures are median [min .. max]");
    println!();
    println!(
        "{:<34} {:<4} {:>36}   {:>36}   {:>7}",
        "metric", "unit", "paddock-vmm", "qemu microvm", "qemu/us"
    );
    let f = |v: &[Measurement], g: fn(&Measurement) -> Option<f64>| -> Option<Stats> {
        stats(v.iter().filter_map(g).collect())
    };
    row(
        "launch -> guest init on console",
        "ms",
        f(&ours_t, |m| Some(m.launch_to_marker_ms)),
        f(&qemu_t, |m| Some(m.launch_to_marker_ms)),
    );
    row(
        "launch -> VMM exit (guest reboot)",
        "ms",
        f(&ours_t, |m| Some(m.launch_to_exit_ms)),
        f(&qemu_t, |m| Some(m.launch_to_exit_ms)),
    );
    row(
        "VMM start -> boot-timer write",
        "ms",
        f(&ours_t, |m| m.boot_timer_ms),
        None,
    );
    row(
        "RSS beyond guest RAM",
        "KiB",
        f(&ours_m, |m| m.rss_overhead_kib.map(|x| x as f64)),
        f(&qemu_m, |m| m.rss_overhead_kib.map(|x| x as f64)),
    );
    let agent: Vec<(f64, f64)> = o
        .facts
        .iter()
        .filter(|f| f.scenario == "bench" && f.key.starts_with("agent_"))
        .filter_map(|f| {
            let get = |k: &str| {
                f.value
                    .split(',')
                    .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
                    .and_then(|v| v.parse::<f64>().ok())
            };
            Some((get("ready_ms")?, get("first_output_ms")?))
        })
        .collect();
    if !agent.is_empty() {
        row(
            "launch -> agent ready (workspace)",
            "ms",
            stats(agent.iter().map(|a| a.0).collect()),
            None,
        );
        row(
            "agent ready -> first exec output",
            "ms",
            stats(agent.iter().map(|a| a.1).collect()),
            None,
        );
    }
    restore_rows(&o);
    memory_rows(&o);
    println!();
    if !failed.is_empty() {
        println!("runs that did not exit cleanly:");
        for l in &failed {
            println!("  {l}");
        }
        return Err("some benchmark boots failed".into());
    }
    Ok(())
}
