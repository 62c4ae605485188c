//! The VM's configuration: one JSON document (or the equivalent flags),
//! checked completely before anything is created.

use crate::arch::boot::detect_kernel_format;
use serde::Deserialize;
use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

pub const DEFAULT_VCPUS: u8 = 1;
pub const DEFAULT_MEMORY_MIB: u64 = 256;
/// Less than this and no kernel we build gets to its init.
pub const MIN_MEMORY_MIB: u64 = 32;

/// The name the control socket knows the network device's rate by (a
/// drive may not take it).
pub const NET_RATE_ID: &str = "net";

/// APIC IDs in the MP table are 8-bit and one goes to the IO-APIC.
pub const MAX_VCPUS: usize = 254;
/// CIDs 0-2 are reserved (hypervisor, local, host); u32::MAX is "any".
pub const MIN_GUEST_CID: u64 = 3;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VmConfig {
    /// Required unless restoring; empty when absent.
    #[serde(default)]
    pub kernel: PathBuf,
    #[serde(default)]
    pub initramfs: Option<PathBuf>,
    /// Extra kernel arguments, after the ones the VMM needs for its devices.
    #[serde(default)]
    pub cmdline: String,
    #[serde(default = "default_vcpus")]
    pub vcpus: u8,
    #[serde(default = "default_memory")]
    pub memory_mib: u64,
    #[serde(default)]
    pub drives: Vec<DriveConfig>,
    #[serde(default)]
    pub vsock: Option<VsockConfig>,
    /// "stdout" (default), "off", or a file path.
    #[serde(default)]
    pub console: Console,
    /// virtio-rng; on unless switched off.
    #[serde(default = "default_true")]
    pub rng: bool,
    /// Per-thread seccomp filters (seccomp.rs); off only for debugging.
    #[serde(default = "default_true")]
    pub seccomp: bool,
    /// The host's control socket (control.rs), if any.
    #[serde(default)]
    pub control: Option<PathBuf>,
    /// virtio-net on a tap the host opened and passed as a descriptor.
    #[serde(default)]
    pub net: Option<NetConfig>,
    /// Start from the snapshot in this directory (`state` and `memory`)
    /// instead of booting a kernel.
    #[serde(default)]
    pub restore: Option<PathBuf>,
    /// With `restore`: copy the snapshot's memory into fresh guest RAM
    /// (the memfds a booted VM has) instead of mapping the file. For a
    /// workspace resumed from its own paused state: nothing is left mapped
    /// from it, so it can be deleted at once, and the VM's memory is
    /// what it would be had it booted (its cgroup's, readable by
    /// forensics). A template's clones map, to share its pages.
    #[serde(default)]
    pub restore_copy: bool,
}

fn check_net(n: &NetConfig, errors: &mut Vec<ConfigError>) {
    if parse_mac(&n.mac).is_none() {
        errors.push(err(
            "net.mac",
            format!(
                "{:?} is not a unicast MAC address (xx:xx:xx:xx:xx:xx)",
                n.mac
            ),
        ));
    }
    for (what, v) in [
        ("bytes_per_s", n.rate.bytes_per_s),
        ("ops_per_s", n.rate.ops_per_s),
    ] {
        if v == Some(0) {
            errors.push(err(
                format!("net.rate.{what}"),
                "must be at least 1 (leave it out for no limit)",
            ));
        }
    }
    if n.tap_fd < 3 {
        errors.push(err(
            "net.tap_fd",
            format!("{} is stdio, not a tap", n.tap_fd),
        ));
        return;
    }
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes into a stat buffer we own; a bad fd gives EBADF.
    let r = unsafe { libc::fstat(n.tap_fd, st.as_mut_ptr()) };
    if r != 0 {
        errors.push(err(
            "net.tap_fd",
            format!(
                "descriptor {} is not open: {}",
                n.tap_fd,
                std::io::Error::last_os_error()
            ),
        ));
        return;
    }
    // SAFETY: fstat succeeded, so it filled the buffer.
    let st = unsafe { st.assume_init() };
    if st.st_mode & libc::S_IFMT != libc::S_IFCHR {
        errors.push(err(
            "net.tap_fd",
            format!("descriptor {} is not a character device (a tap)", n.tap_fd),
        ));
    }
}

fn default_vcpus() -> u8 {
    DEFAULT_VCPUS
}
fn default_memory() -> u64 {
    DEFAULT_MEMORY_MIB
}
fn default_true() -> bool {
    true
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DriveConfig {
    pub id: String,
    pub path: PathBuf,
    #[serde(default)]
    pub read_only: bool,
    /// Bytes and requests per second the guest may drive on it.
    #[serde(default)]
    pub rate: crate::rate_limit::RateLimit,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NetConfig {
    /// An inherited descriptor of a tap (IFF_TAP | IFF_NO_PI). The VMM
    /// never opens /dev/net/tun itself: its network namespace is empty.
    pub tap_fd: i32,
    /// The guest's MAC address, "xx:xx:xx:xx:xx:xx".
    pub mac: String,
    /// Bytes and frames per second, each direction on its own.
    #[serde(default)]
    pub rate: crate::rate_limit::RateLimit,
}

/// Parses "02:00:0a:c8:00:02"; a multicast address is refused (the guest
/// could not use it as its own).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in mac.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    if parts.next().is_some() || mac[0] & 1 == 1 {
        return None;
    }
    Some(mac)
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VsockConfig {
    pub cid: u64,
    pub uds_path: PathBuf,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub enum Console {
    #[default]
    Stdout,
    Off,
    File(PathBuf),
}

impl<'de> Deserialize<'de> for Console {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Console::parse(&s))
    }
}

impl Console {
    pub fn parse(s: &str) -> Console {
        match s {
            "stdout" => Console::Stdout,
            "off" => Console::Off,
            path => Console::File(PathBuf::from(path)),
        }
    }
}

/// One thing wrong with a configuration, naming the field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        message: message.into(),
    }
}

impl VmConfig {
    pub fn from_json(text: &str) -> Result<VmConfig, ConfigError> {
        serde_json::from_str(text).map_err(|e| err("config", e.to_string()))
    }

    pub fn from_file(path: &Path) -> Result<VmConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| err("config", format!("cannot read {}: {e}", path.display())))?;
        Self::from_json(&text)
    }

    /// Every problem found, each naming its field. `host_memory_mib` and
    /// `max_vcpus` are the host's limits.
    pub fn validate(&self, host_memory_mib: u64, max_vcpus: usize) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if self.restore_copy && self.restore.is_none() {
            errors.push(err("restore_copy", "only with restore".to_string()));
        }
        match &self.restore {
            None => check_kernel(&self.kernel, &mut errors),
            Some(dir) => check_restore(self, dir, &mut errors),
        }
        if let Some(initrd) = &self.initramfs {
            if let Err(e) = File::open(initrd) {
                errors.push(err(
                    "initramfs",
                    format!("cannot open {}: {e}", initrd.display()),
                ));
            }
        }
        let max_vcpus = max_vcpus.min(MAX_VCPUS);
        if self.vcpus == 0 || usize::from(self.vcpus) > max_vcpus {
            errors.push(err(
                "vcpus",
                format!("must be between 1 and {max_vcpus} (got {})", self.vcpus),
            ));
        }
        if self.memory_mib < MIN_MEMORY_MIB {
            errors.push(err(
                "memory_mib",
                format!(
                    "must be at least {MIN_MEMORY_MIB} (got {})",
                    self.memory_mib
                ),
            ));
        } else if self.memory_mib > host_memory_mib {
            errors.push(err(
                "memory_mib",
                format!(
                    "{} MiB is more than the host's {host_memory_mib} MiB",
                    self.memory_mib
                ),
            ));
        }
        if self.cmdline.bytes().any(|b| b == 0 || b == b'\n') {
            errors.push(err("cmdline", "must not contain NUL or newline characters"));
        }
        let mut ids = HashSet::new();
        for (i, d) in self.drives.iter().enumerate() {
            let field = format!("drives[{i}]");
            if d.id.is_empty()
                || d.id.len() > 20
                || !d
                    .id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                errors.push(err(
                    format!("{field}.id"),
                    format!("{:?} must be 1-20 characters of [A-Za-z0-9_-]", d.id),
                ));
            }
            for (what, v) in [
                ("bytes_per_s", d.rate.bytes_per_s),
                ("ops_per_s", d.rate.ops_per_s),
            ] {
                if v == Some(0) {
                    errors.push(err(
                        format!("{field}.rate.{what}"),
                        "must be at least 1 (leave it out for no limit)",
                    ));
                }
            }
            if !ids.insert(d.id.as_str()) {
                errors.push(err(
                    format!("{field}.id"),
                    format!("duplicate id {:?}", d.id),
                ));
            }
            let open = if d.read_only {
                File::open(&d.path)
            } else {
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&d.path)
            };
            match open.and_then(|f| f.metadata()) {
                Ok(m) if !m.is_file() && !m.file_type().is_block_device() => errors.push(err(
                    format!("{field}.path"),
                    format!(
                        "{} is neither a regular file nor a block device",
                        d.path.display()
                    ),
                )),
                Ok(_) => {}
                Err(e) => errors.push(err(
                    format!("{field}.path"),
                    format!("cannot open {}: {e}", d.path.display()),
                )),
            }
        }
        if let Some(n) = &self.net {
            check_net(n, &mut errors);
            if self.drives.iter().any(|d| d.id == NET_RATE_ID) {
                errors.push(err(
                    "drives",
                    "a drive may not be called \"net\": the control socket knows the NIC by that name",
                ));
            }
        }
        let virtio_count = self.drives.len()
            + usize::from(self.rng)
            + usize::from(self.vsock.is_some())
            + usize::from(self.net.is_some());
        if virtio_count > crate::arch::layout::MAX_VIRTIO_DEVICES {
            errors.push(err(
                "drives",
                format!(
                    "{} virtio devices requested; at most {} fit",
                    virtio_count,
                    crate::arch::layout::MAX_VIRTIO_DEVICES
                ),
            ));
        }
        if let Some(v) = &self.vsock {
            if v.cid < MIN_GUEST_CID || v.cid >= u64::from(u32::MAX) {
                errors.push(err(
                    "vsock.cid",
                    format!(
                        "must be between {MIN_GUEST_CID} and {} (got {})",
                        u32::MAX - 1,
                        v.cid
                    ),
                ));
            }
            if v.uds_path.exists() {
                errors.push(err(
                    "vsock.uds_path",
                    format!("{} already exists", v.uds_path.display()),
                ));
            } else if !v
                .uds_path
                .parent()
                .is_some_and(|p| p.as_os_str().is_empty() || p.is_dir())
            {
                errors.push(err(
                    "vsock.uds_path",
                    format!("directory of {} does not exist", v.uds_path.display()),
                ));
            }
            // sun_path holds 108 bytes including the NUL, and guest ports add "_<port>".
            if v.uds_path.as_os_str().len() > 107 - 11 {
                errors.push(err(
                    "vsock.uds_path",
                    "longer than a Unix socket path can be (96 bytes leaves room for _<port>)",
                ));
            }
        }
        if let Console::File(p) = &self.console {
            if p.as_os_str().is_empty() {
                errors.push(err("console", "empty path"));
            }
        }
        errors
    }
}

/// A restored VM runs the kernel, initramfs and command line in its
/// snapshot: any given beside it would silently not apply.
fn check_restore(cfg: &VmConfig, dir: &Path, errors: &mut Vec<ConfigError>) {
    for (field, given) in [
        ("kernel", !cfg.kernel.as_os_str().is_empty()),
        ("initramfs", cfg.initramfs.is_some()),
        ("cmdline", !cfg.cmdline.is_empty()),
    ] {
        if given {
            errors.push(err(
                field,
                "cannot be combined with restore: the snapshot's own is what runs",
            ));
        }
    }
    for name in [crate::restore::STATE_FILE, crate::restore::MEMORY_FILE] {
        let path = dir.join(name);
        match std::fs::metadata(&path) {
            // A file, or a block device (a dm-crypt mapping: a paused
            // workspace on the appliance).
            Ok(m)
                if m.is_file()
                    || std::os::unix::fs::FileTypeExt::is_block_device(&m.file_type()) => {}
            Ok(_) => errors.push(err(
                "restore",
                format!(
                    "{} is neither a regular file nor a block device",
                    path.display()
                ),
            )),
            Err(e) => errors.push(err(
                "restore",
                format!("cannot open {}: {e}", path.display()),
            )),
        }
    }
}

fn check_kernel(path: &Path, errors: &mut Vec<ConfigError>) {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) => {
            errors.push(err(
                "kernel",
                format!("cannot open {}: {e}", path.display()),
            ));
            return;
        }
    };
    match detect_kernel_format(&mut file) {
        Ok(Some(_)) => {}
        Ok(None) => errors.push(err(
            "kernel",
            format!("{} is neither an ELF vmlinux nor a bzImage", path.display()),
        )),
        Err(e) => errors.push(err(
            "kernel",
            format!("cannot read {}: {e}", path.display()),
        )),
    }
}

/// The host's RAM in MiB, from /proc/meminfo.
pub fn host_memory_mib() -> std::io::Result<u64> {
    let text = std::fs::read_to_string("/proc/meminfo")?;
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib / 1024)
        .ok_or_else(|| std::io::Error::other("no MemTotal in /proc/meminfo"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_named() {
        let e = VmConfig::from_json(r#"{"kernel": "/k", "memory": 5}"#).expect_err("unknown");
        assert_eq!(e.field, "config");
        assert!(
            e.message.contains("unknown field `memory`"),
            "{}",
            e.message
        );
    }

    #[test]
    fn defaults_apply() {
        let c = VmConfig::from_json(r#"{"kernel": "/k"}"#).expect("ok");
        assert_eq!(c.vcpus, 1);
        assert_eq!(c.memory_mib, 256);
        assert!(c.rng);
        assert_eq!(c.console, Console::Stdout);
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let c = VmConfig::from_json(
            r#"{"kernel": "/nonexistent/k", "vcpus": 0, "memory_mib": 0,
                "drives": [{"id": "a", "path": "/nonexistent/d"}, {"id": "a", "path": "/nonexistent/d", "read_only": true}],
                "vsock": {"cid": 2, "uds_path": "/nonexistent/dir/v.sock"}}"#,
        )
        .expect("parses");
        let fields: Vec<String> = c.validate(1024, 8).into_iter().map(|e| e.field).collect();
        for f in [
            "kernel",
            "vcpus",
            "memory_mib",
            "drives[0].path",
            "drives[1].id",
            "drives[1].path",
            "vsock.cid",
            "vsock.uds_path",
        ] {
            assert!(fields.iter().any(|x| x == f), "{f} missing from {fields:?}");
        }
    }

    #[test]
    fn limits_come_from_the_host() {
        let c = VmConfig::from_json(r#"{"kernel": "/k", "vcpus": 9, "memory_mib": 4096}"#)
            .expect("parses");
        let errors = c.validate(2048, 8);
        assert!(errors
            .iter()
            .any(|e| e.field == "vcpus" && e.message.contains("between 1 and 8")));
        assert!(errors
            .iter()
            .any(|e| e.field == "memory_mib" && e.message.contains("more than the host")));
    }
}
