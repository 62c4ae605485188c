//! Each running workspace's figures every 5 s, kept for an hour: what
//! `GET /v1/workspaces/{id}/metrics` and E2B's `get_metrics` answer (and
//! what a console's graphs need). CPU is the share of its vCPUs it used
//! since the sample before, from its cgroup's usage counter.

use super::metrics;
use super::workspace::{WorkspaceRecord, WsState};
use paddock_api_types::WorkspaceSample;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Instant;

/// Seconds between samples.
pub const EVERY_S: u64 = 5;
/// Samples kept per workspace: an hour's.
const KEPT: usize = 720;

#[derive(Default)]
struct Series {
    /// The CPU counter when it was last read.
    last_cpu: Option<(Instant, u64)>,
    samples: VecDeque<WorkspaceSample>,
}

#[derive(Default)]
pub struct Sampler {
    series: Mutex<HashMap<String, Series>>,
}

impl Sampler {
    /// One sample of each running workspace; the series of those no longer
    /// running are dropped.
    pub fn take(&self, workspaces: &[WorkspaceRecord], now_s: u64) {
        let mut all = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let running: Vec<&WorkspaceRecord> = workspaces
            .iter()
            .filter(|w| w.state == WsState::Running)
            .collect();
        all.retain(|id, _| running.iter().any(|w| &w.id == id));
        for w in running {
            let series = all.entry(w.id.clone()).or_default();
            let now = Instant::now();
            let cpu = metrics::cpu_usage_us(&w.id);
            let cpu_pct = match (series.last_cpu, cpu) {
                (Some((then, before)), Some(used)) => {
                    let wall_us = now.duration_since(then).as_micros() as f64;
                    let share =
                        used.saturating_sub(before) as f64 / (wall_us * f64::from(w.vcpus.max(1)));
                    (share * 100.0).clamp(0.0, 100.0)
                }
                _ => 0.0,
            };
            series.last_cpu = cpu.map(|c| (now, c));
            let (memory_bytes, memory_limit_bytes) = metrics::memory(&w.id);
            series.samples.push_back(WorkspaceSample {
                t: now_s,
                cpu_pct: (cpu_pct * 10.0).round() / 10.0,
                vcpus: w.vcpus,
                memory_bytes,
                memory_limit_bytes,
                disk_used_bytes: metrics::disk_used(&w.id),
                disk_bytes: w.disk_mib << 20,
                // The tap's counters: what the host received from the
                // guest is what the guest sent.
                net_sent_bytes: metrics::tap_counter(w, "rx_bytes").map_or(0, |v| v as u64),
                net_received_bytes: metrics::tap_counter(w, "tx_bytes").map_or(0, |v| v as u64),
            });
            if series.samples.len() > KEPT {
                series.samples.pop_front();
            }
        }
    }

    /// A workspace's newest sample.
    pub fn latest(&self, id: &str) -> Option<WorkspaceSample> {
        let all = self.series.lock().unwrap_or_else(|e| e.into_inner());
        all.get(id).and_then(|s| s.samples.back().cloned())
    }

    /// A workspace's samples from `since` (Unix seconds) on.
    pub fn series(&self, id: &str, since: u64) -> Vec<WorkspaceSample> {
        let all = self.series.lock().unwrap_or_else(|e| e.into_inner());
        all.get(id)
            .map(|s| s.samples.iter().filter(|x| x.t >= since).cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_running_workspaces_are_sampled_and_an_hour_is_kept() {
        let s = Sampler::default();
        let mut w: WorkspaceRecord = serde_json::from_value(serde_json::json!({
            "id": "ws_s", "owner": "tok_x", "template": "default", "vcpus": 1,
            "memory_mib": 256, "disk_mib": 512, "labels": {}, "env": {},
            "created_at": 0, "expires_at": 10, "state": "running", "uid": 200000,
        }))
        .expect("a record");
        w.state = WsState::Running;
        for i in 0..(KEPT as u64 + 10) {
            s.take(std::slice::from_ref(&w), 1000 + i);
        }
        let all = s.series("ws_s", 0);
        assert_eq!(all.len(), KEPT);
        assert_eq!(all[0].t, 1010, "the oldest go first");
        assert_eq!(s.series("ws_s", 1000 + KEPT as u64).len(), 10);
        // The host has no such cgroup: figures read as zero, not errors.
        assert_eq!(all[0].cpu_pct, 0.0);
        w.state = WsState::Stopped;
        s.take(std::slice::from_ref(&w), 5000);
        assert!(s.series("ws_s", 0).is_empty(), "a stopped one is forgotten");
    }
}
