//! The API process as PID 1 starts it, on this machine: it runs as its own
//! uid with no capabilities, no_new_privs and seccomp, serves TLS, answers
//! from the privileged side's channel, and survives garbage.

use paddock_init::api::channel::{Call, Init, StatusReply};
use paddock_init::api::supervisor::{spawn, API_GID, API_UID};
use paddock_init::control::service::Outcome;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

mod common;
use common::KillOnDrop;

fn proc_status(pid: u32, key: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

/// What host-init answers for a bad token: this test is about the process,
/// not the control plane.
fn refused() -> Outcome {
    common::outcome(
        401,
        serde_json::json!({"error": "invalid, expired or revoked token"}),
    )
}

/// Holds calls until the test opens it.
#[derive(Clone)]
struct Gate(std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>);

impl Gate {
    fn new() -> Gate {
        Gate(std::sync::Arc::new((
            std::sync::Mutex::new(false),
            std::sync::Condvar::new(),
        )))
    }

    fn wait(&self) {
        let (lock, cv) = &*self.0;
        let mut open = lock.lock().expect("lock");
        while !*open {
            open = cv.wait(open).expect("wait");
        }
    }

    fn open(&self) {
        let (lock, cv) = &*self.0;
        *lock.lock().expect("lock") = true;
        cv.notify_all();
    }
}

/// The HTTP status curl gets for `args` (a URL and options), with a bearer
/// (without one the API process answers 401 itself).
fn status_of(args: &[&str]) -> String {
    // A bearer: calls without one are answered by the API process itself.
    common::curl_status(10, &[&["-H", "Authorization: Bearer t"], args].concat())
}

#[test]
fn api_process_is_confined_and_serves_tls() {
    let id = paddock_init::tls::generate().expect("identity");
    let init = Init {
        cert_pem: id.cert_pem.clone(),
        key_pem: id.key_pem.clone(),
        port: 0,
        plain_http: None,
        domain: None,
    };
    let root = nix::unistd::geteuid().is_root();
    if !root {
        eprintln!("note: not root, so the uid switch is not exercised; seccomp and no_new_privs still are");
    }
    let exe = Path::new(env!("CARGO_BIN_EXE_paddock-init"));
    // Every call is answered "401", as host-init would for a bad token: this
    // test is about the process, not the control plane. A create is held
    // until the test releases it, to show other calls do not wait behind it.
    let release = Gate::new();
    let held = release.clone();
    // A second create, held the same way, outlives the API process that
    // asked for it: the privileged side finishes it and notes the answer
    // could not be delivered.
    let release_orphan = Gate::new();
    let held_orphan = release_orphan.clone();
    let orphan_done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let orphan_done_inner = orphan_done.clone();
    let running = spawn(
        exe,
        &init,
        root.then_some((API_UID, API_GID)),
        || StatusReply {
            version: "test".into(),
            state: "ready".into(),
            workspaces: 3,
            uptime_s: 1,
        },
        move |_, call| {
            // Every bearer is someone here; the calls themselves are refused.
            if matches!(call, Call::WhoAmI) {
                return common::outcome(
                    200,
                    serde_json::json!({"token": "t", "admin": false, "tenant": "t"}),
                );
            }
            if matches!(&call, Call::CreateWorkspace { spec } if spec["orphan"] == true) {
                held_orphan.wait();
                orphan_done_inner.store(true, std::sync::atomic::Ordering::SeqCst);
            } else if matches!(call, Call::CreateWorkspace { .. }) {
                held.wait();
            }
            refused()
        },
    )
    .expect("API process starts");
    let pid = running.pid;
    let _guard = KillOnDrop(pid);

    assert_eq!(proc_status(pid, "NoNewPrivs"), "1");
    assert_eq!(proc_status(pid, "Seccomp"), "2", "seccomp filter mode");
    assert_eq!(proc_status(pid, "CapEff"), "0000000000000000");
    if root {
        assert!(proc_status(pid, "Uid").starts_with(&format!("{API_UID}\t")));
        assert!(proc_status(pid, "Gid").starts_with(&format!("{API_GID}\t")));
        assert_eq!(proc_status(pid, "Groups"), "");
        assert_eq!(proc_status(pid, "CapPrm"), "0000000000000000");
    }

    let url = format!("https://127.0.0.1:{}/v1/health", running.port);
    let out = Command::new("curl")
        .args(["-sk", "--max-time", "10", &url])
        .output()
        .expect("curl");
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(body["workspaces"], 3, "answered from the privileged side");
    assert_eq!(body["status"], "ok");

    // Plain-text garbage on the TLS port, then a huge request head: both
    // rejected, the process keeps serving.
    let mut raw = std::net::TcpStream::connect(("127.0.0.1", running.port)).expect("connect");
    let _ = raw.write_all(b"\x00\x01GARBAGE\r\n\r\n");
    drop(raw);
    let big = format!("https://127.0.0.1:{}/{}", running.port, "a".repeat(20_000));
    assert_eq!(status_of(&[&big]), "413");
    // Calls go to the privileged side, which decides.
    let ws_url = format!("https://127.0.0.1:{}/v1/workspaces", running.port);
    assert_eq!(status_of(&[&ws_url]), "401");
    assert_eq!(
        status_of(&["-X", "POST", "--data-binary", "{nope", &ws_url]),
        "400",
        "malformed JSON is refused before it travels"
    );

    // A create that takes long (here: until released) holds up nothing else.
    let create_url = ws_url.clone();
    let create =
        std::thread::spawn(move || status_of(&["-X", "POST", "--data-binary", "{}", &create_url]));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(status_of(&[&ws_url]), "401", "answered while a create runs");
    assert!(!create.is_finished(), "the create is still held");
    release.open();
    assert_eq!(create.join().expect("create thread"), "401");

    std::thread::sleep(Duration::from_millis(200));
    let out = Command::new("curl")
        .args(["-sk", "--max-time", "10", &url])
        .output()
        .expect("curl");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\"ok\""),
        "still serving"
    );

    // The API process dies with a call in flight (as host-init's
    // supervisor would then see it); the call still completes on the
    // privileged side, and a new API process serves at once.
    let orphan_url = ws_url.clone();
    let orphan = std::thread::spawn(move || {
        status_of(&[
            "-X",
            "POST",
            "--data-binary",
            r#"{"orphan": true}"#,
            &orphan_url,
        ])
    });
    std::thread::sleep(Duration::from_millis(300));
    drop(_guard);
    assert_eq!(
        orphan.join().expect("orphan thread"),
        "000",
        "its client lost the connection"
    );
    release_orphan.open();
    for _ in 0..100 {
        if orphan_done.load(std::sync::atomic::Ordering::SeqCst) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        orphan_done.load(std::sync::atomic::Ordering::SeqCst),
        "the privileged side finished the orphaned call"
    );
    let again = spawn(
        exe,
        &init,
        root.then_some((API_UID, API_GID)),
        || StatusReply {
            version: "test".into(),
            state: "ready".into(),
            workspaces: 4,
            uptime_s: 2,
        },
        |_, _| refused(),
    )
    .expect("a new API process starts");
    let _guard = KillOnDrop(again.pid);
    let url = format!("https://127.0.0.1:{}/v1/health", again.port);
    let out = Command::new("curl")
        .args(["-sk", "--max-time", "10", &url])
        .output()
        .expect("curl");
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(body["workspaces"], 4, "the new process answers");
}

/// A plain-HTTP listener that cannot bind (its interface absent) is
/// reported, and the TLS port serves regardless: a bad setting never
/// leaves the box unreachable.
#[test]
fn a_plain_listener_that_cannot_bind_leaves_the_tls_port_serving() {
    let id = paddock_init::tls::generate().expect("identity");
    let init = Init {
        cert_pem: id.cert_pem.clone(),
        key_pem: id.key_pem.clone(),
        port: 0,
        plain_http: Some(paddock_init::api::channel::PlainHttp {
            interface: "pdknosuch9".into(),
            port: 0,
        }),
        domain: None,
    };
    let running = spawn(
        Path::new(env!("CARGO_BIN_EXE_paddock-init")),
        &init,
        None,
        || StatusReply {
            version: "test".into(),
            state: "ready".into(),
            workspaces: 0,
            uptime_s: 1,
        },
        |_, _| common::outcome(401, serde_json::json!({"error": "no"})),
    )
    .expect("the API starts without its plain listener");
    let _guard = common::KillOnDrop(running.pid);
    assert_eq!(running.plain_port, None);
    let why = running.plain_error.expect("the failure is reported");
    assert!(why.contains("pdknosuch9"), "{why}");
    let status = common::curl_status(
        10,
        &[
            "-k",
            &format!("https://127.0.0.1:{}/v1/health", running.port),
        ],
    );
    assert_eq!(status, "200", "the TLS port serves");
}

/// An answer bigger than one channel message's default (64 KiB: an hour
/// of samples, a long audit page, many workspaces) reaches the client
/// whole instead of failing as "host-init did not answer".
#[test]
fn a_large_answer_from_the_control_plane_arrives_whole() {
    let id = paddock_init::tls::generate().expect("identity");
    let init = Init {
        cert_pem: id.cert_pem.clone(),
        key_pem: id.key_pem.clone(),
        port: 0,
        plain_http: None,
        domain: None,
    };
    // About 1 MiB; without root (no SO_SNDBUFFORCE) the socket holds
    // about 400 KiB, so about 150 KiB then.
    let count = if nix::unistd::geteuid().is_root() {
        40_000
    } else {
        6_000
    };
    let names: Vec<String> = (0..count)
        .map(|n| format!("workspace-label-{n:06}"))
        .collect();
    let big = serde_json::json!({"workspaces": [], "padding": names});
    let expected = big.to_string().len();
    assert!(expected > 2 * 64 * 1024, "{expected}");
    let running = spawn(
        Path::new(env!("CARGO_BIN_EXE_paddock-init")),
        &init,
        None,
        || StatusReply {
            version: "test".into(),
            state: "ready".into(),
            workspaces: 0,
            uptime_s: 1,
        },
        move |_, call| match call {
            Call::WhoAmI => common::outcome(
                200,
                serde_json::json!({"token": "t", "admin": false, "tenant": "t"}),
            ),
            _ => common::outcome(200, big.clone()),
        },
    )
    .expect("the API starts");
    let _guard = common::KillOnDrop(running.pid);
    let out = std::process::Command::new("curl")
        .args(["-sk", "--max-time", "30", "-H", "Authorization: Bearer t"])
        .args(["-w", "\n%{http_code}"])
        .arg(format!("https://127.0.0.1:{}/v1/workspaces", running.port))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').expect("status");
    assert_eq!(code, "200", "{}", &body[..body.len().min(300)]);
    assert_eq!(body.len(), expected);
}
