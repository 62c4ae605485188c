//! Brokered secrets: `paddock secrets ID` (`GET .../secrets`), `paddock
//! secret set|rm` (`PUT`/`DELETE .../secrets/{name}`) and the
//! `--secrets-file` of `create`.
//!
//! A secret's value never comes from an argument (argv is visible to every
//! process on the operator's machine and lands in shell history): it is
//! read from stdin or a file, and no error message here repeats it.

use super::{enc, ok, ws_path, Ctx};
use crate::args::{SecretCommand, SecretSetArgs, SecretsArgs};
use crate::CliError;
use paddock_api_types::{Secret, SecretList, SecretPlace, SecretRemoved, SecretSpec};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Read};
use std::path::Path;

/// More than any value, CA or secrets file the API takes; reading stops
/// there so a wrong file (a disk image, /dev/zero) fails at once.
const MAX_INPUT: u64 = 1 << 20;

/// `paddock secrets ID [--ca]`.
pub fn list(ctx: &Ctx, args: &SecretsArgs) -> Result<(), CliError> {
    let body = ctx.call("GET", &ws_path(&args.id, "/secrets"))?;
    if args.ca {
        // A PEM file either way: --json would only wrap it in quotes.
        let list: SecretList = super::parse(&body)?;
        print!("{}", list.egress_ca);
        if !list.egress_ca.ends_with('\n') {
            println!();
        }
        return Ok(());
    }
    ctx.show(&body, |list: SecretList| {
        if list.secrets.is_empty() {
            println!("{}: no brokered secrets", args.id);
            return;
        }
        println!(
            "{:<24} {:<32} {:<16} {:<40} UPDATED",
            "NAME", "HOSTS", "HEADER", "PLACEHOLDER"
        );
        for s in &list.secrets {
            println!("{}", secret_line(s));
        }
    })
}

/// One row of `paddock secrets`: what a person needs to tell secrets apart
/// and find them in a workspace, never a value.
fn secret_line(s: &Secret) -> String {
    let mut hosts = s.hosts.join(",");
    if s.allow_plain_http {
        hosts.push_str(" (+http)");
    }
    let header = match (&s.header, &s.format) {
        (Some(h), Some(f)) => format!("{h}: {f}"),
        (Some(h), None) => h.clone(),
        (None, _) => "-".into(),
    };
    format!(
        "{:<24} {:<32} {:<16} {:<40} {}",
        s.name, hosts, header, s.placeholder, s.updated_at
    )
}

pub fn secret(ctx: &Ctx, cmd: SecretCommand) -> Result<(), CliError> {
    match cmd {
        SecretCommand::Set(args) => set(ctx, args),
        SecretCommand::Rm { id, name } => {
            let body = ctx.call("DELETE", &secret_path(&id, &name))?;
            ctx.show(&body, |r: SecretRemoved| {
                println!("{}: removed {}", r.workspace, r.removed)
            })
        }
    }
}

/// The name is one path segment: its '/' encoded too (`enc` keeps them).
fn secret_path(id: &str, name: &str) -> String {
    ws_path(id, &format!("/secrets/{}", enc(name).replace('/', "%2F")))
}

/// `paddock secret set ID NAME ...`: 201 when it was added, 200 when an
/// existing one was rotated.
fn set(ctx: &Ctx, args: SecretSetArgs) -> Result<(), CliError> {
    let value = match &args.value_file {
        Some(path) => read_value(&read_input(path)?, &path.display().to_string())?,
        None => {
            if std::io::stdin().is_terminal() {
                // Typing it shows it on the screen; a pipe does not.
                eprintln!(
                    "paddock: the value of {} from stdin (end with Ctrl-D; it echoes: prefer a pipe or --value-file)",
                    args.name
                );
            }
            read_value(&read_stdin()?, "stdin")?
        }
    };
    let upstream_ca = match &args.upstream_ca {
        Some(path) => Some(upstream_ca(&read_input(path)?, path)?),
        None => None,
    };
    let (id, name) = (args.id.clone(), args.name.clone());
    let spec = spec_of(args, value, upstream_ca);
    let bytes = serde_json::to_vec(&spec)
        .map_err(|e| CliError::Api(format!("shaping the request: {e}")))?;
    let answer = ctx
        .api
        .call("PUT", &secret_path(&id, &name), Some(&bytes))?;
    let added = answer.status == 201;
    let body = ok(answer)?;
    ctx.show(&body, |s: Secret| {
        println!(
            "{id}: {} {}: ${} holds {}; the proxy sends the value to {}",
            if added { "added" } else { "rotated" },
            s.name,
            s.name,
            s.placeholder,
            s.hosts.join(", ")
        )
    })
}

/// The body of `PUT .../secrets/{name}` from the flags.
fn spec_of(args: SecretSetArgs, value: String, upstream_ca: Option<String>) -> SecretSpec {
    SecretSpec {
        value,
        hosts: args.hosts,
        header: args.header,
        format: args.format,
        // Left out, the API's default; said here so the body is whole.
        replace_in: if args.replace_in.is_empty() {
            vec![SecretPlace::Headers]
        } else {
            args.replace_in
        },
        allow_plain_http: args.allow_plain_http,
        upstream_ca,
    }
}

/// A value as read from stdin or a file: UTF-8, one trailing newline
/// dropped (what `echo` and editors add), not empty.
fn read_value(raw: &[u8], from: &str) -> Result<String, CliError> {
    let text = std::str::from_utf8(raw)
        .map_err(|_| CliError::Usage(format!("the secret's value from {from} is not UTF-8")))?;
    let text = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(text);
    if text.is_empty() {
        return Err(CliError::Usage(format!(
            "the secret's value from {from} is empty"
        )));
    }
    Ok(text.to_string())
}

fn upstream_ca(raw: &[u8], path: &Path) -> Result<String, CliError> {
    match std::str::from_utf8(raw) {
        Ok(pem) if pem.contains("-----BEGIN CERTIFICATE-----") => Ok(pem.to_string()),
        _ => Err(CliError::Usage(format!(
            "{}: not PEM certificates (-----BEGIN CERTIFICATE-----)",
            path.display()
        ))),
    }
}

fn read_stdin() -> Result<Vec<u8>, CliError> {
    read_capped(std::io::stdin().lock(), "stdin")
}

/// A file's bytes, or stdin's for `-`.
fn read_input(path: &Path) -> Result<Vec<u8>, CliError> {
    if path == Path::new("-") {
        return read_stdin();
    }
    let f = std::fs::File::open(path)
        .map_err(|e| CliError::Config(format!("{}: {e}", path.display())))?;
    read_capped(f, &path.display().to_string())
}

fn read_capped(r: impl Read, from: &str) -> Result<Vec<u8>, CliError> {
    let mut out = Vec::new();
    r.take(MAX_INPUT + 1)
        .read_to_end(&mut out)
        .map_err(|e| CliError::Config(format!("reading {from}: {e}")))?;
    if out.len() as u64 > MAX_INPUT {
        return Err(CliError::Usage(format!(
            "{from}: more than {MAX_INPUT} bytes"
        )));
    }
    Ok(out)
}

/// `create --secrets-file FILE`: the `secrets` of a workspace spec.
pub fn from_file(path: &Path) -> Result<BTreeMap<String, SecretSpec>, CliError> {
    parse_secrets(&read_input(path)?, &path.display().to_string())
}

fn parse_secrets(raw: &[u8], from: &str) -> Result<BTreeMap<String, SecretSpec>, CliError> {
    let secrets: BTreeMap<String, SecretSpec> = serde_json::from_slice(raw).map_err(|e| {
        CliError::Usage(format!(
            "{from}: not a JSON object of NAME: {{\"value\": ..., \"hosts\": [...], ...}}: {}",
            json_error(&e)
        ))
    })?;
    if let Some(name) = secrets
        .iter()
        .find_map(|(n, s)| s.value.is_empty().then_some(n))
    {
        return Err(CliError::Usage(format!(
            "{from}: the value of {name} is empty"
        )));
    }
    Ok(secrets)
}

/// serde's message, unless it quotes a string of the file: that string
/// could be a value put where a host list belongs, and errors end up in
/// terminals, logs and CI output.
fn json_error(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    if msg.contains('"') {
        format!(
            "a value of the wrong type at line {} column {}",
            e.line(),
            e.column()
        )
    } else {
        msg
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testserver::{answer, body_of, serve, Close};

    #[test]
    fn a_value_loses_one_trailing_newline_and_may_not_be_empty() {
        assert_eq!(read_value(b"sk-1\n", "stdin").ok().as_deref(), Some("sk-1"));
        assert_eq!(read_value(b"sk-1\r\n", "f").ok().as_deref(), Some("sk-1"));
        assert_eq!(read_value(b"sk-1\n\n", "f").ok().as_deref(), Some("sk-1\n"));
        assert_eq!(read_value(b" sk 1 ", "f").ok().as_deref(), Some(" sk 1 "));
        for empty in [&b""[..], b"\n", b"\r\n"] {
            let got = read_value(empty, "stdin");
            assert!(
                matches!(&got, Err(CliError::Usage(m)) if m.contains("empty")),
                "{empty:?}: {got:?}"
            );
        }
        assert!(matches!(
            read_value(b"\xff\xfe", "f"),
            Err(CliError::Usage(_))
        ));
        let big = vec![b'x'; MAX_INPUT as usize + 1];
        assert!(matches!(
            read_capped(&big[..], "stdin"),
            Err(CliError::Usage(_))
        ));
    }

    #[test]
    fn a_secrets_file_is_a_map_of_specs_and_errors_never_quote_it() {
        let got = parse_secrets(
            br#"{"GH": {"value": "ghp_x", "hosts": ["api.github.com"], "header": "Authorization", "format": "token {}"}}"#,
            "f.json",
        )
        .expect("a secrets file");
        let gh = &got["GH"];
        assert_eq!(
            (gh.value.as_str(), gh.hosts.as_slice()),
            ("ghp_x", &["api.github.com".to_string()][..])
        );
        assert_eq!(gh.replace_in, [SecretPlace::Headers]);
        for bad in [
            &br#"{"K": {"value": "s3cr3t-value", "hosts": "s3cr3t-value"}}"#[..],
            br#"{"K": {"value": "s3cr3t-value"}}"#,
            br#"{"K": {"value": "s3cr3t-value", "hosts": [], "bogus": 1}}"#,
            br#"["s3cr3t-value"]"#,
            b"{",
        ] {
            let msg = parse_secrets(bad, "f.json")
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(msg.starts_with("f.json: "), "{msg}");
            assert!(!msg.contains("s3cr3t"), "{msg}");
        }
        let empty = parse_secrets(br#"{"K": {"value": "", "hosts": ["a.example"]}}"#, "f");
        assert!(matches!(empty, Err(CliError::Usage(m)) if m.contains("K is empty")));
    }

    fn set_args(replace_in: Vec<SecretPlace>) -> SecretSetArgs {
        SecretSetArgs {
            id: "ws_1".into(),
            name: "API_KEY".into(),
            hosts: vec!["api.example.com".into()],
            header: Some("Authorization".into()),
            format: Some("Bearer {}".into()),
            replace_in,
            allow_plain_http: false,
            upstream_ca: None,
            value_file: None,
        }
    }

    #[test]
    fn set_sends_a_secret_spec_from_a_file_and_reads_added_or_rotated() {
        let dir = std::env::temp_dir().join(format!("paddock-cli-secret-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let value = dir.join("value");
        std::fs::write(&value, "sk-123\n").expect("value file");
        let shown = r#"{"name":"API_KEY","placeholder":"PADDOCK_SECRET_x","hosts":["api.example.com"],"header":"Authorization","format":"Bearer {}","replace_in":["headers","query"],"allow_plain_http":false,"upstream_ca":false,"updated_at":5}"#;
        let (api, server) = serve(
            answer(
                "201 Created",
                &[&format!("Content-Length: {}", shown.len())],
                shown.as_bytes(),
            ),
            Close::Notify,
        );
        let mut args = set_args(vec![SecretPlace::Headers, SecretPlace::Query]);
        args.value_file = Some(value);
        let got = set(&Ctx { api, json: false }, args);
        assert!(got.is_ok(), "{got:?}");
        let request = server.request();
        assert!(
            request.starts_with(b"PUT /v1/workspaces/ws_1/secrets/API_KEY HTTP/1.1\r\n"),
            "{}",
            String::from_utf8_lossy(&request)
        );
        let sent: SecretSpec = serde_json::from_slice(body_of(&request)).expect("a SecretSpec");
        let want = spec_of(
            set_args(vec![SecretPlace::Headers, SecretPlace::Query]),
            "sk-123".into(),
            None,
        );
        assert_eq!(sent, want);
        // Without --replace-in, the API's default is sent.
        let spec = spec_of(set_args(vec![]), "v".into(), None);
        assert_eq!(spec.replace_in, [SecretPlace::Headers]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_listed_secret_shows_its_hosts_header_and_placeholder() {
        let s: Secret = serde_json::from_str(
            r#"{"name":"API_KEY","placeholder":"PADDOCK_SECRET_ab","hosts":["a.example","b.example"],"header":"Authorization","format":"Bearer {}","replace_in":["headers"],"allow_plain_http":true,"upstream_ca":false,"updated_at":1700000000}"#,
        )
        .expect("a Secret");
        let line = secret_line(&s);
        for part in [
            "API_KEY",
            "a.example,b.example (+http)",
            "Authorization: Bearer {}",
            "PADDOCK_SECRET_ab",
            "1700000000",
        ] {
            assert!(line.contains(part), "{part} not in {line:?}");
        }
        let bare = Secret {
            header: None,
            format: None,
            allow_plain_http: false,
            ..s
        };
        assert!(secret_line(&bare).contains(" - "), "{}", secret_line(&bare));
        assert_eq!(
            secret_path("ws 1", "A/B"),
            "/v1/workspaces/ws%201/secrets/A%2FB"
        );
    }

    #[test]
    fn an_upstream_ca_must_look_like_pem() {
        let p = Path::new("ca.pem");
        assert!(upstream_ca(
            b"-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----\n",
            p
        )
        .is_ok());
        assert!(matches!(
            upstream_ca(b"not a cert", p),
            Err(CliError::Usage(_))
        ));
    }
}
