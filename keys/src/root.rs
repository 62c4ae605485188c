//! Where the epoch secret lives: in TPM NV memory, readable only under a
//! PCR policy (this boot state) or with the recovery value; or, when the
//! operator allowed it on a box without a TPM, in a file.

use super::secret::Secret;
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
    pcrs: PcrSelection,
}

fn tpm_err(what: &'static str) -> impl FnOnce(TpmError) -> KeyError {
    move |source| KeyError::Tpm { what, source }
}

impl TpmRoot {
    pub fn open(source: &super::TpmSource, pcrs: &[u8]) -> Result<TpmRoot, KeyError> {
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
        Ok(TpmRoot { tpm, key, pcrs })
    }

    pub fn key_name(&self) -> &[u8] {
        &self.key.name
    }

    pub fn pcrs(&self) -> Vec<u8> {
        self.pcrs.pcrs()
    }

    /// The policy that holds in the boot state we are in now.
    fn current_policy(&mut self) -> Result<[u8; 32], KeyError> {
        let values = self
            .tpm
            .pcr_read(&self.pcrs)
            .map_err(tpm_err("reading the PCRs"))?;
        Ok(policy::pcr_policy_digest(&self.pcrs, &values))
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
        let raw = self
            .tpm
            .with_pcr_policy(&self.key, &self.pcrs, SA_ENCRYPT, |tpm, auths| {
                tpm.nv_read(NV_INDEX, EPOCH_LEN, auths)
            })
            .map_err(|e| {
                if e.is_policy_fail() {
                    KeyError::BootStateChanged
                } else if e.is_missing_handle() {
                    KeyError::Corrupt("the TPM holds no epoch index (was the TPM cleared?)".into())
                } else {
                    KeyError::Tpm {
                        what: "reading the epoch",
                        source: e,
                    }
                }
            })?;
        Epoch::decode(&raw)
    }

    pub fn write(&mut self, epoch: &Epoch) -> Result<(), KeyError> {
        let data = epoch.encode();
        self.tpm
            .with_pcr_policy(&self.key, &self.pcrs, SA_DECRYPT, |tpm, auths| {
                tpm.nv_write(NV_INDEX, data.bytes(), auths)
            })
            .map_err(|e| {
                if e.is_policy_fail() {
                    KeyError::BootStateChanged
                } else {
                    KeyError::Tpm {
                        what: "writing the epoch",
                        source: e,
                    }
                }
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
