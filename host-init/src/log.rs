//! host-init's log: the kernel log (/dev/kmsg, where a crash dump or a
//! serial console finds it) and the console the operator is looking at.
//! Nothing secret is ever passed here: no tokens, no keys, no env values.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Mutex;

struct Sinks {
    kmsg: Option<File>,
    /// Every active console (serial and screen), not just /dev/console,
    /// which is only the last one named on the command line.
    consoles: Vec<File>,
}

static SINKS: Mutex<Sinks> = Mutex::new(Sinks {
    kmsg: None,
    consoles: Vec::new(),
});

/// Opens the sinks; safe to call again after /dev is mounted.
pub fn init() {
    let mut s = SINKS.lock().unwrap_or_else(|e| e.into_inner());
    s.kmsg = OpenOptions::new().write(true).open("/dev/kmsg").ok();
    s.consoles.clear();
    let active = std::fs::read_to_string("/sys/class/tty/console/active").unwrap_or_default();
    for name in active.split_whitespace() {
        // O_NOCTTY: PID 1 must not acquire a controlling terminal, or a
        // Ctrl-C typed on the serial line would reach it as SIGINT.
        if let Ok(f) = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(format!("/dev/{name}"))
        {
            s.consoles.push(f);
        }
    }
    if s.consoles.is_empty() {
        if let Ok(f) = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open("/dev/console")
        {
            s.consoles.push(f);
        }
    }
}

#[derive(Clone, Copy)]
pub enum Level {
    Error = 3,
    Warn = 4,
    Info = 6,
}

pub fn log(level: Level, msg: std::fmt::Arguments) {
    let text = msg.to_string();
    let mut s = SINKS.lock().unwrap_or_else(|e| e.into_inner());
    let tag = match level {
        Level::Error => "ERROR: ",
        Level::Warn => "warning: ",
        Level::Info => "",
    };
    // One write per line: kmsg takes each write as one record.
    if let Some(k) = s.kmsg.as_mut() {
        for line in text.lines() {
            let _ = k.write_all(format!("<{}>paddock-init: {tag}{line}", level as u8).as_bytes());
        }
    }
    if s.consoles.is_empty() {
        eprintln!("paddock-init: {tag}{text}");
    }
    for c in &mut s.consoles {
        let _ = c.write_all(format!("paddock-init: {tag}{text}\r\n").as_bytes());
    }
}

/// Writes raw text to the console (the status screen).
pub fn console(text: &str) {
    let mut s = SINKS.lock().unwrap_or_else(|e| e.into_inner());
    if s.consoles.is_empty() {
        eprint!("{text}");
    }
    for c in &mut s.consoles {
        let _ = c.write_all(text.replace('\n', "\r\n").as_bytes());
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
