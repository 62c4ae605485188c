//! A workspace disk as a dm-crypt mapping over a loop device on its
//! backing file, set up with the kernel's own interfaces (loop-control,
//! the device-mapper ioctls, the keyring): no cryptsetup, no dmsetup.
//!
//! The key never appears in a device-mapper table: it goes into this
//! thread's keyring as a `logon` key (which user space cannot read back),
//! the table names it (`:64:logon:paddock:<name>`), dm-crypt copies it
//! at load, and the keyring entry is invalidated at once.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum DmError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("device-mapper {op} of {name}: {source}")]
    Dm {
        op: &'static str,
        name: String,
        source: std::io::Error,
    },
    #[error("adding the disk key of {name} to the kernel keyring: {source}")]
    Keyring {
        name: String,
        source: std::io::Error,
    },
    #[error("no free loop device for {path}: {source}")]
    Loop {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("mapping name {0:?} is not usable (1-100 of [A-Za-z0-9_-])")]
    Name(String),
}

/// The cipher: AES-256 in XTS mode (two 256-bit keys), sector number as IV.
pub const CIPHER: &str = "aes-xts-plain64";
pub const KEY_LEN: usize = 64;
/// Encryption sector: one XTS operation per 4 KiB rather than per 512
/// bytes (the VMM's buffered I/O and the page cache absorb smaller guest
/// requests). Every disk is a whole number of MiB.
pub const SECTOR: u64 = 4096;
const DM_CONTROL: &str = "/dev/mapper/control";
const LOOP_CONTROL: &str = "/dev/loop-control";

// linux/dm-ioctl.h
const DM_IOCTL_SIZE: usize = 312;
const DM_NAME_AT: usize = 48;
const DM_NAME_LEN: usize = 128;
const DM_READONLY_FLAG: u32 = 1;
const DM_SECURE_DATA_FLAG: u32 = 1 << 15;
const DM_DEFERRED_REMOVE: u32 = 1 << 17;
const DM_DEV_CREATE: u8 = 3;
const DM_DEV_REMOVE: u8 = 4;
const DM_DEV_SUSPEND: u8 = 6;
const DM_DEV_STATUS: u8 = 7;
const DM_TABLE_LOAD: u8 = 9;
const DM_TABLE_STATUS: u8 = 12;
const DM_STATUS_TABLE_FLAG: u32 = 1 << 4;

const fn dm_request(nr: u8) -> u64 {
    // _IOWR(0xfd, nr, struct dm_ioctl)
    (3u64 << 30) | ((DM_IOCTL_SIZE as u64) << 16) | (0xfd << 8) | nr as u64
}

// linux/loop.h
const LOOP_CTL_GET_FREE: u64 = 0x4C82;
const LOOP_CONFIGURE: u64 = 0x4C0A;
const LO_FLAGS_AUTOCLEAR: u32 = 4;
const LO_FLAGS_DIRECT_IO: u32 = 16;
const LOOP_CONFIG_SIZE: usize = 304;

/// The mappings this boot opened and has not removed: shutdown closes
/// them all, or their loop devices would keep the data partition busy.
static OPEN: std::sync::Mutex<std::collections::BTreeSet<String>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

fn registry() -> std::sync::MutexGuard<'static, std::collections::BTreeSet<String>> {
    OPEN.lock().unwrap_or_else(|e| e.into_inner())
}

/// Closes every mapping still open (shutdown, once no VMM runs).
pub fn close_all() -> Vec<(String, DmError)> {
    let names: Vec<String> = registry().iter().cloned().collect();
    names
        .into_iter()
        .filter_map(|n| close(&n).err().map(|e| (n, e)))
        .collect()
}

fn valid_name(name: &str) -> Result<(), DmError> {
    if name.is_empty()
        || name.len() > 100
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(DmError::Name(name.to_string()));
    }
    Ok(())
}

/// One device-mapper ioctl: a dm_ioctl header for `name`, then `payload`.
/// Returns the buffer the kernel wrote back.
fn dm_call(
    op: &'static str,
    nr: u8,
    name: &str,
    flags: u32,
    target_count: u32,
    payload: &[u8],
) -> Result<Vec<u8>, DmError> {
    let fail = |source| DmError::Dm {
        op,
        name: name.to_string(),
        source,
    };
    let control = OpenOptions::new()
        .read(true)
        .write(true)
        .open(DM_CONTROL)
        .map_err(fail)?;
    // Room for the kernel's answer (a table status) beyond our payload.
    let size = DM_IOCTL_SIZE + payload.len().max(4096);
    let mut buf = vec![0u8; size];
    buf[0..4].copy_from_slice(&4u32.to_ne_bytes());
    buf[12..16].copy_from_slice(&(size as u32).to_ne_bytes());
    buf[16..20].copy_from_slice(&(DM_IOCTL_SIZE as u32).to_ne_bytes());
    buf[20..24].copy_from_slice(&target_count.to_ne_bytes());
    buf[28..32].copy_from_slice(&flags.to_ne_bytes());
    buf[DM_NAME_AT..DM_NAME_AT + name.len().min(DM_NAME_LEN - 1)]
        .copy_from_slice(&name.as_bytes()[..name.len().min(DM_NAME_LEN - 1)]);
    buf[DM_IOCTL_SIZE..DM_IOCTL_SIZE + payload.len()].copy_from_slice(payload);
    // SAFETY: the buffer is a dm_ioctl header followed by data, as long
    // as its data_size field says; the kernel reads and writes within it.
    let r = unsafe { libc::ioctl(control.as_raw_fd(), dm_request(nr) as _, buf.as_mut_ptr()) };
    if r < 0 {
        return Err(fail(std::io::Error::last_os_error()));
    }
    Ok(buf)
}

/// The mapping's device number, if it exists.
pub fn device_number(name: &str) -> Option<u64> {
    let buf = dm_call("status", DM_DEV_STATUS, name, 0, 0, &[]).ok()?;
    Some(u64::from_ne_bytes(buf[40..48].try_into().ok()?))
}

/// The table line the kernel reports for a mapping (what `dmsetup table`
/// would print): it names the key, never holds it.
pub fn table(name: &str) -> Result<String, DmError> {
    let buf = dm_call(
        "table status",
        DM_TABLE_STATUS,
        name,
        DM_STATUS_TABLE_FLAG,
        0,
        &[],
    )?;
    let start = u32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]) as usize;
    // dm_target_spec (40 bytes), then the parameters up to a NUL.
    let params = buf.get(start + 40..).unwrap_or_default();
    let end = params.iter().position(|b| *b == 0).unwrap_or(params.len());
    Ok(String::from_utf8_lossy(&params[..end]).into_owned())
}

/// Attaches `backing` to a free loop device that detaches itself once the
/// mapping above it closes. Returns the open loop device.
fn attach_loop(backing: &Path) -> Result<File, DmError> {
    let fail = |source| DmError::Loop {
        path: backing.to_path_buf(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(backing)
        .map_err(fail)?;
    let control = OpenOptions::new()
        .read(true)
        .write(true)
        .open(LOOP_CONTROL)
        .map_err(fail)?;
    // Another thread may take the device between GET_FREE and CONFIGURE.
    for _ in 0..16 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a number.
        let n = unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE as _) };
        if n < 0 {
            return Err(fail(std::io::Error::last_os_error()));
        }
        let path = PathBuf::from(format!("/dev/loop{n}"));
        let dev = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // devtmpfs makes the node a moment after the device.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            Err(e) => return Err(fail(e)),
        };
        let mut config = [0u8; LOOP_CONFIG_SIZE];
        config[0..4].copy_from_slice(&(file.as_raw_fd() as u32).to_ne_bytes());
        config[4..8].copy_from_slice(&512u32.to_ne_bytes());
        // loop_info64.lo_flags sits at 8 + 52.
        config[60..64].copy_from_slice(&(LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO).to_ne_bytes());
        // SAFETY: a loop_config of the kernel's size; the kernel only reads it.
        let r = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CONFIGURE as _, config.as_ptr()) };
        if r == 0 {
            return Ok(dev);
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EBUSY) {
            return Err(fail(e));
        }
    }
    Err(fail(std::io::Error::from_raw_os_error(libc::EBUSY)))
}

fn add_logon_key(desc: &str, key: &[u8]) -> std::io::Result<i32> {
    let kind = c"logon";
    let desc = CString::new(desc).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: two NUL-terminated strings and a buffer of `key.len()`
    // bytes; the kernel copies them. The thread keyring is this thread's.
    let r = unsafe {
        libc::syscall(
            libc::SYS_add_key,
            kind.as_ptr(),
            desc.as_ptr(),
            key.as_ptr(),
            key.len(),
            libc::KEY_SPEC_THREAD_KEYRING,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(r as i32)
}

fn invalidate_key(serial: i32) {
    // SAFETY: keyctl(KEYCTL_INVALIDATE, serial) takes plain integers.
    unsafe {
        libc::syscall(libc::SYS_keyctl, libc::KEYCTL_INVALIDATE, serial);
    }
}

/// Maps `backing` as the decrypted block device `name` with `key`;
/// returns its device number. Everything made on the way is undone when a
/// step fails.
pub fn open(name: &str, backing: &Path, key: &[u8; KEY_LEN]) -> Result<u64, DmError> {
    open_with(name, backing, key, false)
}

/// As `open`, read-only when asked (a forensic download).
pub fn open_with(
    name: &str,
    backing: &Path,
    key: &[u8; KEY_LEN],
    read_only: bool,
) -> Result<u64, DmError> {
    open_at(name, backing, key, read_only, 0)
}

/// As `open_with`, the cipher's sector numbers starting at `iv_offset`:
/// one key can then encrypt several files (a workspace's disk and its
/// paused memory) without two of them ever using the same tweak, so no
/// sector of one can be compared with or moved into another.
pub fn open_at(
    name: &str,
    backing: &Path,
    key: &[u8; KEY_LEN],
    read_only: bool,
    iv_offset: u64,
) -> Result<u64, DmError> {
    let ro = if read_only { DM_READONLY_FLAG } else { 0 };
    valid_name(name)?;
    let loop_dev = attach_loop(backing)?;
    let sectors = {
        let mut f = &loop_dev;
        std::io::Seek::seek(&mut f, std::io::SeekFrom::End(0)).map_err(|source| DmError::Io {
            what: "sizing",
            path: backing.to_path_buf(),
            source,
        })? / 512
    };
    let loop_rdev = std::fs::metadata(format!("/proc/self/fd/{}", loop_dev.as_raw_fd()))
        .map(|m| std::os::unix::fs::MetadataExt::rdev(&m))
        .map_err(|source| DmError::Io {
            what: "reading the device number of the loop device for",
            path: backing.to_path_buf(),
            source,
        })?;
    let (major, minor) = (libc::major(loop_rdev), libc::minor(loop_rdev));

    let create = dm_call("create", DM_DEV_CREATE, name, ro, 0, &[])?;
    let dev = u64::from_ne_bytes(create[40..48].try_into().unwrap_or_default());
    let undo = |e: DmError| {
        let _ = dm_call("remove", DM_DEV_REMOVE, name, 0, 0, &[]);
        e
    };
    let desc = format!("paddock:{name}");
    let serial = add_logon_key(&desc, key).map_err(|source| {
        undo(DmError::Keyring {
            name: name.to_string(),
            source,
        })
    })?;
    let params = format!(
        "{CIPHER} :{KEY_LEN}:logon:{desc} {iv_offset} {major}:{minor} 0 1 sector_size:{SECTOR}\0"
    );
    let mut spec = vec![0u8; 40];
    spec[8..16].copy_from_slice(&sectors.to_ne_bytes());
    spec[24..29].copy_from_slice(b"crypt");
    spec.extend_from_slice(params.as_bytes());
    while spec.len() % 8 != 0 {
        spec.push(0);
    }
    let loaded = dm_call(
        "table load",
        DM_TABLE_LOAD,
        name,
        DM_SECURE_DATA_FLAG | ro,
        1,
        &spec,
    );
    invalidate_key(serial);
    loaded.map_err(undo)?;
    dm_call("resume", DM_DEV_SUSPEND, name, 0, 0, &[]).map_err(undo)?;
    registry().insert(name.to_string());
    // The mapping holds the loop device now; ours can go (autoclear then
    // detaches it when the mapping is removed).
    drop(loop_dev);
    Ok(dev)
}

/// Removes the mapping once its last user closes it (at once if none).
pub fn remove_when_closed(name: &str) -> Result<(), DmError> {
    valid_name(name)?;
    dm_call("remove", DM_DEV_REMOVE, name, DM_DEFERRED_REMOVE, 0, &[])?;
    registry().remove(name);
    Ok(())
}

/// Makes a block device node for `dev`, opens it and removes the node:
/// the descriptor is then the only way to the device.
pub fn open_device(dev: u64, write: bool) -> Result<File, DmError> {
    // In devtmpfs: /run is mounted nodev.
    let dir = Path::new("/dev/paddock/nodes");
    let fail = |what, source| DmError::Io {
        what,
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| fail("creating", e))?;
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let node = dir.join(format!(
        "{}",
        N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    ));
    let _ = std::fs::remove_file(&node);
    nix::sys::stat::mknod(
        &node,
        nix::sys::stat::SFlag::S_IFBLK,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
        dev,
    )
    .map_err(|e| fail("making a device node in", std::io::Error::from(e)))?;
    let f = OpenOptions::new().read(true).write(write).open(&node);
    let _ = std::fs::remove_file(&node);
    f.map_err(|e| fail("opening a device node in", e))
}

/// Removes the mapping (its loop device detaches itself). Retries while
/// something still holds it open for a moment (a VMM being reaped).
pub fn close(name: &str) -> Result<(), DmError> {
    valid_name(name)?;
    let mut tries = 0;
    loop {
        match dm_call("remove", DM_DEV_REMOVE, name, 0, 0, &[]) {
            Ok(_) => {
                registry().remove(name);
                return Ok(());
            }
            Err(DmError::Dm { source, .. }) if source.raw_os_error() == Some(libc::ENXIO) => {
                registry().remove(name);
                return Ok(());
            }
            Err(DmError::Dm { source, .. })
                if source.raw_os_error() == Some(libc::EBUSY) && tries < 50 =>
            {
                tries += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_are_mapped() {
        assert!(valid_name("ws-abc_123").is_ok());
        for bad in ["", "a/b", "../x", "a b", &"x".repeat(101)] {
            assert!(valid_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn request_numbers_match_the_kernels() {
        // DM_DEV_CREATE as the kernel headers compute it.
        assert_eq!(dm_request(DM_DEV_CREATE), 0xC138_FD03);
        assert_eq!(dm_request(DM_TABLE_LOAD), 0xC138_FD09);
    }
}
