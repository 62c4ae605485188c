//! virtio-blk request handling: headers, sector ranges, data and status
//! descriptors, all from a hostile driver, against a small scratch disk.
#![no_main]

#[path = "common/mod.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use paddock_vmm::virtio::block::{BlockWorker, Disk};
use paddock_vmm::virtio::Interrupt;
use std::os::fd::FromRawFd;
use vmm_sys_util::eventfd::EventFd;

/// A 64 KiB disk in memory (memfd), fresh for each run.
fn scratch_disk(read_only: bool) -> Disk {
    // SAFETY: memfd_create with a NUL-terminated name; the fd is owned by
    // the File made from it.
    let fd = unsafe { libc::memfd_create(c"fuzz-disk".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0, "memfd_create failed");
    // SAFETY: fd is a fresh descriptor nothing else owns.
    let file = unsafe { std::fs::File::from_raw_fd(fd) };
    file.set_len(64 << 10).expect("size the scratch disk");
    Disk::new(file, read_only, "fuzz").expect("scratch disk")
}

fuzz_target!(|input: &[u8]| {
    let Some((&flags, input)) = input.split_first() else {
        return;
    };
    let mem = common::memory();
    let (tq, rest) = common::queue_from(&mem, 0x1000, input);
    common::place_data(&mem, rest);
    let mut worker = BlockWorker::new(scratch_disk(flags & 1 == 1));
    let irq = Interrupt::new(EventFd::new(libc::EFD_NONBLOCK).expect("eventfd"));
    let mut q = tq.queue();
    // A fault (the device giving up on a broken ring) is a fine answer;
    // a panic or a hang is not.
    let _ = worker.handle_queue(&mem, &mut q, &irq);
});
