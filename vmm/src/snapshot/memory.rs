//! Guest memory in a snapshot: one file holding the RAM ranges back to
//! back (below the MMIO hole first), sparse where the guest never wrote.
//!
//! A restore maps that file privately: pages come in from the page cache
//! on first touch, and a guest's writes go to its own copy. VMs restored
//! from one file share every page none of them changed, and the restore
//! reads nothing of the file up front.

use crate::memory::{ram_ranges, GuestMemory};
use std::fs::File;
use std::os::unix::fs::FileExt;
use vm_memory::mmap::{GuestRegionMmap, MmapRegion};
use vm_memory::{Bytes, FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

const PAGE: usize = 4096;
const CHUNK: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum MemoryFileError {
    #[error("reading guest memory at {addr:#x}: {source}")]
    Read {
        addr: u64,
        source: vm_memory::GuestMemoryError,
    },
    #[error("writing the memory file: {0}")]
    Write(std::io::Error),
    #[error("the memory file is {found} bytes; a {mib} MiB guest needs exactly {wanted}")]
    Size { found: u64, wanted: u64, mib: u64 },
    #[error("reading the memory file's size: {0}")]
    Stat(std::io::Error),
    #[error("mapping the memory file: {0}")]
    Map(String),
}

/// The (offset, length) runs of a region that may hold data. A shared
/// memfd region answers from its file's extents: reading a hole through
/// the mapping would allocate it, charging the VM its whole memory size
/// for one snapshot. A private mapping (a restored VM) is read whole: its
/// unwritten pages come from the page cache and cost nothing new.
fn data_runs(region: &GuestRegionMmap) -> Vec<(u64, u64)> {
    use std::os::fd::AsRawFd;
    let len = region.len();
    let whole = vec![(0, len)];
    let Some(fo) = region.file_offset() else {
        return whole;
    };
    if region.flags() & libc::MAP_SHARED == 0 {
        return whole;
    }
    let fd = fo.file().as_raw_fd();
    let base = fo.start();
    let mut runs = Vec::new();
    let mut pos = base;
    while pos < base + len {
        // SAFETY: lseek on a descriptor the region owns; it moves only
        // that descriptor's offset, which nothing else uses.
        let data = unsafe { libc::lseek(fd, pos as libc::off_t, libc::SEEK_DATA) };
        if data < 0 {
            // ENXIO: no data after `pos`; anything else: read it all.
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO) {
                break;
            }
            return whole;
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        if hole < 0 {
            return whole;
        }
        let (start, end) = (data as u64, (hole as u64).min(base + len));
        if end > start {
            runs.push((start - base, end - start));
        }
        pos = end.max(start + 1);
    }
    runs
}

/// Writes all of guest RAM into `out`, emptied first, skipping what was
/// never written and pages that are all zero so the file stays sparse.
/// Returns the bytes written.
pub fn write_memory(mem: &GuestMemory, out: &File) -> Result<u64, MemoryFileError> {
    out.set_len(0).map_err(MemoryFileError::Write)?;
    let mut buf = vec![0u8; CHUNK];
    let mut file_offset = 0u64;
    let mut written = 0u64;
    for region in mem.iter() {
        let base = region.start_addr().0;
        for (run_start, run_len) in data_runs(region) {
            let mut done = 0u64;
            while done < run_len {
                let n = (run_len - done).min(CHUNK as u64) as usize;
                let at = run_start + done;
                let addr = base + at;
                mem.read_slice(&mut buf[..n], GuestAddress(addr))
                    .map_err(|source| MemoryFileError::Read { addr, source })?;
                let mut page = 0;
                while page < n {
                    // A run of non-zero pages goes out in one write.
                    let start = page;
                    while page < n && buf[page..(page + PAGE).min(n)].iter().any(|b| *b != 0) {
                        page += PAGE;
                    }
                    let end = page.min(n);
                    if end > start {
                        out.write_all_at(&buf[start..end], file_offset + at + start as u64)
                            .map_err(MemoryFileError::Write)?;
                        written += (end - start) as u64;
                    }
                    page += PAGE;
                }
                done += n as u64;
            }
        }
        file_offset += region.len();
    }
    out.set_len(file_offset).map_err(MemoryFileError::Write)?;
    Ok(written)
}

/// Guest RAM of `memory_mib` MiB as private mappings of `file`.
pub fn map_memory(file: &File, memory_mib: u64) -> Result<GuestMemory, MemoryFileError> {
    let wanted = memory_mib << 20;
    let found = file.metadata().map_err(MemoryFileError::Stat)?.len();
    if found != wanted {
        return Err(MemoryFileError::Size {
            found,
            wanted,
            mib: memory_mib,
        });
    }
    let mut regions = Vec::new();
    let mut offset = 0u64;
    for (base, len) in ram_ranges(wanted) {
        let handle = file
            .try_clone()
            .map_err(|e| MemoryFileError::Map(e.to_string()))?;
        let mapping = MmapRegion::build(
            Some(FileOffset::new(handle, offset)),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_NORESERVE,
        )
        .map_err(|e| MemoryFileError::Map(e.to_string()))?;
        let region = GuestRegionMmap::new(mapping, base)
            .ok_or_else(|| MemoryFileError::Map(format!("region at {:#x} overflows", base.0)))?;
        regions.push(region);
        offset += len as u64;
    }
    GuestMemory::from_regions(regions).map_err(|e| MemoryFileError::Map(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::create_guest_memory;

    #[test]
    fn memory_round_trips_through_a_sparse_file_and_stays_private() {
        let mem = create_guest_memory(32).expect("memory");
        mem.write_slice(b"first page", GuestAddress(0)).expect("w");
        mem.write_slice(b"far away", GuestAddress(20 << 20))
            .expect("w");
        let dir = std::env::temp_dir().join(format!("paddock-memfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("memory");
        let out = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .expect("create");
        // Stale bytes where the guest has zeros must not survive.
        out.write_all_at(&[7u8; 4096], 8 << 20).expect("stale");
        let written = write_memory(&mem, &out).expect("write");
        assert_eq!(written, 2 * PAGE as u64, "only the two touched pages");
        assert_eq!(out.metadata().expect("meta").len(), 32 << 20);
        drop(out);

        let file = File::open(&path).expect("open");
        let a = map_memory(&file, 32).expect("map");
        let b = map_memory(&file, 32).expect("map");
        let mut got = [0u8; 10];
        a.read_slice(&mut got, GuestAddress(0)).expect("r");
        assert_eq!(&got, b"first page");
        // A write to one restored guest is its own.
        a.write_slice(b"changed!!!", GuestAddress(0)).expect("w");
        b.read_slice(&mut got, GuestAddress(0)).expect("r");
        assert_eq!(&got, b"first page");
        let bytes = std::fs::read(&path).expect("read");
        assert_eq!(bytes[..10], *b"first page");
        assert!(
            bytes[8 << 20..(8 << 20) + 4096].iter().all(|b| *b == 0),
            "stale data kept"
        );

        assert!(matches!(
            map_memory(&file, 64),
            Err(MemoryFileError::Size { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
