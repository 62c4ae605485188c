//! Per-workspace counts of what the resolver and the proxy refused (the
//! firewall counts its own in the kernel), for /metrics.
//!
//! The resolver and the proxy run in the network services process, which
//! counts here and reports what is new (`take_new`) to PID 1, which adds
//! the reports up in its own `Refusals` (`add`): so a restart of that
//! process loses no count it had reported.

use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Default)]
struct Count {
    total: u64,
    reported: u64,
}

pub struct Refusals(Mutex<BTreeMap<String, Count>>);

impl Default for Refusals {
    fn default() -> Refusals {
        Refusals::new()
    }
}

impl Refusals {
    pub const fn new() -> Refusals {
        Refusals(Mutex::new(BTreeMap::new()))
    }

    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Count>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one; returns the workspace's count so far.
    pub fn count(&self, id: &str) -> u64 {
        self.add(id, 1)
    }

    /// Counts `n`; returns the workspace's count so far.
    pub fn add(&self, id: &str, n: u64) -> u64 {
        let mut m = self.map();
        let c = m.entry(id.to_string()).or_default();
        c.total = c.total.saturating_add(n);
        c.total
    }

    pub fn get(&self, id: &str) -> u64 {
        self.map().get(id).map(|c| c.total).unwrap_or(0)
    }

    /// What was counted since the last call, per workspace (those with
    /// nothing new left out).
    pub fn take_new(&self) -> Vec<(String, u64)> {
        let mut m = self.map();
        m.iter_mut()
            .filter(|(_, c)| c.total > c.reported)
            .map(|(id, c)| {
                let new = c.total - c.reported;
                c.reported = c.total;
                (id.clone(), new)
            })
            .collect()
    }

    pub fn forget(&self, id: &str) {
        self.map().remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_new_is_reported_once() {
        let r = Refusals::new();
        assert_eq!(r.count("ws_a"), 1);
        assert_eq!(r.add("ws_a", 2), 3);
        r.count("ws_b");
        assert_eq!(
            r.take_new(),
            vec![("ws_a".to_string(), 3), ("ws_b".to_string(), 1)]
        );
        assert_eq!(r.take_new(), vec![]);
        r.count("ws_b");
        assert_eq!(r.take_new(), vec![("ws_b".to_string(), 1)]);
        assert_eq!(r.get("ws_b"), 2);
        r.forget("ws_b");
        assert_eq!(r.get("ws_b"), 0);
    }
}
