//! virtio-net from a hostile driver: transmit chains (direction, length,
//! header, placement) and receive buffers that frames from the tap must
//! fit, one queue each, from the same input.
#![no_main]

#[path = "common/mod.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use paddock_vmm::rate_limit::RateLimit;
use paddock_vmm::virtio::net::NetWorker;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::os::unix::net::UnixDatagram;
use vmm_sys_util::timerfd::TimerFd;

fuzz_target!(|input: &[u8]| {
    let Some((&frames, input)) = input.split_first() else {
        return;
    };
    let mem = common::memory();
    let (tx, rest) = common::queue_from(&mem, 0x1000, input);
    let (rx, rest) = common::queue_from(&mem, 0x8000, rest);
    common::place_data(&mem, rest);
    // A datagram pair stands in for the tap: one frame per read.
    let (dev, host) = UnixDatagram::pair().expect("socketpair");
    dev.set_nonblocking(true).expect("nonblocking");
    host.set_nonblocking(true).expect("nonblocking");
    // SAFETY: into_raw_fd hands over ownership of a valid descriptor.
    let tap = unsafe { std::fs::File::from_raw_fd(dev.into_raw_fd()) };
    let mut w = NetWorker::new(
        tap,
        TimerFd::new().expect("timerfd"),
        RateLimit::default(),
        Default::default(),
    );
    // Frames of the sizes the first byte picks, for the receive side.
    for i in 0..(frames % 4) {
        let len = 14 + usize::from(frames.wrapping_mul(i + 1)) * 6;
        let _ = host.send(&vec![i; len]);
    }
    let mut tq = tx.queue();
    let mut rq = rx.queue();
    // A fault (the device giving up on a broken ring) is a fine answer;
    // a panic or a hang is not.
    let _ = w.transmit(&mem, &mut tq);
    let _ = w.receive(&mem, &mut rq);
});
