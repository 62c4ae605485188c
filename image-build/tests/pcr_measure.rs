//! Our PCR 11 prediction against systemd's own: a UKI built the way
//! build-image.sh builds one (Debian's systemd-stub, objcopy), measured by
//! `paddock_image::pcr::pcr11` and by `systemd-measure` (the same systemd
//! release as the stub). systemd-measure always adds a boot phase word
//! after the stub's measurements; extending ours with the same word must
//! give its value.

use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::Command;

const STUB: &str = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";
const MEASURE: &str = "/usr/lib/systemd/systemd-measure";

fn build_uki(dir: &Path, parts: &[(&str, &Path)]) -> Vec<u8> {
    let out = dir.join("test.efi");
    let mut cmd = Command::new("objcopy");
    // Far past the stub's own sections, each 16 MiB apart (the VMAs only
    // need to be distinct and aligned; the measurement never sees them).
    for (i, (name, path)) in parts.iter().enumerate() {
        cmd.arg("--add-section")
            .arg(format!("{name}={}", path.display()))
            .arg("--change-section-vma")
            .arg(format!(
                "{name}={:#x}",
                0x2000_0000u64 + (i as u64) * 0x100_0000
            ));
    }
    let status = cmd
        .arg(STUB)
        .arg(&out)
        .status()
        .expect("objcopy (binutils)");
    assert!(status.success(), "objcopy failed");
    std::fs::read(&out).expect("the UKI")
}

#[test]
fn our_pcr11_is_systemd_stubs() {
    for tool in [STUB, MEASURE] {
        assert!(
            Path::new(tool).exists(),
            "{tool} is missing: scripts/install-deps.sh installs it (systemd-boot-efi, systemd)"
        );
    }
    let dir = std::env::temp_dir().join(format!("paddock-pcr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch");
    let write = |name: &str, data: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, data).expect("write");
        p
    };
    // Odd sizes on purpose: nothing here is a multiple of an alignment.
    let linux = write("linux", &[0x4Du8; 100_003]);
    let osrel = write("osrel", b"NAME=\"Paddock\"\nID=paddock\nVERSION_ID=9.9.9\n");
    let cmdline = write("cmdline", b"console=ttyS0 quiet");
    let initrd = write(
        "initrd",
        &(0..70_001u32).map(|i| i as u8).collect::<Vec<_>>(),
    );
    // The file's order is not the stub's: it measures by its own list.
    let uki = build_uki(
        &dir,
        &[
            (".osrel", &osrel),
            (".cmdline", &cmdline),
            (".initrd", &initrd),
            (".linux", &linux),
        ],
    );
    let ours = paddock_image::pcr::pcr11(&uki).expect("our measurement");

    let out = Command::new(MEASURE)
        .arg("calculate")
        .arg(format!("--linux={}", linux.display()))
        .arg(format!("--osrel={}", osrel.display()))
        .arg(format!("--cmdline={}", cmdline.display()))
        .arg(format!("--initrd={}", initrd.display()))
        .args(["--bank=sha256", "--phase=enter-initrd"])
        .output()
        .expect("systemd-measure");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs = text
        .lines()
        .find_map(|l| l.strip_prefix("11:sha256="))
        .unwrap_or_else(|| panic!("no PCR 11 value in {text}"))
        .trim()
        .to_string();
    let mut h = Sha256::new();
    h.update(ours);
    h.update(Sha256::digest(b"enter-initrd"));
    let ours_then: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        ours_then, theirs,
        "ours then the phase word, against systemd-measure"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
