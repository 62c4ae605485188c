//! Descriptor chain walking: every chain a hostile driver can publish is
//! parsed under a device's limits, and the accepted ones are read and
//! written end to end.
#![no_main]

#[path = "common/mod.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use paddock_vmm::virtio::chain::{Chain, ChainLimits};
use virtio_queue::QueueT;

fuzz_target!(|input: &[u8]| {
    let Some((&limit_byte, input)) = input.split_first() else {
        return;
    };
    let mem = common::memory();
    let (tq, rest) = common::queue_from(&mem, 0x1000, input);
    common::place_data(&mem, rest);
    let limits = ChainLimits {
        max_descriptors: usize::from(limit_byte % 32) + 1,
        max_bytes: 1 << (u32::from(limit_byte) % 24),
    };
    let mut q = tq.queue();
    // At most one lap of the ring plus one: a hostile avail index must not
    // make this loop forever.
    for _ in 0..=common::QUEUE_SIZE {
        let Some(dc) = q.pop_descriptor_chain(&mem) else {
            break;
        };
        if let Ok(chain) = Chain::parse(dc, limits) {
            let mut buf = vec![0u8; chain.readable_len().min(1 << 16) as usize];
            let _ = chain.read_at(&mem, 0, &mut buf);
            let _ = chain.read_at(&mem, chain.readable_len() / 2, &mut buf);
            let fill = vec![0xa5u8; chain.writable_len().min(1 << 16) as usize];
            let _ = chain.write_at(&mem, 0, &fill);
            let _ = chain.write_at(&mem, chain.writable_len(), &[1]);
        }
    }
});
