//! A running workspace's policy changed by an admin: its disk and network
//! rate limits, and its egress allowlist (also changed by approvals).

use super::{error, reply, store_err, Control, Outcome};
use crate::runner;
use crate::store::WORKSPACES;
use crate::tokens::TokenRecord;
use crate::workspace::SpecProblems as _;
use crate::workspace::{WorkspaceRecord, WsState};
use paddock_api_channel::Verdict;
use paddock_net::policy::CheckEgress as _;
use serde_json::{json, Value};

impl Control {
    /// New rate limits on a running workspace's disk, applied by its VMM
    /// before the guest's next request and kept in its record.
    pub(super) fn set_limits(
        &self,
        tok: &TokenRecord,
        mut ws: WorkspaceRecord,
        request: Value,
    ) -> Result<Outcome, Outcome> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct LimitsRequest {
            disk_mib_per_s: Option<u64>,
            disk_iops: Option<u64>,
            net_mib_per_s: Option<u64>,
            net_connections_per_s: Option<u64>,
        }
        let req: LimitsRequest = serde_json::from_value(request)
            .map_err(|e| error(Verdict::Invalid, format!("limits request: {e}")))?;
        let disk = req.disk_mib_per_s.is_some() || req.disk_iops.is_some();
        let net = req.net_mib_per_s.is_some() || req.net_connections_per_s.is_some();
        if !disk && !net {
            return Err(error(
                Verdict::Invalid,
                "give one or more of disk_mib_per_s, disk_iops, net_mib_per_s, net_connections_per_s",
            ));
        }
        // The same bounds as at create.
        let mut check = crate::workspace::spec_for_limits(ws.vcpus);
        check.disk_mib_per_s = req.disk_mib_per_s;
        check.disk_iops = req.disk_iops;
        check.net_mib_per_s = req.net_mib_per_s;
        check.net_connections_per_s = req.net_connections_per_s;
        let problems: Vec<String> = check
            .problems()
            .into_iter()
            .filter(|p| p.starts_with("disk_") || p.starts_with("net_"))
            .collect();
        if !problems.is_empty() {
            return Err(error(Verdict::Invalid, problems.join("; ")));
        }
        if ws.state != WsState::Running {
            return Err(error(
                Verdict::Conflict,
                format!("workspace {} is {:?}, not running", ws.id, ws.state),
            ));
        }
        if req.disk_mib_per_s.is_some() {
            ws.disk_mib_per_s = req.disk_mib_per_s;
        }
        if req.disk_iops.is_some() {
            ws.disk_iops = req.disk_iops;
        }
        if req.net_mib_per_s.is_some() {
            ws.net_mib_per_s = req.net_mib_per_s;
        }
        if req.net_connections_per_s.is_some() {
            ws.net_connections_per_s = req.net_connections_per_s;
        }
        let limits = crate::limits::Limits::for_workspace(&ws);
        if disk {
            runner::set_rate(&ws.id, "data", limits.disk_bps, Some(limits.disk_iops))
                .map_err(|e| error(Verdict::Unavailable, e.to_string()))?;
        }
        if req.net_mib_per_s.is_some() {
            runner::set_rate(&ws.id, "net", limits.net_bps, None)
                .map_err(|e| error(Verdict::Unavailable, e.to_string()))?;
        }
        if req.net_connections_per_s.is_some() {
            if let Some(slot) = ws.slot() {
                let entry = runner::ws_net(&ws, slot)
                    .map_err(|e| error(Verdict::Unavailable, e.to_string()))?;
                paddock_net::firewall::set(entry)
                    .map_err(|e| error(Verdict::Unavailable, e.to_string()))?;
            }
        }
        self.store.put(WORKSPACES, &ws.id, &ws).map_err(store_err)?;
        self.audit.record(
            "workspace_limits_changed",
            json!({"workspace": ws.id, "token": tok.id, "disk_bytes_per_s": limits.disk_bps, "disk_ops_per_s": limits.disk_iops, "net_bytes_per_s": limits.net_bps, "net_connections_per_s": limits.net_connections_per_s}),
        );
        Ok(reply(Verdict::Ok, ws.public()))
    }

    /// Replaces a workspace's egress allowlist; a running workspace's
    /// firewall, resolver and proxy use the new one when this returns.
    pub(super) fn set_egress(
        &self,
        tok: &TokenRecord,
        mut ws: WorkspaceRecord,
        request: Value,
    ) -> Result<Outcome, Outcome> {
        let req: paddock_net::policy::EgressRequest = serde_json::from_value(request)
            .map_err(|e| error(Verdict::Invalid, format!("egress request: {e}")))?;
        req.check()
            .map_err(|p| error(Verdict::Invalid, p.join("; ")))?;
        let (changed, before) = self.change_egress(&ws.id, |e| {
            *e = req;
            Ok(())
        })?;
        ws = changed;
        self.audit.record(
            "workspace_egress_changed",
            json!({"workspace": ws.id, "token": tok.id, "before": before, "after": ws.egress}),
        );
        Ok(reply(Verdict::Ok, ws.public()))
    }

    /// Changes a workspace's allowlist in one transaction (a running or
    /// stopped workspace only; `change` may refuse, with the verdict), then
    /// puts it in force if it runs; if that fails the change is undone.
    /// The record as changed, and the allowlist before.
    pub(super) fn change_egress(
        &self,
        id: &str,
        change: impl FnOnce(&mut paddock_net::policy::EgressRequest) -> Result<(), (Verdict, String)>,
    ) -> Result<(WorkspaceRecord, paddock_net::policy::EgressRequest), Outcome> {
        let mut before = None;
        let changed = self
            .store
            .update(WORKSPACES, id, |w: &mut WorkspaceRecord| {
                if !matches!(w.state, WsState::Running | WsState::Stopped) {
                    return Err((
                        Verdict::Conflict,
                        format!("workspace {} is {:?}", w.id, w.state),
                    ));
                }
                before = Some(w.egress.clone());
                change(&mut w.egress)?;
                w.egress
                    .check()
                    .map(|_| ())
                    .map_err(|p| (Verdict::Invalid, p.join("; ")))
            })
            .map_err(store_err)?;
        let ws = match changed {
            None => return Err(error(Verdict::NotFound, format!("no workspace {id}"))),
            Some(Err((verdict, why))) => return Err(error(verdict, why)),
            Some(Ok(ws)) => ws,
        };
        let before = before.unwrap_or_default();
        if ws.state == WsState::Running {
            if let Some(slot) = ws.slot() {
                let enforced = runner::ws_net(&ws, slot)
                    .map_err(|e| e.to_string())
                    .and_then(|entry| paddock_net::firewall::set(entry).map_err(|e| e.to_string()));
                if let Err(e) = enforced {
                    let undo = before.clone();
                    let _ = self
                        .store
                        .update(WORKSPACES, id, |w: &mut WorkspaceRecord| {
                            w.egress = undo;
                            Ok::<(), ()>(())
                        });
                    return Err(error(Verdict::Unavailable, e));
                }
            }
        }
        Ok((ws, before))
    }
}
