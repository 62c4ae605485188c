//! The two keys a backup of the box's state is encrypted to (docs/keys.md,
//! "Backup keys"): the TPM's, which the same TPM gives again after a
//! reflash in a boot its policy holds in, and the recovery secret's, which
//! opens a backup anywhere. The box never keeps the recovery secret, so it
//! keeps the recovery backup key instead, wrapped under the epoch like the
//! disk keys, learned when it learns the secret's auth value.

use super::*;

/// The recovery backup key's name in the key store. Workspace keys are
/// `ws-<id>`, forensic snapshots' `fx-<id>-<file>`: no id makes this one.
pub const RECOVERY_BACKUP_KEY: &str = "backup-recovery";
const RECOVERY_INFO: &[u8] = b"paddock backup recovery v1";

/// The recovery backup key for a recovery secret as the operator types it
/// (groups and case do not matter, as for `POST /v1/keys/recover`).
pub fn recovery_backup_key(secret: &str) -> Secret<32> {
    from_recovery_auth(&recovery_auth(secret))
}

/// HKDF-SHA256 of the recovery auth value: what the box can compute when
/// all it knows is the auth value (a build-time `recovery_key_sha256`).
pub(crate) fn from_recovery_auth(auth: &Secret<32>) -> Secret<32> {
    struct Len;
    impl ring::hkdf::KeyType for Len {
        fn len(&self) -> usize {
            32
        }
    }
    // No salt (RFC 5869: a string of zeros): the secret is 256 bits when
    // the box makes it, and the restore side has nothing else to salt with.
    let prk = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, &[]).extract(auth.bytes());
    let mut out = Secret::<32>::zero();
    // expand and fill fail only for an output longer than 255 hashes.
    let filled = prk
        .expand(&[RECOVERY_INFO], Len)
        .and_then(|okm| okm.fill(out.bytes_mut()));
    if filled.is_err() {
        unreachable!("HKDF-SHA256 gives 32 bytes");
    }
    out
}

/// Stores the recovery backup key of `auth` in `dir`, wrapped under
/// `epoch`. Best effort: it runs after the store is set up or re-sealed,
/// and failing it must not undo that (at first boot the recovery secret
/// on screen would be lost); without it a backup has the TPM's key only.
pub(crate) fn keep_recovery_key(dir: &Path, epoch: &Epoch, auth: &Secret<32>) {
    if let Err(e) = write_recovery_key(dir, epoch, auth) {
        warn!("key store: backups will have no recovery key: {e}");
    }
}

fn write_recovery_key(dir: &Path, epoch: &Epoch, auth: &Secret<32>) -> Result<(), KeyError> {
    let key = from_recovery_auth(auth);
    let name = RECOVERY_BACKUP_KEY;
    let file = wrap::wrap(&epoch.secret, epoch.generation, name, &key).map_err(|source| {
        KeyError::Wrap {
            name: name.into(),
            source,
        }
    })?;
    files::write_atomic(&dir.join(format!("{name}.key")), &file)
}

impl KeyStore {
    /// The TPM backup key for `context` (32 bytes chosen per backup and
    /// kept in it): the same on this TPM whenever the disk keys' policy is
    /// the one it is in this boot, a reflash included.
    pub fn backup_key_tpm(&self, context: &[u8; 32]) -> Result<Secret<32>, KeyError> {
        let mut state = self.lock();
        match &mut *state {
            State::Ready {
                root: Root::Tpm(t), ..
            } => t.backup_key(context),
            State::Ready {
                root: Root::File(_),
                ..
            } => Err(KeyError::NoBackupKey(
                "this box has no TPM (its keys are in software, allowed by allow_software_keys), so nothing binds a backup to its hardware".into(),
            )),
            State::Locked { why, .. } => Err(KeyError::NoBackupKey(format!(
                "the TPM gives it only in the boot state the disk keys are sealed to, and they are locked: {why}"
            ))),
            State::Unavailable(why) => Err(KeyError::NoBackupKey(format!(
                "the key store is not open: {why}"
            ))),
        }
    }

    /// The recovery backup key, if this store has it: None for a store set
    /// up before backups existed and not re-sealed with the recovery
    /// secret since (`add_recovery_backup_key` adds it), and for software
    /// keys, which have no recovery secret.
    pub fn backup_key_recovery(&self) -> Result<Option<Secret<32>>, KeyError> {
        let state = self.lock();
        let epoch = match &*state {
            State::Ready { epoch, .. } => epoch,
            State::Locked { why, .. } => {
                return Err(KeyError::NoBackupKey(format!(
                    "the recovery backup key is kept under the disk keys, which are locked: {why}"
                )))
            }
            State::Unavailable(why) => {
                return Err(KeyError::NoBackupKey(format!(
                    "the key store is not open: {why}"
                )))
            }
        };
        let path = self.key_path(RECOVERY_BACKUP_KEY);
        let file = match std::fs::read(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(KeyError::Io {
                    what: "reading",
                    path,
                    source: e,
                })
            }
        };
        wrap::unwrap(&epoch.secret, epoch.generation, RECOVERY_BACKUP_KEY, &file)
            .map(Some)
            .map_err(|source| KeyError::Wrap {
                name: RECOVERY_BACKUP_KEY.into(),
                source,
            })
    }

    /// Adds the recovery backup key to a ready store that lacks it (set up
    /// before backups existed), proving the secret first: the TPM must
    /// release this store's epoch with it. A locked store takes the secret
    /// through `recover`, which adds the key too.
    pub fn add_recovery_backup_key(&self, secret: &str) -> Result<(), KeyError> {
        let mut state = self.lock();
        let (t, epoch) = match &mut *state {
            State::Ready {
                root: Root::Tpm(t),
                epoch,
            } => (t, epoch),
            State::Ready {
                root: Root::File(_),
                ..
            } => {
                return Err(KeyError::NoBackupKey(
                    "this box keeps its keys in software and has no recovery secret".into(),
                ))
            }
            State::Locked { .. } => {
                return Err(KeyError::NoBackupKey(
                    "the disk keys are locked: re-seal them with the recovery secret (POST /v1/keys/recover), which adds the recovery backup key too".into(),
                ))
            }
            State::Unavailable(why) => {
                return Err(KeyError::NoBackupKey(format!(
                    "the key store is not open: {why}"
                )))
            }
        };
        let auth = recovery_auth(secret);
        let held = t.read_with_recovery(&auth)?;
        // Compared as hashes: how long a comparison takes says nothing of
        // where two secrets differ.
        let digest = |e: &Epoch| paddock_tpm::kdf::sha256(&[e.secret.bytes()]);
        if held.generation != epoch.generation || digest(&held) != digest(epoch) {
            return Err(KeyError::Corrupt(
                "the TPM's epoch is not the one this key store holds".into(),
            ));
        }
        write_recovery_key(&self.dir, epoch, &auth)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recovery_backup_key_is_hkdf_of_the_auth_value_as_typed() {
        let s = new_recovery_secret().expect("secret");
        let k = recovery_backup_key(&s);
        assert_eq!(
            k.bytes(),
            recovery_backup_key(&s.to_uppercase().replace('-', " ")).bytes()
        );
        assert_eq!(k.bytes(), from_recovery_auth(&recovery_auth(&s)).bytes());
        // Not the auth value itself (which opens the epoch index).
        assert_ne!(k.bytes(), recovery_auth(&s).bytes());
        assert_ne!(k.bytes(), recovery_backup_key("x").bytes());
        // HKDF-SHA256 (RFC 5869) with no salt, by hand: PRK = HMAC(0…0,
        // auth); OKM = HMAC(PRK, info || 0x01).
        let auth = recovery_auth("abc");
        let prk = paddock_tpm::kdf::hmac_sha256(&[0; 32], &[auth.bytes()]);
        let okm = paddock_tpm::kdf::hmac_sha256(&prk, &[RECOVERY_INFO, &[1]]);
        assert_eq!(recovery_backup_key("ABC").bytes(), &okm);
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("paddock-backup-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn options(dir: &Path, allow_software_keys: bool) -> Options {
        Options {
            tpm: TpmSource::Device(dir.join("no-tpm")),
            pcrs: DEFAULT_PCRS.to_vec(),
            allow_software_keys,
            recovery_key_sha256: None,
            signed: None,
        }
    }

    #[test]
    fn software_keys_have_no_tpm_backup_key_and_no_recovery_one() {
        let d = tmp("software");
        let (s, r) = KeyStore::open(&d, &options(&d, true));
        assert!(r.ready, "{}", r.summary);
        let e = s.backup_key_tpm(&[1; 32]).err().map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|e| e.contains("no TPM") && e.contains("allow_software_keys")),
            "{e:?}"
        );
        assert!(matches!(s.backup_key_recovery(), Ok(None)));
        assert!(s.add_recovery_backup_key("anything").is_err());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_store_that_is_not_open_says_why_there_is_no_backup_key() {
        let d = tmp("unavailable");
        let (s, r) = KeyStore::open(&d, &options(&d, false));
        assert!(!r.ready);
        for e in [
            s.backup_key_tpm(&[1; 32]).err(),
            s.backup_key_recovery().err(),
        ] {
            let e = e.map(|e| e.to_string()).unwrap_or_default();
            assert!(
                e.contains("not open") && e.contains("no TPM 2.0 found"),
                "{e}"
            );
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    /// The recovery backup key is a wrapped key like the disk keys, but
    /// shorter: an erasure's rotation must carry it, not drop it as
    /// unreadable.
    #[test]
    fn the_recovery_backup_key_survives_an_erasure() {
        let d = tmp("rotation");
        let (s, _) = KeyStore::open(&d, &options(&d, true));
        let auth = recovery_auth("1234");
        {
            let state = s.lock();
            let State::Ready { epoch, .. } = &*state else {
                panic!("a software store is ready")
            };
            keep_recovery_key(&d, epoch, &auth);
        }
        let a = s.disk_key("ws-a").expect("a");
        let b = s.disk_key("ws-b").expect("b");
        s.erase("ws-a").expect("erase");
        let kept = s.backup_key_recovery().expect("readable").expect("kept");
        assert_eq!(kept.bytes(), recovery_backup_key("1234").bytes());
        assert_eq!(s.disk_key("ws-b").expect("b").bytes(), b.bytes());
        assert!(!s.has_key("ws-a"));
        assert_ne!(a.bytes(), b.bytes());
        // And at the next open.
        drop(s);
        let (s, _) = KeyStore::open(&d, &options(&d, true));
        let kept = s.backup_key_recovery().expect("readable").expect("kept");
        assert_eq!(kept.bytes(), recovery_backup_key("1234").bytes());
        let _ = std::fs::remove_dir_all(&d);
    }
}
