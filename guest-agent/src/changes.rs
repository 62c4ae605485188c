//! What a workspace changed against its template: the overlay's upper
//! layer, read directly. A file there is new (`Added`) or written over
//! (`Modified`, when the template has that path); a whiteout (a character
//! device 0:0) is a path of the template that was removed (`Deleted`).
//! Directories are listed only when new (a changed one is copied up with
//! its first changed child). Names and sizes only, never contents.

use crate::conn::{Conn, ConnError};
use paddock_proto::{AgentMsg, Change, ChangeKind, ErrorKind, FileKind};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

const UPPER: &str = "/run/paddock/data/upper";
const LOWER: &str = "/run/paddock/lower";
/// Most changes one answer lists, and most bytes of their paths: the
/// answer stays well under a frame.
const MAX_CHANGES: usize = 10_000;
const MAX_PATH_BYTES: usize = 640 << 10;
/// Most entries looked at (a tree of millions of files is cut short
/// rather than walked for minutes).
const MAX_VISITED: usize = 500_000;

pub fn list(conn: &Conn) -> Result<(), ConnError> {
    if !Path::new(UPPER).is_dir() {
        return conn.error(
            ErrorKind::NotFound,
            "this workspace has no writable layer (it serves from its initramfs)",
        );
    }
    let (changes, truncated) = walk(Path::new(UPPER), Path::new(LOWER));
    conn.send(&AgentMsg::Changes { changes, truncated })
}

fn kind_of(t: std::fs::FileType) -> FileKind {
    if t.is_dir() {
        FileKind::Dir
    } else if t.is_file() {
        FileKind::File
    } else if t.is_symlink() {
        FileKind::Symlink
    } else {
        FileKind::Other
    }
}

/// The changes under `upper` against `lower`, and whether the list was
/// cut short.
pub fn walk(upper: &Path, lower: &Path) -> (Vec<Change>, bool) {
    let mut out: Vec<Change> = Vec::new();
    let mut bytes = 0;
    let mut visited = 0;
    // Relative directories still to read.
    let mut todo: Vec<PathBuf> = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        let Ok(dir) = std::fs::read_dir(upper.join(&rel)) else {
            continue;
        };
        let mut names: Vec<_> = dir.filter_map(Result::ok).map(|e| e.file_name()).collect();
        names.sort();
        let mut subdirs = Vec::new();
        for name in names {
            visited += 1;
            if visited > MAX_VISITED || out.len() >= MAX_CHANGES || bytes >= MAX_PATH_BYTES {
                out.sort_by(|a, b| a.path.cmp(&b.path));
                return (out, true);
            }
            let rel_path = rel.join(&name);
            let Ok(meta) = std::fs::symlink_metadata(upper.join(&rel_path)) else {
                continue;
            };
            let in_template = std::fs::symlink_metadata(lower.join(&rel_path)).is_ok();
            let t = meta.file_type();
            let whiteout = t.is_char_device() && meta.rdev() == 0;
            let kind = if whiteout {
                ChangeKind::Deleted
            } else if in_template {
                ChangeKind::Modified
            } else {
                ChangeKind::Added
            };
            if t.is_dir() {
                subdirs.push(rel_path.clone());
                if in_template {
                    continue;
                }
            }
            let path = format!("/{}", rel_path.to_string_lossy());
            bytes += path.len();
            out.push(Change {
                path,
                kind,
                file_kind: if whiteout {
                    FileKind::Other
                } else {
                    kind_of(t)
                },
                size: if whiteout || t.is_dir() {
                    0
                } else {
                    meta.len()
                },
            });
        }
        todo.extend(subdirs.into_iter().rev());
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    (out, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_written_over_and_removed_paths_are_told_apart() {
        let base = std::env::temp_dir().join(format!("paddock-changes-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let (upper, lower) = (base.join("upper"), base.join("lower"));
        for d in [&upper, &lower] {
            std::fs::create_dir_all(d.join("etc")).expect("dir");
        }
        std::fs::write(lower.join("etc/hosts"), "template").expect("file");
        std::fs::write(lower.join("etc/gone"), "template").expect("file");
        std::fs::write(upper.join("etc/hosts"), "changed!").expect("file");
        std::fs::create_dir_all(upper.join("home/agent/proj")).expect("dir");
        std::fs::write(upper.join("home/agent/proj/main.py"), "print(1)\n").expect("file");
        // A whiteout is a character device 0:0 (root only); without
        // root, the deleted case is not exercised here.
        // SAFETY: geteuid reads the caller's credentials only.
        let root = unsafe { libc::geteuid() } == 0;
        if root {
            let path = std::ffi::CString::new(upper.join("etc/gone").to_string_lossy().as_bytes())
                .expect("path");
            // SAFETY: a NUL-terminated path that lives across the call.
            let made = unsafe { libc::mknod(path.as_ptr(), libc::S_IFCHR, 0) };
            assert_eq!(made, 0, "whiteout");
        }
        let (changes, truncated) = walk(&upper, &lower);
        assert!(!truncated);
        let seen: Vec<(&str, ChangeKind)> =
            changes.iter().map(|c| (c.path.as_str(), c.kind)).collect();
        let mut want = vec![("/etc/hosts", ChangeKind::Modified)];
        if root {
            want.insert(0, ("/etc/gone", ChangeKind::Deleted));
        }
        want.extend([
            ("/home", ChangeKind::Added),
            ("/home/agent", ChangeKind::Added),
            ("/home/agent/proj", ChangeKind::Added),
            ("/home/agent/proj/main.py", ChangeKind::Added),
        ]);
        assert_eq!(seen, want);
        let py = changes.last().expect("main.py");
        assert_eq!((py.size, py.file_kind), (9, FileKind::File));
        let _ = std::fs::remove_dir_all(&base);
    }
}
