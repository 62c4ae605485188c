//! The demo workspace `just run` asks for: one microVM from the default
//! template, started at boot like any workspace (own uid, own cgroup), and
//! proven alive by running a command in it. It is host-init's own: not in
//! the state database, not visible through the API.

use crate::control::layout;
use crate::control::run_error::RunError;
use crate::control::runner;
use crate::control::workspace::WorkspaceRecord;
use crate::status::SCREEN;
use crate::{info, warn};
use paddock_agent_client::AgentClient;
use paddock_proto::{ExecRequest, User};
use std::path::Path;
use std::time::{Duration, Instant};

/// Named by the control plane, which leaves its data alone.
pub const NAME: &str = layout::DEMO_NAME;
/// Below the API workspaces' range, so the two never share a uid.
const DEMO_UID: u32 = layout::WS_UID_BASE - 1;

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("no /dev/kvm: this machine offers no hardware virtualization to workspaces")]
    NoKvm,
    #[error("{0}")]
    Run(#[from] RunError),
    #[error("the workspace agent: {0}")]
    Agent(#[from] paddock_agent_client::ClientError),
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
    // The demo runs outside the control plane: no slot, no NIC.
    let ws = WorkspaceRecord::internal(NAME, DEMO_UID, 1, 512, 2048);
    set("booting".into());
    let started = Instant::now();
    let runner::Started { pid, ready, .. } = runner::start(&ws, template_dev)?;
    let ready_s = started.elapsed().as_secs_f64();
    info!(
        "demo workspace: ready after {ready_s:.1} s (pid {pid}, agent {}, guest uptime {} ms)",
        ready.agent_version, ready.uptime_ms
    );
    let client = AgentClient::new(layout::vsock_path(NAME)).with_timeout(Duration::from_secs(120));
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
