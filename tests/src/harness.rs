//! Runs scenario scripts where KVM can boot Linux: directly on a hardware
//! KVM host, or inside an "L1" Linux booted in QEMU TCG with an emulated AMD
//! CPU, whose own nested KVM runs our VMM (see shared/docs/testing-kvm-here.md).
//!
//! Scenarios print `@@@ FACT <scenario> <key>=<value>` lines; tests assert
//! on facts, and on failure print every line the run produced.

use paddock_image::cpio::{write_archive, Entry};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("{var} is not set: run the tests through `just test`, which builds the artifacts and sets it")]
    MissingVar { var: &'static str },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no usable KVM: {0}")]
    NoKvm(String),
    #[error("{cmd} failed: {detail}")]
    Command { cmd: String, detail: String },
    #[error("hung: {detail}")]
    Hung { detail: String },
}

type Result<T> = std::result::Result<T, HarnessError>;

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> HarnessError {
    let path = path.to_path_buf();
    move |source| HarnessError::Io { what, path, source }
}

fn env_path(var: &'static str) -> Result<PathBuf> {
    std::env::var_os(var)
        .map(PathBuf::from)
        .ok_or(HarnessError::MissingVar { var })
}

/// What the scenarios run: built by `just test` and named in the environment.
pub struct Artifacts {
    /// Static paddock-vmm and paddock-testkit.
    pub vmm: PathBuf,
    pub testkit: PathBuf,
    /// The guest agent (static), PID 1 of workspaces.
    pub agent: PathBuf,
    pub bench: Option<PathBuf>,
    /// The default workspace template (erofs), for agent scenarios.
    pub template: Option<PathBuf>,
    /// Directory with vmlinux and bzImage of our guest kernel.
    pub guest_kernel: PathBuf,
    /// Directory with the L1 kernel (vmlinuz) and its KVM modules.
    pub l1_kernel: PathBuf,
    pub busybox: PathBuf,
}

impl Artifacts {
    pub fn from_env() -> Result<Artifacts> {
        let bin = env_path("PADDOCK_STATIC_BIN")?;
        let bench = bin.join("paddock-bench");
        Ok(Artifacts {
            vmm: bin.join("paddock-vmm"),
            testkit: bin.join("paddock-testkit"),
            agent: bin.join("paddock-agent"),
            bench: bench.exists().then_some(bench),
            template: std::env::var_os("PADDOCK_TEMPLATE").map(PathBuf::from),
            guest_kernel: env_path("PADDOCK_GUEST_KERNEL")?,
            l1_kernel: env_path("PADDOCK_L1_KERNEL")?,
            busybox: std::env::var_os("PADDOCK_BUSYBOX")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/bin/busybox")),
        })
    }
}

/// How scenarios reach KVM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvmPath {
    /// This host's /dev/kvm is hardware-backed: run the VMM here.
    Direct,
    /// Boot an L1 under QEMU TCG (-cpu EPYC) and use its nested KVM.
    Nested,
}

fn hardware_kvm() -> std::result::Result<(), String> {
    if Path::new("/sys/module/kvm_pvm").exists() {
        return Err("/dev/kvm is PVM-backed and cannot boot Linux guests".into());
    }
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").map_err(|e| e.to_string())?;
    if !cpuinfo
        .lines()
        .any(|l| l.starts_with("flags") && (l.contains(" vmx") || l.contains(" svm")))
    {
        return Err("the CPU shows neither vmx nor svm".into());
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map_err(|e| format!("/dev/kvm: {e}"))?;
    Ok(())
}

fn have_qemu() -> bool {
    Command::new("qemu-system-x86_64")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Picks the fastest path that works. PADDOCK_KVM_PATH=direct|nested forces one.
pub fn detect_path() -> Result<KvmPath> {
    match std::env::var("PADDOCK_KVM_PATH").as_deref() {
        Ok("direct") => return Ok(KvmPath::Direct),
        Ok("nested") => return Ok(KvmPath::Nested),
        _ => {}
    }
    match hardware_kvm() {
        Ok(()) => Ok(KvmPath::Direct),
        Err(why) if have_qemu() => {
            eprintln!("harness: no hardware KVM here ({why}); using nested KVM in QEMU TCG");
            Ok(KvmPath::Nested)
        }
        Err(why) => Err(HarnessError::NoKvm(format!(
            "{why}, and qemu-system-x86_64 is not installed for the nested path"
        ))),
    }
}

/// Files laid out under the scenario root (`/paddock` in the L1).
#[derive(Default)]
pub struct Stage {
    files: BTreeMap<String, (Vec<u8>, u32)>,
}

impl Stage {
    pub fn add(&mut self, path: &str, data: Vec<u8>, mode: u32) {
        self.files.insert(path.to_string(), (data, mode));
    }

    pub fn add_host_file(&mut self, path: &str, src: &Path, mode: u32) -> Result<()> {
        let data = std::fs::read(src).map_err(io("reading", src))?;
        self.add(path, data, mode);
        Ok(())
    }

    /// The stage as cpio entries under `prefix`, parents first.
    fn entries(&self, prefix: &str) -> Vec<Entry> {
        let mut dirs = std::collections::BTreeSet::new();
        for path in self.files.keys() {
            let full = format!("{prefix}/{path}");
            let mut p = Path::new(&full).parent();
            while let Some(d) = p {
                if d.as_os_str().is_empty() {
                    break;
                }
                dirs.insert(d.to_string_lossy().to_string());
                p = d.parent();
            }
        }
        let mut entries: Vec<Entry> = dirs
            .into_iter()
            .map(|path| Entry::Dir { path, mode: 0o755 })
            .collect();
        for (path, (data, mode)) in &self.files {
            entries.push(Entry::File {
                path: format!("{prefix}/{path}"),
                mode: *mode,
                data: data.clone(),
            });
        }
        entries
    }

    fn write_to(&self, root: &Path) -> Result<()> {
        for (path, (data, mode)) in &self.files {
            let dest = root.join(path);
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
            }
            std::fs::write(&dest, data).map_err(io("writing", &dest))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(*mode))
                .map_err(io("chmod", &dest))?;
        }
        Ok(())
    }
}

fn busybox_applets(busybox: &Path) -> Result<Vec<String>> {
    let out = Command::new(busybox)
        .arg("--list")
        .output()
        .map_err(io("running", busybox))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty() && !l.contains('/'))
        .map(str::to_string)
        .collect())
}

/// Directory entries, in the order given (parents first).
fn dirs(list: &[(&str, u32)]) -> Vec<Entry> {
    list.iter()
        .map(|(path, mode)| Entry::Dir {
            path: path.to_string(),
            mode: *mode,
        })
        .collect()
}

/// `/dev/console` and busybox at `bin/busybox`: what every test initramfs starts with.
fn console_and_busybox(a: &Artifacts) -> Result<Vec<Entry>> {
    let busybox = std::fs::read(&a.busybox).map_err(io("reading", &a.busybox))?;
    Ok(vec![
        Entry::CharDev {
            path: "dev/console".into(),
            mode: 0o600,
            major: 5,
            minor: 1,
        },
        Entry::File {
            path: "bin/busybox".into(),
            mode: 0o755,
            data: busybox,
        },
    ])
}

/// The test guest's initramfs: busybox, the testkit and the scenario init.
pub fn guest_initramfs(a: &Artifacts) -> Result<Vec<u8>> {
    let mut entries = dirs(&[
        ("bin", 0o755),
        ("dev", 0o755),
        ("proc", 0o755),
        ("sys", 0o755),
        ("tmp", 0o1777),
    ]);
    entries.extend(console_and_busybox(a)?);
    for applet in busybox_applets(&a.busybox)? {
        if applet != "busybox" {
            entries.push(Entry::Symlink {
                path: format!("bin/{applet}"),
                target: "busybox".into(),
            });
        }
    }
    let testkit = std::fs::read(&a.testkit).map_err(io("reading", &a.testkit))?;
    entries.push(Entry::File {
        path: "bin/paddock-testkit".into(),
        mode: 0o755,
        data: testkit,
    });
    entries.push(Entry::File {
        path: "init".into(),
        mode: 0o755,
        data: include_bytes!("../guest/init").to_vec(),
    });
    let mut out = Vec::new();
    write_archive(&mut out, &entries, 0).map_err(io("building", Path::new("guest initramfs")))?;
    Ok(out)
}

/// A workspace's initramfs: the guest agent as /init, nothing else.
pub fn agent_initramfs(a: &Artifacts) -> Result<Vec<u8>> {
    let agent = std::fs::read(&a.agent).map_err(io("reading", &a.agent))?;
    let entries = vec![
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
        Entry::File {
            path: "init".into(),
            mode: 0o755,
            data: agent,
        },
    ];
    let mut out = Vec::new();
    write_archive(&mut out, &entries, 0).map_err(io("building", Path::new("agent initramfs")))?;
    Ok(out)
}

/// The base stage plus the agent initramfs and the default template.
pub fn agent_stage(a: &Artifacts) -> Result<Stage> {
    let mut s = base_stage(a)?;
    s.add("guest/agent-initramfs.cpio", agent_initramfs(a)?, 0o644);
    let template = a.template.as_ref().ok_or(HarnessError::MissingVar {
        var: "PADDOCK_TEMPLATE",
    })?;
    s.add_host_file("disks/template.erofs", template, 0o644)?;
    Ok(s)
}

/// A stage with the VMM, testkit, guest kernel and initramfs, and the scenario scripts.
pub fn base_stage(a: &Artifacts) -> Result<Stage> {
    let mut s = Stage::default();
    s.add_host_file("bin/paddock-vmm", &a.vmm, 0o755)?;
    s.add_host_file("bin/paddock-testkit", &a.testkit, 0o755)?;
    if let Some(b) = &a.bench {
        s.add_host_file("bin/paddock-bench", b, 0o755)?;
    }
    s.add_host_file("guest/vmlinux", &a.guest_kernel.join("vmlinux"), 0o644)?;
    s.add_host_file("guest/bzImage", &a.guest_kernel.join("bzImage"), 0o644)?;
    s.add("guest/initramfs.cpio", guest_initramfs(a)?, 0o644);
    let scenarios = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    for e in std::fs::read_dir(&scenarios).map_err(io("listing", &scenarios))? {
        let e = e.map_err(io("listing", &scenarios))?;
        let name = e.file_name().to_string_lossy().to_string();
        s.add_host_file(&format!("scenarios/{name}"), &e.path(), 0o644)?;
    }
    Ok(s)
}

/// One fact a scenario printed.
#[derive(Clone, Debug)]
pub struct Fact {
    pub scenario: String,
    pub key: String,
    pub value: String,
}

pub struct Outcome {
    pub path: KvmPath,
    pub output: String,
    pub facts: Vec<Fact>,
    pub elapsed: Duration,
}

impl Outcome {
    fn parse(path: KvmPath, output: String, elapsed: Duration) -> Outcome {
        let facts = output
            .lines()
            .filter_map(|l| {
                let rest = l.trim_end_matches('\r');
                let rest = &rest[rest.find("@@@ FACT ")? + 9..];
                let (scenario, kv) = rest.split_once(' ')?;
                let (key, value) = kv.split_once('=')?;
                Some(Fact {
                    scenario: scenario.to_string(),
                    key: key.to_string(),
                    value: value.to_string(),
                })
            })
            .collect();
        Outcome {
            path,
            output,
            facts,
            elapsed,
        }
    }

    /// The last value of `key` in `scenario`.
    pub fn fact(&self, scenario: &str, key: &str) -> Option<&str> {
        self.facts
            .iter()
            .rev()
            .find(|f| f.scenario == scenario && f.key == key)
            .map(|f| f.value.as_str())
    }

    /// The run's lines about one scenario, for failure messages.
    pub fn logs(&self, scenario: &str) -> String {
        let tag_fact = format!("FACT {scenario} ");
        let tag_log = format!("LOG {scenario} ");
        self.output
            .lines()
            .filter(|l| l.contains(&tag_fact) || l.contains(&tag_log) || l.contains("@@@ L1"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Collects failed expectations of one scenario and reports them together.
pub struct Checks<'a> {
    outcome: &'a Outcome,
    scenario: &'a str,
    failures: Vec<String>,
}

impl<'a> Checks<'a> {
    pub fn new(outcome: &'a Outcome, scenario: &'a str) -> Self {
        Checks {
            outcome,
            scenario,
            failures: Vec::new(),
        }
    }

    pub fn eq(&mut self, key: &str, want: &str) -> &mut Self {
        match self.outcome.fact(self.scenario, key) {
            Some(v) if v == want => {}
            got => self
                .failures
                .push(format!("{key}: want {want:?}, got {got:?}")),
        }
        self
    }

    pub fn number(&mut self, key: &str) -> Option<u64> {
        let v = self
            .outcome
            .fact(self.scenario, key)
            .and_then(|v| v.trim().parse().ok());
        if v.is_none() {
            self.failures
                .push(format!("{key}: missing or not a number"));
        }
        v
    }

    pub fn check(&mut self, ok: bool, what: impl Into<String>) -> &mut Self {
        if !ok {
            self.failures.push(what.into());
        }
        self
    }

    pub fn finish(&self) {
        if !self.failures.is_empty() {
            panic!(
                "scenario {} failed ({:?} path):\n  {}\n--- scenario output ---\n{}",
                self.scenario,
                self.outcome.path,
                self.failures.join("\n  "),
                self.outcome.logs(self.scenario)
            );
        }
        eprintln!(
            "scenario {}: ok ({:?} path)",
            self.scenario, self.outcome.path
        );
    }
}

const L1_INIT: &str = r#"#!/bin/busybox sh
# PID 1 of the harness's L1: load KVM, run one scenario script, power off.
/bin/busybox mkdir -p /proc /sys /dev /tmp /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs -o size=3g tmpfs /tmp
insmod /lib/modules/irqbypass.ko
insmod /lib/modules/kvm.ko
insmod /lib/modules/kvm-amd.ko 2>/dev/null || insmod /lib/modules/kvm-intel.ko 2>/dev/null
if [ -c /dev/kvm ]; then echo "@@@ L1 kvm=yes"; else echo "@@@ L1 kvm=no"; fi
script=$(sed -n 's/.*paddock\.run=\([^ ]*\).*/\1/p' /proc/cmdline)
export P=/paddock T=/tmp/scenarios
sh /paddock/scenarios/$script
echo "@@@ L1 DONE rc=$?"
sync
poweroff -f
"#;

fn l1_initramfs(a: &Artifacts, stage: &Stage) -> Result<Vec<u8>> {
    let mut entries = dirs(&[
        ("bin", 0o755),
        ("dev", 0o755),
        ("lib", 0o755),
        ("lib/modules", 0o755),
    ]);
    entries.extend(console_and_busybox(a)?);
    entries.push(Entry::File {
        path: "init".into(),
        mode: 0o755,
        data: L1_INIT.as_bytes().to_vec(),
    });
    let modules = a.l1_kernel.join("modules");
    for m in ["irqbypass", "kvm", "kvm-amd", "kvm-intel"] {
        let p = modules.join(format!("{m}.ko"));
        let data = std::fs::read(&p).map_err(io("reading", &p))?;
        entries.push(Entry::File {
            path: format!("lib/modules/{m}.ko"),
            mode: 0o644,
            data,
        });
    }
    entries.extend(stage.entries("paddock"));
    let mut out = Vec::new();
    write_archive(&mut out, &entries, 0).map_err(io("building", Path::new("L1 initramfs")))?;
    Ok(out)
}

fn scratch_dir(name: &str) -> Result<PathBuf> {
    let base = std::env::var_os("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("paddock-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
    Ok(dir)
}

/// One L1 CPU: with two, QEMU's emulated SVM loses the kicks the L1's KVM
/// sends between CPUs while one runs a nested guest, and the L1 wedges
/// (soft lockups in the VMM's threads, or a hung transfer at 100% CPU).
/// With one CPU there is nothing to kick.
const L1_CPUS: &str = "1";

/// What paddock-vmm prints when its guest triple-faults.
const TRIPLE_FAULT_LINE: &str = "paddock-vmm: guest triple fault";

/// Upper bound on one L1 run, so a hung guest fails the test instead of CI.
fn hang_guard() -> Duration {
    let secs = std::env::var("PADDOCK_RUN_TIMEOUT_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    Duration::from_secs(secs)
}

/// Runs `make()`'s command under the hang guard, and once more if the first
/// attempt hung. The nested path occasionally wedges inside the emulator
/// (the L1's CPUs stuck in KVM_RUN under TCG); a second boot is the
/// practical answer there. The hung attempt's output is kept beside the log.
fn run_guarded_with_retry(make: impl Fn() -> Command, name: &str, log: &Path) -> Result<String> {
    match run_with_guard(make(), name, log) {
        Err(HarnessError::Hung { detail }) => {
            let kept = log.with_extension("hung.log");
            let _ = std::fs::rename(log, &kept);
            eprintln!(
                "harness: WARNING: {name} hung ({detail}); its output is in {}; retrying once",
                kept.display()
            );
            run_with_guard(make(), name, log)
        }
        other => other,
    }
}

fn run_with_guard(mut cmd: Command, name: &str, log: &Path) -> Result<String> {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| HarnessError::Command {
            cmd: name.to_string(),
            detail: e.to_string(),
        })?;
    let mut stdout = child.stdout.take().ok_or_else(|| HarnessError::Command {
        cmd: name.to_string(),
        detail: "no stdout pipe".into(),
    })?;
    // The log is written as output arrives, so a hung run can be watched.
    let mut log_file = std::fs::File::create(log).map_err(io("creating", log))?;
    let reader = std::thread::spawn(move || {
        use std::io::Write;
        let mut all = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let _ = log_file.write_all(&buf[..n]);
                    all.extend_from_slice(&buf[..n]);
                }
            }
        }
        all
    });
    let limit = hang_guard();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if started.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(200)),
            Err(e) => {
                return Err(HarnessError::Command {
                    cmd: name.to_string(),
                    detail: e.to_string(),
                })
            }
        }
    };
    let out = reader.join().unwrap_or_default();
    let text = String::from_utf8_lossy(&out).to_string();
    match status {
        None => Err(HarnessError::Hung {
            detail: format!(
                "{name} still running after {limit:?}; killed (output in {})",
                log.display()
            ),
        }),
        Some(_) => Ok(text),
    }
}

/// Whether the run's console is captured (tests, benchmarks) or handed to
/// the user's terminal (the demo).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Console {
    Capture,
    Interactive,
}

/// Runs `scenarios/<script>` with `stage` on the detected KVM path,
/// capturing its output.
pub fn run_script(script: &str, stage: &Stage) -> Result<Outcome> {
    run_script_with(script, stage, Console::Capture)
}

fn run_interactive(mut cmd: Command, name: &str) -> Result<String> {
    let status = cmd.status().map_err(|e| HarnessError::Command {
        cmd: name.to_string(),
        detail: e.to_string(),
    })?;
    if !status.success() {
        return Err(HarnessError::Command {
            cmd: name.to_string(),
            detail: format!("exited with {status}"),
        });
    }
    Ok(String::new())
}

pub fn run_script_with(script: &str, stage: &Stage, console: Console) -> Result<Outcome> {
    let a = Artifacts::from_env()?;
    let path = detect_path()?;
    let dir = scratch_dir(script.trim_end_matches(".sh"))?;
    let log = dir.join("output.log");
    let started = Instant::now();
    let output = match path {
        KvmPath::Direct => {
            let root = dir.join("root");
            stage.write_to(&root)?;
            let make = || {
                let mut cmd = Command::new("sh");
                cmd.arg(root.join("scenarios").join(script))
                    .env("P", &root)
                    .env("T", dir.join("tmp"));
                cmd
            };
            match console {
                Console::Capture => run_guarded_with_retry(make, script, &log)?,
                Console::Interactive => run_interactive(make(), script)?,
            }
        }
        KvmPath::Nested => {
            let initrd = dir.join("l1.cpio");
            std::fs::write(&initrd, l1_initramfs(&a, stage)?).map_err(io("writing", &initrd))?;
            let make = || {
                let mut cmd = Command::new("qemu-system-x86_64");
                cmd.args([
                    "-M", "pc", "-accel", "tcg", "-cpu", "EPYC", "-smp", L1_CPUS, "-m", "4096",
                ])
                .args([
                    "-nodefaults",
                    "-display",
                    "none",
                    "-serial",
                    "stdio",
                    "-no-reboot",
                ])
                .arg("-kernel")
                .arg(a.l1_kernel.join("vmlinuz"))
                .arg("-initrd")
                .arg(&initrd)
                .arg("-append")
                .arg(format!(
                    "console=ttyS0 panic=-1 quiet loglevel=1 paddock.run={script}"
                ));
                cmd
            };
            if console == Console::Interactive {
                run_interactive(make(), "qemu (L1)")?
            } else {
                let mut out = run_guarded_with_retry(make, "qemu (L1)", &log)?;
                // QEMU's software SVM occasionally delivers a nested guest a
                // triple fault under heavy I/O (seen in CI with one vCPU, and
                // never on hardware KVM). One more run separates that from a
                // fault of ours, which would repeat; the first run's output
                // is kept for investigation.
                if out.contains(TRIPLE_FAULT_LINE) {
                    let kept = log.with_extension("triple-fault.log");
                    let _ = std::fs::copy(&log, &kept);
                    eprintln!(
                        "harness: WARNING: a nested guest triple-faulted under TCG in {script}; output kept in {}; running the scenario once more",
                        kept.display()
                    );
                    out = run_guarded_with_retry(make, "qemu (L1)", &log)?;
                }
                if !out.contains("@@@ L1 kvm=yes") {
                    return Err(HarnessError::NoKvm(format!(
                        "the L1 found no /dev/kvm after loading kvm-amd (output in {})",
                        log.display()
                    )));
                }
                out
            }
        }
    };
    eprintln!(
        "harness: {script} ran on the {path:?} path in {:.1} s (output in {})",
        started.elapsed().as_secs_f64(),
        log.display()
    );
    Ok(Outcome::parse(path, output, started.elapsed()))
}
