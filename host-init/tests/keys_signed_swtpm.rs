//! Disk keys sealed to signed images (keys::signed), against a real TPM 2.0
//! (swtpm): an update to another image signed by the same key opens them
//! without the recovery secret; an unsigned image, a signature by another
//! key, a signature file that lies about its key, an image with another
//! key and a changed PCR 7 do not, and change nothing; recovery re-seals;
//! a store sealed to raw PCRs before images were signed stays so until a
//! recovery moves it. Each "boot" is a fresh start of swtpm on the same
//! state (PCRs back to zero), then PCR 11 extended as systemd-stub would
//! for that image.

use paddock_init::keys::signed::{PcrSignature, SignedImages};
use paddock_init::keys::{recovery_backup_key, KeyError, KeyStore, Options, TpmSource};
use paddock_tpm::kdf::sha256;
use paddock_tpm::swtpm::Swtpm;
use paddock_tpm::transport::Stream;
use paddock_tpm::Tpm;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use std::path::{Path, PathBuf};

/// Raw PCRs for a store sealed without signed images (resettable PCR 16
/// stands for the boot state, as in keys_swtpm.rs).
const RAW: &[u8] = &[16];

struct ImageKey(Vec<u8>);

impl ImageKey {
    fn new() -> ImageKey {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("a key");
        ImageKey(pkcs8.as_ref().to_vec())
    }
    fn public(&self) -> Vec<u8> {
        paddock_image::pcr::public_point(&self.0).expect("public")
    }
    /// The ESP's file for an image whose measurement is `image`.
    fn sign(&self, image: u8) -> PcrSignature {
        paddock_image::pcr::sign_policy(&self.0, &pcr11_of(image), &format!("v{image}"))
            .expect("signed")
    }
}

/// PCR 11 after booting "image N": one extend of N's digest from zero.
fn pcr11_of(image: u8) -> [u8; 32] {
    sha256(&[&[0u8; 32], &[image; 32]])
}

fn files(sigs: &[PcrSignature]) -> Vec<(String, Vec<u8>)> {
    sigs.iter()
        .map(|s| {
            (
                format!("{}.json", s.image),
                serde_json::to_vec(s).expect("json"),
            )
        })
        .collect()
}

/// A boot of image `image` with `pcr7` extended that many times.
fn boot(dir: &Path, image: u8, pcr7: u8) -> Swtpm {
    let sw = Swtpm::start(dir).unwrap_or_else(|e| panic!("{e}"));
    let mut tpm = Tpm::new(Box::new(Stream::connect(&sw.socket()).expect("connect")));
    tpm.pcr_extend(11, &[image; 32]).expect("extend 11");
    for _ in 0..pcr7 {
        tpm.pcr_extend(7, &[0x77; 32]).expect("extend 7");
    }
    sw
}

fn open(
    sw: &Swtpm,
    keys: &Path,
    key: Option<&ImageKey>,
    sigs: &[PcrSignature],
) -> (KeyStore, paddock_init::keys::BootReport) {
    let signed = key.map(|k| {
        let (images, _) = SignedImages::gather(&k.public(), &files(sigs)).expect("gathered");
        images
    });
    KeyStore::open(
        keys,
        &Options {
            tpm: TpmSource::Socket(sw.socket()),
            pcrs: RAW.to_vec(),
            allow_software_keys: false,
            recovery_key_sha256: None,
            signed,
        },
    )
}

fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .expect("dir")
        .flatten()
        .map(|e| (e.path(), std::fs::read(e.path()).unwrap_or_default()))
        .collect();
    v.sort();
    v
}

#[test]
fn an_update_signed_by_the_image_key_keeps_the_disk_keys_and_nothing_else_does() {
    let root = std::env::temp_dir().join(format!("paddock-signed-keys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let tpm_dir = root.join("tpm");
    let keys = root.join("keys");
    let ours = ImageKey::new();
    let theirs = ImageKey::new();

    // Boot v1 on a new box: sealed to the images our key signs.
    let sw = boot(&tpm_dir, 1, 0);
    let (store, report) = open(&sw, &keys, Some(&ours), &[ours.sign(1)]);
    assert!(report.ready, "{}", report.summary);
    assert!(
        report.summary.contains("images signed by key"),
        "{}",
        report.summary
    );
    let recovery = report.recovery_secret.clone().expect("shown at first boot");
    let disk = store.disk_key("ws-a").expect("a disk key").bytes().to_vec();
    drop(store);
    drop(sw);

    // The update: v2, signed by the same key, its signature beside v1's.
    // No recovery secret, the same disk key.
    let sw = boot(&tpm_dir, 2, 0);
    let (store, report) = open(&sw, &keys, Some(&ours), &[ours.sign(1), ours.sign(2)]);
    assert!(
        report.ready,
        "the update opens the keys: {}",
        report.summary
    );
    assert_eq!(store.disk_key("ws-a").expect("key").bytes(), &disk[..]);
    drop(store);
    drop(sw);

    // What must not open them, each changing nothing on the data partition.
    let before = snapshot(&keys);
    let locked = |sw: &Swtpm, key: &ImageKey, sigs: &[PcrSignature], why: &str| {
        let (store, report) = open(sw, &keys, Some(key), sigs);
        assert!(!report.ready, "{why}: opened");
        assert!(report.summary.contains(why), "{why}: {}", report.summary);
        assert!(matches!(store.disk_key("ws-a"), Err(KeyError::Locked(_))));
        assert_eq!(snapshot(&keys), before, "{why}: the key store changed");
    };
    let sw = boot(&tpm_dir, 3, 0);
    // v3, which our key never signed.
    locked(
        &sw,
        &ours,
        &[ours.sign(1), ours.sign(2)],
        "none of the 2 signature",
    );
    // v3 signed by another key: that file is left out as another key's.
    locked(&sw, &ours, &[theirs.sign(3)], "none of the 0 signature");
    // A file that says our key signed v3, with another key's signature:
    // the TPM's VerifySignature refuses it.
    let mut lying = theirs.sign(3);
    lying.key = ours.sign(3).key;
    locked(&sw, &ours, &[lying], "verifies with the image key");
    drop(sw);
    // v2 again, but an image that carries another key (signed by it).
    let sw = boot(&tpm_dir, 2, 0);
    locked(&sw, &theirs, &[theirs.sign(2)], "image key is not the one");
    // v2 with no image key at all.
    let (_, report) = open(&sw, &keys, None, &[]);
    assert!(
        report.summary.contains("carries no image key"),
        "{}",
        report.summary
    );
    drop(sw);
    // v2 signed, but the Secure Boot state (PCR 7) changed.
    let sw = boot(&tpm_dir, 2, 1);
    locked(&sw, &ours, &[ours.sign(2)], "different state");

    // Recovery in that state: re-sealed to our signed images with the new
    // PCR 7, and the next boot of it opens without the secret.
    let (store, _) = open(&sw, &keys, Some(&ours), &[ours.sign(2)]);
    let summary = store.recover(&recovery).expect("recovered");
    assert!(summary.contains("images signed by key"), "{summary}");
    drop(store);
    drop(sw);
    let sw = boot(&tpm_dir, 2, 1);
    let (store, report) = open(&sw, &keys, Some(&ours), &[ours.sign(2)]);
    assert!(report.ready, "{}", report.summary);
    assert_eq!(store.disk_key("ws-a").expect("key").bytes(), &disk[..]);
    drop(store);
    drop(sw);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_store_sealed_before_images_were_signed_moves_to_them_only_with_recovery() {
    let root = std::env::temp_dir().join(format!("paddock-signed-move-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let tpm_dir = root.join("tpm");
    let keys = root.join("keys");
    let ours = ImageKey::new();

    // An image without a key: sealed to the raw PCRs.
    let sw = boot(&tpm_dir, 1, 0);
    let (store, report) = open(&sw, &keys, None, &[]);
    assert!(report.ready, "{}", report.summary);
    assert!(report.summary.contains("(PCR 16)"), "{}", report.summary);
    let recovery = report.recovery_secret.clone().expect("secret");
    drop(store);
    drop(sw);
    // The next image has a key and signs itself: the raw seal still holds
    // (its PCRs are the same), and the store says how it is held.
    let sw = boot(&tpm_dir, 1, 0);
    let (store, report) = open(&sw, &keys, Some(&ours), &[ours.sign(1)]);
    assert!(report.ready, "{}", report.summary);
    assert!(
        report.summary.contains("(PCR 16)"),
        "still raw: {}",
        report.summary
    );
    drop(store);
    drop(sw);
    // The raw PCR changes (another boot state): locked; the recovery moves
    // the store to the signed images; then an update opens it.
    let sw = boot(&tpm_dir, 1, 0);
    {
        let mut tpm = Tpm::new(Box::new(Stream::connect(&sw.socket()).expect("connect")));
        tpm.pcr_extend(16, &[9; 32]).expect("extend 16");
    }
    let (store, report) = open(&sw, &keys, Some(&ours), &[ours.sign(1)]);
    assert!(!report.ready);
    let summary = store.recover(&recovery).expect("recovered");
    assert!(summary.contains("images signed by key"), "{summary}");
    drop(store);
    drop(sw);
    let sw = boot(&tpm_dir, 2, 0);
    let (_, report) = open(&sw, &keys, Some(&ours), &[ours.sign(2)]);
    assert!(
        report.ready,
        "the update after the move: {}",
        report.summary
    );
    drop(sw);
    let _ = std::fs::remove_dir_all(&root);
}

/// A recovery in a boot the image key did not sign (a file removed from
/// the ESP, or forged) must neither lose the epoch nor seal it to PCR 7
/// alone: it falls back to the raw PCRs, and the epoch is still there.
#[test]
fn a_recovery_without_a_good_signature_keeps_the_epoch_and_the_raw_pcrs() {
    let root = std::env::temp_dir().join(format!("paddock-signed-recover-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let tpm_dir = root.join("tpm");
    let keys = root.join("keys");
    let ours = ImageKey::new();
    let theirs = ImageKey::new();

    let sw = boot(&tpm_dir, 1, 0);
    let (store, report) = open(&sw, &keys, Some(&ours), &[ours.sign(1)]);
    assert!(report.ready, "{}", report.summary);
    let recovery = report.recovery_secret.clone().expect("secret");
    let disk = store.disk_key("ws-a").expect("key").bytes().to_vec();
    drop(store);
    drop(sw);

    // v2's signature is gone from the ESP; one that claims our key is
    // there instead (signed by another). Locked; recovered; the seal falls
    // back to the raw PCRs, not to PCR 7 alone.
    let sw = boot(&tpm_dir, 2, 0);
    let mut forged = theirs.sign(2);
    forged.key = ours.sign(2).key;
    let (store, report) = open(&sw, &keys, Some(&ours), &[ours.sign(1), forged.clone()]);
    assert!(!report.ready);
    let summary = store.recover(&recovery).expect("recovered");
    assert!(
        summary.contains("(PCR 16)"),
        "raw PCRs, not PCR 7 alone: {summary}"
    );
    assert_eq!(store.disk_key("ws-a").expect("key").bytes(), &disk[..]);
    drop(store);
    drop(sw);
    // The same boot again: open, the epoch as it was.
    let sw = boot(&tpm_dir, 2, 0);
    let (store, report) = open(&sw, &keys, Some(&ours), &[ours.sign(1), forged]);
    assert!(report.ready, "{}", report.summary);
    assert_eq!(store.disk_key("ws-a").expect("key").bytes(), &disk[..]);
    drop(store);
    drop(sw);
    // An image with no key at all and another PCR 11: locked (raw PCR 16
    // holds, but that store is bound to it; here PCR 16 is the same, so
    // it opens: the raw seal is this box's boot state, not "any image").
    let sw = boot(&tpm_dir, 3, 0);
    {
        let mut tpm = Tpm::new(Box::new(Stream::connect(&sw.socket()).expect("connect")));
        tpm.pcr_extend(16, &[5; 32]).expect("extend 16");
    }
    let (store, report) = open(&sw, &keys, None, &[]);
    assert!(!report.ready, "another raw boot state: {}", report.summary);
    // Recovered again in that state, the epoch is still the first one.
    store.recover(&recovery).expect("recovered");
    assert_eq!(store.disk_key("ws-a").expect("key").bytes(), &disk[..]);
    drop(store);
    drop(sw);
    let _ = std::fs::remove_dir_all(&root);
}

/// Backup keys (docs/keys.md, "Backup keys"). The TPM's: the same after an
/// update signed by the same key and after a reflash (a fresh key store,
/// the same TPM) in the same boot state; another Secure Boot state, an
/// unsigned image or another raw boot state does not give it. The
/// recovery secret's: stored at first boot, kept through an erasure.
#[test]
fn backup_keys_come_back_after_a_reflash_in_the_same_boot_state_only() {
    let root = std::env::temp_dir().join(format!("paddock-backup-keys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let tpm_dir = root.join("tpm");
    let ours = ImageKey::new();
    let ctx = [0x5C; 32];

    // First boot of v1: sealed to our signed images.
    let sw = boot(&tpm_dir, 1, 0);
    let keys = root.join("keys");
    let (store, report) = open(&sw, &keys, Some(&ours), &[ours.sign(1)]);
    assert!(report.ready, "{}", report.summary);
    let secret = report.recovery_secret.clone().expect("shown at first boot");
    let recovery = store
        .backup_key_recovery()
        .expect("readable")
        .expect("stored at first boot");
    assert_eq!(recovery.bytes(), recovery_backup_key(&secret).bytes());
    let tpm_key = store.backup_key_tpm(&ctx).expect("the TPM backup key");
    assert_eq!(
        store.backup_key_tpm(&ctx).expect("again").bytes(),
        tpm_key.bytes()
    );
    assert_ne!(
        store.backup_key_tpm(&[0x5D; 32]).expect("another").bytes(),
        tpm_key.bytes(),
        "the context is part of the key"
    );
    assert_ne!(tpm_key.bytes(), recovery.bytes());
    for (path, bytes) in snapshot(&keys) {
        for k in [tpm_key.bytes(), recovery.bytes()] {
            assert!(
                !bytes.windows(16).any(|w| w == &k[..16]),
                "a backup key in the clear in {}",
                path.display()
            );
        }
    }
    // An erasure rotates the epoch: the recovery backup key is carried.
    store.disk_key("ws-a").expect("a");
    let b = store.disk_key("ws-b").expect("b");
    store.erase("ws-a").expect("erase");
    assert_eq!(
        store
            .backup_key_recovery()
            .expect("readable")
            .expect("kept")
            .bytes(),
        recovery.bytes()
    );
    assert_eq!(store.disk_key("ws-b").expect("b").bytes(), b.bytes());
    drop(store);
    drop(sw);

    // An update to v2, signed by the same key: the same TPM backup key.
    let sw = boot(&tpm_dir, 2, 0);
    let (store, report) = open(&sw, &keys, Some(&ours), &[ours.sign(1), ours.sign(2)]);
    assert!(report.ready, "{}", report.summary);
    assert_eq!(
        store
            .backup_key_tpm(&ctx)
            .expect("after the update")
            .bytes(),
        tpm_key.bytes()
    );
    drop(store);
    drop(sw);

    // A reflash: the data partition (the key store) is new, the TPM is
    // not. The same key, with nothing typed; a new recovery secret.
    let sw = boot(&tpm_dir, 2, 0);
    let reflashed = root.join("keys-reflashed");
    let (store, report) = open(&sw, &reflashed, Some(&ours), &[ours.sign(2)]);
    assert!(report.ready, "{}", report.summary);
    assert_eq!(
        store
            .backup_key_tpm(&ctx)
            .expect("after the reflash")
            .bytes(),
        tpm_key.bytes()
    );
    let new_secret = report.recovery_secret.clone().expect("a new secret");
    assert_eq!(
        store
            .backup_key_recovery()
            .expect("readable")
            .expect("stored")
            .bytes(),
        recovery_backup_key(&new_secret).bytes()
    );
    drop(store);
    drop(sw);

    // Another Secure Boot state (PCR 7): the store locks and says why; a
    // store made afresh in that state gets another key.
    let sw = boot(&tpm_dir, 2, 1);
    let (store, report) = open(&sw, &reflashed, Some(&ours), &[ours.sign(2)]);
    assert!(!report.ready);
    let e = store.backup_key_tpm(&ctx).err().map(|e| e.to_string());
    assert!(
        e.as_deref()
            .is_some_and(|e| e.contains("locked") && e.contains("different state")),
        "{e:?}"
    );
    assert!(store.backup_key_recovery().is_err());
    drop(store);
    let (store, report) = open(
        &sw,
        &root.join("keys-other-pcr7"),
        Some(&ours),
        &[ours.sign(2)],
    );
    assert!(report.ready, "{}", report.summary);
    assert_ne!(
        store.backup_key_tpm(&ctx).expect("another state's").bytes(),
        tpm_key.bytes()
    );
    drop(store);
    drop(sw);

    // An image our key did not sign: locked, no key.
    let sw = boot(&tpm_dir, 3, 0);
    let (store, report) = open(&sw, &reflashed, Some(&ours), &[ours.sign(2)]);
    assert!(!report.ready);
    let e = store.backup_key_tpm(&ctx).err().map(|e| e.to_string());
    assert!(
        e.as_deref().is_some_and(|e| e.contains("not signed")),
        "{e:?}"
    );
    drop(store);
    drop(sw);

    // The raw policy (an image without a key): the same after a reflash in
    // the same state; not the signed one; not another raw state's.
    let sw = boot(&tpm_dir, 1, 0);
    let (store, report) = open(&sw, &root.join("keys-raw"), None, &[]);
    assert!(report.ready, "{}", report.summary);
    assert!(report.summary.contains("(PCR 16)"), "{}", report.summary);
    let raw_key = store.backup_key_tpm(&ctx).expect("raw");
    assert_ne!(raw_key.bytes(), tpm_key.bytes());
    drop(store);
    let (store, _) = open(&sw, &root.join("keys-raw-reflashed"), None, &[]);
    assert_eq!(
        store.backup_key_tpm(&ctx).expect("raw, reflashed").bytes(),
        raw_key.bytes()
    );
    drop(store);
    {
        let mut tpm = Tpm::new(Box::new(Stream::connect(&sw.socket()).expect("connect")));
        tpm.pcr_extend(16, &[4; 32]).expect("extend 16");
    }
    let (store, report) = open(&sw, &root.join("keys-raw-reflashed"), None, &[]);
    assert!(!report.ready, "another raw boot state");
    assert!(store.backup_key_tpm(&ctx).is_err());
    drop(store);
    let (store, _) = open(&sw, &root.join("keys-raw-other"), None, &[]);
    assert_ne!(
        store
            .backup_key_tpm(&ctx)
            .expect("another raw state's")
            .bytes(),
        raw_key.bytes()
    );
    drop(store);
    drop(sw);
    let _ = std::fs::remove_dir_all(&root);
}
