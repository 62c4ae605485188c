//! Paddock's own Python SDK (sdk/python, installed with its pinned
//! dependencies by scripts/python-sdk.sh) against a booted appliance: its
//! end-to-end session (sdk/python/tests/appliance_session.py) pins the
//! certificate, runs commands with streaming callbacks, moves files and
//! trees, drives background processes and a terminal, changes egress,
//! TTL, limits and ports, mints, rotates and revokes tokens, links two
//! workspaces, reads events, and does it again with the async client.

use paddock_tests::appliance::Appliance;
use std::process::Command;

pub fn sdk_session(app: &Appliance, admin: &str, fingerprint: &str) {
    let python = std::env::var("PADDOCK_SDK_PYTHON").unwrap_or_else(|_| {
        panic!("PADDOCK_SDK_PYTHON is not set: the Justfile's test recipe sets it (scripts/python-sdk.sh)")
    });
    let script =
        paddock_tests::appliance::repo_root().join("sdk/python/tests/appliance_session.py");
    let out = Command::new(python)
        .arg(&script)
        .env("PADDOCK_URL", format!("https://localhost:{}", app.port))
        .env("PADDOCK_TOKEN", admin)
        .env("PADDOCK_FINGERPRINT", fingerprint)
        .output()
        .expect("python");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}\n{err}");
    let line = |name: &str| {
        let prefix = format!("ok {name} ");
        text.lines()
            .find(|l| l.starts_with(&prefix) || *l == prefix.trim_end())
            .unwrap_or_else(|| panic!("no {name:?} check in:\n{text}\n{err}"))
            .to_string()
    };
    assert!(line("uname").contains("Linux 6.12"), "{text}");
    assert_eq!(line("wrong-pin"), "ok wrong-pin PinMismatch");
    assert!(line("token-other").contains("Forbidden") || line("token-other").contains("NotFound"));
    assert!(line("token-revoke").contains("Unauthorized"), "{text}");
    assert!(line("deleted").contains("NotFound"), "{text}");
    assert!(line("async").starts_with("ok async 2 workspaces"), "{text}");
    assert_eq!(text.lines().last(), Some("all ok"), "{text}\n{err}");
}
