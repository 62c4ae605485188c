//! The appliance image end to end: it boots under UEFI with a TPM, shows
//! its status, serves TLS, runs a workspace under the nested KVM, grows and
//! keeps its data across boots, shuts down in order on the power button,
//! refuses to touch a damaged data partition, holds no shell, and builds
//! to the same bytes twice.

use paddock_image::gpt::{Gpt, SECTOR};
use paddock_image::LABEL_DATA;
use paddock_tests::appliance::{image_dir, repo_root, status_field, Appliance};
use paddock_tests::fakenet::{FakeNet, ALLOWED, DENIED, DNS, METADATA, RAW_LISTED, RAW_UNLISTED};
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

#[path = "appliance/backups.rs"]
mod backups;
#[path = "appliance/broker.rs"]
mod broker;
#[path = "appliance/cli.rs"]
mod cli;
#[path = "appliance/clones.rs"]
mod clones;
#[path = "appliance/console.rs"]
mod console;
#[path = "appliance/disks.rs"]
mod disks;
#[path = "appliance/e2b.rs"]
mod e2b;
#[path = "appliance/egress_share.rs"]
mod egress_share;
#[path = "appliance/forensics.rs"]
mod forensics;
#[path = "appliance/limits.rs"]
mod limits;
#[path = "appliance/load.rs"]
mod load;
#[path = "appliance/mcp.rs"]
mod mcp;
#[path = "appliance/networks.rs"]
mod networks;
#[path = "appliance/pause_resume.rs"]
mod pause_resume;
#[path = "appliance/rotations.rs"]
mod rotations;
#[path = "appliance/sdk.rs"]
mod sdk;
#[path = "appliance/secure_boot.rs"]
mod secure_boot;
#[path = "appliance/shell.rs"]
mod shell;
#[path = "appliance/signals.rs"]
mod signals;
#[path = "appliance/slots.rs"]
mod slots;
#[path = "appliance/tenants.rs"]
mod tenants;
#[path = "appliance/updates.rs"]
mod updates;
#[path = "appliance/workspace_api.rs"]
mod workspace_api;
#[path = "appliance/yellow.rs"]
mod yellow;

use cli::{cli_login, cli_session};
use disks::occurs_in;
use forensics::quarantine_and_forensics;
use limits::limits_hold;
use rotations::rotations;
use workspace_api::workspace_api;

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

/// Stdout of an exec's NDJSON stream, and its final event.
fn exec_output(stream: &[u8]) -> (String, serde_json::Value) {
    use base64::Engine as _;
    let mut out = Vec::new();
    let mut last = serde_json::Value::Null;
    for line in stream.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let v = json(line);
        if let Some(d) = v.get("stdout").and_then(|d| d.as_str()) {
            out.extend(
                base64::engine::general_purpose::STANDARD
                    .decode(d)
                    .expect("base64"),
            );
        } else {
            last = v;
        }
    }
    (String::from_utf8_lossy(&out).to_string(), last)
}

/// Hang guards, not performance limits: TCG boots of OVMF are slow.
const BOOT_GUARD: Duration = Duration::from_secs(600);
/// The "server disk" the tests boot: the image (two slots, about 700 MiB)
/// and a data partition of about 4.3 GiB, the room the tests' workspaces,
/// snapshots and ballast were sized against (with one slot it was 4 GiB
/// in all).
const DISK_BYTES: u64 = 5 << 30;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("paddock-appliance-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A copy of the image on a bigger "server disk".
fn fresh_disk(dir: &Path) -> PathBuf {
    let disk = dir.join("disk.img");
    std::fs::copy(image_dir().expect("image").join("paddock.img"), &disk).expect("copy image");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&disk)
        .and_then(|f| f.set_len(DISK_BYTES))
        .expect("grow disk file");
    disk
}

fn data_partition(disk: &Path) -> (u64, u64) {
    let mut f = std::fs::File::open(disk).expect("open disk");
    let table = Gpt::read(&mut f).expect("GPT");
    let (_, p) = table.find(LABEL_DATA).expect("data partition").clone();
    (p.first_lba, p.last_lba)
}

fn hash_range(disk: &Path, from: u64, len: u64) -> String {
    let mut f = std::fs::File::open(disk).expect("open disk");
    f.seek(SeekFrom::Start(from)).expect("seek");
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = f
            .read(&mut buf[..left.min(1 << 20) as usize])
            .expect("read");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        left -= n as u64;
    }
    format!("{:x}", h.finalize())
}

#[test]
fn appliance_boots_serves_keeps_data_and_shuts_down_in_order() {
    let dir = scratch("lifecycle");
    let disk = fresh_disk(&dir);
    let state = dir.join("state");

    // First boot: grows the data partition, makes the filesystem, the TLS
    // identity and the bootstrap credential, boots the demo workspace.
    let mut app = Appliance::boot(&disk, &state, &dir.join("boot1.log")).expect("boot 1");
    let console = app
        .wait_for("demo workspace: `uname -sr` says", BOOT_GUARD)
        .expect("a workspace boots inside the appliance and runs a command");
    eprintln!("{console}");
    assert!(
        console.contains("grown to fill the disk"),
        "first boot grows the data partition"
    );
    assert!(console.contains("created the data filesystem"));
    assert!(console.contains("bootstrap admin credential (shown once"));
    let fingerprint =
        status_field(&console, "TLS SHA-256").expect("fingerprint on the status screen");
    assert_eq!(fingerprint.len(), 95, "fingerprint {fingerprint:?}");
    let address = status_field(&console, "Address").expect("address on the status screen");
    assert!(
        address.contains("10.0.2.15/24 (dhcp)"),
        "address {address:?}"
    );
    let api = status_field(&console, "API").expect("API URL");
    assert!(api.starts_with("https://10.0.2.15:8443/"), "{api:?}");
    assert!(
        console.contains("Linux 6.12"),
        "the workspace runs our guest kernel"
    );

    let (code, body) = app.https_get("/v1/health").expect("health");
    assert_eq!(code, "200", "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).expect("JSON health");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["workspaces"], 1);
    let (code, _) = app.https_get("/v1/no-such-thing").expect("404");
    assert_eq!(code, "404");
    assert_eq!(
        app.served_fingerprint().expect("served cert"),
        fingerprint,
        "the API presents the certificate the screen shows"
    );
    assert!(!console.contains("login:"), "no login prompt anywhere");

    let admin = console
        .split_whitespace()
        .find(|w| w.starts_with("pdk_admin_"))
        .expect("bootstrap credential")
        .to_string();
    // Where the time goes: straight to stderr, past libtest's capture, so
    // every CI log shows it.
    let started = std::time::Instant::now();
    let mut mark = started;
    let mut took = |what: &str| {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "lifecycle: {what} took {:.1} s ({:.0} s in)",
            mark.elapsed().as_secs_f64(),
            started.elapsed().as_secs_f64()
        );
        mark = std::time::Instant::now();
    };
    let deleted = workspace_api(&mut app, &admin);
    took("workspace API");
    clones::clones_of_the_template(&mut app, &admin);
    took("clones");
    tenants::tenant_isolation(&app, &admin);
    took("tenants");
    quarantine_and_forensics(&app, &admin);
    took("quarantine and forensics");
    limits_hold(&app, &admin);
    took("limits");
    signals::signals_fire(&app, &admin);
    took("signals");
    cli_session(&app, &admin, &fingerprint);
    took("CLI");
    e2b::e2b_session(&app, &admin, &fingerprint);
    took("E2B SDK");
    mcp::mcp_session(&app, &admin, &fingerprint, &scratch("mcp"));
    took("MCP");
    shell::shell_session(&app, &admin, &fingerprint, &scratch("shell"));
    took("terminal");
    sdk::sdk_session(&app, &admin, &fingerprint);
    took("Python SDK");
    let paused = pause_resume::pause_and_resume(&app, &admin);
    took("pause and resume");
    // From here on: the rotated credential and certificate (the second
    // boot checks that the rotated certificate is the one that persists).
    let (admin, fingerprint) = rotations(&mut app, &admin, &fingerprint);
    took("rotations");

    // The ACPI power button: workspaces stopped, data unmounted, power off.
    let exited = app
        .power_button(Duration::from_secs(180))
        .expect("QMP powerdown");
    let console = app.console();
    assert!(
        exited.is_some(),
        "powered off after the power button:\n{console}"
    );
    assert!(
        console.contains("shutdown: 1 workspace(s) stopped"),
        "{console}"
    );
    assert!(
        console.contains("shutdown: data partition unmounted cleanly"),
        "{console}"
    );
    drop(app);
    took("power button");

    let (first, last) = data_partition(&disk);
    assert_eq!(
        last,
        DISK_BYTES / SECTOR - 34,
        "data partition ends at the disk's end"
    );
    assert!((last - first) * SECTOR > 3 << 30);
    // The env secret given at create is sealed under that workspace's key
    // in the database: nowhere on the partition in the clear (its id, in
    // the audit log, is: the scan works).
    let (from, len) = (first * SECTOR, (last - first + 1) * SECTOR);
    assert!(
        !occurs_in(&disk, from, len, b"s3cr3t-value"),
        "a workspace's env secret is on the data partition in the clear"
    );
    assert!(
        occurs_in(&disk, from, len, deleted.as_bytes()),
        "positive control"
    );
    // The paused workspace's memory is there, encrypted: the marker only
    // its RAM held is nowhere in the clear (the resume on the next boot
    // shows the memory was kept).
    assert!(
        !occurs_in(&disk, from, len, paused.marker.as_bytes()),
        "a paused workspace's memory is on the data partition in the clear"
    );

    took("scans of the data partition");

    // Second boot: same data, clean filesystem, same identity, no new
    // credential.
    let mut app = Appliance::boot(&disk, &state, &dir.join("boot2.log")).expect("boot 2");
    let console = app
        .wait_for("ready ", BOOT_GUARD)
        .and_then(|_| app.wait_for("TLS SHA-256", BOOT_GUARD))
        .expect("second boot");
    assert!(
        console.contains(", clean"),
        "filesystem clean after the orderly shutdown:\n{console}"
    );
    assert!(!console.contains("created the data filesystem"));
    assert!(!console.contains("grown to fill the disk"));
    assert!(
        !console.contains("bootstrap admin credential"),
        "the credential is shown once only"
    );
    assert!(!console.contains("made the API's TLS certificate"));
    assert!(
        console.contains(&fingerprint),
        "the TLS identity survives a reboot"
    );
    // Tokens and the audit log live in the data partition's database.
    let mut tries = 0;
    let audit = loop {
        let (code, body) = app
            .api(
                "GET",
                &format!("/v1/audit?workspace={deleted}"),
                &admin,
                None,
            )
            .expect("curl");
        if code == 200 || tries > 20 {
            assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
            break String::from_utf8_lossy(&body).to_string();
        }
        tries += 1;
        std::thread::sleep(Duration::from_secs(1));
    };
    assert!(audit.contains("workspace_deleted"), "{audit}");
    pause_resume::resume_after_reboot(&app, &admin, &paused);
    took("second boot");

    // Power cut with one workspace running and another half created: on
    // the next boot both are reported lost, their disks are gone, and the
    // database and audit log are whole.
    let (code, body) = app
        .api(
            "POST",
            "/v1/workspaces",
            &admin,
            Some(br#"{"ttl_s": 900, "memory_mib": 256, "disk_mib": 256, "labels": {"phase": "running"}}"#),
        )
        .expect("curl");
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    let running = json(&body)["id"].as_str().expect("id").to_string();
    let half = std::thread::scope(|s| {
        let creating = s.spawn(|| {
            app.api(
                "POST",
                "/v1/workspaces",
                &admin,
                Some(br#"{"ttl_s": 900, "memory_mib": 256, "disk_mib": 256, "labels": {"phase": "creating"}}"#),
            )
        });
        // Wait until the appliance has recorded it as starting, then cut.
        let mut half = None;
        for _ in 0..200 {
            let (_, body) = app
                .api("GET", "/v1/workspaces?label=phase=creating", &admin, None)
                .expect("curl");
            if let Some(w) = json(&body)["workspaces"]
                .as_array()
                .and_then(|a| a.first().cloned())
            {
                assert_eq!(w["state"], "starting", "{w}");
                half = Some(w["id"].as_str().expect("id").to_string());
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        app.power_cut();
        let (code, _) = creating.join().expect("create thread").expect("curl");
        assert_ne!(code, 201, "the cut came before the create finished");
        half.expect("the create was recorded as starting before the cut")
    });
    app.kill();
    drop(app);

    let mut app = Appliance::boot(&disk, &state, &dir.join("boot3.log")).expect("boot 3");
    let console = app
        .wait_for("ready ", BOOT_GUARD)
        .expect("third boot, after the power cut");
    assert!(
        console.contains(&format!(
            "workspace {running} was running before the restart"
        )),
        "{console}"
    );
    let mut tries = 0;
    let listed = loop {
        let (code, body) = app
            .api("GET", "/v1/workspaces", &admin, None)
            .expect("curl");
        if code == 200 || tries > 20 {
            assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
            break json(&body);
        }
        tries += 1;
        std::thread::sleep(Duration::from_secs(1));
    };
    for id in [&running, &half] {
        let w = listed["workspaces"]
            .as_array()
            .and_then(|a| a.iter().find(|w| w["id"] == id.as_str()).cloned())
            .unwrap_or_else(|| panic!("{id} is still listed after the cut: {listed}"));
        assert_eq!(w["state"], "lost", "{w}");
    }
    let (code, audit) = app
        .api("GET", "/v1/audit?event=workspace_lost", &admin, None)
        .expect("curl");
    assert_eq!(code, 200);
    let audit = String::from_utf8_lossy(&audit).to_string();
    assert!(audit.contains(&running) && audit.contains(&half), "{audit}");
    let exited = app.power_button(Duration::from_secs(180)).expect("QMP");
    assert!(exited.is_some(), "powered off:\n{}", app.console());
    drop(app);
    // Straight from the disk: no workspace directory is left behind.
    let (first, _) = data_partition(&disk);
    let debugfs = ["/usr/sbin/debugfs", "/sbin/debugfs"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("debugfs");
    let out = Command::new(debugfs)
        .args(["-R", "ls -p /workspaces"])
        .arg(format!("{}?offset={}", disk.display(), first * SECTOR))
        .output()
        .expect("debugfs");
    let listing = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && !listing.is_empty(),
        "debugfs: {listing}"
    );
    for id in [&running, &half] {
        assert!(
            !listing.contains(id.as_str()),
            "{id}'s disk is still there:\n{listing}"
        );
    }
    took("power cut and third boot");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Named to sort right after the lifecycle test: libtest starts tests in
/// name order, two at a time here (the Justfile), and the two longest
/// should start first so neither is left running alone at the end.
#[test]
fn appliance_networks_deny_by_default_and_open_only_what_is_listed() {
    networks::workspace_networks_deny_by_default_and_open_only_what_is_listed();
}

#[test]
fn a_damaged_data_partition_is_reported_and_never_reformatted() {
    let dir = scratch("damaged");
    let disk = fresh_disk(&dir);
    let state = dir.join("state");
    // Make it look like somebody's data: not blank, no filesystem.
    let (first, _) = data_partition(&disk);
    let start = first * SECTOR;
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&disk)
            .expect("open");
        f.seek(SeekFrom::Start(start)).expect("seek");
        f.write_all(&vec![0xA5u8; 64 * 1024]).expect("scribble");
    }
    let before = hash_range(&disk, start, 64 << 20);
    let mut app = Appliance::boot(&disk, &state, &dir.join("boot.log")).expect("boot");
    let console = app
        .wait_for("no data on the partition was touched", BOOT_GUARD)
        // The status screen is redrawn on its own thread, just after.
        .and_then(|_| app.wait_for("State        error", BOOT_GUARD))
        .expect("a clear error state");
    app.kill();
    eprintln!("{console}");
    assert!(
        console.contains("holds no ext4 filesystem and is not marked blank"),
        "{console}"
    );
    assert_eq!(status_field(&console, "State").as_deref(), Some("error"));
    assert_eq!(
        status_field(&console, "API").as_deref(),
        Some("(not serving)")
    );
    assert_eq!(
        hash_range(&disk, start, 64 << 20),
        before,
        "the partition's bytes are untouched"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_image_holds_no_shell_and_builds_to_the_same_bytes() {
    let images = image_dir().expect("image dir");
    let tool = PathBuf::from(std::env::var("PADDOCK_STATIC_BIN").expect("PADDOCK_STATIC_BIN"))
        .join("paddock-image");
    let out = Command::new(&tool)
        .arg("list")
        .arg(images.join("paddock.img"))
        .arg("--check-no-shell")
        .output()
        .expect("paddock-image list");
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{listing}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "initramfs 100755",
        " init\n",
        "usr/lib/paddock/paddock-vmm",
        "lib/modules/load.list",
        "esp EFI/BOOT/BOOTX64.EFI",
        "esp loader/loader.conf",
        "esp EFI/Linux/paddock-a.efi",
        "esp paddock/pcrsig/a.json",
        "uki EFI/Linux/paddock-a.efi section .linux",
        "partition 2 paddock-tmpl-a",
        "partition 3 paddock-tmpl-b",
        "partition 4 paddock-data",
    ] {
        assert!(listing.contains(want), "{want:?} missing from the listing");
    }
    assert!(listing.contains("no shell, no interpreter, no script"));

    // Rebuild with the same inputs: every output byte-identical.
    let again = scratch("rebuild");
    let esp_config = images.join("esp-config.json");
    let status = Command::new(repo_root().join("image-build/build-image.sh"))
        .arg(&again)
        .arg("--esp-config")
        .arg(&esp_config)
        .status()
        .expect("build-image.sh");
    assert!(status.success());
    for f in ["paddock.img", "paddock.efi", "initramfs.cpio.zst"] {
        let a = std::fs::read(images.join(f)).expect("first build");
        let b = std::fs::read(again.join(f)).expect("second build");
        assert!(a == b, "{f} differs between two builds of the same inputs");
    }
    let _ = std::fs::remove_dir_all(&again);
}
