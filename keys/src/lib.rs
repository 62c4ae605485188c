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

pub mod dmcrypt;
mod files;
pub mod private_file;
mod root;
pub mod secret;
pub mod tls;
mod wrap;

use log::{info, warn};
use root::{Epoch, FileRoot, TpmRoot};
use secret::Secret;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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
    Tpm(TpmRoot),
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
        root: Option<TpmRoot>,
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
    /// Opens (or on first boot creates) the key store in `dir`.
    pub fn open(dir: &Path, opts: &Options) -> (KeyStore, BootReport) {
        let (state, report) = match Self::boot(dir, opts) {
            Ok(r) => r,
            Err(e) => {
                let why = e.to_string();
                let state = match e {
                    KeyError::Unavailable(w) => State::Unavailable(w),
                    _ => State::Locked {
                        why: why.clone(),
                        root: None,
                    },
                };
                (
                    state,
                    BootReport {
                        summary: why,
                        ready: false,
                        recovery_secret: None,
                    },
                )
            }
        };
        let store = KeyStore {
            dir: dir.to_path_buf(),
            state: Mutex::new(state),
        };
        if report.ready {
            store.finish_interrupted_rotation();
        }
        (store, report)
    }

    fn boot(dir: &Path, opts: &Options) -> Result<(State, BootReport), KeyError> {
        let meta_path = dir.join(META);
        let tpm_here = opts.tpm.exists();
        match std::fs::read(&meta_path) {
            Ok(raw) => {
                let meta: Meta = serde_json::from_slice(&raw)
                    .map_err(|e| KeyError::Corrupt(format!("{}: {e}", meta_path.display())))?;
                match meta.root.as_str() {
                    "tpm" => {
                        if !tpm_here {
                            return Err(KeyError::Locked(format!(
                                "the disk keys are sealed to a TPM and {} is missing (TPM removed or disabled in the firmware?). Nothing was changed",
                                opts.tpm.display()
                            )));
                        }
                        let mut t = TpmRoot::open(&opts.tpm, &meta.pcrs)?;
                        if hex(t.key_name()) != meta.tpm_key_name {
                            return Err(KeyError::Locked("this TPM is not the one the disk keys were sealed to (its storage key differs: another TPM, or it was cleared). Nothing was changed".into()));
                        }
                        match t.read() {
                            Ok(epoch) => Ok(ready(Root::Tpm(t), epoch, None)),
                            Err(KeyError::BootStateChanged) => {
                                let why = KeyError::BootStateChanged.to_string();
                                Ok((
                                    State::Locked {
                                        why: why.clone(),
                                        root: Some(t),
                                    },
                                    BootReport {
                                        summary: why,
                                        ready: false,
                                        recovery_secret: None,
                                    },
                                ))
                            }
                            Err(e) => Err(e),
                        }
                    }
                    "file" => {
                        let f = FileRoot {
                            path: dir.join(EPOCH_FILE),
                        };
                        let epoch = f.read()?;
                        Ok(ready(Root::File(f), epoch, None))
                    }
                    other => Err(KeyError::Corrupt(format!(
                        "{}: unknown root {other:?}",
                        meta_path.display()
                    ))),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Ok(entries) = std::fs::read_dir(dir) {
                    if entries
                        .flatten()
                        .any(|e| e.file_name().to_string_lossy().ends_with(".key"))
                    {
                        return Err(KeyError::Corrupt(format!(
                            "{} is missing but wrapped keys are there; refusing to start a new key store over them",
                            meta_path.display()
                        )));
                    }
                }
                std::fs::create_dir_all(dir).map_err(|e| KeyError::Io {
                    what: "creating",
                    path: dir.to_path_buf(),
                    source: e,
                })?;
                if tpm_here {
                    Self::create_tpm(dir, opts)
                } else if opts.allow_software_keys {
                    let f = FileRoot {
                        path: dir.join(EPOCH_FILE),
                    };
                    let epoch = Epoch::fresh(1)?;
                    f.write(&epoch)?;
                    write_meta(
                        dir,
                        &Meta {
                            root: "file".into(),
                            pcrs: Vec::new(),
                            tpm_key_name: String::new(),
                        },
                    )?;
                    Ok(ready(Root::File(f), epoch, None))
                } else {
                    Err(KeyError::Unavailable(
                        "no TPM 2.0 found, so encrypted workspaces are refused (set allow_software_keys in the configuration to accept keys kept on the data disk)".into(),
                    ))
                }
            }
            Err(e) => Err(KeyError::Io {
                what: "reading",
                path: meta_path,
                source: e,
            }),
        }
    }

    fn create_tpm(dir: &Path, opts: &Options) -> Result<(State, BootReport), KeyError> {
        let mut t = TpmRoot::open(&opts.tpm, &opts.pcrs)?;
        let (auth, shown) = match opts.recovery_key_sha256.as_deref().and_then(unhex32) {
            Some(h) => (Secret::from(h), None),
            None => {
                let s = new_recovery_secret()?;
                (recovery_auth(&s), Some(s))
            }
        };
        let epoch = Epoch::fresh(1)?;
        t.seal(&epoch, &auth)?;
        write_meta(
            dir,
            &Meta {
                root: "tpm".into(),
                pcrs: t.pcrs(),
                tpm_key_name: hex(t.key_name()),
            },
        )?;
        Ok(ready(Root::Tpm(t), epoch, shown))
    }

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

    /// Makes `name`'s key unrecoverable: rotates the epoch, re-wrapping
    /// every other key under the new one, then drops `name`'s wrapped key.
    /// Old copies of any wrapped key need the old epoch, which the TPM
    /// overwrote. A failure before the TPM write changes nothing; after it,
    /// boot finishes the renames (`finish_interrupted_rotation`).
    pub fn erase(&self, name: &str) -> Result<(), KeyError> {
        let mut state = self.lock();
        let State::Ready { root, epoch } = &mut *state else {
            return Err(match &*state {
                State::Locked { why, .. } => KeyError::Locked(why.clone()),
                State::Unavailable(why) => KeyError::Unavailable(why.clone()),
                State::Ready { .. } => KeyError::NoKey(name.into()),
            });
        };
        let target = self.key_path(name);
        if !target.exists() {
            return Ok(());
        }
        let next = Epoch::fresh(epoch.generation + 1)?;
        let mut staged = Vec::new();
        let result = (|| {
            for entry in std::fs::read_dir(&self.dir).map_err(|e| KeyError::Io {
                what: "listing",
                path: self.dir.clone(),
                source: e,
            })? {
                let Ok(entry) = entry else { continue };
                let file_name = entry.file_name().to_string_lossy().into_owned();
                let Some(other) = file_name.strip_suffix(".key") else {
                    continue;
                };
                if other == name {
                    continue;
                }
                let path = entry.path();
                let file = std::fs::read(&path).map_err(|e| KeyError::Io {
                    what: "reading",
                    path: path.clone(),
                    source: e,
                })?;
                let key: Secret<DISK_KEY_LEN> =
                    match wrap::unwrap(&epoch.secret, epoch.generation, other, &file) {
                        Ok(k) => k,
                        Err(e) => {
                            // Unreadable already (a leftover of an earlier
                            // erase): nothing to carry over.
                            warn!("key store: {other}: {e}; dropped");
                            let _ = std::fs::remove_file(&path);
                            continue;
                        }
                    };
                let rewrapped =
                    wrap::wrap(&next.secret, next.generation, other, &key).map_err(|source| {
                        KeyError::Wrap {
                            name: other.into(),
                            source,
                        }
                    })?;
                let new_path = path.with_extension("key.new");
                private_file::write_private(&new_path, &rewrapped).map_err(|e| KeyError::Io {
                    what: "writing",
                    path: new_path.clone(),
                    source: e,
                })?;
                staged.push((new_path, path));
            }
            files::sync_dir(&self.dir)?;
            root.write(&next)
        })();
        if let Err(e) = result {
            for (new, _) in &staged {
                let _ = std::fs::remove_file(new);
            }
            return Err(e);
        }
        // The point of no return has passed: the old epoch is gone.
        *epoch = next;
        for (new, old) in &staged {
            if let Err(e) = std::fs::rename(new, old) {
                warn!("key store: renaming {}: {e}", new.display());
            }
        }
        let _ = std::fs::remove_file(&target);
        let _ = files::sync_dir(&self.dir);
        info!(
            "key store: {name} erased; epoch now {}, {} key(s) re-wrapped",
            epoch.generation,
            staged.len()
        );
        Ok(())
    }

    /// After a crash mid-rotation: staged files of the current generation
    /// replace their originals; staged files of the previous one (the TPM
    /// write never happened) are dropped.
    fn finish_interrupted_rotation(&self) {
        let state = self.lock();
        let State::Ready { epoch, .. } = &*state else {
            return;
        };
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.to_string_lossy().ends_with(".key.new") {
                continue;
            }
            let current = std::fs::read(&path)
                .ok()
                .and_then(|f| wrap::generation_of(&f))
                == Some(epoch.generation);
            let done = if current {
                std::fs::rename(&path, path.with_extension(""))
            } else {
                std::fs::remove_file(&path)
            };
            info!(
                "key store: finished an interrupted rotation for {} ({})",
                path.display(),
                if done.is_ok() { "kept" } else { "failed" }
            );
        }
        let _ = files::sync_dir(&self.dir);
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
        t.seal(&epoch, &auth)?;
        let summary = format!(
            "re-sealed to the TPM (PCR {}) with the recovery secret, epoch {}",
            pcr_list(&t.pcrs()),
            epoch.generation
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

/// How a ready store holds its keys, in one line.
fn describe(root: &Root, epoch: &Epoch) -> String {
    match root {
        Root::Tpm(t) => format!(
            "sealed to the TPM (PCR {}), epoch {}",
            pcr_list(&t.pcrs()),
            epoch.generation
        ),
        Root::File(_) => format!(
            "SOFTWARE KEYS (no TPM; allowed by configuration): a copy of the data disk holds everything, epoch {}",
            epoch.generation
        ),
    }
}

fn ready(root: Root, epoch: Epoch, shown: Option<String>) -> (State, BootReport) {
    let summary = describe(&root, &epoch);
    (
        State::Ready { root, epoch },
        BootReport {
            summary,
            ready: true,
            recovery_secret: shown,
        },
    )
}

fn write_meta(dir: &Path, meta: &Meta) -> Result<(), KeyError> {
    let text = serde_json::to_vec_pretty(meta).map_err(|e| KeyError::Corrupt(e.to_string()))?;
    files::write_atomic(&dir.join(META), &text)
}

fn pcr_list(p: &[u8]) -> String {
    p.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",")
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
mod tests {
    use super::*;

    fn software(dir: &Path) -> KeyStore {
        let opts = Options {
            tpm: TpmSource::Device(dir.join("no-tpm")),
            pcrs: DEFAULT_PCRS.to_vec(),
            allow_software_keys: true,
            recovery_key_sha256: None,
        };
        let (s, r) = KeyStore::open(dir, &opts);
        assert!(r.ready, "{}", r.summary);
        s
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("paddock-keys-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn without_a_tpm_keys_are_refused_unless_allowed() {
        let d = tmp("refuse");
        let opts = Options {
            tpm: TpmSource::Device(d.join("no-tpm")),
            pcrs: DEFAULT_PCRS.to_vec(),
            allow_software_keys: false,
            recovery_key_sha256: None,
        };
        let (s, r) = KeyStore::open(&d, &opts);
        assert!(!r.ready);
        assert!(r.summary.contains("allow_software_keys"), "{}", r.summary);
        assert!(matches!(s.disk_key("ws-a"), Err(KeyError::Unavailable(_))));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn erasing_rotates_the_epoch_and_keeps_every_other_key() {
        let d = tmp("erase");
        let s = software(&d);
        let a = s.disk_key("ws-a").expect("a");
        let b = s.disk_key("ws-b").expect("b");
        assert_ne!(a.bytes(), b.bytes());
        // The same key on the next ask.
        assert_eq!(s.disk_key("ws-a").expect("a").bytes(), a.bytes());
        let copy_of_a = std::fs::read(d.join("ws-a.key")).expect("file");
        let old_epoch = std::fs::read(d.join(EPOCH_FILE)).expect("epoch");
        s.erase("ws-a").expect("erase");
        assert!(!d.join("ws-a.key").exists());
        assert_eq!(s.disk_key("ws-b").expect("b").bytes(), b.bytes());
        // The copy of a's wrapped key opens under the old epoch only.
        let new = FileRoot {
            path: d.join(EPOCH_FILE),
        }
        .read()
        .expect("epoch");
        assert_eq!(new.generation, 2);
        assert!(wrap::unwrap::<64>(&new.secret, 1, "ws-a", &copy_of_a).is_err());
        let old = Epoch::decode(&old_epoch).expect("old");
        assert!(wrap::unwrap::<64>(&old.secret, 1, "ws-a", &copy_of_a).is_ok());
        // Reopening finds b again.
        drop(s);
        let s = software(&d);
        assert_eq!(s.disk_key("ws-b").expect("b").bytes(), b.bytes());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn an_interrupted_rotation_is_finished_or_undone_at_the_next_open() {
        let d = tmp("interrupt");
        let s = software(&d);
        let b = s.disk_key("ws-b").expect("b");
        drop(s);
        // A staged file of a generation the root never reached: dropped.
        let e = FileRoot {
            path: d.join(EPOCH_FILE),
        }
        .read()
        .expect("epoch");
        let future = Epoch::fresh(e.generation + 1).expect("epoch");
        let staged = wrap::wrap(&future.secret, future.generation, "ws-b", &b).expect("wrap");
        std::fs::write(d.join("ws-b.key.new"), &staged).expect("stage");
        let s = software(&d);
        assert!(!d.join("ws-b.key.new").exists());
        assert_eq!(s.disk_key("ws-b").expect("b").bytes(), b.bytes());
        drop(s);
        // The root did reach it: the staged file replaces the old one.
        FileRoot {
            path: d.join(EPOCH_FILE),
        }
        .write(&future)
        .expect("write");
        std::fs::write(d.join("ws-b.key.new"), &staged).expect("stage");
        let s = software(&d);
        assert_eq!(s.disk_key("ws-b").expect("b").bytes(), b.bytes());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn recovery_secrets_ignore_grouping_and_case() {
        let s = new_recovery_secret().expect("secret");
        assert_eq!(s.len(), 71);
        assert_eq!(
            recovery_auth(&s).bytes(),
            recovery_auth(&s.to_uppercase().replace('-', " ")).bytes()
        );
        assert_ne!(recovery_auth(&s).bytes(), recovery_auth("x").bytes());
    }
}
