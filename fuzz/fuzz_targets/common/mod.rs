//! Lays fuzz input out as a guest would: a split virtqueue's descriptor
//! table and available ring, and the bytes its buffers may point at, all in
//! guest memory. Nothing is made valid on purpose; the fuzzer learns which
//! addresses and lengths get past each check.

use paddock_vmm::memory::GuestMemory;
use paddock_vmm::virtio::testing::{guest_memory, TestQueue};
use vm_memory::{Bytes, GuestAddress};

pub const QUEUE_SIZE: u16 = 16;
const DESC_BYTES: usize = QUEUE_SIZE as usize * 16;
const AVAIL_BYTES: usize = 4 + QUEUE_SIZE as usize * 2;
/// Where the rest of the input lands: buffers the descriptors may name.
pub const DATA_BASE: u64 = 0x10_0000;

/// Fresh guest memory (16 MiB) for one run.
pub fn memory() -> GuestMemory {
    guest_memory()
}

/// Writes a queue at `base` from `input` and returns the queue and what of
/// the input was not used for it.
pub fn queue_from<'a, 'm>(
    mem: &'m GuestMemory,
    base: u64,
    input: &'a [u8],
) -> (TestQueue<'m>, &'a [u8]) {
    let tq = TestQueue::at(mem, QUEUE_SIZE, base);
    let (desc, rest) = input.split_at(input.len().min(DESC_BYTES));
    let (avail, rest) = rest.split_at(rest.len().min(AVAIL_BYTES));
    // Inside memory by construction; a failure here is the harness's bug.
    mem.write_slice(desc, GuestAddress(tq.desc_table))
        .expect("descriptor table");
    mem.write_slice(avail, GuestAddress(tq.avail))
        .expect("available ring");
    (tq, rest)
}

/// Puts `data` (up to 64 KiB of it) where descriptors may point.
pub fn place_data(mem: &GuestMemory, data: &[u8]) {
    let n = data.len().min(64 << 10);
    mem.write_slice(&data[..n], GuestAddress(DATA_BASE))
        .expect("data area");
}
