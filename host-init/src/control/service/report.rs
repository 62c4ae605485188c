//! A workspace's report, as far as the control plane knows it: its record,
//! the commands it ran (from the audit log), the signals it raised, and
//! its network record added up. The API process adds what it changed on
//! its disk, from its agent (api::report).

use super::Control;
use crate::control::audit::now_s;
use crate::control::netlog;
use crate::control::workspace::WorkspaceRecord;
use paddock_api_types::{
    CommandRun, Destination, FileChanges, FiredSignal, NetworkSummary, WorkspaceReport,
};
use serde_json::Value;
use std::collections::HashMap;

/// Audit events read for one report (its whole trail, normally).
const MAX_EVENTS: usize = 100_000;
/// Commands listed (the newest), and destinations.
const MAX_COMMANDS: usize = 5000;
const MAX_DESTINATIONS: usize = 100;

impl Control {
    pub(super) fn report(&self, ws: &WorkspaceRecord) -> WorkspaceReport {
        let trail = self
            .audit
            .read(&[("workspace".to_string(), ws.id.clone())], MAX_EVENTS);
        let of = |e: &Value, k: &str| e.get(k).and_then(Value::as_u64).unwrap_or(0);
        let mut commands_started = 0;
        let mut commands = Vec::new();
        let mut signals = Vec::new();
        for e in &trail {
            match e["event"].as_str() {
                Some("exec_started") => commands_started += 1,
                Some("exec_ended") => commands.push(CommandRun {
                    at: of(e, "ts"),
                    argv0: e["argv0"].as_str().unwrap_or("").to_string(),
                    exit_code: e["exit_code"].as_i64().and_then(|c| i32::try_from(c).ok()),
                    signal: e["signal"].as_i64().and_then(|c| i32::try_from(c).ok()),
                    duration_ms: of(e, "duration_ms"),
                }),
                Some("signal_fired") => signals.push(FiredSignal {
                    at: of(e, "ts"),
                    signal: e["signal"].as_str().unwrap_or("").to_string(),
                    value: of(e, "value"),
                    action: e["action"].as_str().unwrap_or("").to_string(),
                }),
                _ => {}
            }
        }
        let skip = commands.len().saturating_sub(MAX_COMMANDS);
        let commands = commands.split_off(skip);
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
        match (r.kind.as_str(), denied) {
            ("dns", false) => s.lookups_allowed += r.count,
            ("dns", true) => s.lookups_denied += r.count,
            (_, false) => s.connections_allowed += r.count,
            (_, true) => s.connections_denied += r.count,
        }
        s.bytes_up += r.bytes_up;
        s.bytes_down += r.bytes_down;
        s.mismatched += r.mismatched;
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
        d.count += r.count;
        d.bytes_up += r.bytes_up;
        d.bytes_down += r.bytes_down;
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
