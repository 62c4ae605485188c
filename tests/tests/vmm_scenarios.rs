//! The VMM booting real Linux guests under KVM: one run of
//! scenarios/vmm.sh (one L1 boot on the nested path) serves every test here.

use paddock_tests::harness::{base_stage, run_script, Checks, Outcome};
use paddock_tests::pattern::{pattern_sha256, Pattern};
use std::process::Command;
use std::sync::OnceLock;

const KNOWN_SEED: u64 = 5;
const KNOWN_LEN: u64 = 1 << 20;
const MIB10: u64 = 10 * 1024 * 1024;

/// A 16 MiB ext4 image holding known.bin, built without mounting.
fn ro_disk_image() -> Vec<u8> {
    let dir = std::env::temp_dir().join(format!("paddock-rodisk-{}", std::process::id()));
    let content = dir.join("content");
    std::fs::create_dir_all(&content).expect("mkdir");
    let mut data = vec![0u8; KNOWN_LEN as usize];
    Pattern::new(KNOWN_SEED).fill(&mut data);
    std::fs::write(content.join("known.bin"), &data).expect("write known.bin");
    let img = dir.join("ro.ext4");
    let status = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-E", "root_owner=0:0", "-d"])
        .arg(&content)
        .arg(&img)
        .arg("16M")
        .env("E2FSPROGS_FAKE_TIME", "1")
        .status()
        .expect("mkfs.ext4 (e2fsprogs) must be installed");
    assert!(status.success(), "mkfs.ext4 failed");
    let bytes = std::fs::read(&img).expect("read image");
    let _ = std::fs::remove_dir_all(&dir);
    bytes
}

fn outcome() -> &'static Outcome {
    static RUN: OnceLock<Outcome> = OnceLock::new();
    RUN.get_or_init(|| {
        let a = paddock_tests::harness::Artifacts::from_env().unwrap_or_else(|e| panic!("{e}"));
        let mut stage = base_stage(&a).unwrap_or_else(|e| panic!("{e}"));
        stage.add("disks/ro.ext4", ro_disk_image(), 0o644);
        run_script("vmm.sh", &stage).unwrap_or_else(|e| panic!("{e}"))
    })
}

fn boot_checks(name: &str) {
    let o = outcome();
    let mut c = Checks::new(o, name);
    c.eq("vmm_exit", "0")
        .eq("text", "hello over vsock")
        .eq("serial_hello", "1")
        .eq("boot_timer_lines", "1")
        .eq("vsock_sent", "1");
    c.finish();
}

#[test]
fn boots_pvh_vmlinux_reports_over_serial_and_vsock_and_exits_zero() {
    boot_checks("boot_pvh");
}

#[test]
fn boots_bzimage_through_the_64bit_entry() {
    boot_checks("boot_bzimage");
}

#[test]
fn guest_sees_configured_vcpus_and_memory() {
    let o = outcome();
    let mut c = Checks::new(o, "topology");
    c.eq("vmm_exit", "0").eq("cpus", "2");
    if let Some(kb) = c.number("memtotal_kb") {
        // 320 MiB configured; the kernel keeps some for itself.
        c.check(
            kb > 260 * 1024 && kb <= 320 * 1024,
            format!("MemTotal {kb} kB is not what 320 MiB looks like"),
        );
    }
    c.finish();
}

#[test]
fn block_devices_read_write_and_refuse_writes_when_read_only() {
    let o = outcome();
    let mut c = Checks::new(o, "blk");
    let known = pattern_sha256(KNOWN_SEED, KNOWN_LEN);
    let written = pattern_sha256(42, 4 << 20);
    c.eq("vmm_exit", "0")
        .eq("ro_file_sha256", &known)
        .eq("ro_flag", "1")
        .eq("ro_write_failed", "1")
        .eq("rw_size_sectors", "32768")
        .eq("rw_write_rc", "0")
        .eq("past_end_failed", "1")
        .eq("rw_written", &format!("len={},sha256={written}", 4 << 20))
        .eq("rw_size_bytes", "16777216");
    let before = o.fact("blk", "ro_image_sha256_before");
    c.check(before.is_some(), "ro image checksum missing");
    c.check(
        before == o.fact("blk", "ro_image_sha256_after"),
        "the read-only image changed on the host",
    );
    c.finish();
}

#[test]
fn vsock_moves_10_mib_each_way_intact() {
    let o = outcome();
    let mut c = Checks::new(o, "vsock");
    c.eq("vmm_exit", "0")
        .eq("host_send_rc", "0")
        .eq("serve_rc", "0")
        .eq("send_rc", "0")
        .eq(
            "g2h",
            &format!("len={MIB10},sha256={}", pattern_sha256(7, MIB10)),
        )
        .eq(
            "h2g",
            &format!("reply_len={MIB10},sha256={}", pattern_sha256(9, MIB10)),
        );
    c.finish();
}

#[test]
fn guest_kernel_panic_exits_nonzero_with_the_reason() {
    let o = outcome();
    let mut c = Checks::new(o, "panic");
    c.eq("vmm_exit", "3").eq("reported", "1");
    c.finish();
}
