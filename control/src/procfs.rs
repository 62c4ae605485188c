//! Other processes as /proc shows them, for diagnostics (who is left at
//! PID 1's shutdown, where a start hangs), the freezer (which threads of
//! a cgroup are the kernel's) and the test image's process scan.

use std::path::Path;

/// PF_KTHREAD in the flags field of /proc/<pid>/stat.
const PF_KTHREAD: u64 = 0x0020_0000;

/// The fields of /proc/<pid>/stat (or /proc/<tid>/stat) we use.
pub struct Stat {
    pub comm: String,
    pub state: String,
    pub flags: u64,
    /// CPU time used, user and system, in clock ticks (USER_HZ).
    pub cpu_ticks: u64,
}

impl Stat {
    pub fn is_kernel_thread(&self) -> bool {
        self.flags & PF_KTHREAD != 0
    }
}

/// Parses /proc/<id>/stat; None if the process is gone. The command name
/// is in parentheses and may itself hold spaces and ')', so the fields are
/// counted from the last ") ".
pub fn stat(id: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{id}/stat")).ok()?;
    parse_stat(&text)
}

fn parse_stat(text: &str) -> Option<Stat> {
    let (head, rest) = text.rsplit_once(") ")?;
    let comm = head.split_once(" (").map_or("?", |(_, c)| c).to_string();
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.to_string();
    // After the state: ppid, pgrp, session, tty_nr, tpgid, then flags;
    // then minflt, cminflt, majflt, cmajflt, utime, stime.
    let flags = fields.nth(5)?.parse().ok()?;
    let mut ticks = || fields.next().and_then(|f| f.parse::<u64>().ok());
    let cpu_ticks = match (ticks(), ticks(), ticks(), ticks(), ticks(), ticks()) {
        (_, _, _, _, Some(u), Some(s)) => u.saturating_add(s),
        _ => 0,
    };
    Some(Stat {
        comm,
        state,
        flags,
        cpu_ticks,
    })
}

/// Every process id in /proc.
pub fn pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The thread ids in a cgroup (its cgroup.threads).
pub fn cgroup_threads(cgroup: &Path) -> Vec<u32> {
    std::fs::read_to_string(cgroup.join("cgroup.threads"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|t| t.parse().ok())
        .collect()
}

/// Every process but PID 1 and kernel threads, as "pid comm (cgroup)", for
/// a report when something holds on at shutdown.
pub fn census() -> String {
    let out: Vec<String> = pids()
        .into_iter()
        .filter(|&pid| pid != 1)
        .filter_map(|pid| {
            let s = stat(pid).filter(|s| !s.is_kernel_thread())?;
            let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
            Some(format!("{pid} {} ({})", s.comm, cgroup.trim()))
        })
        .collect();
    if out.is_empty() {
        "none".into()
    } else {
        out.join(", ")
    }
}

/// How many processes were looked at, and each (pid, command, "argv" or
/// "environ") whose command line or environment contains `needle`. For the
/// test suite's check that no workspace secret sits where other users of
/// the host could read it.
#[cfg(feature = "test-probes")]
pub fn scan_processes(needle: &[u8]) -> (usize, Vec<serde_json::Value>) {
    let pids = pids();
    let mut found = Vec::new();
    for &pid in &pids {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        for part in ["cmdline", "environ"] {
            let bytes = std::fs::read(format!("/proc/{pid}/{part}")).unwrap_or_default();
            if bytes.windows(needle.len()).any(|w| w == needle) {
                found.push(serde_json::json!({
                    "pid": pid,
                    "comm": comm.trim(),
                    "in": if part == "cmdline" { "argv" } else { "environ" },
                }));
            }
        }
    }
    (pids.len(), found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_survive_odd_command_names() {
        let s = parse_stat("42 (a) b (c) S 1 42 42 0 -1 2129984 0 0").expect("parse");
        assert_eq!(s.comm, "a) b (c");
        assert_eq!(s.state, "S");
        assert!(s.is_kernel_thread());
        assert_eq!(s.cpu_ticks, 0, "a short line has no times");
        let s = parse_stat("42 (vcpu0) R 1 42 42 0 -1 64 5 0 0 0 150 30 0 0").expect("parse");
        assert_eq!(s.cpu_ticks, 180);
        let me = stat(std::process::id()).expect("our own stat");
        assert!(!me.is_kernel_thread());
        assert!(pids().contains(&std::process::id()));
    }
}
