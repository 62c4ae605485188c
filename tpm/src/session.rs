//! Authorization sessions: their nonces and key, the command and response
//! HMACs, and XOR parameter encryption (Part 1, 19 and 21).

use crate::kdf::{hmac_sha256, kdfa};

/// Bytes of each nonce we send; the TPM answers with its own of this size.
pub const NONCE_LEN: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionKind {
    Hmac,
    Policy,
    /// Computes a policy digest without authorizing anything.
    Trial,
}

impl SessionKind {
    pub(crate) fn code(self) -> u8 {
        match self {
            SessionKind::Hmac => 0x00,
            SessionKind::Policy => 0x01,
            SessionKind::Trial => 0x03,
        }
    }
}

/// A session the TPM holds for us. Salted sessions have a key (from an
/// ECDH exchange with the TPM's primary key) that keys their HMACs and
/// parameter encryption; unsalted policy sessions have none.
pub struct Session {
    pub(crate) handle: u32,
    pub(crate) kind: SessionKind,
    pub(crate) key: Vec<u8>,
    pub(crate) nonce_caller: Vec<u8>,
    pub(crate) nonce_tpm: Vec<u8>,
    /// False once the TPM has flushed it (a command without
    /// continueSession, or a flush).
    pub(crate) open: bool,
}

impl Session {
    pub fn handle(&self) -> u32 {
        self.handle
    }
    pub fn kind(&self) -> SessionKind {
        self.kind
    }
    pub fn is_salted(&self) -> bool {
        !self.key.is_empty()
    }

    /// The key its HMACs and masks use: session key, then the authorized
    /// entity's auth value when that value is part of the proof.
    pub(crate) fn hmac_key(&self, auth_value: &[u8]) -> Vec<u8> {
        let mut k = self.key.clone();
        k.extend_from_slice(auth_value);
        k
    }

    /// Command HMAC: `HMAC(key, cpHash || nonceCaller || nonceTPM ||
    /// [decrypt/encrypt sessions' nonceTPM] || attributes)`.
    pub(crate) fn command_hmac(
        &self,
        auth_value: &[u8],
        cp_hash: &[u8],
        extra_nonces: &[u8],
        attrs: u8,
    ) -> [u8; 32] {
        hmac_sha256(
            &self.hmac_key(auth_value),
            &[
                cp_hash,
                &self.nonce_caller,
                &self.nonce_tpm,
                extra_nonces,
                &[attrs],
            ],
        )
    }

    /// Response HMAC: `HMAC(key, rpHash || nonceTPM || nonceCaller || attributes)`.
    pub(crate) fn response_hmac(&self, auth_value: &[u8], rp_hash: &[u8], attrs: u8) -> [u8; 32] {
        hmac_sha256(
            &self.hmac_key(auth_value),
            &[rp_hash, &self.nonce_tpm, &self.nonce_caller, &[attrs]],
        )
    }

    /// XOR parameter obfuscation: the mask is KDFa over the session's key
    /// with the newer nonce first. Applying it twice restores the data.
    pub(crate) fn xor(&self, auth_value: &[u8], newer: &[u8], older: &[u8], data: &mut [u8]) {
        let mask = kdfa(
            &self.hmac_key(auth_value),
            "XOR",
            newer,
            older,
            (data.len() * 8) as u32,
        );
        for (d, m) in data.iter_mut().zip(mask) {
            *d ^= m;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_xor_mask_undoes_itself_and_depends_on_the_key() {
        let s = Session {
            handle: 0x0200_0000,
            kind: SessionKind::Hmac,
            key: vec![7; 32],
            nonce_caller: vec![1; 32],
            nonce_tpm: vec![2; 32],
            open: true,
        };
        let mut data = *b"an epoch secret of thirty-two b.";
        s.xor(b"", &[1; 32], &[2; 32], &mut data);
        assert_ne!(&data, b"an epoch secret of thirty-two b.");
        let masked = data;
        s.xor(b"", &[1; 32], &[2; 32], &mut data);
        assert_eq!(&data, b"an epoch secret of thirty-two b.");
        let mut other = *b"an epoch secret of thirty-two b.";
        s.xor(b"auth", &[1; 32], &[2; 32], &mut other);
        assert_ne!(other, masked);
    }
}
