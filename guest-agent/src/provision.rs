//! A template clone becoming a workspace. An agent booted with
//! `paddock.provision=wait` serves from its initramfs with nothing of a
//! workspace yet: no writable disk, no network, the template's identity.
//! The host snapshots it there, and each restore of that snapshot is made
//! a workspace by one `Provision`: its own entropy, clock and names first
//! (so nothing random is drawn from the state all clones share), then its
//! own disk joined into the root, then its NIC.

use crate::conn::{Conn, ConnError};
use crate::info;
use crate::init::{self, BootOptions};
use crate::net::{self, NetConfig};
use crate::renew::{self, RenewError};
use paddock_proto::{AgentMsg, ErrorKind, ProvisionNet};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Set at boot when the kernel command line says `paddock.provision=wait`;
/// taken by the one `Provision` that may follow.
static WAITING: AtomicBool = AtomicBool::new(false);

/// How long the disk's new size may take to reach the guest's block layer
/// (the driver learns it from a config-change interrupt, in a worker).
const DISK_WAIT: Duration = Duration::from_secs(10);

/// `_IO(0x12, 97)`: drop the block device's cached pages.
const BLKFLSBUF: libc::c_ulong = 0x1261;

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("this agent is already a workspace: it booted without paddock.provision=wait, or was provisioned once")]
    NotWaiting,
    #[error(transparent)]
    Renew(#[from] RenewError),
    #[error("net: prefix /{0}; 1 to 30 are accepted")]
    Prefix(u8),
    #[error("net: {0:02x?} is not a unicast hardware address")]
    Mac([u8; 6]),
    #[error("the writable disk {disk} shows {seen} sectors after {waited_ms} ms, not the {wanted} the host gave")]
    DiskSize {
        disk: String,
        seen: u64,
        wanted: u64,
        waited_ms: u128,
    },
    #[error("dropping what was cached of {disk}: {source}")]
    Flush {
        disk: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Init(#[from] init::InitError),
    #[error("network: {0}")]
    Net(std::io::Error),
}

impl ProvisionError {
    fn kind(&self) -> ErrorKind {
        match self {
            ProvisionError::NotWaiting => ErrorKind::UnexpectedMessage,
            ProvisionError::Renew(RenewError::EntropySize(_) | RenewError::Hostname(_))
            | ProvisionError::Prefix(_)
            | ProvisionError::Mac(_) => ErrorKind::InvalidRequest,
            _ => ErrorKind::Io,
        }
    }
}

/// Called at boot for `paddock.provision=wait`.
pub fn wait_for_host() {
    WAITING.store(true, Ordering::SeqCst);
    info!("template boot: serving from the initramfs until the host sends Provision");
}

/// What the host asked for, checked before anything changes.
pub struct Request<'a> {
    pub entropy: &'a [u8],
    pub realtime_ns: u64,
    pub hostname: &'a str,
    pub data_sectors: u64,
    pub net: Option<ProvisionNet>,
}

fn check(r: &Request) -> Result<Option<(NetConfig, [u8; 6])>, ProvisionError> {
    renew::check(r.entropy, r.hostname)?;
    let Some(n) = r.net else {
        return Ok(None);
    };
    if !(1..=30).contains(&n.prefix) {
        return Err(ProvisionError::Prefix(n.prefix));
    }
    if n.mac[0] & 1 != 0 || n.mac == [0; 6] {
        return Err(ProvisionError::Mac(n.mac));
    }
    let cfg = NetConfig {
        address: Ipv4Addr::from(n.address),
        prefix: n.prefix,
        gateway: Ipv4Addr::from(n.gateway),
    };
    Ok(Some((cfg, n.mac)))
}

/// The disk's size as the guest's block layer has it, in 512-byte sectors.
fn sectors_seen(disk: &str) -> u64 {
    let name = disk.rsplit('/').next().unwrap_or(disk);
    std::fs::read_to_string(format!("/sys/class/block/{name}/size"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits for the placeholder's size to give way to the workspace disk's,
/// then drops anything cached from the placeholder.
fn await_disk(disk: &str, wanted: u64) -> Result<(), ProvisionError> {
    let started = Instant::now();
    loop {
        let seen = sectors_seen(disk);
        if seen == wanted {
            break;
        }
        if started.elapsed() > DISK_WAIT {
            return Err(ProvisionError::DiskSize {
                disk: disk.into(),
                seen,
                wanted,
                waited_ms: started.elapsed().as_millis(),
            });
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let flush_err = |e: std::io::Error| ProvisionError::Flush {
        disk: disk.into(),
        source: e,
    };
    let f = std::fs::File::open(disk).map_err(flush_err)?;
    // SAFETY: BLKFLSBUF takes no argument; the descriptor is open.
    if unsafe { libc::ioctl(f.as_raw_fd(), BLKFLSBUF) } < 0 {
        return Err(flush_err(std::io::Error::last_os_error()));
    }
    Ok(())
}

fn provision_all(r: &Request) -> Result<(), ProvisionError> {
    let net = check(r)?;
    if WAITING
        .compare_exchange(true, false, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        return Err(ProvisionError::NotWaiting);
    }
    renew::reseed(r.entropy)?;
    renew::set_clock(r.realtime_ns)?;
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let mut opts = BootOptions::from_cmdline(&cmdline);
    if r.data_sectors == 0 {
        // No disk of its own: the root's writable layer is memory.
        opts.data = String::new();
    } else {
        await_disk(&opts.data, r.data_sectors)?;
    }
    init::switch_to_workspace_root(&opts)?;
    init::late_mounts()?;
    renew::write_machine_id()?;
    init::set_hostname(r.hostname);
    if let Some((cfg, mac)) = net {
        net::set_mac(mac).map_err(ProvisionError::Net)?;
        net::configure(cfg).map_err(ProvisionError::Net)?;
    }
    Ok(())
}

/// Serves `Provision`: `Done` once the workspace is whole.
pub fn provision(conn: &Conn, r: &Request) -> Result<(), ConnError> {
    let started = Instant::now();
    match provision_all(r) {
        Ok(()) => {
            info!(
                "provisioned as {} in {} ms",
                r.hostname,
                started.elapsed().as_millis()
            );
            conn.send(&AgentMsg::Done)
        }
        Err(e) => {
            info!("provisioning failed: {e}");
            conn.error(e.kind(), e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(net: Option<ProvisionNet>) -> Request<'static> {
        Request {
            entropy: &[7; 64],
            realtime_ns: 1,
            hostname: "ws-1",
            data_sectors: 0,
            net,
        }
    }

    fn net(prefix: u8, mac: [u8; 6]) -> Option<ProvisionNet> {
        Some(ProvisionNet {
            address: [10, 200, 0, 2],
            prefix,
            gateway: [10, 200, 0, 1],
            mac,
        })
    }

    #[test]
    fn malformed_requests_are_refused_before_anything_changes() {
        let good = [0x02, 0, 0, 0, 0, 1];
        assert!(matches!(
            check(&request(net(31, good))),
            Err(ProvisionError::Prefix(31))
        ));
        assert!(matches!(
            check(&request(net(0, good))),
            Err(ProvisionError::Prefix(0))
        ));
        for bad in [[0x03, 0, 0, 0, 0, 1], [0; 6], [0xff; 6]] {
            assert!(matches!(
                check(&request(net(30, bad))),
                Err(ProvisionError::Mac(_))
            ));
        }
        let mut r = request(None);
        r.hostname = "a b";
        assert!(matches!(check(&r), Err(ProvisionError::Renew(_))));
        let (cfg, mac) = check(&request(net(30, good))).expect("valid").expect("net");
        assert_eq!(cfg.address, Ipv4Addr::new(10, 200, 0, 2));
        assert_eq!(mac, good);
        // A refused request leaves the agent waiting for a good one.
        assert!(check(&request(None)).expect("valid").is_none());
    }

    #[test]
    fn an_agent_that_did_not_boot_waiting_refuses_provision() {
        // WAITING is false in a test process, as in a cold-booted agent.
        assert!(matches!(
            provision_all(&request(None)),
            Err(ProvisionError::NotWaiting)
        ));
    }
}
