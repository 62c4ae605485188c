//! The saved session (URL, token, pinned fingerprint) and `login`, the
//! one command that runs without it.

use crate::client::{parse_url, Api};
use crate::commands::api_error;
use crate::pinned::Pinned;
use crate::CliError;
use std::path::PathBuf;

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

pub fn load() -> Result<Api, CliError> {
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
        pin: Pinned::new(Some(c.fingerprint)),
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
    let text = serde_json::to_string_pretty(c)
        .map_err(|e| CliError::Config(format!("{}: {e}", p.display())))?;
    // 0600 from the start: the file holds a bearer token.
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&p)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| CliError::Config(format!("{}: {e}", p.display())))
}

/// `fingerprint` is already normalised (the argument parser did it).
pub fn login(url: String, token: String, fingerprint: Option<String>) -> Result<(), CliError> {
    let (host, port) = parse_url(&url)?;
    let Some(want) = fingerprint else {
        // Trust on first use would defeat the pin: show what the appliance
        // presents and let the operator compare it with its console.
        let pin = Pinned::new(None);
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
    };
    let api = Api {
        host,
        port,
        token: token.clone(),
        pin: Pinned::new(Some(want.clone())),
    };
    let answer = api.call("GET", "/v1/workspaces", None)?;
    // Only a refused token stops the login: a token without the read scope
    // is still one to save.
    if answer.status == 401 {
        return Err(api_error(&answer));
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
