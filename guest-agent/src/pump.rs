//! Reading a command's output pipe (or terminal) on a thread of its own.
//! A pump ends at the pipe's end, when its sink wants no more, or when it
//! is stopped: a command's background children may hold the pipe open for
//! ever, and a pump left reading it would keep its descriptor and thread.

use paddock_proto::CHUNK;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

pub struct Pump {
    done: std::sync::mpsc::Receiver<()>,
    /// An eventfd: written once to make the pump end.
    stop: Option<Arc<OwnedFd>>,
}

impl Pump {
    /// Waits up to `grace` for what is still in the pipe, then stops the
    /// pump (what comes later is not read).
    pub fn finish(self, grace: Duration) {
        let _ = self.done.recv_timeout(grace);
        if let Some(stop) = &self.stop {
            let one: u64 = 1;
            // SAFETY: write reads the 8 bytes of `one`, on a descriptor
            // `stop` keeps open.
            unsafe { libc::write(stop.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
    }
}

/// Reads `pipe` to its end, handing each chunk to `sink` as it comes;
/// stops early when `sink` says no one wants more, or when finished.
pub fn pump<R: Read + AsRawFd + Send + 'static>(
    pipe: Option<R>,
    mut sink: impl FnMut(Vec<u8>) -> bool + Send + 'static,
) -> Pump {
    let (tx, rx) = std::sync::mpsc::channel();
    // SAFETY: eventfd takes an initial value and flags, returns a new
    // descriptor (or -1).
    let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    // SAFETY: `raw` was just returned to us and is owned by no one else.
    let stop = (raw >= 0).then(|| Arc::new(unsafe { OwnedFd::from_raw_fd(raw) }));
    let stopper = stop.clone();
    std::thread::spawn(move || {
        if let Some(mut p) = pipe {
            let mut buf = vec![0u8; CHUNK];
            loop {
                if let Some(stop) = &stopper {
                    if !readable(p.as_raw_fd(), stop.as_raw_fd()) {
                        break;
                    }
                }
                match p.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if !sink(buf[..n].to_vec()) {
                            break;
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock
                        ) => {}
                    Err(_) => break,
                }
            }
        }
        let _ = tx.send(());
    });
    Pump { done: rx, stop }
}

/// Waits until `fd` can be read (true) or `stop` was written (false).
fn readable(fd: i32, stop: i32) -> bool {
    loop {
        let mut fds = [
            libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: stop,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: poll reads and writes the two pollfd structs of `fds`.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return true;
        }
        if fds[1].revents != 0 {
            return false;
        }
        // Data, or its end (POLLHUP/POLLERR): the read says which.
        return true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipe_held_open_elsewhere_does_not_hold_the_pump() {
        let (r, w) = std::io::pipe().expect("pipe");
        let got = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = got.clone();
        let p = pump(Some(r), move |d| {
            seen.lock().expect("lock").extend(d);
            true
        });
        (&w).write_all_ok(b"before");
        std::thread::sleep(Duration::from_millis(50));
        p.finish(Duration::from_millis(100));
        // `w` is still open: without the stop, the pump would read on.
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(&*got.lock().expect("lock"), b"before");
        drop(w);
    }

    trait WriteOk {
        fn write_all_ok(self, b: &[u8]);
    }
    impl WriteOk for &std::io::PipeWriter {
        fn write_all_ok(mut self, b: &[u8]) {
            use std::io::Write;
            self.write_all(b).expect("write");
        }
    }
}
