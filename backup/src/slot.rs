//! Key slots: the backup's data key sealed under each key that may open it.

use crate::error::BackupError;
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

/// HKDF's info for a slot key is this and the kind: a TPM-derived key
/// given as a recovery key (or the other way round) opens nothing.
const SLOT_KEY_INFO: &[u8] = b"paddock backup v1 slot key ";
/// A slot's associated data is this and the kind. It cannot bind the
/// header (the slot is part of it); the chunks bind the header instead.
const SLOT_AD: &[u8] = b"paddock backup v1 slot\0";
pub(crate) const DATA_KEY_LEN: usize = 32;
pub(crate) const SEALED_LEN: usize = DATA_KEY_LEN + 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlotKind {
    /// Opened by a key the box's TPM derives from the slot's context: only
    /// this box, in the boot state it had when it made the backup.
    Tpm,
    /// Opened by the admin's recovery secret: any box, e.g. a new one.
    Recovery,
}

impl SlotKind {
    pub(crate) fn label(self) -> &'static str {
        match self {
            SlotKind::Tpm => "tpm",
            SlotKind::Recovery => "recovery",
        }
    }
}

impl std::fmt::Display for SlotKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// One key the writer seals the data key under. `key` is wiped on drop.
pub struct SlotKey {
    pub kind: SlotKind,
    /// Stored in the slot in clear; the TPM's key is derived from it, so
    /// it is made first (`new_context`).
    pub context: [u8; 32],
    pub key: [u8; 32],
}

impl Drop for SlotKey {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

impl std::fmt::Debug for SlotKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotKey")
            .field("kind", &self.kind)
            .field("key", &"(hidden)")
            .finish_non_exhaustive()
    }
}

/// A fresh slot context from the system's random number generator.
pub fn new_context() -> Result<[u8; 32], BackupError> {
    let mut c = [0u8; 32];
    SystemRandom::new()
        .fill(&mut c)
        .map_err(|_| BackupError::Random)?;
    Ok(c)
}

/// A key slot as a backup's header holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    pub kind: SlotKind,
    /// What the caller derives the slot's key from (the TPM slot's key is
    /// the TPM's derivation from it).
    pub context: [u8; 32],
    pub(crate) nonce: [u8; 12],
    pub(crate) sealed: [u8; SEALED_LEN],
}

/// The backup's data key, wiped on drop.
pub(crate) struct DataKey(Zeroizing<[u8; DATA_KEY_LEN]>);

impl DataKey {
    pub(crate) fn random() -> Result<DataKey, BackupError> {
        let mut k = DataKey(Zeroizing::new([0u8; DATA_KEY_LEN]));
        SystemRandom::new()
            .fill(&mut k.0[..])
            .map_err(|_| BackupError::Random)?;
        Ok(k)
    }

    /// The AEAD key the chunks are sealed with (ring's copy is opaque).
    pub(crate) fn aead_key(&self) -> Result<LessSafeKey, BackupError> {
        UnboundKey::new(&AES_256_GCM, &self.0[..])
            .map(LessSafeKey::new)
            .map_err(|_| BackupError::Crypto("making the data key"))
    }
}

/// The slot key never exists as bytes here: HKDF's output goes straight
/// into ring's key.
fn slot_key(
    kind: SlotKind,
    context: &[u8; 32],
    key: &[u8; 32],
) -> Result<LessSafeKey, BackupError> {
    let info = [SLOT_KEY_INFO, kind.label().as_bytes()];
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, context).extract(key);
    let okm = prk
        .expand(&info, &AES_256_GCM)
        .map_err(|_| BackupError::Crypto("deriving a slot key"))?;
    Ok(LessSafeKey::new(UnboundKey::from(okm)))
}

fn slot_ad(kind: SlotKind) -> Vec<u8> {
    [SLOT_AD, kind.label().as_bytes()].concat()
}

/// Seals `data` under `k` in a new slot with a random nonce.
pub(crate) fn seal(k: &SlotKey, data: &DataKey) -> Result<Slot, BackupError> {
    let mut nonce = [0u8; 12];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| BackupError::Random)?;
    let key = slot_key(k.kind, &k.context, &k.key)?;
    let mut sealed = [0u8; SEALED_LEN];
    sealed[..DATA_KEY_LEN].copy_from_slice(&data.0[..]);
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(slot_ad(k.kind)),
            &mut sealed[..DATA_KEY_LEN],
        )
        .map_err(|_| BackupError::Crypto("sealing the data key"))?;
    sealed[DATA_KEY_LEN..].copy_from_slice(tag.as_ref());
    Ok(Slot {
        kind: k.kind,
        context: k.context,
        nonce,
        sealed,
    })
}

/// The data key in `slot`, if `key` is the slot's key.
pub(crate) fn open(slot: &Slot, key: &[u8; 32]) -> Result<DataKey, BackupError> {
    let k = slot_key(slot.kind, &slot.context, key)?;
    let mut buf = Zeroizing::new(slot.sealed);
    let plain = k
        .open_in_place(
            Nonce::assume_unique_for_key(slot.nonce),
            Aad::from(slot_ad(slot.kind)),
            &mut buf[..],
        )
        .map_err(|_| BackupError::WrongKey(slot.kind))?;
    let mut data = DataKey(Zeroizing::new([0u8; DATA_KEY_LEN]));
    if plain.len() != DATA_KEY_LEN {
        return Err(BackupError::WrongKey(slot.kind));
    }
    data.0.copy_from_slice(plain);
    Ok(data)
}

/// Keeps the `aead` import honest about which algorithm the tag length
/// above assumes.
const _: () = assert!(SEALED_LEN - DATA_KEY_LEN == aead::MAX_TAG_LEN);
