//! Test helpers: a guest memory and hand-written virtqueues, so tests can
//! feed devices exactly the (possibly hostile) chains they want.

use super::{ActivateError, Activation, VirtioDevice};
use crate::memory::{create_guest_memory, GuestMemory};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress};

pub const F_NEXT: u16 = 1;
pub const F_WRITE: u16 = 2;

pub fn guest_memory() -> GuestMemory {
    create_guest_memory(16).expect("test guest memory")
}

#[derive(Clone, Copy)]
pub struct RawDesc {
    addr: u64,
    len: u32,
    flags: u16,
    next: u16,
}

pub fn desc(addr: u64, len: u32, flags: u16, next: u16) -> RawDesc {
    RawDesc {
        addr,
        len,
        flags,
        next,
    }
}

/// A split virtqueue laid out at fixed addresses in low guest memory.
pub struct TestQueue<'a> {
    mem: &'a GuestMemory,
    size: u16,
    pub desc_table: u64,
    pub avail: u64,
    pub used: u64,
}

impl<'a> TestQueue<'a> {
    pub fn new(mem: &'a GuestMemory, size: u16) -> Self {
        Self::at(mem, size, 0x1000)
    }

    pub fn at(mem: &'a GuestMemory, size: u16, base: u64) -> Self {
        let tq = TestQueue {
            mem,
            size,
            desc_table: base,
            avail: base + 0x1000,
            used: base + 0x2000,
        };
        mem.write_slice(&[0u8; 0x3000], GuestAddress(base))
            .expect("clear queue");
        tq
    }

    pub fn set_descs(&self, descs: Vec<RawDesc>) {
        for (i, d) in descs.iter().enumerate() {
            self.set_desc(i as u16, *d);
        }
    }

    pub fn set_desc(&self, index: u16, d: RawDesc) {
        let a = self.desc_table + u64::from(index) * 16;
        self.mem.write_obj(d.addr, GuestAddress(a)).expect("desc");
        self.mem
            .write_obj(d.len, GuestAddress(a + 8))
            .expect("desc");
        self.mem
            .write_obj(d.flags, GuestAddress(a + 12))
            .expect("desc");
        self.mem
            .write_obj(d.next, GuestAddress(a + 14))
            .expect("desc");
    }

    /// Appends `heads` to the available ring.
    pub fn publish(&self, heads: &[u16]) {
        let idx: u16 = self
            .mem
            .read_obj(GuestAddress(self.avail + 2))
            .expect("idx");
        for (i, h) in heads.iter().enumerate() {
            let slot = (idx.wrapping_add(i as u16) % self.size) as u64;
            self.mem
                .write_obj(*h, GuestAddress(self.avail + 4 + slot * 2))
                .expect("ring");
        }
        self.set_avail_idx(idx.wrapping_add(heads.len() as u16));
    }

    pub fn set_avail_idx(&self, idx: u16) {
        self.mem
            .write_obj(idx, GuestAddress(self.avail + 2))
            .expect("idx");
    }

    pub fn used_idx(&self) -> u16 {
        self.mem
            .read_obj(GuestAddress(self.used + 2))
            .expect("used idx")
    }

    /// (head, len) of used-ring entry `i`.
    pub fn used_elem(&self, i: u16) -> (u32, u32) {
        let a = self.used + 4 + u64::from(i % self.size) * 8;
        (
            self.mem.read_obj(GuestAddress(a)).expect("id"),
            self.mem.read_obj(GuestAddress(a + 4)).expect("len"),
        )
    }

    pub fn queue(&self) -> Queue {
        let mut q = Queue::new(self.size).expect("queue");
        q.set_size(self.size);
        q.set_desc_table_address(Some(self.desc_table as u32), Some(0));
        q.set_avail_ring_address(Some(self.avail as u32), Some(0));
        q.set_used_ring_address(Some(self.used as u32), Some(0));
        q.set_ready(true);
        q
    }
}

/// A device that only counts its activations.
pub struct NullDevice {
    activations: Arc<AtomicUsize>,
    /// Says its configuration may differ after a restore, as a disk does.
    pub config_differs: bool,
}

impl NullDevice {
    pub fn new() -> (Self, Arc<AtomicUsize>) {
        let a = Arc::new(AtomicUsize::new(0));
        (
            NullDevice {
                activations: a.clone(),
                config_differs: false,
            },
            a,
        )
    }
}

impl VirtioDevice for NullDevice {
    fn device_type(&self) -> u32 {
        0
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[16]
    }
    fn features(&self) -> u64 {
        0
    }
    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn activate(&mut self, _a: Activation) -> Result<(), ActivateError> {
        self.activations.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn reset(&mut self) {}
    fn worker_mut(&mut self) -> Option<&mut super::worker::WorkerHandle> {
        None
    }
    fn config_differs_after_restore(&self) -> bool {
        self.config_differs
    }
}
