//! An API process that sends host-init a malformed message (a bug, or an
//! attacker who took it over) loses its channel. Before, it went on
//! serving TLS without one: every call answered "host-init did not
//! answer" (503) until the appliance rebooted. Now host-init kills it, so
//! the watcher starts a fresh one. The "API process" here is a small
//! Python program speaking the channel's wire format (JSON over
//! SOCK_SEQPACKET on fd 3), since the real one never misbehaves on demand.

use paddock_init::api::channel::{Init, StatusReply};
use paddock_init::api::supervisor::spawn;
use std::path::PathBuf;
use std::time::{Duration, Instant};

mod common;
use common::{alive, KillOnDrop};

const FAKE: &str = r#"import socket, time
s = socket.socket(fileno=3)
s.recv(1 << 20)  # the Init message
s.send(b'{"port": 40000, "error": null}')
time.sleep(0.5)
s.send(b"this is not JSON")
time.sleep(120)  # still "serving": only a kill ends it sooner
"#;

fn fake_api(dir: &std::path::Path) -> PathBuf {
    common::python_program(dir, "fake-api", FAKE)
}

#[test]
fn an_api_process_that_sends_garbage_is_killed_so_it_can_be_restarted() {
    let dir = std::env::temp_dir().join(format!("paddock-misbehave-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let init = Init {
        cert_pem: String::new(),
        key_pem: String::new(),
        port: 0,
        plain_http: None,
        domain: None,
    };
    let running = spawn(
        &fake_api(&dir),
        &init,
        None,
        || StatusReply {
            state: "ready".into(),
            version: "test".into(),
            workspaces: 0,
            uptime_s: 0,
        },
        |_, _| common::outcome(500, serde_json::json!({"error": "not in this test"})),
    )
    .expect("the fake API process starts");
    let _kill = KillOnDrop(running.pid);
    assert_eq!(running.port, 40000);
    // A liveness bound, not a timing: the fake sleeps 120 s unless killed.
    let until = Instant::now() + Duration::from_secs(60);
    while alive(running.pid) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !alive(running.pid),
        "the API process kept running without its channel"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
