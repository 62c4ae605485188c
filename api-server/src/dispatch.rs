//! Each endpoint to its handler: the resolved route (`routes`) to the
//! call host-init decides, or to the handler that streams.

use crate::bridge::Exchange;
use crate::exec::exec;
use crate::handling::{json_error, query, read_json};
use crate::http::{self, status_of};
use crate::routes::{self, valid_id, Route};
use crate::shared::{call, Shared};
use crate::transfer::{files, forensic_file};
use paddock_api_channel::{Call, Verdict};
use serde_json::Value;

/// A label filter or label: 1-63 of letters, digits, '.', '_', '-'.
fn label_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// A `since` query parameter (Unix seconds; 0 when absent).
fn since(req: &http::Request) -> Result<u64, (u16, Value)> {
    match query(req, "since").map(str::parse::<u64>) {
        None => Ok(0),
        Some(Ok(s)) => Ok(s),
        Some(Err(_)) => Err(json_error(422, "since: Unix seconds")),
    }
}

/// Answers one request; None when the handler already wrote the response.
pub fn route(shared: &Shared, req: &http::Request, io: &mut Exchange) -> Option<(u16, Value)> {
    let simple = |c: Call| {
        let (r, _) = call(shared, &req.bearer, c);
        Some((status_of(r.verdict), r.body))
    };
    // A call whose body is the request's JSON.
    let with_body =
        |io: &mut Exchange, make: &dyn Fn(Value) -> Call| match read_json::<Value>(req, io) {
            Ok(v) => simple(make(v)),
            Err(e) => Some(e),
        };
    match routes::resolve(&req.method, &req.path) {
        // Answered before a handler runs (crate::conn).
        Route::Health => Some(json_error(500, "health is answered elsewhere")),
        Route::OpenSession => crate::signin::open(shared, req, io),
        Route::SessionInfo => Some(crate::signin::describe(shared, req)),
        Route::CloseSession => crate::signin::close(shared, req, io),
        Route::CreateWorkspace => with_body(io, &|spec| Call::CreateWorkspace { spec }),
        Route::ListWorkspaces => {
            let mut labels = Vec::new();
            for (k, v) in &req.query {
                if k == "label" {
                    match v.split_once('=') {
                        Some((a, b)) if label_ok(a) && label_ok(b) => {
                            labels.push((a.to_string(), b.to_string()))
                        }
                        _ => {
                            return Some(json_error(
                                400,
                                format!("label filter {v:?}: use label=KEY=VALUE, each 1-63 of letters, digits, '.', '_', '-'"),
                            ))
                        }
                    }
                }
            }
            simple(Call::ListWorkspaces { labels })
        }
        Route::BadWorkspaceId => Some(json_error(404, "no such endpoint")),
        Route::GetWorkspace(id) => simple(Call::GetWorkspace { id }),
        Route::DeleteWorkspace(id) => simple(Call::DeleteWorkspace { id }),
        Route::StopWorkspace(id) => simple(Call::StopWorkspace { id }),
        // The body is optional: no body pauses with the default TTL.
        Route::PauseWorkspace(id) => {
            match crate::handling::read_optional_json::<paddock_api_types::PauseRequest>(req, io) {
                Ok(p) => simple(Call::PauseWorkspace {
                    id,
                    ttl_s: p.unwrap_or_default().ttl_s,
                }),
                Err(e) => Some(e),
            }
        }
        Route::ResumeWorkspace(id) => simple(Call::ResumeWorkspace { id }),
        Route::SetTtl(id) => match read_json::<paddock_api_types::TtlRequest>(req, io) {
            Ok(t) => simple(Call::SetTtl {
                id,
                ttl_s: t.ttl_s,
                reason: t.reason,
            }),
            Err(e) => Some(e),
        },
        Route::SetLimits(id) => with_body(io, &|request| Call::SetLimits {
            id: id.clone(),
            request,
        }),
        Route::PublishPort(id) => with_body(io, &|request| Call::PublishPort {
            id: id.clone(),
            request,
        }),
        Route::UnpublishPort { id, port } => simple(Call::UnpublishPort { id, port }),
        Route::ListLinks => simple(Call::ListLinks),
        Route::CreateLink => with_body(io, &|request| Call::CreateLink { request }),
        Route::DeleteLink(id) => simple(Call::DeleteLink { id }),
        Route::SetEgress(id) => with_body(io, &|request| Call::SetEgress {
            id: id.clone(),
            request,
        }),
        Route::ListSecrets(id) => simple(Call::ListSecrets { id }),
        Route::SetSecret { id, name } => with_body(io, &|request| Call::SetSecret {
            id: id.clone(),
            name: name.clone(),
            request,
        }),
        Route::RemoveSecret { id, name } => simple(Call::RemoveSecret { id, name }),
        Route::Quarantine(id) => simple(Call::QuarantineWorkspace { id }),
        Route::DeleteForensics(id) => simple(Call::DeleteForensics { id }),
        Route::ForensicFile { id, name } => forensic_file(shared, req, io, &id, &name),
        Route::Exec(id) => exec(shared, req, io, &id),
        Route::Files(id) => files(shared, req, io, &id),
        Route::Dir(id) => Some(crate::dirs::dir(shared, req, io, &id)),
        Route::Processes(id, op) => crate::processes::handle(shared, req, io, &id, op),
        Route::CreateToken => with_body(io, &|request| Call::CreateToken { request }),
        Route::ListTokens => simple(Call::ListTokens),
        Route::RevokeToken(id) => simple(Call::RevokeToken { id }),
        Route::RotateToken(id) => simple(Call::RotateToken { id }),
        Route::RotateTls => simple(Call::RotateTls),
        Route::KeyStatus => simple(Call::KeyStatus),
        // Never across the LAN in the clear (like a console sign-in).
        Route::RecoverKeys if !req.tls => Some(json_error(
            403,
            "the recovery secret is taken over TLS only: use the https:// address",
        )),
        Route::RecoverKeys => match read_json::<Value>(req, io) {
            Ok(v) => match serde_json::from_value::<paddock_api_types::RecoverRequest>(v) {
                Ok(r) if r.recovery_secret.len() <= paddock_api_types::RecoverRequest::MAX_LEN => {
                    simple(Call::RecoverKeys {
                        secret: r.recovery_secret,
                    })
                }
                _ => Some(json_error(
                    422,
                    "recovery_secret: a string (the secret shown at first boot) is required",
                )),
            },
            Err(e) => Some(e),
        },
        Route::ProcessScan => match read_json::<Value>(req, io) {
            Ok(v) => match v.get("needle").and_then(Value::as_str) {
                Some(n) => simple(Call::ScanProcesses {
                    needle: n.to_string(),
                }),
                None => Some(json_error(422, "needle: a string is required")),
            },
            Err(e) => Some(e),
        },
        Route::DropCaches => simple(Call::DropCaches),
        Route::KillNetServices => simple(Call::KillNetServices),
        Route::ReadConsole(name) => simple(Call::ReadConsole { name }),
        Route::OpenDisk => match read_json::<Value>(req, io) {
            Ok(v) => match v.get("workspace").and_then(Value::as_str) {
                Some(id) if valid_id(id) => simple(Call::ProbeDisk { id: id.to_string() }),
                _ => Some(json_error(422, "workspace: a workspace id is required")),
            },
            Err(e) => Some(e),
        },
        Route::Metrics => {
            let (r, _) = call(shared, &req.bearer, Call::Metrics);
            match r.body.get("text").and_then(Value::as_str) {
                Some(text) if r.verdict == Verdict::Ok => {
                    http::text(&mut io.out, text.to_string());
                    None
                }
                _ => Some((status_of(r.verdict), r.body)),
            }
        }
        Route::Audit => {
            let limit = match query(req, "limit").map(str::parse::<usize>) {
                None => 1000,
                Some(Ok(l)) if (1..=10_000).contains(&l) => l,
                Some(_) => return Some(json_error(400, "limit: a number from 1 to 10000")),
            };
            let filters: Vec<(String, String)> = req
                .query
                .iter()
                .filter(|(k, _)| ["event", "workspace", "token"].contains(&k.as_str()))
                .cloned()
                .collect();
            if let Some((k, _)) = filters.iter().find(|(_, v)| v.len() > 64) {
                return Some(json_error(400, format!("{k}: at most 64 characters")));
            }
            simple(Call::ReadAudit { filters, limit })
        }
        Route::E2bCreate => Some(crate::e2b::create(shared, req, io)),
        Route::E2bList => match crate::e2b::list(shared, req) {
            Ok((page, next)) => {
                let headers = next
                    .map(|n| (http::header_name("x-next-token"), n))
                    .into_iter()
                    .collect();
                http::json_with(&mut io.out, 200, &page, headers);
                None
            }
            Err(e) => Some(e),
        },
        Route::E2bGet(id) => Some(crate::e2b::get(shared, req, &id)),
        Route::E2bKill(id) => Some(crate::e2b::kill(shared, req, &id)),
        Route::E2bTimeout(id) => Some(crate::e2b::set_timeout(shared, req, io, &id)),
        Route::E2bConnect(id) => Some(crate::e2b::connect(shared, req, io, &id)),
        Route::E2bPause(id) => Some(crate::e2b_pause::pause(shared, req, io, &id)),
        Route::E2bResume(id) => Some(crate::e2b_pause::resume(shared, req, io, &id)),
        Route::E2bNetwork(id) => Some(crate::e2b::set_network(shared, req, io, &id)),
        Route::E2bMetrics(id) => Some(crate::e2b::metrics(shared, req, &id)),
        Route::WorkspaceMetrics(id) => match since(req) {
            Ok(since) => simple(Call::WorkspaceMetrics { id, since }),
            Err(e) => Some(e),
        },
        Route::SystemStatus => simple(Call::SystemStatus),
        Route::SystemUpdate => crate::system_update::update(shared, req, io),
        Route::SystemBackup => crate::system_backup::backup(shared, req, io),
        Route::SystemRestore => crate::system_backup::restore(shared, req, io),
        Route::HostMetrics => match since(req) {
            Ok(since) => simple(Call::HostMetrics { since }),
            Err(e) => Some(e),
        },
        Route::Report(id) => Some(crate::report::report(shared, req, &id)),
        Route::ListApprovals => {
            let state = match query(req, "state") {
                None => None,
                Some(s @ ("pending" | "approved" | "denied" | "expired")) => Some(s.to_string()),
                Some(_) => {
                    return Some(json_error(
                        422,
                        "state: pending, approved, denied or expired",
                    ))
                }
            };
            simple(Call::ListApprovals { state })
        }
        Route::GetApproval(id) => simple(Call::GetApproval { id }),
        Route::DecideApproval(id) => with_body(io, &|request| Call::DecideApproval {
            id: id.clone(),
            request,
        }),
        Route::NetworkLog(id) => {
            let since = match query(req, "since").map(str::parse::<u64>) {
                None => 0,
                Some(Ok(s)) => s,
                Some(Err(_)) => return Some(json_error(422, "since: Unix seconds")),
            };
            let decision = match query(req, "decision") {
                None => None,
                Some(d @ ("allowed" | "denied")) => Some(d.to_string()),
                Some(_) => return Some(json_error(422, "decision: allowed or denied")),
            };
            let limit = match query(req, "limit").map(str::parse::<usize>) {
                None => 1000,
                Some(Ok(n)) if (1..=10_000).contains(&n) => n,
                Some(_) => return Some(json_error(422, "limit: 1 to 10000")),
            };
            simple(Call::NetworkLog {
                id,
                since,
                decision,
                limit,
            })
        }
        Route::EnvdHealth => Some(crate::e2b::envd_health(shared, req)),
        Route::EnvdRpc(service, method) => crate::envd::rpc(shared, req, io, &service, &method),
        Route::EnvdReadFile => crate::envd::read_file(shared, req, io),
        Route::EnvdWriteFile => Some(crate::envd::write_file(shared, req, io)),
        Route::NotFound => Some(json_error(
            404,
            format!("no such endpoint: {} {}", req.method, req.path),
        )),
    }
}
