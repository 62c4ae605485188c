//! Pausing a workspace and resuming it: the host's side.
//!
//! A pause has the VMM stop its vCPUs and devices and write its snapshot
//! (vmm/src/snapshot/) into two dm-crypt mappings this module opens over
//! files in the workspace's directory, under the workspace's own disk key
//! with sector numbers far from its disk's (`dmcrypt::open_at`): a paused
//! workspace's memory holds its secrets, so it is never on the data
//! partition in the clear, and erasing the key (delete) makes it unreadable
//! with the disk. The VMM is given the open devices, never a path.
//!
//! A resume opens the same mappings as device nodes named as the VMM's
//! `--restore` expects, starts the VMM from them with the workspace's
//! disk, NIC, limits, jail and cgroup as at create, and waits for the
//! agent to answer a `Renew` that reseeds its RNG and sets its clock. The
//! VMM copies the memory's written chunks into fresh RAM
//! (`--restore-copy`) rather than mapping the device as a template's
//! clones would: the resumed VM's memory is then its cgroup's and the
//! memfds forensics knows, and nothing holds the paused state once it
//! runs, so the mappings and files go at once.

use super::layout::{control_path, key_name, paused_dir, paused_mappings, restore_dir};
use super::run_error::{io, RunError};
use super::runner::{self, Boot};
use super::workspace::WorkspaceRecord;
use log::warn;
use paddock_proto::vmm_control::VmmRequest;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The state file's room: the VMM's cap on a state file (MAX_STATE_LEN).
/// The file is sparse: only what the VMM writes takes space.
const STATE_BYTES: u64 = 16 << 20;
/// The cipher's first sector number for the state and the memory, in
/// 512-byte units: far above any disk (2^48 sectors is 128 PiB), so no
/// two of a workspace's files share a tweak under its one key.
const STATE_IV_OFFSET: u64 = 1 << 48;
const MEMORY_IV_OFFSET: u64 = 1 << 49;
/// Pausing parks vCPUs and devices within 10 s each (vmm/src/pause.rs).
const PAUSE_WAIT: Duration = Duration::from_secs(30);
/// Writing the memory through dm-crypt: a few seconds per GiB on real
/// hardware, far more under emulation.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(900);

fn files(id: &str) -> (PathBuf, PathBuf) {
    let dir = paused_dir(id);
    (dir.join("state.img"), dir.join("memory.img"))
}

/// Whether a paused state is kept for `id`.
pub fn has_paused_state(id: &str) -> bool {
    let (state, memory) = files(id);
    state.exists() && memory.exists()
}

/// Makes an empty, sparse file of `len` bytes only root reads.
fn sparse_file(path: &Path, len: u64) -> Result<(), RunError> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(io("creating", path))?;
    f.set_len(len).map_err(io("sizing", path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(io("chmod", path))
}

/// Opens the two mappings over the paused files; their device numbers.
fn open_mappings(ws: &WorkspaceRecord) -> Result<(u64, u64), RunError> {
    let store = paddock_keys::store()?;
    let (state, memory) = files(&ws.id);
    let [sm, mm] = paused_mappings(&ws.id);
    let key = key_name(&ws.id);
    let s = store.open_beside(&key, &sm, &state, STATE_IV_OFFSET)?;
    match store.open_beside(&key, &mm, &memory, MEMORY_IV_OFFSET) {
        Ok(m) => Ok((s, m)),
        Err(e) => {
            let _ = paddock_keys::dmcrypt::close(&sm);
            Err(e.into())
        }
    }
}

/// Removes the paused mappings if they are there (a failed pause or
/// resume, a stop); a VMM still mapping one is gone by now.
pub fn close_mappings(id: &str) {
    for m in paused_mappings(id) {
        if paddock_keys::dmcrypt::device_number(&m).is_some() {
            if let Err(e) = paddock_keys::dmcrypt::close(&m) {
                warn!("workspace {id}: closing {m}: {e}");
            }
        }
    }
    let _ = std::fs::remove_dir_all(restore_dir(id));
}

/// Removes a paused state that is not wanted after all (its record
/// changed under the pause): mappings and files.
pub fn discard(id: &str) {
    close_mappings(id);
    let _ = std::fs::remove_dir_all(paused_dir(id));
}

/// Pauses the running workspace's VM and writes it, encrypted, to its
/// paused files. The VM stays paused (its VMM still running) on success,
/// for the caller to stop; on failure it runs on and nothing is kept.
/// Returns the bytes the paused files take on the data partition.
pub fn pause(ws: &WorkspaceRecord) -> Result<u64, RunError> {
    if ws.unencrypted_disk {
        return Err(RunError::Paused(
            "a workspace with an unencrypted (test) disk has no key to keep its paused memory under"
                .into(),
        ));
    }
    let dir = paused_dir(&ws.id);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
    let written = write_paused(ws);
    close_mappings(&ws.id);
    match written {
        Ok(()) => Ok(super::space::stored_mib(&dir) << 20),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            Err(e)
        }
    }
}

fn write_paused(ws: &WorkspaceRecord) -> Result<(), RunError> {
    let (state_path, memory_path) = files(&ws.id);
    sparse_file(&state_path, STATE_BYTES)?;
    sparse_file(&memory_path, ws.memory_mib << 20)?;
    let (s, m) = open_mappings(ws)?;
    let state =
        paddock_keys::dmcrypt::open_device(s, true).map_err(paddock_keys::KeyError::from)?;
    let memory =
        paddock_keys::dmcrypt::open_device(m, true).map_err(paddock_keys::KeyError::from)?;
    let sock = control_path(&ws.id);
    // A pause that timed out may still complete: either way the VM is
    // resumed below if nothing was saved.
    let saved = super::vmm_client::request(&sock, &VmmRequest::Pause {}, &[], PAUSE_WAIT)
        .and_then(|()| {
            super::vmm_client::request(
                &sock,
                &VmmRequest::Snapshot {},
                &[state.as_fd(), memory.as_fd()],
                SNAPSHOT_WAIT,
            )
        })
        .and_then(|()| {
            // On the disk before the record says paused: a restart after this
            // finds the state whole.
            for (f, p) in [(&state, &state_path), (&memory, &memory_path)] {
                f.sync_all().map_err(io("flushing", p))?;
            }
            Ok(())
        });
    if let Err(e) = saved {
        if let Err(r) = super::vmm_client::request(&sock, &VmmRequest::Resume {}, &[], PAUSE_WAIT) {
            warn!("workspace {}: resuming after a failed snapshot: {r}", ws.id);
        }
        return Err(e);
    }
    Ok(())
}

/// Starts the paused workspace's VM from its paused files and waits for
/// its agent. On success the paused files are gone (the running VM holds
/// what it still needs of them); on failure everything started is stopped
/// and the paused files are kept for another try.
pub fn resume(ws: &WorkspaceRecord, template_dev: &str) -> Result<u32, RunError> {
    if !has_paused_state(&ws.id) {
        return Err(RunError::Paused(format!(
            "workspace {}: its paused state is missing from {}",
            ws.id,
            paused_dir(&ws.id).display()
        )));
    }
    let started = launch(ws, template_dev);
    match started {
        Ok(pid) => {
            // The VMM has closed the devices; should one still be open,
            // it goes when that ends.
            for m in paused_mappings(&ws.id) {
                if let Err(e) = paddock_keys::dmcrypt::remove_when_closed(&m) {
                    warn!("workspace {}: {m} stays until shutdown: {e}", ws.id);
                }
            }
            let _ = std::fs::remove_dir_all(restore_dir(&ws.id));
            let _ = std::fs::remove_dir_all(paused_dir(&ws.id));
            Ok(pid)
        }
        Err(e) => {
            runner::stop(&ws.id);
            close_mappings(&ws.id);
            Err(e)
        }
    }
}

fn launch(ws: &WorkspaceRecord, template_dev: &str) -> Result<u32, RunError> {
    let (s, m) = open_mappings(ws)?;
    let dir = restore_dir(&ws.id);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
    // The VMM reads both and writes neither (its memory is a private,
    // copy-on-write mapping).
    for (name, dev) in [(vmm_names::STATE, s), (vmm_names::MEMORY, m)] {
        runner::make_disk_node(&dir.join(name), dev, ws.uid, 0o400)?;
    }
    let p = runner::prepare(ws)?;
    // Capped before it runs: a restored guest runs its own code at once
    // (a booting one is capped once ready, to boot at full speed).
    p.limits
        .cap_cpu(&p.cg)
        .map_err(|e| RunError::NotReady(format!("capping its CPU: {e}")))?;
    let mut cmd = runner::vmm_command(ws, template_dev, &p, &Boot::Restore(&dir))?;
    let (pid, started) = super::cloning::spawn_restored(ws, &mut cmd)?;
    // Renew may be sent again: any failure is retried while the VMM runs.
    let name = runner::hostname(ws);
    super::cloning::wait_restored_agent(ws, started, &p.console, true, |c| c.resync(&name))?;
    Ok(pid)
}

/// The file names the VMM's `--restore` reads (vmm/src/restore.rs).
mod vmm_names {
    pub const STATE: &str = "state";
    pub const MEMORY: &str = "memory";
}
