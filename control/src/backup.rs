//! What a backup of the box holds, and how it goes back: the state
//! database as one consistent snapshot (`state.json`) and the audit log's
//! generations (`audit/<file>`, oldest first), inside paddock-backup's
//! encrypted file. Workspace disks, paused VMs and forensic snapshots are
//! not in it (their keys die with the key store they were made in): a
//! restored workspace record is `lost`.

use crate::access::{TokenTree, MAX_TOKENS};
use crate::audit::AuditLog;
use crate::store::{
    name_of, Snapshot, Store, StoreError, ALL_TABLES, APPROVALS, LINKS, TOKENS, WORKSPACES,
};
use crate::tokens::{Scope, TokenRecord};
use crate::workspace::{WorkspaceRecord, WsState};
use paddock_api_types::Approval;
use paddock_backup::{Meta, SlotKey, Unlocked, Writer};
use redb::TableDefinition;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The state database's entry.
pub const STATE_ENTRY: &str = "state.json";
/// Where the audit log's files are, by their names on the box.
const AUDIT_PREFIX: &str = "audit/";
/// A state snapshot bigger than this is not a box's (tokens and workspace
/// records are well under a KiB each, and their number is capped); it is
/// read whole into PID 1's memory.
const MAX_STATE: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Format(#[from] paddock_backup::BackupError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("the backup's state: {0}")]
    State(String),
    #[error("the state database: {0}")]
    Store(#[from] StoreError),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BackupError {
    let what = what.into();
    move |source| BackupError::Io { what, source }
}

/// Writes a backup of `store` and `audit` to `out`, encrypted to `slots`;
/// answers `out` as written.
pub fn write(
    out: File,
    meta: &Meta,
    slots: &[SlotKey],
    store: &Store,
    audit: &AuditLog,
) -> Result<File, BackupError> {
    // The database first, then the log as it is after it: every change the
    // snapshot holds has its event in the log (events are written after
    // their change), give or take the ones being written right now.
    let snapshot = store.snapshot()?;
    let state = serde_json::to_vec(&snapshot).map_err(|e| BackupError::State(e.to_string()))?;
    let mut w = Writer::new(out, meta, slots)?;
    w.entry(STATE_ENTRY, state.len() as u64, &mut &state[..])?;
    for (name, file, len) in audit.files_now() {
        w.entry(&format!("{AUDIT_PREFIX}{name}"), len, &mut file.take(len))?;
    }
    Ok(w.finish()?)
}

/// A backup read whole and verified: its state, and its audit files
/// staged in `staging` (oldest first).
pub struct Contents {
    pub snapshot: Snapshot,
    pub audit: Vec<PathBuf>,
}

/// An audit file's name as this version writes them: `audit.log` or
/// `audit.log.N`.
fn audit_name_ok(name: &str) -> bool {
    name == "audit.log"
        || name
            .strip_prefix("audit.log.")
            .is_some_and(|n| !n.is_empty() && n.len() <= 3 && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Reads every entry of an unlocked backup, the audit files into
/// `staging`, and checks the backup ended where its writer ended it:
/// nothing here is to be acted on before this answered Ok.
pub fn read<R: Read>(mut backup: Unlocked<R>, staging: &Path) -> Result<Contents, BackupError> {
    std::fs::create_dir_all(staging).map_err(io(format!("making {}", staging.display())))?;
    let mut state: Option<Vec<u8>> = None;
    let mut audit = Vec::new();
    while let Some(mut entry) = backup.next_entry()? {
        let (name, len) = (entry.name.clone(), entry.len);
        if name == STATE_ENTRY {
            if state.is_some() {
                return Err(BackupError::State("two state entries".into()));
            }
            if len > MAX_STATE {
                return Err(BackupError::State(format!(
                    "a state of {len} bytes (at most {MAX_STATE})"
                )));
            }
            let mut buf = Vec::with_capacity(len as usize);
            entry.copy_to(&mut buf)?;
            state = Some(buf);
        } else if let Some(file) = name.strip_prefix(AUDIT_PREFIX).filter(|f| audit_name_ok(f)) {
            let path = staging.join(file);
            if audit.contains(&path) {
                return Err(BackupError::State(format!("two entries {name}")));
            }
            let mut f = File::create(&path).map_err(io(format!("staging {name}")))?;
            entry.copy_to(&mut f)?;
            f.flush().map_err(io(format!("staging {name}")))?;
            audit.push(path);
        } else {
            return Err(BackupError::State(format!(
                "an entry {name:?} this version does not know (a backup from a newer version?)"
            )));
        }
    }
    backup.finish()?;
    let state = state.ok_or_else(|| BackupError::State(format!("no {STATE_ENTRY}")))?;
    let snapshot: Snapshot = serde_json::from_slice(&state)
        .map_err(|e| BackupError::State(format!("{STATE_ENTRY} does not read: {e}")))?;
    Ok(Contents { snapshot, audit })
}

/// A backup's state checked whole and made to fit this box: what a
/// restore swaps in, nothing of it yet applied.
pub struct Restorable {
    pub snapshot: Snapshot,
    /// Its tokens, read as this version reads them.
    pub tokens: Vec<TokenRecord>,
    /// The workspaces it holds, every one now lost.
    pub lost: Vec<String>,
    pub approvals: u64,
}

/// Checks a backup's state as this version would read it after the swap
/// (so a restore cannot leave a database the next boot refuses), and
/// makes it fit a box that has none of its VMs, disks or keys: every
/// workspace `lost`, holding nothing sealed under a key this box never
/// had, with no ports published; links between workspaces go. Refused:
/// a table this version does not know, a record that does not read, more
/// tokens than a box holds, and a state no live admin token is left in
/// (restoring it would lock every admin out).
pub fn restorable(mut snapshot: Snapshot, now: u64) -> Result<Restorable, BackupError> {
    let known: Vec<String> = ALL_TABLES.iter().map(|t| name_of(*t)).collect();
    if let Some(other) = snapshot.keys().find(|k| !known.contains(k)) {
        return Err(BackupError::State(format!(
            "a table {other:?} this version does not know (a backup from a newer version?)"
        )));
    }
    fn each<T: serde::de::DeserializeOwned>(
        snapshot: &Snapshot,
        table: TableDefinition<&str, &str>,
    ) -> Result<Vec<T>, BackupError> {
        let name = name_of(table);
        snapshot
            .get(&name)
            .into_iter()
            .flatten()
            .map(|(key, value)| {
                serde_json::from_str(value).map_err(|e| {
                    BackupError::State(format!("{name} record {key} does not read: {e}"))
                })
            })
            .collect()
    }
    let tokens: Vec<TokenRecord> = each(&snapshot, TOKENS)?;
    if tokens.len() > MAX_TOKENS {
        return Err(BackupError::State(format!(
            "{} tokens (a box holds at most {MAX_TOKENS})",
            tokens.len()
        )));
    }
    let tree = TokenTree::new(tokens.clone());
    if !tree
        .all()
        .any(|t| t.has(Scope::Admin) && tree.is_live(t, now))
    {
        return Err(BackupError::State(
            "no admin token in it is still valid (all revoked or expired): restoring it would lock every admin out".into(),
        ));
    }
    let approvals = each::<Approval>(&snapshot, APPROVALS)?.len() as u64;
    let mut lost = Vec::new();
    if let Some(records) = snapshot.get_mut(&name_of(WORKSPACES)) {
        for (key, value) in records.iter_mut() {
            let mut ws: WorkspaceRecord = serde_json::from_str(value).map_err(|e| {
                BackupError::State(format!("workspace record {key} does not read: {e}"))
            })?;
            ws.state = WsState::Lost;
            ws.paused = None;
            ws.env_sealed = None;
            ws.secrets_sealed = None;
            ws.published.clear();
            *value = serde_json::to_string(&ws).map_err(|e| BackupError::State(e.to_string()))?;
            lost.push(ws.id);
        }
    }
    each::<serde_json::Value>(&snapshot, LINKS)?;
    if let Some(links) = snapshot.get_mut(&name_of(LINKS)) {
        links.clear();
    }
    Ok(Restorable {
        snapshot,
        tokens,
        lost,
        approvals,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{name_of, TOKENS};
    use paddock_backup::{Reader, SlotKind};
    use serde_json::json;
    use std::io::{Seek, SeekFrom};

    const KEY: [u8; 32] = [7u8; 32];

    fn slots() -> Vec<SlotKey> {
        vec![SlotKey {
            kind: SlotKind::Recovery,
            context: [1u8; 32],
            key: KEY,
        }]
    }

    fn meta() -> Meta {
        Meta {
            created_at: 1,
            box_version: "0.1.0".into(),
            box_id: None,
        }
    }

    fn unlocked(file: &Path) -> Unlocked<File> {
        Reader::open(File::open(file).expect("open"))
            .expect("a backup")
            .unlock(SlotKind::Recovery, &KEY)
            .expect("unlock")
    }

    #[test]
    fn the_state_and_the_audit_log_come_back_and_workspaces_are_lost() {
        let root = std::env::temp_dir().join(format!("paddock-backup-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("dir");
        let store = Store::open(&root.join("s.redb")).expect("store");
        let admin = TokenRecord::bootstrap(&crate::tokens::hash_secret("pdk_admin_x"), 1);
        store.put(TOKENS, &admin.id, &admin).expect("put");
        let mut ws = WorkspaceRecord::internal("ws_a", 200_001, 1, 256, 256);
        ws.state = WsState::Running;
        ws.env_sealed = Some(vec![1, 2, 3]);
        store.put(WORKSPACES, "ws_a", &ws).expect("put");
        store
            .put(LINKS, "lnk_a", &json!({"from": "ws_a"}))
            .expect("put");
        let audit = AuditLog::new(&root.join("audit"), 300, 3);
        for i in 0..10 {
            audit.record("token_issued", json!({"n": i}));
        }

        let out = File::create(root.join("b.pdkbak")).expect("file");
        write(out, &meta(), &slots(), &store, &audit).expect("backup");
        let contents = read(unlocked(&root.join("b.pdkbak")), &root.join("staging")).expect("read");
        assert_eq!(contents.snapshot, store.snapshot().expect("snapshot"));
        assert!(
            contents.audit.len() >= 2,
            "every generation: {:?}",
            contents.audit
        );
        let staged: Vec<u8> = contents
            .audit
            .iter()
            .flat_map(|p| std::fs::read(p).expect("staged"))
            .collect();
        let live: Vec<u8> = audit
            .files_now()
            .into_iter()
            .flat_map(|(_, mut f, _)| {
                let mut b = Vec::new();
                f.read_to_end(&mut b).expect("read");
                b
            })
            .collect();
        assert_eq!(staged, live, "the log as it was, oldest first");

        let r = restorable(contents.snapshot.clone(), 2).expect("restorable");
        assert_eq!(r.lost, ["ws_a"]);
        assert_eq!(r.tokens, std::slice::from_ref(&admin));
        let w: WorkspaceRecord =
            serde_json::from_str(&r.snapshot[&name_of(WORKSPACES)]["ws_a"]).expect("record");
        assert_eq!(w.state, WsState::Lost);
        assert_eq!(
            w.env_sealed, None,
            "nothing sealed under a key the box never had"
        );
        assert!(r.snapshot[&name_of(LINKS)].is_empty());

        // What the next boot could not read, or would lock every admin
        // out, is refused before anything is swapped in.
        let refused = |snap: &Snapshot| {
            restorable(snap.clone(), 2)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        let mut alien = contents.snapshot.clone();
        alien.insert("tables_of_tomorrow".into(), Default::default());
        assert!(
            refused(&alien).contains("does not know"),
            "{}",
            refused(&alien)
        );
        let mut bent = contents.snapshot.clone();
        bent.get_mut(&name_of(TOKENS)).expect("tokens").insert(
            "tok_bent".into(),
            r#"{"id": "tok_bent", "scopes": ["root"]}"#.into(),
        );
        assert!(
            refused(&bent).contains("tok_bent does not read"),
            "{}",
            refused(&bent)
        );
        let mut revoked = admin.clone();
        revoked.revoked = true;
        let mut locked_out = contents.snapshot.clone();
        locked_out
            .get_mut(&name_of(TOKENS))
            .expect("tokens")
            .insert(
                revoked.id.clone(),
                serde_json::to_string(&revoked).expect("json"),
            );
        assert!(
            refused(&locked_out).contains("lock every admin out"),
            "{}",
            refused(&locked_out)
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    /// A backup made by this key's holder with entries this version does
    /// not write: refused, whichever way the entry is odd.
    #[test]
    fn entries_this_version_does_not_write_are_refused() {
        let root = std::env::temp_dir().join(format!("paddock-backup-odd-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("dir");
        let state = serde_json::to_vec(&Snapshot::new()).expect("json");
        // (Two entries of one name: the format refuses those itself.)
        type Entries<'a> = &'a [(&'a str, &'a [u8])];
        let cases: [(Entries, &str); 3] = [
            (&[("state.json", &state), ("extra", b"x")], "does not know"),
            (
                &[("state.json", &state), ("audit/passwd", b"x")],
                "does not know",
            ),
            (&[("audit/audit.log", b"x")], "no state.json"),
        ];
        for (i, (entries, why)) in cases.iter().enumerate() {
            let path = root.join(format!("{i}.pdkbak"));
            let mut w =
                Writer::new(File::create(&path).expect("file"), &meta(), &slots()).expect("writer");
            for (name, data) in entries.iter() {
                w.entry(name, data.len() as u64, &mut &data[..])
                    .expect("entry");
            }
            let mut f = w.finish().expect("finish");
            f.seek(SeekFrom::Start(0)).expect("seek");
            let err = read(unlocked(&path), &root.join(format!("s{i}")))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(why), "case {i}: {err:?}");
        }
        let _ = std::fs::remove_dir_all(&root);
    }
}
