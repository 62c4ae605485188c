//! Loading the kernel, initramfs and command line, and writing what the
//! kernel reads at entry: `boot_params` (64-bit protocol) or `hvm_start_info` (PVH).

use super::layout::*;
use super::regs::BootMode;
use crate::memory::GuestMemory;
use linux_loader::bootparam::{boot_e820_entry, boot_params};
use linux_loader::cmdline::Cmdline;
use linux_loader::loader::bzimage::BzImage;
use linux_loader::loader::elf::{Elf, PvhBootCapability};
use linux_loader::loader::{load_cmdline, KernelLoader, KernelLoaderResult};
use linux_loader::start_info::{hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("kernel: cannot open {path}: {source}")]
    OpenKernel {
        path: String,
        source: std::io::Error,
    },
    #[error("kernel: {path} is neither an ELF vmlinux nor a bzImage")]
    UnknownKernelFormat { path: String },
    #[error("kernel: loading {path}: {source}")]
    LoadKernel {
        path: String,
        source: linux_loader::loader::Error,
    },
    #[error("initramfs: cannot open {path}: {source}")]
    OpenInitrd {
        path: String,
        source: std::io::Error,
    },
    #[error("initramfs: {path} ({size} bytes) does not fit in guest memory above the kernel")]
    InitrdTooBig { path: String, size: u64 },
    #[error("initramfs: reading {path} into guest memory: {source}")]
    LoadInitrd {
        path: String,
        source: vm_memory::GuestMemoryError,
    },
    #[error("cmdline: {0}")]
    Cmdline(String),
    #[error("writing boot structures into guest memory: {0}")]
    GuestMemory(#[from] vm_memory::GuestMemoryError),
}

/// What kind of image a kernel file is, judged from its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelFormat {
    Elf,
    BzImage,
}

/// Tells an ELF vmlinux from a bzImage; `None` for anything else.
pub fn detect_kernel_format(file: &mut File) -> std::io::Result<Option<KernelFormat>> {
    let mut head = [0u8; 0x206];
    file.seek(SeekFrom::Start(0))?;
    let mut read = 0;
    while read < head.len() {
        match file.read(&mut head[read..])? {
            0 => break,
            n => read += n,
        }
    }
    file.seek(SeekFrom::Start(0))?;
    if read >= 4 && head[..4] == *b"\x7fELF" {
        return Ok(Some(KernelFormat::Elf));
    }
    if read >= 0x206 && head[0x202..0x206] == *b"HdrS" {
        return Ok(Some(KernelFormat::BzImage));
    }
    Ok(None)
}

/// Where the boot vCPU starts and how.
#[derive(Clone, Copy, Debug)]
pub struct BootEntry {
    pub mode: BootMode,
    pub entry: u64,
}

struct Initrd {
    addr: GuestAddress,
    size: u64,
}

const E820_RAM: u32 = 1;
const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
const KERNEL_HDR_MAGIC: u32 = 0x5372_6448;
const KERNEL_LOADER_OTHER: u8 = 0xff;
const KERNEL_MIN_ALIGNMENT_BYTES: u32 = 0x0100_0000;
const XEN_HVM_START_MAGIC_VALUE: u32 = 0x336e_c578;
const PAGE_SIZE: u64 = 4096;

/// RAM ranges as the guest's firmware map lists them.
fn ram_map(mem: &GuestMemory) -> Vec<(u64, u64)> {
    let mut map = vec![(0, EBDA_START)];
    for region in mem.iter() {
        let start = region.start_addr().raw_value().max(HIMEM_START);
        let end = region.start_addr().raw_value() + region.len();
        if end > start {
            map.push((start, end - start));
        }
    }
    map
}

/// Loads everything and writes the entry structures. `cmdline` is complete.
pub fn load_boot_image(
    mem: &GuestMemory,
    kernel_path: &Path,
    initrd_path: Option<&Path>,
    cmdline: &Cmdline,
) -> Result<BootEntry, BootError> {
    let kpath = kernel_path.display().to_string();
    let mut kernel = File::open(kernel_path).map_err(|source| BootError::OpenKernel {
        path: kpath.clone(),
        source,
    })?;
    let format = detect_kernel_format(&mut kernel)
        .map_err(|source| BootError::OpenKernel {
            path: kpath.clone(),
            source,
        })?
        .ok_or_else(|| BootError::UnknownKernelFormat {
            path: kpath.clone(),
        })?;
    let load_err = |source| BootError::LoadKernel {
        path: kpath.clone(),
        source,
    };
    let highmem = Some(GuestAddress(HIMEM_START));
    let result: KernelLoaderResult = match format {
        KernelFormat::Elf => Elf::load(mem, None, &mut kernel, highmem).map_err(load_err)?,
        KernelFormat::BzImage => {
            BzImage::load(mem, None, &mut kernel, highmem).map_err(load_err)?
        }
    };

    load_cmdline(mem, GuestAddress(CMDLINE_START), cmdline)
        .map_err(|e| BootError::Cmdline(e.to_string()))?;
    let cmdline_len = cmdline
        .as_cstring()
        .map_err(|e| BootError::Cmdline(e.to_string()))?
        .as_bytes_with_nul()
        .len();

    let initrd_max = result
        .setup_header
        .map(|h| u64::from(h.initrd_addr_max))
        .filter(|m| *m != 0)
        .unwrap_or(MMIO_HOLE_START - 1);
    let initrd = match initrd_path {
        Some(path) => Some(load_initrd(mem, path, result.kernel_end, initrd_max)?),
        None => None,
    };

    match (format, result.pvh_boot_cap) {
        (KernelFormat::Elf, PvhBootCapability::PvhEntryPresent(entry)) => {
            write_pvh_info(mem, initrd.as_ref())?;
            Ok(BootEntry {
                mode: BootMode::Pvh,
                entry: entry.raw_value(),
            })
        }
        _ => {
            write_boot_params(mem, &result, initrd.as_ref(), cmdline_len)?;
            let entry = match format {
                // The 64-bit entry point sits 0x200 into the protected-mode code.
                KernelFormat::BzImage => result.kernel_load.raw_value() + 0x200,
                KernelFormat::Elf => result.kernel_load.raw_value(),
            };
            Ok(BootEntry {
                mode: BootMode::Linux64,
                entry,
            })
        }
    }
}

/// Places the initramfs page-aligned at the top of low RAM, below `max_addr`.
fn load_initrd(
    mem: &GuestMemory,
    path: &Path,
    kernel_end: u64,
    max_addr: u64,
) -> Result<Initrd, BootError> {
    let p = path.display().to_string();
    let mut file = File::open(path).map_err(|source| BootError::OpenInitrd {
        path: p.clone(),
        source,
    })?;
    let size = file
        .metadata()
        .map_err(|source| BootError::OpenInitrd {
            path: p.clone(),
            source,
        })?
        .len();
    let low_end = mem
        .iter()
        .next()
        .map(|r| r.start_addr().raw_value() + r.len())
        .unwrap_or(0)
        .min(max_addr.saturating_add(1));
    let too_big = || BootError::InitrdTooBig {
        path: p.clone(),
        size,
    };
    let start = low_end.checked_sub(size).ok_or_else(too_big)? & !(PAGE_SIZE - 1);
    if start < kernel_end.max(HIMEM_START) {
        return Err(too_big());
    }
    let len = usize::try_from(size).map_err(|_| too_big())?;
    mem.read_exact_volatile_from(GuestAddress(start), &mut file, len)
        .map_err(|source| BootError::LoadInitrd {
            path: p.clone(),
            source,
        })?;
    Ok(Initrd {
        addr: GuestAddress(start),
        size,
    })
}

fn write_boot_params(
    mem: &GuestMemory,
    result: &KernelLoaderResult,
    initrd: Option<&Initrd>,
    cmdline_len: usize,
) -> Result<(), BootError> {
    let mut params = boot_params::default();
    if let Some(hdr) = result.setup_header {
        params.hdr = hdr;
    }
    params.hdr.type_of_loader = KERNEL_LOADER_OTHER;
    params.hdr.boot_flag = KERNEL_BOOT_FLAG_MAGIC;
    params.hdr.header = KERNEL_HDR_MAGIC;
    params.hdr.cmd_line_ptr = CMDLINE_START as u32;
    params.hdr.cmdline_size = cmdline_len as u32;
    if params.hdr.kernel_alignment == 0 {
        params.hdr.kernel_alignment = KERNEL_MIN_ALIGNMENT_BYTES;
    }
    if let Some(initrd) = initrd {
        params.hdr.ramdisk_image = initrd.addr.raw_value() as u32;
        params.hdr.ramdisk_size = initrd.size as u32;
    }
    let map = ram_map(mem);
    for (i, (addr, size)) in map.iter().enumerate() {
        params.e820_table[i] = boot_e820_entry {
            addr: *addr,
            size: *size,
            r#type: E820_RAM,
        };
    }
    params.e820_entries = map.len() as u8;
    mem.write_obj(params, GuestAddress(ZERO_PAGE_START))?;
    Ok(())
}

fn write_pvh_info(mem: &GuestMemory, initrd: Option<&Initrd>) -> Result<(), BootError> {
    let map = ram_map(mem);
    let info_size = std::mem::size_of::<hvm_start_info>() as u64;
    let memmap_addr = PVH_INFO_START + info_size;
    let entry_size = std::mem::size_of::<hvm_memmap_table_entry>() as u64;
    for (i, (addr, size)) in map.iter().enumerate() {
        let entry = hvm_memmap_table_entry {
            addr: *addr,
            size: *size,
            type_: E820_RAM,
            reserved: 0,
        };
        mem.write_obj(entry, GuestAddress(memmap_addr + i as u64 * entry_size))?;
    }
    let modlist_addr = memmap_addr + map.len() as u64 * entry_size;
    let mut info = hvm_start_info {
        magic: XEN_HVM_START_MAGIC_VALUE,
        version: 1,
        cmdline_paddr: CMDLINE_START,
        memmap_paddr: memmap_addr,
        memmap_entries: map.len() as u32,
        ..Default::default()
    };
    if let Some(initrd) = initrd {
        let module = hvm_modlist_entry {
            paddr: initrd.addr.raw_value(),
            size: initrd.size,
            ..Default::default()
        };
        mem.write_obj(module, GuestAddress(modlist_addr))?;
        info.nr_modules = 1;
        info.modlist_paddr = modlist_addr;
    }
    mem.write_obj(info, GuestAddress(PVH_INFO_START))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn temp_file(bytes: &[u8]) -> File {
        let mut f = tempfile_in_target();
        f.write_all(bytes).expect("write");
        f
    }

    fn tempfile_in_target() -> File {
        let dir = std::env::temp_dir();
        let path = dir.join(format!(
            "paddock-boot-test-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .expect("create");
        let _ = std::fs::remove_file(&path);
        f
    }

    fn rand_suffix() -> u64 {
        let mut b = [0u8; 8];
        crate::entropy::fill(&mut b).expect("random");
        u64::from_le_bytes(b)
    }

    #[test]
    fn detects_formats() {
        let mut elf = temp_file(b"\x7fELF\x02\x01\x01");
        assert_eq!(
            detect_kernel_format(&mut elf).expect("io"),
            Some(KernelFormat::Elf)
        );
        let mut bz = vec![0u8; 0x300];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        let mut bz = temp_file(&bz);
        assert_eq!(
            detect_kernel_format(&mut bz).expect("io"),
            Some(KernelFormat::BzImage)
        );
        let mut junk = temp_file(b"#!/bin/sh\necho not a kernel\n");
        assert_eq!(detect_kernel_format(&mut junk).expect("io"), None);
        let mut empty = temp_file(b"");
        assert_eq!(detect_kernel_format(&mut empty).expect("io"), None);
    }

    #[test]
    fn ram_map_skips_legacy_hole_and_mmio_hole() {
        let mem = crate::memory::create_guest_memory(64).expect("mem");
        assert_eq!(
            ram_map(&mem),
            vec![(0, EBDA_START), (HIMEM_START, (64 << 20) - HIMEM_START)]
        );
    }
}
