//! The virtio-mmio transport (virtio 1.2, 4.2), version 2 ("modern") only.

mod state;

use super::{status, Activation, Interrupt, NeedsReset, VirtioDevice, VIRTIO_F_VERSION_1};
use crate::devices::BusDevice;
use crate::memory::GuestMemory;
use virtio_queue::{Queue, QueueT};
use vmm_sys_util::eventfd::EventFd;

const MMIO_MAGIC: u32 = 0x7472_6976; // "virt"
const MMIO_VERSION: u32 = 2;
const VENDOR_ID: u32 = 0x5044_4b00; // "PDK"

const REG_MAGIC: u64 = 0x000;
const REG_VERSION: u64 = 0x004;
const REG_DEVICE_ID: u64 = 0x008;
const REG_VENDOR_ID: u64 = 0x00c;
const REG_DEVICE_FEATURES: u64 = 0x010;
const REG_DEVICE_FEATURES_SEL: u64 = 0x014;
const REG_DRIVER_FEATURES: u64 = 0x020;
const REG_DRIVER_FEATURES_SEL: u64 = 0x024;
const REG_QUEUE_SEL: u64 = 0x030;
const REG_QUEUE_NUM_MAX: u64 = 0x034;
const REG_QUEUE_NUM: u64 = 0x038;
const REG_QUEUE_READY: u64 = 0x044;
/// Notifications normally end in an ioeventfd inside KVM; one that reaches
/// us is forwarded to the same eventfd.
pub const REG_QUEUE_NOTIFY: u64 = 0x050;
const REG_INTERRUPT_STATUS: u64 = 0x060;
const REG_INTERRUPT_ACK: u64 = 0x064;
const REG_STATUS: u64 = 0x070;
const REG_QUEUE_DESC_LOW: u64 = 0x080;
const REG_QUEUE_DESC_HIGH: u64 = 0x084;
const REG_QUEUE_DRIVER_LOW: u64 = 0x090;
const REG_QUEUE_DRIVER_HIGH: u64 = 0x094;
const REG_QUEUE_DEVICE_LOW: u64 = 0x0a0;
const REG_QUEUE_DEVICE_HIGH: u64 = 0x0a4;
const REG_CONFIG_GENERATION: u64 = 0x0fc;
const REG_CONFIG: u64 = 0x100;

pub struct MmioTransport {
    device: Box<dyn VirtioDevice>,
    mem: GuestMemory,
    queues: Vec<Queue>,
    queue_evts: Vec<EventFd>,
    interrupt: Interrupt,
    needs_reset: NeedsReset,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    status: u32,
    activated: bool,
    /// While paused: the queues as the worker left them.
    paused_queues: Option<Vec<virtio_queue::QueueState>>,
    /// While paused: the worker had died of a device fault.
    faulted: bool,
    /// Bumped when the device's configuration changes under a running
    /// driver, so a driver reading it in pieces sees the change.
    config_generation: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("queue {index}: {source}")]
    Queue {
        index: usize,
        source: virtio_queue::Error,
    },
    #[error("creating a queue eventfd: {0}")]
    EventFd(std::io::Error),
}

impl MmioTransport {
    pub fn new(
        device: Box<dyn VirtioDevice>,
        mem: GuestMemory,
        interrupt: Interrupt,
    ) -> Result<Self, TransportError> {
        let mut queues = Vec::new();
        let mut queue_evts = Vec::new();
        for (index, &max) in device.queue_max_sizes().iter().enumerate() {
            queues.push(Queue::new(max).map_err(|source| TransportError::Queue { index, source })?);
            queue_evts.push(EventFd::new(libc::EFD_NONBLOCK).map_err(TransportError::EventFd)?);
        }
        Ok(MmioTransport {
            device,
            mem,
            queues,
            queue_evts,
            interrupt,
            needs_reset: NeedsReset::default(),
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            status: 0,
            activated: false,
            paused_queues: None,
            faulted: false,
            config_generation: 0,
        })
    }

    /// The per-queue notification eventfds, to register with KVM.
    pub fn queue_evts(&self) -> &[EventFd] {
        &self.queue_evts
    }

    pub fn device_type(&self) -> u32 {
        self.device.device_type()
    }

    fn device_features(&self) -> u64 {
        self.device.features() | VIRTIO_F_VERSION_1
    }

    fn selected_queue(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(self.queue_sel as usize)
    }

    /// Queue registers may change only while the driver is setting up and
    /// the queue is not live.
    fn queue_setup_allowed(&self) -> bool {
        self.status & status::FEATURES_OK != 0
            && self.status & status::DRIVER_OK == 0
            && self.status & status::FAILED == 0
    }

    fn current_status(&self) -> u32 {
        if self.needs_reset.get() {
            self.status | status::DEVICE_NEEDS_RESET
        } else {
            self.status
        }
    }

    /// The device's queues as a reset leaves them.
    fn fresh_queues(&self) -> Vec<Queue> {
        self.device
            .queue_max_sizes()
            .iter()
            .filter_map(|&max| Queue::new(max).ok())
            .collect()
    }

    fn reset(&mut self) {
        if self.activated {
            self.resume();
            self.device.reset();
        }
        // Activation moved the queues into the device; start from fresh ones.
        self.queues = self.fresh_queues();
        self.activated = false;
        self.status = 0;
        self.driver_features = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.queue_sel = 0;
        self.needs_reset.clear();
        self.interrupt.ack(u32::MAX);
    }

    fn set_status(&mut self, value: u32) {
        if value == 0 {
            self.reset();
            return;
        }
        // The driver may only add bits (2.1.1); anything else is ignored.
        if value & self.status != self.status {
            return;
        }
        let added = value & !self.status;
        if added & status::FEATURES_OK != 0 {
            let offered = self.device_features();
            let ok = self.driver_features & !offered == 0
                && self.driver_features & VIRTIO_F_VERSION_1 != 0;
            if !ok {
                // Leaving FEATURES_OK clear tells the driver we refuse.
                self.status = value & !status::FEATURES_OK;
                return;
            }
        }
        self.status = value;
        if added & status::DRIVER_OK != 0 && self.status & status::FEATURES_OK != 0 {
            self.activate();
        }
    }

    fn activate(&mut self) {
        if self.activated {
            return;
        }
        let all_valid = self
            .queues
            .iter()
            .all(|q| !q.ready() || q.is_valid(&self.mem));
        if !all_valid {
            eprintln!(
                "paddock-vmm: virtio device type {}: driver set up an invalid queue",
                self.device.device_type()
            );
            self.needs_reset.set();
            self.interrupt.signal_config_change();
            return;
        }
        let mut evts = Vec::with_capacity(self.queue_evts.len());
        for e in &self.queue_evts {
            match e.try_clone() {
                Ok(c) => evts.push(c),
                Err(err) => {
                    eprintln!("paddock-vmm: cloning queue eventfd: {err}");
                    self.needs_reset.set();
                    return;
                }
            }
        }
        let activation = Activation {
            mem: self.mem.clone(),
            queues: std::mem::take(&mut self.queues),
            queue_evts: evts,
            interrupt: self.interrupt.clone(),
            needs_reset: self.needs_reset.clone(),
            acked_features: self.driver_features,
        };
        match self.device.activate(activation) {
            Ok(()) => self.activated = true,
            Err(e) => {
                eprintln!(
                    "paddock-vmm: activating virtio device type {}: {e}",
                    self.device.device_type()
                );
                self.needs_reset.set();
                self.interrupt.signal_config_change();
            }
        }
    }

    fn read_reg(&mut self, offset: u64) -> u32 {
        match offset {
            REG_MAGIC => MMIO_MAGIC,
            REG_VERSION => MMIO_VERSION,
            REG_DEVICE_ID => self.device.device_type(),
            REG_VENDOR_ID => VENDOR_ID,
            REG_DEVICE_FEATURES => match self.device_features_sel {
                0 => self.device_features() as u32,
                1 => (self.device_features() >> 32) as u32,
                _ => 0,
            },
            REG_QUEUE_NUM_MAX => self.selected_queue().map_or(0, |q| u32::from(q.max_size())),
            REG_QUEUE_READY => self.selected_queue().map_or(0, |q| u32::from(q.ready())),
            REG_INTERRUPT_STATUS => self.interrupt.status(),
            REG_STATUS => self.current_status(),
            REG_CONFIG_GENERATION => self.config_generation,
            _ => 0,
        }
    }

    fn write_reg(&mut self, offset: u64, v: u32) {
        match offset {
            REG_DEVICE_FEATURES_SEL => self.device_features_sel = v,
            REG_DRIVER_FEATURES_SEL => self.driver_features_sel = v,
            REG_DRIVER_FEATURES if self.status & status::FEATURES_OK == 0 => {
                match self.driver_features_sel {
                    0 => {
                        self.driver_features = (self.driver_features & !0xffff_ffff) | u64::from(v)
                    }
                    1 => {
                        self.driver_features =
                            (self.driver_features & 0xffff_ffff) | (u64::from(v) << 32)
                    }
                    _ => {}
                }
            }
            REG_QUEUE_SEL => self.queue_sel = v,
            REG_QUEUE_NOTIFY => {
                if let Some(evt) = self.queue_evts.get(v as usize) {
                    let _ = evt.write(1);
                }
            }
            REG_INTERRUPT_ACK => self.interrupt.ack(v),
            REG_STATUS => self.set_status(v),
            REG_QUEUE_NUM
            | REG_QUEUE_READY
            | REG_QUEUE_DESC_LOW
            | REG_QUEUE_DESC_HIGH
            | REG_QUEUE_DRIVER_LOW
            | REG_QUEUE_DRIVER_HIGH
            | REG_QUEUE_DEVICE_LOW
            | REG_QUEUE_DEVICE_HIGH => {
                if !self.queue_setup_allowed() {
                    return;
                }
                let Some(q) = self.selected_queue() else {
                    return;
                };
                // Once a queue is ready its addresses are fixed (4.2.2.2).
                if q.ready() && offset != REG_QUEUE_READY {
                    return;
                }
                match offset {
                    // The queue ignores sizes that are not a power of two or exceed the max,
                    // and is_valid() then fails at activation.
                    REG_QUEUE_NUM => q.set_size(v as u16),
                    REG_QUEUE_READY => q.set_ready(v == 1),
                    REG_QUEUE_DESC_LOW => q.set_desc_table_address(Some(v), None),
                    REG_QUEUE_DESC_HIGH => q.set_desc_table_address(None, Some(v)),
                    REG_QUEUE_DRIVER_LOW => q.set_avail_ring_address(Some(v), None),
                    REG_QUEUE_DRIVER_HIGH => q.set_avail_ring_address(None, Some(v)),
                    REG_QUEUE_DEVICE_LOW => q.set_used_ring_address(Some(v), None),
                    REG_QUEUE_DEVICE_HIGH => q.set_used_ring_address(None, Some(v)),
                    _ => {}
                }
            }
            _ => {}
        }
    }
}

impl BusDevice for MmioTransport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= REG_CONFIG {
            self.device.read_config(offset - REG_CONFIG, data);
            return;
        }
        if data.len() != 4 || offset % 4 != 0 {
            data.fill(0);
            return;
        }
        data.copy_from_slice(&self.read_reg(offset).to_le_bytes());
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= REG_CONFIG {
            self.device.write_config(offset - REG_CONFIG, data);
            return;
        }
        if data.len() != 4 || offset % 4 != 0 {
            return;
        }
        let v = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
        self.write_reg(offset, v);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{guest_memory, NullDevice};
    use super::*;

    pub(super) fn transport() -> (
        MmioTransport,
        std::sync::Arc<std::sync::atomic::AtomicUsize>,
    ) {
        let (dev, activations) = NullDevice::new();
        let irq = Interrupt::new(EventFd::new(libc::EFD_NONBLOCK).expect("eventfd"));
        (
            MmioTransport::new(Box::new(dev), guest_memory(), irq).expect("transport"),
            activations,
        )
    }

    pub(super) fn w(t: &mut MmioTransport, off: u64, v: u32) {
        t.write(off, &v.to_le_bytes());
    }

    fn r(t: &mut MmioTransport, off: u64) -> u32 {
        let mut b = [0u8; 4];
        t.read(off, &mut b);
        u32::from_le_bytes(b)
    }

    fn setup_queue(t: &mut MmioTransport, base: u64) {
        w(t, REG_QUEUE_SEL, 0);
        w(t, REG_QUEUE_NUM, 16);
        w(t, REG_QUEUE_DESC_LOW, base as u32);
        w(t, REG_QUEUE_DRIVER_LOW, (base + 0x1000) as u32);
        w(t, REG_QUEUE_DEVICE_LOW, (base + 0x2000) as u32);
        w(t, REG_QUEUE_READY, 1);
    }

    #[test]
    fn identifies_as_modern_virtio() {
        let (mut t, _) = transport();
        assert_eq!(r(&mut t, REG_MAGIC), MMIO_MAGIC);
        assert_eq!(r(&mut t, REG_VERSION), 2);
        w(&mut t, REG_DEVICE_FEATURES_SEL, 1);
        assert_eq!(r(&mut t, REG_DEVICE_FEATURES), 1); // VERSION_1
    }

    #[test]
    fn full_handshake_activates_once() {
        let (mut t, activations) = transport();
        w(&mut t, REG_STATUS, status::ACKNOWLEDGE);
        w(&mut t, REG_STATUS, status::ACKNOWLEDGE | status::DRIVER);
        w(&mut t, REG_DRIVER_FEATURES_SEL, 1);
        w(&mut t, REG_DRIVER_FEATURES, 1);
        let s = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK;
        w(&mut t, REG_STATUS, s);
        assert_eq!(r(&mut t, REG_STATUS), s);
        setup_queue(&mut t, 0x10000);
        w(&mut t, REG_STATUS, s | status::DRIVER_OK);
        w(&mut t, REG_STATUS, s | status::DRIVER_OK);
        assert_eq!(activations.load(std::sync::atomic::Ordering::SeqCst), 1);
        // Queue registers are frozen now; writes are ignored, not applied.
        w(&mut t, REG_QUEUE_NUM, 8);
        w(&mut t, REG_QUEUE_READY, 0);
        assert_eq!(r(&mut t, REG_STATUS), s | status::DRIVER_OK);
    }

    #[test]
    fn refuses_features_it_did_not_offer_or_legacy_drivers() {
        let (mut t, _) = transport();
        w(&mut t, REG_STATUS, status::ACKNOWLEDGE | status::DRIVER);
        // No VERSION_1: a legacy driver.
        w(
            &mut t,
            REG_STATUS,
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK,
        );
        assert_eq!(r(&mut t, REG_STATUS) & status::FEATURES_OK, 0);
        // An unoffered feature bit.
        w(&mut t, REG_DRIVER_FEATURES_SEL, 1);
        w(&mut t, REG_DRIVER_FEATURES, 1 | 2);
        w(
            &mut t,
            REG_STATUS,
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK,
        );
        assert_eq!(r(&mut t, REG_STATUS) & status::FEATURES_OK, 0);
    }

    #[test]
    fn invalid_queue_marks_needs_reset_and_reset_clears_it() {
        let (mut t, activations) = transport();
        w(&mut t, REG_DRIVER_FEATURES_SEL, 1);
        w(&mut t, REG_DRIVER_FEATURES, 1);
        let s = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK;
        w(&mut t, REG_STATUS, s);
        // Rings outside guest memory.
        setup_queue(&mut t, 0xfff0_0000);
        w(&mut t, REG_STATUS, s | status::DRIVER_OK);
        assert_eq!(activations.load(std::sync::atomic::Ordering::SeqCst), 0);
        assert_ne!(r(&mut t, REG_STATUS) & status::DEVICE_NEEDS_RESET, 0);
        w(&mut t, REG_STATUS, 0);
        assert_eq!(r(&mut t, REG_STATUS), 0);
    }

    #[test]
    fn odd_sized_and_unknown_accesses_are_harmless() {
        let (mut t, _) = transport();
        let mut b = [0u8; 2];
        t.read(REG_MAGIC, &mut b);
        assert_eq!(b, [0, 0]);
        t.write(REG_STATUS, &[1, 2]);
        assert_eq!(r(&mut t, REG_STATUS), 0);
        w(&mut t, 0x0f0, 0xdead_beef);
        w(&mut t, REG_QUEUE_SEL, 99);
        assert_eq!(r(&mut t, REG_QUEUE_NUM_MAX), 0);
        w(&mut t, REG_QUEUE_NOTIFY, 99);
        let mut big = [0u8; 8];
        t.read(REG_CONFIG + 0xe00, &mut big);
    }
}
