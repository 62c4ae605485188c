//! Signed update bundles (issue 20) on one appliance disk: bundles the box
//! must refuse (not signed, another key, a corrupted part, older than what
//! runs, truncated, from a token without admin) change nothing; a good one
//! is verified, written to the other slot and read back; a power cut while
//! it is written leaves the box booting what it ran; installed again with
//! `at=now`, the box reboots into it by itself, blesses it, and keeps its
//! disk keys (no recovery secret), tokens and audit log, and a running
//! workspace, paused before the reboot and resumed after it.

use super::*;
use paddock_tests::appliance::log_tail;

fn system(app: &Appliance, admin: &str) -> serde_json::Value {
    let (code, body) = app.api("GET", "/v1/system", admin, None).expect("curl");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    json(&body)
}

/// POSTs `bundle` to /v1/system/update with `query`: (status, answer).
pub(crate) fn upload(
    app: &Appliance,
    token: &str,
    bundle: &Path,
    query: &str,
) -> (u16, serde_json::Value) {
    let out = app
        .command("curl")
        .args([
            "-skS",
            "--max-time",
            "900",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
        ])
        .arg("-H")
        .arg(format!("Authorization: Bearer {token}"))
        .args([
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
        ])
        .arg(format!("@{}", bundle.display()))
        .arg(format!(
            "https://127.0.0.1:{}/v1/system/update{query}",
            app.port
        ))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or((&text, ""));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

/// `paddock-image` of the test kit.
pub(crate) fn tool() -> Command {
    Command::new(
        PathBuf::from(std::env::var("PADDOCK_STATIC_BIN").expect("PADDOCK_STATIC_BIN"))
            .join("paddock-image"),
    )
}

/// A bundle of `uki`, `template` and `signature` at `version`, signed
/// with `key`.
pub(crate) fn bundle(
    dir: &Path,
    name: &str,
    version: &str,
    uki: &Path,
    template: &Path,
    sig: &Path,
    key: &Path,
) -> PathBuf {
    let out = dir.join(format!("{name}.update"));
    let status = tool()
        .args(["bundle", "--version", version, "--uki"])
        .arg(uki)
        .arg("--template")
        .arg(template)
        .arg("--pcr-signature")
        .arg(sig)
        .arg("--key")
        .arg(key)
        .arg("--out")
        .arg(&out)
        .status()
        .expect("paddock-image bundle");
    assert!(status.success(), "bundle {name}");
    out
}

/// The update key build-image.sh made the image trust.
pub(crate) fn update_key() -> PathBuf {
    std::env::var_os("PADDOCK_UPDATE_KEY")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            paddock_tests::uki::image_key()
                .parent()
                .and_then(Path::parent)
                .expect("the cache")
                .join("update-key/development.pk8")
        })
}

/// The slots' UKI file names on the disk's ESP.
fn ukis(disk: &Path) -> Vec<String> {
    paddock_tests::esp_config::slot_ukis(disk).expect("the ESP")
}

#[test]
fn signed_bundles_install_and_every_bad_one_is_refused() {
    let dir = scratch("updates");
    let disk = fresh_disk(&dir);
    let state = dir.join("state");
    let images = image_dir().expect("image");
    let template = PathBuf::from(std::env::var("PADDOCK_TEMPLATE").expect("PADDOCK_TEMPLATE"));

    // The update: the test image's UKI at a newer version, its PCR 11
    // signed by the image key, the real template, signed by the update key.
    let (uki, sig) = paddock_tests::uki::another(&images, &dir, "v2", 1, true);
    let sig_path = dir.join("v2.json");
    std::fs::write(&sig_path, sig.expect("signed")).expect("signature");
    let osrel = std::fs::read_to_string(dir.join("v2.osrel")).expect("os-release");
    let version = osrel
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_ID="))
        .expect("VERSION_ID")
        .to_string();
    let good = bundle(
        &dir,
        "good",
        &version,
        &uki,
        &template,
        &sig_path,
        &update_key(),
    );

    // Bad ones: a small template is enough, they are refused before it matters.
    let small = dir.join("small.erofs");
    std::fs::write(&small, vec![0x5Au8; 1 << 20]).expect("small");
    let other_key = dir.join("other.pk8");
    let made = tool()
        .args(["update-key", "--out"])
        .arg(&other_key)
        .arg("--public")
        .arg(dir.join("other.pub"))
        .status()
        .expect("update-key");
    assert!(made.success());
    let small_good = bundle(
        &dir,
        "small",
        &version,
        &uki,
        &small,
        &sig_path,
        &update_key(),
    );
    let wrong_key = bundle(
        &dir,
        "wrong-key",
        &version,
        &uki,
        &small,
        &sig_path,
        &other_key,
    );
    let older = bundle(
        &dir,
        "older",
        "0.0.1",
        &uki,
        &small,
        &sig_path,
        &update_key(),
    );
    let bytes = std::fs::read(&small_good).expect("bundle");
    let len = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
    let mut unsigned_bytes = bytes.clone();
    unsigned_bytes[12 + len..12 + len + 64].fill(0);
    let unsigned = dir.join("unsigned.update");
    std::fs::write(&unsigned, &unsigned_bytes).expect("write");
    let mut corrupted_bytes = bytes.clone();
    let n = corrupted_bytes.len();
    corrupted_bytes[n - 100] ^= 0x40;
    let corrupted = dir.join("corrupted.update");
    std::fs::write(&corrupted, &corrupted_bytes).expect("write");
    let empty = dir.join("empty.update");
    std::fs::write(&empty, b"").expect("write");
    let truncated = dir.join("truncated.update");
    std::fs::write(&truncated, &bytes[..bytes.len() - 4096]).expect("write");

    let mut app = Appliance::boot(&disk, &state, &dir.join("u1.log")).expect("boot 1");
    let console = app
        .wait_for("ready ", BOOT_GUARD)
        .and_then(|_| app.wait_for("bootstrap admin credential", BOOT_GUARD))
        .expect("boot 1");
    let admin = console
        .split_whitespace()
        .find(|w| w.starts_with("pdk_admin_"))
        .expect("bootstrap credential")
        .to_string();
    let (code, body) = app
        .api(
            "POST",
            "/v1/tokens",
            &admin,
            Some(br#"{"name": "kept", "scopes": ["create", "read", "exec", "files", "delete"]}"#),
        )
        .expect("curl");
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    let wide = json(&body)["secret"].as_str().expect("secret").to_string();

    let esp_before = paddock_tests::esp_config::files(&disk).expect("ESP");
    for (file, query, want, why) in [
        (&unsigned, "", 422, "not signed"),
        (&wrong_key, "", 422, "not by this box's update key"),
        (&corrupted, "", 422, "corrupted"),
        (&older, "", 422, "not newer than the running"),
        (&truncated, "", 422, "truncated"),
        // Refused before the body is read: an empty one, so that curl is
        // not still sending when the answer comes and the connection ends.
        (
            &empty,
            "?at=soon",
            422,
            "at: now, next-boot or Unix seconds",
        ),
        (
            &small_good,
            "?at=99",
            422,
            "a Unix time from now to a year ahead",
        ),
    ] {
        let (code, answer) = upload(&app, &admin, file, query);
        assert_eq!(code, want, "{}: {answer}", file.display());
        assert!(
            answer["error"].as_str().unwrap_or_default().contains(why),
            "{}: {answer}",
            file.display()
        );
    }
    // Refused before its body is read, like the malformed `at`.
    let (code, answer) = upload(&app, &wide, &empty, "");
    assert_eq!(code, 403, "every scope but admin: {answer}");
    let s = system(&app, &admin);
    assert!(s["update"].is_null(), "nothing pending after refusals: {s}");
    let (_, body) = app
        .api("GET", "/v1/audit?event=update_refused", &admin, None)
        .expect("curl");
    // Each bundle the box refused (the malformed `at` never reached it:
    // the API process answered that one itself, like any malformed query).
    let refused = json(&body)["events"].as_array().map(Vec::len).unwrap_or(0);
    assert_eq!(refused, 6, "each refusal audited");

    // A good bundle, and the power cut as soon as it is accepted, while
    // it is written: slot B's UKI gets its bootable name last, so the box
    // boots slot A as before.
    let (code, answer) = upload(&app, &admin, &good, "");
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["state"], "writing", "{answer}");
    assert_eq!(answer["slot"], "b", "{answer}");
    app.power_cut();
    app.kill();
    assert!(
        ukis(&disk).iter().all(|u| !u.contains("paddock-b")),
        "no bootable slot B after a cut mid-write: {:?}",
        ukis(&disk)
    );
    let mut app = Appliance::boot(&disk, &state, &dir.join("u2.log")).expect("boot 2");
    let console = app.wait_for("ready ", BOOT_GUARD).expect("boot 2");
    // BENCHMARKS.md: boot to API per slot, an update's upload to written.
    eprintln!(
        "updates: slot A boot to ready {:.1} s",
        app.elapsed().as_secs_f64()
    );
    assert!(console.contains("booted slot a"), "{console}");
    let s = system(&app, &admin);
    assert_eq!(s["keys"]["state"], "ready", "{s}");
    assert_eq!(
        paddock_tests::esp_config::files(&disk)
            .expect("ESP")
            .into_iter()
            .find(|(p, _)| p == "EFI/Linux/paddock-a.efi"),
        esp_before
            .into_iter()
            .find(|(p, _)| p == "EFI/Linux/paddock-a.efi"),
        "slot A's UKI untouched"
    );

    // A running workspace with a marker only its RAM holds: the box
    // pauses it before the update's reboot and resumes it after.
    let (code, body) = app
        .api(
            "POST",
            "/v1/workspaces",
            &wide,
            Some(br#"{"ttl_s": 3600, "memory_mib": 256, "disk_mib": 256}"#),
        )
        .expect("curl");
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    let kept_ws = json(&body)["id"].as_str().expect("id").to_string();
    let marker = format!("kept-across-the-update-{}", std::process::id());
    let (code, out) = pause_resume::run(
        &app,
        &wide,
        &kept_ws,
        &format!("printf %s {marker} > /run/marker"),
    );
    assert_eq!(code, 200, "{out}");

    // Again, rebooting into it as soon as it is written: the box does.
    let posted = std::time::Instant::now();
    let (code, answer) = upload(&app, &admin, &good, "?at=now");
    assert_eq!(code, 200, "{answer}");
    let verified = posted.elapsed();
    assert!(
        app.wait_exit(Duration::from_secs(900)).is_some(),
        "the box reboots into the update:\n{}",
        log_tail(&app.console(), 40)
    );
    eprintln!(
        "updates: {} MiB bundle uploaded and verified in {:.1} s, written and rebooted after {:.1} s",
        std::fs::metadata(&good).map(|m| m.len() >> 20).unwrap_or(0),
        verified.as_secs_f64(),
        posted.elapsed().as_secs_f64()
    );
    let console = app.console();
    assert!(
        console.contains("is in slot b: the next boot tries it"),
        "{console}"
    );
    let mut app = Appliance::boot(&disk, &state, &dir.join("u3.log")).expect("boot 3");
    app.wait_for("ready ", BOOT_GUARD).expect("boot 3");
    eprintln!(
        "updates: slot B boot to ready {:.1} s",
        app.elapsed().as_secs_f64()
    );
    let console = app
        .wait_for("slot b is good: blessed", BOOT_GUARD)
        .expect("boot 3 blesses the update");
    eprintln!(
        "updates: slot B blessed {:.1} s after power on",
        app.elapsed().as_secs_f64()
    );
    assert!(console.contains("booted slot b on trial"), "{console}");
    let s = system(&app, &admin);
    assert_eq!(s["keys"]["state"], "ready", "no recovery secret: {s}");
    let b = s["slots"]
        .as_array()
        .and_then(|v| v.iter().find(|x| x["slot"] == "b"))
        .cloned();
    let b = b.expect("slot b");
    assert_eq!(
        (
            b["version"].clone(),
            b["state"].clone(),
            b["booted"].clone()
        ),
        (version.clone().into(), "good".into(), true.into()),
        "{s}"
    );
    let (code, _) = app.api("GET", "/v1/workspaces", &wide, None).expect("curl");
    assert_eq!(code, 200, "a token from before the update");
    // The workspace was paused for the reboot and runs again, its RAM
    // as it was.
    let until = std::time::Instant::now() + BOOT_GUARD;
    loop {
        let (code, body) = app
            .api("GET", &format!("/v1/workspaces/{kept_ws}"), &wide, None)
            .expect("curl");
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
        let state = json(&body)["state"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if state == "running" {
            break;
        }
        assert!(
            state == "paused" && std::time::Instant::now() < until,
            "paused for the reboot, then resumed: {state}\n{}",
            log_tail(&app.console(), 40)
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let (code, out) = pause_resume::run(&app, &wide, &kept_ws, "cat /run/marker");
    assert_eq!((code, out.as_str()), (200, marker.as_str()), "its memory");
    let (_, body) = app
        .api(
            "GET",
            &format!("/v1/audit?workspace={kept_ws}"),
            &admin,
            None,
        )
        .expect("curl");
    let evs = json(&body)["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let paused = evs
        .iter()
        .find(|e| e["event"] == "workspace_paused" && e["for_reboot"] == true)
        .unwrap_or_else(|| panic!("{evs:?}"));
    let resumed = evs
        .iter()
        .find(|e| e["event"] == "workspace_resumed" && e["after_reboot"] == true)
        .unwrap_or_else(|| panic!("{evs:?}"));
    eprintln!(
        "updates: a 256 MiB workspace paused for the reboot in {} ms, resumed after it in {} ms",
        paused["ms"], resumed["ms"]
    );
    let (_, body) = app
        .api("GET", "/v1/audit?event=update_written", &admin, None)
        .expect("curl");
    assert!(
        String::from_utf8_lossy(&body).contains(&version),
        "the audit log kept the update"
    );
    let exited = app.power_button(Duration::from_secs(180)).expect("QMP");
    assert!(exited.is_some());
    let _ = std::fs::remove_dir_all(&dir);
}
