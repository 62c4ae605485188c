//! A deterministic byte stream both ends of a transfer can generate, so a
//! test checks a checksum without shipping the data.

use sha2::{Digest, Sha256};

pub struct Pattern {
    state: u64,
}

impl Pattern {
    pub fn new(seed: u64) -> Self {
        // xorshift64 must not start at zero.
        Pattern {
            state: seed ^ 0x9e37_79b9_7f4a_7c15,
        }
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let mut x = self.state;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.state = x;
            let bytes = x.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

/// SHA-256 (hex) of the first `len` bytes of the pattern for `seed`.
pub fn pattern_sha256(seed: u64, len: u64) -> String {
    let mut p = Pattern::new(seed);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        p.fill(&mut buf[..n]);
        h.update(&buf[..n]);
        left -= n as u64;
    }
    hex(&h.finalize())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunking_does_not_change_the_stream() {
        let mut a = Pattern::new(7);
        let mut whole = vec![0u8; 1000];
        a.fill(&mut whole);
        let mut b = Pattern::new(7);
        let mut parts = vec![0u8; 1000];
        for c in parts.chunks_mut(64) {
            b.fill(c);
        }
        assert_eq!(whole, parts);
        assert_ne!(pattern_sha256(1, 100), pattern_sha256(2, 100));
    }
}
