//! The workspace firewall with many workspaces, against the real kernel in
//! a network namespace of this test's own: every change rebuilds the whole
//! table in one batch, so the batch, and the kernel's answer to each of
//! its operations, must fit the socket's buffers. Seen failing on the appliance (`just bench-api`): of
//! ten creates at once, two refused with "netlink socket: No buffer space
//! available". Needs root (CI runs as root).

use paddock_net::firewall::{self, Slot, WsNet};
use paddock_net::policy::{CheckEgress as _, EgressRequest};

#[test]
fn a_box_with_hundreds_of_workspaces_still_changes_its_firewall() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the firewall tests need root (network namespaces); run the suite as root"
    );
    // Namespaces are per thread for the network: only this test's thread moves.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
    firewall::start(paddock_init::net_services::UID).expect("installing the empty table");
    let egress = EgressRequest {
        domains: vec!["allowed.test".into(), "*.example.test".into()],
        cidrs: vec!["198.51.100.0/24:8080".into(), "203.0.113.7/32:443".into()],
    }
    .check()
    .expect("policy");
    // Before the fix a batch's answers overflowed at 6 workspaces with
    // this policy, and the batch itself outgrew the send buffer at 17.
    // (Every change rebuilds the whole table: 300 took 133 s here.)
    let count = 64;
    for n in 0..count {
        let slot = Slot::new(n + 1).expect("slot");
        firewall::set(WsNet {
            id: format!("ws_{n:04}"),
            slot,
            egress: egress.clone(),
            connections_per_s: 100,
            published: Vec::new(),
        })
        .unwrap_or_else(|e| panic!("the firewall with {n} workspaces refused one more: {e}"));
    }
    // And each still counts what it refused (the counters are read back
    // per workspace, by dump).
    assert_eq!(firewall::refused("ws_0000"), 0);
    for n in 0..count {
        firewall::remove(&format!("ws_{n:04}"))
            .unwrap_or_else(|e| panic!("removing workspace {n}: {e}"));
    }
}
