//! What a person reviews of a workspace: `paddock net-log ID` (where it
//! connected: its lookups and proxied connections, counted per minute;
//! `GET .../network`) and `paddock report ID` (`GET .../report`).

use super::{enc, ws_path, Ctx};
use crate::CliError;

/// Text from a workspace (a file name, a host it asked for, its reason)
/// as it may be printed to a person's terminal: control characters and
/// bidirectional overrides escaped, so it cannot move the cursor, rewrite
/// the lines above or set the clipboard.
fn shown(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let bidi = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
            if c.is_control() || bidi {
                c.escape_unicode().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// `paddock net-log ID`: one line per record, or the JSON with --json.
pub fn net_log(ctx: &Ctx, args: &crate::args::NetLogArgs) -> Result<(), CliError> {
    let mut q = Vec::new();
    if let Some(s) = args.since {
        q.push(format!("since={s}"));
    }
    if args.denied {
        q.push("decision=denied".into());
    } else if args.allowed {
        q.push("decision=allowed".into());
    }
    if let Some(n) = args.limit {
        q.push(format!("limit={n}"));
    }
    let body = ctx.call(
        "GET",
        &format!("{}?{}", ws_path(&args.id, "/network"), q.join("&")),
    )?;
    ctx.show(&body, |log: paddock_api_types::NetworkLog| {
        for r in &log.records {
            println!("{}", record_line(r));
        }
    })
}

/// One record of `paddock net-log`; the counts that call for a look
/// (upstream failures, mismatches, secrets) only when there are any, the
/// alarming ones in capitals.
fn record_line(r: &paddock_api_types::NetworkRecord) -> String {
    let answers = if r.answers.is_empty() {
        String::new()
    } else {
        format!(" -> {}", r.answers.join(","))
    };
    let mut flags = String::new();
    for (n, label) in [
        (r.upstream_failed, "upstream-failed"),
        (r.mismatched, "MISMATCHED"),
        (r.secrets_injected, "injected"),
        (r.secret_misuse, "SECRET MISUSE"),
    ] {
        if n > 0 {
            flags.push_str(&format!(" {label} {n}"));
        }
    }
    format!(
        "{}-{} {} {:<7} {} {}{answers} x{} up {} down {}{flags} ({})",
        r.from,
        r.to,
        r.kind,
        r.decision,
        if r.name.is_empty() {
            "-".to_string()
        } else {
            shown(&r.name)
        },
        r.dest.as_deref().unwrap_or_default(),
        r.count,
        r.bytes_up,
        r.bytes_down,
        r.reason
    )
}

/// `paddock report ID`: the commands, signals, network and changed files.
pub fn report(ctx: &Ctx, id: &str) -> Result<(), CliError> {
    let body = ctx.call("GET", &ws_path(id, "/report"))?;
    ctx.show(&body, |r: paddock_api_types::WorkspaceReport| {
        let w = &r.workspace;
        println!("workspace {} ({:?}), report at {}", w.id, w.state, r.generated_at);
        let failed = r
            .commands
            .iter()
            .filter(|c| c.exit_code != Some(0))
            .count();
        println!(
            "commands: {} started, {} ended, {failed} of them failed",
            r.commands_started,
            r.commands.len()
        );
        for c in &r.commands {
            let how = match (c.exit_code, c.signal) {
                (Some(code), _) => format!("exit {code}"),
                (None, Some(sig)) => format!("signal {sig}"),
                _ => "lost".into(),
            };
            println!("  {} {} {how} in {} ms", c.at, c.argv0, c.duration_ms);
        }
        for s in &r.signals {
            println!("signal {} at {} (value {}, action {})", s.signal, s.at, s.value, s.action);
        }
        let n = &r.network;
        println!(
            "network: lookups {} allowed / {} denied, connections {} allowed / {} denied, {} B up, {} B down, {} mismatched",
            n.lookups_allowed,
            n.lookups_denied,
            n.connections_allowed,
            n.connections_denied,
            n.bytes_up,
            n.bytes_down,
            n.mismatched
        );
        for d in &n.destinations {
            println!(
                "  {} {} {} x{} ({} B up, {} B down)",
                d.kind,
                d.decision,
                shown(&d.name),
                d.count,
                d.bytes_up,
                d.bytes_down
            );
        }
        match &r.files.unavailable {
            Some(why) => println!("files: {why}"),
            None => {
                println!(
                    "files: {} changed against the template{}",
                    r.files.changes.len(),
                    if r.files.truncated { " (more not listed)" } else { "" }
                );
                for c in &r.files.changes {
                    println!("  {:<8} {} ({} B)", c.change, shown(&c.path), c.size);
                }
            }
        }
    })
}

/// What an approval asks for, as a person reads it.
fn asked_for(a: &paddock_api_types::Approval) -> String {
    use paddock_api_types::ApprovalAction as A;
    match &a.action {
        A::Egress { host, port } => format!("egress to {}:{port}", shown(host)),
        A::ExtendTtl { ttl_s } => format!("end {} {ttl_s} s after the decision", a.workspace),
        A::PublishPort { port, host_port } => format!(
            "publish {} port {port}{}",
            a.workspace,
            host_port.map(|h| format!(" at {h}")).unwrap_or_default()
        ),
        A::Link { to, port, link } => format!(
            "link {} -> {}:{port}{}",
            a.workspace,
            shown(to),
            link.as_deref()
                .map(|l| format!(" ({l})"))
                .unwrap_or_default()
        ),
    }
}

/// One approval on one line.
fn approval_line(a: &paddock_api_types::Approval) -> String {
    format!(
        "{} {:?} {} {}, asked by {} {}x, last at {}: {}{}",
        a.id,
        a.state,
        a.workspace,
        asked_for(a),
        a.asked_by.as_deref().unwrap_or("the workspace"),
        a.asks,
        a.asked_at,
        shown(&a.reason),
        a.expires_at
            .map(|t| format!(" (until {t})"))
            .unwrap_or_default()
    )
}

/// `paddock approvals [--all] [ID]`: one line per approval.
pub fn approvals(ctx: &Ctx, all: bool, id: Option<&str>) -> Result<(), CliError> {
    if let Some(id) = id {
        let body = ctx.call("GET", &format!("/v1/approvals/{}", enc(id)))?;
        return ctx.show(&body, |a: paddock_api_types::Approval| {
            println!("{}", approval_line(&a));
            if let Some(why) = &a.decision_reason {
                println!(
                    "  decided by {}: {}",
                    a.decided_by.as_deref().unwrap_or("?"),
                    shown(why)
                );
            }
        });
    }
    let path = if all {
        "/v1/approvals".to_string()
    } else {
        "/v1/approvals?state=pending".to_string()
    };
    let body = ctx.call("GET", &path)?;
    ctx.show(&body, |list: paddock_api_types::ApprovalList| {
        for a in list.approvals {
            println!("{}", approval_line(&a));
        }
    })
}

/// `paddock approve ID` / `paddock deny ID`.
pub fn decide(
    ctx: &Ctx,
    id: &str,
    approve: bool,
    ttl_s: Option<u64>,
    reason: Option<String>,
) -> Result<(), CliError> {
    let request = paddock_api_types::ApprovalDecision {
        approve,
        ttl_s,
        reason,
    };
    let body = serde_json::to_vec(&request)
        .map_err(|e| CliError::Api(format!("shaping the decision: {e}")))?;
    let answer = ctx
        .api
        .call("POST", &format!("/v1/approvals/{}", enc(id)), Some(&body))?;
    let body = super::ok(answer)?;
    ctx.show(&body, |a: paddock_api_types::Approval| {
        println!("{}", approval_line(&a));
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_record_shows_the_counts_that_call_for_a_look() {
        let mut r: paddock_api_types::NetworkRecord = serde_json::from_value(serde_json::json!({
            "from": 60, "to": 120, "kind": "tcp", "name": "api.example.com", "dest": "203.0.113.5:443",
            "decision": "allowed", "reason": "allowlist", "count": 3, "bytes_up": 10, "bytes_down": 20
        }))
        .expect("a NetworkRecord");
        let plain = super::record_line(&r);
        assert_eq!(
            plain,
            "60-120 tcp allowed api.example.com 203.0.113.5:443 x3 up 10 down 20 (allowlist)"
        );
        r.secrets_injected = 2;
        r.secret_misuse = 1;
        r.mismatched = 4;
        let flagged = super::record_line(&r);
        assert!(
            flagged.ends_with("down 20 MISMATCHED 4 injected 2 SECRET MISUSE 1 (allowlist)"),
            "{flagged}"
        );
    }

    #[test]
    fn what_a_workspace_names_cannot_drive_the_terminal() {
        let evil = "/tmp/\u{1b}[1A\u{1b}[2Kfiles: 0 changed\n\u{1b}]52;c;aGk=\u{7}\u{202e}txt.exe";
        let out = super::shown(evil);
        assert!(!out.chars().any(|c| c.is_control()), "{out:?}");
        assert!(!out.contains('\u{202e}'));
        assert!(out.starts_with("/tmp/\\u{1b}[1A"), "{out}");
        assert_eq!(super::shown("/home/agent/ok.txt"), "/home/agent/ok.txt");
    }
}
