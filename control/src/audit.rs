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

    /// Events, newest last, matching every `filters` key=value (string compare).
    pub fn read(&self, filters: &[(String, String)], limit: usize) -> Vec<AuditEvent> {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut files = Vec::new();
        for i in (1..=self.keep).rev() {
            files.push(self.path.with_extension(format!("log.{i}")));
        }
        files.push(self.path.clone());
        let mut out = Vec::new();
        for f in files {
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
}
