//! Commands on workspaces: their life, their commands, their files and
//! what the host lets them do.

use super::{enc, ok, ws_path, Ctx};
use crate::args::{AllowArgs, CreateArgs, ExecArgs, LimitsRequest, PublishRequest};
use crate::client::ClientError;
use crate::CliError;
use paddock_api_types::{
    ExecEvent, ExecRequest, PortPublished, Workspace, WorkspaceList, WorkspaceSpec,
};
use serde_json::Value;
use std::io::Write;
use std::process::ExitCode;

pub fn create(ctx: &Ctx, args: CreateArgs) -> Result<(), CliError> {
    let mut spec = WorkspaceSpec::new(args.ttl);
    if let Some(n) = args.vcpus {
        spec.vcpus = n;
    }
    if let Some(n) = args.memory_mib {
        spec.memory_mib = n;
    }
    if let Some(n) = args.disk_mib {
        spec.disk_mib = n;
    }
    spec.labels = args.labels.into_iter().collect();
    spec.env = args.env.into_iter().collect();
    spec.egress = args.allow.egress();
    if let Some(path) = &args.secrets_file {
        spec.secrets = super::secrets::from_file(path)?;
    }
    let body = ctx.send("POST", "/v1/workspaces", &spec)?;
    ctx.show(&body, |w: Workspace| println!("{}", w.id))
}

pub fn ls(ctx: &Ctx, labels: &[String]) -> Result<(), CliError> {
    let q: Vec<String> = labels.iter().map(|l| format!("label={}", enc(l))).collect();
    let body = ctx.call("GET", &format!("/v1/workspaces?{}", q.join("&")))?;
    ctx.show(&body, |list: WorkspaceList| {
        println!(
            "{:<18} {:<8} {:>5} {:>8} {:>8} {:>11}  LABELS",
            "ID", "STATE", "VCPUS", "MEM MiB", "DISK MiB", "EXPIRES"
        );
        for w in list.workspaces {
            // The state as the API names it, not as Rust does.
            let state = match serde_json::to_value(w.state) {
                Ok(Value::String(s)) => s,
                _ => format!("{:?}", w.state),
            };
            let labels: Vec<String> = w.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            println!(
                "{:<18} {:<8} {:>5} {:>8} {:>8} {:>11}  {}",
                w.id,
                state,
                w.vcpus,
                w.memory_mib,
                w.disk_mib,
                w.expires_at,
                labels.join(",")
            );
        }
    })
}

/// Streams the command's output as it comes; the exit code is the
/// command's (128 + the signal that ended it), 1 if it never got one.
pub fn exec(ctx: &Ctx, args: ExecArgs) -> Result<ExitCode, CliError> {
    use base64::Engine as _;
    let req = ExecRequest {
        argv: args.command,
        user: args.root.then(|| "root".to_string()),
        timeout_s: args.timeout,
        ..ExecRequest::default()
    };
    let bytes =
        serde_json::to_vec(&req).map_err(|e| CliError::Api(format!("shaping the request: {e}")))?;
    let mut r = ctx
        .api
        .stream("POST", &ws_path(&args.id, "/exec"), Some(&bytes))?;
    if r.status != 200 || !r.chunked() {
        let body = r.body()?;
        return ok(crate::client::Answer {
            status: r.status,
            body,
        })
        .map(|_| ExitCode::from(1));
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut pending = Vec::new();
    let mut code = 1u8;
    while let Some(chunk) = r.next_chunk()? {
        pending.extend(chunk);
        while let Some(nl) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=nl).collect();
            let event: ExecEvent = serde_json::from_slice(&line).map_err(|e| {
                ClientError::Protocol(format!(
                    "exec stream line {:?}: {e}",
                    String::from_utf8_lossy(&line).trim()
                ))
            })?;
            // Writes to a closed stdout or stderr are not the command's
            // failure; its exit code still counts.
            match event {
                ExecEvent::Stdout { stdout } => {
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(&b64.decode(stdout).unwrap_or_default());
                    let _ = out.flush();
                }
                ExecEvent::Stderr { stderr } => {
                    let _ = std::io::stderr().write_all(&b64.decode(stderr).unwrap_or_default());
                }
                ExecEvent::Error { error, .. } => eprintln!("paddock: exec: {error}"),
                ExecEvent::Started { .. } => {}
                ExecEvent::Exit {
                    exit_code, signal, ..
                } => {
                    if let Some(c) = exit_code {
                        code = u8::try_from(c).unwrap_or(1);
                    } else if let Some(s) = signal {
                        code = u8::try_from(128 + i64::from(s)).unwrap_or(1);
                    }
                }
            }
        }
    }
    Ok(ExitCode::from(code))
}

pub fn cp(ctx: &Ctx, src: &str, dst: &str) -> Result<(), CliError> {
    let remote = |s: &str| {
        s.split_once(":/")
            .map(|(id, p)| (id.to_string(), format!("/{p}")))
    };
    let files = |id: &str, path: &str| ws_path(id, &format!("/files?path={}", enc(path)));
    match (remote(src), remote(dst)) {
        (None, Some((id, path))) => {
            let data = std::fs::read(src).map_err(|e| CliError::Config(format!("{src}: {e}")))?;
            ok(ctx.api.call("PUT", &files(&id, &path), Some(&data))?).map(drop)
        }
        (Some((id, path)), None) => {
            // The client refuses a body that did not all arrive, so a cut
            // download leaves no file rather than a short one.
            let data = ok(ctx.api.call("GET", &files(&id, &path), None)?)?;
            std::fs::write(dst, data).map_err(|e| CliError::Config(format!("{dst}: {e}")))
        }
        _ => Err(CliError::Usage(
            "cp: exactly one of SRC and DST is ID:/path".into(),
        )),
    }
}

pub fn limits(ctx: &Ctx, id: &str, limits: &LimitsRequest) -> Result<(), CliError> {
    let body = ctx.send("POST", &ws_path(id, "/limits"), limits)?;
    ctx.show(&body, |w: Workspace| {
        let l = w.limits;
        println!(
            "{}: disk {} bytes/s, {} ops/s; network {} bytes/s, {} connections/s",
            w.id, l.disk_bytes_per_s, l.disk_ops_per_s, l.net_bytes_per_s, l.net_connections_per_s
        )
    })
}

pub fn egress(ctx: &Ctx, id: &str, allow: AllowArgs) -> Result<(), CliError> {
    let body = ctx.send("PUT", &ws_path(id, "/egress"), &allow.egress())?;
    ctx.show(&body, |w: Workspace| {
        let egress = serde_json::to_string(&w.egress).unwrap_or_default();
        println!("{id}: egress {egress}")
    })
}

pub fn publish(ctx: &Ctx, id: &str, port: &PublishRequest) -> Result<(), CliError> {
    let (body, asked) = ctx.send_or_ask("POST", &ws_path(id, "/ports"), port)?;
    if asked {
        return ctx.show_asked(&body);
    }
    ctx.show(&body, |p: PortPublished| {
        println!(
            "{id} port {} is at the appliance's port {}",
            p.port, p.host_port
        )
    })
}

/// `paddock ttl ID SECONDS`.
pub fn ttl(ctx: &Ctx, id: &str, ttl: &crate::args::TtlArgs) -> Result<(), CliError> {
    let (body, asked) = ctx.send_or_ask("POST", &ws_path(id, "/ttl"), ttl)?;
    if asked {
        return ctx.show_asked(&body);
    }
    ctx.show(&body, |w: Workspace| {
        println!("{id} ends at {}", w.expires_at)
    })
}

pub fn pause(ctx: &Ctx, id: &str, ttl_s: Option<u64>) -> Result<(), CliError> {
    let body = ctx.send(
        "POST",
        &ws_path(id, "/pause"),
        &paddock_api_types::PauseRequest { ttl_s },
    )?;
    ctx.show(&body, |w: Workspace| {
        println!(
            "{id} paused; deleted at {} unless resumed; {} s of its TTL left when resumed",
            w.expires_at,
            w.resume_ttl_s.unwrap_or(0)
        )
    })
}

pub fn resume(ctx: &Ctx, id: &str) -> Result<(), CliError> {
    let body = ctx.call("POST", &ws_path(id, "/resume"))?;
    ctx.show(&body, |w: Workspace| {
        println!("{id} running again; ends at {}", w.expires_at)
    })
}

pub fn quarantine(ctx: &Ctx, id: &str) -> Result<(), CliError> {
    let body = ctx.call("POST", &ws_path(id, "/quarantine"))?;
    ctx.show(&body, |q: paddock_api_types::Quarantined| {
        println!(
            "{} quarantined: frozen, {} token(s) revoked, snapshot of {} bytes of memory and {} of disk",
            q.workspace.id,
            q.revoked_tokens.len(),
            q.snapshot.files.memory.bytes,
            q.snapshot.files.disk.bytes,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testserver::{answer, body_of, serve, Close};
    use paddock_api_types::ExecRequest;
    use std::path::PathBuf;

    fn scratch(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("paddock-cli-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&p);
        p
    }

    #[test]
    fn a_cut_download_leaves_no_file() {
        let dest = scratch("cut");
        let (api, server) = serve(
            answer("200 OK", &["Content-Length: 100"], &[b'x'; 40]),
            Close::Cut,
        );
        let ctx = Ctx { api, json: false };
        let got = cp(&ctx, "ws_1:/tmp/f", &dest.to_string_lossy());
        assert!(
            matches!(
                got,
                Err(CliError::Client(ClientError::ShortBody {
                    expected: 100,
                    received: 40
                }))
            ),
            "{got:?}"
        );
        assert!(!dest.exists(), "a short file was written");
        let request = server.request();
        assert!(
            request.starts_with(b"GET /v1/workspaces/ws_1/files?path=/tmp/f HTTP/1.1\r\n"),
            "{}",
            String::from_utf8_lossy(&request)
        );
    }

    #[test]
    fn a_whole_download_is_saved() {
        let dest = scratch("whole");
        let (api, server) = serve(
            answer("200 OK", &["Content-Length: 11"], b"round trip\n"),
            Close::Cut,
        );
        let got = cp(
            &Ctx { api, json: false },
            "ws_1:/tmp/f",
            &dest.to_string_lossy(),
        );
        assert!(got.is_ok(), "{got:?}");
        server.request();
        assert_eq!(std::fs::read(&dest).ok(), Some(b"round trip\n".to_vec()));
        let _ = std::fs::remove_file(&dest);
    }

    fn exec_answering(lines: &[&str], args: ExecArgs) -> (Result<ExitCode, CliError>, Vec<u8>) {
        let mut body = Vec::new();
        for l in lines {
            body.extend(format!("{:x}\r\n{l}\n\r\n", l.len() + 1).into_bytes());
        }
        body.extend(b"0\r\n\r\n");
        let (api, server) = serve(
            answer("200 OK", &["Transfer-Encoding: chunked"], &body),
            Close::Cut,
        );
        let got = exec(&Ctx { api, json: false }, args);
        (got, server.request())
    }

    fn exec_args(command: &[&str]) -> ExecArgs {
        ExecArgs {
            root: true,
            timeout: Some(5),
            id: "ws_1".into(),
            command: command.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn exec_sends_its_request_and_exits_with_the_commands_code() {
        let (got, request) = exec_answering(
            &[
                r#"{"stdout":"NDUK"}"#,
                r#"{"exit_code":3,"signal":null,"timed_out":false,"duration_ms":12}"#,
            ],
            exec_args(&["sh", "-c", "x"]),
        );
        assert_eq!(got.ok(), Some(ExitCode::from(3)));
        let sent: ExecRequest = serde_json::from_slice(body_of(&request)).expect("an ExecRequest");
        assert_eq!(sent.argv, ["sh", "-c", "x"]);
        assert_eq!(
            (sent.user.as_deref(), sent.timeout_s),
            (Some("root"), Some(5))
        );
        let (got, _) = exec_answering(
            &[r#"{"exit_code":null,"signal":9,"timed_out":true,"duration_ms":5000}"#],
            exec_args(&["sleep", "9"]),
        );
        assert_eq!(got.ok(), Some(ExitCode::from(137)));
        let (got, _) = exec_answering(
            &[r#"{"error":"no agent","duration_ms":1}"#],
            exec_args(&["true"]),
        );
        assert_eq!(got.ok(), Some(ExitCode::from(1)));
        let (got, _) = exec_answering(&[r#"{"progress":1}"#], exec_args(&["true"]));
        assert!(
            matches!(got, Err(CliError::Client(ClientError::Protocol(_)))),
            "{got:?}"
        );
    }

    #[test]
    fn a_cut_exec_stream_is_an_error() {
        let line = r#"{"stdout":"NDUK"}"#;
        let body = format!("{:x}\r\n{line}\n\r\n", line.len() + 1);
        let (api, server) = serve(
            answer("200 OK", &["Transfer-Encoding: chunked"], body.as_bytes()),
            Close::Cut,
        );
        let got = exec(&Ctx { api, json: false }, exec_args(&["true"]));
        server.request();
        assert!(
            matches!(got, Err(CliError::Client(ClientError::Cut(_)))),
            "{got:?}"
        );
    }

    #[test]
    fn create_sends_a_workspace_spec() {
        let secrets = scratch("secrets.json");
        std::fs::write(
            &secrets,
            r#"{"API_KEY": {"value": "sk-1", "hosts": ["api.example.com"], "header": "Authorization"}}"#,
        )
        .expect("secrets file");
        let (api, server) = serve(
            answer("201 Created", &["Content-Length: 2"], b"{}"),
            Close::Notify,
        );
        let args = CreateArgs {
            ttl: 900,
            vcpus: None,
            memory_mib: Some(256),
            disk_mib: None,
            labels: vec![("via".into(), "cli".into())],
            env: vec![("K".into(), "V".into())],
            allow: AllowArgs {
                domains: vec!["pypi.org".into()],
                cidrs: vec![],
            },
            secrets_file: Some(secrets.clone()),
        };
        // --json: the answer is printed as sent, not read as a Workspace.
        let got = create(&Ctx { api, json: true }, args);
        assert!(got.is_ok(), "{got:?}");
        let request = server.request();
        let sent: WorkspaceSpec =
            serde_json::from_slice(body_of(&request)).expect("a WorkspaceSpec");
        let mut want = WorkspaceSpec::new(900);
        want.memory_mib = 256;
        want.labels.insert("via".into(), "cli".into());
        want.env.insert("K".into(), "V".into());
        want.egress.domains.push("pypi.org".into());
        want.secrets.insert(
            "API_KEY".into(),
            paddock_api_types::SecretSpec {
                value: "sk-1".into(),
                hosts: vec!["api.example.com".into()],
                header: Some("Authorization".into()),
                format: None,
                replace_in: vec![paddock_api_types::SecretPlace::Headers],
                allow_plain_http: false,
                upstream_ca: None,
            },
        );
        assert_eq!(sent, want);
        let _ = std::fs::remove_file(&secrets);
    }

    #[test]
    fn an_error_answer_is_the_apis_error() {
        let (api, server) = serve(
            answer(
                "404 Not Found",
                &["Content-Length: 31"],
                br#"{"error":"no such workspace x"}"#,
            ),
            Close::Notify,
        );
        let got = ls(&Ctx { api, json: false }, &["a=b".into()]);
        let request = server.request();
        assert!(
            request.starts_with(b"GET /v1/workspaces?label=a%3Db "),
            "{}",
            String::from_utf8_lossy(&request)
        );
        assert_eq!(
            got.err().map(|e| e.to_string()).as_deref(),
            Some("404: no such workspace x")
        );
    }
}
