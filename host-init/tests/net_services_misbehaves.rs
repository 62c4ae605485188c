//! A network services process that lies to PID 1 or stops answering (a
//! bug, or an attacker who took it over through a guest) is ended and
//! replaced, and PID 1 does not wait on it past its limits. The
//! "process" is a small Python program speaking the channel's wire format
//! (JSON over SOCK_SEQPACKET on fd 3); each life misbehaves differently.

use paddock_init::net_services::supervisor::{self, Confine, Sockets};
use paddock_net::firewall::{Slot, WsNet};
use paddock_net::policy::Egress;
use paddock_net::policy_table;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

mod common;
use common::alive;

/// Life 1 confirms its state, then confirms an update never sent. Life 2
/// confirms its state, then never answers again. Later lives behave.
const FAKE: &str = r#"import json, socket, time
life_file = LIFE_FILE
try:
    life = int(open(life_file).read()) + 1
except OSError:
    life = 1
open(life_file, "w").write(str(life))
s = socket.socket(fileno=3)
def answer_syncs(forever):
    while True:
        b = s.recv(1 << 20)
        if not b:
            raise SystemExit(0)  # PID 1 closed the channel
        m = json.loads(b)
        if m.get("update") == "sync":
            s.send(json.dumps({"report": "synced", "seq": m["seq"]}).encode())
            if not forever:
                return
answer_syncs(forever=False)
if life == 1:
    s.send(json.dumps({"report": "synced", "seq": 2**63}).encode())
    time.sleep(120)
elif life == 2:
    while s.recv(1 << 20):
        pass  # reads, never answers
else:
    answer_syncs(forever=True)
"#;

fn fake(dir: &Path) -> PathBuf {
    let life = dir.join("life").display().to_string();
    let body = FAKE.replace("LIFE_FILE", &format!("{life:?}"));
    common::python_program(dir, "fake-net-services", &body)
}

/// Waits (bounded) for the fake's `life`-th life to run; its pid.
fn life(dir: &Path, life: u32) -> u32 {
    for _ in 0..600 {
        let now: u32 = std::fs::read_to_string(dir.join("life"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        assert!(
            now <= life,
            "life {now} began while waiting for life {life}"
        );
        if let Some(pid) = supervisor::pid().filter(|p| now == life && alive(*p)) {
            return pid;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the fake's life {life} never began");
}

#[test]
fn a_lying_or_silent_process_is_ended_and_replaced() {
    let dir = std::env::temp_dir().join(format!("paddock-netsvc-fake-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let exe = fake(&dir);
    std::thread::spawn(|| loop {
        paddock_init::children::CHILDREN.reap_all();
        std::thread::sleep(Duration::from_millis(50));
    });
    let sockets = Sockets {
        resolver: UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("udp"),
        proxy: TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("tcp"),
    };
    let confine = Confine {
        drop_to: None,
        memory_cgroup: false,
    };
    supervisor::start(exe, sockets, confine).expect("start");

    // Life 1 confirms a number PID 1 never sent: ended at once, and
    // replaced.
    let second = life(&dir, 2);
    assert_eq!(supervisor::restarts(), 1);

    // Life 2 takes updates but never confirms: the update's wait ends at
    // its limit (this thread is not held forever) and the process with it.
    let ws = WsNet {
        id: "ws_x".into(),
        slot: Slot::new(1).expect("slot"),
        egress: Egress::default(),
        connections_per_s: 10,
        published: Vec::new(),
    };
    // (Pushed once the process is linked, that is, has its state.)
    let ticket = (0..600)
        .find_map(|_| {
            let t = policy_table::publish([&ws]);
            if t.is_none() {
                std::thread::sleep(Duration::from_millis(100));
            }
            t
        })
        .expect("a process to push to");
    ticket.wait();
    // Life 3 behaves, and gets the whole state, the update included.
    let third = life(&dir, 3);
    assert!(!alive(second), "the silent process {second} still runs");
    assert_eq!(supervisor::restarts(), 2);
    paddock_init::net_services::flush();
    assert!(alive(third));
    let _ = std::fs::remove_dir_all(&dir);
}
