//! A workspace's tap: created by host-init in the host's network namespace
//! and handed to its VMM as an open descriptor (the VMM's own namespace
//! has no interfaces, and it never opens /dev/net/tun). The tap goes away
//! with the last descriptor, so a VMM that dies takes its link with it.

use crate::addressing::Slot;
use crate::ifconfig;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("opening /dev/net/tun: {0}")]
    Open(std::io::Error),
    #[error("creating tap {name}: {source}")]
    Create {
        name: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Configure(#[from] ifconfig::IfError),
    #[error("setting strict reverse-path filtering on {name}: {source}")]
    RpFilter {
        name: String,
        source: std::io::Error,
    },
}

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;

/// Creates the slot's tap, gives it the host side of the slot's /30 and
/// brings it up. A stale tap of the same name (a VMM still dying) is
/// reattached: TUNSETIFF on an existing name joins it.
pub fn create(slot: Slot) -> Result<OwnedFd, TapError> {
    let name = slot.tap();
    let fd = open_named(&name)?;
    // Strict reverse-path filtering: a packet whose source address the
    // kernel would not route back out of this tap (another workspace's
    // address, anyone's) is dropped before any hook sees it. The firewall
    // checks the source too (firewall::workspace_rules); this is the
    // kernel's own second fence.
    let rp = format!("/proc/sys/net/ipv4/conf/{name}/rp_filter");
    std::fs::write(&rp, "1").map_err(|source| TapError::RpFilter {
        name: name.clone(),
        source,
    })?;
    ifconfig::set_address(&name, slot.host(), 30)?;
    ifconfig::set_up(&name)?;
    Ok(fd)
}

/// Creates (or attaches to) the tap `name`, unconfigured.
pub fn open_named(name: &str) -> Result<OwnedFd, TapError> {
    let name = name.to_string();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map_err(TapError::Open)?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = IFF_TAP | IFF_NO_PI;
    // SAFETY: TUNSETIFF reads and writes the ifreq we own.
    if unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF as _, &mut req) } < 0 {
        return Err(TapError::Create {
            name,
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: into_raw_fd gives up a descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(file)) })
}

/// The guest's MAC: locally administered, unicast, the slot in the low bytes.
pub fn guest_mac_bytes(slot: Slot) -> [u8; 6] {
    let b = slot.0.to_be_bytes();
    [0x02, 0x70, 0x64, b[1], b[2], b[3]]
}

/// `guest_mac_bytes` as the VMM's `--net mac=` takes it.
pub fn guest_mac(slot: Slot) -> String {
    format_mac(guest_mac_bytes(slot))
}

pub fn format_mac(m: [u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}
