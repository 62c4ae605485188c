//! Mixing hardware randomness (the TPM's RNG when there is one) into the
//! kernel's pool before keys and certificates are made.

use crate::info;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;

pub fn tpm_present() -> bool {
    std::path::Path::new("/dev/tpmrm0").exists() || std::path::Path::new("/dev/tpm0").exists()
}

/// Returns the hardware RNG's name when it contributed.
pub fn seed() -> Option<String> {
    let name = std::fs::read_to_string("/sys/class/misc/hw_random/rng_current")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && s != "none")?;
    let mut rng = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/hwrng")
        .ok()?;
    let mut buf = [0u8; 64];
    let n = rng.read(&mut buf).ok().filter(|n| *n > 0)?;
    // Writing mixes the bytes in without crediting them; the kernel's own
    // hwrng thread credits this source at the quality the driver declares.
    let mut pool = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/urandom")
        .ok()?;
    pool.write_all(&buf[..n]).ok()?;
    info!("mixed {n} bytes from {name} into the entropy pool");
    Some(name)
}
