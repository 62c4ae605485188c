//! E2B's control-plane API, served on the API port beside `/v1` so that
//! agent code written for E2B's SDK runs against a Paddock box (issue 16).
//! Each call is translated to the native `Call` it stands for and its
//! answer to E2B's shapes: the same token (sent as `X-API-Key`), scopes,
//! quotas, audit and egress policy as the native API, nothing weaker.
//!
//! What does not map is refused with a reason rather than faked: a resume
//! that reboots instead of restoring memory, pausing at the timeout
//! (`autoPause`), egress CIDRs without ports (Paddock's rules name them).
//! Pause and resume themselves are `e2b_pause.rs`.

use crate::bridge::Exchange;
use crate::handling::{query, read_json};
use crate::http::{self, status_of};
use crate::shared::{call, Shared};
use paddock_api_channel::{Call, Verdict};
use paddock_api_types::{Egress, Workspace, WorkspaceState};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The envd protocol version Paddock's answers stand for. The SDK turns
/// features on by it, so it is kept below what would turn on paths not
/// served: at 0.5.7 the SDK would send gzip-encoded uploads. 0.5.2 turns
/// on CloseStdin; everything up to it is served.
pub const ENVD_VERSION: &str = "0.5.2";
/// What E2B calls the default template.
const E2B_DEFAULT_TEMPLATE: &str = "base";
/// A sandbox's life when the request names none (E2B's default).
const DEFAULT_TIMEOUT_S: u64 = 300;
/// Most sandboxes in one page of a list.
const MAX_PAGE: usize = 100;

/// Whether a path is E2B's (its control plane, or envd's health): answers
/// to it, refusals before a handler included, take E2B's error shape.
pub fn is_e2b_path(path: &str) -> bool {
    path == "/health"
        || path == "/files"
        || path.starts_with("/process.Process/")
        || path.starts_with("/filesystem.Filesystem/")
        || path == "/sandboxes"
        || path == "/v2/sandboxes"
        || path.starts_with("/sandboxes/")
        || path.starts_with("/v2/sandboxes/")
}

/// An answer in E2B's error shape, `{"code", "message"}`.
pub fn error(status: u16, message: impl Into<String>) -> (u16, Value) {
    (status, json!({"code": status, "message": message.into()}))
}

/// A native answer as E2B's: errors reshaped, the rest as given.
fn reshape(status: u16, body: Value) -> Result<Value, (u16, Value)> {
    if (200..300).contains(&status) {
        return Ok(body);
    }
    let message = body
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or("the request failed")
        .to_string();
    Err(error(status, message))
}

/// A native refusal (`{"error"}`) in E2B's shape.
pub(crate) fn reshaped((status, body): (u16, Value)) -> (u16, Value) {
    match reshape(status, body) {
        Err(e) => e,
        Ok(_) => error(status, "the request failed"),
    }
}

pub(crate) fn ask(shared: &Shared, bearer: &str, c: Call) -> Result<Value, (u16, Value)> {
    let (reply, _) = call(shared, bearer, c);
    if reply.verdict == Verdict::Accepted {
        // E2B's SDKs take any 2xx for done; an ask that waits for a person
        // is not done, so it is refused here with its approval's id.
        let id = reply.body.get("id").and_then(Value::as_str).unwrap_or("?");
        return Err(error(
            403,
            format!("this key may only ask for that: approval {id} waits for an admin"),
        ));
    }
    let unseen = reply.body.get("error").and_then(Value::as_str)
        == Some(paddock_api_channel::NO_SUCH_WORKSPACE);
    if unseen {
        // E2B's SDK reads 404 as "no such sandbox" (a kill of one answers
        // False); the control plane's refusal says the same without
        // telling a sandbox this key may not see from one that is gone.
        return Err(error(404, "no such sandbox for this key"));
    }
    reshape(status_of(reply.verdict), reply.body)
}

fn template_to_e2b(ours: &str) -> &str {
    if ours == "default" {
        E2B_DEFAULT_TEMPLATE
    } else {
        ours
    }
}

fn template_from_e2b(theirs: &str) -> &str {
    if theirs == E2B_DEFAULT_TEMPLATE {
        "default"
    } else {
        theirs
    }
}

/// RFC 3339 in UTC for unix seconds (civil-from-days, proleptic Gregorian).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// A workspace as E2B's `SandboxDetail` (and `ListedSandbox`, a subset).
fn detail(ws: &Workspace) -> Value {
    json!({
        "templateID": template_to_e2b(&ws.template),
        "sandboxID": crate::routes::e2b_id(&ws.id),
        "clientID": "paddock",
        "startedAt": rfc3339(ws.created_at),
        "endAt": rfc3339(ws.expires_at),
        "envdVersion": ENVD_VERSION,
        "cpuCount": ws.vcpus,
        "memoryMB": ws.memory_mib,
        "diskSizeMB": ws.disk_mib,
        "metadata": ws.labels,
        "state": if ws.state == WorkspaceState::Paused { "paused" } else { "running" },
        "network": {"allowOut": allow_out(&ws.egress)},
    })
}

/// The allowlist as E2B's `allowOut`.
fn allow_out(e: &Egress) -> Vec<String> {
    e.domains.iter().chain(&e.cidrs).cloned().collect()
}

/// A workspace E2B can see: a sandbox is running or paused; a stopped,
/// lost or quarantined workspace is not one.
fn visible(ws: &Workspace) -> bool {
    matches!(
        ws.state,
        WorkspaceState::Running | WorkspaceState::Starting | WorkspaceState::Paused
    )
}

fn workspace(shared: &Shared, bearer: &str, id: &str) -> Result<Workspace, (u16, Value)> {
    let v = ask(shared, bearer, Call::GetWorkspace { id: id.to_string() })?;
    let ws: Workspace =
        serde_json::from_value(v).map_err(|e| error(503, format!("host-init's answer: {e}")))?;
    if visible(&ws) {
        Ok(ws)
    } else {
        Err(error(404, format!("sandbox {id} is {:?}", ws.state)))
    }
}

/// E2B's network options, as Paddock's egress allowlist.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Network {
    #[serde(default)]
    allow_out: Vec<String>,
    /// Redundant here: everything not allowed is denied, and E2B's allow
    /// entries take precedence over its deny entries anyway.
    #[serde(default)]
    deny_out: Vec<String>,
}

fn egress(n: &Network) -> Result<Egress, (u16, Value)> {
    let mut out = Egress::default();
    for entry in &n.allow_out {
        let net = entry.split(':').next().unwrap_or("");
        let looks_ip = net
            .split('/')
            .next()
            .is_some_and(|a| a.parse::<std::net::Ipv4Addr>().is_ok());
        if looks_ip && !entry.contains(':') {
            return Err(error(
                400,
                format!(
                    "allowOut {entry:?}: Paddock's egress rules name their ports; write \"{entry}:443\" (or \"{entry}:80+443\")"
                ),
            ));
        }
        if looks_ip {
            out.cidrs.push(entry.clone());
        } else {
            out.domains.push(entry.clone());
        }
    }
    for entry in &n.deny_out {
        let net = entry.split('/').next().unwrap_or("");
        if net.parse::<std::net::Ipv4Addr>().is_err() {
            return Err(error(
                400,
                format!("denyOut {entry:?}: an IPv4 address or CIDR block"),
            ));
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewSandbox {
    #[serde(rename = "templateID")]
    template_id: String,
    timeout: Option<u64>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    #[serde(default)]
    env_vars: BTreeMap<String, String>,
    /// Ignored: it cannot open more than the allowlist does.
    #[serde(rename = "allow_internet_access")]
    _allow_internet_access: Option<bool>,
    #[serde(default)]
    network: Option<Network>,
    #[serde(default)]
    auto_pause: bool,
    #[serde(default)]
    secure: Option<bool>,
}

/// `POST /sandboxes` and `POST /v2/sandboxes`.
pub fn create(shared: &Shared, req: &http::Request, io: &mut Exchange) -> (u16, Value) {
    let new: NewSandbox = match read_json(req, io) {
        Ok(n) => n,
        Err(refusal) => return reshaped(refusal),
    };
    let _ = new.secure;
    if new.auto_pause {
        return error(
            400,
            "autoPause: Paddock cannot pause a workspace yet; it ends at its timeout",
        );
    }
    let egress = match egress(&new.network.unwrap_or_default()) {
        Ok(e) => e,
        Err(e) => return e,
    };
    let spec = json!({
        "ttl_s": new.timeout.unwrap_or(DEFAULT_TIMEOUT_S),
        "template": template_from_e2b(&new.template_id),
        "labels": new.metadata,
        "env": new.env_vars,
        "egress": egress,
    });
    let created = match ask(shared, &req.bearer, Call::CreateWorkspace { spec }) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let Some(id) = created.get("id").and_then(Value::as_str) else {
        return error(503, "host-init's answer named no workspace");
    };
    (201, sandbox(shared, &new.template_id, id, &req.bearer))
}

/// E2B's `Sandbox`: what create and connect answer. The envd access token
/// is the caller's own key: envd requests carry no other credential, and
/// they are then authenticated, scoped and audited as that key's, like
/// its API calls. (A key scoped to the one sandbox would be narrower; see
/// docs/e2b.md.)
/// `sandbox` for a workspace.
pub(crate) fn sandbox_of(shared: &Shared, ws: &Workspace, bearer: &str) -> Value {
    sandbox(shared, template_to_e2b(&ws.template), &ws.id, bearer)
}

fn sandbox(shared: &Shared, template: &str, id: &str, bearer: &str) -> Value {
    json!({
        "templateID": template,
        "sandboxID": crate::routes::e2b_id(id),
        "clientID": "paddock",
        "envdVersion": ENVD_VERSION,
        "envdAccessToken": bearer,
        // The box's own domain when it has one (the SDK then reaches envd
        // at 49983-{id}.{domain}); never E2B's: an SDK told the API's
        // address but not E2B_SANDBOX_URL would otherwise send this key
        // to e2b.app. paddock.invalid cannot resolve, so such a call fails
        // here instead.
        "domain": shared.domain.as_deref().unwrap_or("paddock.invalid"),
    })
}

/// `GET /sandboxes/{id}`.
pub fn get(shared: &Shared, req: &http::Request, id: &str) -> (u16, Value) {
    match workspace(shared, &req.bearer, id) {
        Ok(ws) => (200, detail(&ws)),
        Err(e) => e,
    }
}

/// `DELETE /sandboxes/{id}`: 204, or 404 for one it cannot see.
pub fn kill(shared: &Shared, req: &http::Request, id: &str) -> (u16, Value) {
    let c = Call::DeleteWorkspace { id: id.to_string() };
    match ask(shared, &req.bearer, c) {
        Ok(_) => (204, Value::Null),
        Err(e) => e,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Timeout {
    timeout: u64,
}

/// connect's body: both optional (the SDK sends `{}` when its caller gives
/// no timeout).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ConnectBody {
    #[serde(default)]
    timeout: Option<u64>,
    /// Resume from memory (true, the default) or reboot from the disk
    /// (false: not done here).
    #[serde(default)]
    memory: Option<bool>,
}

/// `POST /sandboxes/{id}/timeout`: it ends `timeout` seconds from now.
pub fn set_timeout(
    shared: &Shared,
    req: &http::Request,
    io: &mut Exchange,
    id: &str,
) -> (u16, Value) {
    let t: Timeout = match read_json(req, io) {
        Ok(t) => t,
        Err(refusal) => return reshaped(refusal),
    };
    let c = Call::SetTtl {
        id: id.to_string(),
        ttl_s: t.timeout,
        reason: None,
    };
    match ask(shared, &req.bearer, c) {
        Ok(_) => (204, Value::Null),
        Err(e) => e,
    }
}

/// `POST /sandboxes/{id}/connect` (and v2): a running sandbox's answer, its
/// end moved to `timeout` from now if that is later.
pub fn connect(shared: &Shared, req: &http::Request, io: &mut Exchange, id: &str) -> (u16, Value) {
    let t: ConnectBody = if req.content_length == Some(0) {
        ConnectBody::default()
    } else {
        match read_json(req, io) {
            Ok(t) => t,
            Err(refusal) => return reshaped(refusal),
        }
    };
    let ws = match workspace(shared, &req.bearer, id) {
        Ok(ws) => ws,
        Err(e) => return e,
    };
    // A paused sandbox is resumed: from its memory, the only way here.
    if ws.state == WorkspaceState::Paused {
        if t.memory == Some(false) {
            return error(
                501,
                "a resume that reboots (memory: false): Paddock resumes a paused sandbox from its memory",
            );
        }
        return match crate::e2b_pause::resume_paused(shared, &req.bearer, id, t.timeout) {
            Ok(ws) => (201, sandbox_of(shared, &ws, &req.bearer)),
            Err(e) => e,
        };
    }
    let now = now_s();
    let timeout = t.timeout.unwrap_or(0);
    if timeout > 0 && ws.expires_at < now.saturating_add(timeout) {
        let c = Call::SetTtl {
            id: id.to_string(),
            ttl_s: timeout,
            reason: None,
        };
        if let Err(e) = ask(shared, &req.bearer, c) {
            return e;
        }
    }
    (
        200,
        sandbox(shared, template_to_e2b(&ws.template), &ws.id, &req.bearer),
    )
}

/// `PUT /sandboxes/{id}/network`: the allowlist replaced.
pub fn set_network(
    shared: &Shared,
    req: &http::Request,
    io: &mut Exchange,
    id: &str,
) -> (u16, Value) {
    let n: Network = match read_json(req, io) {
        Ok(n) => n,
        Err(refusal) => return reshaped(refusal),
    };
    let egress = match egress(&n) {
        Ok(e) => e,
        Err(e) => return e,
    };
    let c = Call::SetEgress {
        id: id.to_string(),
        request: json!(egress),
    };
    match ask(shared, &req.bearer, c) {
        Ok(_) => (204, Value::Null),
        Err(e) => e,
    }
}

/// `GET /sandboxes` and `GET /v2/sandboxes`: the running sandboxes this key
/// sees, filtered by `metadata` (`k=v&...`, URL-encoded) and `state`, a
/// page of `limit` at a time with `nextToken`. Answers the page and the
/// next page's token.
pub fn list(shared: &Shared, req: &http::Request) -> Result<(Value, Option<String>), (u16, Value)> {
    let mut labels = Vec::new();
    if let Some(m) = query(req, "metadata") {
        // `m` was decoded once with the query; the SDK quotes keys and
        // values once more inside it.
        for pair in m.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let dec = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .to_string()
            };
            let (k, v) = (dec(k), dec(v));
            let ok = |s: &str| {
                (1..=63).contains(&s.len())
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            };
            if !ok(&k) || !ok(&v) || labels.len() >= 16 {
                return Err(error(
                    400,
                    "metadata: at most 16 pairs, each key and value 1-63 of letters, digits, '.', '_', '-'",
                ));
            }
            labels.push((k, v));
        }
    }
    let (wants_running, wants_paused) = match query(req, "state") {
        None => (true, true),
        Some(s) => (
            s.split(',').any(|s| s == "running"),
            s.split(',').any(|s| s == "paused"),
        ),
    };
    let limit = match query(req, "limit").map(str::parse::<usize>) {
        None => MAX_PAGE,
        Some(Ok(l)) if (1..=MAX_PAGE).contains(&l) => l,
        Some(_) => return Err(error(400, format!("limit: a number from 1 to {MAX_PAGE}"))),
    };
    let skip = match query(req, "nextToken").map(str::parse::<usize>) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => return Err(error(400, "nextToken: not one this server gave")),
    };
    let v = ask(shared, &req.bearer, Call::ListWorkspaces { labels })?;
    let list: paddock_api_types::WorkspaceList =
        serde_json::from_value(v).map_err(|e| error(503, format!("host-init's answer: {e}")))?;
    let mut all: Vec<&Workspace> = list
        .workspaces
        .iter()
        .filter(|w| visible(w))
        .filter(|w| {
            if w.state == WorkspaceState::Paused {
                wants_paused
            } else {
                wants_running
            }
        })
        .collect();
    all.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    let page: Vec<Value> = all
        .iter()
        .skip(skip)
        .take(limit)
        .map(|w| detail(w))
        .collect();
    let end = skip.saturating_add(limit);
    let next = (end < all.len()).then(|| end.to_string());
    Ok((Value::Array(page), next))
}

/// E2B's metrics shape is not served yet; Paddock's are at /metrics.
/// `GET /sandboxes/{id}/metrics?start=&end=`: its samples (every 5 s, an
/// hour kept) as E2B's SandboxMetric list.
pub fn metrics(shared: &Shared, req: &http::Request, id: &str) -> (u16, Value) {
    let bound = |k: &str| match crate::handling::query(req, k) {
        None => Ok(None),
        Some(v) => v
            .parse::<u64>()
            .map(Some)
            .map_err(|_| error(400, format!("{k}: Unix seconds"))),
    };
    let (start, end) = match (bound("start"), bound("end")) {
        (Ok(s), Ok(e)) => (s.unwrap_or(0), e.unwrap_or(u64::MAX)),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let c = Call::WorkspaceMetrics {
        id: id.to_string(),
        since: start,
    };
    let body = match ask(shared, &req.bearer, c) {
        Ok(b) => b,
        Err(e) => return e,
    };
    let samples: paddock_api_types::WorkspaceMetrics = match serde_json::from_value(body) {
        Ok(s) => s,
        Err(e) => return error(500, format!("the control plane's samples: {e}")),
    };
    let out: Vec<Value> = samples
        .samples
        .iter()
        .filter(|s| s.t <= end)
        .map(|s| {
            json!({
                "timestamp": rfc3339(s.t), "timestampUnix": s.t,
                "cpuCount": s.vcpus, "cpuUsedPct": s.cpu_pct,
                "memUsed": s.memory_bytes, "memTotal": s.memory_limit_bytes,
                // The host sees the VM's memory, not the guest's page cache.
                "memCache": 0,
                "diskUsed": s.disk_used_bytes, "diskTotal": s.disk_bytes,
            })
        })
        .collect();
    (200, Value::Array(out))
}

/// envd's `GET /health` for the sandbox named by `E2b-Sandbox-Id`: 204
/// while it runs, 502 (E2B's "not running") otherwise.
pub fn envd_health(shared: &Shared, req: &http::Request) -> (u16, Value) {
    let Some(id) = req
        .sandbox
        .as_deref()
        .filter(|i| crate::routes::valid_id(i))
    else {
        return error(400, "E2b-Sandbox-Id: a sandbox id");
    };
    match workspace(shared, &req.bearer, id) {
        Ok(ws) if ws.state == WorkspaceState::Running => (204, Value::Null),
        Ok(_) => error(502, format!("sandbox {id} is not running")),
        Err(e) => e,
    }
}

/// Unix seconds now (0 should the clock read before 1970).
fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_515_199), "2026-12-05T23:59:59Z");
    }

    #[test]
    fn allow_out_maps_onto_the_allowlist_and_ports_are_required() {
        let n = Network {
            allow_out: vec!["example.com".into(), "8.8.8.8/32:53".into()],
            deny_out: vec!["0.0.0.0/0".into()],
        };
        let e = egress(&n).expect("egress");
        assert_eq!(e.domains, ["example.com"]);
        assert_eq!(e.cidrs, ["8.8.8.8/32:53"]);
        let n = Network {
            allow_out: vec!["8.8.8.8".into()],
            deny_out: vec![],
        };
        let (status, body) = egress(&n).expect_err("no ports");
        assert_eq!(status, 400);
        assert!(body["message"]
            .as_str()
            .unwrap_or("")
            .contains("8.8.8.8:443"));
        let n = Network {
            allow_out: vec![],
            deny_out: vec!["example.com".into()],
        };
        assert!(egress(&n).is_err(), "denyOut names addresses only");
    }
}
