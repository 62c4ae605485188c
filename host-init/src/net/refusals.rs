//! Per-workspace counts of what the resolver and the proxy refused (the
//! firewall counts its own in the kernel), for /metrics.

use std::collections::BTreeMap;
use std::sync::Mutex;

pub struct Refusals(Mutex<BTreeMap<String, u64>>);

impl Refusals {
    pub const fn new() -> Refusals {
        Refusals(Mutex::new(BTreeMap::new()))
    }

    /// Counts one; returns the workspace's count so far.
    pub fn count(&self, id: &str) -> u64 {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(id.to_string()).or_default();
        *n += 1;
        *n
    }

    pub fn get(&self, id: &str) -> u64 {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .copied()
            .unwrap_or(0)
    }

    pub fn forget(&self, id: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }
}
