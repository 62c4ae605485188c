//! Workspace disk keys and their root of trust.
//!
//! Each disk (and each forensic snapshot) has its own random 512-bit
//! AES-XTS key, stored only wrapped (AES-256-GCM) under a key derived from
//! the *epoch secret*. The epoch lives in TPM NV memory, released only
//! under a PCR policy (this boot state) or with the recovery secret.
//! Erasing a disk rotates the epoch: every other wrapped key is re-wrapped
//! under a new one, the new epoch overwrites the old in the TPM, and the
//! erased disk's wrapped key (wherever a copy of it went) now needs an
//! epoch that exists nowhere. docs/keys.md has the whole argument.

mod backup;
mod boot;
pub mod dmcrypt;
mod erase;
mod files;
pub mod private_file;
mod root;
pub mod secret;
pub mod signed;
pub mod tls;
mod wrap;

use boot::describe;
use log::{info, warn};
use root::{Epoch, FileRoot, TpmRoot};
use secret::Secret;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub use backup::{recovery_backup_key, RECOVERY_BACKUP_KEY};
pub use root::{DEFAULT_PCRS, NV_INDEX, TPM_DEVICE};

pub const KEYS_DIR: &str = "/data/state/keys";
const META: &str = "root.json";
const EPOCH_FILE: &str = "epoch";
const DISK_KEY_LEN: usize = dmcrypt::KEY_LEN;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{what}: {source}")]
    Tpm {
        what: &'static str,
        source: paddock_tpm::TpmError,
    },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the TPM will not release the disk keys: this box booted into a different state (firmware, boot loader or image) than the one they were sealed to. Nothing was changed. Boot the image they were sealed to, or re-seal with the recovery secret (POST /v1/keys/recover)")]
    BootStateChanged,
    #[error("the TPM will not release the disk keys: this image is not signed for them ({0}). Nothing was changed. Boot a signed image, or re-seal with the recovery secret (POST /v1/keys/recover)")]
    NotSigned(String),
    #[error("the key store is damaged: {0}")]
    Corrupt(String),
    #[error("the recovery secret is wrong")]
    WrongRecovery,
    #[error("disk keys are locked: {0}")]
    Locked(String),
    #[error("no disk keys: {0}")]
    Unavailable(String),
    #[error("no key for {0}")]
    NoKey(String),
    #[error("wrapped key of {name}: {source}")]
    Wrap {
        name: String,
        source: wrap::WrapError,
    },
    #[error("no randomness from the kernel")]
    Random,
    #[error("{0}")]
    Mapping(#[from] dmcrypt::DmError),
    #[error("nothing to recover: the disk keys are not locked")]
    NotLocked,
    #[error("no backup key: {0}")]
    NoBackupKey(String),
}

impl KeyError {
    /// Whether it failed for want of space on the partition (an erasure
    /// writes the re-wrapped keys and the new epoch before it frees
    /// anything).
    pub fn is_out_of_space(&self) -> bool {
        matches!(self, KeyError::Io { source, .. }
            if source.kind() == std::io::ErrorKind::StorageFull
                || source.raw_os_error() == Some(libc::EDQUOT))
    }
}

enum Root {
    Tpm(Box<TpmRoot>),
    File(FileRoot),
}

impl Root {
    fn write(&mut self, e: &Epoch) -> Result<(), KeyError> {
        match self {
            Root::Tpm(t) => t.write(e),
            Root::File(f) => f.write(e),
        }
    }
}

enum State {
    Ready {
        root: Root,
        epoch: Epoch,
    },
    /// Sealed to a boot state we are not in; `root` is kept for recovery.
    Locked {
        why: String,
        root: Option<Box<TpmRoot>>,
    },
    Unavailable(String),
}

pub struct KeyStore {
    dir: PathBuf,
    state: Mutex<State>,
}

/// What the key store said at boot, for the log and the status screen.
pub struct BootReport {
    pub summary: String,
    pub ready: bool,
    /// A recovery secret made on this boot: shown once, never stored.
    pub recovery_secret: Option<String>,
}

pub enum TpmSource {
    Device(PathBuf),
    /// swtpm's `--server type=unixio` socket (tests).
    Socket(PathBuf),
}

impl TpmSource {
    fn exists(&self) -> bool {
        match self {
            TpmSource::Device(p) | TpmSource::Socket(p) => p.exists(),
        }
    }
    fn display(&self) -> String {
        match self {
            TpmSource::Device(p) | TpmSource::Socket(p) => p.display().to_string(),
        }
    }
}

/// How this box keeps its keys, chosen by configuration.
pub struct Options {
    /// /dev/tpmrm0 on the appliance; a swtpm socket in tests.
    pub tpm: TpmSource,
    pub pcrs: Vec<u8>,
    pub allow_software_keys: bool,
    pub recovery_key_sha256: Option<String>,
    /// The booted image's key and the ESP's signatures (`signed`): a new
    /// store is sealed to the images this key signs when one is for this
    /// boot; None for an image without a key.
    pub signed: Option<signed::SignedImages>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Meta {
    root: String,
    #[serde(default)]
    pcrs: Vec<u8>,
    /// The TPM storage key's name (hex) at setup: a different TPM, or one
    /// whose owner seed was reset, cannot pose as ours.
    #[serde(default)]
    tpm_key_name: String,
    /// Sealed to the images this key signs (its name, hex), with `pcrs`
    /// bound beside it; empty: sealed to the raw `pcrs`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    policy_key: String,
}

impl Meta {
    fn of_tpm(t: &TpmRoot) -> Meta {
        Meta {
            root: "tpm".into(),
            pcrs: t.pcrs(),
            tpm_key_name: hex(t.key_name()),
            policy_key: t.signed().map(|s| s.key_name()).unwrap_or_default(),
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The TPM auth value for a recovery secret as the operator types it
/// (groups and case do not matter).
fn recovery_auth(secret: &str) -> Secret<32> {
    let norm: String = secret
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    Secret::from(paddock_tpm::kdf::sha256(&[norm.as_bytes()]))
}

/// 32 random bytes as 8 groups of 8 hex digits.
fn new_recovery_secret() -> Result<String, KeyError> {
    let s = Secret::<32>::random().map_err(|_| KeyError::Random)?;
    let h = hex(s.bytes());
    Ok(h.as_bytes()
        .chunks(8)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("-"))
}

impl KeyStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn key_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.key"))
    }

    /// Fails unless keys can be made and used now.
    pub fn check_ready(&self) -> Result<(), KeyError> {
        match &*self.lock() {
            State::Ready { .. } => Ok(()),
            State::Locked { why, .. } => Err(KeyError::Locked(why.clone())),
            State::Unavailable(why) => Err(KeyError::Unavailable(why.clone())),
        }
    }

    /// One line for the status screen and /v1/health.
    pub fn summary(&self) -> (paddock_api_types::KeyState, String) {
        use paddock_api_types::KeyState;
        match &*self.lock() {
            State::Ready { root, epoch } => (KeyState::Ready, describe(root, epoch)),
            State::Locked { why, .. } => (KeyState::Locked, why.clone()),
            State::Unavailable(why) => (KeyState::Unavailable, why.clone()),
        }
    }

    /// The disk key of `name`, made (and stored wrapped) if it has none yet.
    pub fn disk_key(&self, name: &str) -> Result<Secret<DISK_KEY_LEN>, KeyError> {
        self.key(name, true)
    }

    /// The disk key of `name`; an error if it has none.
    pub fn existing_key(&self, name: &str) -> Result<Secret<DISK_KEY_LEN>, KeyError> {
        self.key(name, false)
    }

    fn key(&self, name: &str, create: bool) -> Result<Secret<DISK_KEY_LEN>, KeyError> {
        let state = self.lock();
        let State::Ready { epoch, .. } = &*state else {
            drop(state);
            self.check_ready()?;
            return Err(KeyError::NoKey(name.into()));
        };
        let path = self.key_path(name);
        match std::fs::read(&path) {
            Ok(file) => {
                wrap::unwrap(&epoch.secret, epoch.generation, name, &file).map_err(|source| {
                    KeyError::Wrap {
                        name: name.into(),
                        source,
                    }
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !create => {
                Err(KeyError::NoKey(name.into()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Secret::<DISK_KEY_LEN>::random().map_err(|_| KeyError::Random)?;
                let file =
                    wrap::wrap(&epoch.secret, epoch.generation, name, &key).map_err(|source| {
                        KeyError::Wrap {
                            name: name.into(),
                            source,
                        }
                    })?;
                files::write_atomic(&path, &file)?;
                Ok(key)
            }
            Err(e) => Err(KeyError::Io {
                what: "reading",
                path,
                source: e,
            }),
        }
    }

    /// Encrypts `data` (a workspace's secrets) under a key derived from
    /// `name`'s disk key: erased with it, unreadable in any copy after.
    pub fn seal(&self, name: &str, data: &[u8]) -> Result<Vec<u8>, KeyError> {
        let key = self.existing_key(name)?;
        wrap::seal(&key, name, data).map_err(|source| KeyError::Wrap {
            name: name.into(),
            source,
        })
    }

    /// Decrypts what `seal` made for `name`.
    pub fn open_sealed(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>, KeyError> {
        let key = self.existing_key(name)?;
        wrap::open_sealed(&key, name, sealed).map_err(|source| KeyError::Wrap {
            name: name.into(),
            source,
        })
    }

    pub fn has_key(&self, name: &str) -> bool {
        self.key_path(name).exists()
    }

    /// Copies `from`'s key to a new name (a forensic snapshot of a disk is
    /// readable with the disk's key, kept after the disk is erased).
    pub fn copy_key(&self, from: &str, to: &str) -> Result<(), KeyError> {
        let key = self.existing_key(from)?;
        let state = self.lock();
        let State::Ready { epoch, .. } = &*state else {
            return Err(KeyError::NoKey(to.into()));
        };
        let file = wrap::wrap(&epoch.secret, epoch.generation, to, &key).map_err(|source| {
            KeyError::Wrap {
                name: to.into(),
                source,
            }
        })?;
        files::write_atomic(&self.key_path(to), &file)
    }

    /// Re-seals the epoch to the boot state we are in now, proving the
    /// right to do so with the recovery secret.
    pub fn recover(&self, secret: &str) -> Result<String, KeyError> {
        let mut state = self.lock();
        let State::Locked { root: Some(t), .. } = &mut *state else {
            return Err(KeyError::NotLocked);
        };
        let auth = recovery_auth(secret);
        let epoch = t.read_with_recovery(&auth)?;
        // Re-sealed to the images this image's key signs when it signed
        // this boot; to this boot's raw PCRs otherwise.
        if let Err(why) = t.adopt_offered() {
            info!("disk keys: re-sealing to this boot's PCRs: {why}");
        }
        t.seal(&epoch, &auth)?;
        boot::write_meta(&self.dir, &Meta::of_tpm(t))?;
        backup::keep_recovery_key(&self.dir, &epoch, &auth);
        let summary = format!(
            "re-sealed with the recovery secret: {}",
            boot::describe_tpm(t, &epoch)
        );
        let State::Locked { root: Some(t), .. } =
            std::mem::replace(&mut *state, State::Unavailable(String::new()))
        else {
            return Err(KeyError::NotLocked);
        };
        *state = State::Ready {
            root: Root::Tpm(t),
            epoch,
        };
        drop(state);
        self.finish_interrupted_rotation();
        Ok(summary)
    }

    /// Opens `backing` decrypted and read-only with `name`'s existing key,
    /// as a descriptor only: the mapping `mapping` goes away when that is
    /// closed (a forensic download, the test image's disk probe).
    pub fn open_read_only(
        &self,
        name: &str,
        mapping: &str,
        backing: &Path,
    ) -> Result<std::fs::File, KeyError> {
        let key = self.existing_key(name)?;
        let dev = dmcrypt::open_with(mapping, backing, key.bytes(), true)?;
        let f = dmcrypt::open_device(dev, false);
        if let Err(e) = dmcrypt::remove_when_closed(mapping) {
            // Shutdown closes whatever is left.
            warn!("key store: {mapping} stays until shutdown: {e}");
        }
        Ok(f?)
    }

    /// Opens `backing` with `name`'s existing key as the mapping `mapping`,
    /// its sector numbers from `iv_offset` (`dmcrypt::open_at`): a file the
    /// key protects beside its disk, which the key's erasure makes
    /// unreadable with it. A mapping of that name already there is closed
    /// first (an error if something holds it). Returns the device number.
    pub fn open_beside(
        &self,
        name: &str,
        mapping: &str,
        backing: &Path,
        iv_offset: u64,
    ) -> Result<u64, KeyError> {
        // Never one left over: it may sit over another (deleted) file, or
        // be waiting on a deferred removal.
        if dmcrypt::device_number(mapping).is_some() {
            dmcrypt::close(mapping)?;
        }
        let key = self.existing_key(name)?;
        Ok(dmcrypt::open_at(
            mapping,
            backing,
            key.bytes(),
            false,
            iv_offset,
        )?)
    }

    /// Opens `name`'s disk `backing` as the mapping `mapping`; returns its
    /// device number.
    pub fn open_disk(&self, name: &str, mapping: &str, backing: &Path) -> Result<u64, KeyError> {
        if let Some(dev) = dmcrypt::device_number(mapping) {
            return Ok(dev);
        }
        let key = self.disk_key(name)?;
        Ok(dmcrypt::open(mapping, backing, key.bytes())?)
    }
}

static STORE: std::sync::OnceLock<KeyStore> = std::sync::OnceLock::new();

/// Opens the box's key store once, at boot.
pub fn init(opts: &Options) -> BootReport {
    init_at(Path::new(KEYS_DIR), opts)
}

/// As `init`, with the store in `dir` (the API conformance test's scratch
/// directory).
pub fn init_at(dir: &Path, opts: &Options) -> BootReport {
    let (store, report) = KeyStore::open(dir, opts);
    let _ = STORE.set(store);
    report
}

/// The box's key store; an error until `init` ran.
pub fn store() -> Result<&'static KeyStore, KeyError> {
    STORE
        .get()
        .ok_or_else(|| KeyError::Unavailable("the key store is not open yet".into()))
}

#[cfg(test)]
mod tests;
