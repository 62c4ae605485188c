//! The jail each VMM runs in, built on this machine around
//! `paddock-init jail-probe` (the test mode that reports what a jailed
//! process sees): PID 1 of its own PID namespace, /proc showing nothing
//! else, only the bound paths visible (other workspaces' files are not),
//! the workspace's uid with no capabilities and no_new_privs, an empty
//! environment, no inherited descriptors; exit codes pass through.

use std::path::{Path, PathBuf};
use std::process::Command;

fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_paddock-init"))
}

/// The shared libraries the (dynamically linked) test binary needs: they
/// must be inside the jail for it to start there. The appliance's binaries
/// are static and need none.
fn libraries(bin: &Path) -> Vec<String> {
    let out = Command::new("ldd").arg(bin).output().expect("ldd");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
        .map(String::from)
        .collect()
}

fn jail(dir: &Path, tail: &[&str]) -> std::process::Output {
    jail_keeping(dir, None, tail)
}

/// The jail, passing on descriptor `keep` (left open across exec) if given.
fn jail_keeping(dir: &Path, keep: Option<i32>, tail: &[&str]) -> std::process::Output {
    let bin = exe();
    let mut cmd = Command::new(&bin);
    cmd.arg("jail");
    if let Some(fd) = keep {
        cmd.args(["--keep-fd", &fd.to_string()]);
    }
    cmd.args(["--uid", "4242", "--gid", "4242", "--group", "4343"])
        .arg("--root")
        .arg(dir.join("root"))
        .arg("--bind")
        .arg(&bin)
        .arg("--bind")
        .arg(format!("{}:rw", dir.join("mine").display()));
    for lib in libraries(&bin) {
        cmd.args(["--bind", &lib]);
    }
    cmd.arg("--").arg(&bin).args(tail);
    // Something the jail must not pass on.
    cmd.env("PADDOCK_SECRET_TEST", "must-not-leak");
    cmd.output().expect("run the jail")
}

/// The jail-probe's JSON report, from a jail that must have succeeded.
fn probe_report(out: &std::process::Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).expect("probe JSON")
}

#[test]
fn a_jailed_process_sees_only_its_own_world() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "building a jail needs root (namespaces, mounts); run the suite as root"
    );
    let dir = std::env::temp_dir().join(format!("paddock-jail-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("mine")).expect("dir");
    std::fs::create_dir_all(dir.join("other-workspace")).expect("dir");
    std::fs::write(dir.join("other-workspace/disk.img"), "not yours").expect("file");
    let mine = dir.join("mine");
    let other = dir.join("other-workspace/disk.img");

    let out = jail(
        &dir,
        &[
            "jail-probe",
            &mine.to_string_lossy(),
            &other.to_string_lossy(),
            "/etc/passwd",
            "/run",
            "/dev/kvm",
        ],
    );
    let r = probe_report(&out);
    assert_eq!(r["pid"], 1, "PID 1 of its own namespace: {r}");
    assert_eq!(
        r["proc_pids"],
        serde_json::json!(["1"]),
        "/proc shows only the jail: {r}"
    );
    assert!(
        r["uid"]
            .as_str()
            .is_some_and(|u| u.starts_with("4242\t4242\t4242")),
        "{r}"
    );
    assert!(
        r["gid"]
            .as_str()
            .is_some_and(|g| g.starts_with("4242\t4242\t4242")),
        "{r}"
    );
    assert_eq!(r["groups"], "4343", "{r}");
    assert_eq!(r["cap_eff"], "0000000000000000", "{r}");
    assert_eq!(r["cap_prm"], "0000000000000000", "{r}");
    assert_eq!(r["no_new_privs"], "1", "{r}");
    assert_eq!(r["env"], 0, "empty environment: {r}");
    assert_eq!(r["hostname"], "paddock-vmm", "{r}");
    assert!(
        r["open_fds"].as_u64().is_some_and(|n| n <= 4),
        "stdio only: {r}"
    );
    let seen = |p: &Path| {
        r["visible"]
            .as_array()
            .and_then(|v| {
                v.iter()
                    .find(|e| e[0] == p.to_string_lossy().as_ref())
                    .and_then(|e| e[1].as_bool())
            })
            .expect("asked about")
    };
    assert!(seen(&mine), "its own bound directory: {r}");
    assert!(!seen(&other), "another workspace's disk: {r}");
    assert!(!seen(Path::new("/etc/passwd")), "the host's files: {r}");
    assert!(!seen(Path::new("/run")), "the host's sockets: {r}");
    assert!(
        !seen(Path::new("/dev/kvm")),
        "devices it was not given: {r}"
    );
    // Top level of the jail: the bound paths' first components and /proc.
    let entries: Vec<String> = serde_json::from_value(r["root_entries"].clone()).expect("list");
    assert!(entries.contains(&"proc".to_string()), "{entries:?}");
    assert!(!entries.contains(&"etc".to_string()), "{entries:?}");

    assert!(r["fd3"].is_null(), "nothing at fd 3 unless passed: {r}");

    // A descriptor passed on (a workspace's tap) arrives as fd 3, and it
    // is the only one beyond stdio.
    let kept = dir.join("kept");
    std::fs::write(&kept, "tap stand-in").expect("file");
    let path = std::ffi::CString::new(kept.to_string_lossy().as_bytes()).expect("path");
    // SAFETY: open(2) with a NUL-terminated path; without O_CLOEXEC on
    // purpose, as host-init leaves the tap for the jail.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY) };
    assert!(fd >= 0);
    let out = jail_keeping(&dir, Some(fd), &["jail-probe"]);
    // SAFETY: closing the descriptor opened above.
    unsafe { libc::close(fd) };
    let r = probe_report(&out);
    assert!(
        r["fd3"].as_str().is_some_and(|t| t.ends_with("kept")),
        "the passed descriptor at fd 3: {r}"
    );
    assert!(r["open_fds"].as_u64().is_some_and(|n| n <= 5), "{r}");

    // The jail exits as its program did.
    let out = jail(&dir, &["no-such-subcommand"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Refused before anything is built.
    let out = Command::new(exe())
        .args([
            "jail",
            "--uid",
            "0",
            "--gid",
            "0",
            "--root",
            "/tmp/x",
            "--bind",
            "/bin/true",
            "--",
            "/bin/true",
        ])
        .output()
        .expect("jail");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("must not be 0"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// host-init stops a workspace by sending its jail SIGTERM: the jailed
/// program (PID 1 of its namespace, deaf to signals it has no handler for)
/// is killed, and the jail exits only after it is gone, so that its mounts
/// (which pin the data partition) are released when host-init sees the end.
#[test]
fn sigterm_to_the_jail_ends_the_jailed_program_first() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "building a jail needs root (namespaces, mounts); run the suite as root"
    );
    let busybox = Path::new("/bin/busybox");
    assert!(busybox.exists(), "needs busybox-static (just deps)");
    let dir = std::env::temp_dir().join(format!("paddock-jail-term-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let mut child = Command::new(exe())
        .args(["jail", "--uid", "4242", "--gid", "4242", "--root"])
        .arg(dir.join("root"))
        .args([
            "--bind",
            "/bin/busybox",
            "--",
            "/bin/busybox",
            "sleep",
            "600",
        ])
        .spawn()
        .expect("start the jail");
    // Until the jailed sleep runs, there is no process of uid 4242 under it.
    let jailed = || {
        std::fs::read_dir("/proc")
            .expect("/proc")
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| c.split('\0').take(3).eq(["/bin/busybox", "sleep", "600"]))
            })
            .collect::<Vec<_>>()
    };
    let started = std::time::Instant::now();
    while jailed().is_empty() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "the jailed program never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let status = child.wait().expect("wait for the jail");
    assert_eq!(status.code(), Some(128 + 9), "{status:?}");
    assert!(jailed().is_empty(), "the jailed program outlived its jail");
    let _ = std::fs::remove_dir_all(&dir);
}
