//! The data partition: found by its GPT label on the boot disk, grown to
//! the end of the disk, formatted only when the image build marked it
//! blank, and mounted at /data. Whatever else is there is somebody's data:
//! a partition that cannot be mounted is reported, never reformatted.

use crate::{info, warn};
use nix::mount::{mount, MsFlags};
use paddock_image::gpt::{Gpt, SECTOR};
use paddock_image::slots::Slot;
use paddock_image::{DATA_BLANK_MARKER, LABEL_DATA, LABEL_TEMPLATE};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub const DATA_MOUNT: &str = "/data";
const MKE2FS: &str = "/usr/sbin/mke2fs";
const RESIZE2FS: &str = "/usr/sbin/resize2fs";
/// How long to wait for the disk driver to find the boot disk.
const DISK_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("no disk with a GPT partition labelled {LABEL_DATA} appeared within {0:?}")]
    NoBootDisk(Duration),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{disk} uses {0}-byte sectors; only 512-byte sectors are supported", disk = .1)]
    SectorSize(u64, String),
    #[error("the data partition {0} holds no ext4 filesystem and is not marked blank; it may hold data, so it is left untouched (inspect it, or rewrite the image to start over)")]
    Unrecognised(String),
    #[error("the data partition {dev} holds an ext4 filesystem that does not mount ({source}); it is left untouched")]
    MountFailed { dev: String, source: nix::Error },
    #[error("formatting {dev} failed: {detail}")]
    Format { dev: String, detail: String },
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StorageError {
    let path = path.to_path_buf();
    move |source| StorageError::Io { what, path, source }
}

/// What was found and done, for the log and the status screen.
#[derive(Clone, Debug)]
pub struct DataInfo {
    pub disk: String,
    pub data_dev: String,
    pub template_dev: Option<String>,
    /// The template partition of the slot this boot does not run, and its
    /// size: where an update's template goes.
    pub other_template: Option<(String, u64)>,
    pub esp_dev: Option<String>,
    pub size_bytes: u64,
    pub grew: bool,
    pub formatted: bool,
    /// Whether the filesystem was cleanly unmounted last time (journal
    /// needed no recovery); None when it was just created.
    pub was_clean: Option<bool>,
}

fn sys_u64(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whole disks (not partitions) the kernel knows.
fn disks() -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/sys/class/block") {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let base = format!("/sys/class/block/{name}");
            if Path::new(&format!("{base}/partition")).exists()
                || name.starts_with("loop")
                || name.starts_with("ram")
                || name.starts_with("dm-")
            {
                continue;
            }
            out.push(name);
        }
    }
    out.sort();
    out
}

/// The kernel name of partition number `n` (1-based) of `disk`.
fn partition_name(disk: &str, n: usize) -> Option<String> {
    let rd = std::fs::read_dir(format!("/sys/class/block/{disk}")).ok()?;
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if sys_u64(&format!("/sys/class/block/{disk}/{name}/partition")) == Some(n as u64) {
            return Some(name);
        }
    }
    None
}

fn find_boot_disk() -> Result<(String, Gpt), StorageError> {
    let started = Instant::now();
    loop {
        for disk in disks() {
            let path = format!("/dev/{disk}");
            let Ok(mut f) = File::open(&path) else {
                continue;
            };
            if let Ok(table) = Gpt::read(&mut f) {
                if table.find(LABEL_DATA).is_some() {
                    return Ok((disk, table));
                }
            }
        }
        if started.elapsed() > DISK_WAIT {
            return Err(StorageError::NoBootDisk(DISK_WAIT));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// _IO(0x12, 95): re-read the partition table.
const BLKRRPART: libc::c_ulong = 0x125f;

fn reread_partitions(disk: &File) -> std::io::Result<()> {
    // SAFETY: BLKRRPART takes no argument; the fd is a block device we own.
    let r = unsafe { libc::ioctl(disk.as_raw_fd(), BLKRRPART as _, 0) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Grows the data partition to the end of the disk when the disk is
/// bigger than the image (first boot after `dd`, or a replaced disk).
fn grow_partition(disk: &str, table: &mut Gpt) -> Result<bool, StorageError> {
    let path = PathBuf::from(format!("/dev/{disk}"));
    let lbs = sys_u64(&format!("/sys/class/block/{disk}/queue/logical_block_size")).unwrap_or(512);
    if lbs != SECTOR {
        return Err(StorageError::SectorSize(lbs, disk.to_string()));
    }
    let sectors = sys_u64(&format!("/sys/class/block/{disk}/size")).unwrap_or(0);
    let changed = match table.grow_to_disk(LABEL_DATA, sectors) {
        Ok(c) => c,
        Err(e) => {
            warn!("not growing {LABEL_DATA}: {e}");
            return Ok(false);
        }
    };
    if !changed {
        return Ok(false);
    }
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(io_err("opening", &path))?;
    table.write(&mut f).map_err(|e| StorageError::Io {
        what: "rewriting the partition table of",
        path: path.clone(),
        source: std::io::Error::other(e.to_string()),
    })?;
    f.sync_all().map_err(io_err("syncing", &path))?;
    reread_partitions(&f).map_err(io_err("re-reading the partition table of", &path))?;
    Ok(true)
}

/// ext4 superblock facts, read without mounting.
struct Superblock {
    bytes: u64,
    needs_recovery: bool,
}

fn read_superblock(dev: &Path) -> Result<(Option<Superblock>, bool), StorageError> {
    let mut f = File::open(dev).map_err(io_err("opening", dev))?;
    let mut head = vec![0u8; 2048];
    f.seek(SeekFrom::Start(0)).map_err(io_err("reading", dev))?;
    f.read_exact(&mut head).map_err(io_err("reading", dev))?;
    let blank = head.starts_with(DATA_BLANK_MARKER);
    let sb = &head[1024..2048];
    if u16::from_le_bytes([sb[56], sb[57]]) != 0xEF53 {
        return Ok((None, blank));
    }
    let le32 = |at: usize| u32::from_le_bytes([sb[at], sb[at + 1], sb[at + 2], sb[at + 3]]);
    let blocks = u64::from(le32(4)) | (u64::from(le32(0x150)) << 32);
    let block_size = 1024u64 << le32(24).min(6);
    let incompat = le32(96);
    Ok((
        Some(Superblock {
            bytes: blocks * block_size,
            needs_recovery: incompat & 0x4 != 0,
        }),
        blank,
    ))
}

fn run_tool(tool: &str, args: &[&str], dev: &str) -> Result<(), StorageError> {
    let mut cmd = Command::new(tool);
    cmd.args(args).env_clear();
    let (exit, stderr) = crate::children::run(cmd).map_err(|e| StorageError::Format {
        dev: dev.to_string(),
        detail: format!("running {tool}: {e}"),
    })?;
    if exit == crate::children::Exit::Code(0) {
        Ok(())
    } else {
        Err(StorageError::Format {
            dev: dev.to_string(),
            detail: format!("{tool}: {exit}: {}", stderr.trim()),
        })
    }
}

fn wait_for_node(dev: &Path) {
    let started = Instant::now();
    while !dev.exists() && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Finds, grows, formats (only when marked blank) and mounts the data
/// partition; finds the template partition of the booted `slot` (slot A's
/// when the slot is unknown, the single template partition of an image
/// from before the slots).
pub fn prepare(slot: Option<Slot>) -> Result<DataInfo, StorageError> {
    let (disk, mut table) = find_boot_disk()?;
    let grew = grow_partition(&disk, &mut table)?;
    let data_slot = table.find(LABEL_DATA).map(|(s, _)| *s).unwrap_or(0);
    let data_name =
        partition_name(&disk, data_slot + 1).unwrap_or_else(|| format!("{disk}{}", data_slot + 1));
    let template_label = slot.unwrap_or(Slot::A).template_label();
    let template_dev = table
        .find(template_label)
        .or_else(|| table.find(LABEL_TEMPLATE))
        .and_then(|(s, _)| partition_name(&disk, s + 1))
        .map(|n| format!("/dev/{n}"));
    let other_template = slot.and_then(|s| {
        let (n, p) = table.find(s.other().template_label())?;
        let name = partition_name(&disk, n + 1)?;
        Some((format!("/dev/{name}"), p.size_bytes()))
    });
    let esp_dev = table
        .partitions
        .iter()
        .find(|(_, p)| p.type_guid == paddock_image::gpt::TYPE_ESP)
        .and_then(|(s, _)| partition_name(&disk, s + 1))
        .map(|n| format!("/dev/{n}"));
    let dev = PathBuf::from(format!("/dev/{data_name}"));
    wait_for_node(&dev);
    let dev_s = dev.display().to_string();
    let size_bytes = sys_u64(&format!("/sys/class/block/{data_name}/size")).unwrap_or(0) * SECTOR;
    if grew {
        info!(
            "grew {LABEL_DATA} ({dev_s}) to the end of /dev/{disk}: {} MiB",
            size_bytes >> 20
        );
    }

    let (sb, blank) = read_superblock(&dev)?;
    let (formatted, was_clean, fs_bytes) = match sb {
        Some(sb) => (false, Some(!sb.needs_recovery), sb.bytes),
        None if blank => {
            info!(
                "{dev_s} is marked blank: creating the data filesystem ({} MiB)",
                size_bytes >> 20
            );
            run_tool(
                MKE2FS,
                &[
                    "-q",
                    "-F",
                    "-t",
                    "ext4",
                    "-L",
                    LABEL_DATA,
                    "-m",
                    "0",
                    "-E",
                    "lazy_itable_init=1,lazy_journal_init=1",
                    &dev_s,
                ],
                &dev_s,
            )?;
            (true, None, size_bytes)
        }
        None => return Err(StorageError::Unrecognised(dev_s)),
    };
    std::fs::create_dir_all(DATA_MOUNT).map_err(io_err("creating", Path::new(DATA_MOUNT)))?;
    mount(
        Some(dev.as_path()),
        DATA_MOUNT,
        Some("ext4"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("errors=remount-ro"),
    )
    .map_err(|source| StorageError::MountFailed {
        dev: dev_s.clone(),
        source,
    })?;
    // A disk that grew after the filesystem was made: grow it online.
    if size_bytes > fs_bytes + (16 << 20) {
        info!(
            "growing the data filesystem from {} to {} MiB",
            fs_bytes >> 20,
            size_bytes >> 20
        );
        if let Err(e) = run_tool(RESIZE2FS, &[&dev_s], &dev_s) {
            warn!("{e}");
        }
    }
    for d in ["state", "templates", "workspaces", "audit", "config"] {
        let p = Path::new(DATA_MOUNT).join(d);
        std::fs::create_dir_all(&p).map_err(io_err("creating", &p))?;
    }
    Ok(DataInfo {
        disk: format!("/dev/{disk}"),
        data_dev: dev_s,
        template_dev,
        other_template,
        esp_dev,
        size_bytes,
        grew,
        formatted,
        was_clean,
    })
}

/// Unmounts /data for shutdown; reports whether it went cleanly.
pub fn unmount() -> Result<(), nix::Error> {
    nix::unistd::sync();
    let mut last = Ok(());
    for _ in 0..10 {
        last = nix::mount::umount(DATA_MOUNT);
        match last {
            Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => return Ok(()),
            Err(_) => std::thread::sleep(Duration::from_millis(300)),
        }
    }
    // Still busy: at least make the journal clean before power goes.
    let _ = mount(
        None::<&str>,
        DATA_MOUNT,
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
        None::<&str>,
    );
    last
}

/// Where the ESP is mounted, read-only, just long enough to read what an
/// operator or the image build put there.
const ESP_MOUNT: &str = "/run/esp";
pub const ESP_CONFIG: &str = "paddock/config.json";

/// What host-init reads from the ESP (writable by anyone holding the disk:
/// everything here is checked before use).
#[derive(Default)]
pub struct EspFiles {
    /// The operator's configuration, if there is one.
    pub config: Option<String>,
    /// The images' PCR signatures (`paddock_keys::signed`): name, bytes;
    /// at most `MAX_SIGNATURES`, each at most `MAX_SIGNATURE_FILE` bytes
    /// (a longer one is read that far and then refused by its parser).
    pub pcr_signatures: Vec<(String, Vec<u8>)>,
    /// The slots' UKIs as the ESP holds them.
    pub slots: Vec<crate::slot::SlotFile>,
}

/// Mounts the ESP at `ESP_MOUNT` (read-write only when `writable`), runs
/// `f` on it, unmounts it whatever `f` did.
pub fn with_esp<T>(
    esp_dev: &str,
    writable: bool,
    f: impl FnOnce(&Path) -> T,
) -> Result<T, StorageError> {
    // One user of the mount point at a time (boot, blessing, an update).
    static ESP_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _held = ESP_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    std::fs::create_dir_all(ESP_MOUNT).map_err(io_err("creating", Path::new(ESP_MOUNT)))?;
    let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    if !writable {
        flags |= MsFlags::MS_RDONLY;
    }
    mount(
        Some(esp_dev),
        ESP_MOUNT,
        Some("vfat"),
        flags,
        Some("iocharset=utf8"),
    )
    .map_err(|source| StorageError::Io {
        what: "mounting the ESP",
        path: PathBuf::from(esp_dev),
        source: std::io::Error::from(source),
    })?;
    let out = f(Path::new(ESP_MOUNT));
    if let Err(e) = nix::mount::umount(ESP_MOUNT) {
        log::warn!("unmounting the ESP: {e}");
    }
    Ok(out)
}

pub fn read_esp(esp_dev: &str) -> Result<EspFiles, StorageError> {
    use paddock_keys::signed::{MAX_SIGNATURES, MAX_SIGNATURE_FILE, SIGNATURE_DIR};
    use std::io::Read;
    with_esp(esp_dev, false, |root| {
        let path = root.join(ESP_CONFIG);
        let config = match std::fs::read_to_string(&path) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StorageError::Io {
                what: "reading",
                path: path.clone(),
                source: e,
            }),
        };
        let mut pcr_signatures = Vec::new();
        if let Ok(dir) = std::fs::read_dir(root.join(SIGNATURE_DIR)) {
            let mut names: Vec<PathBuf> = dir
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect();
            names.sort();
            for p in names.into_iter().take(MAX_SIGNATURES) {
                let mut bytes = Vec::new();
                let read = std::fs::File::open(&p).and_then(|f| {
                    f.take(MAX_SIGNATURE_FILE as u64 + 1)
                        .read_to_end(&mut bytes)
                });
                match read {
                    Ok(_) => pcr_signatures.push((p.display().to_string(), bytes)),
                    Err(e) => log::warn!("{}: {e}", p.display()),
                }
            }
        }
        Ok(EspFiles {
            config: config?,
            pcr_signatures,
            slots: crate::slot::list(root),
        })
    })?
}
