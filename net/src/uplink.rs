//! The uplink: pick the wired NIC, bring it up, and configure it by DHCP
//! (our own client, below) or from static configuration.

use crate::{dhcp, ifconfig};
use log::{info, warn};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

pub use crate::ifconfig::IfError;

/// How the uplink gets its address (the appliance's configuration says).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetMode {
    Dhcp,
    Static {
        address: Ipv4Addr,
        prefix: u8,
        gateway: Option<Ipv4Addr>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uplink {
    pub interface: String,
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    /// "dhcp" or "static".
    pub source: &'static str,
    /// Seconds the DHCP lease lasts.
    pub lease_secs: Option<u32>,
    /// The DHCP server that gave the lease: renewals go to it alone.
    pub dhcp_server: Option<Ipv4Addr>,
}

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("no wired network interface found")]
    NoInterface,
    #[error("interface {0} does not exist")]
    MissingInterface(String),
    #[error("{0}")]
    If(#[from] IfError),
    #[error("DHCP on {iface}: {detail}")]
    Dhcp { iface: String, detail: String },
}

/// Physical Ethernet interfaces, in name order.
fn wired_interfaces() -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/sys/class/net") {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let base = format!("/sys/class/net/{name}");
            let ether = std::fs::read_to_string(format!("{base}/type"))
                .map(|t| t.trim() == "1")
                .unwrap_or(false);
            let physical = std::path::Path::new(&format!("{base}/device")).exists();
            if ether && physical {
                out.push(name);
            }
        }
    }
    out.sort();
    out
}

fn wait_for_interface(interface: Option<&str>) -> Result<String, NetError> {
    let started = Instant::now();
    loop {
        let found = wired_interfaces();
        match interface {
            Some(want) if found.iter().any(|f| f == want) => return Ok(want.to_string()),
            None if !found.is_empty() => return Ok(found[0].clone()),
            _ => {}
        }
        if started.elapsed() > Duration::from_secs(20) {
            return Err(match interface {
                Some(want) => NetError::MissingInterface(want.to_string()),
                None => NetError::NoInterface,
            });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn mac_of(iface: &str) -> Option<[u8; 6]> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{iface}/address")).ok()?;
    let mut mac = [0u8; 6];
    let parts: Vec<&str> = text.trim().split(':').collect();
    if parts.len() != 6 {
        return None;
    }
    for (m, p) in mac.iter_mut().zip(parts) {
        *m = u8::from_str_radix(p, 16).ok()?;
    }
    Some(mac)
}

/// Brings up loopback and the uplink (`interface`, or the first wired
/// NIC); returns the uplink's configuration. `dns`, when not empty,
/// overrides the resolvers DHCP hands out.
pub fn bring_up(
    interface: Option<&str>,
    mode: &NetMode,
    dns: &[Ipv4Addr],
) -> Result<Uplink, NetError> {
    ifconfig::set_up("lo")?;
    let iface = wait_for_interface(interface)?;
    ifconfig::set_up(&iface)?;
    let uplink = match mode {
        NetMode::Static {
            address,
            prefix,
            gateway,
        } => Uplink {
            interface: iface.clone(),
            address: *address,
            prefix: *prefix,
            gateway: *gateway,
            dns: dns.to_vec(),
            source: "static",
            lease_secs: None,
            dhcp_server: None,
        },
        NetMode::Dhcp => {
            let mac = mac_of(&iface).ok_or_else(|| NetError::Dhcp {
                iface: iface.clone(),
                detail: "no MAC address".into(),
            })?;
            let lease = dhcp::acquire(&iface, mac, Duration::from_secs(60)).map_err(|detail| {
                NetError::Dhcp {
                    iface: iface.clone(),
                    detail,
                }
            })?;
            info!(
                "DHCP on {iface}: {}/{} from {} (lease {} s)",
                lease.address, lease.prefix, lease.server, lease.lease_secs
            );
            Uplink {
                interface: iface.clone(),
                address: lease.address,
                prefix: lease.prefix,
                gateway: lease.router,
                dns: if dns.is_empty() {
                    lease.dns
                } else {
                    dns.to_vec()
                },
                source: "dhcp",
                lease_secs: Some(lease.lease_secs),
                dhcp_server: Some(lease.server),
            }
        }
    };
    ifconfig::set_address(&iface, uplink.address, uplink.prefix)?;
    if let Some(gw) = uplink.gateway {
        if let Err(e) = ifconfig::add_default_route(&iface, gw) {
            warn!("default route via {gw}: {e}");
        }
    }
    Ok(uplink)
}

/// Renews a DHCP lease at half its life, forever; `changed` hears about a
/// new address (the interface is reconfigured first). A failed renewal is
/// retried every 30 s; the old address stays until a server answers.
pub fn keep_lease(mut up: Uplink, changed: impl Fn(&Uplink) + Send + 'static) {
    let Some(mac) = mac_of(&up.interface) else {
        return;
    };
    let _ = std::thread::Builder::new()
        .name("dhcp".into())
        .spawn(move || {
            let mut wait =
                Duration::from_secs(u64::from(up.lease_secs.unwrap_or(3600)).max(60) / 2);
            loop {
                std::thread::sleep(wait);
                // At half its life (T1) the lease is renewed with its own
                // server, rebound by broadcast at 7/8 (T2), and only once it
                // has run out is a new one sought with DISCOVER.
                let secs = u64::from(up.lease_secs.unwrap_or(3600)).max(60);
                let renewed = match up.dhcp_server {
                    Some(server) => dhcp::renew(
                        &up.interface,
                        mac,
                        &dhcp::Lease {
                            address: up.address,
                            prefix: up.prefix,
                            router: up.gateway,
                            dns: up.dns.clone(),
                            server,
                            lease_secs: secs as u32,
                        },
                        Duration::from_secs(secs * 3 / 8),
                        Duration::from_secs(secs / 2),
                    ),
                    None => Err("no server to renew with".to_string()),
                };
                let result = renewed.or_else(|e| {
                    warn!("DHCP on {}: {e}; looking for a new lease", up.interface);
                    dhcp::acquire(&up.interface, mac, Duration::from_secs(60))
                });
                match result {
                    Ok(lease) => {
                        up.dhcp_server = Some(lease.server);
                        up.lease_secs = Some(lease.lease_secs);
                        wait = Duration::from_secs(u64::from(lease.lease_secs).max(60) / 2);
                        if lease.address != up.address
                            || lease.prefix != up.prefix
                            || lease.router != up.gateway
                        {
                            info!(
                                "DHCP on {}: the lease moved to {}/{}",
                                up.interface, lease.address, lease.prefix
                            );
                            if let Err(e) =
                                ifconfig::set_address(&up.interface, lease.address, lease.prefix)
                            {
                                warn!("{e}");
                            }
                            if let Some(gw) = lease.router {
                                let _ = ifconfig::add_default_route(&up.interface, gw);
                            }
                            up.address = lease.address;
                            up.prefix = lease.prefix;
                            up.gateway = lease.router;
                            changed(&up);
                        }
                    }
                    Err(e) => {
                        warn!(
                            "renewing the DHCP lease on {}: {e}; retrying in 30 s",
                            up.interface
                        );
                        wait = Duration::from_secs(30);
                    }
                }
            }
        });
}
