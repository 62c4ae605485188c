//! A DHCPv4 client for the uplink: DISCOVER, OFFER, REQUEST, ACK, with
//! retries. Before the interface has an address, a UDP socket bound to
//! port 68 on the device sends to the broadcast address and, with the
//! broadcast flag set, receives the server's broadcast replies.

use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct Lease {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub server: Ipv4Addr,
    pub lease_secs: u32,
}

fn bind_to_device(sock: &UdpSocket, iface: &str) -> Result<(), String> {
    // SAFETY: the option value is the interface name's bytes and length.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            iface.as_ptr().cast(),
            iface.len() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(format!(
            "binding to {iface}: {}",
            std::io::Error::last_os_error()
        ))
    } else {
        Ok(())
    }
}

fn random_xid() -> u32 {
    let mut b = [0u8; 4];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .is_err()
    {
        b = (std::process::id() ^ 0x5a5a_5a5a).to_le_bytes();
    }
    u32::from_le_bytes(b)
}

/// A client message of `kind` with what every one of ours carries: our
/// hardware address, client id and the options we ask for.
fn client_message(mac: [u8; 6], xid: u32, kind: MessageType) -> Message {
    let mut msg = Message::default();
    msg.set_opcode(Opcode::BootRequest)
        .set_xid(xid)
        .set_chaddr(&mac);
    let opts = msg.opts_mut();
    opts.insert(DhcpOption::MessageType(kind));
    let mut id = vec![1u8];
    id.extend_from_slice(&mac);
    opts.insert(DhcpOption::ClientIdentifier(id));
    opts.insert(DhcpOption::ParameterRequestList(vec![
        OptionCode::SubnetMask,
        OptionCode::Router,
        OptionCode::DomainNameServer,
        OptionCode::AddressLeaseTime,
    ]));
    msg
}

fn request(
    mac: [u8; 6],
    xid: u32,
    kind: MessageType,
    offer: Option<(Ipv4Addr, Ipv4Addr)>,
) -> Result<Vec<u8>, String> {
    let mut msg = client_message(mac, xid, kind);
    msg.set_flags(Flags::default().set_broadcast());
    if let Some((addr, server)) = offer {
        let opts = msg.opts_mut();
        opts.insert(DhcpOption::RequestedIpAddress(addr));
        opts.insert(DhcpOption::ServerIdentifier(server));
    }
    msg.to_vec().map_err(|e| format!("encoding {kind:?}: {e}"))
}

/// Waits for a reply of `want` type to our `xid`; other traffic on port 68
/// (other clients' replies, garbage) is skipped.
fn receive(
    sock: &UdpSocket,
    xid: u32,
    want: MessageType,
    until: Instant,
    from_whom: &dyn Fn(&Message) -> bool,
) -> Result<Option<Message>, String> {
    let mut buf = [0u8; 1500];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        sock.set_read_timeout(Some(left))
            .map_err(|e| e.to_string())?;
        let n = match sock.recv_from(&mut buf) {
            Ok((n, _)) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(format!("receiving: {e}")),
        };
        let Ok(msg) = Message::decode(&mut Decoder::new(&buf[..n])) else {
            continue;
        };
        if msg.xid() != xid || msg.opcode() != Opcode::BootReply || !from_whom(&msg) {
            continue;
        }
        match msg.opts().msg_type() {
            Some(t) if t == want => return Ok(Some(msg)),
            Some(MessageType::Nak) => return Err("the server refused the request (NAK)".into()),
            _ => continue,
        }
    }
}

fn lease_from(ack: &Message, server: Ipv4Addr) -> Result<Lease, String> {
    let address = ack.yiaddr();
    if address.is_unspecified() {
        return Err("the ACK assigns no address".into());
    }
    let mut prefix = 24;
    let mut router = None;
    let mut dns = Vec::new();
    let mut lease_secs = 86_400;
    for (_, opt) in ack.opts().iter() {
        match opt {
            DhcpOption::SubnetMask(m) => prefix = u32::from(*m).count_ones() as u8,
            DhcpOption::Router(r) => router = r.first().copied(),
            DhcpOption::DomainNameServer(d) => dns = d.clone(),
            DhcpOption::AddressLeaseTime(t) => lease_secs = *t,
            _ => {}
        }
    }
    Ok(Lease {
        address,
        prefix: prefix.clamp(1, 32),
        router,
        dns,
        server,
        lease_secs,
    })
}

fn server_of(msg: &Message) -> Ipv4Addr {
    msg.opts()
        .iter()
        .find_map(|(_, o)| match o {
            DhcpOption::ServerIdentifier(s) => Some(*s),
            _ => None,
        })
        .unwrap_or_else(|| msg.siaddr())
}

/// Runs the exchange, retrying with backoff until `total` has passed.
pub fn acquire(iface: &str, mac: [u8; 6], total: Duration) -> Result<Lease, String> {
    let sock = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68))
        .map_err(|e| format!("binding port 68: {e}"))?;
    sock.set_broadcast(true).map_err(|e| e.to_string())?;
    bind_to_device(&sock, iface)?;
    let to = SocketAddrV4::new(Ipv4Addr::BROADCAST, 67);
    let deadline = Instant::now() + total;
    let mut wait = Duration::from_secs(2);
    let mut last_error = String::from("no answer from any DHCP server");
    while Instant::now() < deadline {
        let xid = random_xid();
        let step_until = (Instant::now() + wait).min(deadline);
        sock.send_to(&request(mac, xid, MessageType::Discover, None)?, to)
            .map_err(|e| format!("sending DISCOVER: {e}"))?;
        match receive(&sock, xid, MessageType::Offer, step_until, &|_| true) {
            Ok(Some(offer)) => {
                let server = server_of(&offer);
                let addr = offer.yiaddr();
                sock.send_to(
                    &request(mac, xid, MessageType::Request, Some((addr, server)))?,
                    to,
                )
                .map_err(|e| format!("sending REQUEST: {e}"))?;
                match receive(
                    &sock,
                    xid,
                    MessageType::Ack,
                    (Instant::now() + wait).min(deadline),
                    &|m| server_of(m) == server,
                ) {
                    Ok(Some(ack)) => return lease_from(&ack, server),
                    Ok(None) => last_error = "no ACK after REQUEST".into(),
                    Err(e) => last_error = e,
                }
            }
            Ok(None) => {}
            Err(e) => last_error = e,
        }
        wait = (wait * 2).min(Duration::from_secs(16));
    }
    Err(format!("{last_error} within {total:?}"))
}

/// A renewal's REQUEST (RFC 2131 4.3.2, RENEWING and REBINDING): our
/// address in `ciaddr`, no requested-address or server options, unicast
/// replies.
fn renewal(mac: [u8; 6], xid: u32, ours: Ipv4Addr) -> Result<Vec<u8>, String> {
    let mut msg = client_message(mac, xid, MessageType::Request);
    msg.set_ciaddr(ours);
    msg.to_vec().map_err(|e| format!("encoding a renewal: {e}"))
}

/// Whether a reply may extend `lease`: only for the same address, and
/// while renewing only from the server that gave it. Anything else on the
/// LAN answering a renewal (a rogue server offering another address or
/// gateway) is ignored, never followed.
fn extends(reply: &Message, lease: &Lease, renewing: bool) -> bool {
    let same_address = match reply.opts().msg_type() {
        Some(MessageType::Nak) => true,
        _ => reply.yiaddr() == lease.address,
    };
    same_address && (!renewing || server_of(reply) == lease.server)
}

/// Extends `lease`: REQUESTs sent to its server until `rebind_after`, then
/// broadcast until `expires` (any server may extend the same address, none
/// may move it). Err once the lease has run out: only then does the caller
/// start over with DISCOVER.
pub fn renew(
    iface: &str,
    mac: [u8; 6],
    lease: &Lease,
    rebind_after: Duration,
    expires: Duration,
) -> Result<Lease, String> {
    let sock = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68))
        .map_err(|e| format!("binding port 68: {e}"))?;
    sock.set_broadcast(true).map_err(|e| e.to_string())?;
    bind_to_device(&sock, iface)?;
    let start = Instant::now();
    let mut wait = Duration::from_secs(4);
    let mut last_error = String::from("no answer");
    while start.elapsed() < expires {
        let renewing = start.elapsed() < rebind_after;
        let to = if renewing {
            SocketAddrV4::new(lease.server, 67)
        } else {
            SocketAddrV4::new(Ipv4Addr::BROADCAST, 67)
        };
        let xid = random_xid();
        if let Err(e) = sock.send_to(&renewal(mac, xid, lease.address)?, to) {
            last_error = format!("sending the renewal to {to}: {e}");
        }
        let phase_end = if renewing { rebind_after } else { expires };
        let until = (Instant::now() + wait).min(start + phase_end);
        match receive(&sock, xid, MessageType::Ack, until, &|m| {
            extends(m, lease, renewing)
        }) {
            Ok(Some(ack)) => return lease_from(&ack, server_of(&ack)),
            Ok(None) => {}
            Err(e) => last_error = e,
        }
        wait = (wait * 2).min(Duration::from_secs(60));
    }
    Err(format!(
        "the lease on {} ran out ({last_error})",
        lease.address
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_encode_and_acks_decode() {
        let mac = [2, 0, 0, 0, 0, 1];
        let bytes = request(mac, 7, MessageType::Discover, None).expect("encode");
        let back = Message::decode(&mut Decoder::new(&bytes)).expect("decode");
        assert_eq!(back.xid(), 7);
        assert_eq!(back.opts().msg_type(), Some(MessageType::Discover));

        let mut ack = Message::default();
        ack.set_opcode(Opcode::BootReply)
            .set_yiaddr(Ipv4Addr::new(10, 0, 2, 15));
        ack.opts_mut()
            .insert(DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)));
        ack.opts_mut()
            .insert(DhcpOption::Router(vec![Ipv4Addr::new(10, 0, 2, 2)]));
        let lease = lease_from(&ack, Ipv4Addr::new(10, 0, 2, 2)).expect("lease");
        assert_eq!(lease.prefix, 24);
        assert_eq!(lease.router, Some(Ipv4Addr::new(10, 0, 2, 2)));
        ack.set_yiaddr(Ipv4Addr::UNSPECIFIED);
        assert!(lease_from(&ack, Ipv4Addr::LOCALHOST).is_err());
    }

    #[test]
    fn a_renewal_goes_to_its_server_and_a_rogue_cannot_move_the_uplink() {
        let mac = [2, 0, 0, 0, 0, 1];
        let ours = Ipv4Addr::new(10, 0, 2, 15);
        let server = Ipv4Addr::new(10, 0, 2, 2);
        let bytes = renewal(mac, 9, ours).expect("encode");
        let msg = Message::decode(&mut Decoder::new(&bytes)).expect("decode");
        assert_eq!(msg.ciaddr(), ours);
        assert!(msg.opts().get(OptionCode::ServerIdentifier).is_none());
        assert!(msg.opts().get(OptionCode::RequestedIpAddress).is_none());
        let lease = Lease {
            address: ours,
            prefix: 24,
            router: Some(server),
            dns: Vec::new(),
            server,
            lease_secs: 3600,
        };
        let reply = |from: Ipv4Addr, addr: Ipv4Addr, kind: MessageType| {
            let mut m = Message::default();
            m.set_opcode(Opcode::BootReply).set_yiaddr(addr);
            m.opts_mut().insert(DhcpOption::MessageType(kind));
            m.opts_mut().insert(DhcpOption::ServerIdentifier(from));
            m
        };
        let rogue = Ipv4Addr::new(10, 0, 2, 66);
        let elsewhere = Ipv4Addr::new(10, 0, 2, 99);
        assert!(extends(
            &reply(server, ours, MessageType::Ack),
            &lease,
            true
        ));
        assert!(
            !extends(&reply(rogue, ours, MessageType::Ack), &lease, true),
            "another server while renewing"
        );
        assert!(
            !extends(&reply(rogue, ours, MessageType::Nak), &lease, true),
            "a rogue's NAK"
        );
        assert!(
            !extends(&reply(server, elsewhere, MessageType::Ack), &lease, true),
            "moving the address"
        );
        assert!(
            extends(&reply(rogue, ours, MessageType::Ack), &lease, false),
            "rebinding: any server, same address"
        );
        assert!(
            !extends(&reply(rogue, elsewhere, MessageType::Ack), &lease, false),
            "rebinding never moves it"
        );
    }
}
