//! A workspace's serial console, kept on the data partition within a
//! bound (issue 14, item 4). The VMM writes its console (and its own
//! diagnostics) into a pipe; host-init drains the pipe into `console.log`
//! and, past `LOG_MAX` bytes, renames it to `console.log.1` and starts a
//! new one. The bound is enforced here, outside the jail: a VMM a guest
//! has taken over still only writes into the pipe.
//!
//! Before, the VMM wrote straight into the file: a guest printing to its
//! serial port grew it at ~142 KiB/s under emulation (tens of GiB over a
//! week's TTL), counted toward nothing, until the data partition was full.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// Bytes in one console file; with the one rotated file kept, a workspace's
/// console never holds more than twice this. 8 MiB is thousands of boots'
/// worth of kernel log, and the tail is what diagnosis reads.
pub const LOG_MAX: u64 = 8 << 20;
/// What the admission check counts per workspace for its console files.
pub const LOG_DISK_MIB: u64 = 2 * (LOG_MAX >> 20);

/// The rotated file beside `log`.
pub fn rotated(log: &Path) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

/// Creates `log` (empty) and a pipe whose read end a thread drains into
/// it; returns the write end, for the VMM's stdout and stderr.
pub fn pipe_into(log: &Path, name: &str) -> std::io::Result<OwnedFd> {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    // A restart starts a new log; the last run's is overwritten, not just
    // freed.
    scrub(log);
    let file = std::fs::File::create(log)?;
    let log = log.to_path_buf();
    std::thread::Builder::new()
        .name(format!("console-{name}"))
        .spawn(move || pump(std::fs::File::from(read), file, &log, LOG_MAX))?;
    Ok(write)
}

/// The last `max` bytes of a console file, as text.
pub fn tail(log: &Path, max: u64) -> std::io::Result<String> {
    use std::io::{Seek, SeekFrom};
    let mut f = std::fs::File::open(log)?;
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(max)))?;
    let mut bytes = Vec::new();
    f.take(max).read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Overwrites a workspace's console files (`log` and its rotated file)
/// with zeros, so what its guest printed (the data partition itself is
/// not encrypted) is not left in freed blocks when they are removed or
/// replaced. On flash whose controller remaps writes this is a best
/// effort; the files never hold the workspace's disk or memory.
pub fn scrub(log: &Path) {
    scrub_file(log);
    scrub_file(&rotated(log));
}

fn scrub_file(path: &Path) {
    let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(path) else {
        return;
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if std::io::copy(&mut std::io::repeat(0).take(len), &mut f).is_ok() {
        let _ = f.sync_data();
    }
}

/// Copies until every writer has closed the pipe. A write that fails (a
/// full disk) loses that output, never blocks the VMM: the pipe keeps
/// being drained.
fn pump(mut from: impl Read, mut file: std::fs::File, log: &Path, max: u64) {
    let mut written = 0u64;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        let mut data = &buf[..n];
        while !data.is_empty() {
            if written >= max {
                scrub_file(&rotated(log));
                let _ = std::fs::rename(log, rotated(log));
                match std::fs::File::create(log) {
                    Ok(f) => file = f,
                    Err(_) => break,
                }
                written = 0;
            }
            let take = data.len().min((max - written) as usize);
            if file.write_all(&data[..take]).is_err() {
                break;
            }
            written += take as u64;
            data = &data[take..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubbed_console_files_hold_only_zeros_in_their_blocks() {
        let dir = std::env::temp_dir().join(format!("paddock-scrub-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let log = dir.join("console.log");
        std::fs::write(&log, b"API_KEY=sk-live-secret\n").expect("write");
        std::fs::write(rotated(&log), vec![b'x'; 200_000]).expect("write");
        // Hard links see the same blocks the removed files leave behind.
        std::fs::hard_link(&log, dir.join("a")).expect("link");
        std::fs::hard_link(rotated(&log), dir.join("b")).expect("link");
        scrub(&log);
        std::fs::remove_file(&log).expect("rm");
        std::fs::remove_file(rotated(&log)).expect("rm");
        for (name, len) in [("a", 23), ("b", 200_000)] {
            let left = std::fs::read(dir.join(name)).expect("read");
            assert_eq!(left.len(), len, "{name}");
            assert!(left.iter().all(|&b| b == 0), "{name} still holds data");
        }
        scrub(&dir.join("absent"));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn a_flood_stays_within_two_files_and_keeps_the_tail() {
        let dir = std::env::temp_dir().join(format!("paddock-console-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let log = dir.join("console.log");
        let file = std::fs::File::create(&log).expect("log");
        // 300 times the bound, as a guest flooding its serial port would.
        let mut flood: Vec<u8> = Vec::new();
        for i in 0..30_000u32 {
            flood.extend_from_slice(
                format!("line {i:08} of a guest that will not stop\n").as_bytes(),
            );
        }
        flood.extend_from_slice(b"the last line\n");
        pump(&flood[..], file, &log, 4096);
        let now = std::fs::metadata(&log).expect("log").len();
        let old = std::fs::metadata(rotated(&log)).expect("rotated").len();
        assert!(now <= 4096 && old == 4096, "{now} {old}");
        let tail = std::fs::read_to_string(&log).expect("read");
        assert!(
            tail.ends_with("the last line\n"),
            "the newest output is kept"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
