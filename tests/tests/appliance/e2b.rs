//! Agent code written for E2B, run against a booted appliance with E2B's
//! own SDK (issue 16): a sandbox that is a real workspace (its own kernel),
//! commands in it as agent and as root, its env, an exit code, files both
//! ways, its timeout moved, and its end. The SDK is pinned (scripts/e2b-sdk.sh); the
//! appliance's certificate is the one it verifies.

use paddock_tests::appliance::Appliance;
use std::process::Command;

const SCRIPT: &str = r#"
from e2b import Sandbox
from e2b.sandbox.commands.command_handle import CommandExitException

def say(*a):
    print(*a, flush=True)

sbx = Sandbox.create(timeout=600, metadata={"via": "e2b"}, envs={"GREETING": "hello"})
say("created", sbx.sandbox_id)
r = sbx.commands.run("uname -sr; id -un; echo $GREETING $MINE", envs={"MINE": "mine"})
say("ran", r.stdout.replace("\n", "|"), r.exit_code)
say("root", sbx.commands.run("id -un", user="root").stdout.strip())
try:
    sbx.commands.run("echo to-stderr >&2; exit 3")
    say("exit 3 passed?!")
except CommandExitException as e:
    say("exit", e.exit_code, e.stderr.strip())
sbx.files.write("/tmp/from-e2b.txt", "written by the SDK\n")
say("file", sbx.commands.run("cat /tmp/from-e2b.txt; stat -c %U /tmp/from-e2b.txt").stdout.replace("\n", "|"))
sbx.commands.run("echo made in the guest > notes.txt")
say("read", repr(sbx.files.read("notes.txt")))
sbx.set_timeout(300)
info = sbx.get_info()
say("info", info.sandbox_id == sbx.sandbox_id, info.metadata.get("via"), info.state)
say("running", sbx.is_running())
say("killed", sbx.kill())
"#;

/// Runs SCRIPT with the SDK against `app` as `admin`; checks what it says
/// and that the sandbox was a workspace of the native API.
pub fn e2b_session(app: &Appliance, admin: &str) {
    let python = std::env::var("PADDOCK_E2B_PYTHON").unwrap_or_else(|_| {
        panic!("PADDOCK_E2B_PYTHON is not set: the Justfile's test recipe sets it")
    });
    let dir = std::env::temp_dir().join(format!("paddock-e2b-appliance-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let cert = dir.join("api.pem");
    std::fs::write(&cert, app.served_pem().expect("the API's certificate")).expect("cert");
    let script = dir.join("agent.py");
    std::fs::write(&script, SCRIPT).expect("script");
    let url = format!("https://localhost:{}", app.port);
    let out = Command::new(python)
        .arg(&script)
        .env("E2B_API_KEY", admin)
        .env("E2B_API_URL", &url)
        .env("E2B_SANDBOX_URL", &url)
        .env("SSL_CERT_FILE", &cert)
        .output()
        .expect("python");
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}\n{err}");
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in:\n{text}\n{err}"))
            .to_string()
    };
    let id = line("created ").trim_start_matches("created ").to_string();
    assert!(id.starts_with("ws_"), "{id}");
    let ran = line("ran ");
    assert!(
        ran.contains("Linux 6.12") && ran.contains("|agent|hello mine|") && ran.ends_with(" 0"),
        "a command in the workspace's own kernel, as agent, with its env: {ran}"
    );
    assert_eq!(line("root "), "root root");
    assert_eq!(line("exit "), "exit 3 to-stderr");
    assert_eq!(line("file "), "file written by the SDK|agent|");
    assert_eq!(line("read "), "read 'made in the guest\\n'");
    assert_eq!(line("info "), "info True e2b running");
    assert_eq!(line("running "), "running True");
    assert_eq!(line("killed "), "killed True");
    // The native API saw it as a workspace, and sees it gone.
    let (code, body) = app
        .api("GET", &format!("/v1/workspaces/{id}"), admin, None)
        .expect("get");
    assert_eq!(code, 404, "{}", String::from_utf8_lossy(&body));
    let (code, body) = app
        .api("GET", "/v1/audit?event=workspace_ttl_changed", admin, None)
        .expect("audit");
    assert_eq!(code, 200);
    assert!(
        String::from_utf8_lossy(&body).contains(&id),
        "set_timeout was audited as the native call"
    );
}
