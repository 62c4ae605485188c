//! The network services process (the workspaces' resolver and egress
//! proxy) as PID 1 runs it: the real `paddock-init net-services`, started
//! through the supervisor in a network namespace this test makes, with
//! two "guests" as addresses on its loopback and a fake upstream resolver
//! beside them. It must run confined (own uid, no capabilities, seccomp),
//! answer by each workspace's policy, report its refusals to PID 1, and,
//! killed with SIGKILL, come back by itself with the policy and the counts
//! it had. Needs root (CI runs as root).

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use paddock_init::net_services::supervisor::{self, Confine, Sockets};
use paddock_init::net_services::{self, GID, UID};
use paddock_net::firewall::{Slot, WsNet};
use paddock_net::policy::{CheckEgress as _, EgressRequest};
use paddock_net::policy_table;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

/// What the fake upstream answers for every name.
const UPSTREAM_ANSWER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
const UPSTREAM: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 53);

fn ip(args: &[&str]) {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .expect("ip(8)");
    assert!(out.status.success(), "ip {args:?}: {out:?}");
}

fn workspace(slot: u32, id: &str, domains: &[&str]) -> WsNet {
    WsNet {
        id: id.into(),
        slot: Slot::new(slot).expect("slot"),
        egress: EgressRequest {
            domains: domains.iter().map(|d| d.to_string()).collect(),
            cidrs: Vec::new(),
        }
        .check()
        .expect("policy"),
        connections_per_s: 10,
        published: Vec::new(),
    }
}

/// Questions the fake upstream was asked.
static ASKED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn asked() -> u64 {
    ASKED.load(std::sync::atomic::Ordering::SeqCst)
}

/// A resolver on UPSTREAM:53 that answers every A query with
/// UPSTREAM_ANSWER (TTL 60), counting them.
fn fake_upstream() {
    let sock = UdpSocket::bind((UPSTREAM, 53)).expect("bind the fake upstream");
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            ASKED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut r = Message::new();
            r.set_id(q.id())
                .set_message_type(MessageType::Response)
                .set_op_code(OpCode::Query)
                .set_response_code(ResponseCode::NoError);
            r.add_queries(q.queries().to_vec());
            if let Some(question) = q.queries().first() {
                r.add_answer(Record::from_rdata(
                    question.name().clone(),
                    60,
                    RData::A(A(UPSTREAM_ANSWER)),
                ));
            }
            if let Ok(bytes) = r.to_vec() {
                let _ = sock.send_to(&bytes, from);
            }
        }
    });
}

/// Asks the resolver at `server` for `name` from guest address `from`:
/// the response code and the addresses.
fn lookup(server: SocketAddr, from: Ipv4Addr, name: &str) -> (ResponseCode, Vec<Ipv4Addr>) {
    let sock = UdpSocket::bind((from, 0)).expect("bind as the guest");
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut m = Message::new();
    m.set_id(0x4242)
        .set_message_type(MessageType::Query)
        .set_recursion_desired(true);
    m.add_query(Query::query(
        Name::from_ascii(format!("{name}.")).expect("name"),
        RecordType::A,
    ));
    sock.send_to(&m.to_vec().expect("encode"), server)
        .expect("send");
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("an answer from the resolver");
    let r = Message::from_vec(&buf[..n]).expect("parse");
    let addrs = r
        .answers()
        .iter()
        .filter_map(|a| match a.data() {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect();
    (r.response_code(), addrs)
}

/// The fields of /proc/<pid>/status this test checks.
fn status_of(pid: u32) -> std::collections::BTreeMap<String, String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

/// Makes `workspaces` the policy table, in force in the process when this
/// returns (as the firewall does).
fn publish(workspaces: &[&WsNet]) {
    if let Some(t) = policy_table::publish(workspaces.iter().copied()) {
        t.wait();
    }
}

/// Waits (a bounded number of tries) for a new process to replace `old`
/// (0: for the first) and to have its state.
fn replaced(old: u32) -> u32 {
    for _ in 0..600 {
        if let Some(pid) = supervisor::pid().filter(|p| *p != old) {
            // Linked once it has the state: an update confirmed now was
            // confirmed by it.
            net_services::flush();
            return pid;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the network services process was not started again after pid {old} was killed");
}

#[test]
fn resolver_and_proxy_run_confined_and_come_back_from_a_kill_with_their_policy() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the network services test needs root (a network namespace, a uid to drop to); run the suite as root"
    );
    // This thread, and the processes and threads it starts, get a network
    // of their own.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
    let a = workspace(3, "ws_alpha", &["allowed.test"]);
    let b = workspace(4, "ws_beta", &[]);
    ip(&["link", "set", "lo", "up"]);
    for addr in [a.slot.guest(), b.slot.guest(), UPSTREAM_ANSWER] {
        ip(&["addr", "add", &format!("{addr}/32"), "dev", "lo"]);
    }
    fake_upstream();
    // This test's process is their parent; it reaps them as PID 1 would.
    std::thread::spawn(|| loop {
        paddock_init::children::CHILDREN.reap_all();
        std::thread::sleep(Duration::from_millis(50));
    });

    let sockets = Sockets {
        resolver: UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("resolver socket"),
        proxy: TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("proxy socket"),
    };
    let resolver = sockets.resolver.local_addr().expect("addr");
    let proxy = sockets.proxy.local_addr().expect("addr");
    // The state exists before the process does, as at boot.
    publish(&[&a, &b]);
    net_services::set_resolvers(&[UPSTREAM], &[]);
    let exe = std::path::PathBuf::from(env!("CARGO_BIN_EXE_paddock-init"));
    let confine = Confine {
        drop_to: Some((UID, GID)),
        memory_cgroup: false,
    };
    supervisor::start(exe, sockets, confine).expect("start");
    let first = replaced(0);

    // Confined: its own uid and gid, no capabilities, no_new_privs, seccomp.
    let st = status_of(first);
    assert!(
        st["Uid"].split_whitespace().all(|u| u == UID.to_string()),
        "{st:?}"
    );
    assert!(
        st["Gid"].split_whitespace().all(|g| g == GID.to_string()),
        "{st:?}"
    );
    assert_eq!(st["Groups"], "", "{st:?}");
    for caps in ["CapEff", "CapPrm", "CapInh", "CapAmb"] {
        assert_eq!(st[caps], "0000000000000000", "{caps}: {st:?}");
    }
    assert_eq!(st["NoNewPrivs"], "1", "{st:?}");
    assert_eq!(st["Seccomp"], "2", "{st:?}");

    // Each workspace by its own policy.
    let allowed = (ResponseCode::NoError, vec![UPSTREAM_ANSWER]);
    let refused = (ResponseCode::NXDomain, vec![]);
    assert_eq!(lookup(resolver, a.slot.guest(), "allowed.test"), allowed);
    // Asked upstream once; the next lookup, any workspace's, is answered
    // from the cache, its TTL counting down.
    assert_eq!(asked(), 1);
    let b_allowed = workspace(6, "ws_gamma", &["allowed.test"]);
    ip(&[
        "addr",
        "add",
        &format!("{}/32", b_allowed.slot.guest()),
        "dev",
        "lo",
    ]);
    publish(&[&a, &b, &b_allowed]);
    assert_eq!(
        lookup(resolver, b_allowed.slot.guest(), "allowed.test"),
        allowed
    );
    assert_eq!(asked(), 1, "the second lookup was asked upstream");
    publish(&[&a, &b]);
    assert_eq!(lookup(resolver, a.slot.guest(), "exfil.test"), refused);
    assert_eq!(lookup(resolver, b.slot.guest(), "allowed.test"), refused);
    // The proxy is served there too: a connection that was not redirected
    // by the firewall has no destination and is refused, and counted.
    let mut conn = connect_from(a.slot.guest(), proxy);
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut rest = Vec::new();
    let _ = conn.read_to_end(&mut rest);
    net_services::flush();
    assert_eq!(net_services::refused_lookups("ws_alpha"), 1);
    assert_eq!(net_services::refused_lookups("ws_beta"), 1);
    assert_eq!(net_services::refused_connections("ws_alpha"), 1);

    // Killed: it comes back by itself, with the same policy and counts.
    assert_eq!(supervisor::kill_running(), Some(first));
    let second = replaced(first);
    assert_eq!(supervisor::restarts(), 1);
    assert_eq!(status_of(second)["Seccomp"], "2");
    assert_eq!(lookup(resolver, a.slot.guest(), "allowed.test"), allowed);
    assert_eq!(lookup(resolver, b.slot.guest(), "allowed.test"), refused);
    net_services::flush();
    assert_eq!(
        net_services::refused_lookups("ws_beta"),
        2,
        "counted across the restart"
    );

    // A policy change after the restart reaches the new process before
    // the call that made it returns.
    let b2 = workspace(4, "ws_beta", &["allowed.test"]);
    publish(&[&a, &b2]);
    assert_eq!(lookup(resolver, b.slot.guest(), "allowed.test"), allowed);
    publish(&[&a]);
    // Gone from the table: its queries are not answered at all.
    let gone = UdpSocket::bind((b.slot.guest(), 0)).expect("bind");
    gone.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let mut m = Message::new();
    m.set_id(7).set_message_type(MessageType::Query);
    m.add_query(Query::query(
        Name::from_ascii("allowed.test.").expect("name"),
        RecordType::A,
    ));
    gone.send_to(&m.to_vec().expect("encode"), resolver)
        .expect("send");
    let mut buf = [0u8; 512];
    assert!(
        gone.recv(&mut buf).is_err(),
        "a removed workspace was answered"
    );
    // A workspace forgotten loses its counts.
    net_services::forget("ws_beta");
    assert_eq!(net_services::refused_lookups("ws_beta"), 0);
}

/// A TCP connection to `to` from `from` (a guest's address on this
/// namespace's loopback).
fn connect_from(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    use nix::sys::socket::{bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn};
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .expect("socket");
    bind(
        fd.as_raw_fd(),
        &SockaddrIn::from(std::net::SocketAddrV4::new(from, 0)),
    )
    .expect("bind");
    let SocketAddr::V4(to) = to else {
        panic!("an IPv4 proxy address")
    };
    connect(fd.as_raw_fd(), &SockaddrIn::from(to)).expect("connect to the proxy");
    TcpStream::from(fd)
}
