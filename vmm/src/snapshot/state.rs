//! What a snapshot records besides guest memory: every vCPU, the VM's
//! interrupt controllers and clocks, and each device's registers.
//!
//! KVM's own structures travel as the bytes KVM gave us (kvm-bindings'
//! serde form); ours are plain fields. Nothing here is trusted on the way
//! back in: `VmSnapshot::check` bounds what a restore will act on, and KVM
//! refuses register values it cannot take.

use kvm_bindings::{
    kvm_clock_data, kvm_cpuid_entry2, kvm_debugregs, kvm_irqchip, kvm_lapic_state, kvm_mp_state,
    kvm_msr_entry, kvm_pit_state2, kvm_regs, kvm_sregs, kvm_vcpu_events, kvm_xcrs, kvm_xsave,
};
use serde::{Deserialize, Serialize};

/// Most MSRs one vCPU may carry; KVM lists a few hundred at most.
pub const MAX_MSRS: usize = 1024;
/// Most CPUID leaves one vCPU may carry (KVM_MAX_CPUID_ENTRIES).
pub const MAX_CPUID: usize = 256;
/// Most virtio devices a VM may have (the MMIO slots the layout has).
pub const MAX_DEVICES: usize = 16;
/// Most queues one device may have.
pub const MAX_QUEUES: usize = 8;
/// 1 TiB: more guest memory than any host this runs on has.
pub const MAX_MEMORY_MIB: u64 = 1 << 20;

#[derive(Serialize, Deserialize)]
pub struct VmSnapshot {
    /// The VMM that wrote it, for the reader's error messages.
    pub vmm_version: String,
    pub memory_mib: u64,
    /// Which `memory::CHUNK`-sized chunks the memory file holds, one bit
    /// each; the others were all zeros.
    pub memory_chunks: Vec<u64>,
    pub vcpus: Vec<VcpuState>,
    pub vm: VmState,
    pub serial: SerialState,
    /// In the order the devices sit on the MMIO bus.
    pub devices: Vec<TransportState>,
}

#[derive(Serialize, Deserialize)]
pub struct VcpuState {
    /// The CPUID the vCPU ran with; a restore refuses a host whose own
    /// differs, since the guest chose its code paths by it.
    pub cpuid: Vec<kvm_cpuid_entry2>,
    pub regs: kvm_regs,
    pub sregs: kvm_sregs,
    pub xsave: kvm_xsave,
    pub xcrs: kvm_xcrs,
    pub debugregs: kvm_debugregs,
    pub lapic: kvm_lapic_state,
    pub mp_state: kvm_mp_state,
    pub events: kvm_vcpu_events,
    pub msrs: Vec<kvm_msr_entry>,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct VmState {
    pub pic_master: kvm_irqchip,
    pub pic_slave: kvm_irqchip,
    pub ioapic: kvm_irqchip,
    pub pit: kvm_pit_state2,
    pub clock: kvm_clock_data,
}

/// The 16550's registers and receive FIFO (vm-superio's `SerialState`,
/// which has no serde form of its own).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SerialState {
    pub baud_divisor_low: u8,
    pub baud_divisor_high: u8,
    pub interrupt_enable: u8,
    pub interrupt_identification: u8,
    pub line_control: u8,
    pub line_status: u8,
    pub modem_control: u8,
    pub modem_status: u8,
    pub scratch: u8,
    pub in_buffer: Vec<u8>,
}

/// One virtio-mmio transport: what the driver negotiated and where its
/// queues are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransportState {
    pub device_type: u32,
    pub status: u32,
    pub driver_features: u64,
    pub device_features_sel: u32,
    pub driver_features_sel: u32,
    pub queue_sel: u32,
    pub interrupt_status: u32,
    pub needs_reset: bool,
    pub activated: bool,
    pub queues: Vec<QueueState>,
}

/// virtio-queue's `QueueState`, with a serde form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueState {
    pub max_size: u16,
    pub next_avail: u16,
    pub next_used: u16,
    pub event_idx_enabled: bool,
    pub size: u16,
    pub ready: bool,
    pub desc_table: u64,
    pub avail_ring: u64,
    pub used_ring: u64,
}

impl From<virtio_queue::QueueState> for QueueState {
    fn from(q: virtio_queue::QueueState) -> Self {
        QueueState {
            max_size: q.max_size,
            next_avail: q.next_avail,
            next_used: q.next_used,
            event_idx_enabled: q.event_idx_enabled,
            size: q.size,
            ready: q.ready,
            desc_table: q.desc_table,
            avail_ring: q.avail_ring,
            used_ring: q.used_ring,
        }
    }
}

impl From<QueueState> for virtio_queue::QueueState {
    fn from(q: QueueState) -> Self {
        virtio_queue::QueueState {
            max_size: q.max_size,
            next_avail: q.next_avail,
            next_used: q.next_used,
            event_idx_enabled: q.event_idx_enabled,
            size: q.size,
            ready: q.ready,
            desc_table: q.desc_table,
            avail_ring: q.avail_ring,
            used_ring: q.used_ring,
        }
    }
}

/// A UART just out of reset, as vm-superio makes one: all zeros would be a
/// port with no transmitter ready, which a guest writes at 100 bytes/s.
impl Default for SerialState {
    fn default() -> Self {
        vm_superio::serial::SerialState::default().into()
    }
}

impl From<vm_superio::serial::SerialState> for SerialState {
    fn from(s: vm_superio::serial::SerialState) -> Self {
        SerialState {
            baud_divisor_low: s.baud_divisor_low,
            baud_divisor_high: s.baud_divisor_high,
            interrupt_enable: s.interrupt_enable,
            interrupt_identification: s.interrupt_identification,
            line_control: s.line_control,
            line_status: s.line_status,
            modem_control: s.modem_control,
            modem_status: s.modem_status,
            scratch: s.scratch,
            in_buffer: s.in_buffer,
        }
    }
}

impl From<&SerialState> for vm_superio::serial::SerialState {
    fn from(s: &SerialState) -> Self {
        vm_superio::serial::SerialState {
            baud_divisor_low: s.baud_divisor_low,
            baud_divisor_high: s.baud_divisor_high,
            interrupt_enable: s.interrupt_enable,
            interrupt_identification: s.interrupt_identification,
            line_control: s.line_control,
            line_status: s.line_status,
            modem_control: s.modem_control,
            modem_status: s.modem_status,
            scratch: s.scratch,
            in_buffer: s.in_buffer.clone(),
        }
    }
}

#[cfg(test)]
impl VcpuState {
    /// All-zero registers with `cpuid`, for tests of the format and checks.
    pub fn zeroed(cpuid: Vec<kvm_cpuid_entry2>) -> Self {
        VcpuState {
            cpuid,
            regs: Default::default(),
            sregs: Default::default(),
            xsave: Default::default(),
            xcrs: Default::default(),
            debugregs: Default::default(),
            lapic: Default::default(),
            mp_state: Default::default(),
            events: Default::default(),
            msrs: Vec::new(),
        }
    }
}

/// Why a decoded snapshot cannot be acted on.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StateError {
    #[error("it has {0} vCPUs; a VM has 1 to {max}", max = crate::config::MAX_VCPUS)]
    VcpuCount(usize),
    #[error("vCPU {index} has {count} {what} (at most {max})")]
    TooMany {
        index: usize,
        what: &'static str,
        count: usize,
        max: usize,
    },
    #[error("it has {0} devices (at most {MAX_DEVICES})")]
    DeviceCount(usize),
    #[error("device {index} has {count} queues (at most {MAX_QUEUES})")]
    QueueCount { index: usize, count: usize },
    #[error("its memory size {0} MiB is not one a VM can have")]
    Memory(u64),
    #[error("its serial port holds {0} bytes of input (at most 64)")]
    SerialFifo(usize),
    #[error("its memory chunk list has {found} words; its memory size needs {wanted}")]
    ChunkList { found: usize, wanted: usize },
}

impl VmSnapshot {
    /// Bounds every count a restore loops over, so that a damaged or
    /// hostile file is refused before any of it reaches KVM.
    pub fn check(&self) -> Result<(), StateError> {
        let n = self.vcpus.len();
        if n == 0 || n > crate::config::MAX_VCPUS {
            return Err(StateError::VcpuCount(n));
        }
        for (index, v) in self.vcpus.iter().enumerate() {
            for (what, count, max) in [
                ("MSRs", v.msrs.len(), MAX_MSRS),
                ("CPUID leaves", v.cpuid.len(), MAX_CPUID),
            ] {
                if count > max {
                    return Err(StateError::TooMany {
                        index,
                        what,
                        count,
                        max,
                    });
                }
            }
        }
        if self.devices.len() > MAX_DEVICES {
            return Err(StateError::DeviceCount(self.devices.len()));
        }
        for (index, d) in self.devices.iter().enumerate() {
            if d.queues.len() > MAX_QUEUES {
                return Err(StateError::QueueCount {
                    index,
                    count: d.queues.len(),
                });
            }
        }
        if !(crate::config::MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&self.memory_mib) {
            return Err(StateError::Memory(self.memory_mib));
        }
        let words = super::memory::chunk_words(self.memory_mib);
        if self.memory_chunks.len() != words {
            return Err(StateError::ChunkList {
                found: self.memory_chunks.len(),
                wanted: words,
            });
        }
        if self.serial.in_buffer.len() > 64 {
            return Err(StateError::SerialFifo(self.serial.in_buffer.len()));
        }
        Ok(())
    }
}
