//! paddock: the command-line client for a Paddock appliance.

mod client;
mod pinned;

use client::{parse_url, Api, ClientError};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
usage: paddock [--json] COMMAND ...
  login URL TOKEN --fingerprint SHA256   pin the appliance (fingerprint from its console) and save the token
  create [--ttl S] [--vcpus N] [--memory-mib N] [--disk-mib N] [--label K=V]... [--env K=V]...
         [--allow DOMAIN[:PORTS]]... [--allow-cidr NET:PORTS]...   what it may reach (default nothing)
  ls [--label K=V]...
  exec [--root] [--timeout S] ID -- COMMAND [ARG]...   streams output, exits with the command's code
  cp SRC DST                             one side is ID:/path inside the workspace
  stop ID | rm ID
  limits ID [--disk-mib-per-s N] [--disk-iops N] [--net-mib-per-s N] [--net-connections-per-s N]
                                         new rate limits for a running workspace (admin)
  egress ID [--allow DOMAIN[:PORTS]]... [--allow-cidr NET:PORTS]...   replace its allowlist (admin;
                                         none given: it reaches nothing)
  link ls | link add FROM TO PORT | link rm LINK   private links: FROM may connect to TO on PORT (admin)
  publish ID PORT [--host-port N] | unpublish ID PORT   reach a workspace port from the uplink (admin)
  quarantine ID                          freeze it, revoke its tokens, take a forensic snapshot (admin)
  forensics ID manifest|memory|disk|audit DEST   download a snapshot file, checked against its manifest
  forensics rm ID                        delete a snapshot (nothing else ever does)
  token create NAME --scope S... [--ttl S] [--label K=V]... | token ls | token revoke ID
  token rotate ID                        a new secret for it (tok_bootstrap: the admin credential)
  tls rotate                             a new TLS certificate for the API; pin its fingerprint again
  keys                                   how the disk keys are held (sealed to the TPM, locked, ...)
  keys recover                           re-seal locked disk keys to this boot state; reads the
                                         recovery secret from stdin
  events [--workspace ID] [--event NAME] [--limit N]
The configuration lives in $PADDOCK_CONFIG (default ~/.config/paddock/config.json).";

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error("{0}\n\n{USAGE}")]
    Usage(String),
    #[error("{0}")]
    Client(#[from] ClientError),
    #[error("{0}")]
    Api(String),
    #[error("{0}")]
    Config(String),
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Config {
    url: String,
    token: String,
    fingerprint: String,
}

fn config_path() -> PathBuf {
    if let Some(p) = std::env::var_os("PADDOCK_CONFIG") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".config/paddock/config.json")
}

fn load() -> Result<Api, CliError> {
    let p = config_path();
    let text = std::fs::read_to_string(&p).map_err(|e| {
        CliError::Config(format!("{}: {e} (run `paddock login` first)", p.display()))
    })?;
    let c: Config = serde_json::from_str(&text)
        .map_err(|e| CliError::Config(format!("{}: {e}", p.display())))?;
    let (host, port) = parse_url(&c.url)?;
    Ok(Api {
        host,
        port,
        token: c.token,
        pin: pinned::Pinned::new(Some(c.fingerprint)),
    })
}

fn save(c: &Config) -> Result<(), CliError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let p = config_path();
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d)
            .map_err(|e| CliError::Config(format!("{}: {e}", d.display())))?;
    }
    let text = serde_json::to_string_pretty(
        &json!({"url": c.url, "token": c.token, "fingerprint": c.fingerprint}),
    )
    .unwrap_or_default();
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&p)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| CliError::Config(format!("{}: {e}", p.display())))
}

fn ok(status: u16, body: Value) -> Result<Value, CliError> {
    if (200..300).contains(&status) {
        Ok(body)
    } else {
        let msg = body
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| body.to_string());
        Err(CliError::Api(format!("{status}: {msg}")))
    }
}

fn kv(s: &str, flag: &str) -> Result<(String, String), CliError> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| CliError::Usage(format!("{flag} takes KEY=VALUE, not {s:?}")))
}

fn value<'a>(args: &'a [String], i: &mut usize, flag: &str) -> Result<&'a str, CliError> {
    *i += 1;
    args.get(*i)
        .map(String::as_str)
        .ok_or_else(|| CliError::Usage(format!("{flag} needs a value")))
}

fn number(s: &str, flag: &str) -> Result<u64, CliError> {
    s.parse()
        .map_err(|_| CliError::Usage(format!("{flag}: {s:?} is not a number")))
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_./~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn print(json_out: bool, v: &Value, human: impl FnOnce(&Value)) {
    if json_out {
        println!("{v}");
    } else {
        human(v);
    }
}

fn login(args: &[String]) -> Result<(), CliError> {
    let (mut url, mut token, mut fp) = (None, None, None);
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--fingerprint" => fp = Some(value(args, &mut i, "--fingerprint")?.to_string()),
            a if url.is_none() => url = Some(a.to_string()),
            a if token.is_none() => token = Some(a.to_string()),
            a => return Err(CliError::Usage(format!("unexpected {a:?}"))),
        }
        i += 1;
    }
    let (Some(url), Some(token)) = (url, token) else {
        return Err(CliError::Usage("login needs URL and TOKEN".into()));
    };
    let (host, port) = parse_url(&url)?;
    let want = match fp.as_deref().map(pinned::normalise) {
        Some(Some(f)) => f,
        Some(None) => {
            return Err(CliError::Usage(
                "--fingerprint: 32 hex bytes, with or without colons".into(),
            ))
        }
        None => {
            let pin = pinned::Pinned::new(None);
            let api = Api {
                host,
                port,
                token: String::new(),
                pin: pin.clone(),
            };
            api.call("GET", "/v1/health", None)?;
            let seen = pin
                .seen
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .unwrap_or_default();
            return Err(CliError::Usage(format!("the appliance presents certificate {seen}; compare it with its console, then run again with --fingerprint {seen}")));
        }
    };
    let api = Api {
        host,
        port,
        token: token.clone(),
        pin: pinned::Pinned::new(Some(want.clone())),
    };
    let (status, body) = api.call("GET", "/v1/workspaces", None)?;
    if status == 401 {
        return Err(CliError::Api(format!(
            "401: {}",
            body.get("error")
                .and_then(Value::as_str)
                .unwrap_or("token refused")
        )));
    }
    save(&Config {
        url,
        token,
        fingerprint: want.clone(),
    })?;
    println!(
        "logged in; certificate {want} pinned in {}",
        config_path().display()
    );
    Ok(())
}

fn create(api: &Api, args: &[String], json_out: bool) -> Result<(), CliError> {
    let mut spec = json!({"ttl_s": 3600});
    let (mut labels, mut env) = (serde_json::Map::new(), serde_json::Map::new());
    let (mut domains, mut cidrs) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i < args.len() {
        let flag = args[i].clone();
        match flag.as_str() {
            "--ttl" => spec["ttl_s"] = json!(number(value(args, &mut i, &flag)?, &flag)?),
            "--vcpus" => spec["vcpus"] = json!(number(value(args, &mut i, &flag)?, &flag)?),
            "--memory-mib" => {
                spec["memory_mib"] = json!(number(value(args, &mut i, &flag)?, &flag)?)
            }
            "--disk-mib" => spec["disk_mib"] = json!(number(value(args, &mut i, &flag)?, &flag)?),
            "--label" => {
                let (k, v) = kv(value(args, &mut i, &flag)?, &flag)?;
                labels.insert(k, json!(v));
            }
            "--env" => {
                let (k, v) = kv(value(args, &mut i, &flag)?, &flag)?;
                env.insert(k, json!(v));
            }
            "--allow" => domains.push(json!(value(args, &mut i, &flag)?)),
            "--allow-cidr" => cidrs.push(json!(value(args, &mut i, &flag)?)),
            other => return Err(CliError::Usage(format!("create: unknown {other:?}"))),
        }
        i += 1;
    }
    spec["egress"] = json!({"domains": domains, "cidrs": cidrs});
    spec["labels"] = Value::Object(labels);
    spec["env"] = Value::Object(env);
    let (s, b) = api.call("POST", "/v1/workspaces", Some(&spec))?;
    let ws = ok(s, b)?;
    print(json_out, &ws, |w| {
        println!("{}", w["id"].as_str().unwrap_or(""))
    });
    Ok(())
}

fn egress(api: &Api, args: &[String], json_out: bool) -> Result<(), CliError> {
    let (id, args) = args
        .split_first()
        .ok_or_else(|| CliError::Usage("egress takes a workspace id".into()))?;
    let (mut domains, mut cidrs) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i < args.len() {
        let flag = args[i].clone();
        match flag.as_str() {
            "--allow" => domains.push(json!(value(args, &mut i, &flag)?)),
            "--allow-cidr" => cidrs.push(json!(value(args, &mut i, &flag)?)),
            other => return Err(CliError::Usage(format!("egress: unknown {other:?}"))),
        }
        i += 1;
    }
    let body = json!({"domains": domains, "cidrs": cidrs});
    let (s, b) = api.call(
        "PUT",
        &format!("/v1/workspaces/{}/egress", enc(id)),
        Some(&body),
    )?;
    let v = ok(s, b)?;
    print(json_out, &v, |v| println!("{}: egress {}", id, v["egress"]));
    Ok(())
}

fn link(api: &Api, args: &[String], json_out: bool) -> Result<(), CliError> {
    let v = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["ls"] => {
            let (s, b) = api.call("GET", "/v1/links", None)?;
            ok(s, b)?
        }
        ["add", from, to, port] => {
            let port: u16 = port.parse().map_err(|_| {
                CliError::Usage(format!("link add: port {port:?} is not 1 to 65535"))
            })?;
            let body = json!({"from": from, "to": to, "port": port});
            let (s, b) = api.call("POST", "/v1/links", Some(&body))?;
            ok(s, b)?
        }
        ["rm", id] => {
            let (s, b) = api.call("DELETE", &format!("/v1/links/{}", enc(id)), None)?;
            ok(s, b)?
        }
        _ => {
            return Err(CliError::Usage(
                "link ls | link add FROM TO PORT | link rm LINK".into(),
            ))
        }
    };
    print(json_out, &v, |v| {
        let show = |l: &Value| {
            println!(
                "{}  {} -> {}:{} ({})",
                l["id"].as_str().unwrap_or("?"),
                l["from"].as_str().unwrap_or("?"),
                l["to"].as_str().unwrap_or("?"),
                l["port"],
                l["to_address"].as_str().unwrap_or("no address")
            )
        };
        match v.get("links").and_then(Value::as_array) {
            Some(all) => all.iter().for_each(show),
            None if v.get("deleted").is_some() => println!("removed {}", v["deleted"]),
            None => show(v),
        }
    });
    Ok(())
}

fn ls(api: &Api, args: &[String], json_out: bool) -> Result<(), CliError> {
    let mut q = Vec::new();
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--label" => q.push(format!("label={}", enc(value(args, &mut i, "--label")?))),
            other => return Err(CliError::Usage(format!("ls: unknown {other:?}"))),
        }
        i += 1;
    }
    let (s, b) = api.call("GET", &format!("/v1/workspaces?{}", q.join("&")), None)?;
    let v = ok(s, b)?;
    print(json_out, &v, |v| {
        println!(
            "{:<18} {:<8} {:>5} {:>8} {:>8} {:>11}  LABELS",
            "ID", "STATE", "VCPUS", "MEM MiB", "DISK MiB", "EXPIRES"
        );
        for w in v["workspaces"].as_array().into_iter().flatten() {
            let labels: Vec<String> = w["labels"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect();
            println!(
                "{:<18} {:<8} {:>5} {:>8} {:>8} {:>11}  {}",
                w["id"].as_str().unwrap_or(""),
                w["state"].as_str().unwrap_or(""),
                w["vcpus"],
                w["memory_mib"],
                w["disk_mib"],
                w["expires_at"],
                labels.join(",")
            );
        }
    });
    Ok(())
}

fn exec(api: &Api, args: &[String]) -> Result<ExitCode, CliError> {
    use base64::Engine as _;
    use std::io::Write;
    let split = args
        .iter()
        .position(|a| a == "--")
        .ok_or_else(|| CliError::Usage("exec: put the command after --".into()))?;
    let (opts, cmd) = (&args[..split], &args[split + 1..]);
    if cmd.is_empty() {
        return Err(CliError::Usage("exec: no command after --".into()));
    }
    let mut body = json!({"argv": cmd});
    let mut id = None;
    let mut i = 0;
    while i < opts.len() {
        match opts[i].as_str() {
            "--root" => body["user"] = json!("root"),
            "--timeout" => {
                body["timeout_s"] = json!(number(value(opts, &mut i, "--timeout")?, "--timeout")?)
            }
            a if id.is_none() => id = Some(a.to_string()),
            a => return Err(CliError::Usage(format!("exec: unexpected {a:?}"))),
        }
        i += 1;
    }
    let id = id.ok_or_else(|| CliError::Usage("exec: which workspace?".into()))?;
    let bytes = body.to_string().into_bytes();
    let mut r = api.request(
        "POST",
        &format!("/v1/workspaces/{}/exec", enc(&id)),
        Some(&bytes),
    )?;
    if r.status != 200 || !r.chunked {
        let b = r.body()?;
        let v: Value = serde_json::from_slice(&b).unwrap_or(Value::Null);
        return ok(r.status, v).map(|_| ExitCode::from(1));
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut pending = Vec::new();
    let mut code = 1u8;
    while let Some(chunk) = r.next_chunk()? {
        pending.extend(chunk);
        while let Some(nl) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=nl).collect();
            let v: Value =
                serde_json::from_slice(&line).map_err(|e| ClientError::Protocol(e.to_string()))?;
            if let Some(d) = v.get("stdout").and_then(Value::as_str) {
                let _ = std::io::stdout().write_all(&b64.decode(d).unwrap_or_default());
                let _ = std::io::stdout().flush();
            } else if let Some(d) = v.get("stderr").and_then(Value::as_str) {
                let _ = std::io::stderr().write_all(&b64.decode(d).unwrap_or_default());
            } else if let Some(e) = v.get("error").and_then(Value::as_str) {
                eprintln!("paddock: exec: {e}");
            } else if let Some(c) = v.get("exit_code").and_then(Value::as_i64) {
                code = u8::try_from(c).unwrap_or(1);
            } else if let Some(s) = v.get("signal").and_then(Value::as_i64) {
                code = u8::try_from(128 + s).unwrap_or(1);
            }
        }
    }
    Ok(ExitCode::from(code))
}

fn cp(api: &Api, args: &[String]) -> Result<(), CliError> {
    let [src, dst] = args else {
        return Err(CliError::Usage("cp takes SRC and DST".into()));
    };
    let remote = |s: &str| {
        s.split_once(":/")
            .map(|(id, p)| (id.to_string(), format!("/{p}")))
    };
    match (remote(src), remote(dst)) {
        (None, Some((id, path))) => {
            let data = std::fs::read(src).map_err(|e| CliError::Config(format!("{src}: {e}")))?;
            let mut r = api.request(
                "PUT",
                &format!("/v1/workspaces/{}/files?path={}", enc(&id), enc(&path)),
                Some(&data),
            )?;
            let v: Value = serde_json::from_slice(&r.body()?).unwrap_or(Value::Null);
            ok(r.status, v).map(|_| ())
        }
        (Some((id, path)), None) => {
            let mut r = api.request(
                "GET",
                &format!("/v1/workspaces/{}/files?path={}", enc(&id), enc(&path)),
                None,
            )?;
            let body = r.body()?;
            if r.status != 200 {
                return ok(
                    r.status,
                    serde_json::from_slice(&body).unwrap_or(Value::Null),
                )
                .map(|_| ());
            }
            std::fs::write(dst, body).map_err(|e| CliError::Config(format!("{dst}: {e}")))
        }
        _ => Err(CliError::Usage(
            "cp: exactly one of SRC and DST is ID:/path".into(),
        )),
    }
}

/// Downloads one file of a forensic snapshot to `dest`; every file but the
/// manifest is checked against the SHA-256 the manifest records.
fn forensics(api: &Api, args: &[String], json_out: bool) -> Result<(), CliError> {
    if let [rm, id] = args {
        if rm == "rm" {
            let (s, b) = api.call(
                "DELETE",
                &format!("/v1/workspaces/{}/forensics", enc(id)),
                None,
            )?;
            return ok(s, b).map(|_| ());
        }
    }
    let [id, name, dest] = args else {
        return Err(CliError::Usage(
            "forensics ID manifest|memory|disk|audit DEST, or forensics rm ID".into(),
        ));
    };
    let fetch = |what: &str| -> Result<Vec<u8>, CliError> {
        let mut r = api.request(
            "GET",
            &format!("/v1/workspaces/{}/forensics/{}", enc(id), enc(what)),
            None,
        )?;
        let body = r.body()?;
        if r.status != 200 {
            ok(
                r.status,
                serde_json::from_slice(&body).unwrap_or(Value::Null),
            )?;
        }
        Ok(body)
    };
    let data = fetch(name)?;
    if name != "manifest" {
        let manifest: Value = serde_json::from_slice(&fetch("manifest")?)
            .map_err(|e| CliError::Api(format!("the snapshot's manifest: {e}")))?;
        let want = manifest["files"][name.as_str()]["sha256"]
            .as_str()
            .unwrap_or_default()
            .to_string();
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
    std::fs::write(dest, &data).map_err(|e| CliError::Config(format!("{dest}: {e}")))?;
    let v = json!({"file": name, "bytes": data.len(), "saved": dest});
    print(json_out, &v, |_| {
        println!("{name}: {} bytes saved to {dest}", data.len())
    });
    Ok(())
}

fn token(api: &Api, args: &[String], json_out: bool) -> Result<(), CliError> {
    match args.first().map(String::as_str) {
        Some("create") => {
            let name = args
                .get(1)
                .ok_or_else(|| CliError::Usage("token create NAME".into()))?;
            let mut req = json!({"name": name, "scopes": []});
            let mut labels = serde_json::Map::new();
            let mut i = 2;
            while i < args.len() {
                let flag = args[i].clone();
                match flag.as_str() {
                    "--scope" => {
                        let s = value(args, &mut i, &flag)?.to_string();
                        if let Some(a) = req["scopes"].as_array_mut() {
                            a.push(json!(s));
                        }
                    }
                    "--ttl" => req["ttl_s"] = json!(number(value(args, &mut i, &flag)?, &flag)?),
                    "--label" => {
                        let (k, v) = kv(value(args, &mut i, &flag)?, &flag)?;
                        labels.insert(k, json!(v));
                    }
                    other => {
                        return Err(CliError::Usage(format!("token create: unknown {other:?}")))
                    }
                }
                i += 1;
            }
            req["labels"] = Value::Object(labels);
            let (s, b) = api.call("POST", "/v1/tokens", Some(&req))?;
            let v = ok(s, b)?;
            print(json_out, &v, |v| {
                println!(
                    "{}  {}  (the secret is shown once)",
                    v["id"].as_str().unwrap_or(""),
                    v["secret"].as_str().unwrap_or("")
                )
            });
            Ok(())
        }
        Some("ls") => {
            let (s, b) = api.call("GET", "/v1/tokens", None)?;
            let v = ok(s, b)?;
            print(json_out, &v, |v| {
                for t in v["tokens"].as_array().into_iter().flatten() {
                    println!(
                        "{:<22} {:<20} {:<8} {}",
                        t["id"].as_str().unwrap_or(""),
                        t["name"].as_str().unwrap_or(""),
                        if t["revoked"] == true {
                            "revoked"
                        } else {
                            "active"
                        },
                        t["scopes"]
                    );
                }
            });
            Ok(())
        }
        Some("revoke") => {
            let id = args
                .get(1)
                .ok_or_else(|| CliError::Usage("token revoke ID".into()))?;
            let (s, b) = api.call("DELETE", &format!("/v1/tokens/{}", enc(id)), None)?;
            ok(s, b).map(|_| ())
        }
        Some("rotate") => {
            let id = args
                .get(1)
                .ok_or_else(|| CliError::Usage("token rotate ID".into()))?;
            let (s, b) = api.call("POST", &format!("/v1/tokens/{}/rotate", enc(id)), None)?;
            let v = ok(s, b)?;
            print(json_out, &v, |v| {
                println!("{}", v["secret"].as_str().unwrap_or_default());
                eprintln!("(shown once; the old secret no longer works)");
            });
            Ok(())
        }
        _ => Err(CliError::Usage("token create|ls|revoke|rotate".into())),
    }
}

fn events(api: &Api, args: &[String], json_out: bool) -> Result<(), CliError> {
    let mut q = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let flag = args[i].clone();
        let key = match flag.as_str() {
            "--workspace" => "workspace",
            "--event" => "event",
            "--limit" => "limit",
            other => return Err(CliError::Usage(format!("events: unknown {other:?}"))),
        };
        q.push(format!("{key}={}", enc(value(args, &mut i, &flag)?)));
        i += 1;
    }
    let (s, b) = api.call("GET", &format!("/v1/audit?{}", q.join("&")), None)?;
    let v = ok(s, b)?;
    print(json_out, &v, |v| {
        for e in v["events"].as_array().into_iter().flatten() {
            println!("{e}");
        }
    });
    Ok(())
}

fn run(args: &[String]) -> Result<ExitCode, CliError> {
    let json_out = args.iter().any(|a| a == "--json");
    let args: Vec<String> = args.iter().filter(|a| *a != "--json").cloned().collect();
    let Some(cmd) = args.first() else {
        return Err(CliError::Usage("no command".into()));
    };
    let rest = &args[1..];
    if cmd == "login" {
        return login(rest).map(|_| ExitCode::SUCCESS);
    }
    if cmd == "-h" || cmd == "--help" || cmd == "help" {
        println!("{USAGE}");
        return Ok(ExitCode::SUCCESS);
    }
    let api = load()?;
    let id_path = |what: &str| -> Result<String, CliError> {
        match rest {
            [id] => Ok(format!("/v1/workspaces/{}{what}", enc(id))),
            _ => Err(CliError::Usage(format!("{cmd} takes one workspace id"))),
        }
    };
    match cmd.as_str() {
        "create" => create(&api, rest, json_out),
        "ls" => ls(&api, rest, json_out),
        "exec" => return exec(&api, rest),
        "cp" => cp(&api, rest),
        "rm" => {
            let (s, b) = api.call("DELETE", &id_path("")?, None)?;
            ok(s, b).map(|_| ())
        }
        "stop" => {
            let (s, b) = api.call("POST", &id_path("/stop")?, None)?;
            ok(s, b).map(|_| ())
        }
        "limits" => {
            let mut body = serde_json::Map::new();
            let mut id = None;
            let mut it = rest.iter();
            while let Some(a) = it.next() {
                let key = match a.as_str() {
                    "--disk-mib-per-s" => "disk_mib_per_s",
                    "--disk-iops" => "disk_iops",
                    "--net-mib-per-s" => "net_mib_per_s",
                    "--net-connections-per-s" => "net_connections_per_s",
                    other if id.is_none() && !other.starts_with("--") => {
                        id = Some(other.to_string());
                        continue;
                    }
                    other => return Err(CliError::Usage(format!("limits: unexpected {other:?}"))),
                };
                let n: u64 = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| CliError::Usage(format!("{a} needs a number")))?;
                body.insert(key.into(), n.into());
            }
            let id = id.ok_or_else(|| CliError::Usage("limits takes a workspace id".into()))?;
            let (s, b) = api.call(
                "POST",
                &format!("/v1/workspaces/{}/limits", enc(&id)),
                Some(&serde_json::Value::Object(body)),
            )?;
            let v = ok(s, b)?;
            print(json_out, &v, |v| {
                println!(
                    "{}: disk {} bytes/s, {} ops/s; network {} bytes/s, {} connections/s",
                    v["id"].as_str().unwrap_or("?"),
                    v["limits"]["disk_bytes_per_s"],
                    v["limits"]["disk_ops_per_s"],
                    v["limits"]["net_bytes_per_s"],
                    v["limits"]["net_connections_per_s"]
                )
            });
            Ok(())
        }
        "quarantine" => {
            let (s, b) = api.call("POST", &id_path("/quarantine")?, None)?;
            let v = ok(s, b)?;
            print(json_out, &v, |v| {
                println!(
                    "{} quarantined: frozen, {} token(s) revoked, snapshot of {} bytes of memory and {} of disk",
                    v["workspace"]["id"].as_str().unwrap_or("?"),
                    v["revoked_tokens"].as_array().map_or(0, Vec::len),
                    v["snapshot"]["files"]["memory"]["bytes"],
                    v["snapshot"]["files"]["disk"]["bytes"],
                )
            });
            Ok(())
        }
        "forensics" => forensics(&api, rest, json_out),
        "tls" if rest.first().map(String::as_str) == Some("rotate") => {
            let (s, b) = api.call("POST", "/v1/tls/rotate", None)?;
            let v = ok(s, b)?;
            print(json_out, &v, |v| {
                println!("{}", v["fingerprint"].as_str().unwrap_or_default());
                eprintln!("(the API restarts with it within 2 s; run `paddock login` with this fingerprint)");
            });
            Ok(())
        }
        "keys" => match rest.first().map(String::as_str) {
            None => {
                let (s, b) = api.call("GET", "/v1/keys", None)?;
                let v = ok(s, b)?;
                print(json_out, &v, |v| {
                    println!(
                        "{}: {}",
                        v["state"].as_str().unwrap_or("?"),
                        v["detail"].as_str().unwrap_or_default()
                    )
                });
                Ok(())
            }
            Some("recover") => {
                // From stdin, not an argument: argv is visible to every
                // process on the operator's machine.
                let mut secret = String::new();
                std::io::stdin()
                    .read_line(&mut secret)
                    .map_err(|e| CliError::Usage(format!("reading the recovery secret: {e}")))?;
                let body = serde_json::json!({"recovery_secret": secret.trim()});
                let (s, b) = api.call("POST", "/v1/keys/recover", Some(&body))?;
                let v = ok(s, b)?;
                print(json_out, &v, |v| {
                    println!("{}", v["detail"].as_str().unwrap_or_default())
                });
                Ok(())
            }
            Some(other) => Err(CliError::Usage(format!("unknown keys command {other:?}"))),
        },
        "token" => token(&api, rest, json_out),
        "egress" => egress(&api, rest, json_out),
        "link" => link(&api, rest, json_out),
        "publish" => {
            let (id, port, host_port) = match rest {
                [id, port] => (id, port, None),
                [id, port, flag, h] if flag == "--host-port" => (id, port, Some(h)),
                _ => return Err(CliError::Usage("publish ID PORT [--host-port N]".into())),
            };
            let num = |v: &str| {
                v.parse::<u16>()
                    .map_err(|_| CliError::Usage(format!("{v:?} is not a port")))
            };
            let mut body = json!({"port": num(port)?});
            if let Some(h) = host_port {
                body["host_port"] = json!(num(h)?);
            }
            let (s, b) = api.call("POST", &format!("/v1/workspaces/{}/ports", enc(id)), Some(&body))?;
            let v = ok(s, b)?;
            print(json_out, &v, |v| {
                println!("{} port {} is at the appliance's port {}", id, v["port"], v["host_port"])
            });
            Ok(())
        }
        "unpublish" => {
            let [id, port] = rest else {
                return Err(CliError::Usage("unpublish ID PORT".into()));
            };
            let (s, b) = api.call(
                "DELETE",
                &format!("/v1/workspaces/{}/ports/{}", enc(id), enc(port)),
                None,
            )?;
            ok(s, b).map(|_| ())
        }
        "events" => events(&api, rest, json_out),
        other => Err(CliError::Usage(format!("unknown command {other:?}"))),
    }
    .map(|_| ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(c) => c,
        Err(e @ CliError::Usage(_)) => {
            eprintln!("paddock: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("paddock: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_fingerprints_and_encoding() {
        assert_eq!(
            parse_url("https://127.0.0.1:9443/").ok(),
            Some(("127.0.0.1".to_string(), 9443))
        );
        assert_eq!(
            parse_url("https://box").ok(),
            Some(("box".to_string(), 8443))
        );
        assert!(parse_url("http://box").is_err());
        assert!(parse_url("https://box:x").is_err());
        let fp = "ab".repeat(32);
        assert_eq!(pinned::normalise(&fp).map(|f| f.len()), Some(95));
        assert!(pinned::normalise("zz").is_none());
        assert_eq!(enc("/tmp/a b&c"), "/tmp/a%20b%26c");
    }
}
