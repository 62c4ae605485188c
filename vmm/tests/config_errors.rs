//! Every bad configuration is refused before a VM exists: exit status 2 and
//! one line naming the field. Runs the real binary; needs no KVM.

use std::path::PathBuf;
use std::process::Command;

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let d = std::env::temp_dir().join(format!("paddock-cfg-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("mkdir");
        Scratch(d)
    }
    fn file(&self, name: &str, content: &[u8]) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, content).expect("write");
        p.display().to_string()
    }
    /// Something with an ELF magic, so only the field under test is wrong.
    fn kernel(&self) -> String {
        self.file("vmlinux", b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the VMM; returns (exit code, error lines).
fn vmm(args: &[&str]) -> (i32, Vec<String>) {
    let out = Command::new(env!("CARGO_BIN_EXE_paddock-vmm"))
        .args(args)
        .output()
        .expect("run paddock-vmm");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    let lines = stderr
        .lines()
        .filter(|l| l.contains("invalid configuration"))
        .map(str::to_string)
        .collect();
    (out.status.code().unwrap_or(-1), lines)
}

fn assert_one_error(args: &[&str], field: &str, text: &str) {
    let (code, lines) = vmm(args);
    assert_eq!(code, 2, "{args:?}: {lines:?}");
    assert_eq!(
        lines.len(),
        1,
        "{args:?}: want one error line, got {lines:?}"
    );
    assert!(
        lines[0].contains(&format!("{field}: ")) && lines[0].contains(text),
        "{args:?}: {:?} should name {field} and say {text:?}",
        lines[0]
    );
}

#[test]
fn missing_or_unreadable_kernel() {
    assert_one_error(
        &["--kernel", "/nonexistent/vmlinux"],
        "kernel",
        "cannot open",
    );
    let s = Scratch::new("dir");
    let dir = s.0.display().to_string();
    assert_one_error(&["--kernel", &dir], "kernel", "");
}

#[test]
fn file_that_is_not_a_kernel() {
    let s = Scratch::new("notkernel");
    let k = s.file("script.sh", b"#!/bin/sh\necho hi\n");
    assert_one_error(
        &["--kernel", &k],
        "kernel",
        "neither an ELF vmlinux nor a bzImage",
    );
    let empty = s.file("empty", b"");
    assert_one_error(&["--kernel", &empty], "kernel", "neither");
}

#[test]
fn memory_zero_or_more_than_the_host_has() {
    let s = Scratch::new("mem");
    let k = s.kernel();
    assert_one_error(
        &["--kernel", &k, "--memory-mib", "0"],
        "memory_mib",
        "at least",
    );
    assert_one_error(
        &["--kernel", &k, "--memory-mib", "100000000"],
        "memory_mib",
        "more than the host",
    );
    assert_one_error(
        &["--kernel", &k, "--memory-mib", "-5"],
        "--memory-mib",
        "not a valid number",
    );
}

#[test]
fn vcpus_zero_or_above_the_limit() {
    let s = Scratch::new("vcpus");
    let k = s.kernel();
    assert_one_error(
        &["--kernel", &k, "--vcpus", "0"],
        "vcpus",
        "must be between 1 and",
    );
    assert_one_error(
        &["--kernel", &k, "--vcpus", "255"],
        "vcpus",
        "must be between 1 and",
    );
    assert_one_error(
        &["--kernel", &k, "--vcpus", "100000"],
        "--vcpus",
        "not a valid number",
    );
}

#[test]
fn two_drives_with_one_id() {
    let s = Scratch::new("drives");
    let k = s.kernel();
    let d = s.file("disk.img", &[0u8; 4096]);
    let a = format!("id=root,path={d},ro");
    assert_one_error(
        &["--kernel", &k, "--drive", &a, "--drive", &a],
        "drives[1].id",
        "duplicate id",
    );
    assert_one_error(
        &["--kernel", &k, "--drive", "id=x,path=/nonexistent/disk"],
        "drives[0].path",
        "cannot open",
    );
}

#[test]
fn unknown_fields_in_json_and_unknown_flags() {
    let s = Scratch::new("json");
    let k = s.kernel();
    let cfg = s.file(
        "vm.json",
        format!(r#"{{"kernel": "{k}", "memory_mb": 128}}"#).as_bytes(),
    );
    assert_one_error(&["--config", &cfg], "config", "unknown field `memory_mb`");
    let bad = s.file("bad.json", b"{\"kernel\": ");
    assert_one_error(&["--config", &bad], "config", "EOF");
    assert_one_error(&["--kernel", &k, "--turbo", "1"], "--turbo", "unknown flag");
}

#[test]
fn json_config_errors_name_nested_fields() {
    let s = Scratch::new("nested");
    let k = s.kernel();
    let cfg = s.file(
        "vm.json",
        format!(r#"{{"kernel": "{k}", "vsock": {{"cid": 1, "uds_path": "/tmp/x.sock"}}}}"#)
            .as_bytes(),
    );
    assert_one_error(&["--config", &cfg], "vsock.cid", "must be between 3");
    let cfg = s.file(
        "vm2.json",
        format!(
            r#"{{"kernel": "{k}", "drives": [{{"id": "a", "path": "/x", "readonly": true}}]}}"#
        )
        .as_bytes(),
    );
    assert_one_error(&["--config", &cfg], "config", "unknown field `readonly`");
}
