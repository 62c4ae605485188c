//! The appliance's own business: links, forensic snapshots, tokens, its
//! certificate, its disk keys and its audit log.

use super::{enc, ok, ws_path, Ctx};
use crate::args::{
    EventsArgs, ForensicsArgs, ForensicsCommand, KeysCommand, LinkCommand, SnapshotFile,
    TlsCommand, TokenCommand, YellowAction,
};
use crate::CliError;
use paddock_api_types::{
    AuditEvents, Deleted, ForensicFile, KeyStatus, Link, LinkList, MintRequest, MintedToken,
    RecoverRequest, TlsRotated, TokenList, TokenRotated,
};
use serde::{Deserialize, Serialize};

/// What a download is checked against: each file's hash in the snapshot's
/// manifest (`ForensicManifest`), read alone so that snapshots taken by
/// other versions, which the evidence outlives, still check.
#[derive(Deserialize)]
struct ManifestFiles {
    files: std::collections::BTreeMap<String, ForensicFile>,
}

/// What `forensics ID FILE DEST` saved, for scripts: the CLI's own
/// answer, not the appliance's.
#[derive(Serialize, Deserialize)]
struct Saved {
    file: String,
    bytes: usize,
    saved: String,
}

pub fn link(ctx: &Ctx, cmd: LinkCommand) -> Result<(), CliError> {
    let show = |l: &Link| {
        println!(
            "{}  {} -> {}:{} ({})",
            l.id,
            l.from,
            l.to,
            l.port,
            l.to_address.as_deref().unwrap_or("no address")
        )
    };
    match cmd {
        LinkCommand::Ls => {
            let body = ctx.call("GET", "/v1/links")?;
            ctx.show(&body, |v: LinkList| v.links.iter().for_each(show))
        }
        LinkCommand::Add(req) => {
            let (body, asked) = ctx.send_or_ask("POST", "/v1/links", &req)?;
            if asked {
                return ctx.show_asked(&body);
            }
            ctx.show(&body, |l: Link| show(&l))
        }
        LinkCommand::Rm { link } => {
            let body = ctx.call("DELETE", &format!("/v1/links/{}", enc(&link)))?;
            ctx.show(&body, |d: Deleted| println!("removed {}", d.deleted))
        }
    }
}

/// `--allow` and `--ask` as a token's policy; absent when neither is given.
fn policy(
    allow: &[YellowAction],
    ask: &[YellowAction],
) -> Result<Option<paddock_api_types::ActionPolicy>, CliError> {
    use paddock_api_types::ActionRule;
    if let Some(both) = allow.iter().find(|a| ask.contains(a)) {
        return Err(CliError::Usage(format!(
            "{both:?} is both --allow and --ask: give one"
        )));
    }
    if allow.is_empty() && ask.is_empty() {
        return Ok(None);
    }
    let rule = |a: YellowAction| {
        if allow.contains(&a) {
            ActionRule::Allow
        } else if ask.contains(&a) {
            ActionRule::Ask
        } else {
            ActionRule::Deny
        }
    };
    Ok(Some(paddock_api_types::ActionPolicy {
        extend_ttl: rule(YellowAction::ExtendTtl),
        publish_port: rule(YellowAction::PublishPort),
        link: rule(YellowAction::Link),
    }))
}

/// Downloads one file of a forensic snapshot to `dest`; every file but the
/// manifest is checked against the SHA-256 the manifest records.
pub fn forensics(ctx: &Ctx, args: ForensicsArgs) -> Result<(), CliError> {
    let (id, file, dest) = match args {
        ForensicsArgs {
            command: Some(ForensicsCommand::Rm { id }),
            ..
        } => {
            return ctx.call("DELETE", &ws_path(&id, "/forensics")).map(drop);
        }
        ForensicsArgs {
            id: Some(id),
            file: Some(file),
            dest: Some(dest),
            ..
        } => (id, file, dest),
        // The parser requires all three when there is no subcommand.
        _ => {
            return Err(CliError::Usage(
                "forensics ID manifest|memory|disk|audit|network DEST, or forensics rm ID".into(),
            ))
        }
    };
    let fetch = |f: SnapshotFile| -> Result<Vec<u8>, CliError> {
        let path = ws_path(&id, &format!("/forensics/{}", f.name()));
        ok(ctx.api.call("GET", &path, None)?)
    };
    let name = file.name();
    let data = fetch(file)?;
    if file != SnapshotFile::Manifest {
        let manifest: ManifestFiles = serde_json::from_slice(&fetch(SnapshotFile::Manifest)?)
            .map_err(|e| CliError::Api(format!("the snapshot's manifest: {e}")))?;
        let want = manifest
            .files
            .get(&name)
            .map(|f| f.sha256.clone())
            .ok_or_else(|| CliError::Api(format!("the snapshot's manifest has no {name}")))?;
        let got: String = <sha2::Sha256 as sha2::Digest>::digest(&data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if want != got {
            return Err(CliError::Api(format!(
                "{name}: {} bytes downloaded with SHA-256 {got}, but the manifest says {want}; not saved",
                data.len()
            )));
        }
    }
    std::fs::write(&dest, &data).map_err(|e| CliError::Config(format!("{dest}: {e}")))?;
    let saved = Saved {
        file: name.clone(),
        bytes: data.len(),
        saved: dest.clone(),
    };
    let saved = serde_json::to_vec(&saved).unwrap_or_default();
    ctx.show(&saved, |_: Saved| {
        println!("{name}: {} bytes saved to {dest}", data.len())
    })
}

pub fn token(ctx: &Ctx, cmd: TokenCommand) -> Result<(), CliError> {
    match cmd {
        TokenCommand::Create {
            name,
            scopes,
            ttl,
            labels,
            e2b,
            max_ttl,
            allow,
            ask,
        } => {
            let req = MintRequest {
                name,
                scopes,
                ttl_s: ttl,
                labels: labels.into_iter().collect(),
                secret_format: e2b.then_some(paddock_api_types::SecretFormat::E2b),
                quotas: paddock_api_types::Quotas {
                    max_ttl_s: max_ttl,
                    ..Default::default()
                },
                actions: policy(&allow, &ask)?,
                ..MintRequest::default()
            };
            let body = ctx.send("POST", "/v1/tokens", &req)?;
            ctx.show(&body, |t: MintedToken| {
                println!("{}  {}  (the secret is shown once)", t.id, t.secret)
            })
        }
        TokenCommand::Ls => {
            let body = ctx.call("GET", "/v1/tokens")?;
            ctx.show(&body, |list: TokenList| {
                for t in list.tokens {
                    println!(
                        "{:<22} {:<20} {:<8} {}",
                        t.id,
                        t.name,
                        if t.revoked { "revoked" } else { "active" },
                        serde_json::to_string(&t.scopes).unwrap_or_default()
                    );
                }
            })
        }
        TokenCommand::Revoke { id } => ctx
            .call("DELETE", &format!("/v1/tokens/{}", enc(&id)))
            .map(drop),
        TokenCommand::Rotate { id } => {
            let body = ctx.call("POST", &format!("/v1/tokens/{}/rotate", enc(&id)))?;
            ctx.show(&body, |t: TokenRotated| {
                println!("{}", t.secret);
                eprintln!("(shown once; the old secret no longer works)");
            })
        }
    }
}

pub fn tls(ctx: &Ctx, cmd: TlsCommand) -> Result<(), CliError> {
    match cmd {
        TlsCommand::Cert => {
            // Any call makes the handshake, which checks the pin.
            ctx.call("GET", "/v1/health")?;
            let der = ctx
                .api
                .pin
                .seen_der
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .ok_or_else(|| CliError::Api("no certificate was presented".into()))?;
            use base64::Engine as _;
            let b64 = base64::engine::general_purpose::STANDARD.encode(der);
            println!("-----BEGIN CERTIFICATE-----");
            for line in b64.as_bytes().chunks(64) {
                println!("{}", String::from_utf8_lossy(line));
            }
            println!("-----END CERTIFICATE-----");
            Ok(())
        }
        TlsCommand::Rotate => {
            let body = ctx.call("POST", "/v1/tls/rotate")?;
            ctx.show(&body, |t: TlsRotated| {
                println!("{}", t.fingerprint);
                eprintln!("(the API restarts with it within 2 s; run `paddock login` with this fingerprint)");
            })
        }
    }
}

pub fn keys(ctx: &Ctx, cmd: Option<KeysCommand>) -> Result<(), CliError> {
    match cmd {
        None => {
            let body = ctx.call("GET", "/v1/keys")?;
            ctx.show(&body, |k: KeyStatus| {
                let state = serde_json::to_value(k.state).unwrap_or_default();
                println!("{}: {}", state.as_str().unwrap_or("?"), k.detail)
            })
        }
        Some(KeysCommand::Recover) => {
            // From stdin, not an argument: argv is visible to every
            // process on the operator's machine.
            let mut secret = String::new();
            std::io::stdin()
                .read_line(&mut secret)
                .map_err(|e| CliError::Usage(format!("reading the recovery secret: {e}")))?;
            let req = RecoverRequest {
                recovery_secret: secret.trim().to_string(),
            };
            let body = ctx.send("POST", "/v1/keys/recover", &req)?;
            ctx.show(&body, |k: KeyStatus| println!("{}", k.detail))
        }
    }
}

pub fn events(ctx: &Ctx, args: &EventsArgs) -> Result<(), CliError> {
    let limit = args.limit.map(|n| n.to_string());
    let q: Vec<String> = [
        ("workspace", args.workspace.as_deref()),
        ("event", args.event.as_deref()),
        ("limit", limit.as_deref()),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| format!("{k}={}", enc(v))))
    .collect();
    let body = ctx.call("GET", &format!("/v1/audit?{}", q.join("&")))?;
    ctx.show(&body, |list: AuditEvents| {
        for e in list.events {
            println!("{}", serde_json::to_string(&e).unwrap_or_default());
        }
    })
}
