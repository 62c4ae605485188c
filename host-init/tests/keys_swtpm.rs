//! The key store against a real TPM 2.0 (swtpm): sealing, the
//! copy-then-delete attack, a changed boot state, recovery, a missing TPM.

use paddock_init::keys::{
    recovery_backup_key, KeyError, KeyStore, Options, TpmSource, RECOVERY_BACKUP_KEY,
};
use paddock_tpm::swtpm::Swtpm;
use paddock_tpm::transport::Stream;
use paddock_tpm::Tpm;
use std::path::{Path, PathBuf};

/// The test's stand-in for the boot measurements: PCR 16 (resettable,
/// extendable by anyone), so the test can "boot something else".
const PCRS: &[u8] = &[16];

fn opts(tpm: TpmSource) -> Options {
    Options {
        tpm,
        pcrs: PCRS.to_vec(),
        allow_software_keys: false,
        recovery_key_sha256: None,
        signed: None,
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir").flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
}

#[test]
fn tpm_sealed_keys_survive_reboots_die_with_their_workspace_and_lock_in_another_boot_state() {
    let root = std::env::temp_dir().join(format!("paddock-keystore-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let sw = Swtpm::start(&root.join("tpm")).unwrap_or_else(|e| panic!("{e}"));
    let source = || TpmSource::Socket(sw.socket());
    let keys = root.join("keys");

    // First boot: a new store, sealed to the PCRs, with a recovery secret.
    let (store, report) = KeyStore::open(&keys, &opts(source()));
    assert!(report.ready, "{}", report.summary);
    let recovery = report
        .recovery_secret
        .clone()
        .expect("a recovery secret on first boot");
    let a = store.disk_key("ws-a").expect("key a");
    let b = store.disk_key("ws-b").expect("key b");
    assert_ne!(a.bytes(), b.bytes(), "every disk has its own key");
    let listing = std::fs::read_dir(&keys)
        .expect("dir")
        .flatten()
        .map(|e| std::fs::read(e.path()).unwrap_or_default())
        .collect::<Vec<_>>();
    for f in &listing {
        assert!(
            !f.windows(16)
                .any(|w| w == &a.bytes()[..16] || w == &b.bytes()[..16]),
            "a disk key is stored in the clear"
        );
    }

    // The copy-then-delete attack: the data partition (here, the key
    // store) is copied, then ws-a is deleted; the TPM stays.
    let copy = root.join("copy");
    copy_dir(&keys, &copy);
    store.erase("ws-a").expect("erase a");
    assert_eq!(store.disk_key("ws-b").expect("b").bytes(), b.bytes());
    drop(store);
    let (stolen, report) = KeyStore::open(&copy, &opts(source()));
    assert!(report.ready, "the copy opens (same TPM, same boot state)");
    match stolen.disk_key("ws-a") {
        Err(KeyError::Wrap { .. }) => {}
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("the copy still opened the deleted workspace's key"),
    }
    // The recovery secret does not bring it back either: it opens the
    // epoch the TPM holds now, and the old one is gone.
    assert!(matches!(
        stolen.recover(&recovery),
        Err(KeyError::NotLocked)
    ));
    drop(stolen);

    // Reboot in the same state: everything is back.
    let (store, report) = KeyStore::open(&keys, &opts(source()));
    assert!(report.ready, "{}", report.summary);
    assert!(report.recovery_secret.is_none(), "shown once only");
    assert_eq!(store.disk_key("ws-b").expect("b").bytes(), b.bytes());
    drop(store);

    // Another boot state: the TPM refuses, the store locks, nothing changes.
    {
        let mut tpm = Tpm::new(Box::new(Stream::connect(&sw.socket()).expect("connect")));
        tpm.pcr_extend(16, &[7; 32]).expect("extend");
    }
    let before: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&keys)
        .expect("dir")
        .flatten()
        .map(|e| (e.path(), std::fs::read(e.path()).unwrap_or_default()))
        .collect();
    let (store, report) = KeyStore::open(&keys, &opts(source()));
    assert!(!report.ready);
    assert!(
        report.summary.contains("different state"),
        "{}",
        report.summary
    );
    assert!(matches!(store.disk_key("ws-b"), Err(KeyError::Locked(_))));
    assert!(matches!(store.erase("ws-b"), Err(KeyError::Locked(_))));
    for (p, bytes) in &before {
        assert_eq!(
            &std::fs::read(p).unwrap_or_default(),
            bytes,
            "{} changed",
            p.display()
        );
    }
    // Recovery: a wrong secret is refused, the right one re-seals.
    assert!(matches!(
        store.recover("0000"),
        Err(KeyError::WrongRecovery)
    ));
    store.recover(&recovery).expect("recover");
    assert_eq!(store.disk_key("ws-b").expect("b").bytes(), b.bytes());
    drop(store);
    let (store, report) = KeyStore::open(&keys, &opts(source()));
    assert!(
        report.ready,
        "re-sealed to the new state: {}",
        report.summary
    );
    assert_eq!(store.disk_key("ws-b").expect("b").bytes(), b.bytes());
    drop(store);

    // The TPM gone: locked, with the reason, nothing touched.
    let (store, report) = KeyStore::open(&keys, &opts(TpmSource::Socket(root.join("absent"))));
    assert!(!report.ready);
    assert!(report.summary.contains("missing"), "{}", report.summary);
    assert!(store.disk_key("ws-b").is_err());
    drop(store);
    drop(sw);
    let _ = std::fs::remove_dir_all(&root);
}

/// The recovery backup key (docs/keys.md, "Backup keys") of a store whose
/// recovery secret was chosen at build time (`recovery_key_sha256`): the
/// box never saw the secret, yet keeps the key the typed secret gives. A
/// store without it (set up before backups existed) gets it from the
/// secret, proven against the TPM first, or from a recovery.
#[test]
fn the_recovery_backup_key_follows_the_secret_chosen_at_build_time() {
    let root = std::env::temp_dir().join(format!("paddock-backup-recovery-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let sw = Swtpm::start(&root.join("tpm")).unwrap_or_else(|e| panic!("{e}"));
    let keys = root.join("keys");
    let secret = "0123ABCD-4567-89ef";
    let typed = "0123abcd456789EF";
    let hash = paddock_tpm::kdf::sha256(&[b"0123abcd456789ef"]);
    let options = || Options {
        recovery_key_sha256: Some(hash.iter().map(|b| format!("{b:02x}")).collect()),
        ..opts(TpmSource::Socket(sw.socket()))
    };
    let (store, report) = KeyStore::open(&keys, &options());
    assert!(report.ready, "{}", report.summary);
    assert!(report.recovery_secret.is_none(), "chosen at build time");
    let want = recovery_backup_key(secret);
    assert_eq!(want.bytes(), recovery_backup_key(typed).bytes());
    assert_eq!(
        store
            .backup_key_recovery()
            .expect("readable")
            .expect("stored")
            .bytes(),
        want.bytes()
    );
    drop(store);

    // A store from before backups: no recovery backup key. A wrong secret
    // does not add one; the right one does.
    std::fs::remove_file(keys.join(format!("{RECOVERY_BACKUP_KEY}.key"))).expect("remove");
    let (store, report) = KeyStore::open(&keys, &options());
    assert!(report.ready, "{}", report.summary);
    assert!(matches!(store.backup_key_recovery(), Ok(None)));
    assert!(matches!(
        store.add_recovery_backup_key("0000"),
        Err(KeyError::WrongRecovery)
    ));
    assert!(matches!(store.backup_key_recovery(), Ok(None)));
    store.add_recovery_backup_key(typed).expect("added");
    assert_eq!(
        store
            .backup_key_recovery()
            .expect("readable")
            .expect("added")
            .bytes(),
        want.bytes()
    );
    drop(store);

    // Or a recovery, in another boot state, adds it.
    std::fs::remove_file(keys.join(format!("{RECOVERY_BACKUP_KEY}.key"))).expect("remove");
    {
        let mut tpm = Tpm::new(Box::new(Stream::connect(&sw.socket()).expect("connect")));
        tpm.pcr_extend(16, &[3; 32]).expect("extend");
    }
    let (store, report) = KeyStore::open(&keys, &options());
    assert!(!report.ready);
    assert!(store.backup_key_recovery().is_err(), "locked");
    store.recover(secret).expect("recover");
    assert_eq!(
        store
            .backup_key_recovery()
            .expect("readable")
            .expect("re-added")
            .bytes(),
        want.bytes()
    );
    assert!(store.backup_key_tpm(&[1; 32]).is_ok());
    drop(store);
    drop(sw);
    let _ = std::fs::remove_dir_all(&root);
}
