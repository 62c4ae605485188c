//! Wrapping a disk key under the epoch secret: AES-256-GCM with a key
//! derived (HKDF-SHA256) from the epoch for that one disk, the disk's name
//! and the epoch's generation bound in as associated data.
//!
//! File format: "PDK1", generation (u64 BE), 12-byte nonce, ciphertext
//! with its 16-byte tag.

use super::secret::Secret;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};

const MAGIC: &[u8; 4] = b"PDK1";
const SALT: &[u8] = b"paddock disk-key wrap v1";
pub const HEADER_LEN: usize = 4 + 8 + NONCE_LEN;

#[derive(Debug, thiserror::Error)]
pub enum WrapError {
    #[error("not a wrapped key file (bad magic or length {0})")]
    Format(usize),
    #[error(
        "wrapped under epoch generation {file}, the key store is at {current}: this key was erased"
    )]
    Generation { file: u64, current: u64 },
    #[error("the wrapped key does not authenticate under this epoch (altered, or not ours)")]
    Authentication,
    #[error("no randomness from the kernel")]
    Random,
}

fn kek(epoch: &Secret<32>, name: &str) -> Result<LessSafeKey, WrapError> {
    struct Len;
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            32
        }
    }
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(epoch.bytes());
    let info = [name.as_bytes()];
    let okm = prk
        .expand(&info, Len)
        .map_err(|_| WrapError::Authentication)?;
    let mut key = Secret::<32>::zero();
    okm.fill(key.bytes_mut())
        .map_err(|_| WrapError::Authentication)?;
    let unbound =
        UnboundKey::new(&AES_256_GCM, key.bytes()).map_err(|_| WrapError::Authentication)?;
    Ok(LessSafeKey::new(unbound))
}

fn aad(name: &str, generation: u64) -> Vec<u8> {
    let mut a = MAGIC.to_vec();
    a.extend_from_slice(name.as_bytes());
    a.extend_from_slice(&generation.to_be_bytes());
    a
}

pub fn wrap<const N: usize>(
    epoch: &Secret<32>,
    generation: u64,
    name: &str,
    key: &Secret<N>,
) -> Result<Vec<u8>, WrapError> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| WrapError::Random)?;
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&generation.to_be_bytes());
    out.extend_from_slice(&nonce);
    let mut body = key.bytes().to_vec();
    kek(epoch, name)?
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad(name, generation)),
            &mut body,
        )
        .map_err(|_| WrapError::Authentication)?;
    out.extend_from_slice(&body);
    body.fill(0);
    Ok(out)
}

/// What `rewrap` made of a wrapped key file.
pub enum Rewrapped {
    Done(Vec<u8>),
    /// It does not open under the epoch it was to be carried from.
    Unreadable(WrapError),
}

/// Re-wraps a wrapped key of either size the store keeps (a disk key, 64
/// bytes; the recovery backup key, 32) under another epoch. An error is a
/// failure to wrap under the new one; a file that does not open under the
/// old one is `Unreadable`.
pub fn rewrap(
    from: &Secret<32>,
    from_generation: u64,
    to: &Secret<32>,
    to_generation: u64,
    name: &str,
    file: &[u8],
) -> Result<Rewrapped, WrapError> {
    fn carry<const N: usize>(
        from: (&Secret<32>, u64),
        to: (&Secret<32>, u64),
        name: &str,
        file: &[u8],
    ) -> Result<Rewrapped, WrapError> {
        match unwrap::<N>(from.0, from.1, name, file) {
            Ok(key) => wrap(to.0, to.1, name, &key).map(Rewrapped::Done),
            Err(e) => Ok(Rewrapped::Unreadable(e)),
        }
    }
    let (from, to) = ((from, from_generation), (to, to_generation));
    match file.len().checked_sub(HEADER_LEN + AES_256_GCM.tag_len()) {
        Some(64) => carry::<64>(from, to, name, file),
        Some(32) => carry::<32>(from, to, name, file),
        _ => Ok(Rewrapped::Unreadable(WrapError::Format(file.len()))),
    }
}

/// The generation a wrapped key file says it was made under.
pub fn generation_of(file: &[u8]) -> Option<u64> {
    if file.len() < HEADER_LEN || &file[..4] != MAGIC {
        return None;
    }
    Some(u64::from_be_bytes(file[4..12].try_into().ok()?))
}

pub fn unwrap<const N: usize>(
    epoch: &Secret<32>,
    generation: u64,
    name: &str,
    file: &[u8],
) -> Result<Secret<N>, WrapError> {
    if file.len() != HEADER_LEN + N + AES_256_GCM.tag_len() || &file[..4] != MAGIC {
        return Err(WrapError::Format(file.len()));
    }
    let file_gen = generation_of(file).ok_or(WrapError::Format(file.len()))?;
    if file_gen != generation {
        return Err(WrapError::Generation {
            file: file_gen,
            current: generation,
        });
    }
    let nonce: [u8; NONCE_LEN] = file[12..HEADER_LEN]
        .try_into()
        .map_err(|_| WrapError::Format(file.len()))?;
    let mut body = file[HEADER_LEN..].to_vec();
    let plain = kek(epoch, name)?
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad(name, generation)),
            &mut body,
        )
        .map_err(|_| WrapError::Authentication)?;
    let mut key = Secret::<N>::zero();
    key.bytes_mut().copy_from_slice(&plain[..N]);
    body.fill(0);
    Ok(key)
}

/// A key for data other than the disk itself (its env secrets), derived
/// from the disk key so it is erased with it.
fn data_key<const N: usize>(disk_key: &Secret<N>, name: &str) -> Result<LessSafeKey, WrapError> {
    let mut ikm = Secret::<32>::zero();
    ikm.bytes_mut().copy_from_slice(&paddock_tpm::kdf::sha256(&[
        disk_key.bytes(),
        b"paddock data v1",
    ]));
    kek(&ikm, name)
}

/// Nonce, then ciphertext with its tag.
pub fn seal<const N: usize>(
    disk_key: &Secret<N>,
    name: &str,
    data: &[u8],
) -> Result<Vec<u8>, WrapError> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| WrapError::Random)?;
    let mut body = data.to_vec();
    data_key(disk_key, name)?
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(name.as_bytes()),
            &mut body,
        )
        .map_err(|_| WrapError::Authentication)?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&body);
    Ok(out)
}

pub fn open_sealed<const N: usize>(
    disk_key: &Secret<N>,
    name: &str,
    sealed: &[u8],
) -> Result<Vec<u8>, WrapError> {
    if sealed.len() < NONCE_LEN + AES_256_GCM.tag_len() {
        return Err(WrapError::Format(sealed.len()));
    }
    let nonce: [u8; NONCE_LEN] = sealed[..NONCE_LEN]
        .try_into()
        .map_err(|_| WrapError::Format(sealed.len()))?;
    let mut body = sealed[NONCE_LEN..].to_vec();
    let plain = data_key(disk_key, name)?
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(name.as_bytes()),
            &mut body,
        )
        .map_err(|_| WrapError::Authentication)?;
    Ok(plain.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(b: u8) -> Secret<32> {
        Secret::from([b; 32])
    }

    #[test]
    fn a_key_unwraps_only_under_its_epoch_name_and_generation() {
        let key = Secret::<64>::from([9; 64]);
        let w = wrap(&epoch(1), 5, "ws-a", &key).expect("wrap");
        let back: Secret<64> = unwrap(&epoch(1), 5, "ws-a", &w).expect("unwrap");
        assert_eq!(back.bytes(), key.bytes());
        assert!(matches!(
            unwrap::<64>(&epoch(2), 5, "ws-a", &w),
            Err(WrapError::Authentication)
        ));
        assert!(matches!(
            unwrap::<64>(&epoch(1), 5, "ws-b", &w),
            Err(WrapError::Authentication)
        ));
        assert!(matches!(
            unwrap::<64>(&epoch(1), 6, "ws-a", &w),
            Err(WrapError::Generation {
                file: 5,
                current: 6
            })
        ));
        let mut bad = w.clone();
        bad[30] ^= 1;
        assert!(unwrap::<64>(&epoch(1), 5, "ws-a", &bad).is_err());
        assert!(unwrap::<64>(&epoch(1), 5, "ws-a", &w[..20]).is_err());
        // Data sealed under the disk key opens only with it, for its name.
        let sealed = seal(&key, "ws-a", b"SECRET=1").expect("seal");
        assert!(!sealed.windows(8).any(|w| w == b"SECRET=1"));
        assert_eq!(
            open_sealed(&key, "ws-a", &sealed).expect("open"),
            b"SECRET=1"
        );
        assert!(open_sealed(&Secret::<64>::from([8; 64]), "ws-a", &sealed).is_err());
        assert!(open_sealed(&key, "ws-b", &sealed).is_err());
        assert!(open_sealed(&key, "ws-a", &sealed[..10]).is_err());
        // Two wraps of one key differ (fresh nonce).
        assert_ne!(w, wrap(&epoch(1), 5, "ws-a", &key).expect("wrap"));
    }

    #[test]
    fn a_rewrap_carries_keys_of_either_size_to_the_next_epoch() {
        let disk = Secret::<64>::from([9; 64]);
        let short = Secret::<32>::from([7; 32]);
        let done = |r: Result<Rewrapped, WrapError>| match r {
            Ok(Rewrapped::Done(f)) => f,
            Ok(Rewrapped::Unreadable(e)) => panic!("unreadable: {e}"),
            Err(e) => panic!("{e}"),
        };
        let w = wrap(&epoch(1), 5, "ws-a", &disk).expect("wrap");
        let r = done(rewrap(&epoch(1), 5, &epoch(2), 6, "ws-a", &w));
        let back: Secret<64> = unwrap(&epoch(2), 6, "ws-a", &r).expect("unwrap");
        assert_eq!(back.bytes(), disk.bytes());
        let w = wrap(&epoch(1), 5, "backup-recovery", &short).expect("wrap");
        let r = done(rewrap(&epoch(1), 5, &epoch(2), 6, "backup-recovery", &w));
        let back: Secret<32> = unwrap(&epoch(2), 6, "backup-recovery", &r).expect("unwrap");
        assert_eq!(back.bytes(), short.bytes());
        // Under the wrong epoch, or of a size the store never makes.
        assert!(matches!(
            rewrap(&epoch(3), 5, &epoch(2), 6, "backup-recovery", &w),
            Ok(Rewrapped::Unreadable(WrapError::Authentication))
        ));
        assert!(matches!(
            rewrap(&epoch(1), 5, &epoch(2), 6, "x", &w[..w.len() - 1]),
            Ok(Rewrapped::Unreadable(WrapError::Format(_)))
        ));
    }
}
