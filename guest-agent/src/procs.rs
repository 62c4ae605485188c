//! Processes that outlive the connection that started them (what E2B's
//! process service and terminals need): started by `Spawn`, found again by
//! pid or tag, fed input, signalled and resized from any connection, and
//! watched by any number of connections at once.
//!
//! Output goes to whoever watches when it comes; with no one watching it
//! is read and dropped, so a process is never stalled by a full pipe. A
//! watcher that stops reading is dropped after `WATCHER_STALL`, so it
//! cannot stall the process or the other watchers for longer.

use crate::conn::{Conn, ConnError};
use crate::exec::{self, Launched, Stdio3};
use paddock_proto::{
    AgentMsg, ErrorKind, ExitStatus, HostMsg, ProcInfo, ProcRef, PtySize, SpawnRequest,
};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Most spawned processes running at once.
const MAX_PROCS: usize = 256;
/// Most connections watching one process.
const MAX_WATCHERS: usize = 16;
/// Longest tag.
const MAX_TAG: usize = 256;
/// How long one send to a watcher may wait before it is dropped.
const WATCHER_STALL: Duration = Duration::from_secs(30);

struct Proc {
    pid: u32,
    tag: Option<String>,
    argv: Vec<String>,
    cwd: String,
    /// Where `Input` goes: the stdin pipe or the terminal's master side;
    /// None once closed (or when the process was started without input).
    input: Mutex<Option<Arc<File>>>,
    /// The terminal's master side, for `Resize`.
    terminal: Option<File>,
    kill_tree: Arc<dyn Fn() + Send + Sync>,
    /// Set once the reaper has reported its end: from then on its pid may
    /// belong to another process and is never signalled.
    reaped: AtomicBool,
    watch: Mutex<Watch>,
}

#[derive(Default)]
struct Watch {
    watchers: Vec<(u64, Conn)>,
    /// How it ended, once it has (then it leaves the table).
    exited: Option<ExitStatus>,
}

impl Proc {
    fn watch(&self) -> MutexGuard<'_, Watch> {
        self.watch.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends `msg` to every watcher, dropping those that fail.
    fn broadcast(&self, msg: &AgentMsg) {
        let mut w = self.watch();
        w.watchers.retain(|(_, conn)| {
            let ok = conn.send(msg).is_ok();
            if !ok {
                conn.shutdown();
            }
            ok
        });
    }

    fn info(&self) -> ProcInfo {
        ProcInfo {
            pid: self.pid,
            tag: self.tag.clone(),
            argv: self.argv.clone(),
            cwd: self.cwd.clone(),
            pty: self.terminal.is_some(),
        }
    }

    fn signal(&self, signal: i32) {
        if self.reaped.load(Ordering::SeqCst) {
            return;
        }
        if signal == libc::SIGKILL {
            (self.kill_tree)();
        } else {
            // SAFETY: kill on the process's own group (it leads its
            // session); not reaped yet, so the pid is still its.
            unsafe { libc::kill(-(self.pid as i32), signal) };
        }
    }
}

fn table() -> MutexGuard<'static, BTreeMap<u32, Arc<Proc>>> {
    static TABLE: Mutex<BTreeMap<u32, Arc<Proc>>> = Mutex::new(BTreeMap::new());
    TABLE.lock().unwrap_or_else(|e| e.into_inner())
}

fn find(to: &ProcRef) -> Option<Arc<Proc>> {
    let t = table();
    match to {
        ProcRef::Pid(pid) => t.get(pid).cloned(),
        ProcRef::Tag(tag) => t.values().find(|p| p.tag.as_ref() == Some(tag)).cloned(),
    }
}

fn not_found(conn: &Conn, to: &ProcRef) -> Result<(), ConnError> {
    let what = match to {
        ProcRef::Pid(pid) => format!("pid {pid}"),
        ProcRef::Tag(tag) => format!("tag {tag:?}"),
    };
    conn.error(
        ErrorKind::NotFound,
        format!("no running process with {what} (only processes started to outlive their connection are found)"),
    )
}

fn next_watcher_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// `Spawn`: starts the process, then serves this connection as its first
/// watcher.
pub fn spawn(conn: &Conn, req: SpawnRequest) -> Result<(), ConnError> {
    if let Some(tag) = &req.tag {
        if tag.is_empty() || tag.len() > MAX_TAG || tag.contains('\0') {
            return conn.error(
                ErrorKind::InvalidRequest,
                format!("a tag is 1 to {MAX_TAG} bytes without NUL"),
            );
        }
    }
    if let Some(size) = req.pty {
        if !crate::pty::valid(size) {
            return conn.error(
                ErrorKind::InvalidRequest,
                format!(
                    "terminal size {}x{}: each side 1 to 4096",
                    size.cols, size.rows
                ),
            );
        }
    }
    // Held while starting, so two spawns cannot take the same tag or pass
    // the cap together.
    let mut t = table();
    if t.len() >= MAX_PROCS {
        drop(t);
        return conn.error(
            ErrorKind::InvalidRequest,
            format!("{MAX_PROCS} processes are running already; end some first"),
        );
    }
    if let Some(tag) = &req.tag {
        if t.values().any(|p| p.tag.as_ref() == Some(tag)) {
            drop(t);
            return conn.error(
                ErrorKind::AlreadyExists,
                format!("a running process has tag {tag:?}"),
            );
        }
    }
    let (terminal, stdio) = match req.pty {
        Some(size) => match crate::pty::open(size) {
            Ok((master, slave)) => (Some(master), Stdio3::Terminal(slave)),
            Err(e) => {
                drop(t);
                return conn.error(ErrorKind::SpawnFailed, format!("a terminal: {e}"));
            }
        },
        None => (None, Stdio3::Pipes),
    };
    let launched = match exec::launch(&req.exec, stdio) {
        Ok(l) => l,
        Err((kind, message)) => {
            drop(t);
            return conn.error(kind, message);
        }
    };
    let Launched {
        mut child,
        ended,
        pid,
        kill_tree,
        cgroup,
    } = launched;
    let pid = pid as u32;
    let reader = match &terminal {
        Some(master) => master.try_clone().ok(),
        None => None,
    };
    let input = match &terminal {
        Some(master) => master.try_clone().ok().map(Arc::new),
        None => child
            .stdin
            .take()
            .map(|s| Arc::new(File::from(std::os::fd::OwnedFd::from(s)))),
    };
    let proc = Arc::new(Proc {
        pid,
        tag: req.tag.clone(),
        argv: req.exec.argv.clone(),
        cwd: req.exec.cwd.clone().unwrap_or_default(),
        input: Mutex::new(input),
        terminal,
        kill_tree: kill_tree.clone(),
        reaped: AtomicBool::new(false),
        watch: Mutex::new(Watch::default()),
    });
    let me = next_watcher_id();
    {
        let mut w = proc.watch();
        // Before any output, so this watcher sees it all.
        if conn.send(&AgentMsg::Started { pid }).is_ok() {
            let _ = conn.set_send_timeout(WATCHER_STALL);
            w.watchers.push((me, conn.clone()));
        }
    }
    t.insert(pid, proc.clone());
    drop(t);
    exec::RUNNING.fetch_add(1, Ordering::SeqCst);

    let sink = |p: &Arc<Proc>, wrap: fn(Vec<u8>) -> AgentMsg| {
        let p = p.clone();
        move |d: Vec<u8>| {
            p.broadcast(&wrap(d));
            true
        }
    };
    let pumps = match reader {
        Some(master) => vec![exec::pump(Some(master), sink(&proc, AgentMsg::Stdout))],
        None => vec![
            exec::pump(child.stdout.take(), sink(&proc, AgentMsg::Stdout)),
            exec::pump(child.stderr.take(), sink(&proc, AgentMsg::Stderr)),
        ],
    };
    {
        let proc = proc.clone();
        let timeout_ms = req.exec.timeout_ms;
        std::thread::spawn(move || {
            let (status, timed_out) = exec::wait(&ended, timeout_ms, &*kill_tree);
            proc.reaped.store(true, Ordering::SeqCst);
            for p in pumps {
                p.finish(exec::DRAIN_AFTER_EXIT);
            }
            let exit = exec::exit_status(status, timed_out);
            {
                let mut w = proc.watch();
                w.exited = Some(exit);
                for (_, conn) in w.watchers.drain(..) {
                    let _ = conn.send(&AgentMsg::Exited(exit));
                }
            }
            table().remove(&proc.pid);
            exec::RUNNING.fetch_sub(1, Ordering::SeqCst);
            drop(cgroup);
            drop(child);
        });
    }
    serve_watcher(conn, &proc, me)
}

/// `Attach`: this connection watches a running process from now on.
pub fn attach(conn: &Conn, to: &ProcRef) -> Result<(), ConnError> {
    let Some(proc) = find(to) else {
        return not_found(conn, to);
    };
    let me = next_watcher_id();
    {
        let mut w = proc.watch();
        if let Some(exit) = w.exited {
            drop(w);
            conn.send(&AgentMsg::Started { pid: proc.pid })?;
            return conn.send(&AgentMsg::Exited(exit));
        }
        if w.watchers.len() >= MAX_WATCHERS {
            drop(w);
            return conn.error(
                ErrorKind::InvalidRequest,
                format!("{MAX_WATCHERS} connections watch this process already"),
            );
        }
        conn.send(&AgentMsg::Started { pid: proc.pid })?;
        let _ = conn.set_send_timeout(WATCHER_STALL);
        w.watchers.push((me, conn.clone()));
    }
    serve_watcher(conn, &proc, me)
}

/// Reads what a watching connection sends (input and signals for the
/// process) until the host closes it; the process goes on.
fn serve_watcher(conn: &Conn, proc: &Arc<Proc>, me: u64) -> Result<(), ConnError> {
    loop {
        match conn.recv() {
            Ok(HostMsg::Stdin(data)) => {
                let _ = write_input(proc, &data);
            }
            Ok(HostMsg::StdinEof) => {
                proc.input.lock().unwrap_or_else(|e| e.into_inner()).take();
            }
            Ok(HostMsg::Signal(sig)) if (1..=64).contains(&sig) => proc.signal(sig),
            Ok(other) => {
                let name = crate::conn::name(&other);
                let _ = conn.error(
                    ErrorKind::UnexpectedMessage,
                    format!("{name} is not valid while watching a process"),
                );
            }
            Err(e) if e.is_protocol_error() => {
                let _ = conn.error(e.kind(), e.to_string());
            }
            Err(_) => {
                proc.watch().watchers.retain(|(id, _)| *id != me);
                return Ok(());
            }
        }
    }
}

fn write_input(proc: &Proc, data: &[u8]) -> Result<(), String> {
    // Written outside the lock: a process that does not read its input
    // blocks only this writer, not CloseInput or the other operations.
    let input = proc.input.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let Some(input) = input else {
        return Err("its input is closed (or it was started without one)".into());
    };
    (&*input)
        .write_all(data)
        .map_err(|e| format!("writing its input: {e}"))
}

/// The one-shot operations on a running process: each answered `Done`
/// (or `Procs`), or an error.
pub fn operate(conn: &Conn, msg: HostMsg) -> Result<(), ConnError> {
    let (to, op) = match msg {
        HostMsg::ListProcs => {
            let procs = table().values().map(|p| p.info()).collect();
            return conn.send(&AgentMsg::Procs(procs));
        }
        HostMsg::Input { to, data } => (to, Op::Input(data)),
        HostMsg::CloseInput(to) => (to, Op::CloseInput),
        HostMsg::SignalProc { to, signal } => (to, Op::Signal(signal)),
        HostMsg::Resize { to, size } => (to, Op::Resize(size)),
        other => {
            return conn.error(
                ErrorKind::UnexpectedMessage,
                format!("{} is not a process operation", crate::conn::name(&other)),
            )
        }
    };
    let Some(proc) = find(&to) else {
        return not_found(conn, &to);
    };
    let done = match op {
        Op::Input(data) => write_input(&proc, &data),
        Op::CloseInput if proc.terminal.is_some() => {
            Err("a terminal's input has no end; send ^D (0x04) to end a line of input".into())
        }
        Op::CloseInput => {
            proc.input.lock().unwrap_or_else(|e| e.into_inner()).take();
            Ok(())
        }
        Op::Signal(sig) if (1..=64).contains(&sig) => {
            proc.signal(sig);
            Ok(())
        }
        Op::Signal(sig) => Err(format!("signal {sig}: not 1 to 64")),
        Op::Resize(size) if !crate::pty::valid(size) => Err(format!(
            "terminal size {}x{}: each side 1 to 4096",
            size.cols, size.rows
        )),
        Op::Resize(size) => match &proc.terminal {
            Some(master) => crate::pty::resize(master, size).map_err(|e| format!("resizing: {e}")),
            None => Err("it runs without a terminal; only terminals have a size".into()),
        },
    };
    match done {
        Ok(()) => conn.send(&AgentMsg::Done),
        Err(message) => conn.error(ErrorKind::InvalidRequest, message),
    }
}

enum Op {
    Input(Vec<u8>),
    CloseInput,
    Signal(i32),
    Resize(PtySize),
}

#[cfg(test)]
#[path = "procs_tests.rs"]
mod tests;
