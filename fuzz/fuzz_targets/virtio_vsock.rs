//! The vsock packet path: whatever a hostile driver puts on the tx queue
//! (headers, ops, credit, data) goes through the muxer, which may open a
//! connection to a host socket and answer on the rx queue.
#![no_main]

#[path = "common/mod.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use paddock_vmm::virtio::testing::{desc, F_WRITE};
use paddock_vmm::virtio::vsock::muxer::Muxer;
use paddock_vmm::virtio::vsock::{RX_QUEUE, TX_QUEUE};
use paddock_vmm::virtio::worker::{DeviceWorker, WorkerContext};
use paddock_vmm::virtio::Interrupt;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use vmm_sys_util::eventfd::EventFd;

/// A host port the guest can reach: its listener never accepts, so data the
/// guest sends fills the socket and then the muxer's own buffer.
const HOST_PORT: u32 = 1024;

fn scratch_dir() -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let d = std::env::temp_dir().join(format!(
        "paddock-fuzz-vsock-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

fuzz_target!(|input: &[u8]| {
    let mem = common::memory();
    let rx = paddock_vmm::virtio::testing::TestQueue::at(&mem, common::QUEUE_SIZE, 0x1_0000);
    let (tx, rest) = common::queue_from(&mem, 0x2_0000, input);
    let ev = paddock_vmm::virtio::testing::TestQueue::at(&mem, common::QUEUE_SIZE, 0x3_0000);
    common::place_data(&mem, rest);
    // The rx queue is the well-behaved part: buffers for the muxer's replies.
    for i in 0..common::QUEUE_SIZE {
        rx.set_desc(i, desc(0x40_0000 + u64::from(i) * 4096, 4096, F_WRITE, 0));
    }
    rx.publish(&(0..common::QUEUE_SIZE).collect::<Vec<_>>());

    let dir = scratch_dir();
    let uds = dir.join("vm.sock");
    let listener = UnixListener::bind(&uds).expect("bind the VM socket");
    let host = UnixListener::bind(format!("{}_{HOST_PORT}", uds.display())).expect("bind");
    let irq = Interrupt::new(EventFd::new(libc::EFD_NONBLOCK).expect("eventfd"));
    let mut ctx = WorkerContext::for_test(
        mem.clone(),
        vec![rx.queue(), tx.queue(), ev.queue()],
        irq,
    );
    let mut mux = Muxer::new(3, uds, listener);
    if mux.start(&mut ctx).is_ok() {
        // Twice: replies queued by the first pass go out in the second.
        for _ in 0..2 {
            if mux.queue_notified(TX_QUEUE, &mut ctx).is_err()
                || mux.queue_notified(RX_QUEUE, &mut ctx).is_err()
            {
                break;
            }
            for (token, events) in ctx.ready() {
                if mux.fd_ready(token, events, &mut ctx).is_err() {
                    break;
                }
            }
        }
    }
    drop(host);
    let _ = std::fs::remove_dir_all(&dir);
});
