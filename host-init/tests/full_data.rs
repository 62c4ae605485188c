//! Deleting on a full data partition (issue 14, item 4): erasing a key
//! writes the re-wrapped keys and a new epoch before it frees anything, so
//! on a full partition it failed and the workspace could not be deleted.
//! host-init keeps a ballast file it gives up for that. Run on a small
//! tmpfs of the test's own (root: it mounts).

use paddock_init::control::space;
use paddock_init::keys::{KeyError, KeyStore, Options, TpmSource};
use std::io::Write;
use std::path::{Path, PathBuf};

struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn small_tmpfs(name: &str) -> Mounted {
    let dir = std::env::temp_dir().join(format!("paddock-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    nix::mount::mount(
        Some("tmpfs"),
        &dir,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=4m,mode=0700"),
    )
    .expect("mounting a tmpfs (run as root)");
    Mounted(dir)
}

/// Writes until the filesystem refuses.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).expect("filler");
    let chunk = vec![0x5au8; 64 << 10];
    loop {
        if let Err(e) = f.write_all(&chunk).and_then(|()| f.sync_all()) {
            assert_eq!(e.kind(), std::io::ErrorKind::StorageFull, "{e}");
            return;
        }
    }
}

#[test]
fn a_key_is_erased_on_a_full_partition_by_giving_up_the_ballast() {
    let fs = small_tmpfs("full-data");
    let (store, report) = KeyStore::open(
        &fs.0.join("keys"),
        &Options {
            tpm: TpmSource::Device(fs.0.join("no-tpm")),
            pcrs: paddock_init::keys::DEFAULT_PCRS.to_vec(),
            allow_software_keys: true,
            recovery_key_sha256: None,
            signed: None,
        },
    );
    assert!(report.ready, "{}", report.summary);
    let names: Vec<String> = (0..24).map(|i| format!("ws-ws_{i:04}")).collect();
    let before: Vec<[u8; 64]> = names
        .iter()
        .map(|n| *store.disk_key(n).expect("new key").bytes())
        .collect();
    let ballast = fs.0.join("ballast");
    space::keep_ballast(&ballast, 1 << 20).expect("ballast");
    fill(&fs.0.join("filler"));

    // Full: the erase alone fails, and loses nothing.
    let e = store
        .erase(&names[3])
        .expect_err("erased on a full partition");
    assert!(e.is_out_of_space(), "{e}");
    for (n, k) in names.iter().zip(&before) {
        assert_eq!(store.disk_key(n).expect("still readable").bytes(), k, "{n}");
    }

    // With the ballast given up it goes through; the others are intact.
    space::with_ballast(&ballast, KeyError::is_out_of_space, || {
        store.erase(&names[3])
    })
    .expect("erased once the ballast was given up");
    assert!(!ballast.exists());
    assert!(!store.has_key(&names[3]));
    for (i, (n, k)) in names.iter().zip(&before).enumerate() {
        if i != 3 {
            assert_eq!(store.disk_key(n).expect("re-wrapped").bytes(), k, "{n}");
        }
    }
    // Once space is freed, the ballast is put back.
    std::fs::remove_file(fs.0.join("filler")).expect("rm");
    space::keep_ballast(&ballast, 1 << 20).expect("ballast again");
}
