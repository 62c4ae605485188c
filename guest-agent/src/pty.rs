//! Pseudo-terminals for interactive processes: a new pair from the
//! workspace's own devpts instance, and its size.

use paddock_proto::PtySize;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Where the workspace's devpts instance (mounted `newinstance` at boot)
/// hands out new terminals.
const PTMX: &str = "/dev/pts/ptmx";

/// A new terminal of `size`: its master side (ours) and its slave side
/// (the process's).
pub fn open(size: PtySize) -> std::io::Result<(File, OwnedFd)> {
    let master = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags_noctty()
        .open(PTMX)
        .or_else(|_| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags_noctty()
                .open("/dev/ptmx")
        })?;
    let fd = master.as_raw_fd();
    let mut unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int from the pointer, valid for the call.
    if unsafe { libc::ioctl(fd, libc::TIOCSPTLCK, &mut unlock) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // TIOCGPTPEER opens the slave side through the master itself, so no
    // path lookup (another devpts mounted over /dev/pts) can hand us a
    // different terminal.
    // SAFETY: TIOCGPTPEER takes open flags by value and returns a new
    // descriptor, which we own from here.
    let slave = unsafe {
        libc::ioctl(
            fd,
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if slave < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `slave` is a descriptor just returned to us and owned by no
    // one else.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    resize(&master, size)?;
    Ok((master, slave))
}

/// Sets the terminal's size; its foreground process group gets SIGWINCH.
pub fn resize(master: &File, size: PtySize) -> std::io::Result<()> {
    let ws = libc::winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, valid for the
    // call, on a descriptor `master` owns.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A size a terminal can have.
pub fn valid(size: PtySize) -> bool {
    (1..=4096).contains(&size.cols) && (1..=4096).contains(&size.rows)
}

trait NoCtty {
    fn custom_flags_noctty(&mut self) -> &mut Self;
}

impl NoCtty for std::fs::OpenOptions {
    fn custom_flags_noctty(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        // PID 1 (the agent) must never acquire the terminal as its own.
        self.custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
    }
}
