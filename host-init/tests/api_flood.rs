//! The API process under the floods of issue 14, item 2, with real clients
//! (openssl s_client, curl) over loopback: slow heads that never send their
//! body, a tenant holding long calls, and a burst of large uploads with a
//! bad token. Through each, /v1/health and an admin's call are answered.

use paddock_init::api::channel::{Call, Init, StatusReply};
use paddock_init::api::supervisor::{spawn, API_GID, API_UID};
use paddock_init::control::service::Outcome;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

mod common;
use common::{outcome, KillOnDrop};

/// The control plane, reduced to three bearers: "admin", "tenant" (whose
/// creates are held until the gate opens) and anything else (401).
fn control(
    gate: Arc<(Mutex<bool>, Condvar)>,
    calls: Arc<AtomicUsize>,
) -> impl Fn(&str, Call) -> Outcome {
    move |auth, call| {
        if !matches!(call, Call::WhoAmI) {
            calls.fetch_add(1, Ordering::SeqCst);
        }
        let (admin, tenant) = match auth {
            "admin" => (true, "tok_admin"),
            "tenant" => (false, "tok_tenant"),
            _ => {
                return outcome(
                    401,
                    serde_json::json!({"error": "invalid, expired or revoked token"}),
                )
            }
        };
        match call {
            Call::WhoAmI => outcome(
                200,
                serde_json::json!({"token": tenant, "admin": admin, "tenant": tenant}),
            ),
            Call::CreateWorkspace { .. } if !admin => {
                let (lock, cv) = &*gate;
                let mut open = lock.lock().unwrap_or_else(|e| e.into_inner());
                while !*open {
                    open = cv.wait(open).unwrap_or_else(|e| e.into_inner());
                }
                outcome(201, serde_json::json!({"id": "ws_x"}))
            }
            _ => outcome(200, serde_json::json!({"workspaces": []})),
        }
    }
}

/// curl from a loopback address of its own (the caps are per address).
fn curl(from: &str, args: &[&str]) -> String {
    let mut all = vec!["--interface", from];
    all.extend_from_slice(args);
    common::curl_status(20, &all)
}

fn vm_hwm_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

struct Clients(Vec<Child>);

impl Drop for Clients {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn floods_before_and_after_authentication_leave_health_and_admins_answered() {
    let id = paddock_init::tls::generate().expect("identity");
    let init = Init {
        cert_pem: id.cert_pem.clone(),
        key_pem: id.key_pem.clone(),
        port: 0,
        plain_http: None,
        domain: None,
    };
    let root = nix::unistd::geteuid().is_root();
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let calls = Arc::new(AtomicUsize::new(0));
    let running = spawn(
        Path::new(env!("CARGO_BIN_EXE_paddock-init")),
        &init,
        root.then_some((API_UID, API_GID)),
        || StatusReply {
            version: "test".into(),
            state: "ready".into(),
            workspaces: 0,
            uptime_s: 1,
        },
        control(gate.clone(), calls.clone()),
    )
    .expect("API process starts");
    let _guard = KillOnDrop(running.pid);
    let port = running.port;
    let base = format!("https://127.0.0.1:{port}");
    let health = format!("{base}/v1/health");
    let list = format!("{base}/v1/workspaces");

    // 1. Slow heads: 80 TLS clients from one address, each sending a head
    //    that promises a body it never sends (half of them not even
    //    finishing the head), and holding the connection open.
    let mut slow = Clients(Vec::new());
    for i in 0..80 {
        let mut c = Command::new("openssl")
            .args([
                "s_client",
                "-quiet",
                "-connect",
                &format!("127.0.0.1:{port}"),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_client");
        let head = if i % 2 == 0 {
            "PUT /v1/workspaces/ws_x/files?path=/a HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\nContent-Length: 100000\r\n\r\n"
        } else {
            "POST /v1/workspaces HTTP/1.1\r\nHost: x\r\nContent-Le"
        };
        if let Some(stdin) = c.stdin.as_mut() {
            let _ = stdin.write_all(head.as_bytes());
            let _ = stdin.flush();
        }
        slow.0.push(c);
    }
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        curl("127.0.0.2", &[&health]),
        "200",
        "health during the slow-head flood"
    );
    assert_eq!(
        curl("127.0.0.2", &["-H", "Authorization: Bearer admin", &list]),
        "200",
        "an admin during the slow-head flood"
    );
    drop(slow);

    // 2. One tenant holds long calls (a create held open): it gets its cap,
    //    then 429; the admin and health are still answered.
    let held: Vec<_> = (0..8)
        .map(|_| {
            let url = list.clone();
            std::thread::spawn(move || {
                curl(
                    "127.0.0.3",
                    &[
                        "-X",
                        "POST",
                        "-H",
                        "Authorization: Bearer tenant",
                        "--data-binary",
                        "{}",
                        &url,
                    ],
                )
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        curl(
            "127.0.0.4",
            &[
                "-X",
                "POST",
                "-H",
                "Authorization: Bearer tenant",
                "--data-binary",
                "{}",
                &list
            ]
        ),
        "429",
        "the tenant's ninth call while eight are held"
    );
    assert_eq!(
        curl("127.0.0.4", &["-H", "Authorization: Bearer admin", &list]),
        "200"
    );
    assert_eq!(curl("127.0.0.4", &[&health]), "200");
    {
        let (lock, cv) = &*gate;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
    }
    for h in held {
        assert_eq!(h.join().expect("thread"), "201");
    }

    // 3. Large uploads with a bad token: refused on the head, never read,
    //    never forwarded; the process's peak memory stays far below them.
    let before = calls.load(Ordering::SeqCst);
    let big = std::env::temp_dir().join(format!("paddock-flood-{}", std::process::id()));
    let f = std::fs::File::create(&big).expect("file");
    f.set_len(200 << 20).expect("sparse 200 MiB");
    drop(f);
    let uploads: Vec<_> = (0..8)
        .map(|i| {
            let url = format!("{base}/v1/workspaces/ws_x/files?path=/up{i}");
            let path = big.to_string_lossy().to_string();
            std::thread::spawn(move || {
                curl(
                    "127.0.0.5",
                    &[
                        "-X",
                        "PUT",
                        "-H",
                        "Authorization: Bearer nope",
                        "-T",
                        &path,
                        &url,
                    ],
                )
            })
        })
        .collect();
    for u in uploads {
        let code = u.join().expect("thread");
        assert!(code == "401" || code == "000", "refused upload: {code}");
    }
    let _ = std::fs::remove_file(&big);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        before,
        "nothing reached the control plane"
    );
    let hwm = vm_hwm_kib(running.pid);
    assert!(
        hwm > 0 && hwm < 64 * 1024,
        "peak RSS {hwm} KiB after 1.6 GB of refused uploads"
    );
    assert_eq!(curl("127.0.0.2", &[&health]), "200");
}
