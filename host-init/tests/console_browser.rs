//! The web console in Debian's Chromium (issue 19), driven by playwright-core
//! (console/tests/browser.mjs) against the real API process and control
//! plane: sign-in with scoped tokens, what each may see and do, a token
//! minted through the form, the audit log, a phone-sized screen, no CSP
//! violation; and an attacker's page on another origin, in the same browser
//! as a signed-in admin, whose forged form post and fetch mint nothing.
//! Loopback only.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::real_api::{mint, start};

fn console_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../console")
}

/// Serves the attacker's page on a loopback port of its own (another
/// origin and, being http://localhost, another site); its address.
fn serve_attacker(api: &str) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // A form post with a JSON-looking text/plain body, as a CSRF through an
    // HTML form is written, into a frame the test reads afterwards; and a
    // fetch that sends whatever credentials the browser would attach.
    let page = format!(
        r#"<!doctype html><title>attack</title>
<form id="f" method="POST" action="{api}/v1/tokens" enctype="text/plain" target="sink">
<input name='{{"name":"csrf-form","scopes":["admin"],"x":"' value='"}}'></form>
<iframe name="sink" id="sink"></iframe>
<script>
fetch("{api}/v1/tokens", {{method: "POST", credentials: "include", mode: "no-cors",
  headers: {{"Content-Type": "text/plain"}},
  body: JSON.stringify({{name: "csrf-fetch", scopes: ["admin"]}})}})
  .catch(() => null)
  .finally(() => {{
    document.getElementById("sink").addEventListener("load", () => {{ document.title = "sent"; }});
    document.getElementById("f").submit();
  }});
</script>"#
    );
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { continue };
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf);
            let _ = write!(
                c,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                page.len(),
                page
            );
        }
    });
    format!("http://localhost:{port}")
}

#[test]
fn the_console_works_in_a_real_browser_and_resists_another_origin() {
    let chromium = std::env::var("PADDOCK_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: `just deps` installs Debian's chromium"
    );
    let console = console_dir();
    assert!(
        console.join("node_modules/playwright-core").is_dir(),
        "console/node_modules is missing: `console/build.sh` installs it (from its lockfile)"
    );
    let api = start("browser");
    let (_, reader) = mint(&api, "reader", &["read"]);
    let attacker = serve_attacker(&api.base);
    let shots = std::env::var("PADDOCK_CONSOLE_SHOTS").ok();
    let mut cmd = Command::new("node");
    cmd.arg(console.join("tests/browser.mjs"))
        .current_dir(&console)
        .env("PADDOCK_URL", &api.base)
        .env("PADDOCK_ADMIN", &api.admin)
        .env("PADDOCK_READER", &reader)
        .env("PADDOCK_ATTACKER_URL", &attacker)
        .env("PADDOCK_CHROMIUM", &chromium);
    if let Some(dir) = &shots {
        cmd.env("PADDOCK_SHOTS", dir);
    }
    let out = cmd.output().expect("run node");
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{report}");
    assert!(out.status.success(), "the browser checks failed:\n{report}");
    assert!(report.contains("browser: all checks passed"), "{report}");

    // The attacker's requests reached the API and minted nothing; the
    // console's own mint did.
    let tokens = api
        .control
        .call(&api.admin, paddock_init::api::channel::Call::ListTokens)
        .reply
        .body;
    let names: Vec<&str> = tokens["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"from-browser"), "{names:?}");
    assert!(
        !names.iter().any(|n| n.starts_with("csrf")),
        "a forged request minted a token: {names:?}"
    );
}
