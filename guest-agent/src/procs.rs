//! Processes that outlive the connection that started them (what E2B's
//! process service and terminals need): started by `Spawn`, found again by
//! pid or tag, fed input, signalled and resized from any connection, and
//! watched by any number of connections at once.
//!
//! Output goes to whoever watches when it comes; with no one watching it
//! is read and dropped, so a process is never stalled by a full pipe. Each
//! watcher has a short queue and a writer of its own; one whose queue stays
//! full for `WATCHER_STALL` is dropped, so a watcher that stops reading (or
//! reads a byte at a time) stalls the process and the others that long at
//! most. Input is written with a deadline, so a process that never reads
//! it holds no agent thread for long.

use crate::conn::{Conn, ConnError};
use crate::exec::{self, Launched, Stdio3};
use paddock_proto::{
    AgentMsg, ErrorKind, ExitStatus, HostMsg, ProcInfo, ProcRef, PtySize, SpawnRequest,
};
use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Most spawned processes running at once.
const MAX_PROCS: usize = 256;
/// Most connections watching one process.
const MAX_WATCHERS: usize = 16;
/// Most connections watching any process (each holds a descriptor and a
/// thread of PID 1's).
const MAX_ALL_WATCHERS: usize = 256;
/// Messages queued for one watcher before the producer waits.
const OUTBOX: usize = 16;
/// How long `Input` may wait for a process to take its input.
const INPUT_DEADLINE: Duration = Duration::from_secs(if cfg!(test) { 1 } else { 20 });
/// Most bytes of argv `ListProcs` reports per process (the answer must fit
/// a frame).
const LISTED_ARGV: usize = 4096;
/// Longest tag.
const MAX_TAG: usize = 256;
/// How long one send to a watcher may wait before it is dropped.
const WATCHER_STALL: Duration = Duration::from_secs(if cfg!(test) { 1 } else { 30 });

struct Proc {
    pid: u32,
    tag: Option<String>,
    argv: Vec<String>,
    cwd: String,
    /// Where `Input` goes: the stdin pipe or the terminal's master side
    /// (non-blocking); None once closed (or when started without input).
    input: Mutex<Option<Arc<File>>>,
    /// Held while writing input, so two inputs never interleave.
    writing: Mutex<()>,
    /// The terminal's master side, for `Resize`.
    terminal: Option<File>,
    kill_tree: Arc<dyn Fn() + Send + Sync>,
    /// Set once its end is known: from then on nothing is signalled.
    reaped: AtomicBool,
    watch: Mutex<Watch>,
}

#[derive(Default)]
struct Watch {
    watchers: Vec<Watcher>,
    /// How it ended, once it has (then it leaves the table).
    exited: Option<ExitStatus>,
}

/// Watchers of all processes, against MAX_ALL_WATCHERS.
static WATCHERS: AtomicUsize = AtomicUsize::new(0);

/// A connection watching a process: its queue, emptied by a writer thread.
struct Watcher {
    id: u64,
    conn: Conn,
    outbox: Arc<Outbox>,
}

#[derive(Default)]
struct Outbox {
    state: Mutex<(VecDeque<AgentMsg>, bool)>,
    changed: Condvar,
}

impl Outbox {
    fn lock(&self) -> MutexGuard<'_, (VecDeque<AgentMsg>, bool)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `msg`, waiting while the queue is full, up to WATCHER_STALL
    /// in all. False when the watcher is gone or too slow.
    fn push(&self, msg: AgentMsg) -> bool {
        let until = Instant::now() + WATCHER_STALL;
        let mut st = self.lock();
        while st.0.len() >= OUTBOX && !st.1 {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            st = self
                .changed
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        if st.1 {
            return false;
        }
        st.0.push_back(msg);
        self.changed.notify_all();
        true
    }

    /// No more messages: the writer sends what is queued and ends.
    fn close(&self) {
        self.lock().1 = true;
        self.changed.notify_all();
    }
}

impl Watcher {
    /// Starts the writer of a new watcher on `conn`, which has been sent
    /// `Started` already. None when too many connections watch.
    fn start(conn: &Conn) -> Option<Watcher> {
        if WATCHERS.fetch_add(1, Ordering::SeqCst) >= MAX_ALL_WATCHERS {
            WATCHERS.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        let outbox = Arc::new(Outbox::default());
        let (out, c) = (outbox.clone(), conn.clone());
        std::thread::spawn(move || {
            loop {
                let msg = {
                    let mut st = out.lock();
                    loop {
                        if let Some(m) = st.0.pop_front() {
                            break Some(m);
                        }
                        if st.1 {
                            break None;
                        }
                        st = out.changed.wait(st).unwrap_or_else(|e| e.into_inner());
                    }
                };
                out.changed.notify_all();
                let Some(msg) = msg else { break };
                if c.send(&msg).is_err() {
                    out.close();
                    c.shutdown();
                    break;
                }
            }
            WATCHERS.fetch_sub(1, Ordering::SeqCst);
        });
        Some(Watcher {
            id: next_watcher_id(),
            conn: conn.clone(),
            outbox,
        })
    }
}

impl Proc {
    fn watch(&self) -> MutexGuard<'_, Watch> {
        self.watch.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `msg` for every watcher, dropping those gone or too slow.
    fn broadcast(&self, msg: &AgentMsg) {
        let mut w = self.watch();
        w.watchers.retain(|watcher| {
            let ok = watcher.outbox.push(msg.clone());
            if !ok {
                watcher.outbox.close();
                watcher.conn.shutdown();
            }
            ok
        });
    }

    fn info(&self) -> ProcInfo {
        // Cut to LISTED_ARGV bytes in all, at an argument's end.
        let mut argv = Vec::new();
        let mut bytes = 0;
        for a in &self.argv {
            bytes += a.len();
            if bytes > LISTED_ARGV {
                break;
            }
            argv.push(a.clone());
        }
        ProcInfo {
            pid: self.pid,
            tag: self.tag.clone(),
            argv,
            cwd: self.cwd.clone(),
            pty: self.terminal.is_some(),
        }
    }

    fn signal(&self, signal: i32) {
        if self.reaped.load(Ordering::SeqCst) {
            return;
        }
        // Only while the reaper still holds it unreaped: never a reused pid.
        if crate::reaper::signal_group(self.pid as i32, signal) && signal == libc::SIGKILL {
            // And everything it started that left its group.
            (self.kill_tree)();
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
    let (reader, input) = match &terminal {
        Some(master) => match (master.try_clone(), master.try_clone()) {
            (Ok(r), Ok(i)) => (Some(r), Some(Arc::new(i))),
            (Err(e), _) | (_, Err(e)) => {
                drop(t);
                kill_tree();
                return conn.error(ErrorKind::SpawnFailed, format!("its terminal: {e}"));
            }
        },
        None => (
            None,
            child
                .stdin
                .take()
                .map(|s| Arc::new(File::from(std::os::fd::OwnedFd::from(s)))),
        ),
    };
    if let Some(i) = &input {
        // Input is written with a deadline (write_input).
        set_nonblocking(i);
    }
    let proc = Arc::new(Proc {
        pid,
        tag: req.tag.clone(),
        argv: req.exec.argv.clone(),
        cwd: req.exec.cwd.clone().unwrap_or_default(),
        input: Mutex::new(input),
        writing: Mutex::new(()),
        terminal,
        kill_tree: kill_tree.clone(),
        reaped: AtomicBool::new(false),
        watch: Mutex::new(Watch::default()),
    });
    let mut me = None;
    {
        let mut w = proc.watch();
        // Before any output, so this watcher sees it all.
        if conn.send(&AgentMsg::Started { pid }).is_ok() {
            if let Some(watcher) = Watcher::start(conn) {
                me = Some(watcher.id);
                w.watchers.push(watcher);
            }
        }
    }
    // A stale entry of an ended process whose pid this one reuses is
    // replaced; its end then removes only itself (by identity).
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
        Some(master) => vec![crate::pump::pump(
            Some(master),
            sink(&proc, AgentMsg::Stdout),
        )],
        None => vec![
            crate::pump::pump(child.stdout.take(), sink(&proc, AgentMsg::Stdout)),
            crate::pump::pump(child.stderr.take(), sink(&proc, AgentMsg::Stderr)),
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
            // Out of the table before anyone hears it ended, so a watcher
            // that saw the end never finds it listed.
            {
                let mut t = table();
                if t.get(&proc.pid).is_some_and(|p| Arc::ptr_eq(p, &proc)) {
                    t.remove(&proc.pid);
                }
            }
            proc.input.lock().unwrap_or_else(|e| e.into_inner()).take();
            {
                let mut w = proc.watch();
                w.exited = Some(exit);
                for watcher in w.watchers.drain(..) {
                    let _ = watcher.outbox.push(AgentMsg::Exited(exit));
                    watcher.outbox.close();
                }
            }
            exec::RUNNING.fetch_sub(1, Ordering::SeqCst);
            drop(cgroup);
            drop(child);
        });
    }
    match me {
        Some(me) => serve_watcher(conn, &proc, me),
        // Not watching (too many watch, or the host left at once): the
        // process goes on.
        None => Ok(()),
    }
}

/// `Attach`: this connection watches a running process from now on.
pub fn attach(conn: &Conn, to: &ProcRef) -> Result<(), ConnError> {
    let Some(proc) = find(to) else {
        return not_found(conn, to);
    };
    let me = {
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
        let Some(watcher) = Watcher::start(conn) else {
            drop(w);
            return conn.error(
                ErrorKind::InvalidRequest,
                format!("{MAX_ALL_WATCHERS} connections watch processes already"),
            );
        };
        let id = watcher.id;
        w.watchers.push(watcher);
        id
    };
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
                proc.watch().watchers.retain(|w| {
                    let mine = w.id == me;
                    if mine {
                        w.outbox.close();
                    }
                    !mine
                });
                return Ok(());
            }
        }
    }
}

fn set_nonblocking(f: &File) {
    let fd = f.as_raw_fd();
    // SAFETY: fcntl on a descriptor `f` owns, with integer arguments.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
    }
}

/// Writes `data` to the process's input, waiting at most INPUT_DEADLINE
/// in all for it to take the bytes.
fn write_input(proc: &Proc, data: &[u8]) -> Result<(), String> {
    // The input lock is not held while writing: CloseInput and the other
    // operations never wait for a process that does not read.
    let input = proc.input.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let Some(input) = input else {
        return Err("its input is closed (or it was started without one)".into());
    };
    let _one_writer = proc.writing.lock().unwrap_or_else(|e| e.into_inner());
    let until = Instant::now() + INPUT_DEADLINE;
    let mut rest = data;
    while !rest.is_empty() {
        // SAFETY: write reads at most rest.len() bytes of `rest`, on a
        // descriptor `input` keeps open.
        let n = unsafe { libc::write(input.as_raw_fd(), rest.as_ptr().cast(), rest.len()) };
        if n > 0 {
            rest = &rest[n as usize..];
            continue;
        }
        let e = std::io::Error::last_os_error();
        match e.kind() {
            std::io::ErrorKind::Interrupted => continue,
            std::io::ErrorKind::WouldBlock => {}
            _ => return Err(format!("writing its input: {e}")),
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "it took {} of {} bytes in {}s and reads no more",
                data.len() - rest.len(),
                data.len(),
                INPUT_DEADLINE.as_secs()
            ));
        }
        let mut fds = [libc::pollfd {
            fd: input.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        }];
        // SAFETY: poll reads and writes the one pollfd of `fds`.
        unsafe { libc::poll(fds.as_mut_ptr(), 1, left.as_millis().min(1000) as i32) };
    }
    Ok(())
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
