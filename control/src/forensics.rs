//! Quarantine: a workspace frozen below its guest and its VMM, and the
//! forensic snapshot taken of it (guest memory, disk, audit trail).
//!
//! The freeze is the cgroup v2 freezer on the workspace's cgroup: every
//! thread of its jail and VMM stops, vCPUs included, without the VMM's
//! cooperation. Guest memory is then read by host-init straight from the
//! frozen VMM's address space (`/proc/<pid>/mem`, at the memfds the VMM
//! names `paddock-guest-ram@<guest address>`), so a compromised VMM has no
//! say in what the snapshot holds.
//!
//! A snapshot lives in `/data/forensics/<workspace id>/` until an admin
//! deletes it; no TTL applies. Its memory and disk files are ciphertext,
//! each under its own key in the key store (`fx-<id>-memory`, and for the
//! disk a copy of the workspace's own disk key, `fx-<id>-disk`): the disk
//! is copied as the ciphertext it already was, memory is written through a
//! dm-crypt mapping. A download reads through a read-only mapping;
//! deleting the snapshot erases both keys like a workspace's.

use super::workspace::WorkspaceRecord;
use paddock_api_types::{AuditEvent, ForensicFile, ForensicFiles, ForensicManifest};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const FORENSICS_DIR: &str = "/data/forensics";
/// What a VMM names its guest RAM memfds (paddock-vmm's memory.rs).
const RAM_MEMFD: &str = "/memfd:paddock-guest-ram@";
const FREEZE_WAIT: Duration = Duration::from_secs(30);
const CHUNK: usize = 1 << 20;

/// The files of a snapshot, by the name the API uses for each.
pub const FILES: [(&str, &str); 5] = [
    ("manifest", "manifest.json"),
    ("memory", "memory.raw"),
    ("disk", "disk.img"),
    ("audit", "audit.jsonl"),
    ("network", "network.jsonl"),
];

#[derive(Debug, thiserror::Error)]
pub enum ForensicsError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the workspace's cgroup did not report frozen within {0:?}; threads not frozen: {1}")]
    NotFrozen(Duration, String),
    #[error("no guest memory found in the VMM's mappings (pid {0})")]
    NoGuestMemory(u32),
    #[error("the VMM's memory map does not look like a {0} MiB guest ({1}); nothing copied")]
    ImplausibleMemory(u64, String),
    #[error("the VMM of workspace {0} is not running")]
    NoVmm(String),
    #[error("workspace {0} already has a forensic snapshot")]
    Exists(String),
    #[error("{0}")]
    Keys(#[from] paddock_keys::KeyError),
}

/// The key store names of a snapshot's two encrypted files.
pub fn key_name(id: &str, file: &str) -> String {
    format!("fx-{id}-{file}")
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ForensicsError {
    let path = path.to_path_buf();
    move |source| ForensicsError::Io { what, path, source }
}

pub fn snapshot_dir(id: &str) -> PathBuf {
    Path::new(FORENSICS_DIR).join(id)
}

/// The path of snapshot file `name` ("memory", "disk", ...) of workspace
/// `id`, if that is a snapshot file's name and the snapshot has it.
pub fn file(id: &str, name: &str) -> Option<PathBuf> {
    let (_, file) = FILES.iter().find(|(n, _)| *n == name)?;
    let p = snapshot_dir(id).join(file);
    p.is_file().then_some(p)
}

/// The kernel threads in a cgroup. KVM attaches a worker of its own
/// (`kvm-nx-lpage-recovery-<pid>`) to the cgroup of the process that made
/// the VM; the freezer cannot freeze kernel threads, so while it is there
/// the cgroup never reports frozen.
fn kernel_threads(cgroup: &Path) -> Vec<u32> {
    crate::procfs::cgroup_threads(cgroup)
        .into_iter()
        .filter(|&tid| crate::procfs::stat(tid).is_some_and(|s| s.is_kernel_thread()))
        .collect()
}

/// Freezes every process of the workspace's cgroup and waits until the
/// kernel says they all are. KVM's kernel worker is moved to the root
/// cgroup first (it runs no guest code; see `kernel_threads`).
pub fn freeze(cgroup: &Path) -> Result<(), ForensicsError> {
    let root_procs = Path::new("/sys/fs/cgroup/cgroup.procs");
    for tid in kernel_threads(cgroup) {
        std::fs::write(root_procs, tid.to_string())
            .map_err(io("moving a kernel thread to", root_procs))?;
    }
    let ctl = cgroup.join("cgroup.freeze");
    std::fs::write(&ctl, "1").map_err(io("writing", &ctl))?;
    let events = cgroup.join("cgroup.events");
    let until = Instant::now() + FREEZE_WAIT;
    loop {
        let text = std::fs::read_to_string(&events).map_err(io("reading", &events))?;
        if text.lines().any(|l| l.trim() == "frozen 1") {
            return Ok(());
        }
        if Instant::now() >= until {
            return Err(ForensicsError::NotFrozen(
                FREEZE_WAIT,
                threads_report(cgroup),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The threads of a cgroup with their state and where they sleep, for
/// the report of a freeze that did not complete or a start that hangs.
pub fn threads_report(cgroup: &Path) -> String {
    crate::procfs::cgroup_threads(cgroup)
        .into_iter()
        .map(|tid| {
            let (comm, state, ticks) = crate::procfs::stat(tid)
                .map_or(("?".into(), "?".into(), 0), |s| {
                    (s.comm, s.state, s.cpu_ticks)
                });
            let wchan = std::fs::read_to_string(format!("/proc/{tid}/wchan")).unwrap_or_default();
            // USER_HZ is 100 on every Linux this runs on.
            format!(
                "{tid} {comm} {state} {wchan} cpu {:.1} s",
                ticks as f64 / 100.0
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether the cgroup is frozen (or being frozen).
pub fn is_frozen(cgroup: &Path) -> bool {
    std::fs::read_to_string(cgroup.join("cgroup.freeze")).is_ok_and(|s| s.trim() == "1")
}

/// The VMM inside a workspace's jail: the jail process's only child.
pub fn vmm_pid(jail_pid: u32) -> Option<u32> {
    let children =
        std::fs::read_to_string(format!("/proc/{jail_pid}/task/{jail_pid}/children")).ok()?;
    children.split_whitespace().next()?.parse().ok()
}

/// (host start, host end, guest address) of each guest RAM region in a
/// `/proc/<pid>/maps` text.
fn ram_regions(maps: &str) -> Vec<(u64, u64, u64)> {
    maps.lines()
        .filter_map(|l| {
            let (range, rest) = l.split_once(' ')?;
            let gpa = rest.split(RAM_MEMFD).nth(1)?;
            let gpa = gpa.split_whitespace().next()?;
            let gpa = u64::from_str_radix(gpa.strip_prefix("0x")?, 16).ok()?;
            let (a, b) = range.split_once('-')?;
            Some((
                u64::from_str_radix(a, 16).ok()?,
                u64::from_str_radix(b, 16).ok()?,
                gpa,
            ))
        })
        .collect()
}

/// Below this guest address RAM is one region from 0; above it there is
/// the MMIO hole up to 4 GiB (the VMM's layout, vmm/src/arch/layout.rs).
const MMIO_HOLE_START: u64 = 0xc000_0000;
const HIGH_RAM_START: u64 = 1 << 32;

/// (host start, host end, guest address) of one guest RAM mapping.
type Region = (u64, u64, u64);

/// The maps file is the VMM's to shape (it names its own memfds and can
/// grow or move mappings), and a VMM the guest took over may lie: the
/// regions must add up to exactly the workspace's memory, not overlap, and
/// lie where the layout puts RAM, or nothing is copied. Sorted by guest
/// address, with the image's length.
fn plausible(
    mut regions: Vec<Region>,
    memory_mib: u64,
) -> Result<(Vec<Region>, u64), ForensicsError> {
    let want = memory_mib << 20;
    let bad = |why: String| Err(ForensicsError::ImplausibleMemory(memory_mib, why));
    regions.sort_by_key(|r| r.2);
    let mut sum = 0u64;
    let mut end = 0u64;
    for &(start, stop, gpa) in &regions {
        let Some(len) = stop.checked_sub(start).filter(|l| *l > 0) else {
            return bad(format!("an empty or inverted mapping at {start:#x}"));
        };
        if gpa < end {
            return bad(format!("regions overlap at guest address {gpa:#x}"));
        }
        let Some(region_end) = gpa.checked_add(len) else {
            return bad(format!("a region past the address space at {gpa:#x}"));
        };
        let low = region_end <= MMIO_HOLE_START;
        let high = gpa >= HIGH_RAM_START && region_end <= HIGH_RAM_START + want;
        if !low && !high {
            return bad(format!(
                "a region at {gpa:#x}..{region_end:#x}, outside guest RAM"
            ));
        }
        sum = sum.saturating_add(len);
        end = region_end;
    }
    if sum != want {
        return bad(format!("{sum} bytes mapped"));
    }
    Ok((regions, end))
}

/// Copies `len` bytes from `read_at(offset)` to `out` at `out_at + offset`,
/// leaving holes where a whole chunk is zero; returns the SHA-256 of the
/// bytes as a flat image of `len` bytes.
fn copy_sparse(
    read_at: impl FnMut(&mut [u8], u64) -> std::io::Result<usize>,
    len: u64,
    out: &File,
    out_at: u64,
    hash: &mut Sha256,
) -> std::io::Result<()> {
    copy_chunks(read_at, len, Some(out), out_at, hash, false)
}

/// As copy_sparse; `dense` writes zero chunks too (an encrypted device,
/// where a hole would not read back as zeros), and without `out` only
/// hashes.
fn copy_chunks(
    mut read_at: impl FnMut(&mut [u8], u64) -> std::io::Result<usize>,
    len: u64,
    out: Option<&File>,
    out_at: u64,
    hash: &mut Sha256,
    dense: bool,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    let mut done = 0u64;
    while done < len {
        let want = ((len - done) as usize).min(CHUNK);
        let mut got = 0;
        while got < want {
            match read_at(&mut buf[got..want], done + got as u64)? {
                0 => {
                    // Past the end of the source: the rest reads as zeros.
                    buf[got..want].fill(0);
                    got = want;
                }
                n => got += n,
            }
        }
        hash.update(&buf[..want]);
        if let Some(out) = out {
            if dense || buf[..want].iter().any(|&b| b != 0) {
                out.write_all_at(&buf[..want], out_at + done)?;
            }
        }
        done += want as u64;
    }
    Ok(())
}

fn finish(path: &Path, f: &File, len: u64, hash: Sha256) -> Result<ForensicFile, ForensicsError> {
    f.set_len(len).map_err(io("sizing", path))?;
    f.sync_all().map_err(io("syncing", path))?;
    Ok(ForensicFile {
        bytes: len,
        sha256: hex(&hash.finalize()),
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn create(path: &Path) -> Result<File, ForensicsError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io("creating", path))
}

/// Guest RAM as one flat image indexed by guest-physical address (the
/// MMIO hole, for guests above 3 GiB, reads as zeros), written through a
/// dm-crypt mapping onto `path` under the key store key `key`.
fn copy_memory(
    vmm: u32,
    memory_mib: u64,
    path: &Path,
    key: &str,
    mapping: &str,
) -> Result<ForensicFile, ForensicsError> {
    let maps_path = PathBuf::from(format!("/proc/{vmm}/maps"));
    let maps = std::fs::read_to_string(&maps_path).map_err(io("reading", &maps_path))?;
    let regions = ram_regions(&maps);
    if regions.is_empty() {
        return Err(ForensicsError::NoGuestMemory(vmm));
    }
    let (regions, total) = plausible(regions, memory_mib)?;
    let backing = create(path)?;
    backing.set_len(total).map_err(io("sizing", path))?;
    drop(backing);
    let store = paddock_keys::store()?;
    let dev = store.open_disk(key, mapping, path)?;
    let result = (|| {
        let out =
            paddock_keys::dmcrypt::open_device(dev, true).map_err(paddock_keys::KeyError::from)?;
        let mem_path = PathBuf::from(format!("/proc/{vmm}/mem"));
        let mem = File::open(&mem_path).map_err(io("opening", &mem_path))?;
        let mut hash = Sha256::new();
        let mut end = 0;
        let zeros = vec![0u8; CHUNK];
        for (start, stop, gpa) in regions {
            while end < gpa {
                let n = (gpa - end).min(CHUNK as u64) as usize;
                hash.update(&zeros[..n]);
                out.write_all_at(&zeros[..n], end)
                    .map_err(io("writing", path))?;
                end += n as u64;
            }
            copy_chunks(
                |buf, off| mem.read_at(buf, start + off),
                stop - start,
                Some(&out),
                gpa,
                &mut hash,
                true,
            )
            .map_err(io("copying guest memory from", &mem_path))?;
            end = gpa + (stop - start);
        }
        out.sync_all().map_err(io("syncing", path))?;
        Ok(ForensicFile {
            bytes: end,
            sha256: hex(&hash.finalize()),
        })
    })();
    if let Err(e) = paddock_keys::dmcrypt::close(mapping) {
        log::warn!("forensics: closing {mapping}: {e}");
    }
    result
}

/// The disk as the ciphertext it is on the data partition (a sparse copy:
/// never-written ranges stay holes, as they are in the original), its key
/// copied to `key`; the manifest's hash is of the plaintext, read through
/// the workspace's own mapping `plain`.
fn copy_disk(
    disk: &Path,
    plain: &Path,
    path: &Path,
    from_key: &str,
    key: &str,
) -> Result<ForensicFile, ForensicsError> {
    // What the VMM wrote may still sit in the page cache of the decrypted
    // device, not yet encrypted into the file: flush it through first.
    let dec = File::open(plain).map_err(io("opening", plain))?;
    dec.sync_all().map_err(io("flushing", plain))?;
    let src = File::open(disk).map_err(io("opening", disk))?;
    let len = src.metadata().map_err(io("reading", disk))?.len();
    let out = create(path)?;
    let mut ignored = Sha256::new();
    copy_sparse(|buf, off| src.read_at(buf, off), len, &out, 0, &mut ignored)
        .map_err(io("copying", disk))?;
    out.set_len(len).map_err(io("sizing", path))?;
    out.sync_all().map_err(io("syncing", path))?;
    paddock_keys::store()?.copy_key(from_key, key)?;
    let mut hash = Sha256::new();
    copy_chunks(
        |buf, off| dec.read_at(buf, off),
        len,
        None,
        0,
        &mut hash,
        false,
    )
    .map_err(io("reading", plain))?;
    Ok(ForensicFile {
        bytes: len,
        sha256: hex(&hash.finalize()),
    })
}

fn write_small(path: &Path, bytes: &[u8]) -> Result<ForensicFile, ForensicsError> {
    let mut f = create(path)?;
    f.write_all(bytes).map_err(io("writing", path))?;
    let len = bytes.len() as u64;
    finish(path, &f, len, Sha256::new_with_prefix(bytes))
}

/// Takes the snapshot of a frozen workspace: its guest memory (read from
/// `vmm`), its disk, `audit` (its audit trail) and `network` (its network
/// record), one JSON value per line; returns the manifest, also stored
/// beside them.
pub fn snapshot(
    ws: &WorkspaceRecord,
    vmm: u32,
    audit: &[AuditEvent],
    network: &[paddock_api_types::NetworkRecord],
    taken_at: u64,
    by: &str,
) -> Result<ForensicManifest, ForensicsError> {
    let dir = snapshot_dir(&ws.id);
    if dir.exists() {
        return Err(ForensicsError::Exists(ws.id.clone()));
    }
    let tmp = Path::new(FORENSICS_DIR).join(format!(".{}.partial", ws.id));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io("creating", &tmp))?;
    let (memory_key, disk_copy_key) = (key_name(&ws.id, "memory"), key_name(&ws.id, "disk"));
    let disk = super::layout::data_dir(&ws.id).join("disk.img");
    let plain_disk = super::layout::disk_node(&ws.id);
    let disk_key = super::layout::key_name(&ws.id);
    let result = (|| {
        let memory = copy_memory(
            vmm,
            ws.memory_mib,
            &tmp.join("memory.raw"),
            &memory_key,
            &format!("paddock-fx-{}-m", ws.id),
        )?;
        let disk = copy_disk(
            &disk,
            &plain_disk,
            &tmp.join("disk.img"),
            &disk_key,
            &disk_copy_key,
        )?;
        let mut lines = Vec::new();
        for e in audit {
            lines.extend_from_slice(&serde_json::to_vec(e).unwrap_or_default());
            lines.push(b'\n');
        }
        let audit = write_small(&tmp.join("audit.jsonl"), &lines)?;
        let mut lines = Vec::new();
        for r in network {
            lines.extend_from_slice(&serde_json::to_vec(r).unwrap_or_default());
            lines.push(b'\n');
        }
        let network = write_small(&tmp.join("network.jsonl"), &lines)?;
        let manifest = ForensicManifest {
            workspace: ws.public(),
            taken_at,
            taken_by: by.to_string(),
            files: ForensicFiles {
                memory,
                disk,
                audit,
                network: Some(network),
            },
            encrypted: true,
            encryption: "memory and disk: AES-256-XTS, one key each, wrapped under the TPM-rooted key store (docs/keys.md)".to_string(),
        };
        let text = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
        write_small(&tmp.join("manifest.json"), &text)?;
        Ok(manifest)
    })();
    match result {
        Ok(manifest) => {
            std::fs::rename(&tmp, &dir).map_err(io("publishing", &dir))?;
            if let Ok(d) = File::open(FORENSICS_DIR) {
                let _ = d.sync_all();
            }
            Ok(manifest)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            if let Ok(store) = paddock_keys::store() {
                for k in [&memory_key, &disk_copy_key] {
                    if store.has_key(k) {
                        let _ = store.erase(k);
                    }
                }
            }
            Err(e)
        }
    }
}

/// Opens snapshot file `name` for reading: the manifest and audit trail as
/// they are, memory and disk decrypted through a read-only mapping that
/// goes away when the descriptor closes.
pub fn open(id: &str, name: &str) -> Result<File, ForensicsError> {
    let path = file(id, name).ok_or_else(|| {
        io("finding", &snapshot_dir(id).join(name))(std::io::Error::from(
            std::io::ErrorKind::NotFound,
        ))
    })?;
    if !matches!(name, "memory" | "disk") {
        return File::open(&path).map_err(io("opening", &path));
    }
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mapping = format!(
        "paddock-fx-{id}-r{}",
        N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    );
    Ok(paddock_keys::store()?.open_read_only(&key_name(id, name), &mapping, &path)?)
}

/// Removes a snapshot (an admin's explicit call; nothing else does): its
/// keys are erased first, so no copy of its files stays readable.
pub fn delete(id: &str) -> Result<bool, ForensicsError> {
    let dir = snapshot_dir(id);
    let store = paddock_keys::store()?;
    for file in ["memory", "disk"] {
        let k = key_name(id, file);
        if store.has_key(&k) {
            store.erase(&k)?;
        }
    }
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io("removing", &dir)(e)),
    }
}

/// Size of an open snapshot file, for the HTTP answer.
pub fn size(f: &mut File) -> std::io::Result<u64> {
    let n = f.seek(SeekFrom::End(0))?;
    f.seek(SeekFrom::Start(0))?;
    Ok(n)
}

#[cfg(test)]
#[path = "forensics_tests.rs"]
mod tests;
