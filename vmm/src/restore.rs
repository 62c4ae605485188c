//! Starting a VM from a snapshot directory instead of a kernel: the state
//! file is read and checked whole before anything is built from it, and
//! guest memory is the memory file mapped privately (snapshot/memory.rs).

use crate::config::VmConfig;
use crate::memory::GuestMemory;
use crate::snapshot::file::{decode, framed_len, FormatError, HEADER_BYTES, MAX_STATE_LEN};
use crate::snapshot::memory::{copy_memory, is_block_device, map_memory, MemoryFileError};
use crate::snapshot::state::{TransportState, VmSnapshot};
use crate::sync::lock;
use crate::virtio::mmio::MmioTransport;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The files of a snapshot directory.
pub const STATE_FILE: &str = "state";
pub const MEMORY_FILE: &str = "memory";

/// The largest XSAVE area the snapshot format holds (KVM's legacy
/// `kvm_xsave`); hosts with more (AMX) need KVM_GET_XSAVE2.
pub const XSAVE_LEGACY_SIZE: i32 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is over {MAX_STATE_LEN} bytes: not a state file")]
    TooLarge { path: PathBuf },
    #[error("{path}: {source}")]
    Format { path: PathBuf, source: FormatError },
    #[error(
        "the snapshot is of a {snapshot} MiB guest; this VM is configured with {configured} MiB"
    )]
    Memory { snapshot: u64, configured: u64 },
    #[error("the snapshot has {snapshot} vCPUs; this VM is configured with {configured}")]
    Vcpus { snapshot: usize, configured: u8 },
    #[error(
        "the snapshot has {snapshot} virtio devices, this VM {configured}: restore with the drives, vsock, net and rng it was taken with"
    )]
    DeviceCount { snapshot: usize, configured: usize },
    #[error("virtio device {index}: {message}")]
    Device { index: usize, message: String },
    #[error("serial port: {0}")]
    Serial(String),
    #[error("{path}: {source}")]
    MemoryFile {
        path: PathBuf,
        source: MemoryFileError,
    },
    #[error(
        "this host's XSAVE state is {0} bytes (AMX); snapshots hold the 4 KiB legacy area only"
    )]
    Xsave(i32),
}

/// A checked snapshot and the guest memory mapped from it.
pub struct Loaded {
    pub snapshot: VmSnapshot,
    pub mem: GuestMemory,
}

fn read_state(path: &Path) -> Result<Vec<u8>, RestoreError> {
    let read = |source| RestoreError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read)?;
    // A device holding the state is longer than the state: the header
    // says where it ends (and a device that holds no state is refused by
    // `decode` for its header, below).
    let limit = if is_block_device(&file).map_err(read)? {
        let mut header = vec![0u8; HEADER_BYTES];
        std::os::unix::fs::FileExt::read_exact_at(&file, &mut header, 0).map_err(read)?;
        framed_len(&header).unwrap_or(HEADER_BYTES as u64)
    } else {
        u64::MAX
    };
    let mut bytes = Vec::new();
    file.take(limit.min(MAX_STATE_LEN + 1))
        .read_to_end(&mut bytes)
        .map_err(read)?;
    if bytes.len() as u64 > MAX_STATE_LEN {
        return Err(RestoreError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    Ok(bytes)
}

/// Reads `dir`'s snapshot for `cfg`, refusing one that does not fit it.
pub fn load(dir: &Path, cfg: &VmConfig, xsave_size: i32) -> Result<Loaded, RestoreError> {
    if xsave_size > XSAVE_LEGACY_SIZE {
        return Err(RestoreError::Xsave(xsave_size));
    }
    let state_path = dir.join(STATE_FILE);
    let snapshot = decode(&read_state(&state_path)?).map_err(|source| RestoreError::Format {
        path: state_path.clone(),
        source,
    })?;
    if snapshot.memory_mib != cfg.memory_mib {
        return Err(RestoreError::Memory {
            snapshot: snapshot.memory_mib,
            configured: cfg.memory_mib,
        });
    }
    if snapshot.vcpus.len() != usize::from(cfg.vcpus) {
        return Err(RestoreError::Vcpus {
            snapshot: snapshot.vcpus.len(),
            configured: cfg.vcpus,
        });
    }
    let memory_path = dir.join(MEMORY_FILE);
    let memory_err = |source| RestoreError::MemoryFile {
        path: memory_path.clone(),
        source,
    };
    let file = std::fs::File::open(&memory_path).map_err(|source| RestoreError::Read {
        path: memory_path.clone(),
        source,
    })?;
    let mem = if cfg.restore_copy {
        copy_memory(&file, cfg.memory_mib, &snapshot.memory_chunks)
    } else {
        map_memory(&file, cfg.memory_mib, &snapshot.memory_chunks)
    }
    .map_err(memory_err)?;
    Ok(Loaded { snapshot, mem })
}

/// Puts each virtio transport back, in bus order, starting the devices
/// the guest had started.
pub fn restore_devices(
    transports: &[Arc<Mutex<MmioTransport>>],
    saved: &[TransportState],
) -> Result<(), RestoreError> {
    if transports.len() != saved.len() {
        return Err(RestoreError::DeviceCount {
            snapshot: saved.len(),
            configured: transports.len(),
        });
    }
    for (index, (t, s)) in transports.iter().zip(saved).enumerate() {
        lock(t)
            .restore(s)
            .map_err(|message| RestoreError::Device { index, message })?;
    }
    Ok(())
}
