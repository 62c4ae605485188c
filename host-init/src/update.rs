//! Installing an update (docs/updates.md): the bundle is staged on the
//! data partition, verified whole (signature, version, every part's hash:
//! paddock-update) before anything is written, then written to the slot
//! this boot does not run, in an order a power cut cannot turn into an
//! unbootable box:
//!
//! 1. that slot's old UKI is removed (the boot manager now has only the
//!    running slot to boot);
//! 2. the template goes into that slot's partition and is read back;
//! 3. the UKI goes onto the ESP under a name the boot manager ignores, its
//!    PCR signature beside the others, and is read back;
//! 4. the UKI is renamed to `paddock-<slot>+3.efi`: from here on the next
//!    boot tries it (three times), and falls back to the running slot.
//!
//! A cut before 4 boots the running slot as before; after 4, the new one.

use crate::control::host::{UpdateDone, UpdateRefusal};
use crate::shutdown;
use crate::{error, info, warn};
use paddock_api_types::{UpdateState, UpdateStatus};
use paddock_image::slots::{Slot, UkiName, TRIES, UKI_DIR};
use paddock_update::{PartName, Verified};
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The largest bundle taken (a UKI and a template, with room).
pub const MAX_BUNDLE: u64 = 4 << 30;
/// Room left on the data partition after staging a bundle.
const KEEP_FREE: u64 = 256 << 20;

/// What the boot found that an update needs.
pub struct Context {
    pub booted: crate::slot::Booted,
    pub running_version: String,
    pub esp_dev: Option<String>,
    /// The other slot's template partition and its size.
    pub other_template: Option<(String, u64)>,
}

/// One update at a time: staged (its upload under way), then written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Idle,
    /// A file was handed out at this time; a stage left this long (its
    /// API process gone before it said "apply" or "abandon") is replaced.
    Staged(std::time::Instant),
    Writing,
}

/// How long a staged upload holds the way before another may take it.
const STAGE_LEASE: std::time::Duration = std::time::Duration::from_secs(1800);

struct State {
    phase: Phase,
    status: Option<UpdateStatus>,
}

static CONTEXT: Mutex<Option<Context>> = Mutex::new(None);
static STATE: Mutex<State> = Mutex::new(State {
    phase: Phase::Idle,
    status: None,
});

fn state() -> std::sync::MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn init(ctx: Context) {
    *CONTEXT.lock().unwrap_or_else(|e| e.into_inner()) = Some(ctx);
}

/// This boot was blessed: the slot listings say so from now on.
pub fn set_booted(booted: crate::slot::Booted) {
    if let Some(c) = CONTEXT.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        c.booted = booted;
    }
}

/// The slots read again from the ESP, as this boot now is.
fn refresh_slots(esp_dev: &str) {
    let booted = CONTEXT
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .map(|c| c.booted.clone())
        .unwrap_or_default();
    crate::slot::refresh(esp_dev, &booted);
}

fn staging() -> PathBuf {
    Path::new(crate::storage::DATA_MOUNT).join("state/update/bundle")
}

pub fn status() -> Option<UpdateStatus> {
    state().status.clone()
}

/// A file for the bundle: refused while another update is staged or
/// written, when it is bigger than `MAX_BUNDLE` or than the room on the
/// data partition, and on a box its boot manager did not boot.
pub fn stage(bytes: u64) -> Result<std::fs::File, UpdateRefusal> {
    {
        let ctx = CONTEXT.lock().unwrap_or_else(|e| e.into_inner());
        match ctx.as_ref() {
            Some(c) if c.booted.on_trial.is_some() => {
                // Writing the other slot would remove the good one this
                // trial falls back to.
                return Err(UpdateRefusal::Busy(
                    "this boot is a slot on trial, not yet blessed: an update now would replace the slot it falls back to".into(),
                ));
            }
            Some(c)
                if c.booted.slot.is_some()
                    && c.esp_dev.is_some()
                    && c.other_template.is_some() => {}
            _ => {
                return Err(UpdateRefusal::Unavailable(
                    "this boot did not come through the boot manager's slots (a direct kernel boot, or an image from before the slots): there is no other slot to write".into(),
                ))
            }
        }
    }
    if bytes > MAX_BUNDLE {
        return Err(UpdateRefusal::TooLarge(format!(
            "{bytes} bytes: a bundle is at most {MAX_BUNDLE}"
        )));
    }
    let free = nix::sys::statvfs::statvfs(crate::storage::DATA_MOUNT)
        .map(|s| s.blocks_available() * s.fragment_size())
        .unwrap_or(0);
    if bytes + KEEP_FREE > free {
        return Err(UpdateRefusal::TooLarge(format!(
            "{bytes} bytes do not fit the data partition's {free} free bytes (with {KEEP_FREE} kept free)"
        )));
    }
    let mut s = state();
    match s.phase {
        Phase::Writing => {
            return Err(UpdateRefusal::Busy(
                "another update is being written".into(),
            ))
        }
        Phase::Staged(since) if since.elapsed() < STAGE_LEASE => {
            return Err(UpdateRefusal::Busy(format!(
                "another update is being uploaded (for {} s)",
                since.elapsed().as_secs()
            )))
        }
        Phase::Staged(_) | Phase::Idle => {}
    }
    let path = staging();
    let opened = path
        .parent()
        .map(std::fs::create_dir_all)
        .unwrap_or(Ok(()))
        .and_then(|_| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
        })
        .map_err(|e| UpdateRefusal::Failed(format!("opening {}: {e}", path.display())))?;
    s.phase = Phase::Staged(std::time::Instant::now());
    Ok(opened)
}

/// Drops a staged upload (never one being written).
pub fn abandon() {
    let mut s = state();
    if matches!(s.phase, Phase::Staged(_)) {
        let _ = std::fs::remove_file(staging());
        s.phase = Phase::Idle;
    }
}

/// A refusal of the staged bundle: it goes, and the way is free again.
fn refuse(r: UpdateRefusal) -> UpdateRefusal {
    let _ = std::fs::remove_file(staging());
    state().phase = Phase::Idle;
    r
}

/// Verifies the staged bundle and starts writing it.
pub fn apply(
    reboot_at: Option<u64>,
    force: bool,
    done: UpdateDone,
) -> Result<UpdateStatus, UpdateRefusal> {
    {
        // Staged to writing at once: a second apply, or an abandon, finds
        // no staged bundle from here on.
        let mut s = state();
        if !matches!(s.phase, Phase::Staged(_)) {
            return Err(UpdateRefusal::Busy("no bundle is staged".into()));
        }
        s.phase = Phase::Writing;
    }
    let now = crate::control::audit::now_s();
    let reboot_at = match reboot_at {
        Some(0) => Some(now),
        Some(t) if t + 60 < now || t > now + 366 * 86400 => {
            return Err(refuse(UpdateRefusal::Bundle(format!(
                "reboot_at {t}: a Unix time from now to a year ahead"
            ))))
        }
        other => other,
    };
    let (slot, running, esp_dev, (tmpl_dev, tmpl_size)) = {
        let ctx = CONTEXT.lock().unwrap_or_else(|e| e.into_inner());
        let Some(c) = ctx.as_ref() else {
            return Err(refuse(UpdateRefusal::Unavailable("not booted yet".into())));
        };
        match (c.booted.slot, &c.esp_dev, &c.other_template) {
            (Some(s), Some(e), Some(t)) => {
                (s.other(), c.running_version.clone(), e.clone(), t.clone())
            }
            _ => return Err(refuse(UpdateRefusal::Unavailable("no other slot".into()))),
        }
    };
    let key = std::fs::read(paddock_update::UPDATE_KEY_FILE).map_err(|e| {
        refuse(UpdateRefusal::Unavailable(format!(
            "{}: {e}: this image takes no updates",
            paddock_update::UPDATE_KEY_FILE
        )))
    })?;
    let mut file = std::fs::File::open(staging())
        .map_err(|e| refuse(UpdateRefusal::Failed(format!("the staged bundle: {e}"))))?;
    let verified = paddock_update::verify(&mut file, &key, &running, force)
        .map_err(|e| refuse(UpdateRefusal::Bundle(e.to_string())))?;
    // The boot manager orders slots by the UKI's own os-release version:
    // the manifest's must be that one, or "newer" would mean two things.
    if let Some((p, at)) = verified.part(PartName::Uki) {
        let mut uki = vec![0u8; p.size as usize];
        let read = file
            .seek(SeekFrom::Start(*at))
            .and_then(|_| file.read_exact(&mut uki));
        if let Err(e) = read {
            return Err(refuse(UpdateRefusal::Failed(format!(
                "reading the staged UKI: {e}"
            ))));
        }
        let in_uki = paddock_image::pe::osrel_value(&uki, "VERSION_ID")
            .ok()
            .flatten();
        if in_uki.as_deref() != Some(verified.manifest.version.as_str()) {
            return Err(refuse(UpdateRefusal::Bundle(format!(
                "the bundle says version {} but its UKI's os-release says {}",
                verified.manifest.version,
                in_uki.as_deref().unwrap_or("none")
            ))));
        }
        // Under Secure Boot an unsigned UKI would be written and then never
        // boot (the firmware refuses it): refused here, where it is said.
        if crate::slot::secure_boot()
            && !paddock_image::pe::authenticode_signed(&uki).unwrap_or(false)
        {
            return Err(refuse(UpdateRefusal::Bundle(
                "Secure Boot is on and the bundle's UKI carries no Authenticode signature: it would never boot (sign it with your Secure Boot db key; docs/secure-boot.md)".into(),
            )));
        }
    }
    if let Some((p, _)) = verified.part(PartName::Template) {
        if p.size > tmpl_size {
            return Err(refuse(UpdateRefusal::TooLarge(format!(
                "the bundle's template ({} bytes) does not fit slot {slot}'s template partition ({tmpl_size} bytes)",
                p.size
            ))));
        }
    }
    let status = UpdateStatus {
        version: verified.manifest.version.clone(),
        slot: slot.to_string(),
        state: UpdateState::Writing,
        reboot_at,
        detail: None,
    };
    state().status = Some(status.clone());
    info!(
        "update {} verified: writing it to slot {slot}",
        verified.manifest.version
    );
    let job = Job {
        file,
        verified,
        slot,
        esp_dev,
        tmpl_dev,
    };
    let spawned = std::thread::Builder::new()
        .name("update".into())
        .spawn(move || finish(job, done));
    if let Err(e) = spawned {
        return Err(refuse(UpdateRefusal::Failed(format!(
            "starting the writer: {e}"
        ))));
    }
    Ok(status)
}

struct Job {
    file: std::fs::File,
    verified: Verified,
    slot: Slot,
    esp_dev: String,
    tmpl_dev: String,
}

fn finish(mut job: Job, done: UpdateDone) {
    let result = write_slot(&mut job);
    let _ = std::fs::remove_file(staging());
    refresh_slots(&job.esp_dev);
    let mut s = state();
    s.phase = Phase::Idle;
    let Some(status) = s.status.as_mut() else {
        return;
    };
    match result {
        Ok(()) => {
            crate::assess::forget_failed_tries();
            status.state = UpdateState::Ready;
            let st = status.clone();
            drop(s);
            info!(
                "update {} is in slot {}: the next boot tries it",
                st.version, st.slot
            );
            done(Ok(st.clone()));
            if let Some(at) = st.reboot_at {
                schedule_reboot(at, st.version);
            }
        }
        Err(e) => {
            error!("update {}: {e}", status.version);
            status.state = UpdateState::Failed;
            status.detail = Some(e.clone());
            drop(s);
            done(Err(e));
        }
    }
}

fn schedule_reboot(at: u64, version: String) {
    let _ = std::thread::Builder::new()
        .name("update-reboot".into())
        .spawn(move || {
            let now = crate::control::audit::now_s();
            if at > now {
                std::thread::sleep(std::time::Duration::from_secs(at - now));
            }
            shutdown::begin_update_reboot(&format!("update {version}"));
        });
}

/// Copies `len` bytes from `from` at `at` into `to`, hashing them.
fn copy_part(
    from: &mut std::fs::File,
    at: u64,
    len: u64,
    to: &mut impl Write,
) -> Result<String, String> {
    from.seek(SeekFrom::Start(at))
        .map_err(|e| format!("seeking in the bundle: {e}"))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = from
            .read(&mut buf[..left.min(1 << 20) as usize])
            .map_err(|e| format!("reading the bundle: {e}"))?;
        if n == 0 {
            return Err("the bundle ended early".into());
        }
        h.update(&buf[..n]);
        to.write_all(&buf[..n])
            .map_err(|e| format!("writing: {e}"))?;
        left -= n as u64;
    }
    Ok(hex(&h.finalize()))
}

/// SHA-256 of the first `len` bytes of `path`.
fn hash_of(path: &Path, len: u64) -> Result<String, String> {
    let f =
        std::fs::File::open(path).map_err(|e| format!("reading {} back: {e}", path.display()))?;
    let mut h = Sha256::new();
    let n = std::io::copy(&mut f.take(len), &mut h)
        .map_err(|e| format!("reading {} back: {e}", path.display()))?;
    if n != len {
        return Err(format!("{} holds {n} of {len} bytes", path.display()));
    }
    Ok(hex(&h.finalize()))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn write_slot(job: &mut Job) -> Result<(), String> {
    let slot = job.slot;
    let part = |name| {
        job.verified
            .part(name)
            .cloned()
            .ok_or_else(|| format!("the verified bundle has no {name:?}"))
    };
    let (uki, uki_at) = part(PartName::Uki)?;
    let (tmpl, tmpl_at) = part(PartName::Template)?;
    let (sig, sig_at) = part(PartName::PcrSignature)?;

    // 1. The slot's old UKI goes: only the running slot is bootable now.
    crate::storage::with_esp(&job.esp_dev, true, |root| -> Result<(), String> {
        let dir = root.join(UKI_DIR);
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                let ours =
                    UkiName::parse(&name).is_some_and(|n| n.slot == slot) || name == new_name(slot);
                if ours {
                    std::fs::remove_file(e.path())
                        .map_err(|err| format!("removing {name}: {err}"))?;
                }
            }
        }
        sync_dir(&dir);
        Ok(())
    })
    .map_err(|e| e.to_string())??;

    // 2. The template, into the slot's partition, read back.
    let mut dev = std::fs::OpenOptions::new()
        .write(true)
        .open(&job.tmpl_dev)
        .map_err(|e| format!("opening {}: {e}", job.tmpl_dev))?;
    let written = copy_part(&mut job.file, tmpl_at, tmpl.size, &mut dev)?;
    dev.sync_all()
        .map_err(|e| format!("syncing {}: {e}", job.tmpl_dev))?;
    drop(dev);
    drop_caches();
    let want = tmpl.sha256.to_ascii_lowercase();
    if written != want || hash_of(Path::new(&job.tmpl_dev), tmpl.size)? != want {
        return Err(format!(
            "slot {slot}'s template partition does not read back as written"
        ));
    }

    // 3. and 4. The UKI and its PCR signature onto the ESP, read back,
    // then put where the boot manager looks.
    let file = &mut job.file;
    crate::storage::with_esp(&job.esp_dev, true, |root| -> Result<(), String> {
        let dir = root.join(UKI_DIR);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let staged = dir.join(new_name(slot));
        let mut out = std::fs::File::create(&staged)
            .map_err(|e| format!("creating {}: {e}", staged.display()))?;
        let hash = copy_part(file, uki_at, uki.size, &mut out)?;
        out.sync_all()
            .map_err(|e| format!("syncing the UKI: {e}"))?;
        drop(out);
        let sigs = root.join(paddock_keys::signed::SIGNATURE_DIR);
        std::fs::create_dir_all(&sigs).map_err(|e| format!("{}: {e}", sigs.display()))?;
        let sig_path = sigs.join(format!("{slot}.json"));
        let mut out = std::fs::File::create(&sig_path)
            .map_err(|e| format!("creating {}: {e}", sig_path.display()))?;
        let sig_hash = copy_part(file, sig_at, sig.size, &mut out)?;
        out.sync_all()
            .map_err(|e| format!("syncing the PCR signature: {e}"))?;
        drop(out);
        sync_dir(&sigs);
        let (uki_sum, sig_sum) = (
            uki.sha256.to_ascii_lowercase(),
            sig.sha256.to_ascii_lowercase(),
        );
        if hash != uki_sum || sig_hash != sig_sum {
            return Err("the bundle changed while it was written".into());
        }
        drop_caches();
        if hash_of(&staged, uki.size)? != uki.sha256 || hash_of(&sig_path, sig.size)? != sig.sha256
        {
            return Err(
                "the UKI or its PCR signature does not read back from the ESP as written".into(),
            );
        }
        let live = root.join(slot.uki_path(Some(TRIES)));
        std::fs::rename(&staged, &live).map_err(|e| format!("putting the UKI in place: {e}"))?;
        sync_dir(&dir);
        Ok(())
    })
    .map_err(|e| e.to_string())??;
    Ok(())
}

/// The UKI's name while it is written: not `.efi`, so never booted.
fn new_name(slot: Slot) -> String {
    format!("paddock-{slot}.new")
}

fn sync_dir(dir: &Path) {
    if let Err(e) = std::fs::File::open(dir).and_then(|d| d.sync_all()) {
        warn!("syncing {}: {e}", dir.display());
    }
}

/// The page cache would answer the read-back from what was just written:
/// drop it so the partition itself is read.
fn drop_caches() {
    if let Err(e) = std::fs::write("/proc/sys/vm/drop_caches", "1") {
        warn!("dropping the page cache before reading back: {e}");
    }
}
