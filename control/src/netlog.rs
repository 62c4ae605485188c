//! Each workspace's record of where it connected (issue 17): what the
//! network services process reports every second (`net::activity`),
//! counted per key over the current minute here in PID 1, then written as
//! one JSON line per key and minute to `network.jsonl` in the workspace's
//! directory on the data partition (1 MiB, then one older generation; it
//! goes with the workspace). `GET /v1/workspaces/{id}/network` reads it.
//!
//! The reports come from a process a hostile guest talks to, so what they
//! say is bounded again here: names and reasons cut to length, and a cap
//! on the keys kept per minute.

use super::layout::data_dir;
use paddock_api_types::NetworkRecord;
use paddock_net_services::activity::{Counts, Decision, Key, Kind};
use std::collections::HashMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;

/// Size of the current file before it becomes the older generation.
const FILE_CAP: u64 = 1 << 20;
/// Keys counted over one minute, all workspaces together, and per
/// workspace (one workspace inventing names cannot push the others'
/// records out: past its share its new keys count as one "(more)").
const MAX_OPEN: usize = 16_384;
const MAX_OPEN_PER_WORKSPACE: usize = 2048;
const MAX_NAME: usize = 253;
const MAX_REASON: usize = 200;
const FILE: &str = "network.jsonl";

struct Open {
    minute: u64,
    first: u64,
    last: u64,
    counts: Counts,
}

static OPEN: Mutex<Option<HashMap<Key, Open>>> = Mutex::new(None);
/// Lookups answered and connections let through, per workspace, since it
/// started (what the `outbound_rate` signal watches grow).
static OUTBOUND: Mutex<Option<HashMap<String, u64>>> = Mutex::new(None);

/// Workspace `id`'s allowed lookups and connections so far.
pub fn outbound_total(id: &str) -> u64 {
    OUTBOUND
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .and_then(|m| m.get(id).copied())
        .unwrap_or(0)
}

/// Forgets the totals of workspaces not in `running`.
pub fn keep_totals_of(running: &[&str]) {
    if let Some(m) = OUTBOUND.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
        m.retain(|id, _| running.contains(&id.as_str()));
    }
}

fn cut(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
}

fn path(id: &str, older: bool) -> PathBuf {
    let p = data_dir(id).join(FILE);
    if older {
        p.with_extension("jsonl.1")
    } else {
        p
    }
}

fn record(key: &Key, o: &Open) -> NetworkRecord {
    NetworkRecord {
        from: o.first,
        to: o.last,
        kind: match key.kind {
            Kind::Dns => "dns",
            Kind::Tcp => "tcp",
        }
        .into(),
        name: key.name.clone(),
        dest: key.dest.map(|d| d.to_string()),
        decision: match key.decision {
            Decision::Allowed => "allowed",
            Decision::Denied => "denied",
        }
        .into(),
        reason: key.reason.clone(),
        count: o.counts.count,
        bytes_up: o.counts.bytes_up,
        bytes_down: o.counts.bytes_down,
        upstream_failed: o.counts.upstream_failed,
        mismatched: o.counts.mismatched,
        secrets_injected: o.counts.secrets_injected,
        secret_misuse: o.counts.secret_misuse,
        answers: o.counts.answers.iter().map(|a| a.to_string()).collect(),
    }
}

/// Appends closed records to their workspaces' files (only where the
/// workspace's directory still exists: a deleted one's are dropped).
fn write_out(closed: Vec<NetworkRecord>, ids: Vec<String>) {
    let mut by_ws: HashMap<String, Vec<u8>> = HashMap::new();
    for (r, id) in closed.into_iter().zip(ids) {
        let mut line = serde_json::to_vec(&r).unwrap_or_default();
        line.push(b'\n');
        by_ws.entry(id).or_default().extend(line);
    }
    for (id, lines) in by_ws {
        if !data_dir(&id).is_dir() {
            continue;
        }
        let current = path(&id, false);
        if std::fs::metadata(&current).is_ok_and(|m| m.len() >= FILE_CAP) {
            let _ = std::fs::rename(&current, path(&id, true));
        }
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&current)
            .and_then(|mut f| f.write_all(&lines));
        if let Err(e) = written {
            log::warn!("network log of {id}: {e}");
        }
    }
}

/// Takes one report's records at `now` (Unix seconds).
pub fn add_at(records: Vec<(Key, Counts)>, now: u64) {
    let minute = now - now % 60;
    let mut closed = Vec::new();
    let mut ids = Vec::new();
    {
        let mut open = OPEN.lock().unwrap_or_else(|p| p.into_inner());
        let all = open.get_or_insert_with(HashMap::new);
        // Last minute's keys are done.
        let done: Vec<Key> = all
            .iter()
            .filter(|(_, o)| o.minute != minute)
            .map(|(k, _)| k.clone())
            .collect();
        for k in done {
            if let Some(o) = all.remove(&k) {
                closed.push(record(&k, &o));
                ids.push(k.workspace.clone());
            }
        }
        // Keys per workspace, counted once here and kept up as keys come.
        let mut mine: HashMap<String, usize> = HashMap::new();
        for k in all.keys() {
            *mine.entry(k.workspace.clone()).or_default() += 1;
        }
        {
            let mut out = OUTBOUND.lock().unwrap_or_else(|p| p.into_inner());
            let out = out.get_or_insert_with(HashMap::new);
            for (key, counts) in records
                .iter()
                .filter(|(k, _)| k.decision == Decision::Allowed)
            {
                if key.workspace.len() <= 64 {
                    let n = out.entry(key.workspace.clone()).or_default();
                    *n = n.saturating_add(counts.count);
                }
            }
        }
        for (mut key, counts) in records {
            key.name = cut(&key.name, MAX_NAME);
            key.reason = cut(&key.reason, MAX_REASON);
            if key.workspace.len() > 64 {
                continue;
            }
            let full = all.len() >= MAX_OPEN
                || mine.get(&key.workspace).copied().unwrap_or(0) >= MAX_OPEN_PER_WORKSPACE;
            if !all.contains_key(&key) && full {
                key.name = "(more)".into();
                key.dest = None;
                key.reason = "more distinct destinations than are kept per minute".into();
                if !all.contains_key(&key) && all.len() >= MAX_OPEN + 4096 {
                    continue;
                }
            }
            if !all.contains_key(&key) {
                *mine.entry(key.workspace.clone()).or_default() += 1;
            }
            let o = all.entry(key).or_insert(Open {
                minute,
                first: now,
                last: now,
                counts: Counts::default(),
            });
            o.last = now;
            o.counts.merge(&counts);
            o.counts
                .answers
                .truncate(paddock_net_services::activity::MAX_ANSWERS);
        }
    }
    write_out(closed, ids);
}

pub fn add(records: Vec<(Key, Counts)>) {
    add_at(records, super::audit::now_s());
}

/// Workspace `id`'s records whose window ends at or after `since`, with
/// `decision` if given, oldest first, at most `limit` (the newest).
pub fn read(id: &str, since: u64, decision: Option<&str>, limit: usize) -> Vec<NetworkRecord> {
    let mut out: Vec<NetworkRecord> = [path(id, true), path(id, false)]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|text| {
            text.lines()
                .filter_map(|l| serde_json::from_str::<NetworkRecord>(l).ok())
                .collect::<Vec<_>>()
        })
        .collect();
    {
        let open = OPEN.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(all) = open.as_ref() {
            let mut current: Vec<NetworkRecord> = all
                .iter()
                .filter(|(k, _)| k.workspace == id)
                .map(|(k, o)| record(k, o))
                .collect();
            current.sort_by_key(|r| r.from);
            out.extend(current);
        }
    }
    out.retain(|r| r.to >= since && decision.is_none_or(|d| r.decision == d));
    let skip = out.len().saturating_sub(limit);
    out.split_off(skip)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddrV4};

    fn key(ws: &str, name: &str, decision: Decision) -> Key {
        Key {
            workspace: ws.into(),
            kind: Kind::Tcp,
            name: name.into(),
            dest: Some(SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 7), 443)),
            decision,
            reason: "allowlist\u{7}".into(),
        }
    }

    fn counts(n: u64, down: u64) -> Counts {
        Counts {
            count: n,
            bytes_down: down,
            ..Counts::default()
        }
    }

    #[test]
    fn a_minute_adds_up_is_written_out_and_read_back_filtered() {
        // No directory for this workspace on the host: records stay open,
        // and closed ones are dropped, never written elsewhere.
        let ws = "ws_netlog_test";
        add_at(
            vec![(key(ws, "a.test", Decision::Allowed), counts(1, 100))],
            6000,
        );
        add_at(
            vec![(key(ws, "a.test", Decision::Allowed), counts(2, 50))],
            6030,
        );
        add_at(
            vec![(key(ws, "b.test", Decision::Denied), counts(1, 0))],
            6031,
        );
        let now = read(ws, 0, None, 100);
        assert_eq!(now.len(), 2, "{now:?}");
        let a = now.iter().find(|r| r.name == "a.test").expect("a");
        assert_eq!((a.count, a.bytes_down, a.from, a.to), (3, 150, 6000, 6030));
        assert_eq!(a.reason, "allowlist", "control characters taken out");
        assert_eq!(a.dest.as_deref(), Some("203.0.113.7:443"));
        let denied = read(ws, 0, Some("denied"), 100);
        assert_eq!(denied.len(), 1);
        assert_eq!(read(ws, 0, None, 1).len(), 1, "limit keeps the newest");
        // The next minute closes them (no directory: dropped).
        add_at(
            vec![(key(ws, "c.test", Decision::Allowed), counts(1, 1))],
            6061,
        );
        let later = read(ws, 0, None, 100);
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].name, "c.test");
        assert!(!path(ws, false).exists());
    }
}
