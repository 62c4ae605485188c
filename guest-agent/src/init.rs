//! Becoming the workspace's init: the pseudo filesystems, the root made of
//! the read-only template and the writable disk joined by overlayfs, the
//! hostname and the entropy pool.

use crate::info;
use crate::sys;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{what}: {source}")]
    Sys {
        what: String,
        source: std::io::Error,
    },
    #[error("formatting the writable disk {disk} failed: {detail}")]
    Format { disk: String, detail: String },
}

fn sys_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> InitError {
    let what = what.into();
    move |source| InitError::Sys { what, source }
}

/// What the kernel command line asks of the agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootOptions {
    /// Read-only template disk; the root is the initramfs when absent.
    pub template: String,
    /// Writable disk for the overlay's upper layer.
    pub data: String,
    pub hostname: String,
    /// `paddock.provision=wait`: a template boot, made a workspace later
    /// by the host's `Provision` (provision.rs).
    pub provision_wait: bool,
}

impl BootOptions {
    pub fn from_cmdline(cmdline: &str) -> BootOptions {
        let mut o = BootOptions {
            template: "/dev/vda".into(),
            data: "/dev/vdb".into(),
            hostname: "workspace".into(),
            provision_wait: false,
        };
        for arg in cmdline.split_whitespace() {
            if let Some(v) = arg.strip_prefix("paddock.template=") {
                o.template = v.into();
            } else if let Some(v) = arg.strip_prefix("paddock.data=") {
                o.data = v.into();
            } else if arg == "paddock.provision=wait" {
                o.provision_wait = true;
            } else if let Some(v) = arg.strip_prefix("paddock.hostname=") {
                if !v.is_empty()
                    && v.len() <= 63
                    && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                {
                    o.hostname = v.into();
                }
            }
        }
        o
    }
}

fn mkdir(p: &str) -> Result<(), InitError> {
    std::fs::create_dir_all(p).map_err(sys_err(format!("mkdir {p}")))
}

fn mount(
    src: &str,
    dst: &str,
    fstype: &str,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> Result<(), InitError> {
    mkdir(dst)?;
    sys::mount(src, dst, fstype, flags, data).map_err(sys_err(format!("mount {fstype} on {dst}")))
}

const NOSUID_NODEV: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV;

/// /proc, /sys and /dev, so disks can be found.
pub fn early_mounts() -> Result<(), InitError> {
    mount(
        "proc",
        "/proc",
        "proc",
        NOSUID_NODEV | libc::MS_NOEXEC,
        None,
    )?;
    mount(
        "sysfs",
        "/sys",
        "sysfs",
        NOSUID_NODEV | libc::MS_NOEXEC,
        None,
    )?;
    // The kernel may have mounted devtmpfs already (DEVTMPFS_MOUNT).
    if !Path::new("/dev/null").exists() {
        mount("devtmpfs", "/dev", "devtmpfs", libc::MS_NOSUID, None)?;
    }
    mount("tmpfs", "/run", "tmpfs", NOSUID_NODEV, Some("mode=755"))?;
    Ok(())
}

fn has_ext4_superblock(disk: &str) -> bool {
    let mut magic = [0u8; 2];
    std::fs::File::open(disk)
        .and_then(|mut f| {
            f.seek(SeekFrom::Start(1024 + 0x38))?;
            f.read_exact(&mut magic)
        })
        .is_ok()
        && magic == [0x53, 0xef]
}

/// A blank writable disk is formatted with the template's own mke2fs.
fn format_data_disk(lower: &str, disk: &str) -> Result<(), InitError> {
    info!("formatting {disk} (blank) with the template's mke2fs");
    // mke2fs wants the device node and /proc/mounts (to refuse a mounted disk).
    let dev = format!("{lower}/dev");
    let proc = format!("{lower}/proc");
    sys::mount("devtmpfs", &dev, "devtmpfs", libc::MS_NOSUID, None)
        .map_err(sys_err(format!("mount devtmpfs on {dev}")))?;
    sys::mount("proc", &proc, "proc", NOSUID_NODEV | libc::MS_NOEXEC, None)
        .map_err(sys_err(format!("mount proc on {proc}")))?;
    let root = lower.to_string();
    let mut cmd = Command::new("/sbin/mke2fs");
    cmd.args([
        "-q",
        "-F",
        "-t",
        "ext4",
        "-E",
        "lazy_itable_init=1,lazy_journal_init=1",
        disk,
    ]);
    let root_c = std::ffi::CString::new(root).map_err(|_| InitError::Format {
        disk: disk.into(),
        detail: "NUL in path".into(),
    })?;
    // SAFETY: the closure only calls chroot and chdir, which are
    // async-signal-safe, on a CString made before the fork.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(move || {
            if libc::chroot(root_c.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = run_to_end(&mut cmd);
    let _ = sys::umount(&proc);
    let _ = sys::umount(&dev);
    match out {
        Ok((crate::reaper::Ended::Code(0), _)) => Ok(()),
        Ok((ended, stderr)) => Err(InitError::Format {
            disk: disk.into(),
            detail: format!("{ended:?}: {}", stderr.trim()),
        }),
        Err(e) => Err(InitError::Format {
            disk: disk.into(),
            detail: e.to_string(),
        }),
    }
}

/// Runs `cmd` to its end: how it ended and what it said on stderr. The
/// reaper waits for every child of PID 1, so the status comes from it.
fn run_to_end(cmd: &mut Command) -> std::io::Result<(crate::reaper::Ended, String)> {
    use std::process::Stdio;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let (mut child, ended) = crate::reaper::spawn_watched(|| {
        let child = cmd.spawn()?;
        let pid = child.id() as i32;
        Ok::<_, std::io::Error>((child, pid))
    })?;
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    let ended = ended
        .recv()
        .map_err(|_| std::io::Error::other("the reaper stopped"))?;
    Ok((ended, stderr))
}

fn mount_template(disk: &str, at: &str) -> Result<(), InitError> {
    mkdir(at)?;
    let flags = libc::MS_RDONLY | libc::MS_NODEV;
    sys::mount(disk, at, "erofs", flags, None)
        .or_else(|_| sys::mount(disk, at, "ext4", flags, Some("noload")))
        .map_err(sys_err(format!("mount template {disk} (erofs or ext4)")))
}

/// Builds the overlay root and switches into it. Returns false (and stays
/// on the initramfs) when there is no template disk.
pub fn switch_to_workspace_root(o: &BootOptions) -> Result<bool, InitError> {
    if !Path::new(&o.template).exists() {
        info!(
            "no template disk {}; serving from the initramfs",
            o.template
        );
        return Ok(false);
    }
    let lower = "/run/paddock/lower";
    let data = "/run/paddock/data";
    let newroot = "/newroot";
    mount_template(&o.template, lower)?;
    if !Path::new(&o.data).exists() {
        // No writable disk: a throwaway tmpfs upper layer.
        mount("tmpfs", data, "tmpfs", NOSUID_NODEV, Some("mode=755"))?;
    } else {
        if !has_ext4_superblock(&o.data) {
            // Timed: the format is most of a clone's provisioning, the
            // part a disk formatted ahead of time would take away.
            let started = std::time::Instant::now();
            format_data_disk(lower, &o.data)?;
            info!(
                "formatted {} in {} ms",
                o.data,
                started.elapsed().as_millis()
            );
        }
        mount(&o.data, data, "ext4", libc::MS_NODEV, None)?;
    }
    mkdir(&format!("{data}/upper"))?;
    mkdir(&format!("{data}/work"))?;
    let opts = format!("lowerdir={lower},upperdir={data}/upper,workdir={data}/work");
    mount("overlay", newroot, "overlay", 0, Some(&opts))?;
    for m in ["/proc", "/sys", "/dev", "/run"] {
        let dst = format!("{newroot}{m}");
        mkdir(&dst)?;
        sys::move_mount(m, &dst).map_err(sys_err(format!("moving {m} into the new root")))?;
    }
    std::env::set_current_dir(newroot).map_err(sys_err("chdir to the new root"))?;
    sys::move_mount(".", "/").map_err(sys_err("moving the new root onto /"))?;
    sys::chroot(".").map_err(sys_err("chroot"))?;
    std::env::set_current_dir("/").map_err(sys_err("chdir /"))?;
    Ok(true)
}

/// What every workspace has, in whatever root it ended up with.
pub fn late_mounts() -> Result<(), InitError> {
    mount("tmpfs", "/tmp", "tmpfs", NOSUID_NODEV, Some("mode=1777"))?;
    mount(
        "devpts",
        "/dev/pts",
        "devpts",
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=620"),
    )?;
    mount(
        "tmpfs",
        "/dev/shm",
        "tmpfs",
        NOSUID_NODEV,
        Some("mode=1777"),
    )?;
    mount(
        "cgroup2",
        "/sys/fs/cgroup",
        "cgroup2",
        NOSUID_NODEV | libc::MS_NOEXEC,
        None,
    )?;
    Ok(())
}

/// Mixes bytes from the host's virtio-rng into the pool, so the first
/// processes in a fresh workspace don't start with a thin pool.
pub fn seed_entropy() {
    let mut seed = [0u8; 64];
    let got = std::fs::File::open("/dev/hwrng").and_then(|mut f| f.read_exact(&mut seed));
    if got.is_err() {
        info!("no /dev/hwrng; entropy left to the kernel");
        return;
    }
    // Writing to /dev/urandom mixes the bytes in (without crediting them).
    if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open("/dev/urandom") {
        use std::io::Write;
        let _ = f.write_all(&seed);
    }
}

pub fn set_hostname(name: &str) {
    if let Err(e) = sys::sethostname(name) {
        info!("sethostname: {e}");
    }
    let _ = std::fs::write("/etc/hostname", format!("{name}\n"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_options_and_ignores_bad_hostnames() {
        let o =
            BootOptions::from_cmdline("quiet paddock.template=/dev/vdc paddock.hostname=ws-1 x=y");
        assert_eq!(o.template, "/dev/vdc");
        assert_eq!(o.data, "/dev/vdb");
        assert_eq!(o.hostname, "ws-1");
        assert!(!o.provision_wait);
        assert!(BootOptions::from_cmdline("quiet paddock.provision=wait").provision_wait);
        let o = BootOptions::from_cmdline("paddock.hostname=bad;name");
        assert_eq!(o.hostname, "workspace");
    }
}
