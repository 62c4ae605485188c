//! Commands run for the MCP tools: to their end (run_command), or in the
//! background with their output kept for polling (start_command,
//! get_command), since a model's tool call should not wait minutes.

use crate::client::Api;
use crate::client::{api_error, ws_path};
use paddock_api_types::{ExecEvent, ExecRequest};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Most output kept per stream of a command: all of it for run_command
/// (the first MAX_OUTPUT bytes), what is not read yet for a background
/// command (polls take it away). The rest is counted, not kept.
pub const MAX_OUTPUT: usize = 256 << 10;
/// Most background commands kept at once (finished ones are dropped
/// first).
const MAX_JOBS: usize = 64;

/// What a command did.
#[derive(Default, Clone)]
pub struct Outcome {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Bytes not kept (over MAX_OUTPUT).
    pub dropped: u64,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    /// Why it could not run or was cut, when so.
    pub error: Option<String>,
    pub finished: bool,
}

impl Outcome {
    fn take(&mut self, event: ExecEvent) {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let keep = |buf: &mut Vec<u8>, data: String, dropped: &mut u64| {
            let bytes = b64.decode(data).unwrap_or_default();
            let room = MAX_OUTPUT.saturating_sub(buf.len());
            let n = bytes.len().min(room);
            buf.extend_from_slice(&bytes[..n]);
            *dropped += (bytes.len() - n) as u64;
        };
        match event {
            ExecEvent::Stdout { stdout } => keep(&mut self.stdout, stdout, &mut self.dropped),
            ExecEvent::Stderr { stderr } => keep(&mut self.stderr, stderr, &mut self.dropped),
            ExecEvent::Exit {
                exit_code,
                signal,
                timed_out,
                ..
            } => {
                self.exit_code = exit_code;
                self.signal = signal;
                self.timed_out = timed_out;
            }
            ExecEvent::Error { error, .. } => self.error = Some(error),
            ExecEvent::Started { .. } => {}
        }
    }
}

/// Runs `req` in workspace `id`, handing each event to `out` as it comes.
pub fn exec(api: &Api, id: &str, req: &ExecRequest, out: &Mutex<Outcome>) {
    let fail = |e: String| {
        let mut o = out.lock().unwrap_or_else(|p| p.into_inner());
        o.error = Some(e);
        o.finished = true;
    };
    let body = match serde_json::to_vec(req) {
        Ok(b) => b,
        Err(e) => return fail(format!("shaping the request: {e}")),
    };
    let mut r = match api.stream("POST", &ws_path(id, "/exec"), Some(&body)) {
        Ok(r) => r,
        Err(e) => return fail(e.to_string()),
    };
    if r.status != 200 || !r.chunked() {
        let body = r.body().unwrap_or_default();
        let answer = crate::client::Answer {
            status: r.status,
            body,
        };
        return fail(api_error(&answer).to_string());
    }
    let mut pending = Vec::new();
    loop {
        match r.next_chunk() {
            Ok(Some(chunk)) => pending.extend(chunk),
            Ok(None) => break,
            Err(e) => return fail(format!("the output stream broke: {e}")),
        }
        while let Some(nl) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=nl).collect();
            match serde_json::from_slice::<ExecEvent>(&line) {
                Ok(event) => out.lock().unwrap_or_else(|p| p.into_inner()).take(event),
                Err(e) => return fail(format!("a malformed output line: {e}")),
            }
        }
    }
    out.lock().unwrap_or_else(|p| p.into_inner()).finished = true;
}

struct Job {
    workspace: String,
    command: String,
    started: Instant,
    outcome: Mutex<Outcome>,
    /// Signalled when the outcome changes.
    changed: Condvar,
}

#[derive(Default)]
pub struct Jobs {
    jobs: Mutex<BTreeMap<String, Arc<Job>>>,
}

/// What a poll of a background command returns.
pub struct Poll {
    pub workspace: String,
    pub command: String,
    pub running: bool,
    pub seconds: f64,
    /// Output since the last poll.
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub outcome: Outcome,
}

impl Jobs {
    /// Starts `req` in the background; its id.
    pub fn start(
        &self,
        api: Arc<Api>,
        workspace: String,
        command: String,
        req: ExecRequest,
    ) -> Result<String, String> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        if jobs.len() >= MAX_JOBS {
            let done: Vec<String> = jobs
                .iter()
                .filter(|(_, j)| j.outcome.lock().unwrap_or_else(|p| p.into_inner()).finished)
                .map(|(k, _)| k.clone())
                .collect();
            match done.first() {
                Some(k) => {
                    jobs.remove(k);
                }
                None => {
                    return Err(format!(
                        "{MAX_JOBS} commands are running already; wait for some to end"
                    ))
                }
            }
        }
        let id = format!("cmd_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let job = Arc::new(Job {
            workspace: workspace.clone(),
            command,
            started: Instant::now(),
            outcome: Mutex::new(Outcome::default()),
            changed: Condvar::new(),
        });
        jobs.insert(id.clone(), job.clone());
        std::thread::spawn(move || {
            exec(&api, &workspace, &req, &job.outcome);
            job.changed.notify_all();
        });
        Ok(id)
    }

    /// Whether any command it started still runs.
    pub fn any_running(&self) -> bool {
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .any(|j| !j.outcome.lock().unwrap_or_else(|p| p.into_inner()).finished)
    }

    /// Its state, waiting up to `wait` for it to end first.
    pub fn poll(&self, id: &str, wait: Duration) -> Option<Poll> {
        let job = self
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()?;
        let until = Instant::now() + wait;
        let mut o = job.outcome.lock().unwrap_or_else(|p| p.into_inner());
        while !o.finished {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            o = job
                .changed
                .wait_timeout(o, left.min(Duration::from_millis(200)))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        // What is taken is gone from the job: its buffers hold only what
        // no poll has returned, so output keeps flowing past MAX_OUTPUT.
        let stdout = std::mem::take(&mut o.stdout);
        let stderr = std::mem::take(&mut o.stderr);
        Some(Poll {
            workspace: job.workspace.clone(),
            command: job.command.clone(),
            running: !o.finished,
            seconds: job.started.elapsed().as_secs_f64(),
            stdout,
            stderr,
            outcome: o.clone(),
        })
    }
}
