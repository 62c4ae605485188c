//! `paddock net-log ID`: where a workspace connected (its lookups and
//! proxied connections, counted per minute; `GET .../network`).

use super::{ws_path, Ctx};
use crate::CliError;

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
        for r in log.records {
            let dest = r.dest.unwrap_or_default();
            let answers = if r.answers.is_empty() {
                String::new()
            } else {
                format!(" -> {}", r.answers.join(","))
            };
            println!(
                "{}-{} {} {:<7} {} {}{answers} x{} up {} down {}{}{} ({})",
                r.from,
                r.to,
                r.kind,
                r.decision,
                if r.name.is_empty() { "-" } else { &r.name },
                dest,
                r.count,
                r.bytes_up,
                r.bytes_down,
                if r.upstream_failed > 0 {
                    format!(" upstream-failed {}", r.upstream_failed)
                } else {
                    String::new()
                },
                if r.mismatched > 0 {
                    format!(" MISMATCHED {}", r.mismatched)
                } else {
                    String::new()
                },
                r.reason
            );
        }
    })
}
