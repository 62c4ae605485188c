//! The demo workspace `just run` asks for: one microVM from the default
//! template, booted at startup, proven alive by running a command in it.

use crate::status::SCREEN;
use crate::{info, warn};
use paddock_agent_client::{AgentClient, ReadyListener};
use paddock_proto::{ExecRequest, User};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const VMM: &str = "/usr/lib/paddock/paddock-vmm";
pub const GUEST_KERNEL: &str = "/usr/lib/paddock/guest/vmlinux";
pub const AGENT_INITRAMFS: &str = "/usr/lib/paddock/guest/agent.cpio";
const NAME: &str = "demo";
const DISK_BYTES: u64 = 2 << 30;
/// Booting under nested emulation can take minutes; hardware takes seconds.
const READY_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("no /dev/kvm: this machine offers no hardware virtualization to workspaces")]
    NoKvm,
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the workspace agent: {0}")]
    Agent(#[from] paddock_agent_client::ClientError),
    #[error("the VMM ended before the workspace was ready ({0})")]
    VmmEnded(String),
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DemoError {
    let path = path.to_path_buf();
    move |source| DemoError::Io { what, path, source }
}

fn set(text: String) {
    SCREEN.update(|s| s.demo = Some(text));
}

/// Starts the demo workspace on its own thread.
pub fn start(template_dev: String) {
    set("starting".into());
    let spawned = std::thread::Builder::new()
        .name("demo".into())
        .spawn(move || {
            if let Err(e) = run(&template_dev) {
                warn!("demo workspace: {e}");
                set(format!("failed: {e}"));
            }
        });
    if let Err(e) = spawned {
        warn!("demo workspace: {e}");
    }
}

fn run(template_dev: &str) -> Result<(), DemoError> {
    if !Path::new("/dev/kvm").exists() {
        return Err(DemoError::NoKvm);
    }
    let dir = PathBuf::from("/data/workspaces").join(NAME);
    std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
    let disk = dir.join("disk.img");
    if !disk.exists() {
        let f = std::fs::File::create(&disk).map_err(io("creating", &disk))?;
        f.set_len(DISK_BYTES).map_err(io("sizing", &disk))?;
    }
    let run_dir = PathBuf::from("/run/paddock").join(NAME);
    let _ = std::fs::remove_dir_all(&run_dir);
    std::fs::create_dir_all(&run_dir).map_err(io("creating", &run_dir))?;
    let uds = run_dir.join("vsock.sock");
    let ready = ReadyListener::bind(&uds)?;
    let console = dir.join("console.log");
    let console_file = std::fs::File::create(&console).map_err(io("creating", &console))?;
    let err_file = console_file.try_clone().map_err(io("opening", &console))?;
    let started = Instant::now();
    let mut cmd = Command::new(VMM);
    crate::children::reset_signals(&mut cmd);
    let child = cmd
        .args(["--kernel", GUEST_KERNEL, "--initramfs", AGENT_INITRAMFS])
        .args(["--vcpus", "1", "--memory-mib", "512"])
        .arg("--drive")
        .arg(format!("id=template,path={template_dev},ro"))
        .arg("--drive")
        .arg(format!("id=data,path={}", disk.display()))
        .arg("--vsock")
        .arg(format!("cid=3,uds={}", uds.display()))
        .args(["--console", "stdout", "--cmdline", "paddock.hostname=demo"])
        .env_clear()
        .stdin(Stdio::null())
        .stdout(console_file)
        .stderr(err_file)
        .spawn()
        .map_err(io("starting", Path::new(VMM)))?;
    let pid = child.id();
    drop(child);
    crate::workspaces::add(NAME, pid);
    info!("demo workspace: VMM started (pid {pid}); waiting for its agent");
    set("booting".into());

    let info = match ready.wait(READY_TIMEOUT) {
        Ok(i) => i,
        Err(e) => {
            return Err(
                match crate::workspaces::wait_ended(NAME, Some(Duration::ZERO)) {
                    Some(exit) => DemoError::VmmEnded(exit.to_string()),
                    None => e.into(),
                },
            )
        }
    };
    let ready_s = started.elapsed().as_secs_f64();
    info!(
        "demo workspace: ready after {ready_s:.1} s (agent {}, guest uptime {} ms)",
        info.agent_version, info.uptime_ms
    );
    let client = AgentClient::new(&uds).with_timeout(Duration::from_secs(120));
    let (status, out, _) = client.exec_collect(ExecRequest {
        argv: vec!["uname".into(), "-sr".into()],
        env: Vec::new(),
        cwd: None,
        user: User::Agent,
        stdin: false,
        timeout_ms: Some(60_000),
    })?;
    let uname = String::from_utf8_lossy(&out).trim().to_string();
    info!("demo workspace: `uname -sr` says {uname:?} ({status:?})");
    set(format!("ready after {ready_s:.1} s; runs {uname}"));

    let exit = crate::workspaces::wait_ended(NAME, None)
        .map(|e| e.to_string())
        .unwrap_or_else(|| "unknown".into());
    info!("demo workspace: VMM ended ({exit})");
    set(format!("stopped ({exit})"));
    Ok(())
}
