//! host-init's log: the kernel log (/dev/kmsg, where a crash dump or a
//! serial console finds it) and the console the operator is looking at.
//! Nothing secret is ever passed here: no tokens, no keys, no env values.

//! host-init's log: the kernel log (/dev/kmsg, where a crash dump or a
//! serial console finds it) and the console the operator is looking at.
//! Nothing secret is ever passed here: no tokens, no keys, no env values.
//!
//! Logging never waits for a console. Each console has a writer thread fed
//! from a bounded queue: a serial line that stops taking output (a UART
//! that lost its transmit interrupt, a terminal that sent XOFF) holds back
//! only its own text, never the thread that logged it. With consoles
//! written in place, one stalled UART once froze every PID 1 thread that
//! logged, and with them workspace creation. kmsg is written directly: it
//! never blocks, and it keeps the whole log.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Text a console may hold back before newer text is dropped.
const MAX_PENDING: usize = 256 * 1024;
/// How long a console may sit on one write before the kernel log says so.
const STALL_REPORT: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Pending {
    chunks: VecDeque<Vec<u8>>,
    bytes: usize,
    dropped: usize,
    /// When the writer started its current write, while it is in one.
    writing_since: Option<Instant>,
    stall_reported: bool,
    closed: bool,
}

struct Console {
    name: String,
    pending: Mutex<Pending>,
    ready: Condvar,
}

impl Console {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, text: Vec<u8>) {
        let mut p = self.lock();
        if p.closed {
            return;
        }
        if p.bytes + text.len() > MAX_PENDING {
            p.dropped += text.len();
            return;
        }
        p.bytes += text.len();
        p.chunks.push_back(text);
        self.ready.notify_one();
    }

    /// The writer thread: blocking writes, one chunk at a time.
    fn drain(&self, mut file: File) {
        loop {
            let chunk = {
                let mut p = self.lock();
                loop {
                    if let Some(c) = p.chunks.pop_front() {
                        p.bytes -= c.len();
                        p.writing_since = Some(Instant::now());
                        break c;
                    }
                    if p.closed {
                        return;
                    }
                    p = self.ready.wait(p).unwrap_or_else(|e| e.into_inner());
                }
            };
            let _ = file.write_all(&chunk);
            let mut p = self.lock();
            p.writing_since = None;
            if p.stall_reported {
                p.stall_reported = false;
                let dropped = std::mem::take(&mut p.dropped);
                drop(p);
                kmsg_line(
                    Level::Warn,
                    &format!(
                        "console {} takes output again; {dropped} bytes were dropped meanwhile",
                        self.name
                    ),
                );
            }
            self.ready.notify_all();
        }
    }
}

struct Sinks {
    kmsg: Option<File>,
    /// Every active console (serial and screen), not just /dev/console,
    /// which is only the last one named on the command line.
    consoles: Vec<Arc<Console>>,
}

static SINKS: Mutex<Sinks> = Mutex::new(Sinks {
    kmsg: None,
    consoles: Vec::new(),
});

fn sinks() -> std::sync::MutexGuard<'static, Sinks> {
    SINKS.lock().unwrap_or_else(|e| e.into_inner())
}

fn open_console(path: &str) -> Option<File> {
    // O_NOCTTY: PID 1 must not acquire a controlling terminal, or a Ctrl-C
    // typed on the serial line would reach it as SIGINT.
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(path)
        .ok()
}

/// What the crates of ours outside host-init (the key store) log through
/// the `log` facade, written like our own lines. Only ours: the libraries
/// under us (rustls, hyper) log what a peer did wrong, and a hostile
/// client or guest must not be able to write the console that way.
struct Facade;

impl ::log::Log for Facade {
    fn enabled(&self, m: &::log::Metadata) -> bool {
        m.level() <= ::log::Level::Info && m.target().starts_with("paddock_")
    }

    fn log(&self, r: &::log::Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let level = match r.level() {
            ::log::Level::Error => Level::Error,
            ::log::Level::Warn => Level::Warn,
            ::log::Level::Info => Level::Info,
            // Below info nothing is written: the console is for a person.
            ::log::Level::Debug | ::log::Level::Trace => return,
        };
        log(level, *r.args());
    }

    fn flush(&self) {}
}

static FACADE: Facade = Facade;

/// Routes the `log` facade here (once; later calls change nothing): PID 1
/// at `init`, and the roles whose crates log through it (the API process).
pub fn install_facade() {
    if ::log::set_logger(&FACADE).is_ok() {
        ::log::set_max_level(::log::LevelFilter::Info);
    }
}

/// Opens the sinks and starts a writer per console; safe to call again
/// after /dev is mounted (the previous writers finish what they hold).
pub fn init() {
    install_facade();
    let mut files = Vec::new();
    let active = std::fs::read_to_string("/sys/class/tty/console/active").unwrap_or_default();
    for name in active.split_whitespace() {
        if let Some(f) = open_console(&format!("/dev/{name}")) {
            files.push((name.to_string(), f));
        }
    }
    if files.is_empty() {
        if let Some(f) = open_console("/dev/console") {
            files.push(("console".to_string(), f));
        }
    }
    let mut consoles = Vec::new();
    for (name, file) in files {
        let c = Arc::new(Console {
            name,
            pending: Mutex::new(Pending::default()),
            ready: Condvar::new(),
        });
        let writer = c.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("console-{}", c.name))
            .spawn(move || {
                block_all_signals();
                writer.drain(file)
            });
        if spawned.is_ok() {
            consoles.push(c);
        }
    }
    let mut s = sinks();
    s.kmsg = OpenOptions::new().write(true).open("/dev/kmsg").ok();
    for old in std::mem::replace(&mut s.consoles, consoles) {
        let mut p = old.lock();
        p.closed = true;
        old.ready.notify_all();
    }
    let any = !s.consoles.is_empty();
    drop(s);
    if any {
        start_stall_watch();
    }
}

/// Reports, through the kernel log (which reaches a serial console by the
/// kernel's own polled path), a console that has stopped taking output.
fn start_stall_watch() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        let _ = std::thread::Builder::new()
            .name("console-watch".into())
            .spawn(|| {
                block_all_signals();
                loop {
                    std::thread::sleep(Duration::from_secs(2));
                    report_stalls();
                }
            });
    });
}

fn report_stalls() {
    let consoles = sinks().consoles.clone();
    for c in consoles {
        let mut p = c.lock();
        let stalled = p.writing_since.map(|t| t.elapsed()).unwrap_or_default();
        if stalled >= STALL_REPORT && !p.stall_reported {
            p.stall_reported = true;
            drop(p);
            // Level 2 (critical): printed even with `quiet`.
            kmsg_raw(&format!(
                "<2>paddock-init: console {} has taken no output for {} s; its text is held back (the kernel log has everything)",
                c.name,
                stalled.as_secs()
            ));
        }
    }
}

/// Log threads take no signals: in PID 1 a signal with its default action
/// (SIGPWR, SIGTERM) delivered to any thread that does not block it would
/// end PID 1, and the kernel with it. PID 1 reads its signals from a
/// signalfd on the main thread.
fn block_all_signals() {
    let _ = nix::sys::signal::SigSet::all().thread_block();
}

fn kmsg_raw(record: &str) {
    if let Some(k) = sinks().kmsg.as_mut() {
        let _ = k.write_all(record.as_bytes());
    }
}

fn kmsg_line(level: Level, line: &str) {
    kmsg_raw(&format!(
        "<{}>paddock-init: {}{line}",
        level as u8,
        level.tag()
    ));
}

/// Waits (at most `limit`) until every console has written what it holds:
/// before a power-off or reboot, so the last words reach the operator.
pub fn flush(limit: Duration) {
    let until = Instant::now() + limit;
    let consoles = sinks().consoles.clone();
    for c in consoles {
        let mut p = c.lock();
        while !p.chunks.is_empty() || p.writing_since.is_some() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            p = c
                .ready
                .wait_timeout(p, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

#[derive(Clone, Copy)]
pub enum Level {
    Error = 3,
    Warn = 4,
    Info = 6,
}

impl Level {
    fn tag(self) -> &'static str {
        match self {
            Level::Error => "ERROR: ",
            Level::Warn => "warning: ",
            Level::Info => "",
        }
    }
}

/// Set at the start of a role other than PID 1 whose stderr PID 1 reads
/// and relays into its own log under that role's name.
static RELAYED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes this process log plain lines to its stderr, for PID 1 to relay.
pub fn relay_through_pid1() {
    RELAYED.store(true, std::sync::atomic::Ordering::Relaxed);
    install_facade();
}

pub fn log(level: Level, msg: std::fmt::Arguments) {
    let text = msg.to_string();
    if RELAYED.load(std::sync::atomic::Ordering::Relaxed) {
        // Not PID 1: no console or kmsg of its own, only its stderr,
        // which PID 1 reads, labels with the role and logs.
        let text: String = text
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        eprintln!("{}{text}", level.tag());
        return;
    }
    let tag = level.tag();
    let consoles = {
        let mut s = sinks();
        // One write per line: kmsg takes each write as one record.
        if let Some(k) = s.kmsg.as_mut() {
            for line in text.lines() {
                let _ =
                    k.write_all(format!("<{}>paddock-init: {tag}{line}", level as u8).as_bytes());
            }
        }
        s.consoles.clone()
    };
    if consoles.is_empty() {
        eprintln!("paddock-init: {tag}{text}");
    }
    let line = format!("paddock-init: {tag}{text}\r\n").into_bytes();
    for c in consoles {
        c.push(line.clone());
    }
}

/// Writes raw text to the console (the status screen).
pub fn console(text: &str) {
    let consoles = sinks().consoles.clone();
    if consoles.is_empty() {
        eprint!("{text}");
    }
    let bytes = text.replace('\n', "\r\n").into_bytes();
    for c in consoles {
        c.push(bytes.clone());
    }
}

#[macro_export]
macro_rules! info {
    ($($t:tt)*) => { $crate::log::log($crate::log::Level::Info, format_args!($($t)*)) };
}
#[macro_export]
macro_rules! warn {
    ($($t:tt)*) => { $crate::log::log($crate::log::Level::Warn, format_args!($($t)*)) };
}
#[macro_export]
macro_rules! error {
    ($($t:tt)*) => { $crate::log::log($crate::log::Level::Error, format_args!($($t)*)) };
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_facade_writes_our_crates_lines_only() {
        use ::log::Log as _;
        let ours = ::log::Metadata::builder()
            .target("paddock_keys")
            .level(::log::Level::Warn)
            .build();
        let theirs = ::log::Metadata::builder()
            .target("rustls::conn")
            .level(::log::Level::Warn)
            .build();
        let chatty = ::log::Metadata::builder()
            .target("paddock_keys")
            .level(::log::Level::Debug)
            .build();
        assert!(FACADE.enabled(&ours));
        assert!(!FACADE.enabled(&theirs), "a library's lines stay out");
        assert!(!FACADE.enabled(&chatty));
    }

    use super::*;
    use std::io::Read;

    #[test]
    fn a_stalled_console_never_blocks_the_logger() {
        let (read_end, write_end) = nix::unistd::pipe().expect("pipe");
        let c = Arc::new(Console {
            name: "test".into(),
            pending: Mutex::new(Pending::default()),
            ready: Condvar::new(),
        });
        let writer = c.clone();
        let file = File::from(write_end);
        let t = std::thread::spawn(move || writer.drain(file));
        // Nobody reads the pipe: its buffer fills, the writer blocks, and
        // pushing still returns at once, dropping past the cap.
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..10 {
            c.push(chunk.clone());
        }
        {
            let p = c.lock();
            assert!(p.bytes <= MAX_PENDING, "bounded: {}", p.bytes);
            assert!(p.dropped > 0, "past the cap, text is dropped");
        }
        // The reader comes back: everything held is written.
        let mut r = File::from(read_end);
        let reader = std::thread::spawn(move || {
            let mut total = 0usize;
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 {
                    break;
                }
                total += n;
            }
            total
        });
        {
            let mut p = c.lock();
            while !p.chunks.is_empty() || p.writing_since.is_some() {
                p = c.ready.wait(p).expect("wait");
            }
            p.closed = true;
            c.ready.notify_all();
        }
        t.join().expect("writer");
        let written = reader.join().expect("reader");
        let dropped = c.lock().dropped;
        assert_eq!(written + dropped, 10 * 64 * 1024);
    }
}
