//! The power button. With no ACPI daemon on the box, host-init reads the
//! button's input device itself and turns a press into SIGPWR for PID 1,
//! which starts the orderly shutdown like any other shutdown request.

use crate::{info, warn};
use std::io::Read;
use std::os::fd::AsRawFd;

const EV_KEY: u16 = 1;
const KEY_POWER: u16 = 116;

/// EVIOCGNAME(len): _IOC(_IOC_READ, 'E', 0x06, len).
fn eviocgname(len: usize) -> libc::c_ulong {
    (2 << 30) | ((len as libc::c_ulong) << 16) | (0x45 << 8) | 0x06
}

fn device_name(f: &std::fs::File) -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: EVIOCGNAME writes at most `buf.len()` bytes into `buf`.
    let n = unsafe { libc::ioctl(f.as_raw_fd(), eviocgname(buf.len()) as _, buf.as_mut_ptr()) };
    if n <= 0 {
        return None;
    }
    let s = &buf[..(n as usize).min(buf.len())];
    Some(
        String::from_utf8_lossy(s)
            .trim_end_matches('\0')
            .to_string(),
    )
}

/// Starts one listener thread per power-button device found.
pub fn listen() -> usize {
    let mut found = 0;
    let Ok(rd) = std::fs::read_dir("/dev/input") else {
        warn!("no /dev/input: the power button will not shut the box down");
        return 0;
    };
    for e in rd.flatten() {
        let path = e.path();
        if !e.file_name().to_string_lossy().starts_with("event") {
            continue;
        }
        let Ok(f) = std::fs::File::open(&path) else {
            continue;
        };
        let Some(name) = device_name(&f) else {
            continue;
        };
        if !name.contains("Power Button") {
            continue;
        }
        found += 1;
        info!("power button: {name} ({})", path.display());
        let _ = std::thread::Builder::new()
            .name("power-button".into())
            .spawn(move || watch(f));
    }
    found
}

fn watch(mut f: std::fs::File) {
    // struct input_event on 64-bit: timeval (16), type u16, code u16, value i32.
    let mut ev = [0u8; 24];
    while f.read_exact(&mut ev).is_ok() {
        let kind = u16::from_le_bytes([ev[16], ev[17]]);
        let code = u16::from_le_bytes([ev[18], ev[19]]);
        let value = i32::from_le_bytes([ev[20], ev[21], ev[22], ev[23]]);
        if kind == EV_KEY && code == KEY_POWER && value == 1 {
            info!("power button pressed");
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(1),
                nix::sys::signal::Signal::SIGPWR,
            );
        }
    }
}
