//! Guest RAM: shared mappings of memfds, laid around the 32-bit MMIO hole.
//!
//! Each region is a memfd named after its guest-physical base address
//! (`paddock-guest-ram@0x...`), so the host can find the guest's memory in
//! the VMM's `/proc/<pid>/maps` and copy it for a forensic snapshot while
//! the VM is frozen, without asking the VMM (which may be the compromised
//! party).

use crate::arch::layout::{MMIO_HOLE_END, MMIO_HOLE_START};
use std::os::fd::FromRawFd;
use vm_memory::{FileOffset, GuestAddress, GuestMemoryMmap};

/// The start of every guest RAM memfd's name; the host looks for it.
pub const RAM_NAME_PREFIX: &str = "paddock-guest-ram@";

pub type GuestMemory = GuestMemoryMmap<()>;

#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("cannot map {size_mib} MiB of guest memory: {source}")]
    Map {
        size_mib: u64,
        source: vm_memory::mmap::FromRangesError,
    },
    #[error("cannot create {size_mib} MiB of guest memory: {source}")]
    Memfd {
        size_mib: u64,
        source: std::io::Error,
    },
}

/// A memfd of `len` bytes for the region at guest address `base`.
fn ram_file(base: GuestAddress, len: usize) -> std::io::Result<std::fs::File> {
    let name = std::ffi::CString::new(format!("{RAM_NAME_PREFIX}{:#x}", base.0))
        .map_err(std::io::Error::other)?;
    // SAFETY: memfd_create with a NUL-terminated name; the descriptor it
    // returns is owned by the File made from it below.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nothing else owns.
    let file = unsafe { std::fs::File::from_raw_fd(fd) };
    file.set_len(len as u64)?;
    Ok(file)
}

/// The (start, size) ranges of guest RAM for `size` bytes: below the MMIO
/// hole first, the rest from 4 GiB.
pub fn ram_ranges(size: u64) -> Vec<(GuestAddress, usize)> {
    let low = size.min(MMIO_HOLE_START);
    let mut ranges = vec![(GuestAddress(0), low as usize)];
    if size > low {
        ranges.push((GuestAddress(MMIO_HOLE_END), (size - low) as usize));
    }
    ranges
}

pub fn create_guest_memory(size_mib: u64) -> Result<GuestMemory, MemoryError> {
    let size = size_mib << 20;
    let mut regions = Vec::new();
    for (base, len) in ram_ranges(size) {
        let file = ram_file(base, len).map_err(|source| MemoryError::Memfd { size_mib, source })?;
        regions.push((base, len, Some(FileOffset::new(file, 0))));
    }
    GuestMemoryMmap::from_ranges_with_files(regions)
        .map_err(|source| MemoryError::Map { size_mib, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_are_named_memfds_the_host_can_find() {
        use vm_memory::{Bytes, GuestMemoryBackend, GuestMemoryRegion};
        let mem = create_guest_memory(16).expect("memory");
        mem.write_slice(b"marker", GuestAddress(0x1234))
            .expect("write");
        let region = mem.iter().next().expect("a region");
        let host = region
            .get_host_address(vm_memory::MemoryRegionAddress(0))
            .expect("mapped") as usize;
        let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
        let line = maps
            .lines()
            .find(|l| l.starts_with(&format!("{host:x}-")))
            .expect("the region in maps");
        assert!(line.contains("/memfd:paddock-guest-ram@0x0"), "{line}");
    }

    #[test]
    fn small_memory_is_one_range() {
        assert_eq!(ram_ranges(512 << 20), vec![(GuestAddress(0), 512 << 20)]);
    }

    #[test]
    fn large_memory_skips_the_mmio_hole() {
        let r = ram_ranges(4 << 30);
        assert_eq!(r[0], (GuestAddress(0), MMIO_HOLE_START as usize));
        assert_eq!(r[1], (GuestAddress(MMIO_HOLE_END), (1 << 30) as usize));
    }
}
