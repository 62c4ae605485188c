use super::*;

fn software(dir: &Path) -> KeyStore {
    let opts = Options {
        tpm: TpmSource::Device(dir.join("no-tpm")),
        pcrs: DEFAULT_PCRS.to_vec(),
        allow_software_keys: true,
        recovery_key_sha256: None,
        signed: None,
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
        signed: None,
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
