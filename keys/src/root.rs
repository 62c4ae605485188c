//! Where the epoch secret lives: in TPM NV memory, readable only under a
//! policy (a boot state the image key signed, with PCR 7 as it was; or,
//! for images without signatures, this boot state's raw PCRs) or with the
//! recovery value; or, when the operator allowed it on a box without a
//! TPM, in a file.

use super::secret::Secret;
use super::signed::{self, SignedImages, BOUND_PCRS, POLICY_REF, SIGNED_PCRS};
use super::KeyError;
use paddock_tpm::consts::*;
use paddock_tpm::transport::Device;
use paddock_tpm::{policy, Auth, EccKey, PcrSelection, SessionKind, Tpm, TpmError};
use std::path::PathBuf;

/// The owner NV index holding the epoch: generation (u64 BE) + secret.
pub const NV_INDEX: u32 = 0x0150_0A00;
const EPOCH_LEN: u16 = 40;
/// Firmware and boot loader measurements: PCR 4 holds the hash of the UKI
/// (kernel, initramfs, command line, all in one signed file) as the
/// firmware ran it; PCR 7 the Secure Boot state and keys.
pub const DEFAULT_PCRS: &[u8] = &[4, 7];
pub const TPM_DEVICE: &str = "/dev/tpmrm0";

pub struct Epoch {
    pub generation: u64,
    pub secret: Secret<32>,
}

impl Epoch {
    pub fn fresh(generation: u64) -> Result<Epoch, KeyError> {
        Ok(Epoch {
            generation,
            secret: Secret::random().map_err(|_| KeyError::Random)?,
        })
    }
    fn encode(&self) -> Secret<40> {
        let mut b = Secret::<40>::zero();
        b.bytes_mut()[..8].copy_from_slice(&self.generation.to_be_bytes());
        b.bytes_mut()[8..].copy_from_slice(self.secret.bytes());
        b
    }
    pub(super) fn decode(b: &[u8]) -> Result<Epoch, KeyError> {
        if b.len() != EPOCH_LEN as usize {
            return Err(KeyError::Corrupt(format!(
                "the epoch record is {} bytes, not {EPOCH_LEN}",
                b.len()
            )));
        }
        let mut secret = Secret::<32>::zero();
        secret.bytes_mut().copy_from_slice(&b[8..]);
        let mut g = [0u8; 8];
        g.copy_from_slice(&b[..8]);
        Ok(Epoch {
            generation: u64::from_be_bytes(g),
            secret,
        })
    }
}

pub struct TpmRoot {
    tpm: Tpm,
    key: EccKey,
    /// The PCRs bound as they are at sealing: the raw boot state, or with
    /// `signed`, PCR 7 beside the image key's authorization.
    pcrs: PcrSelection,
    /// Sealed to the images this key signs (PolicyAuthorize), or None.
    signed: Option<SignedImages>,
    /// The booted image's key and signatures: what a re-seal adopts.
    offered: Option<SignedImages>,
}

fn tpm_err(what: &'static str) -> impl FnOnce(TpmError) -> KeyError {
    move |source| KeyError::Tpm { what, source }
}

impl TpmRoot {
    /// Opens the TPM with the binding a store records: `signed` for one
    /// sealed to signed images (then `pcrs` are the bound ones), None for
    /// one sealed to raw PCRs. `offered` is what this image brings.
    pub fn open(
        source: &super::TpmSource,
        pcrs: &[u8],
        signed: Option<SignedImages>,
        offered: Option<SignedImages>,
    ) -> Result<TpmRoot, KeyError> {
        let transport: Box<dyn paddock_tpm::transport::Transport> = match source {
            super::TpmSource::Device(p) => {
                Box::new(Device::open(p).map_err(tpm_err("opening the TPM"))?)
            }
            super::TpmSource::Socket(p) => Box::new(
                paddock_tpm::transport::Stream::connect(p).map_err(tpm_err("opening the TPM"))?,
            ),
        };
        let mut tpm = Tpm::new(transport);
        let key = tpm
            .create_primary_ecc()
            .map_err(tpm_err("deriving the TPM's storage key"))?;
        let pcrs = PcrSelection::new(pcrs).map_err(tpm_err("choosing PCRs"))?;
        Ok(TpmRoot {
            tpm,
            key,
            pcrs,
            signed,
            offered,
        })
    }

    /// The image key the store is sealed for, if it is.
    pub fn signed(&self) -> Option<&SignedImages> {
        self.signed.as_ref()
    }

    /// PCR 11 now.
    fn signed_value(&mut self) -> Result<[u8; 32], KeyError> {
        let sel = PcrSelection::new(SIGNED_PCRS).map_err(tpm_err("choosing PCRs"))?;
        let values = self.tpm.pcr_read(&sel).map_err(tpm_err("reading PCR 11"))?;
        values
            .first()
            .copied()
            .ok_or_else(|| KeyError::Corrupt("the TPM returned no PCR 11".into()))
    }

    /// Switches the next seal to the booted image's key when it signed this
    /// boot state. Returns why not otherwise (an unsigned image, a direct
    /// kernel boot): the store then stays sealed to the raw PCRs.
    pub fn adopt_offered(&mut self) -> Result<(), String> {
        let Some(offered) = self.offered.clone() else {
            return Err("this image carries no image key".into());
        };
        let value = self.signed_value().map_err(|e| e.to_string())?;
        if offered.for_value(&value).is_none() {
            return Err(format!(
                "none of the {} signature(s) on the ESP is for this boot (PCR 11 {})",
                offered.signatures.len(),
                signed::hex(&value)
            ));
        }
        self.pcrs = PcrSelection::new(BOUND_PCRS).map_err(|e| e.to_string())?;
        self.signed = Some(offered);
        Ok(())
    }

    pub fn key_name(&self) -> &[u8] {
        &self.key.name
    }

    pub fn pcrs(&self) -> Vec<u8> {
        self.pcrs.pcrs()
    }

    /// The index's policy: the raw PCRs as they are now, or the image
    /// key's authorization then the bound PCRs as they are now.
    fn current_policy(&mut self) -> Result<[u8; 32], KeyError> {
        let values = self
            .tpm
            .pcr_read(&self.pcrs)
            .map_err(tpm_err("reading the PCRs"))?;
        Ok(match &self.signed {
            None => policy::pcr_policy_digest(&self.pcrs, &values),
            Some(images) => policy::pcr_policy_after(
                &policy::authorize_digest(&images.key.name(), POLICY_REF),
                &self.pcrs,
                &values,
            ),
        })
    }

    /// Runs `f` under the index's policy (see `current_policy`).
    fn under_policy<T>(
        &mut self,
        encrypt: u8,
        f: impl FnOnce(&mut Tpm, &mut [Auth]) -> Result<T, TpmError>,
    ) -> Result<T, KeyError> {
        let Some(images) = self.signed.clone() else {
            return self
                .tpm
                .with_pcr_policy(&self.key, &self.pcrs, encrypt, f)
                .map_err(|e| policy_error(e, "using the epoch"));
        };
        let value = self.signed_value()?;
        let Some((_, signed)) = images.for_value(&value) else {
            return Err(KeyError::NotSigned(format!(
                "PCR 11 is {} and none of the {} signature(s) on the ESP by the image key {}… is for it",
                signed::hex(&value),
                images.signatures.len(),
                &images.key_name()[..12]
            )));
        };
        let sel = PcrSelection::new(SIGNED_PCRS).map_err(tpm_err("choosing PCRs"))?;
        self.tpm
            .with_authorized_policy(
                &self.key,
                &images.key,
                signed,
                POLICY_REF,
                &sel,
                &self.pcrs,
                encrypt,
                f,
            )
            .map_err(|e| {
                if e.is_bad_signature() {
                    KeyError::NotSigned(format!(
                        "the TPM says the ESP's signature for this boot does not verify with the image key: {e}"
                    ))
                } else {
                    policy_error(e, "using the epoch")
                }
            })
    }

    /// (Re)defines the index for this boot state and stores `epoch`.
    /// `recovery` is the index's auth value: with it, the epoch can be read
    /// in any boot state, to re-seal after a firmware or image update.
    pub fn seal(&mut self, epoch: &Epoch, recovery: &Secret<32>) -> Result<(), KeyError> {
        let digest = self.current_policy()?;
        let mut owner = self
            .tpm
            .start_session(SessionKind::Hmac, Some(&self.key))
            .map_err(tpm_err("starting a salted session"))?;
        let result = (|| {
            match self.tpm.nv_undefine(&mut owner, NV_INDEX) {
                Ok(()) => {}
                Err(e) if e.is_missing_handle() => {}
                Err(e) => return Err(tpm_err("removing the old epoch index")(e)),
            }
            let attrs = NV_AUTHWRITE | NV_POLICYWRITE | NV_AUTHREAD | NV_POLICYREAD | NV_NO_DA;
            self.tpm
                .nv_define(
                    &mut owner,
                    NV_INDEX,
                    attrs,
                    recovery.bytes(),
                    &digest,
                    EPOCH_LEN,
                )
                .map_err(tpm_err("defining the epoch index"))
        })();
        self.tpm.close(owner);
        result?;
        self.write(epoch)
    }

    pub fn read(&mut self) -> Result<Epoch, KeyError> {
        let raw = self.under_policy(SA_ENCRYPT, |tpm, auths| {
            tpm.nv_read(NV_INDEX, EPOCH_LEN, auths)
        })?;
        Epoch::decode(&raw)
    }

    pub fn write(&mut self, epoch: &Epoch) -> Result<(), KeyError> {
        let data = epoch.encode();
        self.under_policy(SA_DECRYPT, |tpm, auths| {
            tpm.nv_write(NV_INDEX, data.bytes(), auths)
        })
    }

    /// Reads the epoch with the recovery value (any boot state), through a
    /// salted HMAC session: the value is only ever an HMAC key, never sent.
    pub fn read_with_recovery(&mut self, recovery: &Secret<32>) -> Result<Epoch, KeyError> {
        let mut s = self
            .tpm
            .start_session(SessionKind::Hmac, Some(&self.key))
            .map_err(tpm_err("starting a salted session"))?;
        let r = self.tpm.nv_read(
            NV_INDEX,
            EPOCH_LEN,
            &mut [Auth::Session {
                session: &mut s,
                auth_value: recovery.bytes(),
                attrs: SA_CONTINUE | SA_ENCRYPT,
            }],
        );
        self.tpm.close(s);
        let raw = r.map_err(|e| {
            if e.is_bad_auth() {
                KeyError::WrongRecovery
            } else {
                KeyError::Tpm {
                    what: "reading the epoch with the recovery secret",
                    source: e,
                }
            }
        })?;
        Epoch::decode(&raw)
    }
}

/// A policy session's failure in the key store's words.
fn policy_error(e: TpmError, what: &'static str) -> KeyError {
    if e.is_policy_fail() || e.is_value() {
        KeyError::BootStateChanged
    } else if e.is_missing_handle() {
        KeyError::Corrupt("the TPM holds no epoch index (was the TPM cleared?)".into())
    } else {
        KeyError::Tpm { what, source: e }
    }
}

impl Drop for TpmRoot {
    /// The storage key is re-derived on every open; a TPM without a
    /// resource manager (swtpm's socket) would otherwise keep each copy.
    fn drop(&mut self) {
        let _ = self.tpm.flush(self.key.handle);
    }
}

/// The epoch in a file (no TPM, allowed by the operator).
pub struct FileRoot {
    pub path: PathBuf,
}

impl FileRoot {
    pub fn read(&self) -> Result<Epoch, KeyError> {
        let raw = std::fs::read(&self.path).map_err(|e| KeyError::Io {
            what: "reading",
            path: self.path.clone(),
            source: e,
        })?;
        Epoch::decode(&raw)
    }
    pub fn write(&self, epoch: &Epoch) -> Result<(), KeyError> {
        super::files::write_atomic(&self.path, epoch.encode().bytes())
    }
}
