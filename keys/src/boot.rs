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
}

/// How a ready store holds its keys, in one line.
pub(crate) fn describe(root: &Root, epoch: &Epoch) -> String {
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

pub(crate) fn pcr_list(p: &[u8]) -> String {
    p.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",")
}
