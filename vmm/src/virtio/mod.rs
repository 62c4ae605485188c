//! Virtio devices over the MMIO transport. Everything a guest driver writes
//! into a queue is untrusted: see `chain` for how descriptor chains are
//! checked before any device looks at them.

pub mod block;
pub mod chain;
pub mod mmio;
pub mod net;
pub mod rng;
pub mod vsock;
pub mod worker;

#[cfg(any(test, fuzzing))]
pub mod testing;

use crate::memory::GuestMemory;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use virtio_queue::Queue;
use vmm_sys_util::eventfd::EventFd;

/// Feature bits shared by every device.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;

/// Device status bits (virtio 1.2, 2.1).
pub mod status {
    pub const ACKNOWLEDGE: u32 = 1;
    pub const DRIVER: u32 = 2;
    pub const DRIVER_OK: u32 = 4;
    pub const FEATURES_OK: u32 = 8;
    pub const DEVICE_NEEDS_RESET: u32 = 0x40;
    pub const FAILED: u32 = 0x80;
}

/// Device IDs (virtio 1.2, 5).
pub mod device_id {
    pub const NET: u32 = 1;
    pub const BLOCK: u32 = 2;
    pub const RNG: u32 = 4;
    pub const VSOCK: u32 = 19;
}

const INT_USED_RING: u32 = 1;
const INT_CONFIG_CHANGE: u32 = 2;

/// A device's interrupt line: the MMIO interrupt-status register plus the
/// KVM irqfd that raises the IRQ.
#[derive(Clone)]
pub struct Interrupt {
    status: Arc<AtomicU32>,
    irqfd: Arc<EventFd>,
}

impl Interrupt {
    pub fn new(irqfd: EventFd) -> Self {
        Interrupt {
            status: Arc::new(AtomicU32::new(0)),
            irqfd: Arc::new(irqfd),
        }
    }

    fn raise(&self, bit: u32) {
        self.status.fetch_or(bit, Ordering::SeqCst);
        if let Err(e) = self.irqfd.write(1) {
            eprintln!("paddock-vmm: raising virtio interrupt: {e}");
        }
    }

    pub fn signal_used_queue(&self) {
        self.raise(INT_USED_RING);
    }

    pub fn signal_config_change(&self) {
        self.raise(INT_CONFIG_CHANGE);
    }

    pub fn status(&self) -> u32 {
        self.status.load(Ordering::SeqCst)
    }

    /// Raises the line again for whatever the status register holds.
    pub fn retrigger(&self) {
        if let Err(e) = self.irqfd.write(1) {
            eprintln!("paddock-vmm: raising virtio interrupt: {e}");
        }
    }

    /// Puts back the register a snapshot saw.
    pub fn set_status(&self, bits: u32) {
        self.status.store(bits, Ordering::SeqCst);
    }

    pub fn ack(&self, bits: u32) {
        self.status.fetch_and(!bits, Ordering::SeqCst);
    }

    pub fn irqfd(&self) -> &EventFd {
        &self.irqfd
    }
}

/// Set by a device that gave up on a guest that broke the queue protocol;
/// the transport then shows DEVICE_NEEDS_RESET.
#[derive(Clone, Default)]
pub struct NeedsReset(Arc<AtomicBool>);

impl NeedsReset {
    pub fn set(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
    pub fn clear(&self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// What a device gets when the driver sets DRIVER_OK.
pub struct Activation {
    pub mem: GuestMemory,
    pub queues: Vec<Queue>,
    pub queue_evts: Vec<EventFd>,
    pub interrupt: Interrupt,
    pub needs_reset: NeedsReset,
    pub acked_features: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    #[error("cloning an eventfd: {0}")]
    EventFd(std::io::Error),
    #[error("starting the device thread: {0}")]
    Thread(std::io::Error),
    #[error("{0}")]
    Device(String),
}

/// A virtio device model, independent of the transport.
pub trait VirtioDevice: Send {
    fn device_type(&self) -> u32;
    /// Maximum size of each queue; the length is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];
    fn features(&self) -> u64;
    /// Reads device configuration space; bytes past its end read as zero.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Drivers may write configuration space; our devices have nothing writable.
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    fn activate(&mut self, activation: Activation) -> Result<(), ActivateError>;
    /// Stops the device's worker so the transport can reset it.
    fn reset(&mut self);
    /// The worker serving the activated queues, for pause and resume.
    fn worker_mut(&mut self) -> Option<&mut worker::WorkerHandle>;
    /// Told before activation when the queues come from a snapshot: what
    /// the device had outside guest memory (connections, timers) is gone.
    fn restored(&mut self) {}
    /// Whether a restore may bring a configuration the snapshot's driver
    /// has not seen (a disk of another size), so the transport tells the
    /// driver to read it again.
    fn config_differs_after_restore(&self) -> bool {
        false
    }
}

/// Copies `src` (a device's config structure) into `data` from `offset`,
/// zero-filling whatever lies outside it.
pub fn read_config_bytes(src: &[u8], offset: u64, data: &mut [u8]) {
    data.fill(0);
    let Ok(start) = usize::try_from(offset) else {
        return;
    };
    if start >= src.len() {
        return;
    }
    let end = (start + data.len()).min(src.len());
    data[..end - start].copy_from_slice(&src[start..end]);
}
