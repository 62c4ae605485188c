//! Secure Boot across the slots (issue 20): the test image, its boot
//! manager and UKI signed with the key Debian's OVMF Secure Boot build
//! trusts, boots with Secure Boot on; a signed update in slot B boots and
//! is blessed, with the disk keys kept; a bundle whose UKI is unsigned is
//! refused before anything is written, and an unsigned UKI put in a slot
//! anyway is refused by the firmware and never runs.

use super::*;
use paddock_tests::appliance::log_tail;
use paddock_tests::secure_boot;
use std::ffi::OsString;

#[test]
fn secure_boot_runs_signed_slots_and_refuses_an_unsigned_one() {
    let dir = scratch("secure-boot");
    let disk = fresh_disk(&dir);
    let state = dir.join("state");
    let images = image_dir().expect("image");
    let template = PathBuf::from(std::env::var("PADDOCK_TEMPLATE").expect("PADDOCK_TEMPLATE"));
    paddock_tests::esp_config::sign_efi(&disk).expect("the ESP's programs signed");
    let sb: [OsString; 1] = ["--secure-boot".into()];

    let mut app = Appliance::boot_with(&disk, &state, &dir.join("s1.log"), &sb).expect("boot 1");
    let console = app
        .wait_for("ready ", BOOT_GUARD)
        .and_then(|_| app.wait_for("bootstrap admin credential", BOOT_GUARD))
        .expect("boot 1 under Secure Boot");
    assert!(console.contains("Secure Boot is on"), "{console}");
    let admin = console
        .split_whitespace()
        .find(|w| w.starts_with("pdk_admin_"))
        .expect("bootstrap credential")
        .to_string();

    // An update whose UKI is signed too: it boots from slot B and proves
    // itself, and the disk keys open (the image key's policy and PCR 7,
    // which Secure Boot's state is in).
    let (uki, sig) = paddock_tests::uki::another(&images, &dir, "v2", 1, true);
    let sig_path = dir.join("v2.json");
    std::fs::write(&sig_path, sig.clone().expect("signed")).expect("signature");
    let osrel = std::fs::read_to_string(dir.join("v2.osrel")).expect("os-release");
    let version = osrel
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_ID="))
        .expect("VERSION_ID")
        .to_string();
    let signed_uki = dir.join("v2.signed.efi");
    secure_boot::sign_file(&uki, &signed_uki).expect("sbsign");
    let good = updates::bundle(
        &dir,
        "good",
        &version,
        &signed_uki,
        &template,
        &sig_path,
        &updates::update_key(),
    );
    // The same update with its UKI unsigned: written, it would never boot.
    let small = dir.join("small.erofs");
    std::fs::write(&small, vec![0x5Au8; 1 << 20]).expect("small");
    let unsigned = updates::bundle(
        &dir,
        "unsigned",
        &version,
        &uki,
        &small,
        &sig_path,
        &updates::update_key(),
    );
    let (code, answer) = updates::upload(&app, &admin, &unsigned, "");
    assert_eq!(code, 422, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or_default()
            .contains("no Authenticode signature"),
        "{answer}"
    );
    let (code, answer) = updates::upload(&app, &admin, &good, "?at=now");
    assert_eq!(code, 200, "{answer}");
    assert!(
        app.wait_exit(Duration::from_secs(900)).is_some(),
        "the box reboots into the update:\n{}",
        log_tail(&app.console(), 40)
    );
    let mut app = Appliance::boot_with(&disk, &state, &dir.join("s2.log"), &sb).expect("boot 2");
    let console = app
        .wait_for("slot b is good: blessed", BOOT_GUARD)
        .expect("the signed update boots under Secure Boot and is blessed");
    assert!(console.contains("Secure Boot is on"), "{console}");
    let (code, body) = app.api("GET", "/v1/system", &admin, None).expect("curl");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json(&body)["keys"]["state"], "ready", "no recovery secret");
    let exited = app.power_button(Duration::from_secs(180)).expect("QMP");
    assert!(exited.is_some(), "powered off");

    // The same update, unsigned, as the blessed slot B: the boot manager
    // asks the firmware to load it, and the firmware refuses.
    paddock_tests::esp_config::install_uki(&disk, paddock_image::slots::Slot::B, &uki, None, sig)
        .expect("an unsigned slot B");
    let mut app = Appliance::boot_with(&disk, &state, &dir.join("s3.log"), &sb).expect("boot 3");
    let console = app
        .wait_for("Error loading", Duration::from_secs(300))
        .expect("the boot manager says the firmware refused the unsigned UKI");
    assert!(
        // The firmware's EFI_SECURITY_VIOLATION or EFI_ACCESS_DENIED, as
        // systemd-boot prints them (OVMF answers the latter).
        console.to_ascii_lowercase().contains("security violation")
            || console.to_ascii_lowercase().contains("access denied"),
        "refused for its signature:\n{}",
        log_tail(&console, 20)
    );
    if let Some(line) = console.lines().find(|l| l.contains("Error loading")) {
        eprintln!("secure boot: the unsigned slot: {}", line.trim());
    }
    assert!(
        !console.contains("paddock-init"),
        "none of the unsigned image ran:\n{}",
        log_tail(&console, 20)
    );
    app.kill();
    let _ = std::fs::remove_dir_all(&dir);
}
