//! The TPM's key derivation (KDFa, KDFe) and the hashes sessions use, all
//! over SHA-256 (the only hash this client speaks).

use ring::{digest, hmac};

pub const DIGEST_LEN: usize = 32;

pub fn sha256(parts: &[&[u8]]) -> [u8; DIGEST_LEN] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for p in parts {
        ctx.update(p);
    }
    let mut out = [0u8; DIGEST_LEN];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; DIGEST_LEN] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut ctx = hmac::Context::with_key(&key);
    for p in parts {
        ctx.update(p);
    }
    let mut out = [0u8; DIGEST_LEN];
    out.copy_from_slice(ctx.sign().as_ref());
    out
}

/// KDFa (TPM 2.0 Part 1, 11.4.10.2): counter-mode HMAC over
/// `counter || label || 0 || context_u || context_v || bits`.
pub fn kdfa(key: &[u8], label: &str, context_u: &[u8], context_v: &[u8], bits: u32) -> Vec<u8> {
    let want = (bits as usize).div_ceil(8);
    let mut out = Vec::with_capacity(want + DIGEST_LEN);
    let mut counter: u32 = 1;
    while out.len() < want {
        out.extend_from_slice(&hmac_sha256(
            key,
            &[
                &counter.to_be_bytes(),
                label.as_bytes(),
                &[0],
                context_u,
                context_v,
                &bits.to_be_bytes(),
            ],
        ));
        counter += 1;
    }
    out.truncate(want);
    out
}

/// KDFe (Part 1, 11.4.10.3), the ECDH one: `H(counter || Z || label || 0 ||
/// party_u || party_v)`.
pub fn kdfe(z: &[u8], label: &str, party_u: &[u8], party_v: &[u8], bits: u32) -> Vec<u8> {
    let want = (bits as usize).div_ceil(8);
    let mut out = Vec::with_capacity(want + DIGEST_LEN);
    let mut counter: u32 = 1;
    while out.len() < want {
        out.extend_from_slice(&sha256(&[
            &counter.to_be_bytes(),
            z,
            label.as_bytes(),
            &[0],
            party_u,
            party_v,
        ]));
        counter += 1;
    }
    out.truncate(want);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kdfa_gives_the_length_asked_and_depends_on_every_input() {
        let a = kdfa(b"k", "XOR", b"u", b"v", 300);
        assert_eq!(a.len(), 38);
        assert_ne!(a, kdfa(b"k2", "XOR", b"u", b"v", 300));
        assert_ne!(a, kdfa(b"k", "ATH", b"u", b"v", 300));
        assert_ne!(a, kdfa(b"k", "XOR", b"u2", b"v", 300));
        // The bit count is hashed in: a shorter request is not a prefix.
        assert_ne!(a[..32], kdfa(b"k", "XOR", b"u", b"v", 256)[..]);
    }
}
