//! A workspace's report, as far as the control plane knows it: its record,
//! the commands it ran, the signals it raised, and its network record added
//! up. The API process adds what it changed on its disk, from its agent
//! (paddock_api_server::report).
//!
//! Commands and signals are kept here as they happen, bounded per
//! workspace, rather than searched for in the audit log: a report is a
//! read-scope call, and a scan of the whole log (under its lock) on each
//! one would let any tenant stall everyone's audited calls.

use super::Control;
use crate::audit::now_s;
use crate::netlog;
use crate::signals::Fired;
use crate::workspace::WorkspaceRecord;
use paddock_api_types::{
    CommandRun, Destination, FileChanges, FiredSignal, NetworkSummary, WorkspaceReport,
};
use std::collections::{HashMap, VecDeque};

/// Command ends kept per workspace (the newest), signals, destinations.
const MAX_COMMANDS: usize = 5000;
const MAX_SIGNALS: usize = 200;
const MAX_DESTINATIONS: usize = 100;

#[derive(Default)]
pub(super) struct History {
    commands: VecDeque<CommandRun>,
    signals: VecDeque<FiredSignal>,
}

impl Control {
    fn with_history(&self, id: &str, f: impl FnOnce(&mut History)) {
        let mut all = self.history.lock().unwrap_or_else(|p| p.into_inner());
        f(all.entry(id.to_string()).or_default());
    }

    /// A command of workspace `id` ended.
    pub(super) fn remember_command(
        &self,
        id: &str,
        argv0: &str,
        exit_code: Option<i32>,
        signal: Option<i32>,
        duration_ms: u64,
    ) {
        let run = CommandRun {
            at: now_s(),
            argv0: argv0.chars().take(256).collect(),
            exit_code,
            signal,
            duration_ms,
        };
        self.with_history(id, |h| {
            h.commands.push_back(run);
            if h.commands.len() > MAX_COMMANDS {
                h.commands.pop_front();
            }
        });
    }

    /// A signal of workspace `f.workspace` fired.
    pub(super) fn remember_signal(&self, f: &Fired, action: &str) {
        let fired = FiredSignal {
            at: now_s(),
            signal: f.signal.to_string(),
            value: f.value,
            action: action.to_string(),
        };
        self.with_history(&f.workspace, |h| {
            h.signals.push_back(fired);
            if h.signals.len() > MAX_SIGNALS {
                h.signals.pop_front();
            }
        });
    }

    /// Drops the histories of workspaces no longer recorded.
    pub(super) fn forget_history(&self, all: &[WorkspaceRecord]) {
        let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        h.retain(|id, _| all.iter().any(|w| &w.id == id));
    }

    pub(super) fn report(&self, ws: &WorkspaceRecord) -> WorkspaceReport {
        let (commands, signals) = {
            let all = self.history.lock().unwrap_or_else(|p| p.into_inner());
            all.get(&ws.id)
                .map(|h| {
                    (
                        h.commands.iter().cloned().collect(),
                        h.signals.iter().cloned().collect(),
                    )
                })
                .unwrap_or_default()
        };
        let commands_started = self
            .execs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&ws.id)
            .copied()
            .unwrap_or(0);
        WorkspaceReport {
            workspace: ws.public(),
            generated_at: now_s(),
            commands_started,
            commands,
            signals,
            network: network_summary(&ws.id),
            files: FileChanges::default(),
        }
    }
}

/// The workspace's network record added up, per destination.
fn network_summary(id: &str) -> NetworkSummary {
    let mut s = NetworkSummary::default();
    let mut by: HashMap<(String, String, String), Destination> = HashMap::new();
    for r in netlog::read(id, 0, None, usize::MAX) {
        let denied = r.decision == "denied";
        let field = match (r.kind.as_str(), denied) {
            ("dns", false) => &mut s.lookups_allowed,
            ("dns", true) => &mut s.lookups_denied,
            (_, false) => &mut s.connections_allowed,
            (_, true) => &mut s.connections_denied,
        };
        *field = field.saturating_add(r.count);
        s.bytes_up = s.bytes_up.saturating_add(r.bytes_up);
        s.bytes_down = s.bytes_down.saturating_add(r.bytes_down);
        s.mismatched = s.mismatched.saturating_add(r.mismatched);
        let d = by
            .entry((r.name.clone(), r.kind.clone(), r.decision.clone()))
            .or_insert_with(|| Destination {
                name: r.name.clone(),
                kind: r.kind.clone(),
                decision: r.decision.clone(),
                count: 0,
                bytes_up: 0,
                bytes_down: 0,
            });
        d.count = d.count.saturating_add(r.count);
        d.bytes_up = d.bytes_up.saturating_add(r.bytes_up);
        d.bytes_down = d.bytes_down.saturating_add(r.bytes_down);
    }
    let mut destinations: Vec<Destination> = by.into_values().collect();
    destinations.sort_by(|a, b| {
        (b.count, b.bytes_down)
            .cmp(&(a.count, a.bytes_down))
            .then_with(|| a.name.cmp(&b.name))
    });
    destinations.truncate(MAX_DESTINATIONS);
    s.destinations = destinations;
    s
}
