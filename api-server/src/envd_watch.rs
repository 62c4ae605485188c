//! envd's directory watching on the agent's inotify watch: `WatchDir` (a
//! stream, the async SDK's) and the polled `CreateWatcher` /
//! `GetWatcherEvents` / `RemoveWatcher` (the sync SDK's). A polled watcher
//! lives in this process: its events wait in a bounded queue for its
//! creator (the same key, the same sandbox) to take them, and it ends when
//! removed, when its sandbox's agent ends it, or after `IDLE` unpolled.
//! What it queues is bounded in bytes, per watcher and in all, since a
//! guest decides how many events there are and how long their names.

use crate::bridge::Exchange;
use crate::connect::{self, frame, refuse, rpc_error, unary_body, CONTENT_TYPE, END_STREAM};
use crate::http;
use crate::shared::Shared;
use paddock_agent_client::{AgentClient, DirWatch};
use paddock_api_channel::Purpose;
use paddock_proto::{FsEvent, FsEventKind, User};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Most polled watchers in the process.
const MAX_POLLED: usize = 128;
/// Most polled watchers one key holds.
const MAX_POLLED_PER_KEY: usize = 16;
/// Bytes of event names a polled watcher keeps between polls; later events
/// are dropped until it is polled.
const MAX_QUEUED_BYTES: usize = 256 << 10;
/// Bytes of event names all polled watchers keep together: well inside the
/// API process's memory, whatever the guests do.
const MAX_ALL_QUEUED_BYTES: usize = 8 << 20;
/// Longest name kept (a path below the watched directory).
const MAX_NAME: usize = 4096;
/// A polled watcher nobody polls for this long is ended.
const IDLE: Duration = Duration::from_secs(600);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WatchRequest {
    path: String,
    #[serde(default)]
    recursive: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WatcherRef {
    watcher_id: String,
}

struct Polled {
    owner: [u8; 32],
    sandbox: String,
    queue: Mutex<Queue>,
    /// The agent connection, to end the watch.
    stream: UnixStream,
}

#[derive(Default)]
struct Queue {
    /// Kept compact; made envd's JSON only when polled.
    events: VecDeque<FsEvent>,
    /// Bytes of names in `events`.
    bytes: usize,
    /// Why the watch ended, once it has.
    ended: Option<String>,
    last_poll: Option<Instant>,
}

impl Polled {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn idle(&self, now: Instant) -> bool {
        self.queue()
            .last_poll
            .is_some_and(|t| now.duration_since(t) > IDLE)
    }
}

impl Drop for Polled {
    fn drop(&mut self) {
        let bytes = self.queue().bytes;
        QUEUED.fetch_sub(bytes, Ordering::SeqCst);
    }
}

/// Ends the watchers nobody polled for IDLE.
fn sweep(all: &mut HashMap<String, Arc<Polled>>, now: Instant) {
    all.retain(|_, w| {
        let keep = !w.idle(now);
        if !keep {
            let _ = w.stream.shutdown(std::net::Shutdown::Both);
        }
        keep
    });
}

fn polled() -> MutexGuard<'static, HashMap<String, Arc<Polled>>> {
    static POLLED: std::sync::LazyLock<Mutex<HashMap<String, Arc<Polled>>>> =
        std::sync::LazyLock::new(|| Mutex::new(HashMap::new()));
    POLLED.lock().unwrap_or_else(|e| e.into_inner())
}

/// Bytes queued in all polled watchers.
static QUEUED: AtomicUsize = AtomicUsize::new(0);

/// Cuts a name to MAX_NAME bytes, at a character's edge.
fn truncate(name: &mut String) {
    if name.len() > MAX_NAME {
        let mut end = MAX_NAME;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
}

fn owner_of(bearer: &str) -> [u8; 32] {
    Sha256::digest(bearer.as_bytes()).into()
}

/// envd's FilesystemEvent.
fn event(e: &FsEvent) -> Value {
    let kind = match e.kind {
        FsEventKind::Create => "EVENT_TYPE_CREATE",
        FsEventKind::Write => "EVENT_TYPE_WRITE",
        FsEventKind::Remove => "EVENT_TYPE_REMOVE",
        FsEventKind::Rename => "EVENT_TYPE_RENAME",
        FsEventKind::Chmod => "EVENT_TYPE_CHMOD",
    };
    json!({"name": e.name, "type": kind})
}

/// The agent watching `path` for the call's user.
fn open(
    shared: &Shared,
    req: &http::Request,
    id: &str,
    body: WatchRequest,
) -> Result<DirWatch, (u16, Value)> {
    let root = connect::envd_root(req);
    let path = connect::absolute(&body.path, root).map_err(|m| rpc_error(400, m))?;
    let purpose = Purpose::Inspect {
        path: path.clone(),
        root,
    };
    let (_, stream) = crate::handling::open_agent(shared, &req.bearer, id, purpose)
        .map_err(|(status, b)| rpc_error(status, b["error"].as_str().unwrap_or("refused")))?;
    let user = if root { User::Root } else { User::Agent };
    AgentClient::from_connected(stream)
        .as_user(user)
        .watch_dir(&path, body.recursive)
        .map_err(connect::agent_error)
}

/// `WatchDir`: the changes as they come, until the client leaves.
pub fn stream(shared: &Shared, req: &http::Request, io: &mut Exchange, id: &str) {
    let parsed = connect::stream_request(req, io).and_then(|m| {
        serde_json::from_slice::<WatchRequest>(&m).map_err(|e| rpc_error(400, e.to_string()))
    });
    let mut watch = match parsed.and_then(|body| open(shared, req, id, body)) {
        Ok(w) => w,
        Err((status, body)) => {
            refuse(io, status, body["message"].as_str().unwrap_or("refused"));
            return;
        }
    };
    if http::start_stream(&mut io.out, CONTENT_TYPE).is_err()
        || io.out.send(&frame(0, &json!({"start": {}}))).is_err()
    {
        return;
    }
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    if let (Some(gone), Ok(agent)) = (io.out.gone(), watch.stream().try_clone()) {
        io.out.runtime().spawn(async move {
            tokio::select! {
                _ = gone => {
                    let _ = agent.shutdown(std::net::Shutdown::Both);
                }
                _ = finished => {}
            }
        });
    }
    let end = loop {
        match watch.next_batch() {
            Ok(batch) => {
                let mut out = Vec::new();
                for e in &batch {
                    out.extend(frame(0, &json!({ "filesystem": event(e) })));
                }
                if io.out.send(&out).is_err() {
                    drop(done);
                    return;
                }
            }
            Err(e) => break e,
        }
    };
    drop(done);
    let last = frame(
        END_STREAM,
        &json!({"error": {"code": "unavailable", "message": format!("the watch ended: {end}")}}),
    );
    if io.out.send(&last).is_ok() {
        io.out.finish();
    }
}

/// `CreateWatcher`, `GetWatcherEvents`, `RemoveWatcher`.
pub fn unary(
    shared: &Shared,
    req: &http::Request,
    io: &mut Exchange,
    id: &str,
    method: &str,
) -> Result<(u16, Value), (u16, Value)> {
    let body = unary_body(req, io)?;
    let owner = owner_of(&req.bearer);
    match method {
        "CreateWatcher" => {
            let body: WatchRequest =
                serde_json::from_value(body).map_err(|e| rpc_error(400, e.to_string()))?;
            let now = Instant::now();
            {
                // Idle ones go first; then the caps.
                let mut all = polled();
                sweep(&mut all, now);
                let mine = all.values().filter(|w| w.owner == owner).count();
                if all.len() >= MAX_POLLED || mine >= MAX_POLLED_PER_KEY {
                    return Err(rpc_error(
                        429,
                        "too many directory watchers; remove some (WatchHandle.stop)",
                    ));
                }
            }
            let mut watch = open(shared, req, id, body)?;
            let stream = watch
                .stream()
                .try_clone()
                .map_err(|e| rpc_error(503, format!("out of descriptors: {e}")))?;
            let watcher = Arc::new(Polled {
                owner,
                sandbox: id.to_string(),
                queue: Mutex::new(Queue {
                    last_poll: Some(now),
                    ..Queue::default()
                }),
                stream,
            });
            // A polled watcher's id, which only its owner should be able to name.
            let watcher_id = crate::random::hex(12)
                .map(|h| format!("w_{h}"))
                .map_err(|e| rpc_error(503, format!("the random source failed: {e}")))?;
            polled().insert(watcher_id.clone(), watcher.clone());
            std::thread::spawn(move || loop {
                match watch.next_batch() {
                    Ok(batch) => {
                        let mut q = watcher.queue();
                        for mut e in batch {
                            truncate(&mut e.name);
                            let size = e.name.len() + 16;
                            if q.bytes + size > MAX_QUEUED_BYTES
                                || QUEUED.load(Ordering::SeqCst) + size > MAX_ALL_QUEUED_BYTES
                            {
                                continue;
                            }
                            q.bytes += size;
                            QUEUED.fetch_add(size, Ordering::SeqCst);
                            q.events.push_back(e);
                        }
                    }
                    Err(e) => {
                        watcher.queue().ended = Some(e.to_string());
                        return;
                    }
                }
            });
            Ok((200, json!({ "watcherId": watcher_id })))
        }
        "GetWatcherEvents" | "RemoveWatcher" => {
            let body: WatcherRef =
                serde_json::from_value(body).map_err(|e| rpc_error(400, e.to_string()))?;
            let mut all = polled();
            sweep(&mut all, Instant::now());
            // Another key's watcher, or another sandbox's, is no one's.
            let found = all
                .get(&body.watcher_id)
                .filter(|w| w.owner == owner && w.sandbox == id)
                .cloned();
            let Some(w) = found else {
                return Err(rpc_error(
                    404,
                    format!("no watcher {} here", body.watcher_id),
                ));
            };
            if method == "RemoveWatcher" {
                all.remove(&body.watcher_id);
                let _ = w.stream.shutdown(std::net::Shutdown::Both);
                return Ok((200, json!({})));
            }
            drop(all);
            let mut q = w.queue();
            q.last_poll = Some(Instant::now());
            let events: Vec<Value> = q.events.drain(..).map(|e| event(&e)).collect();
            QUEUED.fetch_sub(q.bytes, Ordering::SeqCst);
            q.bytes = 0;
            if events.is_empty() {
                if let Some(why) = &q.ended {
                    return Err(rpc_error(503, format!("the watch ended: {why}")));
                }
            }
            Ok((200, json!({ "events": events })))
        }
        other => Err(rpc_error(
            404,
            format!("filesystem.Filesystem/{other} is not a method envd serves"),
        )),
    }
}
