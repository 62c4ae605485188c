//! After a restore from a snapshot every clone starts with the same
//! kernel RNG state, clock, machine-id and hostname as the VM the snapshot
//! was taken of. `Renew` gives this one its own: fresh host entropy
//! credited to the pool and a forced CRNG reseed (so two clones' next
//! random bytes differ), the wall clock, a new machine-id, its hostname.

use crate::conn::{Conn, ConnError};
use crate::info;
use paddock_proto::{AgentMsg, ErrorKind, RENEW_ENTROPY_MAX, RENEW_ENTROPY_MIN};
use std::os::fd::AsRawFd;

/// `_IOW('R', 0x03, int[2])`: add bytes to the pool, with credit.
const RNDADDENTROPY: libc::c_ulong = 0x4008_5203;
/// `_IO('R', 0x07)`: reseed the CRNG from the pool now.
const RNDRESEEDCRNG: libc::c_ulong = 0x5207;
const MACHINE_ID: &str = "/etc/machine-id";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RenewError {
    #[error("entropy of {0} bytes; {RENEW_ENTROPY_MIN} to {RENEW_ENTROPY_MAX} are accepted")]
    EntropySize(usize),
    #[error("hostname {0:?} is not 1 to 63 letters, digits and hyphens")]
    Hostname(String),
    #[error("{what}: {message}")]
    System { what: &'static str, message: String },
}

pub(crate) fn system(what: &'static str) -> impl FnOnce(std::io::Error) -> RenewError {
    move |e| RenewError::System {
        what,
        message: e.to_string(),
    }
}

pub fn check(entropy: &[u8], hostname: &str) -> Result<(), RenewError> {
    if !(RENEW_ENTROPY_MIN..=RENEW_ENTROPY_MAX).contains(&entropy.len()) {
        return Err(RenewError::EntropySize(entropy.len()));
    }
    let ok = !hostname.is_empty()
        && hostname.len() <= 63
        && hostname
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !ok {
        return Err(RenewError::Hostname(hostname.into()));
    }
    Ok(())
}

/// Credits `entropy` to the kernel's pool and reseeds the CRNG from it.
pub(crate) fn reseed(entropy: &[u8]) -> Result<(), RenewError> {
    let urandom = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/urandom")
        .map_err(system("opening /dev/urandom"))?;
    // struct rand_pool_info { int entropy_count; int buf_size; u32 buf[]; }
    let mut info = Vec::with_capacity(8 + entropy.len());
    info.extend_from_slice(&((entropy.len() * 8) as i32).to_ne_bytes());
    info.extend_from_slice(&(entropy.len() as i32).to_ne_bytes());
    info.extend_from_slice(entropy);
    // The kernel reads the header as ints: keep the buffer int-aligned.
    let mut words = vec![0u32; info.len().div_ceil(4)];
    for (w, chunk) in words.iter_mut().zip(info.chunks(4)) {
        let mut b = [0u8; 4];
        b[..chunk.len()].copy_from_slice(chunk);
        *w = u32::from_ne_bytes(b);
    }
    // SAFETY: RNDADDENTROPY reads a rand_pool_info whose buf_size bytes
    // follow its header; `words` holds exactly that and outlives the call.
    let r = unsafe { libc::ioctl(urandom.as_raw_fd(), RNDADDENTROPY, words.as_ptr()) };
    if r < 0 {
        return Err(system("RNDADDENTROPY")(std::io::Error::last_os_error()));
    }
    // SAFETY: RNDRESEEDCRNG takes no argument.
    let r = unsafe { libc::ioctl(urandom.as_raw_fd(), RNDRESEEDCRNG) };
    if r < 0 {
        return Err(system("RNDRESEEDCRNG")(std::io::Error::last_os_error()));
    }
    Ok(())
}

pub(crate) fn set_clock(realtime_ns: u64) -> Result<(), RenewError> {
    let ts = libc::timespec {
        tv_sec: (realtime_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (realtime_ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: clock_settime with a valid timespec on the stack.
    if unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) } < 0 {
        return Err(system("setting the clock")(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// A machine-id as systemd writes one: 32 lowercase hex digits, from the
/// RNG just reseeded.
fn new_machine_id() -> Result<String, RenewError> {
    let mut id = [0u8; 16];
    let mut filled = 0;
    while filled < id.len() {
        // SAFETY: getrandom into the unfilled tail of a stack buffer.
        let n = unsafe { libc::getrandom(id[filled..].as_mut_ptr().cast(), id.len() - filled, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(system("getrandom")(e));
        }
        filled += n as usize;
    }
    Ok(id.iter().map(|b| format!("{b:02x}")).collect())
}

/// A fresh `/etc/machine-id`, drawn after a reseed.
pub(crate) fn write_machine_id() -> Result<(), RenewError> {
    std::fs::write(MACHINE_ID, format!("{}\n", new_machine_id()?))
        .map_err(system("writing /etc/machine-id"))
}

fn renew_all(
    entropy: &[u8],
    realtime_ns: u64,
    hostname: &str,
    clone: bool,
) -> Result<(), RenewError> {
    check(entropy, hostname)?;
    reseed(entropy)?;
    set_clock(realtime_ns)?;
    if clone {
        write_machine_id()?;
    }
    crate::init::set_hostname(hostname);
    Ok(())
}

/// Serves `Renew`: `Done` once all of it took.
pub fn renew(
    conn: &Conn,
    entropy: &[u8],
    realtime_ns: u64,
    hostname: &str,
    clone: bool,
) -> Result<(), ConnError> {
    match renew_all(entropy, realtime_ns, hostname, clone) {
        Ok(()) => {
            info!("renewed after a restore: reseeded, clock set, hostname {hostname}");
            conn.send(&AgentMsg::Done)
        }
        Err(e @ (RenewError::EntropySize(_) | RenewError::Hostname(_))) => {
            conn.error(ErrorKind::InvalidRequest, e.to_string())
        }
        Err(e) => conn.error(ErrorKind::Io, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_requests_are_named() {
        assert_eq!(check(&[0; 31], "ws"), Err(RenewError::EntropySize(31)));
        assert_eq!(check(&[0; 513], "ws"), Err(RenewError::EntropySize(513)));
        assert!(check(&[0; 32], "ws-1").is_ok());
        for bad in ["", "a b", "x/../y", &"a".repeat(64)] {
            assert_eq!(check(&[0; 64], bad), Err(RenewError::Hostname(bad.into())));
        }
    }

    #[test]
    fn machine_ids_look_like_systemds_and_differ() {
        let a = new_machine_id().expect("id");
        let b = new_machine_id().expect("id");
        assert_eq!(a.len(), 32);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
    }
}
