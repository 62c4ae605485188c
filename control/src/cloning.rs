//! Starting a workspace as a clone of a template snapshot: the VM of a
//! template booted to the point where its agent waits for `Provision`
//! (template_snapshots.rs), restored with this workspace's own encrypted
//! disk in place of the template's empty one, its NIC, limits, jail and
//! cgroup as at a cold create, then provisioned: its RNG reseeded and its
//! clock set before anything random is drawn, a fresh machine-id, its disk
//! formatted (when blank) and joined into its root, its address. No kernel
//! boots on the way.

use super::layout::vsock_path;
use super::run_error::{io, RunError};
use super::runner::{self, Boot};
use super::workspace::WorkspaceRecord;
use paddock_agent_client::{AgentClient, ClientError};
use paddock_proto::{ProvisionNet, ReadyInfo, PROTOCOL_VERSION};
use std::io::Seek;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long a restored VM's agent may take to answer.
pub(crate) const RESTORED_WAIT: Duration = Duration::from_secs(300);

/// Asks the agent of a just-restored VM to take `op`, for as long as its
/// VMM runs and `RESTORED_WAIT` allows. There is no readiness report after
/// a restore (the agent was ready when its snapshot was taken): until the
/// VMM listens, connecting fails, and that is retried; so is any failure
/// when `idempotent` (a `Renew` may be sent again; a `Provision`, which
/// may have reached the agent when an answer is lost, may not).
pub(crate) fn wait_restored_agent(
    ws: &WorkspaceRecord,
    started: Instant,
    console: &Path,
    idempotent: bool,
    op: impl Fn(&AgentClient) -> Result<(), ClientError>,
) -> Result<AgentClient, RunError> {
    // A Provision formats the workspace's disk before it answers: as long
    // as a booting workspace may take to be ready.
    let answer_within = if idempotent {
        Duration::from_secs(30)
    } else {
        Duration::from_secs(240)
    };
    let client = AgentClient::new(vsock_path(&ws.id)).with_timeout(answer_within);
    loop {
        let e = match op(&client) {
            Ok(()) => return Ok(client),
            // Nothing reached the agent: the VMM did not listen yet, or
            // its guest side did not take the connection yet.
            Err(e @ (ClientError::Connect { .. } | ClientError::VsockRefused { .. })) => e,
            Err(e) if idempotent => e,
            Err(e) => {
                return Err(RunError::NotReady(format!(
                    "its agent refused: {e}; console: {}",
                    super::boot_watch::console_tail(console, 8)
                )))
            }
        };
        if crate::workspaces::pid(&ws.id).is_none() {
            return Err(RunError::NotReady(format!(
                "its VMM ended while restoring: {e}; console: {}",
                super::boot_watch::console_tail(console, 8)
            )));
        }
        if started.elapsed() > RESTORED_WAIT {
            return Err(RunError::NotReady(format!(
                "its agent did not answer within {} s of the restore: {e}; console: {}",
                RESTORED_WAIT.as_secs(),
                super::boot_watch::console_tail(console, 8)
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Starts a restoring VMM and registers it; its pid, and when it started
/// (the restored agent's wait counts from there).
pub(crate) fn spawn_restored(
    ws: &WorkspaceRecord,
    cmd: &mut std::process::Command,
) -> Result<(u32, Instant), RunError> {
    let started = Instant::now();
    let child = cmd
        .spawn()
        .map_err(io("starting", Path::new(super::layout::VMM)))?;
    let pid = child.id();
    drop(child);
    crate::workspaces::add(&ws.id, pid);
    Ok((pid, started))
}

/// The size of the disk the VMM is given, in 512-byte sectors, as the
/// guest will see it (a dm-crypt mapping's, or the test peer's file's).
fn sectors(node: &Path) -> Result<u64, RunError> {
    let mut f = std::fs::File::open(node).map_err(io("opening", node))?;
    let len = f
        .seek(std::io::SeekFrom::End(0))
        .map_err(io("sizing", node))?;
    Ok(len / 512)
}

/// Starts `ws` from the template snapshot in `dir` and provisions it.
/// On failure what was started is left for the caller's `runner::stop`.
pub fn start(
    ws: &WorkspaceRecord,
    template_dev: &str,
    dir: &Path,
) -> Result<(u32, ReadyInfo), RunError> {
    let preparing = Instant::now();
    let p = runner::prepare(ws)?;
    let prepared_ms = preparing.elapsed().as_millis();
    let data_sectors = sectors(&p.node)?;
    let net = p.net.as_ref().and_then(|nic| {
        nic.slot.map(|slot| ProvisionNet {
            address: slot.guest().octets(),
            prefix: 30,
            gateway: slot.host().octets(),
            mac: nic.mac,
        })
    });
    let mut cmd = runner::vmm_command(ws, template_dev, &p, &Boot::Clone(dir))?;
    let (pid, started) = spawn_restored(ws, &mut cmd)?;
    let name = runner::hostname(ws);
    let client = wait_restored_agent(ws, started, &p.console, false, |c| {
        c.provision(&name, data_sectors, net)
    })?;
    let provisioned_ms = started.elapsed().as_millis();
    // Capped once provisioned, as a booted workspace once ready: until now
    // the guest ran only our agent and the template's mke2fs, and at full
    // speed (the cap's accounting on a box that is itself emulated can
    // hold a guest back far longer than it ran: Limits::apply).
    p.limits
        .cap_cpu(&p.cg)
        .map_err(|e| RunError::NotReady(format!("capping its CPU: {e}")))?;
    runner::trust_egress_ca(ws).map_err(RunError::NotReady)?;
    // Where a clone's time goes (the guest's own share, its disk's format
    // included, is on its console: "provisioned as ... in N ms").
    log::info!(
        "workspace {}: cloned: disk, cgroup and NIC {prepared_ms} ms, restore and provision {provisioned_ms} ms, egress CA {} ms",
        ws.id,
        started.elapsed().as_millis() - provisioned_ms
    );
    let health = client
        .health()
        .map_err(|e| RunError::NotReady(format!("its agent after provisioning: {e}")))?;
    Ok((
        pid,
        ReadyInfo {
            agent_version: health.agent_version,
            protocol: PROTOCOL_VERSION,
            uptime_ms: health.uptime_ms,
        },
    ))
}
