//! Guest memory in a snapshot: one file holding the RAM ranges back to
//! back (below the MMIO hole first), in chunks of `CHUNK` bytes. The state
//! file lists which chunks the file holds (`chunk_words`); a chunk that was
//! all zeros is not written at all.
//!
//! A restore maps that file privately: pages come in from the page cache
//! on first touch, and a guest's writes go to its own copy. VMs restored
//! from one file share every page none of them changed, and the restore
//! reads nothing of the file up front. Chunks the file does not hold are
//! mapped as fresh anonymous memory, never read from the file.
//!
//! The file may be a regular file (sparse: zero pages inside a written
//! chunk are holes) or a block device, such as the dm-crypt mapping the
//! appliance keeps a paused workspace on: a device's unwritten sectors are
//! not zeros (decrypted, they are noise), so a chunk goes to a device
//! whole, and the list of chunks is what makes the rest read as zeros.

use crate::memory::{ram_ranges, GuestMemory};
use std::fs::File;
use std::os::unix::fs::FileExt;
use vm_memory::mmap::{GuestRegionMmap, MmapRegion};
use vm_memory::{Bytes, FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

const PAGE: usize = 4096;
/// The unit the state file's chunk list counts in. Large enough that the
/// list and the restore's mappings stay few (a 4 GiB guest has 2048 at
/// most), small enough that an idle guest's memory file stays small.
pub const CHUNK: u64 = 2 << 20;

/// How many 64-bit words the chunk list of a `memory_mib` guest has.
pub fn chunk_words(memory_mib: u64) -> usize {
    ((memory_mib << 20).div_ceil(CHUNK)).div_ceil(64) as usize
}

fn has_chunk(present: &[u64], chunk: u64) -> bool {
    present
        .get((chunk / 64) as usize)
        .is_some_and(|w| w & (1 << (chunk % 64)) != 0)
}

#[derive(Debug, thiserror::Error)]
pub enum MemoryFileError {
    #[error("reading guest memory at {addr:#x}: {source}")]
    Read {
        addr: u64,
        source: vm_memory::GuestMemoryError,
    },
    #[error("writing the memory file: {0}")]
    Write(std::io::Error),
    #[error("reading the memory file: {0}")]
    ReadFile(std::io::Error),
    #[error("the memory file is {found} bytes; a {mib} MiB guest needs exactly {wanted}")]
    Size { found: u64, wanted: u64, mib: u64 },
    #[error("the memory device is {found} bytes; a {mib} MiB guest needs at least {wanted}")]
    DeviceSize { found: u64, wanted: u64, mib: u64 },
    #[error("reading the memory file's size: {0}")]
    Stat(std::io::Error),
    #[error("mapping the memory file: {0}")]
    Map(String),
    #[error("the chunk list has {found} words; a {mib} MiB guest's has {wanted}")]
    ChunkList {
        found: usize,
        wanted: usize,
        mib: u64,
    },
}

/// Whether `f` is a block device (its unwritten parts are not zeros).
pub fn is_block_device(f: &File) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: a zeroed `stat` is a valid out-buffer; fstat fills it for a
    // descriptor `f` keeps open.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // The raw fstat system call: glibc's fstat() is newfstatat(fd, "",
    // AT_EMPTY_PATH), a call that can name paths, which the control
    // thread's filter does not allow.
    // SAFETY: fstat writes one `struct stat` (the kernel's layout, which
    // libc::stat is on x86_64) into `st`, which lives across the call.
    if unsafe { libc::syscall(libc::SYS_fstat, f.as_raw_fd(), &mut st as *mut libc::stat) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st.st_mode & libc::S_IFMT == libc::S_IFBLK)
}

/// The bytes `f` holds: a block device's size, a file's length.
fn size_of(f: &File) -> std::io::Result<u64> {
    let mut f = f;
    std::io::Seek::seek(&mut f, std::io::SeekFrom::End(0))
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

/// What `write_memory` wrote: the chunk list the state file keeps, and
/// how many bytes went out.
pub struct Written {
    pub chunks: Vec<u64>,
    pub bytes: u64,
}

/// Writes all of guest RAM into `out` (a file, emptied first, or a block
/// device), chunk by chunk, leaving out chunks that are all zeros; inside a
/// chunk written to a file, zero pages are skipped too so the file stays
/// sparse.
pub fn write_memory(mem: &GuestMemory, out: &File) -> Result<Written, MemoryFileError> {
    let device = is_block_device(out).map_err(MemoryFileError::Stat)?;
    write_into(mem, out, device)
}

/// `write_memory`, told whether `out`'s unwritten bytes read as zeros
/// (a file) or not (`device`).
fn write_into(mem: &GuestMemory, out: &File, device: bool) -> Result<Written, MemoryFileError> {
    let total: u64 = mem.iter().map(|r| r.len()).sum();
    let mib = total >> 20;
    if device {
        let found = size_of(out).map_err(MemoryFileError::Stat)?;
        if found < total {
            return Err(MemoryFileError::DeviceSize {
                found,
                wanted: total,
                mib,
            });
        }
    } else {
        out.set_len(0).map_err(MemoryFileError::Write)?;
    }
    let mut chunks = vec![0u64; chunk_words(mib)];
    let mut buf = vec![0u8; CHUNK as usize];
    let mut file_offset = 0u64;
    let mut bytes = 0u64;
    for region in mem.iter() {
        let base = region.start_addr().0;
        let len = region.len();
        let runs = data_runs(region);
        let mut at = 0u64;
        while at < len {
            let n = (len - at).min(CHUNK);
            let chunk_buf = &mut buf[..n as usize];
            chunk_buf.fill(0);
            // Only the parts the memory's file holds are read: reading a
            // hole of a shared memfd through its mapping would allocate it.
            let mut any = false;
            for &(rs, rl) in &runs {
                let (s, e) = (rs.max(at), (rs + rl).min(at + n));
                if s < e {
                    let addr = base + s;
                    mem.read_slice(
                        &mut chunk_buf[(s - at) as usize..(e - at) as usize],
                        GuestAddress(addr),
                    )
                    .map_err(|source| MemoryFileError::Read { addr, source })?;
                    any = true;
                }
            }
            if any && chunk_buf.iter().any(|b| *b != 0) {
                let chunk = (file_offset + at) / CHUNK;
                chunks[(chunk / 64) as usize] |= 1 << (chunk % 64);
                bytes += write_chunk(out, chunk_buf, file_offset + at, device)?;
            }
            at += n;
        }
        file_offset += len;
    }
    if !device {
        out.set_len(file_offset).map_err(MemoryFileError::Write)?;
    }
    Ok(Written { chunks, bytes })
}

/// One chunk at `at`: whole to a device, its non-zero pages to a file.
fn write_chunk(out: &File, chunk: &[u8], at: u64, device: bool) -> Result<u64, MemoryFileError> {
    if device {
        out.write_all_at(chunk, at)
            .map_err(MemoryFileError::Write)?;
        return Ok(chunk.len() as u64);
    }
    let n = chunk.len();
    let mut written = 0;
    let mut page = 0;
    while page < n {
        // A run of non-zero pages goes out in one write.
        let start = page;
        while page < n && chunk[page..(page + PAGE).min(n)].iter().any(|b| *b != 0) {
            page += PAGE;
        }
        let end = page.min(n);
        if end > start {
            out.write_all_at(&chunk[start..end], at + start as u64)
                .map_err(MemoryFileError::Write)?;
            written += (end - start) as u64;
        }
        page += PAGE;
    }
    Ok(written)
}

/// Checks that `file` can hold a `memory_mib` guest with the chunk list
/// `present`.
fn check_source(file: &File, memory_mib: u64, present: &[u64]) -> Result<(), MemoryFileError> {
    let wanted = memory_mib << 20;
    if present.len() != chunk_words(memory_mib) {
        return Err(MemoryFileError::ChunkList {
            found: present.len(),
            wanted: chunk_words(memory_mib),
            mib: memory_mib,
        });
    }
    let found = size_of(file).map_err(MemoryFileError::Stat)?;
    if is_block_device(file).map_err(MemoryFileError::Stat)? {
        if found < wanted {
            return Err(MemoryFileError::DeviceSize {
                found,
                wanted,
                mib: memory_mib,
            });
        }
    } else if found != wanted {
        return Err(MemoryFileError::Size {
            found,
            wanted,
            mib: memory_mib,
        });
    }
    Ok(())
}

/// Fresh guest RAM of `memory_mib` MiB (memfds, as at boot) holding the
/// chunks of `file` that `present` lists; the rest stays zero, and
/// nothing of `file` is mapped or kept open.
pub fn copy_memory(
    file: &File,
    memory_mib: u64,
    present: &[u64],
) -> Result<GuestMemory, MemoryFileError> {
    check_source(file, memory_mib, present)?;
    let mem = crate::memory::create_guest_memory(memory_mib)
        .map_err(|e| MemoryFileError::Map(e.to_string()))?;
    let mut buf = vec![0u8; CHUNK as usize];
    let mut offset = 0u64;
    for region in mem.iter() {
        let base = region.start_addr().0;
        let len = region.len();
        let mut at = 0u64;
        while at < len {
            let n = (len - at).min(CHUNK);
            if has_chunk(present, (offset + at) / CHUNK) {
                let chunk = &mut buf[..n as usize];
                file.read_exact_at(chunk, offset + at)
                    .map_err(MemoryFileError::ReadFile)?;
                let addr = base + at;
                mem.write_slice(chunk, GuestAddress(addr))
                    .map_err(|source| MemoryFileError::Read { addr, source })?;
            }
            at += n;
        }
        offset += len;
    }
    Ok(mem)
}

/// Guest RAM of `memory_mib` MiB as private mappings of `file`, the chunks
/// `present` does not list as fresh anonymous memory.
pub fn map_memory(
    file: &File,
    memory_mib: u64,
    present: &[u64],
) -> Result<GuestMemory, MemoryFileError> {
    check_source(file, memory_mib, present)?;
    let wanted = memory_mib << 20;
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
        let mut at = 0u64;
        while at < len as u64 {
            let n = (len as u64 - at).min(CHUNK);
            if !has_chunk(present, (offset + at) / CHUNK) {
                // SAFETY: the range lies inside `mapping`, which this
                // function made and nothing else refers to yet; MAP_FIXED
                // replaces those pages of it with zero-filled anonymous
                // ones, and the region's unmap later covers them too.
                let p = unsafe {
                    libc::mmap(
                        mapping.as_ptr().add(at as usize).cast(),
                        n as usize,
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_PRIVATE
                            | libc::MAP_ANONYMOUS
                            | libc::MAP_FIXED
                            | libc::MAP_NORESERVE,
                        -1,
                        0,
                    )
                };
                if p == libc::MAP_FAILED {
                    return Err(MemoryFileError::Map(format!(
                        "an empty chunk at {:#x}: {}",
                        offset + at,
                        std::io::Error::last_os_error()
                    )));
                }
            }
            at += n;
        }
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
        assert_eq!(written.bytes, 2 * PAGE as u64, "only the two touched pages");
        // Chunks 0 and 10 (20 MiB / 2 MiB) hold data; 16 chunks in all.
        assert_eq!(written.chunks, vec![1 | 1 << 10]);
        assert_eq!(out.metadata().expect("meta").len(), 32 << 20);
        drop(out);

        let file = File::open(&path).expect("open");
        let a = map_memory(&file, 32, &written.chunks).expect("map");
        let b = map_memory(&file, 32, &written.chunks).expect("map");
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
            map_memory(&file, 64, &[0]),
            Err(MemoryFileError::Size { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A device's unwritten bytes are noise: the zero pages of a chunk
    /// that has data must overwrite it, and a chunk left out must read as
    /// zeros after a restore whatever the device holds there.
    #[test]
    fn on_a_device_chunks_go_whole_and_missing_chunks_read_as_zeros() {
        let mem = create_guest_memory(16).expect("memory");
        mem.write_slice(b"data", GuestAddress(4 << 20)).expect("w");
        let dir = std::env::temp_dir().join(format!("paddock-memdev-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("memory");
        std::fs::write(&path, vec![0xaa; 16 << 20]).expect("noise");
        let out = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .expect("open");
        let written = write_into(&mem, &out, true).expect("write");
        assert_eq!(written.chunks, vec![1 << 2], "only chunk 2 (4 MiB)");
        assert_eq!(written.bytes, CHUNK, "a device gets the chunk whole");
        drop(out);
        let file = File::open(&path).expect("open");
        let back = map_memory(&file, 16, &written.chunks).expect("map");
        let mut got = [0u8; 8];
        back.read_slice(&mut got, GuestAddress(4 << 20)).expect("r");
        assert_eq!(
            &got, b"data\0\0\0\0",
            "the chunk's zero bytes overwrote the noise"
        );
        for addr in [0u64, (4 << 20) + 8192, 8 << 20, (16 << 20) - 8] {
            back.read_slice(&mut got, GuestAddress(addr)).expect("r");
            assert_eq!(got, [0u8; 8], "zeros at {addr:#x}");
        }
        // Copied into fresh RAM instead: the same bytes, and no mapping of
        // the file is left (guest RAM is the memfds a boot makes).
        let copied = copy_memory(&file, 16, &written.chunks).expect("copy");
        for (addr, want) in [(4u64 << 20, *b"data\0\0\0\0"), (8 << 20, [0u8; 8])] {
            copied.read_slice(&mut got, GuestAddress(addr)).expect("r");
            assert_eq!(got, want, "at {addr:#x}");
        }
        let region = copied.iter().next().expect("a region");
        assert!(region.file_offset().is_some() && region.flags() & libc::MAP_SHARED != 0);
        // A chunk list of the wrong length is refused, not guessed at.
        assert!(matches!(
            map_memory(&file, 16, &[]),
            Err(MemoryFileError::ChunkList { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
