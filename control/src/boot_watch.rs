//! Watching a workspace's VM from its start until its agent says it is
//! ready: progress (the guest's console growing), stalls, and, when a
//! start is slow or fails, a report of where its time went. The report is
//! in the error the API answers with, because that is often all a CI log
//! or a user keeps of a failure on a box nobody can log into.

use super::layout::{cgroup_dir, data_dir};
use log::warn;
use paddock_agent_client::ReadyListener;
use paddock_proto::ReadyInfo;
use std::path::Path;
use std::time::{Duration, Instant};

/// Kept below the API clients' own patience so they get a 503 with the
/// reason rather than a dropped connection.
const READY_TIMEOUT: Duration = Duration::from_secs(240);
/// How long a booting guest may make no progress (print nothing, and its
/// VMM use no CPU) before it counts as stalled.
pub const BOOT_STALL: Duration = Duration::from_secs(60);
/// How long a start runs before it is reported as slow (and again each
/// time this much more passes).
const SLOW_START: Duration = Duration::from_secs(120);

pub enum Boot {
    Ready(ReadyInfo),
    Stalled,
    Failed(String),
}

/// Waits for the agent's readiness while watching the guest make progress
/// and its VMM stay alive. Progress is the console growing or the VMM's
/// threads using CPU: a quiet kernel prints little while it boots.
pub fn wait_ready(ready: &ReadyListener, id: &str, console: &Path) -> Boot {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut last = (0, 0);
    let mut last_progress = Instant::now();
    loop {
        match ready.wait(Duration::from_secs(2)) {
            Ok(info) => return Boot::Ready(info),
            Err(paddock_agent_client::ClientError::Timeout(_)) => {}
            Err(e) => return Boot::Failed(e.to_string()),
        }
        if let Some(exit) = crate::workspaces::wait_ended(id, Some(Duration::ZERO)) {
            return Boot::Failed(format!("its VMM ended ({exit})"));
        }
        let len = std::fs::metadata(console).map(|m| m.len()).unwrap_or(0);
        let now = (len, cpu_ticks(id));
        if now != last {
            last = now;
            last_progress = Instant::now();
        } else if last_progress.elapsed() >= BOOT_STALL {
            return Boot::Stalled;
        }
        if Instant::now() >= deadline {
            return Boot::Failed(format!(
                "timed out after {} s (its console: {len} bytes; {})",
                READY_TIMEOUT.as_secs(),
                report(id)
            ));
        }
    }
}

/// CPU time the workspace's threads have used, in clock ticks.
fn cpu_ticks(id: &str) -> u64 {
    crate::procfs::cgroup_threads(&cgroup_dir(id))
        .into_iter()
        .filter_map(crate::procfs::stat)
        .map(|s| s.cpu_ticks)
        .sum()
}

/// The last `n` lines of a guest console, on one line.
pub fn console_tail(console: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(console).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// Where a workspace's time goes: its threads (state, where they sleep,
/// CPU used) and what its cgroup was held back by (CPU quota, memory, I/O
/// pressure). Only the workspace's own figures: this goes into the answer
/// its creator gets, and the box's load would tell one tenant about the
/// others (`box_report` is for the log). Read from /proc and the cgroup's
/// files; what cannot be read is left out.
pub fn report(id: &str) -> String {
    let cg = cgroup_dir(id);
    let read = |f: &str| std::fs::read_to_string(cg.join(f)).unwrap_or_default();
    let cpu = pick(
        &read("cpu.stat"),
        &["usage_usec", "nr_throttled", "throttled_usec"],
    );
    let memory = format!(
        "current {} {}",
        read("memory.current").trim(),
        pick(&read("memory.events"), &["high", "max", "oom"])
    );
    let pressure = ["cpu", "memory", "io"]
        .iter()
        .map(|r| format!("{r} {}", some_avg10(&read(&format!("{r}.pressure")))))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "threads: {}; cgroup cpu: {cpu}; memory: {memory}; pressure avg10: {pressure}",
        super::forensics::threads_report(&cg),
    )
}

/// How busy the whole box is, for the log beside a slow or failed start.
pub fn box_report() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cpu = some_avg10(&std::fs::read_to_string("/proc/pressure/cpu").unwrap_or_default());
    format!(
        "box load {}, cpu pressure avg10 {cpu}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// `key value` pairs of a flat-keyed cgroup file, only the keys asked for.
fn pick(text: &str, keys: &[&str]) -> String {
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(k, _)| keys.contains(k))
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `some avg10=` figure of a pressure file.
fn some_avg10(text: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix("some "))
        .and_then(|l| l.split_whitespace().find_map(|f| f.strip_prefix("avg10=")))
        .unwrap_or("?")
        .to_string()
}

/// While a start runs past `SLOW_START`, reports every `SLOW_START` where
/// the starting thread is (kernel stack) and where the workspace's time
/// goes. Seen here: a create that got no answer for 300 s with host-init
/// logging nothing (not even the readiness timeout), so the thread itself
/// was stuck somewhere; this says where next time.
pub struct SlowStart {
    _cancel: std::sync::mpsc::Sender<()>,
}

impl SlowStart {
    pub fn watch(id: &str) -> SlowStart {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        // SAFETY: gettid has no arguments and cannot fail.
        let tid = unsafe { libc::gettid() };
        let id = id.to_string();
        let _ = std::thread::Builder::new()
            .name("slow-start".into())
            .spawn(move || {
                let mut waited = Duration::ZERO;
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    rx.recv_timeout(SLOW_START)
                {
                    waited += SLOW_START;
                    let task = format!("/proc/self/task/{tid}");
                    let read = |f: &str| {
                        std::fs::read_to_string(format!("{task}/{f}"))
                            .unwrap_or_default()
                            .replace('\n', " | ")
                    };
                    warn!(
                        "workspace {id}: starting it has taken {} s; the starting thread {tid} is at {} (stack: {}); {}; {}; its console ends: {}",
                        waited.as_secs(),
                        read("wchan"),
                        read("stack"),
                        report(&id),
                        box_report(),
                        console_tail(&data_dir(&id).join("console.log"), 2)
                    );
                }
            });
        SlowStart { _cancel: tx }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_figures_are_picked_by_key() {
        let stat = "usage_usec 5000\nuser_usec 4000\nnr_throttled 3\nthrottled_usec 900\n";
        assert_eq!(
            pick(stat, &["usage_usec", "nr_throttled", "throttled_usec"]),
            "usage_usec 5000 nr_throttled 3 throttled_usec 900"
        );
        let psi = "some avg10=12.50 avg60=3.00 avg300=1.00 total=99\nfull avg10=1.00 avg60=0.00 avg300=0.00 total=9\n";
        assert_eq!(some_avg10(psi), "12.50");
        assert_eq!(some_avg10(""), "?");
    }

    #[test]
    fn a_report_of_a_workspace_that_is_not_there_still_says_what_it_can() {
        let r = report("ws_not_here");
        assert!(r.starts_with("threads: ;"), "{r}");
        assert!(r.contains("pressure avg10"), "{r}");
        assert!(
            !r.contains("box load"),
            "the box's load is not the tenant's business: {r}"
        );
        assert!(box_report().starts_with("box load "));
    }
}
