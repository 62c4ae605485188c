//! Agent code written for E2B, run against a booted appliance with E2B's
//! own SDK (issue 16): a sandbox that is a real workspace (its own kernel),
//! commands in it as agent and as root, its env, an exit code, stdin fed
//! and closed, background commands listed, found again and killed, a
//! command's timeout, a terminal resized, files both ways and moved,
//! listed and removed, a directory watched, what another token and a bad key get, its timeout
//! moved, and its end. The SDK is pinned (scripts/e2b-sdk.sh); the
//! appliance's certificate is the one it verifies.

use paddock_tests::appliance::Appliance;
use std::process::Command;

const SCRIPT: &str = r#"
import os, signal, time
from e2b import Sandbox, PtySize, NotFoundException, AuthenticationException, TimeoutException
from e2b.sandbox.commands.command_handle import CommandExitException

# The SDK must never hang: the whole session has a deadline.
signal.alarm(900)

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

# stdin: fed while the command runs; closed where the SDK can close it
h = sbx.commands.run("read a; read b; echo got:$a:$b", background=True, stdin=True)
sbx.commands.send_stdin(h.pid, "one\n")
sbx.commands.send_stdin(h.pid, "two\n")
say("stdin", h.wait().stdout.strip())
if hasattr(sbx.commands, "close_stdin"):
    h = sbx.commands.run("cat; echo eof", background=True, stdin=True)
    h.send_stdin("rest\n")
    sbx.commands.close_stdin(h.pid)
    say("closed", h.wait().stdout.replace("\n", "|"))
else:
    say("closed", "n/a")

# background commands: listed, found again, killed
bg = sbx.commands.run("sleep 600", background=True)
say("listed", bg.pid in [p.pid for p in sbx.commands.list()])
late = sbx.commands.run("sleep 5; echo late", background=True)
again = sbx.commands.connect(late.pid)
say("connect", again.wait().stdout.strip())
say("kill", sbx.commands.kill(bg.pid))
try:
    bg.wait()
    say("wait after kill passed?!")
except CommandExitException as e:
    say("killed", e.exit_code)
say("kill again", sbx.commands.kill(bg.pid))

# a command's timeout ends the command, not only the call
try:
    sbx.commands.run("sleep 120", timeout=3)
    say("timeout passed?!")
except TimeoutException:
    pass
for _ in range(60):
    if not any("sleep 120" in " ".join(p.args) for p in sbx.commands.list()):
        break
    time.sleep(0.5)
say("timeout", "ended", not any("sleep 120" in " ".join(p.args) for p in sbx.commands.list()))

# a terminal: its size, a resize, input typed at it, its exit code
term = sbx.pty.create(PtySize(rows=24, cols=80), timeout=120)
sbx.pty.send_stdin(term.pid, b"stty size\n")
screen = b""
events = iter(term)
while b"24 80" not in screen:
    _, _, chunk = next(events)
    screen += chunk or b""
sbx.pty.resize(term.pid, PtySize(rows=30, cols=100))
sbx.pty.send_stdin(term.pid, b"stty size; exit 7\n")
for _, _, chunk in events:
    screen += chunk or b""
say("pty", b"30 100" in screen, term._result.exit_code if term._result else None)

# files
sbx.files.write("/tmp/from-e2b.txt", "written by the SDK\n")
say("file", sbx.commands.run("cat /tmp/from-e2b.txt; stat -c %U /tmp/from-e2b.txt").stdout.replace("\n", "|"))
sbx.commands.run("echo made in the guest > notes.txt")
say("read", repr(sbx.files.read("notes.txt")))
say("exists", sbx.files.exists("/tmp/from-e2b.txt"), sbx.files.exists("/tmp/nope"))
say("mkdir", sbx.files.make_dir("/tmp/d/e"), sbx.files.make_dir("/tmp/d/e"))
moved = sbx.files.rename("/tmp/from-e2b.txt", "/tmp/d/moved.txt")
say("moved", moved.path, moved.type.value, moved.size)
say("list", sorted(f"{e.name}:{e.type.value}" for e in sbx.files.list("/tmp/d")))
say("deep", sorted(e.path for e in sbx.files.list("/tmp/d", depth=2)))
info = sbx.files.get_info("/tmp/d/moved.txt")
say("stat", info.owner, info.permissions)
sbx.files.remove("/tmp/d")
say("removed", sbx.files.exists("/tmp/d"))
try:
    sbx.files.read("/tmp/d/moved.txt")
    say("read after remove passed?!")
except NotFoundException:
    say("gone", "NotFoundException")

# a directory watched (recursively) while things change in it
sbx.files.make_dir("/tmp/w")
watch = sbx.files.watch_dir("/tmp/w", recursive=True)
seen = []
def until(name, kind):
    for _ in range(120):
        seen.extend(f"{e.name}:{e.type.value}" for e in watch.get_new_events())
        if f"{name}:{kind}" in seen:
            return True
        time.sleep(0.25)
    return False
sbx.files.write("/tmp/w/top.txt", "x")
sbx.commands.run("mkdir /tmp/w/sub")
# Once the new directory is seen, it is watched too.
found = until("sub", "create")
sbx.commands.run("echo y > /tmp/w/sub/deep.txt; rm /tmp/w/top.txt")
found = found and until("top.txt", "remove")
watch.stop()
say("watch", found, "top.txt:create" in seen, "sub/deep.txt:create" in seen, "sub/deep.txt:write" in seen)

# what is refused, as the SDK's own exceptions
try:
    Sandbox.connect(sbx.sandbox_id, api_key=os.environ["OTHER_KEY"])
    say("other token passed?!")
except NotFoundException:
    say("other", "NotFoundException")
try:
    Sandbox.create(api_key="e2b_" + "0" * 40)
    say("bad key passed?!")
except AuthenticationException:
    say("bad key", "AuthenticationException")

# Its figures, sampled every 5 s on the box (it has run well over that).
m = sbx.get_metrics()
say("metrics", len(m) > 0, m[-1].cpu_count, m[-1].mem_total > 0, m[-1].disk_total > 0)

# Paused and resumed (the newest SDK only: each pause writes its memory):
# what only its RAM held comes back; a second pause is "already paused".
if os.environ.get("PADDOCK_PAUSE") == "1":
    sbx.commands.run("echo kept-in-memory > /run/e2b-mem", user="root")
    first = sbx.pause()
    state = Sandbox.get_info(sbx.sandbox_id).state
    say("paused", first, getattr(state, "value", state), sbx.pause())
    sbx = Sandbox.connect(sbx.sandbox_id)
    say("resumed", sbx.commands.run("cat /run/e2b-mem").stdout.strip(), sbx.is_running())
sbx.set_timeout(300)
info = sbx.get_info()
say("info", info.sandbox_id == sbx.sandbox_id, info.metadata.get("via"), info.state)
say("running", sbx.is_running())
say("killed sandbox", sbx.kill())
try:
    Sandbox.connect(sbx.sandbox_id)
    say("connect after kill passed?!")
except NotFoundException:
    say("unknown", "NotFoundException")
"#;

/// Runs SCRIPT against `app` with every SDK version of the
/// matrix (scripts/e2b-sdk-versions).
pub fn e2b_session(app: &Appliance, admin: &str, fingerprint: &str) {
    let matrix = std::env::var("PADDOCK_E2B_MATRIX").unwrap_or_else(|_| {
        panic!("PADDOCK_E2B_MATRIX is not set: the Justfile's test recipe sets it")
    });
    let versions: Vec<(&str, &str)> = matrix
        .split_whitespace()
        .filter_map(|v| v.split_once('='))
        .collect();
    assert!(
        versions.len() >= 2,
        "the newest SDK and an older 2.x: {matrix}"
    );
    // The certificate the SDK trusts, exported as the docs say: `paddock
    // tls cert` over the pinned session; the same one the API serves.
    let dir = std::env::temp_dir().join(format!("paddock-e2b-cert-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("config.json");
    let bin = crate::cli_login(app, admin, fingerprint, &config);
    let out = Command::new(&bin)
        .args(["tls", "cert"])
        .env("PADDOCK_CONFIG", &config)
        .output()
        .expect("paddock tls cert");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pem = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        pem.trim(),
        app.served_pem().expect("the API's certificate").trim(),
        "paddock tls cert exports what the API serves"
    );
    let _ = std::fs::remove_dir_all(&dir);
    for (n, (version, python)) in versions.iter().enumerate() {
        eprintln!("e2b SDK {version}");
        e2b_version(app, admin, version, python, n == 0, &pem);
    }
    e2b_plain(app, admin, versions[0].1);
}

const PLAIN_SCRIPT: &str = r#"
import signal
from e2b import Sandbox
signal.alarm(600)
def say(*a):
    print(*a, flush=True)
sbx = Sandbox.create(timeout=300)
say("plain ran", sbx.commands.run("uname -s").stdout.strip())
# The box as the workspace sees it (its gateway), on the plain port: the
# listener is bound to eth0 and the firewall drops a workspace's traffic
# to the box; neither may let it through.
# Its gateway is its resolver (a clone of a template snapshot has no
# paddock.net on its kernel command line: it took its address later).
host = sbx.commands.run("sed -n 's/^nameserver //p' /etc/resolv.conf").stdout.strip()
r = sbx.commands.run(f"curl -s --max-time 5 http://{host}:8080/v1/health && echo reached || echo refused", timeout=60)
say("plain from workspace", host.count("."), r.stdout.strip().splitlines()[-1])
sbx.kill()
say("plain killed")
"#;

/// The newest SDK over the appliance's plain-HTTP listener (on eth0 in the
/// test image's configuration), with no certificate given at all; and a
/// workspace that tries the same port from inside.
fn e2b_plain(app: &Appliance, admin: &str, python: &str) {
    let body = r#"{"name": "e2b-plain", "scopes": ["create", "read", "exec", "files", "delete"], "secret_format": "e2b"}"#;
    let (code, minted) = app
        .api("POST", "/v1/tokens", admin, Some(body.as_bytes()))
        .expect("mint");
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&minted));
    let minted: serde_json::Value = serde_json::from_slice(&minted).expect("json");
    let key = minted["secret"].as_str().expect("secret");
    let dir = std::env::temp_dir().join(format!("paddock-e2b-plain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let script = dir.join("plain.py");
    std::fs::write(&script, PLAIN_SCRIPT).expect("script");
    let url = format!("http://localhost:{}", app.plain_port);
    let out = Command::new(python)
        .arg(&script)
        .env("E2B_API_KEY", key)
        .env("E2B_API_URL", &url)
        .env("E2B_SANDBOX_URL", &url)
        .env_remove("SSL_CERT_FILE")
        .output()
        .expect("python");
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "plain HTTP:\n{text}\n{err}");
    for want in [
        "plain ran Linux",
        "plain from workspace 3 refused",
        "plain killed",
    ] {
        assert!(
            text.lines().any(|l| l == want),
            "no {want:?} in:\n{text}\n{err}"
        );
    }
}

/// Runs SCRIPT with one SDK version; checks what it says and that the
/// sandbox was a workspace of the native API.
fn e2b_version(app: &Appliance, admin: &str, version: &str, python: &str, newest: bool, pem: &str) {
    let dir = std::env::temp_dir().join(format!(
        "paddock-e2b-appliance-{}-{version}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("dir");
    let cert = dir.join("api.pem");
    std::fs::write(&cert, pem).expect("cert");
    let script = dir.join("agent.py");
    std::fs::write(&script, SCRIPT).expect("script");
    let url = format!("https://localhost:{}", app.port);
    // E2B-shaped keys (older SDKs refuse any other shape before sending
    // it): the agent's own tenant, and another that must not reach it.
    let mint = |name: &str| {
        let body = format!(
            r#"{{"name": "{name}-{version}", "scopes": ["create", "read", "exec", "files", "delete"], "secret_format": "e2b"}}"#
        );
        let (code, minted) = app
            .api("POST", "/v1/tokens", admin, Some(body.as_bytes()))
            .expect("mint");
        assert_eq!(code, 201, "{}", String::from_utf8_lossy(&minted));
        let minted: serde_json::Value = serde_json::from_slice(&minted).expect("json");
        let key = minted["secret"].as_str().expect("secret").to_string();
        assert!(
            key.starts_with("e2b_") && key.len() == 44,
            "an E2B-shaped key: {key}"
        );
        key
    };
    let key = mint("e2b-agent");
    let other = mint("e2b-other");
    let out = Command::new(python)
        .arg(&script)
        .env("OTHER_KEY", &other)
        .env("PADDOCK_PAUSE", if newest { "1" } else { "0" })
        .env("E2B_API_KEY", &key)
        .env("E2B_API_URL", &url)
        .env("E2B_SANDBOX_URL", &url)
        .env("SSL_CERT_FILE", &cert)
        .output()
        .expect("python");
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "SDK {version}:\n{text}\n{err}");
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("SDK {version}: no {prefix:?} in:\n{text}\n{err}"))
            .to_string()
    };
    // E2B's spelling of a workspace id (`ws-`: it becomes a host name).
    let e2b_id = line("created ").trim_start_matches("created ").to_string();
    let id = e2b_id.replacen("ws-", "ws_", 1);
    assert!(
        e2b_id.starts_with("ws-") && id.starts_with("ws_"),
        "{e2b_id}"
    );
    let ran = line("ran ");
    assert!(
        ran.contains("Linux 6.12") && ran.contains("|agent|hello mine|") && ran.ends_with(" 0"),
        "a command in the workspace's own kernel, as agent, with its env: {ran}"
    );
    assert_eq!(line("root "), "root root");
    assert_eq!(line("exit "), "exit 3 to-stderr");
    assert_eq!(line("stdin "), "stdin got:one:two");
    // Older SDKs have no close_stdin; the newest must close.
    let closed = line("closed ");
    assert!(
        closed == "closed rest|eof|" || (!newest && closed == "closed n/a"),
        "SDK {version}: {closed}"
    );
    assert_eq!(line("listed "), "listed True");
    assert_eq!(line("connect "), "connect late");
    assert_eq!(line("kill "), "kill True");
    assert_eq!(line("killed "), "killed -1", "SIGKILL, as envd says it");
    assert_eq!(line("kill again "), "kill again False");
    assert_eq!(line("timeout "), "timeout ended True");
    assert_eq!(line("pty "), "pty True 7");
    assert_eq!(line("file "), "file written by the SDK|agent|");
    assert_eq!(line("read "), "read 'made in the guest\\n'");
    assert_eq!(line("exists "), "exists True False");
    assert_eq!(line("mkdir "), "mkdir True False");
    assert_eq!(line("moved "), "moved /tmp/d/moved.txt file 19");
    assert_eq!(line("list "), "list ['e:dir', 'moved.txt:file']");
    assert_eq!(
        line("deep "),
        "deep ['/tmp/d/e', '/tmp/d/moved.txt']",
        "depth 2 lists e's (empty) contents too"
    );
    assert_eq!(line("stat "), "stat agent -rw-r--r--");
    assert_eq!(line("removed "), "removed False");
    assert_eq!(line("gone "), "gone NotFoundException");
    assert_eq!(line("watch "), "watch True True True True");
    assert_eq!(line("other "), "other NotFoundException");
    assert_eq!(line("bad key "), "bad key AuthenticationException");
    assert_eq!(line("metrics "), "metrics True 1 True True");
    if newest {
        assert_eq!(line("paused "), "paused True paused False");
        assert_eq!(line("resumed "), "resumed kept-in-memory True");
    }
    assert_eq!(line("info "), "info True e2b running");
    assert_eq!(line("running "), "running True");
    assert_eq!(line("killed sandbox "), "killed sandbox True");
    assert_eq!(line("unknown "), "unknown NotFoundException");
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
