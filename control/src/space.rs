//! The data partition's space: what workspaces were promised, what
//! forensic snapshots hold, and whether a new promise still fits.
//!
//! Workspace disks are sparse files, so the partition's free space says
//! little about what the workspaces already admitted may still write. A
//! create and a snapshot are admitted against what was promised instead,
//! so no tenant can fill the partition under another's disk (or under the
//! key store, whose erasure writes new files: a full partition would make
//! a workspace impossible to delete).

use super::workspace::{WorkspaceRecord, WsState};
use std::path::Path;

/// Disk kept free on the data partition, beyond every promise.
pub const RESERVE_MIB: u64 = 1024;

/// Space held on the data partition in one allocated file, given up when a
/// deletion finds the partition full: erasing a key writes files before it
/// frees any, so without it a full partition (by whatever means the
/// admission did not foresee) would make workspaces undeletable, and the
/// space could never be freed through the API.
pub const BALLAST: &str = "/data/state/ballast";
pub const BALLAST_BYTES: u64 = 32 << 20;

/// Makes sure the ballast file holds `bytes` of allocated space.
pub fn keep_ballast(path: &Path, bytes: u64) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    if let Ok(m) = std::fs::metadata(path) {
        if m.len() == bytes && m.blocks() * 512 >= bytes {
            return Ok(());
        }
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(path)?;
    let len = i64::try_from(bytes).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    // Allocated, not sparse: the point is blocks that can be given back.
    nix::fcntl::fallocate(&f, nix::fcntl::FallocateFlags::empty(), 0, len)
        .map_err(std::io::Error::from)?;
    f.sync_all()
}

/// Runs `op`; if it fails for want of space and the ballast is there,
/// gives the ballast up and runs it once more.
pub fn with_ballast<T, E>(
    ballast: &Path,
    out_of_space: impl Fn(&E) -> bool,
    mut op: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    match op() {
        Err(e) if out_of_space(&e) && std::fs::remove_file(ballast).is_ok() => {
            log::warn!(
                "the data partition is full: its ballast ({}) was given up to finish a deletion",
                ballast.display()
            );
            op()
        }
        other => other,
    }
}

/// The data partition's size and what an unprivileged writer could still
/// use of it, in MiB (zeros when it cannot be read).
fn data_fs_mib() -> (u64, u64) {
    nix::sys::statvfs::statvfs("/data")
        .map(|s| {
            let mib = |blocks: u64| (blocks * s.fragment_size()) >> 20;
            (mib(s.blocks()), mib(s.blocks_available()))
        })
        .unwrap_or((0, 0))
}

/// What the workspaces that are not lost were promised: each one's disk
/// and the room for its console log, and a paused one's memory.
pub fn promised_mib(all: &[WorkspaceRecord]) -> u64 {
    all.iter()
        .filter(|w| w.state != WsState::Lost)
        .map(|w| {
            let paused = if w.state == WsState::Paused {
                w.memory_mib
            } else {
                0
            };
            w.disk_mib + super::console::LOG_DISK_MIB + paused
        })
        .sum()
}

/// The space the files under `dir` take (allocated blocks, one level of
/// subdirectories deep: a snapshot's directory holds plain files only).
pub fn stored_mib(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fn blocks(dir: &Path, depth: u8) -> u64 {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        entries
            .flatten()
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() && depth > 0 => blocks(&e.path(), depth - 1),
                Ok(m) if m.is_file() => m.blocks() * 512,
                _ => 0,
            })
            .sum()
    }
    blocks(dir, 1).div_ceil(1 << 20)
}

/// What a forensic snapshot of `ws` can take: its memory and a copy of its
/// disk.
pub fn snapshot_mib(ws: &WorkspaceRecord) -> u64 {
    ws.memory_mib + ws.disk_mib
}

/// The partition as the admission checks see it.
#[derive(Clone, Copy, Debug)]
pub struct Partition {
    /// The filesystem's size.
    pub size_mib: u64,
    /// Free now, for an unprivileged writer.
    pub available_mib: u64,
    /// Promised to workspaces (promised_mib) plus held by snapshots.
    pub committed_mib: u64,
}

impl Partition {
    /// The data partition now, with `all` its workspaces.
    pub fn now(all: &[WorkspaceRecord]) -> Partition {
        let (size_mib, available_mib) = data_fs_mib();
        Partition {
            size_mib,
            available_mib,
            committed_mib: promised_mib(all)
                + stored_mib(Path::new(super::forensics::FORENSICS_DIR)),
        }
    }

    /// What may still be promised.
    pub fn uncommitted_mib(&self) -> u64 {
        self.size_mib
            .saturating_sub(RESERVE_MIB)
            .saturating_sub(self.committed_mib)
    }

    /// Whether `need` MiB more may be promised: within what is not
    /// promised yet, and (for what is written at once, like a snapshot)
    /// within what is free now, reserve kept.
    pub fn admits(&self, need: u64, written_now: bool) -> Result<(), String> {
        if need > self.uncommitted_mib() {
            return Err(format!(
                "{need} MiB needed, {} MiB not yet promised to workspaces or snapshots",
                self.uncommitted_mib()
            ));
        }
        let free = self.available_mib.saturating_sub(RESERVE_MIB);
        if written_now && need > free {
            return Err(format!("{need} MiB needed, {free} MiB free"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(size: u64, available: u64, committed: u64) -> Partition {
        Partition {
            size_mib: size,
            available_mib: available,
            committed_mib: committed,
        }
    }

    #[test]
    fn promises_are_admitted_within_the_size_less_reserve_and_commitments() {
        let p = part(4096, 4000, 2048);
        assert_eq!(p.uncommitted_mib(), 1024);
        assert!(p.admits(1024, false).is_ok());
        let e = p.admits(1025, false).expect_err("over");
        assert!(
            e.contains("1025 MiB needed, 1024 MiB not yet promised"),
            "{e}"
        );
    }

    #[test]
    fn what_is_written_at_once_also_needs_the_space_free_now() {
        // Sparse disks were promised little, but have grown into most of
        // the partition: a snapshot would run it full.
        let p = part(4096, 1500, 512);
        assert!(p.admits(400, true).is_ok());
        let e = p.admits(600, true).expect_err("over");
        assert!(e.contains("600 MiB needed, 476 MiB free"), "{e}");
        // A create's sparse disk is only a promise.
        assert!(p.admits(600, false).is_ok());
    }

    #[test]
    fn a_nearly_empty_or_unknown_partition_admits_nothing() {
        assert!(part(0, 0, 0).admits(1, false).is_err());
        assert!(part(512, 512, 0).admits(1, false).is_err());
    }

    #[test]
    fn stored_space_counts_files_in_snapshot_directories() {
        let dir = std::env::temp_dir().join(format!("paddock-space-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("ws_a")).expect("mkdir");
        std::fs::write(dir.join("ws_a/memory.raw"), vec![1u8; 3 << 20]).expect("write");
        std::fs::write(dir.join("top"), vec![1u8; 1 << 20]).expect("write");
        // A sparse file holds only what was written.
        let sparse = std::fs::File::create(dir.join("ws_a/disk.img")).expect("create");
        sparse.set_len(64 << 20).expect("len");
        let mib = stored_mib(&dir);
        assert!((4..=5).contains(&mib), "{mib}");
        assert_eq!(stored_mib(&dir.join("absent")), 0);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
