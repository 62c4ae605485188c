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
    let file = std::fs::File::create(log)?;
    let log = log.to_path_buf();
    std::thread::Builder::new()
        .name(format!("console-{name}"))
        .spawn(move || pump(std::fs::File::from(read), file, &log, LOG_MAX))?;
    Ok(write)
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
