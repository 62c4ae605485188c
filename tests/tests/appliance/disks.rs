//! Workspace disks: encrypted on the data partition, their keys sealed to
//! the boot state, erased for good.

use super::*;
use paddock_image::slots::Slot;

/// Whether `needle` occurs anywhere in `len` bytes of `path` from `from`.
pub(crate) fn occurs_in(path: &Path, from: u64, len: u64, needle: &[u8]) -> bool {
    let finder = memchr::memmem::Finder::new(needle);
    let mut f = std::fs::File::open(path).expect("open");
    f.seek(SeekFrom::Start(from)).expect("seek");
    // The previous piece's last needle.len() - 1 bytes lead the next, so a
    // needle across two reads is found.
    let keep = needle.len().saturating_sub(1);
    let mut buf = vec![0u8; keep + (8 << 20)];
    let mut held = 0;
    let mut left = len;
    while left > 0 {
        let n = f
            .read(&mut buf[held..held + left.min(8 << 20) as usize])
            .expect("read");
        if n == 0 {
            break;
        }
        left -= n as u64;
        let filled = held + n;
        if finder.find(&buf[..filled]).is_some() {
            return true;
        }
        held = keep.min(filled);
        buf.copy_within(filled - held..filled, 0);
    }
    false
}

/// A file of the data partition, copied out with debugfs.
pub(crate) fn dump_from_data(disk: &Path, inner: &str, out: &Path) -> Vec<u8> {
    let (first, _) = data_partition(disk);
    let _ = std::fs::remove_file(out);
    let status = Command::new(
        ["/usr/sbin/debugfs", "/sbin/debugfs"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or("debugfs"),
    )
    .args(["-R", &format!("dump {inner} {}", out.display())])
    .arg(format!("{}?offset={}", disk.display(), first * SECTOR))
    .output()
    .expect("debugfs");
    assert!(status.status.success(), "debugfs dump {inner}");
    std::fs::read(out).unwrap_or_else(|e| panic!("{inner} was not dumped: {e}"))
}

/// Issue 7 end to end, one appliance disk over seven boots (and an eighth
/// of a new box without a TPM): disks encrypted with their own keys,
/// sealed to the images the image key signs, surviving a signed update,
/// erased for good.
#[test]
fn workspace_disks_are_encrypted_sealed_to_the_boot_state_and_erased_for_good() {
    let dir = scratch("keys");
    let disk = fresh_disk(&dir);
    let state = dir.join("state");
    let images = image_dir().expect("image");
    let probe = |app: &Appliance, admin: &str, id: &str| {
        let (code, body) = app
            .api(
                "POST",
                "/v1/debug/open-disk",
                admin,
                Some(format!(r#"{{"workspace": "{id}"}}"#).as_bytes()),
            )
            .expect("curl");
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
        json(&body)
    };
    let keys_state = |app: &Appliance, admin: &str| {
        let (code, body) = app.api("GET", "/v1/keys", admin, None).expect("curl");
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
        json(&body)
    };
    let power_off = |mut app: Appliance| {
        let exited = app.power_button(Duration::from_secs(180)).expect("QMP");
        assert!(exited.is_some(), "powered off:\n{}", app.console());
    };

    // Boot 1: a new key store sealed to the images the image key signs
    // (PCR 11 as systemd-stub measured this UKI, signed at build) and PCR
    // 7, its recovery secret shown once. Two workspaces write the same
    // plaintext.
    let mut app = Appliance::boot(&disk, &state, &dir.join("k1.log")).expect("boot 1");
    let console = app
        .wait_for("ready ", BOOT_GUARD)
        .and_then(|_| app.wait_for("disk-key recovery secret", BOOT_GUARD))
        .expect("boot 1");
    assert!(
        console.contains("Disk keys    sealed to the TPM for images signed by key"),
        "{console}"
    );
    assert!(console.contains("and PCR 7, epoch 1"), "{console}");
    let recovery = console
        .lines()
        .skip_while(|l| !l.contains("(POST /v1/keys/recover)"))
        .nth(1)
        .map(|l| l.trim().to_string())
        .expect("the recovery secret on the first boot's screen");
    assert_eq!(recovery.len(), 71, "{recovery:?}");
    let admin = console
        .split_whitespace()
        .find(|w| w.starts_with("pdk_admin_"))
        .expect("bootstrap credential")
        .to_string();
    assert_eq!(keys_state(&app, &admin)["state"], "ready");
    let marker = format!(
        "PADDOCK-PLAINTEXT-{:x}",
        std::process::id() as u64 * 7919 + 17
    );
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (code, body) = app
            .api(
                "POST",
                "/v1/workspaces",
                &admin,
                Some(br#"{"ttl_s": 3600, "memory_mib": 256, "disk_mib": 256}"#),
            )
            .expect("curl");
        assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
        let id = json(&body)["id"].as_str().expect("id").to_string();
        // The marker in a file (through ext4 on the encrypted disk), and
        // zeros straight onto the disk's last 4 KiB, the same in both.
        let script = format!(
            "import os\n\
             open('/srv/marker.txt','w').write('{marker}\\n' * 4096)\n\
             os.sync()\n\
             f = os.open('/dev/vdb', os.O_RDWR)\n\
             n = os.lseek(f, 0, 2)\n\
             os.pwrite(f, bytes(4096), n - 4096)\n\
             os.fsync(f)\n\
             print(open('/srv/marker.txt').read(len('{marker}')))\n"
        );
        let body = serde_json::json!({"argv": ["python3", "-c", script], "user": "root"});
        let (code, stream) = app
            .api(
                "POST",
                &format!("/v1/workspaces/{id}/exec"),
                &admin,
                Some(body.to_string().as_bytes()),
            )
            .expect("curl");
        assert_eq!(code, 200);
        let (out, last) = exec_output(&stream);
        assert_eq!(last["exit_code"], 0, "{last} {out}");
        assert_eq!(out.trim(), marker, "the workspace reads back what it wrote");
        let (code, body) = app
            .api("POST", &format!("/v1/workspaces/{id}/stop"), &admin, None)
            .expect("curl");
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
        let p = probe(&app, &admin, &id);
        assert_eq!(p["opened"], true, "{p}");
        assert_eq!(p["ext4"], true, "the box reads its own disk: {p}");
        // The kernel's table names the key in the keyring, never holds it.
        let table = p["table"].as_str().expect("table");
        assert!(
            table.starts_with("aes-xts-plain64 :64:logon:paddock:"),
            "{table}"
        );
        let longest_hex = table
            .split(|c: char| !c.is_ascii_hexdigit())
            .map(str::len)
            .max()
            .unwrap_or(0);
        assert!(longest_hex < 32, "key material in the table: {table}");
        ids.push(id);
    }
    power_off(app);

    // From the raw data partition: the marker is nowhere (while the
    // workspace ids, in the database and audit log, are: the scan works),
    // and the same plaintext block is different ciphertext on each disk.
    let (first, last) = data_partition(&disk);
    let (from, len) = (first * SECTOR, (last - first + 1) * SECTOR);
    assert!(
        !occurs_in(&disk, from, len, marker.as_bytes()),
        "the marker a workspace wrote is on the data partition in the clear"
    );
    assert!(
        occurs_in(&disk, from, len, ids[0].as_bytes()),
        "positive control"
    );
    let e1 = dump_from_data(
        &disk,
        &format!("/workspaces/{}/disk.img", ids[0]),
        &dir.join("e1.img"),
    );
    let e2 = dump_from_data(
        &disk,
        &format!("/workspaces/{}/disk.img", ids[1]),
        &dir.join("e2.img"),
    );
    let (t1, t2) = (&e1[e1.len() - 4096..], &e2[e2.len() - 4096..]);
    assert!(
        t1.iter().any(|b| *b != 0) && t2.iter().any(|b| *b != 0),
        "zeros stored as zeros"
    );
    assert_ne!(t1, t2, "two workspaces' disks share a key");

    // The attacker's copy of the whole data disk, taken before the delete.
    let old = dir.join("old.img");
    let cp = Command::new("cp")
        .args(["--sparse=always"])
        .arg(&disk)
        .arg(&old)
        .status()
        .expect("cp");
    assert!(cp.success());

    // Boot 2: delete the first workspace; the second still opens.
    let mut app = Appliance::boot(&disk, &state, &dir.join("k2.log")).expect("boot 2");
    app.wait_for("ready ", BOOT_GUARD).expect("boot 2");
    let (code, body) = app
        .api(
            "DELETE",
            &format!("/v1/workspaces/{}", ids[0]),
            &admin,
            None,
        )
        .expect("curl");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let p = probe(&app, &admin, &ids[1]);
    assert_eq!(
        (p["opened"].clone(), p["ext4"].clone()),
        (true.into(), true.into()),
        "{p}"
    );
    assert!(app
        .console()
        .contains(&format!("key store: ws-{} erased", ids[0])));
    power_off(app);

    // Boot 3: the old copy, on the same box with the same TPM. Everything
    // the box holds is there, and neither disk of the copy opens: their
    // wrapped keys need an epoch the TPM no longer has.
    let mut app = Appliance::boot(&old, &state, &dir.join("k3.log")).expect("boot 3");
    app.wait_for("ready ", BOOT_GUARD).expect("boot 3");
    assert_eq!(keys_state(&app, &admin)["state"], "ready");
    for id in &ids {
        let p = probe(&app, &admin, id);
        assert_eq!(p["opened"], false, "the copy's disk {id} opened: {p}");
        assert!(
            p["error"].as_str().unwrap_or_default().contains("erased"),
            "{p}"
        );
    }
    power_off(app);
    let _ = std::fs::remove_file(&old);

    // Boot 4: the same disk and TPM, another kernel command line (direct
    // boot): the TPM keeps the keys, the console says why, nothing changes.
    let cmdline = std::fs::read_to_string(images.join("cmdline")).expect("cmdline");
    let extra: Vec<std::ffi::OsString> = vec![
        "--kernel".into(),
        images.join("vmlinuz").into(),
        "--initrd".into(),
        images.join("initramfs.cpio.zst").into(),
        "--append".into(),
        format!("{} paddock_test_modified_image=1", cmdline.trim()).into(),
    ];
    let mut app = Appliance::boot_with(&disk, &state, &dir.join("k4.log"), &extra).expect("boot 4");
    let console = app.wait_for("ready ", BOOT_GUARD).expect("boot 4");
    assert!(
        console.contains("the TPM will not release the disk keys"),
        "{console}"
    );
    assert_eq!(keys_state(&app, &admin)["state"], "locked");
    let (code, body) = app
        .api(
            "POST",
            "/v1/workspaces",
            &admin,
            Some(br#"{"ttl_s": 60, "memory_mib": 256, "disk_mib": 256}"#),
        )
        .expect("curl");
    assert_eq!(code, 503, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("locked"));
    let (code, _) = app
        .api(
            "POST",
            "/v1/keys/recover",
            &admin,
            Some(br#"{"recovery_secret": "00000000-00000000"}"#),
        )
        .expect("curl");
    assert_eq!(code, 403, "a wrong recovery secret");
    power_off(app);
    let after = dump_from_data(
        &disk,
        &format!("/workspaces/{}/disk.img", ids[1]),
        &dir.join("e2b.img"),
    );
    assert!(
        after == e2,
        "a locked boot changed the second workspace's disk"
    );

    // Boot 5: the TPM removed.
    let mut app = Appliance::boot_with(&disk, &state, &dir.join("k5.log"), &["--no-tpm".into()])
        .expect("boot 5");
    let console = app.wait_for("ready ", BOOT_GUARD).expect("boot 5");
    assert!(
        console.contains("sealed to a TPM and /dev/tpmrm0 is missing"),
        "{console}"
    );
    assert!(console.contains("TPM 2.0      absent"), "{console}");
    assert_eq!(keys_state(&app, &admin)["state"], "locked");
    power_off(app);

    // Boot 6: an update nobody signed (another UKI, no signature for it):
    // locked, the screen says why, nothing changes.
    let unsigned = paddock_tests::uki::another(&images, &dir, "unsigned", 2, false);
    paddock_tests::esp_config::install_uki(&disk, Slot::B, &unsigned.0, None, None)
        .expect("install");
    let mut app = Appliance::boot(&disk, &state, &dir.join("k6.log")).expect("boot 6");
    let console = app.wait_for("ready ", BOOT_GUARD).expect("boot 6");
    assert!(
        console.contains("this image is not signed for them"),
        "{console}"
    );
    assert_eq!(keys_state(&app, &admin)["state"], "locked");
    power_off(app);
    let after = dump_from_data(
        &disk,
        &format!("/workspaces/{}/disk.img", ids[1]),
        &dir.join("e2c.img"),
    );
    assert!(after == e2, "the unsigned image changed the disk");

    // Boot 7: an update signed by the image key (its PCR 11 signature put
    // beside the first image's): everything is back, no recovery secret.
    let (signed, signature) = paddock_tests::uki::another(&images, &dir, "signed", 1, true);
    paddock_tests::esp_config::install_uki(&disk, Slot::B, &signed, None, signature)
        .expect("install");
    let mut app = Appliance::boot(&disk, &state, &dir.join("k7.log")).expect("boot 7");
    let console = app.wait_for("ready ", BOOT_GUARD).expect("boot 7");
    assert!(
        console.contains("2 PCR signature(s) on the ESP"),
        "{console}"
    );
    assert_eq!(keys_state(&app, &admin)["state"], "ready");
    let p = probe(&app, &admin, &ids[1]);
    assert_eq!(
        (p["opened"].clone(), p["ext4"].clone()),
        (true.into(), true.into()),
        "{p}"
    );
    let (code, body) = app
        .api(
            "POST",
            "/v1/keys/recover",
            &admin,
            Some(format!(r#"{{"recovery_secret": "{recovery}"}}"#).as_bytes()),
        )
        .expect("curl");
    // Nothing to recover: the secret is checked against the TPM and
    // backups are encrypted to it from then on (a store made before
    // backups had no recovery backup key).
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let answer = json(&body);
    assert_eq!(answer["state"], "ready", "{answer}");
    assert!(
        answer["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("were not locked"),
        "{answer}"
    );
    let (code, _) = app
        .api(
            "POST",
            "/v1/keys/recover",
            &admin,
            Some(br#"{"recovery_secret": "00000000-00000000"}"#),
        )
        .expect("curl");
    assert_eq!(code, 403, "a wrong secret adds no backup key either");
    power_off(app);

    // Boot 8: a new box without a TPM at all (fresh disk, fresh state):
    // encrypted workspaces are refused, and the screen says why.
    let _ = std::fs::remove_file(&disk);
    let bare = fresh_disk(&dir);
    let mut app = Appliance::boot_with(
        &bare,
        &dir.join("state-bare"),
        &dir.join("k8.log"),
        &["--no-tpm".into()],
    )
    .expect("boot 8");
    let console = app
        .wait_for("ready ", BOOT_GUARD)
        .and_then(|_| app.wait_for("bootstrap admin credential", BOOT_GUARD))
        .expect("boot 8");
    assert!(
        console.contains("Disk keys    no disk keys: no TPM 2.0 found"),
        "{console}"
    );
    assert!(!console.contains("disk-key recovery secret"), "{console}");
    let bare_admin = console
        .split_whitespace()
        .find(|w| w.starts_with("pdk_admin_"))
        .expect("bootstrap credential")
        .to_string();
    assert_eq!(keys_state(&app, &bare_admin)["state"], "unavailable");
    let (code, body) = app
        .api(
            "POST",
            "/v1/workspaces",
            &bare_admin,
            Some(br#"{"ttl_s": 60, "memory_mib": 256, "disk_mib": 256}"#),
        )
        .expect("curl");
    assert_eq!(code, 503, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("allow_software_keys"));
    power_off(app);
    let _ = std::fs::remove_dir_all(&dir);
}
