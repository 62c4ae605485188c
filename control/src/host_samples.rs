//! The host's own figures every 5 s, kept for an hour: what
//! `GET /v1/system/metrics` answers and the console's box page graphs.
//! CPU is the share of every host CPU that was busy since the sample
//! before, from the kernel's `/proc/stat` counters (the same ones
//! `paddock_host_cpu_seconds_total` exposes).

use paddock_api_types::{DiskUse, HostSample};
use std::collections::VecDeque;
use std::sync::Mutex;

/// Samples kept: an hour's, at `samples::EVERY_S`.
const KEPT: usize = 720;

/// The kernel's CPU counters, in clock ticks, summed over every CPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTimes {
    pub busy: u64,
    pub idle: u64,
    pub cpus: u32,
}

/// Reads the aggregate `cpu` line of `/proc/stat`: idle is idle plus
/// iowait (a CPU waiting on a disk runs nothing), busy is the rest of the
/// first eight fields (guest time is already inside user time, so it is
/// not added again).
pub fn parse_stat(text: &str) -> Option<CpuTimes> {
    let mut times = CpuTimes::default();
    let mut found = false;
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        match fields.next() {
            Some("cpu") => {
                let v: Vec<u64> = fields.take(8).map(|f| f.parse().unwrap_or(0)).collect();
                if v.len() < 4 {
                    return None;
                }
                let idle = v[3] + v.get(4).copied().unwrap_or(0);
                times.idle = idle;
                times.busy = v.iter().sum::<u64>() - idle;
                found = true;
            }
            Some(name) if name.starts_with("cpu") => times.cpus += 1,
            _ => {}
        }
    }
    (found && times.cpus > 0).then_some(times)
}

pub fn cpu_times() -> Option<CpuTimes> {
    parse_stat(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// The share of CPU time that was busy between two readings, in percent.
pub fn busy_pct(before: CpuTimes, now: CpuTimes) -> f64 {
    let busy = now.busy.saturating_sub(before.busy) as f64;
    let idle = now.idle.saturating_sub(before.idle) as f64;
    if busy + idle == 0.0 {
        return 0.0;
    }
    (busy / (busy + idle) * 100.0).clamp(0.0, 100.0)
}

/// The 1-minute load average from `/proc/loadavg`.
pub fn load1() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// The data partition's size and use (zeros where it is not mounted, as
/// on a machine running the unit tests).
pub fn data_use() -> DiskUse {
    match nix::sys::statvfs::statvfs(crate::layout::DATA_MOUNT) {
        Ok(s) => {
            let block = s.fragment_size();
            let total = s.blocks() * block;
            DiskUse {
                total_bytes: total,
                used_bytes: total.saturating_sub(s.blocks_free() * block),
                available_bytes: s.blocks_available() * block,
            }
        }
        Err(_) => DiskUse {
            total_bytes: 0,
            used_bytes: 0,
            available_bytes: 0,
        },
    }
}

#[derive(Default)]
struct Series {
    last: Option<CpuTimes>,
    samples: VecDeque<HostSample>,
}

#[derive(Default)]
pub struct HostSampler {
    series: Mutex<Series>,
}

impl HostSampler {
    /// One sample of the host, from the kernel's counters now.
    pub fn take(&self, now_s: u64) {
        let total = super::metrics::meminfo("MemTotal:").unwrap_or(0);
        let available = super::metrics::meminfo("MemAvailable:").unwrap_or(0);
        self.push(now_s, cpu_times(), total, available, load1());
    }

    fn push(&self, t: u64, cpu: Option<CpuTimes>, total: u64, available: u64, load1: f64) {
        let mut s = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let cpu_pct = match (s.last, cpu) {
            (Some(before), Some(now)) => busy_pct(before, now),
            _ => 0.0,
        };
        s.last = cpu;
        s.samples.push_back(HostSample {
            t,
            cpu_pct: (cpu_pct * 10.0).round() / 10.0,
            cpus: cpu.map_or(1, |c| c.cpus.max(1)),
            memory_used_bytes: total.saturating_sub(available),
            memory_total_bytes: total,
            load1,
        });
        if s.samples.len() > KEPT {
            s.samples.pop_front();
        }
    }

    pub fn latest(&self) -> Option<HostSample> {
        let s = self.series.lock().unwrap_or_else(|e| e.into_inner());
        s.samples.back().cloned()
    }

    /// The samples from `since` (Unix seconds) on, oldest first.
    pub fn since(&self, since: u64) -> Vec<HostSample> {
        let s = self.series.lock().unwrap_or_else(|e| e.into_inner());
        s.samples.iter().filter(|x| x.t >= since).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  100 5 50 800 40 3 2 0 7 0\n\
        cpu0 50 2 25 400 20 1 1 0 3 0\n\
        cpu1 50 3 25 400 20 2 1 0 4 0\n\
        intr 12345\nctxt 999\n";

    #[test]
    fn reads_the_aggregate_line_and_counts_cpus() {
        let t = parse_stat(STAT).expect("parsed");
        assert_eq!(t.cpus, 2);
        assert_eq!(t.idle, 840, "idle and iowait");
        assert_eq!(
            t.busy, 160,
            "user nice system irq softirq steal, guest not twice"
        );
    }

    #[test]
    fn refuses_text_without_a_cpu_line() {
        assert_eq!(parse_stat(""), None);
        assert_eq!(parse_stat("cpu 1 2\ncpu0 1 2\n"), None, "too few fields");
        assert_eq!(parse_stat("cpu 1 2 3 4\n"), None, "no per-CPU line");
    }

    #[test]
    fn busy_share_between_readings() {
        let a = CpuTimes {
            busy: 100,
            idle: 300,
            cpus: 2,
        };
        let b = CpuTimes {
            busy: 150,
            idle: 450,
            cpus: 2,
        };
        assert_eq!(busy_pct(a, b), 25.0);
        assert_eq!(busy_pct(a, a), 0.0, "no time passed");
        assert_eq!(busy_pct(b, a), 0.0, "counters that went back read as idle");
    }

    #[test]
    fn keeps_an_hour_and_computes_use() {
        let s = HostSampler::default();
        for i in 0..(KEPT as u64 + 5) {
            let cpu = CpuTimes {
                busy: i * 10,
                idle: i * 30,
                cpus: 4,
            };
            s.push(1000 + i, Some(cpu), 8 << 30, 6 << 30, 0.5);
        }
        let all = s.since(0);
        assert_eq!(all.len(), KEPT);
        assert_eq!(all[0].t, 1005, "the oldest go first");
        assert_eq!(all[0].cpu_pct, 25.0);
        assert_eq!(all[0].memory_used_bytes, 2 << 30);
        assert_eq!(all[0].cpus, 4);
        assert_eq!(s.since(1000 + KEPT as u64).len(), 5);
        assert_eq!(s.latest().map(|l| l.t), Some(1000 + KEPT as u64 + 4));
    }

    #[test]
    fn the_first_sample_and_unreadable_counters_read_as_zero() {
        let s = HostSampler::default();
        s.push(1, None, 0, 0, 0.0);
        let first = s.latest().expect("a sample");
        assert_eq!((first.cpu_pct, first.cpus), (0.0, 1));
    }
}
