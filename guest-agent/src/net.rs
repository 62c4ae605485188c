//! The workspace's one NIC, as the host's command line describes it
//! (`paddock.net=10.200.0.2/30,10.200.0.1`): its address, a default route
//! through the host, and the host as its only resolver. What the NIC can
//! reach is decided on the host, not here: nothing the guest changes in
//! this configuration opens anything.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetConfig {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
}

impl NetConfig {
    /// Parses the value of `paddock.net=`; None if it is malformed.
    pub fn parse(v: &str) -> Option<NetConfig> {
        let (cidr, gw) = v.split_once(',')?;
        let (addr, prefix) = cidr.split_once('/')?;
        let prefix: u8 = prefix.parse().ok()?;
        (1..=30).contains(&prefix).then_some(())?;
        Some(NetConfig {
            address: addr.parse().ok()?,
            prefix,
            gateway: gw.parse().ok()?,
        })
    }
}

/// The value on the kernel command line, if any.
pub fn from_cmdline(cmdline: &str) -> Option<NetConfig> {
    cmdline
        .split_whitespace()
        .find_map(|a| a.strip_prefix("paddock.net="))
        .and_then(NetConfig::parse)
}

fn socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ifreq(name: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    req
}

fn sockaddr(ip: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size, and the ioctls
    // take an AF_INET address in this form.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

fn ioctl<T>(sock: &OwnedFd, request: libc::c_ulong, arg: &mut T, what: &str) -> io::Result<()> {
    // SAFETY: the request and the argument's type match (each call site
    // passes the structure its request takes).
    if unsafe { libc::ioctl(sock.as_raw_fd(), request as _, arg as *mut T) } < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    Ok(())
}

fn set_up(sock: &OwnedFd, name: &str) -> io::Result<()> {
    let mut req = ifreq(name);
    ioctl(sock, libc::SIOCGIFFLAGS, &mut req, "reading flags")?;
    // SAFETY: SIOCGIFFLAGS filled ifru_flags.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    ioctl(sock, libc::SIOCSIFFLAGS, &mut req, "bringing it up")
}

/// Gives `eth0` the host's chosen hardware address. Before it is up: a
/// template clone's NIC still has the template's address, which every
/// clone of it shares.
pub fn set_mac(mac: [u8; 6]) -> io::Result<()> {
    let sock = socket()?;
    let mut req = ifreq("eth0");
    // SAFETY: sockaddr is plain old data; all-zero is a valid value.
    let mut hw: libc::sockaddr = unsafe { std::mem::zeroed() };
    hw.sa_family = libc::ARPHRD_ETHER;
    for (d, s) in hw.sa_data.iter_mut().zip(mac) {
        *d = s as libc::c_char;
    }
    req.ifr_ifru.ifru_hwaddr = hw;
    ioctl(
        &sock,
        libc::SIOCSIFHWADDR,
        &mut req,
        "setting the hardware address",
    )
}

/// Configures `eth0` (and `lo`) and writes /etc/resolv.conf.
pub fn configure(cfg: NetConfig) -> io::Result<()> {
    let sock = socket()?;
    set_up(&sock, "lo")?;
    let mut req = ifreq("eth0");
    req.ifr_ifru.ifru_addr = sockaddr(cfg.address);
    ioctl(&sock, libc::SIOCSIFADDR, &mut req, "setting the address")?;
    let mask = u32::MAX << (32 - u32::from(cfg.prefix));
    req.ifr_ifru.ifru_netmask = sockaddr(Ipv4Addr::from(mask));
    ioctl(&sock, libc::SIOCSIFNETMASK, &mut req, "setting the netmask")?;
    set_up(&sock, "eth0")?;
    // SAFETY: rtentry is plain old data; all-zero is a valid value.
    let mut rt: libc::rtentry = unsafe { std::mem::zeroed() };
    rt.rt_dst = sockaddr(Ipv4Addr::UNSPECIFIED);
    rt.rt_genmask = sockaddr(Ipv4Addr::UNSPECIFIED);
    rt.rt_gateway = sockaddr(cfg.gateway);
    rt.rt_flags = libc::RTF_UP | libc::RTF_GATEWAY;
    match ioctl(&sock, libc::SIOCADDRT, &mut rt, "adding the default route") {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    std::fs::write(
        "/etc/resolv.conf",
        format!("# the host's resolver: it answers only names this workspace may reach\nnameserver {}\n", cfg.gateway),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_host_s_description_and_refuses_anything_else() {
        let c = from_cmdline("quiet paddock.net=10.200.0.2/30,10.200.0.1 x=y").expect("parsed");
        assert_eq!(c.address, Ipv4Addr::new(10, 200, 0, 2));
        assert_eq!(c.prefix, 30);
        assert_eq!(c.gateway, Ipv4Addr::new(10, 200, 0, 1));
        for bad in [
            "10.200.0.2/30",
            "10.200.0.2/31,10.200.0.1",
            "x/30,10.200.0.1",
            "10.200.0.2/30,gw",
        ] {
            assert_eq!(NetConfig::parse(bad), None, "{bad}");
        }
        assert_eq!(from_cmdline("quiet"), None);
    }
}
