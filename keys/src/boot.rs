//! Opening the key store at boot: finding (or on first boot creating) its
//! root in the TPM or, where the configuration allows it, in a file, and
//! saying how the keys are held.

use super::*;

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
                        // Sealed to signed images: this image must carry
                        // the same key. Otherwise the store is locked, its
                        // root kept for a recovery that re-seals it.
                        let (signed, mismatch) = match (&opts.signed, meta.policy_key.as_str()) {
                            (_, "") => (None, None),
                            (Some(s), k) if s.key_name() == k => (Some(s.clone()), None),
                            (Some(_), _) => (
                                None,
                                Some("this image's image key is not the one that signs for them"),
                            ),
                            (None, _) => (None, Some("this image carries no image key")),
                        };
                        let mut t = TpmRoot::open(
                            &opts.tpm,
                            &meta.pcrs,
                            signed,
                            opts.signed.clone(),
                            &opts.pcrs,
                        )?;
                        if hex(t.key_name()) != meta.tpm_key_name {
                            return Err(KeyError::Locked("this TPM is not the one the disk keys were sealed to (its storage key differs: another TPM, or it was cleared). Nothing was changed".into()));
                        }
                        let read = match mismatch {
                            Some(why) => Err(KeyError::NotSigned(why.into())),
                            None => t.read(),
                        };
                        match read {
                            Ok(epoch) => Ok(ready(Root::Tpm(Box::new(t)), epoch, None)),
                            Err(e @ (KeyError::BootStateChanged | KeyError::NotSigned(_))) => {
                                let why = e.to_string();
                                Ok((
                                    State::Locked {
                                        why: why.clone(),
                                        root: Some(Box::new(t)),
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
                            policy_key: String::new(),
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
        let mut t = TpmRoot::open(&opts.tpm, &opts.pcrs, None, opts.signed.clone(), &opts.pcrs)?;
        if let Err(why) = t.adopt_offered() {
            warn!(
                "disk keys: sealed to this boot's PCRs {}, not to signed images: {why}",
                pcr_list(&t.pcrs())
            );
        }
        let (auth, shown) = match opts.recovery_key_sha256.as_deref().and_then(unhex32) {
            Some(h) => (Secret::from(h), None),
            None => {
                let s = new_recovery_secret()?;
                (recovery_auth(&s), Some(s))
            }
        };
        let epoch = Epoch::fresh(1)?;
        t.seal(&epoch, &auth)?;
        write_meta(dir, &Meta::of_tpm(&t))?;
        // After root.json: a key file without it would stop the next boot
        // from starting a store here.
        backup::keep_recovery_key(dir, &epoch, &auth);
        Ok(ready(Root::Tpm(Box::new(t)), epoch, shown))
    }
}

/// How a ready store holds its keys, in one line.
pub(crate) fn describe(root: &Root, epoch: &Epoch) -> String {
    match root {
        Root::Tpm(t) => describe_tpm(t, epoch),
        Root::File(_) => format!(
            "SOFTWARE KEYS (no TPM; allowed by configuration): a copy of the data disk holds everything, epoch {}",
            epoch.generation
        ),
    }
}

pub(crate) fn describe_tpm(t: &TpmRoot, epoch: &Epoch) -> String {
    match t.signed() {
        Some(images) => format!(
            "sealed to the TPM for images signed by key {}… (PCR 11) and PCR {}, epoch {}",
            &images.key_name()[..16],
            pcr_list(&t.pcrs()),
            epoch.generation
        ),
        None => format!(
            "sealed to the TPM (PCR {}), epoch {}",
            pcr_list(&t.pcrs()),
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

pub(crate) fn write_meta(dir: &Path, meta: &Meta) -> Result<(), KeyError> {
    let text = serde_json::to_vec_pretty(meta).map_err(|e| KeyError::Corrupt(e.to_string()))?;
    files::write_atomic(&dir.join(META), &text)
}

pub(crate) fn pcr_list(p: &[u8]) -> String {
    p.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",")
}
