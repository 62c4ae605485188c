//! The TPM backup key: an HMAC key the TPM derives from its owner seed and
//! a fixed template whose policy is the epoch index's in this boot, so the
//! same TPM re-creates it after a reflash (which wipes the key store but
//! not the TPM) in a boot the same policy holds in, and nothing else can
//! use it. A backup's data key is wrapped under HMAC(key, label ||
//! context), the context chosen per backup and kept in it.

use super::*;

/// The primary's `unique` field: part of its template, so this key is
/// unrelated to any other primary made under the same policy.
const UNIQUE: &[u8] = b"paddock backup v1";
/// Prefixed to the context: an HMAC made with this key for anything else
/// (there is nothing else today) never equals a backup key.
const LABEL: &[u8] = b"paddock backup v1";

impl TpmRoot {
    /// The backup key for `context` in this boot state: the TPM's HMAC
    /// under the epoch index's policy, the answer encrypted on the bus.
    pub fn backup_key(&mut self, context: &[u8; 32]) -> Result<Secret<32>, KeyError> {
        let digest = self.current_policy()?;
        let key = self
            .tpm
            .create_primary_hmac(&digest, UNIQUE)
            .map_err(tpm_err("deriving the TPM backup key"))?;
        let mut data = LABEL.to_vec();
        data.extend_from_slice(context);
        let derived = self.under_policy(SA_ENCRYPT, |tpm, auths| {
            tpm.hmac(key.handle, &data, auths).map(Secret::from)
        });
        // A TPM without a resource manager (swtpm's socket) keeps what is
        // not flushed, and has room for three objects.
        if let Err(e) = self.tpm.flush(key.handle) {
            log::warn!("disk keys: flushing the backup key's handle: {e}");
        }
        derived
    }
}
