//! E2B's own Python SDK (`e2b`, pinned, from PyPI: scripts/e2b-sdk.sh)
//! against the real API process (issue 16), with a fake host-init that
//! keeps workspaces in memory: what an agent written for E2B does with
//! sandboxes (create, info, list with a metadata filter, timeout, connect,
//! is_running, network, kill), what it gets for what Paddock refuses
//! (pause, CIDRs without ports, a bad key), and what reached the control
//! plane (the spec, the TTL, the token). Loopback only; the VM side is the
//! appliance test's.

use paddock_init::api::channel::{Call, Init, PlainHttp, StatusReply};
use paddock_init::api::supervisor::spawn;
use paddock_init::control::service::Outcome;
use paddock_proto::{read_frame, write_frame, AgentMsg, HostMsg};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

mod common;
use common::KillOnDrop;

const KEY: &str = "e2b_0123456789abcdef0123456789abcdef01234567";

fn reply(status: u16, body: Value) -> Outcome {
    common::outcome(status, body)
}

/// What the fake control plane holds and saw.
#[derive(Default)]
struct Plane {
    workspaces: BTreeMap<String, Value>,
    specs: Vec<Value>,
    ttls: Vec<(String, u64)>,
    egress: Vec<(String, Value)>,
    next: u32,
}

fn view(id: &str, spec: &Value, now: u64) -> Value {
    json!({
        "id": id, "template": spec["template"], "vcpus": 1, "memory_mib": 512,
        "disk_mib": 2048, "labels": spec["labels"], "env_keys": [],
        "created_at": now, "expires_at": now + spec["ttl_s"].as_u64().unwrap_or(0),
        "state": "running",
        "limits": {"cpu_max_us_per_100ms": 100000, "memory_max_bytes": 1, "pids_max": 1,
            "io_max_bytes_per_s": 1, "io_max_ops_per_s": 1, "disk_bytes_per_s": 1,
            "disk_ops_per_s": 1, "net_bytes_per_s": 1, "net_connections_per_s": 1},
        "disk_encrypted": true, "egress": spec["egress"], "published": []
    })
}

fn control(plane: Arc<Mutex<Plane>>) -> impl Fn(&str, Call) -> Outcome {
    move |auth, call| {
        if auth != KEY {
            return reply(401, json!({"error": "invalid, expired or revoked token"}));
        }
        let now = 1_796_515_000;
        let mut p = plane.lock().expect("plane");
        // The control plane's answer for one this token cannot see.
        let missing = |_: &str| {
            reply(
                403,
                json!({"error": paddock_init::control::service::NO_SUCH_WORKSPACE}),
            )
        };
        match call {
            Call::WhoAmI => reply(
                200,
                json!({"token": "tok_e2b", "admin": false, "tenant": "tok_e2b"}),
            ),
            Call::CreateWorkspace { spec } => {
                p.next += 1;
                let id = format!("ws_e2b{}", p.next);
                let v = view(&id, &spec, now);
                p.specs.push(spec);
                p.workspaces.insert(id, v.clone());
                reply(201, v)
            }
            Call::GetWorkspace { id } => match p.workspaces.get(&id) {
                Some(v) => reply(200, v.clone()),
                None => missing(&id),
            },
            Call::ListWorkspaces { labels } => {
                let list: Vec<Value> = p
                    .workspaces
                    .values()
                    .filter(|w| labels.iter().all(|(k, v)| w["labels"][k] == v.as_str()))
                    .cloned()
                    .collect();
                reply(200, json!({"workspaces": list}))
            }
            Call::DeleteWorkspace { id } => match p.workspaces.remove(&id) {
                Some(_) => reply(200, json!({"deleted": id})),
                None => missing(&id),
            },
            // Past a day this stand-in answers as a token whose policy
            // says ask does: 202 and the pending approval.
            Call::SetTtl { id, ttl_s, .. } if ttl_s > 86_400 => reply(
                202,
                json!({"id": "apr_stub", "workspace": id, "kind": "extend_ttl", "ttl_s": ttl_s,
                       "reason": "", "state": "pending", "asked_at": now, "asks": 1}),
            ),
            Call::SetTtl { id, ttl_s, .. } => {
                p.ttls.push((id.clone(), ttl_s));
                match p.workspaces.get_mut(&id) {
                    Some(w) => {
                        w["expires_at"] = json!(now + ttl_s);
                        reply(200, w.clone())
                    }
                    None => missing(&id),
                }
            }
            Call::SetEgress { id, request } => {
                p.egress.push((id.clone(), request.clone()));
                match p.workspaces.get_mut(&id) {
                    Some(w) => {
                        w["egress"] = request;
                        reply(200, w.clone())
                    }
                    None => missing(&id),
                }
            }
            Call::OpenAgent { id, .. } if p.workspaces.contains_key(&id) => {
                let (ours, theirs) = UnixStream::pair().expect("pair");
                std::thread::spawn(move || agent(theirs));
                // The env given at create, as the control plane hands it
                // over (it is never in an answer to a client).
                let n: usize = id.trim_start_matches("ws_e2b").parse().unwrap_or(1);
                let env = p
                    .specs
                    .get(n - 1)
                    .map(|s| s["env"].clone())
                    .unwrap_or_default();
                paddock_init::control::service::Outcome {
                    reply: paddock_init::api::channel::CallReply {
                        verdict: paddock_init::api::channel::Verdict::Ok,
                        body: json!({"env": env}),
                        fd: true,
                    },
                    stream: Some(OwnedFd::from(ours)),
                }
            }
            Call::OpenAgent { id, .. } => missing(&id),
            Call::ExecEnded { .. } => reply(200, json!({})),
            _ => reply(404, json!({"error": "not in this fake"})),
        }
    }
}

/// The fake workspace's files, by path.
fn files() -> &'static Mutex<BTreeMap<String, Vec<u8>>> {
    static FILES: std::sync::OnceLock<Mutex<BTreeMap<String, Vec<u8>>>> =
        std::sync::OnceLock::new();
    FILES.get_or_init(|| Mutex::new(BTreeMap::new()))
}

/// A workspace's agent that runs the command here, on the test's host (a
/// real shell, so the SDK sees real output and exit codes).
fn agent(mut s: UnixStream) {
    let Ok(HostMsg::Hello { protocol }) = read_frame::<HostMsg, _>(&mut s) else {
        return;
    };
    let hello = AgentMsg::HelloOk {
        protocol,
        agent_version: "fake".into(),
    };
    if write_frame(&mut s, &hello).is_err() {
        return;
    }
    let mut msg = read_frame::<HostMsg, _>(&mut s);
    while let Ok(HostMsg::AsUser(_)) = msg {
        msg = read_frame::<HostMsg, _>(&mut s);
    }
    let req = match msg {
        Ok(HostMsg::Exec(req)) => req,
        Ok(HostMsg::Spawn(spawn)) => spawn.exec,
        Ok(HostMsg::WriteFile { path, .. }) => {
            let mut data = Vec::new();
            loop {
                match read_frame::<HostMsg, _>(&mut s) {
                    Ok(HostMsg::Data(d)) => data.extend(d),
                    Ok(HostMsg::DataEnd) => break,
                    // Cut: nothing is written.
                    _ => return,
                }
            }
            files().lock().expect("files").insert(path, data);
            let _ = write_frame(&mut s, &AgentMsg::Done);
            return;
        }
        Ok(HostMsg::ReadFile { path }) => {
            let data = files().lock().expect("files").get(&path).cloned();
            let Some(data) = data else {
                let _ = write_frame(
                    &mut s,
                    &AgentMsg::Error(paddock_proto::ErrorReply {
                        kind: paddock_proto::ErrorKind::NotFound,
                        message: format!("{path}: NotFound"),
                    }),
                );
                return;
            };
            let start = AgentMsg::FileStart {
                size: data.len() as u64,
                mode: 0o644,
            };
            let _ = write_frame(&mut s, &start);
            let _ = write_frame(&mut s, &AgentMsg::Data(data));
            let _ = write_frame(&mut s, &AgentMsg::DataEnd);
            return;
        }
        _ => return,
    };
    let _ = write_frame(&mut s, &AgentMsg::Started { pid: 7 });
    // A home of its own, so that a login shell reads no profile of the
    // test machine's.
    let home = std::env::temp_dir().join(format!("paddock-e2b-home-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&home);
    let out = Command::new(&req.argv[0])
        .args(&req.argv[1..])
        .env_clear()
        .env("HOME", &home)
        .env("PATH", "/usr/bin:/bin")
        .envs(req.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output();
    let status = match out {
        Ok(out) => {
            let _ = write_frame(&mut s, &AgentMsg::Stdout(out.stdout));
            let _ = write_frame(&mut s, &AgentMsg::Stderr(out.stderr));
            out.status.code()
        }
        Err(_) => Some(127),
    };
    let exited = paddock_proto::ExitStatus {
        code: status,
        signal: None,
        timed_out: false,
    };
    let _ = write_frame(&mut s, &AgentMsg::Exited(exited));
    while read_frame::<HostMsg, _>(&mut s).is_ok() {}
}

/// What the SDK does, printed one fact per line for the test to check.
const SCRIPT: &str = r#"
import sys
from e2b import Sandbox, SandboxQuery
from e2b.exceptions import AuthenticationException, SandboxException

def say(*a):
    print(*a, flush=True)

sbx = Sandbox.create(timeout=120, metadata={"team": "a"}, envs={"K": "v"},
                     network={"allow_out": ["allowed.example", "8.8.8.8/32:53"]})
say("created", sbx.sandbox_id)
info = sbx.get_info()
say("info", info.sandbox_id, info.template_id, info.metadata.get("team"), info.state)
other = Sandbox.create(metadata={"team": "b"})
ids = sorted(s.sandbox_id for s in Sandbox.list(query=SandboxQuery(metadata={"team": "a"})).next_items())
say("listed", ",".join(ids))
say("all", len(Sandbox.list().next_items()))
sbx.set_timeout(600)
say("timeout set")
try:
    sbx.set_timeout(90000)
    say("an asked timeout passed as set?!")
except SandboxException as e:
    say("asked timeout refused", "apr_stub" in str(e))
again = Sandbox.connect(sbx.sandbox_id, timeout=900)
say("connected", again.sandbox_id)
# Without a timeout the SDK sends an empty body: the sandbox as it is.
say("reconnected", Sandbox.connect(sbx.sandbox_id).sandbox_id)
say("running", again.is_running())
r = sbx.commands.run("echo hello from $K $MINE; echo oops >&2", envs={"MINE": "mine"})
say("ran", repr(r.stdout), repr(r.stderr), r.exit_code)
from e2b.sandbox.commands.command_handle import CommandExitException
try:
    sbx.commands.run("exit 3")
    say("exit 3 passed?!")
except CommandExitException as e:
    say("exit code", e.exit_code)
info = sbx.files.write("/tmp/hello.txt", "hello, files\n")
say("wrote", info.path)
say("read", repr(sbx.files.read("/tmp/hello.txt")))
import io
sbx.files.write("notes/raw.bin", io.BytesIO(b"\x00\x01raw\r\n--not-a-boundary"))
say("raw", sbx.files.read("notes/raw.bin", format="bytes") == b"\x00\x01raw\r\n--not-a-boundary")
sbx.files.write("/tmp/gz.txt", "asked for gzip", gzip=True)
say("gzip", repr(sbx.files.read("/tmp/gz.txt")))
try:
    sbx.files.read("/no/such/file")
    say("read a missing file?!")
except Exception as e:
    say("missing", type(e).__name__)
try:
    sbx.pause()
    say("paused?!")
except Exception as e:
    say("pause refused", type(e).__name__, str(e)[:80])
try:
    Sandbox.create(network={"allow_out": ["8.8.8.8"]})
    say("created without ports?!")
except Exception as e:
    say("no ports refused", "443" in str(e))
try:
    Sandbox.list(api_key="e2b_" + "f" * 40).next_items()
    say("bad key listed?!")
except AuthenticationException:
    say("bad key refused")
say("killed", sbx.kill())
say("killed again", Sandbox.kill(sbx.sandbox_id))
other.kill()
say("left", len(Sandbox.list().next_items()))
"#;

/// Every SDK version of the matrix (scripts/e2b-sdk-versions).
#[test]
fn e2bs_sdk_runs_its_sandbox_calls_against_paddock() {
    let matrix = match std::env::var("PADDOCK_E2B_MATRIX") {
        Ok(m) => m,
        Err(_) => panic!(
            "PADDOCK_E2B_MATRIX is not set: the Justfile sets it (scripts/e2b-sdk.sh matrix)"
        ),
    };
    let versions: Vec<(&str, &str)> = matrix
        .split_whitespace()
        .filter_map(|v| v.split_once('='))
        .collect();
    assert!(!versions.is_empty(), "no SDK in {matrix:?}");
    for (n, (version, python)) in versions.into_iter().enumerate() {
        eprintln!("e2b SDK {version}");
        sdk_session(python, Reach::Urls);
        if n == 0 {
            eprintln!("e2b SDK {version}, plain HTTP");
            sdk_session(python, Reach::Plain);
            eprintln!("e2b SDK {version}, E2B_DOMAIN");
            sdk_session(python, Reach::Domain);
        }
    }
}

/// How the SDK is pointed at the box.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// E2B_API_URL and E2B_SANDBOX_URL at the TLS port.
    Urls,
    /// The same at the plain-HTTP listener (bound to the loopback
    /// interface here), with no certificate given at all.
    Plain,
    /// Only E2B_DOMAIN, as with E2B itself: the API at api.{domain} and
    /// each sandbox at 49983-{id}.{domain}, routed by host name (the port
    /// rides along in the domain, as docs/e2b.md says).
    Domain,
}

/// Under `.localhost`, which resolvers answer with loopback themselves
/// (RFC 6761): no query leaves the machine.
const DOMAIN: &str = "paddock.localhost";

fn sdk_session(python: &str, reach: Reach) {
    let plain = reach == Reach::Plain;
    if reach == Reach::Domain {
        paddock_init::tls::set_domain(DOMAIN);
    }
    let id = paddock_init::tls::generate().expect("identity");
    let init = Init {
        cert_pem: id.cert_pem.clone(),
        key_pem: id.key_pem,
        port: 0,
        plain_http: plain.then(|| PlainHttp {
            interface: "lo".into(),
            port: 0,
        }),
        domain: (reach == Reach::Domain).then(|| DOMAIN.to_string()),
    };
    let plane = Arc::new(Mutex::new(Plane::default()));
    let status = || StatusReply {
        version: "test".into(),
        state: "ready".into(),
        workspaces: 0,
        uptime_s: 1,
    };
    let running = spawn(
        Path::new(env!("CARGO_BIN_EXE_paddock-init")),
        &init,
        None,
        status,
        control(plane.clone()),
    )
    .expect("API process starts");
    let _guard = KillOnDrop(running.pid);
    let dir = std::env::temp_dir().join(format!("paddock-e2b-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let cert = dir.join("api.pem");
    std::fs::write(&cert, &id.cert_pem).expect("cert");
    let script = dir.join("agent.py");
    std::fs::write(&script, SCRIPT).expect("script");
    // The two variables an E2B user changes, and the box's certificate.
    let url = match (plain, running.plain_port) {
        (false, _) => format!("https://localhost:{}", running.port),
        (true, Some(p)) => format!("http://localhost:{p}"),
        (true, None) => panic!("no plain-HTTP port reported"),
    };
    let mut sdk = Command::new(python);
    sdk.arg(&script).env("E2B_API_KEY", KEY);
    if reach == Reach::Domain {
        sdk.env("E2B_DOMAIN", format!("{DOMAIN}:{}", running.port));
    } else {
        sdk.env("E2B_API_URL", &url).env("E2B_SANDBOX_URL", &url);
    }
    if !plain {
        sdk.env("SSL_CERT_FILE", &cert);
    }
    let out = sdk.output().expect("python");
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}\n{err}");
    let lines: Vec<&str> = text.lines().collect();
    let expect = [
        "created ws-e2b1",
        "info ws-e2b1 base a running",
        "listed ws-e2b1",
        "all 2",
        "timeout set",
        "asked timeout refused True",
        "connected ws-e2b1",
        "reconnected ws-e2b1",
        "running True",
        "ran 'hello from v mine\\n' 'oops\\n' 0",
        "exit code 3",
        "wrote /tmp/hello.txt",
        "read 'hello, files\\n'",
        "raw True",
        "gzip 'asked for gzip'",
        "missing FileNotFoundException",
        "no ports refused True",
        "bad key refused",
        "killed True",
        "killed again False",
        "left 0",
    ];
    for e in expect {
        assert!(lines.contains(&e), "no {e:?} in:\n{text}\n{err}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("pause refused") && l.contains("pause")),
        "{text}"
    );
    // An encoded upload is refused, not stored as a corrupt file.
    let out = Command::new("curl")
        .args([
            "-sk",
            "-w",
            "\n%{http_code}",
            "-H",
            &format!("X-Access-Token: {KEY}"),
        ])
        .args([
            "-H",
            "E2b-Sandbox-Id: ws_e2b1",
            "-H",
            "Content-Encoding: gzip",
        ])
        .args([
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            "x",
        ])
        .arg(format!(
            "https://localhost:{}/files?path=/tmp/z",
            running.port
        ))
        .output()
        .expect("curl");
    let answer = String::from_utf8_lossy(&out.stdout);
    assert!(answer.ends_with("415"), "{answer}");
    // What reached the control plane: the native spec, with E2B's names
    // mapped onto Paddock's (template, TTL, labels, env, allowlist).
    let p = plane.lock().expect("plane");
    let spec = &p.specs[0];
    assert_eq!(spec["template"], "default");
    assert_eq!(spec["ttl_s"], 120);
    assert_eq!(spec["labels"]["team"], "a");
    assert_eq!(spec["env"]["K"], "v");
    assert_eq!(spec["egress"]["domains"], json!(["allowed.example"]));
    assert_eq!(spec["egress"]["cidrs"], json!(["8.8.8.8/32:53"]));
    assert_eq!(p.specs[1]["ttl_s"], 300, "E2B's default timeout");
    assert_eq!(p.specs.len(), 2, "the refused create never reached it");
    assert!(p.ttls.contains(&("ws_e2b1".into(), 600)), "{:?}", p.ttls);
    assert!(p.ttls.contains(&("ws_e2b1".into(), 900)), "{:?}", p.ttls);
    // A relative path lands in the agent user's home.
    assert!(files()
        .lock()
        .expect("files")
        .contains_key("/home/agent/notes/raw.bin"));
}
