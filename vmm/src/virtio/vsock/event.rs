//! The event queue: the one event we send is the transport reset a
//! restored device owes its driver (virtio 1.2, 5.10.6.5): every
//! connection the guest had is gone, and the guest must drop them and
//! re-read its CID.

use super::EVENT_QUEUE;
use crate::virtio::chain::{Chain, ChainLimits};
use crate::virtio::worker::{DeviceFault, WorkerContext};
use virtio_queue::QueueT;

/// VIRTIO_VSOCK_EVENT_TRANSPORT_RESET.
const TRANSPORT_RESET: u32 = 0;
const LIMITS: ChainLimits = ChainLimits {
    max_descriptors: 4,
    max_bytes: 4096,
};

/// The event queue's available index: the driver bumps it when it posts a
/// buffer, which it does right after handling an event.
pub fn posted(ctx: &WorkerContext) -> Option<u16> {
    let queue = ctx.queues.get(EVENT_QUEUE)?;
    queue
        .avail_idx(&ctx.mem, std::sync::atomic::Ordering::Acquire)
        .ok()
        .map(|w| w.0)
}

/// Sends the reset in the driver's first event buffer. Returns false if
/// the driver had none posted (it then finds its sockets reset anyway, the
/// first time it uses them).
pub fn send_transport_reset(ctx: &mut WorkerContext) -> Result<bool, DeviceFault> {
    let WorkerContext {
        mem,
        queues,
        interrupt,
        ..
    } = ctx;
    let Some(queue) = queues.get_mut(EVENT_QUEUE) else {
        return Ok(false);
    };
    let Some(chain) = queue.pop_descriptor_chain(&*mem) else {
        return Ok(false);
    };
    let head = chain.head_index();
    let len = match Chain::parse(chain, LIMITS) {
        Ok(c) if c.writable_len() >= 4 => c
            .write_at(mem, 0, &TRANSPORT_RESET.to_le_bytes())
            .map_or(0, |()| 4),
        _ => 0,
    };
    queue
        .add_used(&*mem, head, len)
        .map_err(|e| DeviceFault(format!("event queue's used ring: {e}")))?;
    interrupt.signal_used_queue();
    Ok(len == 4)
}
