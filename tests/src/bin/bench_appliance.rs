//! Appliance boot benchmark: QEMU power-on to "host-init started" and to
//! "API answers", for our image booted from its disk (UEFI → UKI) and
//! directly (-kernel), side by side with Debian's stock kernel and a
//! minimal busybox initramfs in the same QEMU (OVMF, TCG or KVM as the
//! host allows). Also the image's sizes. Prints a table; records nothing.

use paddock_image::cpio::{write_archive, Entry};
use paddock_tests::appliance::{image_dir, Appliance};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

const GUARD: Duration = Duration::from_secs(600);

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

fn size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
}

/// A busybox initramfs whose init prints a marker and powers off.
fn peer_initramfs(path: &Path) -> Result<(), String> {
    let busybox = std::fs::read("/bin/busybox").map_err(|e| format!("/bin/busybox: {e}"))?;
    // ttyS0 directly: /dev/console is the screen (the last console= given).
    let init =
        b"#!/bin/sh\necho PEER-INIT-STARTED > /dev/ttyS0\n/bin/busybox poweroff -f\n".to_vec();
    let entries = vec![
        Entry::Dir {
            path: "bin".into(),
            mode: 0o755,
        },
        Entry::File {
            path: "bin/busybox".into(),
            mode: 0o755,
            data: busybox,
        },
        Entry::Symlink {
            path: "bin/sh".into(),
            target: "busybox".into(),
        },
        Entry::Dir {
            path: "dev".into(),
            mode: 0o755,
        },
        Entry::CharDev {
            path: "dev/console".into(),
            mode: 0o600,
            major: 5,
            minor: 1,
        },
        Entry::CharDev {
            path: "dev/ttyS0".into(),
            mode: 0o600,
            major: 4,
            minor: 64,
        },
        Entry::File {
            path: "init".into(),
            mode: 0o755,
            data: init,
        },
    ];
    let mut out = Vec::new();
    write_archive(&mut out, &entries, 0).map_err(|e| e.to_string())?;
    std::fs::write(path, out).map_err(|e| e.to_string())
}

struct Run {
    init_s: f64,
    api_s: Option<f64>,
}

fn one(
    work: &Path,
    name: &str,
    image: &Path,
    extra: &[OsString],
    init_marker: &str,
    wait_api: bool,
) -> Result<Run, String> {
    let dir = work.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let disk = dir.join("disk.img");
    std::fs::copy(image, &disk).map_err(|e| e.to_string())?;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&disk)
        .map_err(|e| e.to_string())?;
    f.set_len(4 << 30).map_err(|e| e.to_string())?;
    let mut app = Appliance::boot_with(&disk, &dir.join("state"), &dir.join("serial.log"), extra)
        .map_err(|e| e.to_string())?;
    app.wait_for(init_marker, GUARD)
        .map_err(|e| e.to_string())?;
    let init_s = app.elapsed().as_secs_f64();
    let mut api_s = None;
    if wait_api {
        while app.elapsed() < GUARD {
            if let Ok((code, _)) = app.https_get("/v1/health") {
                if code == "200" {
                    api_s = Some(app.elapsed().as_secs_f64());
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        if api_s.is_none() {
            return Err(format!("{name}: the API never answered"));
        }
    }
    app.kill();
    Ok(Run { init_s, api_s })
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-appliance: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let runs: usize = std::env::var("PADDOCK_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let images = image_dir().map_err(|e| e.to_string())?;
    let host_kernel = PathBuf::from(
        std::env::var("PADDOCK_HOST_KERNEL").map_err(|_| "PADDOCK_HOST_KERNEL is not set")?,
    );
    let work = std::env::temp_dir().join(format!("paddock-bench-appliance-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let peer_initrd = work.join("peer.cpio");
    peer_initramfs(&peer_initrd)?;
    let cmdline = std::fs::read_to_string(images.join("cmdline")).map_err(|e| e.to_string())?;
    let image = images.join("paddock.img");
    let ours_direct: Vec<OsString> = vec![
        "--kernel".into(),
        images.join("vmlinuz").into(),
        "--initrd".into(),
        images.join("initramfs.cpio.zst").into(),
        "--append".into(),
        cmdline.clone().into(),
    ];
    let peer: Vec<OsString> = vec![
        "--kernel".into(),
        host_kernel.join("vmlinuz").into(),
        "--initrd".into(),
        peer_initrd.clone().into(),
        "--append".into(),
        cmdline.into(),
    ];
    let mut disk_init = Vec::new();
    let mut disk_api = Vec::new();
    let mut direct_init = Vec::new();
    let mut direct_api = Vec::new();
    let mut peer_init = Vec::new();
    for i in 0..runs {
        let r = one(&work, "disk", &image, &[], "paddock-init: Paddock", true)?;
        eprintln!(
            "run {i}: ours from disk: init {:.2} s, API {:.2} s",
            r.init_s,
            r.api_s.unwrap_or(f64::NAN)
        );
        disk_init.push(r.init_s);
        disk_api.extend(r.api_s);
        let r = one(
            &work,
            "direct",
            &image,
            &ours_direct,
            "paddock-init: Paddock",
            true,
        )?;
        eprintln!(
            "run {i}: ours direct:    init {:.2} s, API {:.2} s",
            r.init_s,
            r.api_s.unwrap_or(f64::NAN)
        );
        direct_init.push(r.init_s);
        direct_api.extend(r.api_s);
        let r = one(&work, "peer", &image, &peer, "PEER-INIT-STARTED", false)?;
        eprintln!(
            "run {i}: Debian kernel + busybox initramfs: init {:.2} s",
            r.init_s
        );
        peer_init.push(r.init_s);
    }
    let peer_size = size(&peer_initrd);
    let _ = std::fs::remove_dir_all(&work);
    println!(
        "appliance boot, median of {runs} (QEMU q35 + OVMF + swtpm, seconds from QEMU start):"
    );
    println!("  {:<44} {:>10} {:>12}", "", "init runs", "API answers");
    println!(
        "  {:<44} {:>10.2} {:>12.2}",
        "Paddock image from its disk (UEFI -> UKI)",
        median(disk_init),
        median(disk_api)
    );
    println!(
        "  {:<44} {:>10.2} {:>12.2}",
        "Paddock kernel + initramfs, -kernel",
        median(direct_init),
        median(direct_api)
    );
    println!(
        "  {:<44} {:>10.2} {:>12}",
        "Debian kernel + busybox initramfs, -kernel",
        median(peer_init),
        "-"
    );
    println!("sizes:");
    println!(
        "  disk image (sparse data partition not counted): {}",
        mib(size(&image))
    );
    println!(
        "  UKI: {}   kernel: {}   initramfs (zstd): {}",
        mib(size(&images.join("paddock.efi"))),
        mib(size(&images.join("vmlinuz"))),
        mib(size(&images.join("initramfs.cpio.zst")))
    );
    println!(
        "  peer busybox initramfs (uncompressed): {}",
        mib(peer_size)
    );
    Ok(())
}
