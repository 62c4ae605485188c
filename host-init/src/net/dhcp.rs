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

fn request(
    mac: [u8; 6],
    xid: u32,
    kind: MessageType,
    offer: Option<(Ipv4Addr, Ipv4Addr)>,
) -> Result<Vec<u8>, String> {
    let mut msg = Message::default();
    msg.set_opcode(Opcode::BootRequest)
        .set_xid(xid)
        .set_flags(Flags::default().set_broadcast())
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
    if let Some((addr, server)) = offer {
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
        if msg.xid() != xid || msg.opcode() != Opcode::BootReply {
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
        match receive(&sock, xid, MessageType::Offer, step_until) {
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
}
