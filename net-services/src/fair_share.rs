//! Admission to a box-wide pool (the proxy's connections, the resolver's
//! in-flight queries) that no one workspace can exhaust.
//!
//! Two rules: a workspace never holds more than `per_workspace` at once;
//! and the last `reserve` slots of the pool go only to workspaces holding
//! fewer than `floor`. So a few busy workspaces fill at most the pool less
//! the reserve, and after that every other workspace still gets up to
//! `floor` (as long as fewer than reserve/floor workspaces are at their
//! floor at the same time, a number the constants make larger than the
//! box's workspaces can be).

use std::collections::HashMap;
use std::sync::Mutex;

pub struct FairShare {
    total: usize,
    per_workspace: usize,
    floor: usize,
    reserve: usize,
    held: Mutex<Held>,
}

struct Held {
    sum: usize,
    by_workspace: Option<HashMap<String, usize>>,
}

/// One slot, given back when dropped.
pub struct Permit {
    pool: &'static FairShare,
    workspace: String,
}

impl FairShare {
    /// `floor <= per_workspace`, `reserve < total`.
    pub const fn new(total: usize, per_workspace: usize, floor: usize, reserve: usize) -> Self {
        FairShare {
            total,
            per_workspace,
            floor,
            reserve,
            held: Mutex::new(Held {
                sum: 0,
                by_workspace: None,
            }),
        }
    }

    /// A slot for `workspace`, or None if it has its share (or the pool is
    /// full).
    pub fn acquire(&'static self, workspace: &str) -> Option<Permit> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let sum = held.sum;
        let mine = held.by_workspace.get_or_insert_with(HashMap::new);
        let own = mine.get(workspace).copied().unwrap_or(0);
        let free = self.total.saturating_sub(sum);
        let admitted =
            own < self.per_workspace && free > 0 && (free > self.reserve || own < self.floor);
        if !admitted {
            return None;
        }
        *mine.entry(workspace.to_string()).or_default() += 1;
        held.sum += 1;
        Some(Permit {
            pool: self,
            workspace: workspace.to_string(),
        })
    }

    /// Slots `workspace` holds now.
    pub fn held_by(&self, workspace: &str) -> usize {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.by_workspace
            .as_ref()
            .and_then(|m| m.get(workspace).copied())
            .unwrap_or(0)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut held = self.pool.held.lock().unwrap_or_else(|e| e.into_inner());
        held.sum = held.sum.saturating_sub(1);
        if let Some(m) = held.by_workspace.as_mut() {
            if let Some(n) = m.get_mut(&self.workspace) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&self.workspace);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_greedy_workspace_leaves_room_for_the_others() {
        static POOL: FairShare = FairShare::new(100, 30, 5, 20);
        let a: Vec<_> = std::iter::from_fn(|| POOL.acquire("a")).collect();
        assert_eq!(a.len(), 30, "capped at its share");
        let b: Vec<_> = std::iter::from_fn(|| POOL.acquire("b")).collect();
        let c: Vec<_> = std::iter::from_fn(|| POOL.acquire("c")).collect();
        assert_eq!((b.len(), c.len()), (30, 20), "c stops at the reserve");
        // The pool is down to its reserve: only workspaces under the floor.
        let d: Vec<_> = std::iter::from_fn(|| POOL.acquire("d")).collect();
        assert_eq!(d.len(), 5);
        assert!(POOL.acquire("a").is_none());
        drop(a);
        assert_eq!(POOL.held_by("a"), 0);
        assert!(POOL.acquire("a").is_some());
    }
}
