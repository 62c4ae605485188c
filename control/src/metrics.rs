//! /metrics in Prometheus's text format: per workspace CPU time, memory and
//! disk use (from its cgroup and its disk file) and exec count; host totals.

use super::layout;
use super::workspace::{WorkspaceRecord, WsState};
use std::collections::HashMap;
use std::fmt::Write;
use std::os::unix::fs::MetadataExt;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Pauses and resumes since boot: how many, and their milliseconds.
static PAUSES: (AtomicU64, AtomicU64) = (AtomicU64::new(0), AtomicU64::new(0));
static RESUMES: (AtomicU64, AtomicU64) = (AtomicU64::new(0), AtomicU64::new(0));

pub fn count_pause(ms: u64) {
    PAUSES.0.fetch_add(1, Relaxed);
    PAUSES.1.fetch_add(ms, Relaxed);
}

pub fn count_resume(ms: u64) {
    RESUMES.0.fetch_add(1, Relaxed);
    RESUMES.1.fetch_add(ms, Relaxed);
}

/// Workspace starts since boot, [cloned from a template snapshot, booted]:
/// how many, and their milliseconds.
static STARTS: [(AtomicU64, AtomicU64); 2] = [
    (AtomicU64::new(0), AtomicU64::new(0)),
    (AtomicU64::new(0), AtomicU64::new(0)),
];

pub fn count_start(cloned: bool, ms: u64) {
    let s = &STARTS[usize::from(!cloned)];
    s.0.fetch_add(1, Relaxed);
    s.1.fetch_add(ms, Relaxed);
}

fn read_u64(path: &std::path::Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Microseconds of CPU the workspace's cgroup used so far.
pub fn cpu_usage_us(id: &str) -> Option<u64> {
    cpu_stat(id, "usage_usec")
}

/// The workspace's CPU cap as the cgroup holds it (`cpu.max`: quota and
/// period in microseconds), in CPUs; None while uncapped ("max") or
/// unreadable. Read back from the cgroup, not from the record, so a cap
/// that was never written shows as missing.
pub fn cpu_limit_cpus(id: &str) -> Option<f64> {
    let text = std::fs::read_to_string(layout::cgroup_dir(id).join("cpu.max")).ok()?;
    parse_cpu_max(&text)
}

fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut fields = text.split_whitespace();
    let quota: u64 = fields.next()?.parse().ok()?;
    let period: u64 = fields.next()?.parse().ok()?;
    (period > 0).then(|| quota as f64 / period as f64)
}

/// One counter of the workspace's cgroup `cpu.stat`.
fn cpu_stat(id: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(layout::cgroup_dir(id).join("cpu.stat")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// A counter of the workspace's tap (seen from the host: its rx is what
/// the guest sent).
pub(crate) fn tap_counter(w: &WorkspaceRecord, which: &str) -> Option<f64> {
    let slot = w.slot()?;
    read_u64(std::path::Path::new(&format!(
        "/sys/class/net/{}/statistics/{which}",
        slot.tap()
    )))
    .map(|v| v as f64)
}

/// Its memory charged and its limit, in bytes (0 where unreadable).
pub fn memory(id: &str) -> (u64, u64) {
    let dir = layout::cgroup_dir(id);
    (
        read_u64(&dir.join("memory.current")).unwrap_or(0),
        read_u64(&dir.join("memory.max")).unwrap_or(0),
    )
}

/// Bytes its disk file holds on the data partition.
pub fn disk_used(id: &str) -> u64 {
    std::fs::metadata(layout::data_dir(id).join("disk.img"))
        .map(|m| m.blocks() * 512)
        .unwrap_or(0)
}

pub(crate) fn meminfo(key: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())?;
    Some(kb * 1024)
}

pub fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

pub fn render(workspaces: &[WorkspaceRecord], execs: &HashMap<String, u64>) -> String {
    let mut out = String::new();
    let running: Vec<&WorkspaceRecord> = workspaces
        .iter()
        .filter(|w| w.state == WsState::Running)
        .collect();
    type Sample = fn(&WorkspaceRecord, &HashMap<String, u64>) -> Option<f64>;
    let per_ws: [(&str, &str, &str, Sample); 14] = [
        (
            "paddock_workspace_cpu_seconds_total",
            "counter",
            "CPU time used by the workspace's VMM and guest",
            |w, _| cpu_usage_us(&w.id).map(|us| us as f64 / 1e6),
        ),
        (
            "paddock_workspace_cpu_throttled_seconds_total",
            "counter",
            "time the workspace was held back by its CPU cap (cpu.max)",
            |w, _| cpu_stat(&w.id, "throttled_usec").map(|us| us as f64 / 1e6),
        ),
        (
            "paddock_workspace_cpu_limit_cpus",
            "gauge",
            "the workspace's CPU cap as its cgroup holds it (cpu.max), in CPUs",
            |w, _| cpu_limit_cpus(&w.id),
        ),
        (
            "paddock_workspace_memory_bytes",
            "gauge",
            "memory charged to the workspace's cgroup",
            |w, _| read_u64(&layout::cgroup_dir(&w.id).join("memory.current")).map(|b| b as f64),
        ),
        (
            "paddock_workspace_memory_limit_bytes",
            "gauge",
            "the workspace's memory.max",
            |w, _| read_u64(&layout::cgroup_dir(&w.id).join("memory.max")).map(|b| b as f64),
        ),
        (
            "paddock_workspace_disk_used_bytes",
            "gauge",
            "bytes allocated to the workspace's disk file",
            |w, _| {
                std::fs::metadata(layout::data_dir(&w.id).join("disk.img"))
                    .ok()
                    .map(|m| (m.blocks() * 512) as f64)
            },
        ),
        (
            "paddock_workspace_console_bytes",
            "gauge",
            "bytes its serial console holds on the data partition (both files, capped)",
            |w, _| {
                let log = layout::data_dir(&w.id).join("console.log");
                let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
                Some((size(&log) + size(&super::console::rotated(&log))) as f64)
            },
        ),
        (
            "paddock_workspace_disk_size_bytes",
            "gauge",
            "the workspace's disk size",
            |w, _| Some((w.disk_mib << 20) as f64),
        ),
        (
            "paddock_workspace_execs_total",
            "counter",
            "commands started in the workspace since the host booted",
            |w, e| Some(e.get(&w.id).copied().unwrap_or(0) as f64),
        ),
        (
            "paddock_workspace_net_sent_bytes_total",
            "counter",
            "bytes the workspace's guest sent on its NIC",
            |w, _| tap_counter(w, "rx_bytes"),
        ),
        (
            "paddock_workspace_net_received_bytes_total",
            "counter",
            "bytes delivered to the workspace's NIC",
            |w, _| tap_counter(w, "tx_bytes"),
        ),
        (
            "paddock_workspace_denied_packets_total",
            "counter",
            "packets from the workspace its firewall refused (no rule opens them, a forbidden address, or over its new-connection rate)",
            |w, _| Some(paddock_net::firewall::refused(&w.id) as f64),
        ),
        (
            "paddock_workspace_denied_lookups_total",
            "counter",
            "DNS lookups of names not on the workspace's allowlist (answered NXDOMAIN, never forwarded)",
            |w, _| Some(crate::host::get().refused(&w.id).lookups as f64),
        ),
        (
            "paddock_workspace_denied_connections_total",
            "counter",
            "connections the egress proxy refused (name or port not on the allowlist, ECH, no name)",
            |w, _| Some(crate::host::get().refused(&w.id).connections as f64),
        ),
    ];
    for (name, kind, help, sample) in per_ws {
        family(&mut out, name, kind, help);
        for w in &running {
            if let Some(v) = sample(w, execs) {
                let _ = writeln!(out, "{name}{{workspace=\"{}\"}} {v}", w.id);
            }
        }
    }
    family(
        &mut out,
        "paddock_workspaces",
        "gauge",
        "workspaces by state",
    );
    for state in [
        "starting",
        "running",
        "stopped",
        "lost",
        "quarantined",
        "paused",
    ] {
        let n = workspaces
            .iter()
            .filter(|w| {
                serde_json::to_value(w.state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .as_deref()
                    == Some(state)
            })
            .count();
        let _ = writeln!(out, "paddock_workspaces{{state=\"{state}\"}} {n}");
    }
    family(
        &mut out,
        "paddock_host_memory_total_bytes",
        "gauge",
        "host RAM",
    );
    let _ = writeln!(
        out,
        "paddock_host_memory_total_bytes {}",
        meminfo("MemTotal:").unwrap_or(0)
    );
    family(
        &mut out,
        "paddock_host_memory_available_bytes",
        "gauge",
        "host RAM available",
    );
    let _ = writeln!(
        out,
        "paddock_host_memory_available_bytes {}",
        meminfo("MemAvailable:").unwrap_or(0)
    );
    let data = crate::host_samples::data_use();
    family(
        &mut out,
        "paddock_host_data_free_bytes",
        "gauge",
        "free space on the data partition",
    );
    let _ = writeln!(out, "paddock_host_data_free_bytes {}", data.available_bytes);
    family(
        &mut out,
        "paddock_host_data_size_bytes",
        "gauge",
        "size of the data partition",
    );
    let _ = writeln!(out, "paddock_host_data_size_bytes {}", data.total_bytes);
    if let Some(cpu) = crate::host_samples::cpu_times() {
        // USER_HZ, which /proc/stat counts in, is 100 on every Linux ABI
        // the appliance runs on.
        family(
            &mut out,
            "paddock_host_cpu_seconds_total",
            "counter",
            "CPU time of every host CPU together, busy or idle (idle counts iowait)",
        );
        for (mode, ticks) in [("busy", cpu.busy), ("idle", cpu.idle)] {
            let _ = writeln!(
                out,
                "paddock_host_cpu_seconds_total{{mode=\"{mode}\"}} {:.2}",
                ticks as f64 / 100.0
            );
        }
        family(&mut out, "paddock_host_cpus", "gauge", "host CPUs online");
        let _ = writeln!(out, "paddock_host_cpus {}", cpu.cpus);
    }
    family(
        &mut out,
        "paddock_net_services_restarts_total",
        "counter",
        "times the network services process (resolver, egress proxy) was started again after it ended",
    );
    let _ = writeln!(
        out,
        "paddock_net_services_restarts_total {}",
        crate::host::get().net_services_restarts()
    );
    for (name, help, n) in [
        (
            "paddock_workspace_pauses_total",
            "workspaces paused (their VM written to the data partition)",
            PAUSES.0.load(Relaxed),
        ),
        (
            "paddock_workspace_pause_seconds_total",
            "time the pauses took",
            PAUSES.1.load(Relaxed) / 1000,
        ),
        (
            "paddock_workspace_resumes_total",
            "paused workspaces started again",
            RESUMES.0.load(Relaxed),
        ),
        (
            "paddock_workspace_resume_seconds_total",
            "time the resumes took, to the agent's answer",
            RESUMES.1.load(Relaxed) / 1000,
        ),
    ] {
        family(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {n}");
    }
    family(
        &mut out,
        "paddock_workspace_starts_total",
        "counter",
        "workspaces started, by how: restored from a template snapshot, or booted",
    );
    for (from, s) in ["snapshot", "boot"].iter().zip(&STARTS) {
        let _ = writeln!(
            out,
            "paddock_workspace_starts_total{{from=\"{from}\"}} {}",
            s.0.load(Relaxed)
        );
    }
    family(
        &mut out,
        "paddock_workspace_start_seconds_total",
        "counter",
        "time the starts took, to the agent's answer",
    );
    for (from, s) in ["snapshot", "boot"].iter().zip(&STARTS) {
        let _ = writeln!(
            out,
            "paddock_workspace_start_seconds_total{{from=\"{from}\"}} {:.3}",
            s.1.load(Relaxed) as f64 / 1000.0
        );
    }
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "0".into());
    family(
        &mut out,
        "paddock_host_load1",
        "gauge",
        "host load average over 1 minute",
    );
    let _ = writeln!(out, "paddock_host_load1 {load}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_families_and_labels() {
        let ws = WorkspaceRecord {
            owner: "tok_x".into(),
            created_at: 0,
            expires_at: 10,
            ..WorkspaceRecord::internal("ws_abc", 200_000, 1, 256, 512)
        };
        let mut execs = HashMap::new();
        execs.insert("ws_abc".to_string(), 3);
        let text = render(&[ws], &execs);
        assert!(
            text.contains("paddock_workspace_execs_total{workspace=\"ws_abc\"} 3"),
            "{text}"
        );
        assert!(text.contains("paddock_workspace_disk_size_bytes{workspace=\"ws_abc\"} 536870912"));
        assert!(text.contains("paddock_workspaces{state=\"running\"} 1"));
        assert!(text.contains("# TYPE paddock_host_memory_total_bytes gauge"));
    }

    #[test]
    fn reads_a_cpu_cap_and_no_cap() {
        assert_eq!(parse_cpu_max("100000 100000\n"), Some(1.0));
        assert_eq!(parse_cpu_max("50000 100000"), Some(0.5));
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(parse_cpu_max("100000 0"), None);
        assert_eq!(parse_cpu_max(""), None);
        assert_eq!(parse_cpu_max("garbage"), None);
    }
}
