//! The audit log: append-only JSON lines on the data partition, rotated at
//! a size cap (a few generations kept). Events name who did what to which
//! workspace; they never carry secrets, env values or command output.

use paddock_api_types::AuditEvent;
use serde_json::{Map, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub struct AuditLog {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    lock: Mutex<()>,
}

pub fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl AuditLog {
    pub fn new(dir: &Path, max_bytes: u64, keep: u32) -> AuditLog {
        // A missing directory would lose every event; each write warns if
        // this fails.
        let _ = std::fs::create_dir_all(dir);
        AuditLog {
            path: dir.join("audit.log"),
            max_bytes,
            keep,
            lock: Mutex::new(()),
        }
    }

    fn rotate(&self) {
        for i in (1..self.keep).rev() {
            let _ = std::fs::rename(
                self.path.with_extension(format!("log.{i}")),
                self.path.with_extension(format!("log.{}", i + 1)),
            );
        }
        let _ = std::fs::rename(&self.path, self.path.with_extension("log.1"));
    }

    /// Appends one event; `fields` is merged under the time and kind.
    pub fn record(&self, kind: &str, fields: Value) {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        if std::fs::metadata(&self.path)
            .map(|m| m.len() >= self.max_bytes)
            .unwrap_or(false)
        {
            self.rotate();
        }
        let mut fields = match fields {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        // The time and kind are the log's own: a field of those names
        // would write the key twice.
        fields.remove("ts");
        fields.remove("event");
        let ev = AuditEvent {
            ts: now_s(),
            event: kind.to_string(),
            fields,
        };
        crate::host::get().audited(&ev);
        let mut line = serde_json::to_string(&ev).unwrap_or_default();
        line.push('\n');
        let res = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut f| f.write_all(line.as_bytes()).and_then(|_| f.sync_data()));
        if let Err(e) = res {
            log::warn!("audit log {}: {e}", self.path.display());
        }
    }

    /// The log's files, oldest first, each opened with its length now (for
    /// a backup): the file stays readable to that length whatever is
    /// appended or rotated afterwards.
    pub fn files_now(&self) -> Vec<(String, std::fs::File, u64)> {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.generations()
            .into_iter()
            .filter_map(|p| {
                let f = std::fs::File::open(&p).ok()?;
                let len = f.metadata().ok()?.len();
                let name = p.file_name()?.to_string_lossy().into_owned();
                Some((name, f, len))
            })
            .collect()
    }

    /// Every generation's path, oldest first, the current file last.
    fn generations(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = (1..=self.keep)
            .rev()
            .map(|i| self.path.with_extension(format!("log.{i}")))
            .collect();
        files.push(self.path.clone());
        files
    }

    /// Puts a restored box's history before this log's own events: the
    /// files in `older` (oldest first, each a whole generation of another
    /// box's log), then `boundary` (one event line saying where that
    /// history ends), then what this log holds; kept to its generations
    /// (the oldest dropped, as a rotation would). Files are copied, never
    /// read whole into memory. Each new one is written and synced beside
    /// its place and then renamed over it, newest first: a power cut in
    /// between leaves every event in some file (one of this log's may
    /// then be in two: read twice, never lost), and `drop_restoring`
    /// removes what was staged. Answers the bytes restored.
    pub fn restore_history(&self, older: &[PathBuf], boundary: &str) -> std::io::Result<u64> {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let named = |what: &str, p: &Path, e: std::io::Error| {
            std::io::Error::new(e.kind(), format!("{what} {}: {e}", p.display()))
        };
        let mut restored = 0u64;
        let mut sources = Vec::new();
        for p in older {
            let len = std::fs::metadata(p)
                .map_err(|e| named("reading", p, e))?
                .len();
            restored += len;
            if len > 0 {
                sources.push(p.clone());
            }
        }
        // This log's own events, after the boundary, as one file.
        let mine = restoring(&self.path.with_extension("mine"));
        {
            let mut out = private_file(&mine).map_err(|e| named("writing", &mine, e))?;
            out.write_all(boundary.trim_end().as_bytes())
                .and_then(|_| out.write_all(b"\n"))
                .map_err(|e| named("writing", &mine, e))?;
            for g in self.generations() {
                match std::fs::File::open(&g) {
                    Ok(mut f) => {
                        std::io::copy(&mut f, &mut out).map_err(|e| named("copying", &g, e))?;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(named("reading", &g, e)),
                }
            }
            out.sync_all().map_err(|e| named("writing", &mine, e))?;
        }
        sources.push(mine.clone());
        let drop_n = sources.len().saturating_sub(self.keep as usize + 1);
        let sources = &sources[drop_n..];
        // Newest into audit.log, the ones before into .1, .2, ...
        let gens = self.generations();
        let targets: Vec<&PathBuf> = gens.iter().rev().take(sources.len()).collect();
        for (src, target) in sources.iter().rev().zip(&targets) {
            let staged = restoring(target);
            if *src == mine {
                std::fs::rename(&mine, &staged).map_err(|e| named("staging", &staged, e))?;
                continue;
            }
            let mut from = std::fs::File::open(src).map_err(|e| named("reading", src, e))?;
            let mut to = private_file(&staged).map_err(|e| named("writing", &staged, e))?;
            std::io::copy(&mut from, &mut to)
                .and_then(|_| to.sync_all())
                .map_err(|e| named("writing", &staged, e))?;
        }
        for target in &targets {
            std::fs::rename(restoring(target), target).map_err(|e| named("renaming", target, e))?;
        }
        for stale in gens.iter().rev().skip(targets.len()) {
            match std::fs::remove_file(stale) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(named("removing", stale, e))
                }
                _ => {}
            }
        }
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| named("syncing", dir, e))?;
        }
        Ok(restored)
    }

    /// Removes files a restore staged and a power cut left (at boot).
    pub fn drop_restoring(&self) {
        let Some(dir) = self.path.parent() else {
            return;
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().ends_with(".restoring") {
                if let Err(err) = std::fs::remove_file(e.path()) {
                    log::warn!("removing {}: {err}", e.path().display());
                }
            }
        }
    }

    /// Events, newest last, matching every `filters` key=value (string compare).
    pub fn read(&self, filters: &[(String, String)], limit: usize) -> Vec<AuditEvent> {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        for f in self.generations() {
            let Ok(text) = std::fs::read_to_string(&f) else {
                continue;
            };
            for line in text.lines() {
                let Ok(ev) = serde_json::from_str::<AuditEvent>(line) else {
                    continue;
                };
                let ok = filters.iter().all(|(k, want)| matches(&ev, k, want));
                if ok {
                    out.push(ev);
                }
            }
        }
        let skip = out.len().saturating_sub(limit);
        out.split_off(skip)
    }
}

/// A new file only its owner reads: a restore's staged audit history.
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

/// Where a restored generation is written before it is renamed over `target`.
fn restoring(target: &Path) -> PathBuf {
    let mut name = target.as_os_str().to_os_string();
    name.push(".restoring");
    PathBuf::from(name)
}

/// Whether `ev`'s field `key` reads as `want` (numbers and booleans as
/// they print).
fn matches(ev: &AuditEvent, key: &str, want: &str) -> bool {
    match key {
        "event" => ev.event == want,
        "ts" => ev.ts.to_string() == want,
        _ => match ev.fields.get(key) {
            Some(Value::String(s)) => s == want,
            Some(other) => {
                other.as_u64().map(|n| n.to_string()).as_deref() == Some(want)
                    || other.as_bool().map(|b| b.to_string()).as_deref() == Some(want)
            }
            None => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn appends_rotates_and_filters() {
        let dir = std::env::temp_dir().join(format!("paddock-audit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let log = AuditLog::new(&dir, 200, 3);
        for i in 0..20 {
            log.record(
                "exec_ended",
                json!({"workspace": format!("ws_{}", i % 2), "exit_code": i}),
            );
        }
        assert!(dir.join("audit.log.1").exists(), "rotated");
        assert!(!dir.join("audit.log.4").exists(), "only `keep` generations");
        let ws1 = log.read(&[("workspace".into(), "ws_1".into())], 100);
        assert!(!ws1.is_empty() && ws1.iter().all(|e| e.text("workspace") == Some("ws_1")));
        assert_eq!(log.read(&[], 2).len(), 2);
        let code = log.read(&[("exit_code".into(), "19".into())], 100);
        assert_eq!(code.len(), 1, "numbers match as they print: {code:?}");
        assert_eq!(code[0].event, "exec_ended");
        assert_eq!(
            log.read(&[("event".into(), "nothing".into())], 100).len(),
            0
        );
        // A field named like the log's own keys does not replace them.
        log.record(
            "token_revoked",
            json!({"event": "forged", "ts": 0, "token": "t"}),
        );
        let last = log.read(&[], 1);
        assert_eq!(last[0].event, "token_revoked");
        assert!(last[0].ts > 0 && !last[0].fields.contains_key("event"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn restored_history_goes_before_this_logs_own_events() {
        let root = std::env::temp_dir().join(format!("paddock-audit-r-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let (old_dir, new_dir) = (root.join("old"), root.join("new"));
        let old = AuditLog::new(&old_dir, 200, 3);
        for i in 0..6 {
            old.record("token_issued", json!({"n": i}));
        }
        let older: Vec<PathBuf> = old
            .files_now()
            .into_iter()
            .map(|(name, _, _)| old_dir.join(name))
            .collect();
        assert!(older.len() >= 2, "the old log rotated: {older:?}");
        let new = AuditLog::new(&new_dir, 200, 3);
        new.record("token_issued", json!({"n": "mine"}));
        let boundary = r#"{"ts": 1, "event": "restored_history_ends"}"#;
        let bytes = new.restore_history(&older, boundary).expect("restore");
        assert!(bytes > 0);
        let all = new.read(&[], 100);
        let ns: Vec<String> = all
            .iter()
            .map(|e| {
                e.fields
                    .get("n")
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| e.event.clone())
            })
            .collect();
        assert_eq!(
            ns,
            [
                "0",
                "1",
                "2",
                "3",
                "4",
                "5",
                "restored_history_ends",
                "\"mine\""
            ],
            "in order, none lost"
        );
        assert!(
            std::fs::read_dir(&new_dir)
                .expect("dir")
                .flatten()
                .all(|e| !e.file_name().to_string_lossy().ends_with(".restoring")),
            "nothing staged is left"
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}
