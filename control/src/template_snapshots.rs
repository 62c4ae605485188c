//! Template snapshots: the VM of the template, booted once per shape
//! (vCPUs, memory, whether it has a NIC) to where its agent waits for
//! `Provision` (`paddock.provision=wait`), then paused and written to
//! `/data/templates/<shape>/`. A create of that shape restores it
//! (cloning.rs) instead of booting a kernel.
//!
//! What a snapshot holds is the template's and nobody's secret: no
//! workspace has run in it, its writable disk was an empty placeholder and
//! its NIC was never configured. Every clone's RNG is reseeded by its
//! `Provision` before anything random is drawn. The files are readable by
//! the VM group (each workspace's VMM runs as its own uid in that group)
//! and written by host-init alone. They are made again at each boot:
//! nothing from an earlier image (another kernel, agent or VMM) is ever
//! restored.
//!
//! The shapes: the API's default at boot; then any shape a workspace is
//! created with, after its first (booted) create, up to `MAX_SHAPES` (the
//! one unused longest makes room). One snapshot is built at a time, in
//! the background. A snapshot whose clones fail several times in a row is
//! dropped and built again later.

use super::layout::{cgroup_dir, jail_dir, run_dir, vsock_path, VM_GID, WS_UID_BASE};
use super::limits::Limits;
use super::run_error::{io, RunError};
use super::runner::{self, Boot, Nic, Prepared};
use super::workspace::WorkspaceRecord;
use log::{info, warn};
use paddock_agent_client::ReadyListener;
use paddock_proto::vmm_control::VmmRequest;
use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub const TEMPLATES_DIR: &str = "/data/templates";
/// The uid template VMs run as: below every workspace's (no slot, no
/// workspace's files) and apart from the demo's.
pub const TEMPLATE_UID: u32 = WS_UID_BASE - 2;
/// The template VM's NIC address: locally administered, and outside the
/// slots' range (`tap::guest_mac_bytes`), so no workspace ever has it.
const TEMPLATE_MAC: [u8; 6] = [0x02, 0x70, 0x64, 0xff, 0xff, 0xfe];
/// How many shapes are kept; each costs its guest's touched memory (tens
/// of MiB for an idle template) on the data partition.
const MAX_SHAPES: usize = 4;
const PAUSE_WAIT: Duration = Duration::from_secs(30);
const SNAPSHOT_WAIT: Duration = Duration::from_secs(600);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Shape {
    pub vcpus: u32,
    pub memory_mib: u64,
    pub nic: bool,
}

impl Shape {
    pub fn of(ws: &WorkspaceRecord) -> Shape {
        Shape {
            vcpus: ws.vcpus,
            memory_mib: ws.memory_mib,
            nic: ws.slot().is_some(),
        }
    }

    /// What a create that names no size gets, with its NIC.
    pub fn default_workspace() -> Shape {
        Shape {
            vcpus: paddock_api_types::workspace::DEFAULT_VCPUS,
            memory_mib: paddock_api_types::workspace::DEFAULT_MEMORY_MIB,
            nic: true,
        }
    }

    /// Its directory's name, and its VM's name while it runs.
    fn name(self) -> String {
        let nic = if self.nic { "-nic" } else { "" };
        format!(
            "{}{}x{}{nic}",
            crate::workspaces::INTERNAL_PREFIX,
            self.vcpus,
            self.memory_mib
        )
    }

    /// Its VM's tap: at most 15 bytes, like every interface name, and
    /// outside the workspaces' `pdk*`, which the firewall lets reach the
    /// resolver and the proxy.
    fn tap(self) -> String {
        format!("ptpl{}x{}", self.vcpus, self.memory_mib)
    }
}

enum State {
    Building,
    Ready(PathBuf),
    /// Not built, or dropped after failed clones (the reason was logged):
    /// creates of the shape boot until it is built again.
    Failed,
}

struct Entry {
    state: State,
    /// When `state` was set.
    since: Instant,
    /// When a create last found it (eviction picks the longest unused).
    used: Instant,
    /// Clones of it that failed in a row.
    failures: u32,
}

impl Entry {
    fn new(state: State) -> Entry {
        let now = Instant::now();
        Entry {
            state,
            since: now,
            used: now,
            failures: 0,
        }
    }
}

/// Clones that fail in a row before a snapshot is dropped: one failure
/// may be the workspace's (deleted while it started, its key store busy),
/// several in a row are the snapshot's.
const FAILURES_TO_DROP: u32 = 3;
/// How long a shape whose build or clones failed boots before it is
/// built again.
const RETRY_AFTER: Duration = Duration::from_secs(600);
/// How long a dropped snapshot's files stay: a clone that found it a
/// moment before opens them within milliseconds.
const REMOVE_AFTER: Duration = Duration::from_secs(60);

static SHAPES: Mutex<BTreeMap<Shape, Entry>> = Mutex::new(BTreeMap::new());
/// Set by the configuration (`template_snapshots: false`) and at shutdown:
/// none is built.
static DISABLED: AtomicBool = AtomicBool::new(false);
/// One build at a time: each is a whole guest booting on the box's CPUs.
static BUILDING: Mutex<()> = Mutex::new(());

fn shapes() -> MutexGuard<'static, BTreeMap<Shape, Entry>> {
    SHAPES.lock().unwrap_or_else(|e| e.into_inner())
}

/// The snapshot to clone a workspace of `shape` from, when one is built.
pub fn find(shape: Shape) -> Option<PathBuf> {
    let mut all = shapes();
    let e = all.get_mut(&shape)?;
    match &e.state {
        State::Ready(dir) => {
            e.used = Instant::now();
            Some(dir.clone())
        }
        _ => None,
    }
}

/// Removes a dropped snapshot's files once no clone can be about to open
/// them.
fn remove_later(dir: PathBuf) {
    let _ = std::thread::Builder::new()
        .name("template-remove".into())
        .spawn(move || {
            std::thread::sleep(REMOVE_AFTER);
            let _ = std::fs::remove_dir_all(dir);
        });
}

/// Makes room for one more shape: the one unused longest goes, unless it
/// is being built or is the default shape (built at every boot).
fn evict_for_one(all: &mut BTreeMap<Shape, Entry>) -> bool {
    if all.len() < MAX_SHAPES {
        return true;
    }
    let victim = all
        .iter()
        .filter(|(s, e)| **s != Shape::default_workspace() && !matches!(e.state, State::Building))
        .min_by_key(|(_, e)| e.used)
        .map(|(s, _)| *s);
    let Some(victim) = victim else {
        return false;
    };
    if let Some(Entry {
        state: State::Ready(dir),
        ..
    }) = all.remove(&victim)
    {
        info!(
            "template snapshot {}: dropped to make room for another shape",
            victim.name()
        );
        remove_later(dir);
    }
    true
}

/// Starts building `shape`'s snapshot in the background unless it is
/// built or being built, failed less than `RETRY_AFTER` ago, or no room
/// can be made for it.
pub fn request(shape: Shape, template_dev: &str) {
    if DISABLED.load(Ordering::SeqCst) {
        return;
    }
    {
        let mut all = shapes();
        match all.get(&shape) {
            Some(Entry {
                state: State::Building | State::Ready(_),
                ..
            }) => return,
            Some(e) if e.since.elapsed() < RETRY_AFTER => return,
            Some(_) => {}
            None => {
                if !evict_for_one(&mut all) {
                    return;
                }
            }
        }
        all.insert(shape, Entry::new(State::Building));
    }
    let template_dev = template_dev.to_string();
    let spawned = std::thread::Builder::new()
        .name("template-snapshot".into())
        .spawn(move || {
            let _one = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
            if DISABLED.load(Ordering::SeqCst) {
                shapes().remove(&shape);
                return;
            }
            let started = Instant::now();
            let state = match build(shape, &template_dev) {
                Ok(dir) => {
                    info!(
                        "template snapshot {} ready in {:.1} s ({} MiB on the data partition)",
                        shape.name(),
                        started.elapsed().as_secs_f64(),
                        super::space::stored_mib(&dir)
                    );
                    State::Ready(dir)
                }
                Err(e) => {
                    warn!(
                        "template snapshot {}: {e}; creates of its shape boot for now",
                        shape.name()
                    );
                    State::Failed
                }
            };
            shapes().insert(shape, Entry::new(state));
        });
    if let Err(e) = spawned {
        warn!(
            "template snapshot {}: starting its builder: {e}",
            shape.name()
        );
        shapes().insert(shape, Entry::new(State::Failed));
    }
}

/// No snapshot is built from now on (the configuration, or shutdown):
/// every workspace boots.
pub fn disable() {
    DISABLED.store(true, Ordering::SeqCst);
}

/// A clone of `shape` started: its run of failures ends.
pub fn clone_started(shape: Shape) {
    if let Some(e) = shapes().get_mut(&shape) {
        e.failures = 0;
    }
}

/// A clone of `shape` failed; after `FAILURES_TO_DROP` in a row its
/// snapshot is dropped, and its creates boot until it is built again.
pub fn clone_failed(shape: Shape) {
    let mut all = shapes();
    let Some(e) = all.get_mut(&shape) else {
        return;
    };
    e.failures += 1;
    if e.failures < FAILURES_TO_DROP {
        return;
    }
    warn!(
        "template snapshot {}: {} clones failed in a row; dropped, its creates boot for {} s",
        shape.name(),
        e.failures,
        RETRY_AFTER.as_secs()
    );
    let old = std::mem::replace(e, Entry::new(State::Failed));
    if let State::Ready(dir) = old.state {
        remove_later(dir);
    }
}

/// At boot, before any is built: what an earlier boot (perhaps another
/// image) left is removed.
pub fn clear() {
    let dir = Path::new(TEMPLATES_DIR);
    if dir.exists() {
        if let Err(e) = std::fs::remove_dir_all(dir) {
            warn!("removing the last boot's template snapshots: {e}");
        }
    }
}

fn owned(path: &Path, uid: u32, gid: u32, mode: u32) -> Result<(), RunError> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(io("chown", path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io("chmod", path))
}

fn new_file(path: &Path, len: u64) -> Result<std::fs::File, RunError> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(io("creating", path))?;
    f.set_len(len).map_err(io("sizing", path))?;
    Ok(f)
}

/// Boots the template as `shape` to its waiting agent and writes its
/// snapshot; the VM is gone when this returns, whatever happened.
fn build(shape: Shape, template_dev: &str) -> Result<PathBuf, RunError> {
    let name = shape.name();
    let root = Path::new(TEMPLATES_DIR);
    std::fs::create_dir_all(root).map_err(io("creating", root))?;
    owned(root, 0, VM_GID, 0o750)?;
    let dir = root.join(&name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
    owned(&dir, 0, VM_GID, 0o750)?;
    let result = boot_and_snapshot(shape, template_dev, &name, &dir);
    end_vm(&name);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result.map(|()| dir)
}

fn boot_and_snapshot(
    shape: Shape,
    template_dev: &str,
    name: &str,
    dir: &Path,
) -> Result<(), RunError> {
    // The writable disk the snapshot's guest knows: empty, so the guest
    // reads nothing of it that a clone's own disk could contradict.
    let placeholder = dir.join("placeholder.img");
    drop(new_file(&placeholder, 0)?);
    owned(&placeholder, TEMPLATE_UID, TEMPLATE_UID, 0o600)?;
    let ws = WorkspaceRecord::internal(name, TEMPLATE_UID, shape.vcpus, shape.memory_mib, 0);
    let cg = cgroup_dir(name);
    std::fs::create_dir_all(&cg).map_err(io("creating", &cg))?;
    let limits = Limits::for_workspace(&ws);
    limits.apply(&cg, &placeholder, None)?;
    background(&cg, name);
    let run = run_dir(name);
    let _ = std::fs::remove_dir_all(&run);
    std::fs::create_dir_all(&run).map_err(io("creating", &run))?;
    owned(&run, TEMPLATE_UID, TEMPLATE_UID, 0o700)?;
    let console = dir.join("console.log");
    let out = super::console::pipe_into(&console, name).map_err(io("creating", &console))?;
    // In the directory every clone's jail is given: the template's boot
    // log is host-init's to read.
    owned(&console, 0, 0, 0o600)?;
    // A NIC as its clones will have; its tap is never up and has no
    // address, and the waiting guest never configures its side.
    let net = if shape.nic {
        let tap =
            paddock_net::tap::open_named(&shape.tap()).map_err(|e| RunError::Net(e.to_string()))?;
        Some(Nic {
            tap,
            mac: TEMPLATE_MAC,
            slot: None,
        })
    } else {
        None
    };
    let p = Prepared {
        node: placeholder,
        limits,
        cg,
        run,
        console,
        out,
        net,
    };
    let uds = vsock_path(name);
    let ready = ReadyListener::bind(&uds).map_err(|e| RunError::NotReady(e.to_string()))?;
    let ready_path = paddock_agent_client::ready_socket_path(&uds);
    owned(&ready_path, 0, 0, 0o666)?;
    let mut cmd = runner::vmm_command(&ws, template_dev, &p, &Boot::Template)?;
    let child = cmd
        .spawn()
        .map_err(io("starting", Path::new(super::layout::VMM)))?;
    crate::workspaces::add(name, child.id());
    drop(child);
    match super::boot_watch::wait_ready(&ready, name, &p.console) {
        super::boot_watch::Boot::Ready(_) => {}
        super::boot_watch::Boot::Stalled => {
            return Err(RunError::NotReady(format!(
                "its VM made no progress for {} s",
                super::boot_watch::BOOT_STALL.as_secs()
            )))
        }
        super::boot_watch::Boot::Failed(why) => {
            return Err(RunError::NotReady(format!(
                "{why}; console: {}",
                super::boot_watch::console_tail(&p.console, 8)
            )))
        }
    }
    let state_path = dir.join("state");
    let memory_path = dir.join("memory");
    let state = new_file(&state_path, 0)?;
    let memory = new_file(&memory_path, shape.memory_mib << 20)?;
    let sock = super::layout::control_path(name);
    super::vmm_client::request(&sock, &VmmRequest::Pause {}, &[], PAUSE_WAIT)?;
    super::vmm_client::request(
        &sock,
        &VmmRequest::Snapshot {},
        &[state.as_fd(), memory.as_fd()],
        SNAPSHOT_WAIT,
    )?;
    for (f, path) in [(&state, &state_path), (&memory, &memory_path)] {
        f.sync_all().map_err(io("flushing", path))?;
        owned(path, 0, VM_GID, 0o640)?;
    }
    Ok(())
}

/// A build is an optimisation nobody waits for: its VM runs in the idle
/// class (cgroup v2 `cpu.idle`), only on CPU time no workspace, and not
/// host-init or the API, wants. On a busy box it may then make no
/// progress for as long as the box stays busy; the boot watch calls that a
/// stall, the build fails, and it is tried again later (`RETRY_AFTER`).
fn background(cg: &Path, name: &str) {
    if let Err(e) = std::fs::write(cg.join("cpu.idle"), "1") {
        warn!("template snapshot {name}: its VM runs at normal priority (cpu.idle: {e})");
    }
}

/// Ends the template's VM and removes what it ran in.
fn end_vm(name: &str) {
    crate::workspaces::kill(name);
    let _ = crate::workspaces::wait_ended(name, Some(Duration::from_secs(10)));
    let cg = cgroup_dir(name);
    if cg.exists() {
        let _ = std::fs::write(cg.join("cgroup.kill"), "1");
        for _ in 0..100 {
            if std::fs::remove_dir(&cg).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let _ = std::fs::remove_dir_all(run_dir(name));
    let _ = std::fs::remove_dir(jail_dir(name));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(memory_mib: u64) -> Shape {
        Shape {
            vcpus: 1,
            memory_mib,
            nic: true,
        }
    }

    #[test]
    fn room_is_made_by_the_shape_unused_longest_never_the_default_or_a_build() {
        let mut all = BTreeMap::new();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let entry = |state, used| Entry {
            state,
            since: t0,
            used,
            failures: 0,
        };
        // The default, unused longest of all, and a build, older still.
        all.insert(Shape::default_workspace(), entry(State::Failed, at(0)));
        all.insert(shape(100), entry(State::Building, at(1)));
        all.insert(shape(200), entry(State::Failed, at(5)));
        all.insert(shape(300), entry(State::Failed, at(3)));
        assert_eq!(all.len(), MAX_SHAPES);
        assert!(evict_for_one(&mut all));
        assert!(
            !all.contains_key(&shape(300)),
            "the one unused longest goes"
        );
        assert!(all.contains_key(&Shape::default_workspace()));
        assert!(all.contains_key(&shape(100)));
        // Nothing but the default and builds: no room.
        let mut all = BTreeMap::new();
        all.insert(Shape::default_workspace(), entry(State::Failed, at(0)));
        for m in [100, 200, 300] {
            all.insert(shape(m), entry(State::Building, at(m)));
        }
        assert_eq!(all.len(), MAX_SHAPES);
        assert!(!evict_for_one(&mut all));
    }

    #[test]
    fn a_snapshot_is_dropped_only_after_failed_clones_in_a_row() {
        let s = shape(777);
        shapes().insert(s, Entry::new(State::Ready(PathBuf::from("/nonexistent/t"))));
        for _ in 1..FAILURES_TO_DROP {
            clone_failed(s);
        }
        clone_started(s);
        for _ in 1..FAILURES_TO_DROP {
            clone_failed(s);
        }
        assert!(find(s).is_some(), "a success in between resets the count");
        clone_failed(s);
        assert!(find(s).is_none(), "dropped");
        assert!(matches!(
            shapes().get(&s).map(|e| &e.state),
            Some(State::Failed)
        ));
        shapes().remove(&s);
    }

    #[test]
    fn shapes_have_names_and_taps_of_their_own() {
        let a = Shape {
            vcpus: 1,
            memory_mib: 512,
            nic: true,
        };
        let b = Shape { nic: false, ..a };
        assert_eq!(a.name(), "template-1x512-nic");
        assert_ne!(a.name(), b.name());
        let big = Shape {
            vcpus: 64,
            memory_mib: 1 << 20,
            nic: true,
        };
        assert!(big.tap().len() <= 15, "{}", big.tap());
        assert!(!a.tap().starts_with("pdk"), "a workspace's tap name");
        // No workspace's MAC is the template VM's.
        let last =
            paddock_net::firewall::Slot::new(paddock_net::addressing::MAX_SLOTS - 1).expect("slot");
        assert_ne!(paddock_net::tap::guest_mac_bytes(last), TEMPLATE_MAC);
    }
}
