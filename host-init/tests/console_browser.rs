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

/// Serves the attacker's pages on a loopback port of its own; its port.
/// `/` is another site's (reached as http://localhost:PORT): a forged form
/// post and fetch. `/plant` is a page on another port of the box's own
/// host (as a workspace's published port would be, reached as
/// http://127.0.0.1:PORT): it plants a cookie named like the session's,
/// holding the attacker's own session, to sign the admin's console in as
/// the attacker.
fn serve_attacker(api: &str, planted: &str) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let plant = format!(
        r#"<!doctype html><title>plant</title>
<script>
document.cookie = "\u2000__Host-paddock_session={planted}; Path=/v1/; Max-Age=86400";
document.cookie = "__host-paddock_session={planted}; Path=/v1/session; Max-Age=86400";
document.title = "planted";
</script>"#
    );
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
            let n = c.read(&mut buf).unwrap_or(0);
            let asked = String::from_utf8_lossy(&buf[..n]);
            let body = if asked.starts_with("GET /plant ") {
                &plant
            } else {
                &page
            };
            let _ = write!(
                c,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                body.len(),
                body
            );
        }
    });
    port
}

/// The attacker signs in with its own token, outside any browser: the
/// session cookie's value.
fn attacker_session(base: &str, secret: &str) -> String {
    let out = Command::new("curl")
        .args(["-sk", "-o", "/dev/null", "-D", "-", "-X", "POST"])
        .args(["-H", &format!("Authorization: Bearer {secret}")])
        .arg(format!("{base}/v1/session"))
        .output()
        .expect("curl");
    let head = String::from_utf8_lossy(&out.stdout).to_string();
    head.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("set-cookie")
                .then(|| value.trim())
        })
        .and_then(|v| v.split(';').next())
        .and_then(|pair| pair.split_once('='))
        .map(|(_, v)| v.to_string())
        .unwrap_or_else(|| panic!("the attacker's sign-in gave no cookie:\n{head}"))
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
    let (attacker_id, attacker) = mint(&api, "attacker", &["read", "create"]);
    let planted = attacker_session(&api.base, &attacker);
    let port = serve_attacker(&api.base, &planted);
    let shots = std::env::var("PADDOCK_CONSOLE_SHOTS").ok();
    let mut cmd = Command::new("node");
    cmd.arg(console.join("tests/browser.mjs"))
        .current_dir(&console)
        .env("PADDOCK_URL", &api.base)
        .env("PADDOCK_ADMIN", &api.admin)
        .env("PADDOCK_READER", &reader)
        .env("PADDOCK_ATTACKER_URL", format!("http://localhost:{port}"))
        .env(
            "PADDOCK_PLANT_URL",
            format!("http://127.0.0.1:{port}/plant"),
        )
        .env("PADDOCK_ATTACKER_TOKEN", &attacker_id)
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
