//! The signals of a looping or misbehaving agent, as the control plane
//! acts on them (control::signals decides when one fires): each firing is
//! an audit event (`signal_fired`) and a metric, and the workspace's rule
//! may ask for more: a stop, or a quarantine.

use super::{store_err, Control};
use crate::signals::Fired;
use crate::store::WORKSPACES;
use crate::workspace::{WorkspaceRecord, WsState};
use crate::{metrics, runner};
use log::warn;
use paddock_api_types::SignalAction;
use serde_json::json;
use std::fmt::Write as _;

impl Control {
    /// One round of the sample loop: every running workspace's refusals,
    /// CPU and disk against its rules.
    pub(super) fn watch_signals(&self, all: &[WorkspaceRecord], now: u64) {
        let running: Vec<&WorkspaceRecord> =
            all.iter().filter(|w| w.state == WsState::Running).collect();
        let ids: Vec<&str> = running.iter().map(|w| w.id.as_str()).collect();
        self.signals.keep_only(&ids);
        crate::netlog::keep_totals_of(&ids);
        if running.is_empty() {
            return;
        }
        // The resolver's and the proxy's refusals, up to now.
        crate::host::get().flush_net_services();
        for ws in running {
            let refused = crate::host::get().refused(&ws.id);
            let denied =
                paddock_net::firewall::refused(&ws.id) + refused.lookups + refused.connections;
            let latest = self.samples.latest(&ws.id);
            let cpu = latest.as_ref().map(|s| s.cpu_pct);
            let disk = latest
                .as_ref()
                .filter(|s| s.disk_bytes > 0)
                .map(|s| s.disk_used_bytes as f64 * 100.0 / s.disk_bytes as f64);
            for f in self.signals.sample(
                &ws.id,
                &ws.signals,
                now,
                crate::signals::Measures {
                    denied_total: denied,
                    outbound_total: crate::netlog::outbound_total(&ws.id),
                    cpu_pct: cpu,
                    disk_pct: disk,
                },
            ) {
                self.fire(f);
            }
        }
    }

    /// Records a signal that fired and does what its rule asks.
    pub(super) fn fire(&self, f: Fired) {
        let action = match f.rule.action {
            SignalAction::Record => "record",
            SignalAction::Stop => "stop",
            SignalAction::Quarantine => "quarantine",
        };
        self.remember_signal(&f, action);
        self.audit.record(
            "signal_fired",
            json!({"workspace": f.workspace, "signal": f.signal, "value": f.value,
                   "threshold": f.rule.threshold, "window_s": f.rule.window_s, "action": action}),
        );
        warn!(
            "workspace {}: signal {} fired ({} against {} in {} s); action: {action}",
            f.workspace, f.signal, f.value, f.rule.threshold, f.rule.window_s
        );
        if f.rule.action == SignalAction::Record {
            return;
        }
        // Off the caller's thread (the sample loop, or an exec's end): a
        // quarantine's snapshot takes minutes, and those must not wait.
        let Some(me) = super::instance() else {
            return;
        };
        let _ = std::thread::Builder::new()
            .name("signal-action".into())
            .spawn(move || {
                let by = format!("signal:{}", f.signal);
                let outcome = match f.rule.action {
                    SignalAction::Record => Ok(()),
                    SignalAction::Stop => me.stop_for_signal(&f.workspace, &by),
                    SignalAction::Quarantine => {
                        match me.store.get::<WorkspaceRecord>(WORKSPACES, &f.workspace) {
                            Ok(Some(ws)) => me
                                .quarantine(&by, ws)
                                .map(|_| ())
                                .map_err(|o| o.reply.body.to_string()),
                            Ok(None) => Err("it is gone".to_string()),
                            Err(e) => Err(e.to_string()),
                        }
                    }
                };
                if let Err(why) = outcome {
                    warn!(
                        "workspace {}: signal {}: {:?} failed: {why}",
                        f.workspace, f.signal, f.rule.action
                    );
                }
            });
    }

    /// Stops a running workspace on a signal's behalf (as an owner's stop
    /// does), unless something else changed its state meanwhile.
    fn stop_for_signal(&self, id: &str, by: &str) -> Result<(), String> {
        let _claim = self
            .mark_busy(id, super::pause_calls::Busy::Ending)
            .map_err(|o| o.reply.body.to_string())?;
        let running = self
            .store
            .get::<WorkspaceRecord>(WORKSPACES, id)
            .map_err(|e| e.to_string())?
            .is_some_and(|w| w.state == WsState::Running);
        if !running {
            return Err("it is not running".into());
        }
        runner::stop(id);
        let changed = self
            .store
            .update(WORKSPACES, id, |ws: &mut WorkspaceRecord| {
                if ws.state != WsState::Running {
                    return Err(format!("it became {:?}", ws.state));
                }
                ws.state = WsState::Stopped;
                Ok(())
            })
            .map_err(|e| store_err(e).reply.body.to_string())?;
        match changed {
            Some(Ok(_)) => {
                self.audit
                    .record("workspace_stopped", json!({"workspace": id, "token": by}));
                Ok(())
            }
            Some(Err(why)) => Err(why),
            None => Err("it is gone".into()),
        }
    }

    /// `paddock_workspace_signals_total` for the workspaces in `visible`.
    pub(super) fn render_signals(&self, visible: &[WorkspaceRecord], out: &mut String) {
        metrics::family(
            out,
            "paddock_workspace_signals_total",
            "counter",
            "signals of a looping or misbehaving agent that fired (denied_burst, repeated_failure, cpu_pinned, disk_full, outbound_rate)",
        );
        for (id, signal, n) in self.signals.counts() {
            if visible.iter().any(|w| w.id == id) {
                let _ = writeln!(
                    out,
                    "paddock_workspace_signals_total{{workspace=\"{id}\",signal=\"{signal}\"}} {n}"
                );
            }
        }
    }
}
