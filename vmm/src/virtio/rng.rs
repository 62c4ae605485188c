//! virtio-rng: fills the guest's buffers from the host's getrandom().

use super::chain::{Chain, ChainLimits};
use super::worker::{self, DeviceFault, DeviceWorker, WorkerContext, WorkerHandle};
use super::{device_id, ActivateError, Activation, Interrupt, VirtioDevice};
use crate::memory::GuestMemory;
use crate::seccomp::ThreadKind;
use virtio_queue::{Queue, QueueT};

const QUEUE_SIZE: u16 = 64;
/// Bytes handed out per request: enough to seed any guest, too little for a
/// guest to burn host CPU by asking for gigabytes.
const MAX_REQUEST: usize = 4096;
const LIMITS: ChainLimits = ChainLimits {
    max_descriptors: QUEUE_SIZE as usize,
    max_bytes: u32::MAX as u64,
};

#[derive(Default)]
pub struct Rng {
    worker: Option<WorkerHandle>,
}

impl VirtioDevice for Rng {
    fn device_type(&self) -> u32 {
        device_id::RNG
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }
    fn features(&self) -> u64 {
        0
    }
    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn activate(&mut self, activation: Activation) -> Result<(), ActivateError> {
        self.worker = Some(worker::spawn(
            "rng",
            ThreadKind::Rng,
            activation,
            RngWorker,
        )?);
        Ok(())
    }
    fn reset(&mut self) {
        if let Some(mut w) = self.worker.take() {
            w.stop();
        }
    }
    fn worker_mut(&mut self) -> Option<&mut WorkerHandle> {
        self.worker.as_mut()
    }
}

pub struct RngWorker;

impl RngWorker {
    pub fn handle_queue(
        &mut self,
        mem: &GuestMemory,
        queue: &mut Queue,
        interrupt: &Interrupt,
    ) -> Result<(), DeviceFault> {
        let mut used_any = false;
        while let Some(chain) = queue.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            let len = match Chain::parse(chain, LIMITS) {
                Ok(c) => fill(mem, &c),
                Err(_) => 0,
            };
            queue
                .add_used(mem, head, len)
                .map_err(|e| DeviceFault(format!("used ring: {e}")))?;
            used_any = true;
        }
        worker::check_avail_ring(queue, mem)?;
        if used_any {
            interrupt.signal_used_queue();
        }
        Ok(())
    }
}

fn fill(mem: &GuestMemory, c: &Chain) -> u32 {
    let len = (c.writable_len() as usize).min(MAX_REQUEST);
    let mut buf = vec![0u8; len];
    if crate::entropy::fill(&mut buf).is_err() {
        return 0;
    }
    match c.write_at(mem, 0, &buf) {
        Ok(()) => len as u32,
        Err(_) => 0,
    }
}

impl DeviceWorker for RngWorker {
    fn queue_notified(&mut self, index: usize, ctx: &mut WorkerContext) -> Result<(), DeviceFault> {
        let WorkerContext {
            mem,
            queues,
            interrupt,
            ..
        } = ctx;
        match queues.get_mut(index) {
            Some(q) => self.handle_queue(mem, q, interrupt),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{desc, guest_memory, TestQueue, F_NEXT, F_WRITE};
    use super::*;
    use vm_memory::{Bytes, GuestAddress};
    use vmm_sys_util::eventfd::EventFd;

    fn run(mem: &GuestMemory, tq: &TestQueue) -> Result<u32, DeviceFault> {
        let mut q = tq.queue();
        let irq = Interrupt::new(EventFd::new(libc::EFD_NONBLOCK).expect("evt"));
        RngWorker.handle_queue(mem, &mut q, &irq)?;
        Ok(tq.used_elem(tq.used_idx().wrapping_sub(1)).1)
    }

    #[test]
    fn fills_writable_buffers_up_to_the_cap() {
        let mem = guest_memory();
        let tq = TestQueue::new(&mem, 16);
        tq.set_descs(vec![
            desc(0x10000, 64, F_WRITE | F_NEXT, 1),
            desc(0x20000, 64, F_WRITE, 0),
        ]);
        tq.publish(&[0]);
        assert_eq!(run(&mem, &tq).expect("ok"), 128);
        let mut b = [0u8; 64];
        mem.read_slice(&mut b, GuestAddress(0x20000)).expect("r");
        assert!(b.iter().any(|&x| x != 0));
        tq.set_descs(vec![desc(0x10000, 1 << 20, F_WRITE, 0)]);
        tq.publish(&[0]);
        assert_eq!(run(&mem, &tq).expect("ok"), MAX_REQUEST as u32);
    }

    #[test]
    fn readable_or_bad_buffers_get_nothing() {
        let mem = guest_memory();
        let tq = TestQueue::new(&mem, 16);
        tq.set_descs(vec![desc(0x10000, 64, 0, 0)]);
        tq.publish(&[0]);
        assert_eq!(run(&mem, &tq).expect("ok"), 0);
        tq.set_descs(vec![desc(0xffff_ffff_0000, 64, F_WRITE, 0)]);
        tq.publish(&[0]);
        assert_eq!(run(&mem, &tq).expect("ok"), 0);
        tq.set_avail_idx(500);
        assert!(run(&mem, &tq).is_err());
    }
}
