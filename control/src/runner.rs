//! Running a workspace: its disk file, its cgroup with limits derived from
//! the request, and its paddock-vmm process under a uid of its own, moved
//! into the cgroup before it executes anything.

use super::boot_watch;
use super::layout::*;
use super::limits::Limits;
use super::run_error::{io, write, RunError};
use super::workspace::WorkspaceRecord;
use log::warn;
use paddock_agent_client::ReadyListener;
use paddock_net::policy::CheckEgress as _;
use paddock_proto::vmm_control::VmmRequest;
use paddock_proto::ReadyInfo;
use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Its firewall entry as the record says.
pub fn ws_net(
    ws: &WorkspaceRecord,
    slot: paddock_net::firewall::Slot,
) -> Result<paddock_net::firewall::WsNet, RunError> {
    let egress = ws
        .egress
        .check()
        .map_err(|p| RunError::Net(format!("its egress policy: {}", p.join("; "))))?;
    Ok(paddock_net::firewall::WsNet {
        id: ws.id.clone(),
        slot,
        egress,
        connections_per_s: Limits::for_workspace(ws).net_connections_per_s,
        published: ws.published.iter().map(|p| (p.port, p.host_port)).collect(),
    })
}

/// Changes the running VMM's rate limit on a device of the workspace:
/// its disk ("data") or its NIC ("net").
pub fn set_rate(
    id: &str,
    device: &str,
    bytes_per_s: u64,
    ops_per_s: Option<u64>,
) -> Result<(), RunError> {
    let req = VmmRequest::SetRate {
        device: device.to_string(),
        bytes_per_s: Some(bytes_per_s),
        ops_per_s,
    };
    super::vmm_client::request(&control_path(id), &req, &[], Duration::from_secs(5))
}

/// Makes /dev/kvm and the template partition usable by workspace uids
/// (through VM_GID) and enables the cgroup controllers; once per boot.
pub fn prepare_host(template_dev: &str) -> Result<(), RunError> {
    for (dev, mode) in [("/dev/kvm", 0o660), (template_dev, 0o640)] {
        let p = Path::new(dev);
        std::os::unix::fs::chown(p, Some(0), Some(VM_GID)).map_err(io("chown", p))?;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
            .map_err(io("chmod", p))?;
    }
    let root = Path::new(CGROUP_ROOT);
    std::fs::create_dir_all(root).map_err(io("creating", root))?;
    write(
        Path::new("/sys/fs/cgroup/cgroup.subtree_control"),
        "+cpu +memory +pids +io",
    )?;
    write(
        &root.join("cgroup.subtree_control"),
        "+cpu +memory +pids +io",
    )?;
    Ok(())
}

/// What a workspace's VMM is started with: its decrypted disk, cgroup,
/// run directory, console and NIC, made ready by `prepare`.
pub(crate) struct Prepared {
    pub node: std::path::PathBuf,
    pub cg: std::path::PathBuf,
    pub limits: Limits,
    pub run: std::path::PathBuf,
    pub console: std::path::PathBuf,
    pub out: std::os::fd::OwnedFd,
    pub net: Option<Nic>,
}

/// A VM's NIC: the tap its VMM is handed and the address the guest is
/// given; a workspace's addresses are its slot's, a template's VM has none.
pub(crate) struct Nic {
    pub tap: std::os::fd::OwnedFd,
    pub mac: [u8; 6],
    pub slot: Option<paddock_net::firewall::Slot>,
}

/// How the VM begins.
pub(crate) enum Boot<'a> {
    /// Booting the kernel as the workspace.
    Cold,
    /// From a paused workspace's own snapshot (then `Renew`).
    Restore(&'a Path),
    /// Booting the kernel to wait for `Provision`: a template snapshot's VM
    /// (template_snapshots.rs).
    Template,
    /// From a template snapshot, as a new workspace (then `Provision`).
    Clone(&'a Path),
}

/// Creates (or opens) the workspace's disk, cgroup and run directory, its
/// console and its NIC: everything its VMM needs but the VMM.
pub(crate) fn prepare(ws: &WorkspaceRecord) -> Result<Prepared, RunError> {
    let dir = data_dir(&ws.id);
    std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
    let disk = dir.join("disk.img");
    {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&disk)
            .map_err(io("creating", &disk))?;
        f.set_len(ws.disk_mib << 20).map_err(io("sizing", &disk))?;
    }
    std::fs::set_permissions(&disk, std::fs::Permissions::from_mode(0o600))
        .map_err(io("chmod", &disk))?;
    let (node, mapped) = if ws.unencrypted_disk {
        // A test image's benchmark peer: the VMM gets the file itself.
        std::os::unix::fs::chown(&disk, Some(ws.uid), Some(ws.uid)).map_err(io("chown", &disk))?;
        (disk.clone(), None)
    } else {
        // The file holds ciphertext only; nobody but host-init opens it.
        let dev =
            paddock_keys::store()?.open_disk(&key_name(&ws.id), &mapping_name(&ws.id), &disk)?;
        let node = disk_node(&ws.id);
        make_disk_node(&node, dev, ws.uid, 0o600)?;
        (node, Some(dev))
    };

    let cg = cgroup_dir(&ws.id);
    std::fs::create_dir_all(&cg).map_err(io("creating", &cg))?;
    let limits = Limits::for_workspace(ws);
    limits.apply(&cg, &dir, mapped)?;

    let run = run_dir(&ws.id);
    let _ = std::fs::remove_dir_all(&run);
    std::fs::create_dir_all(&run).map_err(io("creating", &run))?;
    std::os::unix::fs::chown(&run, Some(ws.uid), Some(ws.uid)).map_err(io("chown", &run))?;
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700))
        .map_err(io("chmod", &run))?;
    let console = dir.join("console.log");
    let out = super::console::pipe_into(&console, &ws.id).map_err(io("creating", &console))?;
    // Its NIC: a tap on the host, fenced by the firewall before the guest
    // can send a frame; the VMM gets only the open descriptor.
    let net = match ws.slot() {
        Some(slot) => {
            paddock_net::firewall::set(ws_net(ws, slot)?)
                .map_err(|e| RunError::Net(e.to_string()))?;
            let tap = paddock_net::tap::create(slot).map_err(|e| RunError::Net(e.to_string()))?;
            Some(Nic {
                tap,
                mac: paddock_net::tap::guest_mac_bytes(slot),
                slot: Some(slot),
            })
        }
        None => None,
    };
    Ok(Prepared {
        node,
        cg,
        limits,
        run,
        console,
        out,
        net,
    })
}

/// The command that starts the workspace's VMM in its jail and cgroup.
pub(crate) fn vmm_command(
    ws: &WorkspaceRecord,
    template_dev: &str,
    p: &Prepared,
    boot: &Boot<'_>,
) -> Result<Command, RunError> {
    let procs = CString::new(p.cg.join("cgroup.procs").to_string_lossy().as_bytes())
        .map_err(|_| RunError::NotReady("cgroup path".into()))?;
    let jail_root = jail_dir(&ws.id);
    let _ = std::fs::remove_dir_all(&jail_root);
    std::fs::create_dir_all(&jail_root).map_err(io("creating", &jail_root))?;
    let host_init = std::env::current_exe().map_err(io("finding", Path::new("/proc/self/exe")))?;
    let mut cmd = Command::new(host_init);
    crate::process::reset_signals(&mut cmd);
    // The VMM runs in `paddock-init jail` (see jail.rs): its own namespaces,
    // a root holding only the paths bound here, the workspace's uid.
    let uid = ws.uid.to_string();
    cmd.arg("jail")
        .args(["--uid", &uid, "--gid", &uid, "--group", &VM_GID.to_string()])
        .arg("--root")
        .arg(&jail_root);
    if let Some(nic) = &p.net {
        cmd.arg("--keep-fd").arg(nic.tap.as_raw_fd().to_string());
    }
    let mut binds = vec![
        (Path::new(VMM), false),
        (Path::new(template_dev), false),
        (Path::new("/dev/kvm"), true),
        (p.node.as_path(), true),
        (p.run.as_path(), true),
    ];
    match boot {
        Boot::Cold | Boot::Template => {
            binds.push((Path::new(GUEST_KERNEL), false));
            binds.push((Path::new(AGENT_INITRAMFS), false));
        }
        Boot::Restore(dir) | Boot::Clone(dir) => binds.push((dir, false)),
    }
    for (path, writable) in binds {
        let mut bind = path.as_os_str().to_owned();
        if writable {
            bind.push(":rw");
        }
        cmd.arg("--bind").arg(bind);
    }
    cmd.args(["--", VMM]);
    match boot {
        Boot::Cold | Boot::Template => {
            cmd.args(["--kernel", GUEST_KERNEL, "--initramfs", AGENT_INITRAMFS]);
        }
        // Its memory is copied in: nothing stays mapped from the snapshot
        // (a paused state is then let go at once), and its RAM is the
        // memfds a boot makes, which forensics reads (pausing.rs).
        Boot::Restore(dir) | Boot::Clone(dir) => {
            cmd.arg("--restore").arg(dir).arg("--restore-copy");
        }
    }
    cmd.arg("--vcpus")
        .arg(ws.vcpus.to_string())
        .arg("--memory-mib")
        .arg(ws.memory_mib.to_string())
        .arg("--drive")
        .arg(format!("id=template,path={template_dev},ro"))
        .arg("--drive")
        .arg(format!(
            "id=data,path={},bps={},iops={}",
            p.node.display(),
            p.limits.disk_bps,
            p.limits.disk_iops
        ))
        .arg("--vsock")
        .arg(format!("cid=3,uds={}", vsock_path(&ws.id).display()))
        .arg("--control")
        .arg(control_path(&ws.id))
        .args(["--console", "stdout"]);
    let mut guest_args = format!("paddock.hostname={}", hostname(ws));
    if let Some(nic) = &p.net {
        cmd.arg("--net").arg(format!(
            "fd=3,mac={},bps={}",
            paddock_net::tap::format_mac(nic.mac),
            p.limits.net_bps
        ));
        if let Some(slot) = nic.slot {
            guest_args.push_str(&format!(" paddock.net={}/30,{}", slot.guest(), slot.host()));
        }
    }
    // A restored guest keeps the command line it booted with.
    match boot {
        Boot::Cold => {
            cmd.arg("--cmdline").arg(guest_args);
        }
        Boot::Template => {
            cmd.args(["--cmdline", "paddock.provision=wait"]);
        }
        Boot::Restore(_) | Boot::Clone(_) => {}
    }
    let err = p.out.try_clone().map_err(io("opening", &p.console))?;
    let out = p.out.try_clone().map_err(io("opening", &p.console))?;
    let tap_fd = p.net.as_ref().map(|n| n.tap.as_raw_fd());
    cmd.env_clear().stdin(Stdio::null()).stdout(out).stderr(err);
    // SAFETY: between fork and exec; only async-signal-safe calls (open,
    // write, close).
    unsafe {
        cmd.pre_exec(move || {
            // Into the workspace's cgroup before anything of it runs; the
            // jail drops privileges itself once it is built.
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 || libc::write(fd, b"0\n".as_ptr().cast(), 2) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(fd);
            // The tap goes on to the jail (which makes it the VMM's fd 3).
            if let Some(t) = tap_fd {
                if libc::fcntl(t, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    Ok(cmd)
}

/// The guest's hostname: its id, as a hostname may be written.
pub(crate) fn hostname(ws: &WorkspaceRecord) -> String {
    ws.id.replace('_', "-")
}

/// A started workspace: its VMM's pid, what its agent reported, and how
/// it started.
pub struct Started {
    pub pid: u32,
    pub ready: ReadyInfo,
    /// Restored from its shape's template snapshot, rather than booted.
    pub cloned: bool,
}

/// Creates the workspace's disk, cgroup and run directory and starts its
/// VMM: as a clone of its shape's template snapshot when there is one
/// (cloning.rs), else by booting its kernel. Returns once its agent
/// answers. A clone that fails is not booted again under the same id
/// (its disk may hold half a format, its secrets were cleared with it):
/// the create fails like a boot that fails, and the snapshot is dropped
/// after a few failures in a row (template_snapshots.rs).
pub fn start(ws: &WorkspaceRecord, template_dev: &str) -> Result<Started, RunError> {
    use super::template_snapshots as snapshots;
    let shape = snapshots::Shape::of(ws);
    if let Some(dir) = snapshots::find(shape) {
        return match super::cloning::start(ws, template_dev, &dir) {
            Ok((pid, ready)) => {
                snapshots::clone_started(shape);
                Ok(Started {
                    pid,
                    ready,
                    cloned: true,
                })
            }
            Err(e) => {
                warn!(
                    "workspace {}: its clone of the template snapshot did not start: {e}",
                    ws.id
                );
                snapshots::clone_failed(shape);
                stop(&ws.id);
                Err(RunError::NotReady(format!(
                    "its clone of the template snapshot did not start: {e}"
                )))
            }
        };
    }
    let (pid, ready) = start_cold(ws, template_dev)?;
    // Its shape's next creates clone a snapshot, once one is built. Not
    // for host-init's own VMs (the demo has no NIC): workspaces only.
    if shape.nic {
        snapshots::request(shape, template_dev);
    }
    Ok(Started {
        pid,
        ready,
        cloned: false,
    })
}

/// Boots the workspace's kernel and waits for the agent's readiness.
fn start_cold(ws: &WorkspaceRecord, template_dev: &str) -> Result<(u32, ReadyInfo), RunError> {
    let _watch = super::boot_watch::SlowStart::watch(&ws.id);
    let p = prepare(ws)?;
    let uds = vsock_path(&ws.id);
    let ready = ReadyListener::bind(&uds).map_err(|e| RunError::NotReady(e.to_string()))?;
    let ready_path = paddock_agent_client::ready_socket_path(&uds);
    std::fs::set_permissions(&ready_path, std::fs::Permissions::from_mode(0o666))
        .map_err(io("chmod", &ready_path))?;
    let mut cmd = vmm_command(ws, template_dev, &p, &Boot::Cold)?;
    let (cg, console, limits) = (&p.cg, &p.console, &p.limits);
    // A guest that stalls before its agent runs has touched nothing of the
    // workspace yet (the agent is its first program): its VM is started
    // again, once. A VM that prints nothing and uses no CPU for a minute is
    // stuck, not slow; a real hang of ours still fails after the retry.
    let mut restarted = false;
    loop {
        let child = cmd.spawn().map_err(io("starting", Path::new(VMM)))?;
        let pid = child.id();
        drop(child);
        crate::workspaces::add(&ws.id, pid);
        let why = match boot_watch::wait_ready(&ready, &ws.id, console) {
            boot_watch::Boot::Ready(info) => match limits
                .cap_cpu(cg)
                .map_err(|e| format!("capping its CPU: {e}"))
                .and_then(|()| trust_egress_ca(ws))
            {
                Ok(()) => return Ok((pid, info)),
                Err(why) => why,
            },
            boot_watch::Boot::Stalled if !restarted => {
                warn!(
                    "workspace {}: its VM made no progress for {} s before its agent started ({}; {}; console ends: {}); starting its VM again",
                    ws.id,
                    boot_watch::BOOT_STALL.as_secs(),
                    boot_watch::report(&ws.id),
                    boot_watch::box_report(),
                    boot_watch::console_tail(console, 1)
                );
                crate::workspaces::kill(&ws.id);
                let _ = crate::workspaces::wait_ended(&ws.id, Some(Duration::from_secs(10)));
                // The VMM's own socket; the readiness socket stays bound.
                let _ = std::fs::remove_file(&uds);
                restarted = true;
                continue;
            }
            boot_watch::Boot::Stalled => format!(
                "its VM made no progress for {} s, twice ({})",
                boot_watch::BOOT_STALL.as_secs(),
                boot_watch::report(&ws.id)
            ),
            boot_watch::Boot::Failed(why) => why,
        };
        // The end of the guest's console says why, far more often than not.
        let why = format!("{why}; console: {}", boot_watch::console_tail(console, 8));
        warn!(
            "workspace {}: did not start: {why}; {}",
            ws.id,
            boot_watch::box_report()
        );
        stop(&ws.id);
        return Err(RunError::NotReady(why));
    }
}

/// Has the workspace's agent install the egress CA (the secret broker's)
/// before the workspace is handed over, so every command trusts it. A box
/// whose key store cannot give the CA starts workspaces without secrets
/// all the same.
pub(crate) fn trust_egress_ca(ws: &WorkspaceRecord) -> Result<(), String> {
    let ca = match super::egress_ca::get() {
        Ok(ca) => ca,
        Err(e) if ws.secrets.is_empty() => {
            warn!("workspace {}: no egress CA to install ({e}); brokered secrets cannot be added to it", ws.id);
            return Ok(());
        }
        Err(e) => return Err(format!("the egress CA: {e}")),
    };
    paddock_agent_client::AgentClient::new(vsock_path(&ws.id))
        .with_timeout(Duration::from_secs(60))
        .trust_ca(&ca.cert_pem)
        .map_err(|e| format!("installing the egress CA in the guest: {e}"))
}

/// Kills the workspace's VMM (if running) and waits for it.
pub fn stop(id: &str) {
    if super::forensics::is_frozen(&cgroup_dir(id)) {
        // Frozen (quarantined): no process of it can run to end the VMM
        // gently, and thawing it would let the guest run again.
        crate::workspaces::kill_now(id);
    } else {
        crate::workspaces::kill(id);
    }
    let _ = crate::workspaces::wait_ended(id, Some(Duration::from_secs(10)));
    // Anything of it still alive (the VMM of a jail that was killed outright
    // dies by its parent-death signal, a moment later) is killed here, and
    // stop returns only once its cgroup is empty: their mounts of the data
    // partition go with them.
    let cg = cgroup_dir(id);
    if cg.exists() {
        let _ = std::fs::write(cg.join("cgroup.kill"), "1");
        if !wait_empty(&cg, Duration::from_secs(10)) {
            warn!("workspace {id}: processes of it remain after 10 s");
        }
    }
    // Its tap went with the VMM (the last descriptor); its rules and
    // brokered secrets go now.
    crate::host::get().clear_secrets(id);
    if let Err(e) = paddock_net::firewall::remove(id) {
        warn!("workspace {id}: removing its firewall rules: {e}");
    }
    let _ = std::fs::remove_dir_all(run_dir(id));
    let _ = std::fs::remove_dir(jail_dir(id));
    let _ = std::fs::remove_dir(&cg);
    // Nothing of it runs any more, so nothing holds its decrypted disk or
    // what it was restored from.
    super::pausing::close_mappings(id);
    let _ = std::fs::remove_file(disk_node(id));
    if let Err(e) = paddock_keys::dmcrypt::close(&mapping_name(id)) {
        warn!("workspace {id}: closing its encrypted disk: {e}");
    }
}

/// Opens a stopped workspace's disk read-only with its key and says
/// whether the plaintext holds an ext4 superblock, and the mapping's table
/// as the kernel reports it (the test image's probe).
#[cfg(feature = "test-probes")]
pub fn probe_disk(id: &str, disk: &Path) -> Result<(bool, String), RunError> {
    use std::os::unix::fs::FileExt;
    let mapping = format!("paddock-probe-{id}");
    let f = paddock_keys::store()?.open_read_only(&key_name(id), &mapping, disk)?;
    // What `dmsetup table` would show for it: the key's name, not the key.
    let table = paddock_keys::dmcrypt::table(&mapping).unwrap_or_else(|e| e.to_string());
    let mut magic = [0u8; 2];
    f.read_exact_at(&mut magic, 1024 + 0x38)
        .map_err(io("reading", disk))?;
    Ok((magic == [0x53, 0xef], table))
}

/// A block device node for a decrypted device (its disk, a paused state
/// to restore), owned by the workspace's uid (its VMM opens it inside the
/// jail, where it is bound).
pub(crate) fn make_disk_node(node: &Path, dev: u64, uid: u32, mode: u32) -> Result<(), RunError> {
    if let Some(dir) = node.parent() {
        std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    }
    let _ = std::fs::remove_file(node);
    nix::sys::stat::mknod(
        node,
        nix::sys::stat::SFlag::S_IFBLK,
        nix::sys::stat::Mode::from_bits_truncate(mode),
        dev,
    )
    .map_err(|e| io("making the device node", node)(std::io::Error::from(e)))?;
    std::os::unix::fs::chown(node, Some(uid), Some(uid)).map_err(io("chown", node))
}

/// Waits until a cgroup holds no process (cgroup.events: populated 0).
fn wait_empty(cg: &Path, timeout: Duration) -> bool {
    let until = std::time::Instant::now() + timeout;
    loop {
        let events = std::fs::read_to_string(cg.join("cgroup.events")).unwrap_or_default();
        if events.is_empty() || events.lines().any(|l| l.trim() == "populated 0") {
            return true;
        }
        if std::time::Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stops it and removes everything it had on disk, its key first: once
/// the key is erased (the key store's epoch rotated), no copy of the disk
/// can be read, so the files that follow are only space to free. When the
/// key cannot be erased (keys locked) nothing is removed.
pub fn destroy(id: &str) -> Result<(), RunError> {
    stop(id);
    crate::host::get().forget_workspace(id);
    crate::host::get().clear_secrets(id);
    let store = paddock_keys::store()?;
    if store.has_key(&key_name(id)) {
        let ballast = Path::new(super::space::BALLAST);
        super::space::with_ballast(ballast, paddock_keys::KeyError::is_out_of_space, || {
            store.erase(&key_name(id))
        })?;
    }
    let dir = data_dir(id);
    super::console::scrub(&dir.join("console.log"));
    let removed = match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(RunError::Io {
            what: "removing",
            path: dir,
            source: e,
        }),
    };
    // What the disk freed takes the ballast's place again, if it was used.
    let _ = super::space::keep_ballast(
        Path::new(super::space::BALLAST),
        super::space::BALLAST_BYTES,
    );
    removed
}
