//! The image slots (issue 20), on one appliance disk: it boots through
//! systemd-boot from slot A; an update put in slot B on trial (signed by
//! the image key) comes up, proves itself (disk keys, API, a workspace)
//! and is blessed, with its tokens and disk keys as they were; an update
//! that never comes up (unsigned: its disk keys stay locked) is tried as
//! often as the boot manager allows, each try ending in a reboot, and then
//! the box is back on the good slot by itself.

use super::*;
use paddock_image::slots::{Slot, TRIES};

fn system(app: &Appliance, admin: &str) -> serde_json::Value {
    let (code, body) = app.api("GET", "/v1/system", admin, None).expect("curl");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    json(&body)
}

/// The slot's entry in `GET /v1/system`.
fn slot(system: &serde_json::Value, letter: &str) -> serde_json::Value {
    system["slots"]
        .as_array()
        .and_then(|s| s.iter().find(|x| x["slot"] == letter))
        .cloned()
        .unwrap_or_else(|| panic!("no slot {letter} in {system}"))
}

/// The slots' UKI file names on the disk's ESP.
fn ukis(disk: &Path) -> Vec<String> {
    paddock_tests::esp_config::slot_ukis(disk).expect("the ESP")
}

#[test]
fn a_good_update_is_blessed_and_one_that_never_comes_up_rolls_back_by_itself() {
    let dir = scratch("slots");
    let disk = fresh_disk(&dir);
    let state = dir.join("state");
    let images = image_dir().expect("image");
    let power_off = |mut app: Appliance| {
        let exited = app.power_button(Duration::from_secs(180)).expect("QMP");
        assert!(exited.is_some(), "powered off:\n{}", app.console());
    };

    // Boot 1: slot A, as the image build left it (blessed); B empty.
    let mut app = Appliance::boot(&disk, &state, &dir.join("s1.log")).expect("boot 1");
    let console = app
        .wait_for("ready ", BOOT_GUARD)
        .and_then(|_| app.wait_for("bootstrap admin credential", BOOT_GUARD))
        .expect("boot 1");
    assert!(console.contains("booted slot a"), "{console}");
    let admin = console
        .split_whitespace()
        .find(|w| w.starts_with("pdk_admin_"))
        .expect("bootstrap credential")
        .to_string();
    let s = system(&app, &admin);
    let v1 = slot(&s, "a")["version"]
        .as_str()
        .expect("a version")
        .to_string();
    assert_eq!(slot(&s, "a")["state"], "good", "{s}");
    assert_eq!(slot(&s, "a")["booted"], true, "{s}");
    assert_eq!(slot(&s, "b")["state"], "empty", "{s}");
    // A token made before the update, to use after it.
    let (code, body) = app
        .api(
            "POST",
            "/v1/tokens",
            &admin,
            Some(br#"{"name": "before-update", "scopes": ["read"]}"#),
        )
        .expect("curl");
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    let reader = json(&body)["secret"].as_str().expect("secret").to_string();
    power_off(app);

    // Boot 2: a signed update in slot B, on trial with TRIES tries: it is
    // booted (newer), proves itself and is blessed; nothing was asked of
    // anyone.
    let (v2, signature) = paddock_tests::uki::another(&images, &dir, "v2", 1, true);
    paddock_tests::esp_config::install_uki(&disk, Slot::B, &v2, Some(TRIES), signature)
        .expect("install v2");
    let mut app = Appliance::boot(&disk, &state, &dir.join("s2.log")).expect("boot 2");
    let console = app
        .wait_for("slot b is good: blessed", BOOT_GUARD)
        .expect("boot 2 blesses slot b");
    assert!(console.contains("booted slot b on trial"), "{console}");
    assert!(
        console.contains("slot check: a workspace booted and ran `true`"),
        "{console}"
    );
    let s = system(&app, &admin);
    let b = slot(&s, "b");
    assert_eq!(
        (b["state"].clone(), b["booted"].clone()),
        ("good".into(), true.into()),
        "{s}"
    );
    assert_ne!(b["version"], v1.as_str(), "{s}");
    assert_eq!(slot(&s, "a")["state"], "good", "{s}");
    assert_eq!(s["keys"]["state"], "ready", "no recovery secret asked: {s}");
    let (code, _) = app
        .api("GET", "/v1/workspaces", &reader, None)
        .expect("curl");
    assert_eq!(code, 200, "a token made before the update still works");
    let (code, body) = app
        .api("GET", "/v1/audit?event=token_issued", &admin, None)
        .expect("curl");
    assert_eq!(code, 200);
    assert!(
        String::from_utf8_lossy(&body).contains("before-update"),
        "the audit log kept what happened before the update"
    );
    power_off(app);
    assert_eq!(
        ukis(&disk),
        vec!["EFI/Linux/paddock-a.efi", "EFI/Linux/paddock-b.efi"],
        "slot b's counter is gone from its name"
    );

    // Boots 3 to 5: an update that never comes up, in slot A (newer than
    // B), on trial. Each try ends in a reboot; its tries run out.
    let (v3, _) = paddock_tests::uki::another(&images, &dir, "v3", 2, false);
    paddock_tests::esp_config::install_uki(&disk, Slot::A, &v3, Some(TRIES), None)
        .expect("install v3");
    for attempt in 1..=TRIES {
        let mut app = Appliance::boot(&disk, &state, &dir.join(format!("s3-{attempt}.log")))
            .expect("a try of v3");
        let console = app
            .wait_for("on trial is not good", BOOT_GUARD)
            .unwrap_or_else(|e| panic!("try {attempt}: {e}"));
        assert!(
            console.contains("booted slot a on trial"),
            "try {attempt}: {console}"
        );
        assert!(
            console.contains("this image is not signed for them"),
            "{console}"
        );
        assert!(
            app.wait_exit(Duration::from_secs(300)).is_some(),
            "try {attempt}: the box reboots by itself"
        );
    }
    assert_eq!(
        ukis(&disk),
        vec!["EFI/Linux/paddock-a+0-3.efi", "EFI/Linux/paddock-b.efi"],
        "slot a's tries are used up"
    );

    // Boot 6: the boot manager went back to slot B by itself; its keys,
    // its tokens, everything as before.
    let mut app = Appliance::boot(&disk, &state, &dir.join("s6.log")).expect("boot 6");
    let console = app.wait_for("ready ", BOOT_GUARD).expect("boot 6");
    assert!(console.contains("booted slot b"), "{console}");
    assert!(!console.contains("on trial"), "{console}");
    let s = system(&app, &admin);
    assert_eq!(slot(&s, "b")["booted"], true, "{s}");
    let a = slot(&s, "a");
    assert_eq!(
        (a["state"].clone(), a["tries_left"].clone()),
        ("bad".into(), 0.into()),
        "{s}"
    );
    assert_eq!(s["keys"]["state"], "ready", "{s}");
    let (code, _) = app
        .api("GET", "/v1/workspaces", &reader, None)
        .expect("curl");
    assert_eq!(code, 200);
    power_off(app);
    let _ = std::fs::remove_dir_all(&dir);
}
