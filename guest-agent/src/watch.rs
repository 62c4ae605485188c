//! Watching a directory (E2B's `watch_dir`): inotify on it, and on every
//! directory below it when recursive (new ones included), reported to the
//! host in batches as they come, until the host closes the connection.
//! Runs on the session's thread, with the credentials `AsUser` gave it, so
//! only directories that user may read are watched.

use crate::conn::{Conn, ConnError};
use paddock_proto::{AgentMsg, ErrorKind, FsEvent, FsEventKind};
use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Most directories one recursive watch covers (each costs the guest
/// kernel an inotify watch).
const MAX_WATCHES: usize = 8192;
/// Most events in one report.
const MAX_BATCH: usize = 2048;
/// Most bytes of names in one report (well inside a frame).
const MAX_BATCH_BYTES: usize = 256 << 10;

const MASK: u32 = libc::IN_CREATE
    | libc::IN_MODIFY
    | libc::IN_DELETE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_ATTRIB
    | libc::IN_DONT_FOLLOW
    | libc::IN_ONLYDIR;

struct Watcher {
    fd: OwnedFd,
    /// Watch descriptor → the directory's path relative to the root ("" for
    /// the root itself).
    dirs: HashMap<i32, String>,
    root: String,
    recursive: bool,
}

impl Watcher {
    fn add(&mut self, rel: &str) -> std::io::Result<()> {
        if self.dirs.len() >= MAX_WATCHES {
            return Err(std::io::Error::other(format!(
                "more than {MAX_WATCHES} directories to watch"
            )));
        }
        let full = if rel.is_empty() {
            self.root.clone()
        } else {
            format!("{}/{rel}", self.root.trim_end_matches('/'))
        };
        let c = CString::new(full).map_err(|_| std::io::Error::other("NUL in path"))?;
        // SAFETY: inotify_add_watch reads the NUL-terminated path for the
        // call, on a descriptor `self.fd` owns.
        let wd = unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), c.as_ptr(), MASK) };
        if wd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        self.dirs.insert(wd, rel.to_string());
        if self.recursive {
            self.add_below(rel)?;
        }
        Ok(())
    }

    /// Watches every directory under `rel` (already watched itself).
    fn add_below(&mut self, rel: &str) -> std::io::Result<()> {
        let full = if rel.is_empty() {
            self.root.clone()
        } else {
            format!("{}/{rel}", self.root.trim_end_matches('/'))
        };
        let Ok(entries) = std::fs::read_dir(&full) else {
            // Gone or unreadable since: nothing to add.
            return Ok(());
        };
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                let name = e.file_name().to_string_lossy().into_owned();
                let child = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                self.add(&child)?;
            }
        }
        Ok(())
    }

    /// The events in `buf` (as read from inotify), watching new
    /// directories as they appear when recursive.
    fn decode(&mut self, buf: &[u8], out: &mut Vec<FsEvent>) {
        const HEAD: usize = std::mem::size_of::<libc::inotify_event>();
        let mut at = 0;
        while at + HEAD <= buf.len() {
            // SAFETY: HEAD bytes at `at` are within `buf`; read_unaligned
            // copies them without assuming alignment.
            let ev: libc::inotify_event =
                unsafe { std::ptr::read_unaligned(buf[at..].as_ptr().cast()) };
            let name_end = (at + HEAD + ev.len as usize).min(buf.len());
            let raw = &buf[at + HEAD..name_end];
            let name =
                String::from_utf8_lossy(raw.split(|b| *b == 0).next().unwrap_or(&[])).into_owned();
            at = name_end;
            if ev.mask & libc::IN_IGNORED != 0 {
                self.dirs.remove(&ev.wd);
                continue;
            }
            let Some(dir) = self.dirs.get(&ev.wd).cloned() else {
                continue;
            };
            let rel = match (dir.is_empty(), name.is_empty()) {
                (_, true) => dir.clone(),
                (true, false) => name,
                (false, false) => format!("{dir}/{name}"),
            };
            let kind = if ev.mask & (libc::IN_CREATE | libc::IN_MOVED_TO) != 0 {
                FsEventKind::Create
            } else if ev.mask & libc::IN_MODIFY != 0 {
                FsEventKind::Write
            } else if ev.mask & libc::IN_DELETE != 0 {
                FsEventKind::Remove
            } else if ev.mask & libc::IN_MOVED_FROM != 0 {
                FsEventKind::Rename
            } else if ev.mask & libc::IN_ATTRIB != 0 {
                FsEventKind::Chmod
            } else {
                continue;
            };
            let new_dir = ev.mask & libc::IN_ISDIR != 0 && kind == FsEventKind::Create;
            if self.recursive && new_dir {
                // Too many is reported by the next add, not here: the event
                // itself still goes out.
                let _ = self.add(&rel);
            }
            out.push(FsEvent { name: rel, kind });
        }
    }
}

pub fn watch(conn: &Conn, path: &str, recursive: bool) -> Result<(), ConnError> {
    if !path.starts_with('/') || path.contains('\0') {
        return conn.error(
            ErrorKind::InvalidRequest,
            format!("path must be absolute: {path:?}"),
        );
    }
    // SAFETY: inotify_init1 takes flags only and returns a new descriptor.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return conn.error(ErrorKind::Io, format!("inotify: {e}"));
    }
    let mut w = Watcher {
        // SAFETY: `fd` was just returned to us and is owned by no one else.
        fd: unsafe { OwnedFd::from_raw_fd(fd) },
        dirs: HashMap::new(),
        root: path.to_string(),
        recursive,
    };
    if let Err(e) = w.add("") {
        let kind = match e.kind() {
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
            _ if e.raw_os_error() == Some(libc::ENOTDIR) => ErrorKind::InvalidRequest,
            _ => ErrorKind::Io,
        };
        return conn.error(kind, format!("watching {path}: {e}"));
    }
    conn.send(&AgentMsg::Done)?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut fds = [
            libc::pollfd {
                fd: w.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: conn.raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: poll reads and writes the two pollfd structs of `fds`
        // for the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(ConnError::Closed);
        }
        // The host sends nothing on a watch: anything readable is its end.
        if fds[1].revents != 0 {
            return Ok(());
        }
        if fds[0].revents & libc::POLLIN == 0 {
            continue;
        }
        let mut events = Vec::new();
        loop {
            // SAFETY: read writes at most buf.len() bytes into `buf`.
            let got = unsafe { libc::read(w.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if got <= 0 {
                break;
            }
            w.decode(&buf[..got as usize], &mut events);
            if events.len() >= MAX_BATCH {
                break;
            }
        }
        // Batches by count and by bytes of names, so each fits a frame.
        let mut batch = Vec::new();
        let mut bytes = 0;
        for e in events {
            bytes += e.name.len() + 8;
            batch.push(e);
            if batch.len() >= MAX_BATCH || bytes >= MAX_BATCH_BYTES {
                conn.send(&AgentMsg::FsEvents(std::mem::take(&mut batch)))?;
                bytes = 0;
            }
        }
        if !batch.is_empty() {
            conn.send(&AgentMsg::FsEvents(batch))?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use paddock_proto::frame::{decode, read_frame_bytes};
    use paddock_proto::Tagged;
    use std::os::unix::net::UnixStream;

    fn recv(s: &mut UnixStream) -> AgentMsg {
        let body = read_frame_bytes(s).expect("a frame");
        decode(&body, AgentMsg::VARIANTS).expect("decodes")
    }

    #[test]
    fn changes_below_are_reported_with_their_kind() {
        let dir = std::env::temp_dir().join(format!("paddock-watch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("old")).expect("dir");
        let (mut host, agent) = UnixStream::pair().expect("pair");
        host.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .expect("timeout");
        let conn = Conn::new(std::fs::File::from(OwnedFd::from(agent))).expect("conn");
        let root = dir.to_string_lossy().into_owned();
        let t = std::thread::spawn(move || watch(&conn, &root, true));
        assert_eq!(recv(&mut host), AgentMsg::Done);
        std::fs::write(dir.join("old/a.txt"), b"x").expect("write");
        std::fs::create_dir(dir.join("new")).expect("mkdir");
        // Give the watch on `new` a moment to be added before using it.
        std::thread::sleep(std::time::Duration::from_millis(200));
        std::fs::write(dir.join("new/b.txt"), b"y").expect("write");
        std::fs::rename(dir.join("old/a.txt"), dir.join("c.txt")).expect("rename");
        std::fs::remove_file(dir.join("c.txt")).expect("rm");
        let mut seen = Vec::new();
        while !seen.contains(&FsEvent {
            name: "c.txt".into(),
            kind: FsEventKind::Remove,
        }) {
            match recv(&mut host) {
                AgentMsg::FsEvents(ev) => seen.extend(ev),
                other => panic!("unexpected {other:?}"),
            }
        }
        for (name, kind) in [
            ("old/a.txt", FsEventKind::Create),
            ("old/a.txt", FsEventKind::Write),
            ("new", FsEventKind::Create),
            ("new/b.txt", FsEventKind::Create),
            ("old/a.txt", FsEventKind::Rename),
            ("c.txt", FsEventKind::Create),
        ] {
            assert!(
                seen.contains(&FsEvent {
                    name: name.into(),
                    kind
                }),
                "{name} {kind:?} in {seen:?}"
            );
        }
        // The host leaving ends the watch.
        drop(host);
        assert!(t.join().expect("joins").is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_or_relative_directory_is_refused() {
        for path in ["/no/such/dir", "relative"] {
            let (mut host, agent) = UnixStream::pair().expect("pair");
            let conn = Conn::new(std::fs::File::from(OwnedFd::from(agent))).expect("conn");
            watch(&conn, path, false).expect("answered");
            assert!(matches!(recv(&mut host), AgentMsg::Error(_)), "{path}");
        }
    }
}
