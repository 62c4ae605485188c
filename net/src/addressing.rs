//! Where a workspace sits on the host's network: its slot, its /30, its
//! tap, and the ports the host serves it on. Both sides of the line need
//! these: PID 1 builds taps and the firewall from them, and the network
//! services process knows its clients by them.

use std::net::Ipv4Addr;

/// Where the firewall sends workspaces' web connections (proxy.rs).
pub const PROXY_PORT: u16 = 15001;
/// The resolver (dns.rs) listens here on every address; the firewall
/// lets only workspaces' taps reach it.
pub const DNS_PORT: u16 = 53;
/// The port of the box's request endpoint on each workspace's gateway
/// address (plain HTTP, served by the proxy).
pub const REQUESTS_PORT: u16 = 80;
/// Workspaces' addresses: a /30 each, 10.200.0.0/16 in all.
pub(crate) const POOL: u32 = 0x0ac8_0000;
pub const POOL_PREFIX: u8 = 16;
pub const MAX_SLOTS: u32 = 1 << 14;
pub(crate) const TAP_PREFIX: &str = "pdk";

/// A workspace's place on the host's network, from its uid's offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot(pub u32);

impl Slot {
    pub fn new(index: u32) -> Option<Slot> {
        (index < MAX_SLOTS).then_some(Slot(index))
    }
    pub fn tap(self) -> String {
        format!("{TAP_PREFIX}{}", self.0)
    }
    pub fn host(self) -> Ipv4Addr {
        Ipv4Addr::from(POOL + self.0 * 4 + 1)
    }
    pub fn guest(self) -> Ipv4Addr {
        Ipv4Addr::from(POOL + self.0 * 4 + 2)
    }
    /// The slot a guest address belongs to (the resolver and the proxy
    /// know their clients by it).
    pub fn of_guest(ip: Ipv4Addr) -> Option<Slot> {
        let v = u32::from(ip).checked_sub(POOL)?;
        (v % 4 == 2).then_some(())?;
        Slot::new(v / 4)
    }
}
