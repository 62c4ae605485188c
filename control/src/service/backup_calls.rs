//! `GET /v1/system/backup` and `POST /v1/system/restore` (admin): the
//! state database and audit log, encrypted to this box's TPM and to its
//! recovery secret (crate::backup, paddock-backup); and a backup put in
//! place of a box's state, verified whole first. Both are audited.

use super::{error, reply, store_err, with_fd, Control, Outcome};
use crate::access::TokenTree;
use crate::audit::now_s;
use crate::backup;
use crate::store::WORKSPACES;
use crate::tokens::{Scope, TokenRecord};
use crate::workspace::{WorkspaceRecord, WsState};
use paddock_api_channel::Verdict;
use paddock_api_types::RestoreReport;
use paddock_backup::{Meta, Reader, SlotKey, SlotKind};
use serde_json::json;
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// The largest backup taken for a restore: the state (at most 256 MiB)
/// and nine audit files of 16 MiB, with room.
const MAX_RESTORE: u64 = 1 << 30;
/// Room left on the data partition after a backup is staged.
const KEEP_FREE: u64 = 256 << 20;
/// How long one upload holds the way before another may take it.
const STAGE_LEASE: Duration = Duration::from_secs(30 * 60);

/// A backup being uploaded, uploaded, or being applied.
pub(crate) struct Staged {
    file: File,
    since: Instant,
    /// The upload's number: only the request that staged it applies or
    /// drops it.
    id: u64,
    /// Being read and applied: the way stays closed until that ends.
    applying: bool,
}

/// How long a restore waits for the calls under way to end before it
/// swaps the state.
const SWAP_WAIT: Duration = Duration::from_secs(30);

/// The directory a restore's audit files are staged in (removed after
/// it, and at boot: `Control::drop_restore_leftovers`).
fn staging_dir(state_dir: &Path, id: u64) -> std::path::PathBuf {
    state_dir.join(format!("restore-{id:016x}"))
}

/// A file on the data partition that is gone once closed (`O_TMPFILE`):
/// a backup in the making or in the restoring leaves nothing behind, even
/// after a power cut.
fn unnamed_file(dir: &Path) -> std::io::Result<File> {
    std::fs::create_dir_all(dir)?;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE)
        .open(dir)
}

fn free_bytes(dir: &Path) -> Result<u64, nix::Error> {
    nix::sys::statvfs::statvfs(dir).map(|s| s.blocks_available() * s.fragment_size())
}

fn invalid(m: impl Into<String>) -> Outcome {
    error(Verdict::Invalid, m)
}

impl Control {
    /// The keys a new backup is encrypted to: this TPM's (in this boot
    /// state) and the recovery secret's, whichever the key store has.
    fn backup_slots(&self) -> Result<Vec<SlotKey>, Outcome> {
        let keys = paddock_keys::store().map_err(|e| {
            error(
                Verdict::Unavailable,
                format!("backups are encrypted by the key store, which is not open: {e}"),
            )
        })?;
        let mut slots = Vec::new();
        let mut why = Vec::new();
        let context = || {
            paddock_backup::new_context()
                .map_err(|e| error(Verdict::Failed, format!("making a backup's key slot: {e}")))
        };
        let tpm_context = context()?;
        match keys.backup_key_tpm(&tpm_context) {
            Ok(k) => slots.push(SlotKey {
                kind: SlotKind::Tpm,
                context: tpm_context,
                key: *k.bytes(),
            }),
            Err(e) => why.push(format!("the TPM: {e}")),
        }
        match keys.backup_key_recovery() {
            Ok(Some(k)) => slots.push(SlotKey {
                kind: SlotKind::Recovery,
                context: context()?,
                key: *k.bytes(),
            }),
            Ok(None) => why.push("no recovery backup key (a key store set up before backups existed: `paddock keys recover` with its secret adds it)".into()),
            Err(e) => why.push(format!("the recovery key: {e}")),
        }
        if slots.is_empty() {
            return Err(error(
                Verdict::Unavailable,
                format!("no key to encrypt a backup to: {}", why.join("; ")),
            ));
        }
        if !why.is_empty() {
            log::warn!("backup: made without {}", why.join("; "));
        }
        Ok(slots)
    }

    /// `GET /v1/system/backup`: the backup in an unnamed file on the data
    /// partition, passed to the API process to send.
    pub(super) fn make_backup(&self, tok: &TokenRecord, what: &str) -> Result<Outcome, Outcome> {
        self.need(tok, Scope::Admin, what)?;
        let Ok(_one) = self.backing_up.try_lock() else {
            return Err(error(
                Verdict::Conflict,
                "another backup is being made; try again when it is done",
            ));
        };
        // Room for it (the database and the audit log, at most) beside
        // what is kept free for the workspaces.
        let need = self
            .audit
            .files_now()
            .iter()
            .map(|(_, _, len)| *len)
            .sum::<u64>()
            + std::fs::metadata(self.state_dir.join("paddock.redb"))
                .map(|m| m.len())
                .unwrap_or(0);
        let free = free_bytes(&self.state_dir).map_err(|e| {
            error(
                Verdict::Failed,
                format!("the data partition's free space: {e}"),
            )
        })?;
        if need + KEEP_FREE > free {
            return Err(error(
                Verdict::TooLarge,
                format!("a backup of up to {need} bytes does not fit the data partition's {free} free bytes (with {KEEP_FREE} kept free)"),
            ));
        }
        let slots = self.backup_slots()?;
        let kinds: Vec<String> = slots.iter().map(|s| s.kind.to_string()).collect();
        let meta = Meta {
            created_at: now_s(),
            box_version: env!("CARGO_PKG_VERSION").into(),
            // Which box: the API certificate's fingerprint when it was made.
            box_id: crate::host::get().tls_fingerprint().filter(|f| {
                !f.is_empty() && f.len() <= 128 && f.bytes().all(|b| b.is_ascii_graphic())
            }),
        };
        let made = unnamed_file(&self.state_dir)
            .map_err(|e| backup::BackupError::Io {
                what: "making a file for it".into(),
                source: e,
            })
            .and_then(|f| backup::write(f, &meta, &slots, &self.store, &self.audit))
            .and_then(|mut f| {
                let len = f.seek(SeekFrom::End(0)).and_then(|len| {
                    f.seek(SeekFrom::Start(0))?;
                    Ok(len)
                });
                len.map(|len| (f, len))
                    .map_err(|e| backup::BackupError::Io {
                        what: "reading it back".into(),
                        source: e,
                    })
            });
        let (file, bytes) = match made {
            Ok(m) => m,
            Err(e) => {
                self.audit.record(
                    "backup_failed",
                    json!({"by": tok.id, "reason": e.to_string()}),
                );
                return Err(error(Verdict::Failed, format!("making the backup: {e}")));
            }
        };
        self.audit.record(
            "backup_made",
            json!({"by": tok.id, "bytes": bytes, "slots": kinds}),
        );
        Ok(with_fd(
            json!({"bytes": bytes, "slots": kinds, "created_at": meta.created_at}),
            file,
        ))
    }

    fn staged(&self) -> std::sync::MutexGuard<'_, Option<Staged>> {
        self.restore.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Workspaces with something on this box (all but lost ones): a
    /// restore would orphan them.
    fn live_workspaces(&self) -> Result<usize, Outcome> {
        Ok(self
            .store
            .list::<WorkspaceRecord>(WORKSPACES)
            .map_err(store_err)?
            .iter()
            .filter(|w| w.state != WsState::Lost)
            .count())
    }

    fn refuse_restore(&self, tok: &TokenRecord, o: Outcome) -> Outcome {
        let reason = o.reply.body.get("error").cloned().unwrap_or_default();
        self.audit
            .record("restore_refused", json!({"by": tok.id, "reason": reason}));
        o
    }

    /// `POST /v1/system/restore`, first half: a file for the upload,
    /// refused up front on a box with workspaces, over the size cap, or
    /// without room.
    pub(super) fn stage_restore(
        &self,
        tok: &TokenRecord,
        bytes: u64,
        what: &str,
    ) -> Result<Outcome, Outcome> {
        self.need(tok, Scope::Admin, what)?;
        let checked = (|| {
            let live = self.live_workspaces()?;
            if live > 0 {
                return Err(error(
                    Verdict::Conflict,
                    format!("a restore replaces this box's state and is for a box with no workspaces: this one has {live} (delete them first)"),
                ));
            }
            if bytes > MAX_RESTORE {
                return Err(error(
                    Verdict::TooLarge,
                    format!("{bytes} bytes: a backup is at most {MAX_RESTORE}"),
                ));
            }
            let free = free_bytes(&self.state_dir).map_err(|e| {
                error(
                    Verdict::Failed,
                    format!("the data partition's free space: {e}"),
                )
            })?;
            if bytes.saturating_mul(2) + KEEP_FREE > free {
                return Err(error(
                    Verdict::TooLarge,
                    format!("{bytes} bytes (staged, then unpacked) do not fit the data partition's {free} free bytes"),
                ));
            }
            let mut staged = self.staged();
            if let Some(s) = staged.as_ref() {
                if s.applying {
                    return Err(error(Verdict::Conflict, "another backup is being restored"));
                }
                if s.since.elapsed() < STAGE_LEASE {
                    return Err(error(
                        Verdict::Conflict,
                        format!(
                            "another backup is being uploaded or restored (for {} s)",
                            s.since.elapsed().as_secs()
                        ),
                    ));
                }
            }
            let file = unnamed_file(&self.state_dir).map_err(|e| {
                error(
                    Verdict::Failed,
                    format!("making a file for the upload: {e}"),
                )
            })?;
            let theirs = file
                .try_clone()
                .map_err(|e| error(Verdict::Failed, format!("sharing the upload's file: {e}")))?;
            let id = u64::from_le_bytes(
                paddock_backup::new_context().map_err(|e| error(Verdict::Failed, e.to_string()))?
                    [..8]
                    .try_into()
                    .unwrap_or_default(),
            );
            *staged = Some(Staged {
                file,
                since: Instant::now(),
                id,
                applying: false,
            });
            Ok((theirs, id))
        })();
        let (theirs, id) = checked.map_err(|o| self.refuse_restore(tok, o))?;
        Ok(with_fd(json!({"bytes": bytes, "staged": id}), theirs))
    }

    /// The upload did not arrive whole: its file goes.
    pub(super) fn abandon_restore(
        &self,
        tok: &TokenRecord,
        staged: u64,
        what: &str,
    ) -> Result<Outcome, Outcome> {
        self.need(tok, Scope::Admin, what)?;
        {
            let mut slot = self.staged();
            if slot.as_ref().is_some_and(|s| s.id == staged && !s.applying) {
                slot.take();
            }
        }
        self.audit.record(
            "restore_refused",
            json!({"by": tok.id, "reason": "the upload did not arrive whole"}),
        );
        Ok(reply(Verdict::Ok, json!({"abandoned": true})))
    }

    /// `POST /v1/system/restore`, second half: the staged backup opened,
    /// read whole and verified, then put in place of this box's tokens,
    /// workspace records, approvals and audit history.
    pub(super) fn apply_restore(
        &self,
        tok: &TokenRecord,
        staged: u64,
        recovery_secret: Option<String>,
        what: &str,
    ) -> Result<Outcome, Outcome> {
        self.need(tok, Scope::Admin, what)?;
        let file = {
            let mut slot = self.staged();
            match slot.as_mut() {
                Some(s) if s.id == staged && !s.applying => {
                    s.applying = true;
                    s.file.try_clone().map_err(|e| {
                        error(Verdict::Failed, format!("reading the upload: {e}"))
                    })
                }
                _ => Err(error(
                    Verdict::Conflict,
                    "this upload is no longer staged (dropped, or another upload took its place after 30 minutes)",
                )),
            }
        };
        let result = file
            .and_then(|f| self.restore_from(tok, f, staged, recovery_secret))
            .map_err(|o| self.refuse_restore(tok, o));
        // The way is free again, whatever happened.
        {
            let mut slot = self.staged();
            if slot.as_ref().is_some_and(|s| s.id == staged) {
                slot.take();
            }
        }
        result
    }

    fn restore_from(
        &self,
        tok: &TokenRecord,
        mut file: File,
        id: u64,
        recovery_secret: Option<String>,
    ) -> Result<Outcome, Outcome> {
        file.seek(SeekFrom::Start(0))
            .map_err(|e| error(Verdict::Failed, format!("reading the upload: {e}")))?;
        let reader =
            Reader::open(std::io::BufReader::new(file)).map_err(|e| invalid(e.to_string()))?;
        let (unlocked, opened_with) = match recovery_secret {
            Some(secret) => {
                let key = paddock_keys::recovery_backup_key(&secret);
                let u = reader
                    .unlock(SlotKind::Recovery, key.bytes())
                    .map_err(|e| invalid(e.to_string()))?;
                (u, SlotKind::Recovery)
            }
            None => {
                let Some(context) = reader
                    .slots()
                    .iter()
                    .find(|s| s.kind == SlotKind::Tpm)
                    .map(|s| s.context)
                else {
                    return Err(invalid("this backup was not made for a TPM: send the recovery secret of the box that made it (header X-Paddock-Recovery-Secret)"));
                };
                let keys = paddock_keys::store()
                    .map_err(|e| error(Verdict::Unavailable, e.to_string()))?;
                let key = keys.backup_key_tpm(&context).map_err(|e| {
                    invalid(format!("this box's TPM cannot open the backup ({e}): send the recovery secret of the box that made it (header X-Paddock-Recovery-Secret)"))
                })?;
                let u = reader
                    .unlock(SlotKind::Tpm, key.bytes())
                    .map_err(|e| invalid(format!("{e}: send the recovery secret of the box that made it (header X-Paddock-Recovery-Secret)")))?;
                (u, SlotKind::Tpm)
            }
        };
        // The metadata as the key checked it, not as the file claimed it.
        let (created_at, version) = (
            unlocked.meta().created_at,
            unlocked.meta().box_version.clone(),
        );
        let staging = staging_dir(&self.state_dir, id);
        let read = backup::read(unlocked, &staging);
        let result = read
            .map_err(|e| invalid(e.to_string()))
            .and_then(|contents| {
                self.put_in_place(tok, contents, created_at, &version, opened_with)
            });
        let _ = std::fs::remove_dir_all(&staging);
        result
    }

    /// Takes the state for writing: every other call has ended and none
    /// starts until the guard drops. Waits at most `SWAP_WAIT` for the
    /// calls under way, polling, so that calls keep being served while it
    /// waits.
    fn swap_guard(&self) -> Result<std::sync::RwLockWriteGuard<'_, ()>, Outcome> {
        let until = Instant::now() + SWAP_WAIT;
        loop {
            match self.swap.try_write() {
                Ok(g) => return Ok(g),
                Err(std::sync::TryLockError::Poisoned(p)) => return Ok(p.into_inner()),
                Err(std::sync::TryLockError::WouldBlock) if Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(std::sync::TryLockError::WouldBlock) => {
                    return Err(error(
                        Verdict::Conflict,
                        format!(
                            "calls kept running for {} s: nothing was restored; try again",
                            SWAP_WAIT.as_secs()
                        ),
                    ))
                }
            }
        }
    }

    /// Removes what a restore cut short by a power cut left on the data
    /// partition: its staged audit files (decrypted history).
    pub fn drop_restore_leftovers(&self) {
        let Ok(dir) = std::fs::read_dir(&self.state_dir) else {
            return;
        };
        for e in dir.flatten() {
            if e.file_name().to_string_lossy().starts_with("restore-") {
                if let Err(err) = std::fs::remove_dir_all(e.path()) {
                    log::warn!("removing {}: {err}", e.path().display());
                }
            }
        }
        self.audit.drop_restoring();
    }

    fn put_in_place(
        &self,
        tok: &TokenRecord,
        contents: backup::Contents,
        created_at: u64,
        version: &str,
        opened_with: SlotKind,
    ) -> Result<Outcome, Outcome> {
        // Everything checked before anything changes.
        let r =
            backup::restorable(contents.snapshot, now_s()).map_err(|e| invalid(e.to_string()))?;
        let tokens = r.tokens.len() as u64;
        {
            let _swap = self.swap_guard()?;
            let _admission = self.admission.lock().unwrap_or_else(|e| e.into_inner());
            let live = self.live_workspaces()?;
            if live > 0 {
                return Err(error(
                    Verdict::Conflict,
                    format!("{live} workspace(s) were made while the backup was uploaded: nothing was restored"),
                ));
            }
            // One transaction: all of the state or none of it.
            self.store.replace_all(&r.snapshot).map_err(store_err)?;
            *self.tokens.write().unwrap_or_else(|e| e.into_inner()) = TokenTree::new(r.tokens);
        }
        let boundary = json!({"ts": now_s(), "event": "restored_history_ends",
            "backup_created_at": created_at, "backup_version": version});
        let audit_bytes = match self
            .audit
            .restore_history(&contents.audit, &boundary.to_string())
        {
            Ok(n) => n,
            Err(e) => {
                // The state is in place; the history is not. Said, not hidden.
                self.audit.record(
                    "backup_restored",
                    json!({"by": tok.id, "backup_created_at": created_at, "opened_with": opened_with.to_string(), "audit_history": format!("not restored: {e}")}),
                );
                return Err(error(
                    Verdict::Failed,
                    format!("the tokens, workspace records and approvals were restored; the audit history was not: {e}"),
                ));
            }
        };
        self.audit.record(
            "backup_restored",
            json!({"by": tok.id, "backup_created_at": created_at, "backup_version": version,
                   "opened_with": opened_with.to_string(), "tokens": tokens, "workspaces": r.lost.len()}),
        );
        for id in &r.lost {
            self.audit.record(
                "workspace_lost",
                json!({"workspace": id, "reason": "restored from a backup, which holds no disks"}),
            );
        }
        let lost = r.lost;
        let approvals = r.approvals;
        Ok(reply(
            Verdict::Ok,
            RestoreReport {
                backup_created_at: created_at,
                backup_version: version.to_string(),
                opened_with: opened_with.to_string(),
                tokens,
                workspaces: lost.len() as u64,
                approvals,
                audit_bytes,
            },
        ))
    }
}
