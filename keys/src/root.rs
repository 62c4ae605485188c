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

mod backup_key;

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
    /// The raw PCRs a seal falls back to when it cannot adopt the image
    /// key (the options' PCRs, never a signed store's bound ones alone).
    raw_pcrs: PcrSelection,
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
        raw_pcrs: &[u8],
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
        let raw_pcrs = PcrSelection::new(raw_pcrs).map_err(tpm_err("choosing PCRs"))?;
        Ok(TpmRoot {
            tpm,
            key,
            pcrs,
            signed,
            offered,
            raw_pcrs,
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

    /// Chooses what the next seal binds to: the booted image's key when
    /// one of its signatures is for this boot state and the TPM verifies
    /// it; otherwise (an unsigned image, a direct kernel boot, a forged
    /// file) the raw PCRs, never a signed store's bound PCRs alone.
    /// Returns why the image key was not adopted.
    pub fn adopt_offered(&mut self) -> Result<(), String> {
        let chosen = self.offered_for_this_boot();
        match chosen {
            Ok(images) => {
                self.pcrs = PcrSelection::new(BOUND_PCRS).map_err(|e| e.to_string())?;
                self.signed = Some(images);
                Ok(())
            }
            Err(why) => {
                self.pcrs = self.raw_pcrs.clone();
                self.signed = None;
                Err(why)
            }
        }
    }

    /// The offered image key with the one signature for this boot state
    /// that the TPM verifies (VerifySignature, PolicyAuthorize and the
    /// bound PCRs run in a real policy session: the index it would seal
    /// is readable now).
    fn offered_for_this_boot(&mut self) -> Result<SignedImages, String> {
        let Some(offered) = self.offered.clone() else {
            return Err("this image carries no image key".into());
        };
        let value = self.signed_value().map_err(|e| e.to_string())?;
        let candidates: Vec<_> = offered.all_for_value(&value).cloned().collect();
        if candidates.is_empty() {
            return Err(format!(
                "none of the {} signature(s) on the ESP is for this boot (PCR 11 {})",
                offered.signatures.len(),
                signed::hex(&value)
            ));
        }
        let bound = PcrSelection::new(BOUND_PCRS).map_err(|e| e.to_string())?;
        let sel = PcrSelection::new(SIGNED_PCRS).map_err(|e| e.to_string())?;
        let mut last = String::new();
        for (image, sig) in candidates {
            let tried = self.tpm.with_authorized_policy(
                &self.key,
                &offered.key,
                &sig,
                POLICY_REF,
                &sel,
                &bound,
                0,
                |_, _| Ok(()),
            );
            match tried {
                Ok(()) => {
                    return Ok(SignedImages {
                        key: offered.key.clone(),
                        signatures: offered.signatures.clone(),
                    })
                    .inspect(|_| {
                        log::info!("disk keys: image {image}'s signature verified by the TPM")
                    })
                }
                Err(e) => last = format!("image {image}'s signature: {e}"),
            }
        }
        Err(format!("no signature for this boot verifies ({last})"))
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
        let candidates: Vec<_> = images.all_for_value(&value).cloned().collect();
        if candidates.is_empty() {
            return Err(KeyError::NotSigned(format!(
                "PCR 11 is {} and none of the {} signature(s) on the ESP by the image key {}… is for it",
                signed::hex(&value),
                images.signatures.len(),
                images.key_name().get(..12).unwrap_or_default()
            )));
        }
        let sel = PcrSelection::new(SIGNED_PCRS).map_err(tpm_err("choosing PCRs"))?;
        // A forged file for the same value may come first: the TPM says
        // which verifies, and only a policy failure is final.
        let mut f = Some(f);
        let mut last = None;
        for (_, signed) in candidates {
            let mut once = |tpm: &mut Tpm, auths: &mut [Auth]| match f.take() {
                Some(f) => f(tpm, auths),
                None => Err(TpmError::Transport(
                    "the policy's work ran once already".into(),
                )),
            };
            match self.tpm.with_authorized_policy(
                &self.key,
                &images.key,
                &signed,
                POLICY_REF,
                &sel,
                &self.pcrs,
                encrypt,
                &mut once,
            ) {
                Ok(v) => return Ok(v),
                Err(e) if e.is_bad_signature() && f.is_some() => last = Some(e),
                Err(e) => return Err(policy_error(e, "using the epoch")),
            }
        }
        Err(KeyError::NotSigned(format!(
            "no signature on the ESP for this boot verifies with the image key{}",
            last.map(|e| format!(" ({e})")).unwrap_or_default()
        )))
    }

    /// (Re)defines the index for this boot state and stores `epoch`.
    /// `recovery` is the index's auth value: with it, the epoch can be read
    /// in any boot state, to re-seal after a firmware or image update.
    pub fn seal(&mut self, epoch: &Epoch, recovery: &Secret<32>) -> Result<(), KeyError> {
        // The new policy must hold in this boot before the old index goes
        // (for the raw PCRs it does by construction).
        if self.signed.is_some() {
            self.under_policy(0, |_, _| Ok(()))?;
        }
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
        // Written with the recovery auth value, which the new index takes
        // whatever its policy: the epoch is never left out of the TPM.
        self.write_with_recovery(epoch, recovery)?;
        if let Err(e) = self.read() {
            log::error!("disk keys: the new seal does not open in this boot ({e}); the recovery secret still does");
        }
        Ok(())
    }

    fn write_with_recovery(
        &mut self,
        epoch: &Epoch,
        recovery: &Secret<32>,
    ) -> Result<(), KeyError> {
        let data = epoch.encode();
        let mut s = self
            .tpm
            .start_session(SessionKind::Hmac, Some(&self.key))
            .map_err(tpm_err("starting a salted session"))?;
        let r = self.tpm.nv_write(
            NV_INDEX,
            data.bytes(),
            &mut [Auth::Session {
                session: &mut s,
                auth_value: recovery.bytes(),
                attrs: SA_CONTINUE | SA_DECRYPT,
            }],
        );
        self.tpm.close(s);
        r.map_err(tpm_err("writing the epoch with the recovery auth value"))
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
