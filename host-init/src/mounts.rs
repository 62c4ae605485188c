//! The pseudo filesystems PID 1 mounts before anything else runs.

use nix::mount::{mount, MsFlags};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
#[error("mounting {fstype} on {target}: {source}")]
pub struct MountError {
    fstype: &'static str,
    target: &'static str,
    source: nix::Error,
}

struct Fs {
    fstype: &'static str,
    target: &'static str,
    flags: MsFlags,
    data: Option<&'static str>,
}

const NOSUID_NODEV_NOEXEC: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

fn mount_one(fs: &Fs) -> Result<(), MountError> {
    let err = |source| MountError {
        fstype: fs.fstype,
        target: fs.target,
        source,
    };
    std::fs::create_dir_all(fs.target)
        .map_err(|e| err(nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO))))?;
    match mount(
        Some(fs.fstype),
        fs.target,
        Some(fs.fstype),
        fs.flags,
        fs.data,
    ) {
        Ok(()) | Err(nix::Error::EBUSY) => Ok(()),
        Err(e) => Err(err(e)),
    }
}

/// devtmpfs, proc, sysfs, /run, /tmp, devpts, cgroup2 and securityfs.
pub fn early() -> Result<(), MountError> {
    let list = [
        Fs {
            fstype: "devtmpfs",
            target: "/dev",
            flags: MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            data: Some("mode=0755"),
        },
        Fs {
            fstype: "proc",
            target: "/proc",
            flags: NOSUID_NODEV_NOEXEC,
            data: None,
        },
        Fs {
            fstype: "sysfs",
            target: "/sys",
            flags: NOSUID_NODEV_NOEXEC,
            data: None,
        },
        Fs {
            fstype: "tmpfs",
            target: "/run",
            flags: NOSUID_NODEV_NOEXEC,
            data: Some("mode=0755,size=64m"),
        },
        Fs {
            fstype: "tmpfs",
            target: "/tmp",
            flags: NOSUID_NODEV_NOEXEC,
            data: Some("mode=1777,size=64m"),
        },
        Fs {
            fstype: "devpts",
            target: "/dev/pts",
            flags: MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            data: Some("mode=0620,ptmxmode=0666"),
        },
        Fs {
            fstype: "cgroup2",
            target: "/sys/fs/cgroup",
            flags: NOSUID_NODEV_NOEXEC,
            data: Some("nsdelegate"),
        },
        Fs {
            fstype: "securityfs",
            target: "/sys/kernel/security",
            flags: NOSUID_NODEV_NOEXEC,
            data: None,
        },
    ];
    for fs in &list {
        mount_one(fs)?;
    }
    Ok(())
}

/// efivarfs exists only on UEFI boots, and only once its module is in.
pub fn efivars() -> Result<bool, MountError> {
    if !Path::new("/sys/firmware/efi").exists() {
        return Ok(false);
    }
    mount_one(&Fs {
        fstype: "efivarfs",
        target: "/sys/firmware/efi/efivars",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
    })?;
    Ok(true)
}
