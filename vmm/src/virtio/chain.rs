//! A descriptor chain checked once, before any device reads it: every
//! buffer inside guest memory, device-readable buffers before
//! device-writable ones, a bounded count and size, and a proper end.

use crate::memory::GuestMemory;
use virtio_queue::DescriptorChain;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChainError {
    #[error("descriptor {index} ({addr:#x}+{len:#x}) lies outside guest memory")]
    OutOfMemory { index: usize, addr: u64, len: u32 },
    #[error("descriptor {index} is device-readable after a device-writable one")]
    WrongOrder { index: usize },
    #[error("chain has more than {max} descriptors")]
    TooManyDescriptors { max: usize },
    #[error("chain carries more than {max} bytes")]
    TooManyBytes { max: u64 },
    #[error("chain does not end: a loop, or a next index past the table")]
    Unterminated,
    #[error("access past the end of the chain's {dir} buffers")]
    ShortBuffer { dir: &'static str },
    #[error("guest memory access failed: {0}")]
    Memory(String),
}

#[derive(Clone, Copy, Debug)]
struct Segment {
    addr: GuestAddress,
    len: u32,
}

/// Limits a device puts on the chains it accepts.
#[derive(Clone, Copy, Debug)]
pub struct ChainLimits {
    pub max_descriptors: usize,
    pub max_bytes: u64,
}

#[derive(Debug)]
pub struct Chain {
    pub head: u16,
    readable: Vec<Segment>,
    writable: Vec<Segment>,
    readable_len: u64,
    writable_len: u64,
}

impl Chain {
    pub fn parse(
        chain: DescriptorChain<&GuestMemory>,
        limits: ChainLimits,
    ) -> Result<Chain, ChainError> {
        let head = chain.head_index();
        let mem: &GuestMemory = chain.memory();
        let mut out = Chain {
            head,
            readable: Vec::new(),
            writable: Vec::new(),
            readable_len: 0,
            writable_len: 0,
        };
        let mut last_has_next = false;
        let mut count = 0usize;
        for (index, desc) in chain.clone().enumerate() {
            count += 1;
            if count > limits.max_descriptors {
                return Err(ChainError::TooManyDescriptors {
                    max: limits.max_descriptors,
                });
            }
            let addr = desc.addr();
            let len = desc.len();
            if len > 0 && !mem.check_range(addr, len as usize) {
                return Err(ChainError::OutOfMemory {
                    index,
                    addr: addr.0,
                    len,
                });
            }
            let seg = Segment { addr, len };
            if desc.is_write_only() {
                out.writable.push(seg);
                out.writable_len += u64::from(len);
            } else {
                if !out.writable.is_empty() {
                    return Err(ChainError::WrongOrder { index });
                }
                out.readable.push(seg);
                out.readable_len += u64::from(len);
            }
            if out.readable_len + out.writable_len > limits.max_bytes {
                return Err(ChainError::TooManyBytes {
                    max: limits.max_bytes,
                });
            }
            last_has_next = desc.has_next();
        }
        // The iterator stops quietly on a loop (its TTL runs out) or on a bad
        // next index; either way the last descriptor it gave still says "next".
        if last_has_next {
            return Err(ChainError::Unterminated);
        }
        Ok(out)
    }

    pub fn readable_len(&self) -> u64 {
        self.readable_len
    }

    pub fn writable_len(&self) -> u64 {
        self.writable_len
    }

    /// Visits the (address, length) pieces covering `[offset, offset+len)`
    /// of the readable or writable bytes.
    fn for_each_piece(
        segs: &[Segment],
        total: u64,
        dir: &'static str,
        offset: u64,
        len: usize,
        mut f: impl FnMut(GuestAddress, usize, usize) -> Result<(), ChainError>,
    ) -> Result<(), ChainError> {
        if offset.checked_add(len as u64).is_none_or(|end| end > total) {
            return Err(ChainError::ShortBuffer { dir });
        }
        let mut skip = offset;
        let mut done = 0usize;
        for seg in segs {
            if done == len {
                break;
            }
            let seg_len = u64::from(seg.len);
            if skip >= seg_len {
                skip -= seg_len;
                continue;
            }
            let n = ((seg_len - skip) as usize).min(len - done);
            f(GuestAddress(seg.addr.0 + skip), n, done)?;
            done += n;
            skip = 0;
        }
        Ok(())
    }

    /// Copies readable bytes at `offset` into `buf`.
    pub fn read_at(
        &self,
        mem: &GuestMemory,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<(), ChainError> {
        let len = buf.len();
        Self::for_each_piece(
            &self.readable,
            self.readable_len,
            "readable",
            offset,
            len,
            |addr, n, at| {
                mem.read_slice(&mut buf[at..at + n], addr)
                    .map_err(|e| ChainError::Memory(e.to_string()))
            },
        )
    }

    /// Copies `data` into the writable bytes at `offset`.
    pub fn write_at(&self, mem: &GuestMemory, offset: u64, data: &[u8]) -> Result<(), ChainError> {
        Self::for_each_piece(
            &self.writable,
            self.writable_len,
            "writable",
            offset,
            data.len(),
            |addr, n, at| {
                mem.write_slice(&data[at..at + n], addr)
                    .map_err(|e| ChainError::Memory(e.to_string()))
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{desc, guest_memory, TestQueue, F_NEXT, F_WRITE};
    use super::*;

    const LIMITS: ChainLimits = ChainLimits {
        max_descriptors: 8,
        max_bytes: 1 << 20,
    };

    fn parse_one(descs: &[(u64, u32, u16, u16)]) -> Result<Chain, ChainError> {
        let mem = guest_memory();
        let tq = TestQueue::new(&mem, 16);
        tq.set_descs(descs.iter().map(|d| desc(d.0, d.1, d.2, d.3)).collect());
        tq.publish(&[0]);
        let mut q = tq.queue();
        let c = virtio_queue::QueueT::pop_descriptor_chain(&mut q, &mem).expect("chain");
        Chain::parse(c, LIMITS)
    }

    #[test]
    fn accepts_readable_then_writable_and_copies_across_segments() {
        let c = parse_one(&[
            (0x20000, 5, F_NEXT, 1),
            (0x30000, 5, F_NEXT, 2),
            (0x40000, 4, F_WRITE, 0),
        ]);
        let c = c.expect("valid chain");
        assert_eq!(c.readable_len(), 10);
        assert_eq!(c.writable_len(), 4);
    }

    #[test]
    fn rejects_buffers_outside_memory() {
        let e = parse_one(&[(0xffff_f000, 0x2000, 0, 0)]).expect_err("out of memory");
        assert!(matches!(e, ChainError::OutOfMemory { index: 0, .. }));
        // Wraps around the address space.
        let e = parse_one(&[(u64::MAX - 1, 16, 0, 0)]).expect_err("wrap");
        assert!(matches!(e, ChainError::OutOfMemory { .. }));
    }

    #[test]
    fn rejects_readable_after_writable() {
        let e =
            parse_one(&[(0x20000, 4, F_WRITE | F_NEXT, 1), (0x30000, 4, 0, 0)]).expect_err("order");
        assert_eq!(e, ChainError::WrongOrder { index: 1 });
    }

    #[test]
    fn rejects_loops_and_bad_next_indexes() {
        let e = parse_one(&[(0x20000, 4, F_NEXT, 1), (0x30000, 4, F_NEXT, 0)]);
        assert!(matches!(
            e,
            Err(ChainError::Unterminated) | Err(ChainError::TooManyDescriptors { .. })
        ));
        let e = parse_one(&[(0x20000, 4, F_NEXT, 1000)]).expect_err("bad next");
        assert_eq!(e, ChainError::Unterminated);
        // A self-loop on a small queue runs out of TTL.
        let e = parse_one(&[(0x20000, 4, F_NEXT, 0)]);
        assert!(e.is_err());
    }

    #[test]
    fn rejects_too_long_and_too_big() {
        let descs: Vec<_> = (0..10u16).map(|i| (0x20000, 4, F_NEXT, i + 1)).collect();
        let mut descs = descs;
        descs[9].2 = 0;
        let e = parse_one(&descs).expect_err("too many");
        assert_eq!(e, ChainError::TooManyDescriptors { max: 8 });
        let e = parse_one(&[(0x20000, 2 << 20, 0, 0)]).expect_err("too big");
        assert_eq!(e, ChainError::TooManyBytes { max: 1 << 20 });
    }

    #[test]
    fn reads_and_writes_are_bounded_by_the_chain() {
        let mem = guest_memory();
        let tq = TestQueue::new(&mem, 16);
        mem.write_slice(b"abcdef", GuestAddress(0x20000))
            .expect("w");
        tq.set_descs(vec![
            desc(0x20000, 3, F_NEXT, 1),
            desc(0x20003, 3, F_NEXT, 2),
            desc(0x50000, 8, F_WRITE, 0),
        ]);
        tq.publish(&[0]);
        let mut q = tq.queue();
        let c = virtio_queue::QueueT::pop_descriptor_chain(&mut q, &mem).expect("chain");
        let c = Chain::parse(c, LIMITS).expect("valid");
        let mut buf = [0u8; 4];
        c.read_at(&mem, 1, &mut buf).expect("read");
        assert_eq!(&buf, b"bcde");
        assert!(c.read_at(&mem, 4, &mut buf).is_err());
        c.write_at(&mem, 6, b"xy").expect("write");
        assert!(c.write_at(&mem, 7, b"xy").is_err());
        let mut out = [0u8; 2];
        mem.read_slice(&mut out, GuestAddress(0x50006)).expect("r");
        assert_eq!(&out, b"xy");
    }
}
