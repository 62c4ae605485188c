//! Pausing a running VM, writing it to a snapshot, and (in vm.rs) starting
//! a VM from one.
//!
//! A snapshot is two files the host chooses and hands over as open
//! descriptors, so the jailed VMM writes nothing by name: the state file
//! (`file` and `state`: vCPUs, interrupt controllers, clocks, devices) and
//! the memory file (`memory`). Connections of the guest's vsock do not
//! survive a restore: the restored device tells the guest's driver with a
//! transport reset, and the host dials again.

pub mod file;
pub mod kvm;
pub mod memory;
pub mod state;

use crate::devices::legacy::SerialConsole;
use crate::memory::GuestMemory;
use crate::pause::{PauseError, PauseGate};
use crate::sync::lock;
use crate::virtio::mmio::MmioTransport;
use kvm_ioctls::VmFd;
use std::fs::File;
use std::io::Write;
use std::sync::{Arc, Mutex};

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Pause(#[from] PauseError),
    #[error("VM state: {0}")]
    Kvm(#[from] kvm::KvmStateError),
    #[error("device {index}: {message}")]
    Device { index: usize, message: String },
    #[error("encoding the state: {0}")]
    Format(#[from] file::FormatError),
    #[error("writing the state file: {0}")]
    WriteState(std::io::Error),
    #[error(transparent)]
    Memory(#[from] memory::MemoryFileError),
    #[error("snapshots are not supported here: {0}")]
    Unsupported(&'static str),
}

/// What the control thread needs to pause, save and resume the VM.
pub struct Machine {
    pub vm: Arc<VmFd>,
    pub gate: Arc<PauseGate>,
    pub transports: Vec<Arc<Mutex<MmioTransport>>>,
    pub serial: Arc<Mutex<SerialConsole>>,
    pub mem: GuestMemory,
    pub memory_mib: u64,
    /// False on hosts whose XSAVE state outgrows the format (AMX).
    pub xsave_fits: bool,
}

impl Machine {
    /// Stops the vCPUs, then every device's worker, so that nothing
    /// touches guest memory or device state until `resume`.
    pub fn pause(&self) -> Result<(), SnapshotError> {
        self.gate.pause()?;
        for (index, t) in self.transports.iter().enumerate() {
            if let Err(message) = lock(t).pause() {
                // Leave nothing half-stopped.
                for t in &self.transports[..index] {
                    lock(t).resume();
                }
                self.gate.resume();
                return Err(SnapshotError::Device { index, message });
            }
        }
        Ok(())
    }

    pub fn resume(&self) -> Result<(), SnapshotError> {
        if !self.gate.is_paused() {
            return Err(PauseError::NotPaused.into());
        }
        for t in &self.transports {
            lock(t).resume();
        }
        self.gate.resume();
        Ok(())
    }

    /// Writes the paused VM into `state_out` and `memory_out`; the VM stays
    /// paused. Memory goes first: the state file lists the chunks it holds.
    /// Returns the memory bytes written (zero chunks and pages are skipped).
    pub fn snapshot(&self, state_out: &mut File, memory_out: &File) -> Result<u64, SnapshotError> {
        if !self.xsave_fits {
            return Err(SnapshotError::Unsupported(
                "this host's XSAVE state is larger than the 4 KiB the format holds (AMX)",
            ));
        }
        let vcpus = self.gate.save_all()?;
        let vm = kvm::save_vm(&self.vm)?;
        let devices = self
            .transports
            .iter()
            .enumerate()
            .map(|(index, t)| {
                lock(t)
                    .save()
                    .map_err(|message| SnapshotError::Device { index, message })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let written = memory::write_memory(&self.mem, memory_out)?;
        let snapshot = state::VmSnapshot {
            vmm_version: env!("CARGO_PKG_VERSION").to_string(),
            memory_mib: self.memory_mib,
            memory_chunks: written.chunks,
            vcpus,
            vm,
            serial: lock(&self.serial).state(),
            devices,
        };
        let bytes = file::encode(&snapshot)?;
        state_out
            .write_all(&bytes)
            .and_then(|()| state_out.flush())
            .map_err(SnapshotError::WriteState)?;
        Ok(written.bytes)
    }
}
