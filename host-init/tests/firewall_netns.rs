//! The workspace firewall against the real kernel: each test moves its
//! thread into a network namespace of its own, installs the table over
//! netlink, and writes frames into a workspace's tap as its guest would.
//! What the kernel does with them (delivered to a local socket, counted and
//! dropped) is the test. Needs root (CI runs as root).

use paddock_init::net::firewall::{self, Slot, WsNet};
use paddock_init::net::policy::EgressRequest;
use paddock_init::net::tap;
use std::io::Write;
use std::net::{Ipv4Addr, UdpSocket};
use std::time::Duration;

fn private_netns() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the firewall tests need root (network namespaces); run the suite as root"
    );
    // Namespaces are per thread for the network: only this test's thread moves.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
    let lo = std::process::Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status();
    // Without ip(8) the loopback stays down; nothing here needs it.
    let _ = lo;
}

fn checksum(b: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in b.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An Ethernet frame carrying IPv4/UDP from `src` to `dst`:`port`.
fn udp_frame(dst_mac: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr, port: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&[0x02, 0x70, 0x64, 0, 0, 9]);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + 8 + payload.len()) as u16;
    let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&port.to_be_bytes());
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

/// The interface's MAC (by ioctl: /sys shows the namespace it was mounted in).
fn mac_of(iface: &str) -> [u8; 6] {
    use std::os::fd::AsRawFd;
    let sock = UdpSocket::bind("0.0.0.0:0").expect("socket");
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(iface.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: SIOCGIFHWADDR fills the ifreq we own.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFHWADDR, &mut req) };
    assert_eq!(r, 0, "SIOCGIFHWADDR: {}", std::io::Error::last_os_error());
    // SAFETY: the ioctl filled ifru_hwaddr.
    let data = unsafe { req.ifr_ifru.ifru_hwaddr.sa_data };
    let mut mac = [0u8; 6];
    for (m, d) in mac.iter_mut().zip(data) {
        *m = d as u8;
    }
    mac
}

#[test]
fn a_workspace_reaches_its_resolver_and_nothing_else_and_refusals_are_counted() {
    private_netns();
    firewall::start().expect("installing the empty table");
    let slot = Slot::new(5).expect("slot");
    let tap_fd = tap::create(slot).expect("creating the tap");
    let mut tap = std::fs::File::from(tap_fd);
    // A default route (back out of the tap: this namespace has no uplink)
    // so that frames to outside addresses reach the forward hook.
    let routed = std::process::Command::new("ip")
        .args(["route", "add", "default", "dev", &slot.tap()])
        .status()
        .expect("running ip(8)");
    assert!(routed.success());
    let egress = EgressRequest {
        domains: vec!["allowed.test".into()],
        cidrs: vec!["198.51.100.0/24:8080".into()],
    }
    .check()
    .expect("policy");
    firewall::set(WsNet {
        id: "ws_a".into(),
        slot,
        egress,
        connections_per_s: 100,
    })
    .expect("installing the workspace's rules");
    assert_eq!(firewall::refused("ws_a"), 0);
    if std::env::var_os("SHOW_RULESET").is_some() {
        let _ = std::process::Command::new("nft")
            .args(["list", "ruleset"])
            .status();
    }

    // Its resolver: udp 53 on its gateway address gets through.
    let resolver = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, firewall::DNS_PORT)).expect("bind :53");
    resolver
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let mac = mac_of(&slot.tap());
    tap.write_all(&udp_frame(mac, slot.guest(), slot.host(), 53, b"query"))
        .expect("frame");
    let mut buf = [0u8; 64];
    let (n, from) = resolver
        .recv_from(&mut buf)
        .expect("the resolver hears the guest");
    assert_eq!(&buf[..n], b"query");
    assert_eq!(from.ip(), std::net::IpAddr::V4(slot.guest()));

    // Anything else is dropped and counted: DNS elsewhere, QUIC, the
    // metadata address, another port on the host, and a CIDR entry's
    // network on a port (or protocol) it does not open.
    let other = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 9999)).expect("bind :9999");
    other
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let refused = [
        (Ipv4Addr::new(8, 8, 8, 8), 53),
        (Ipv4Addr::new(8, 8, 8, 8), 853),
        (Ipv4Addr::new(198, 51, 100, 10), 443),
        (Ipv4Addr::new(198, 51, 100, 10), 8080),
        (Ipv4Addr::new(169, 254, 169, 254), 80),
        (slot.host(), 9999),
    ];
    for (dst, port) in refused {
        tap.write_all(&udp_frame(mac, slot.guest(), dst, port, b"x"))
            .expect("frame");
    }
    assert!(
        other.recv_from(&mut buf).is_err(),
        "udp 9999 on the host is closed to workspaces"
    );
    std::thread::sleep(Duration::from_millis(200));
    let counted = firewall::refused("ws_a");
    assert_eq!(counted, refused.len() as u64, "every refusal counted");

    // A policy change keeps what was counted.
    firewall::set(WsNet {
        id: "ws_a".into(),
        slot,
        egress: Default::default(),
        connections_per_s: 100,
    })
    .expect("replacing the policy");
    assert!(firewall::refused("ws_a") >= counted);
    firewall::remove("ws_a").expect("removing");
}
