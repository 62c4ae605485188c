//! A deterministic initramfs writer (cpio "newc"): entries in the order
//! given, fixed timestamps, owner root, sequential inode numbers.

use std::io::{self, Write};

pub enum Entry {
    Dir {
        path: String,
        mode: u32,
    },
    File {
        path: String,
        mode: u32,
        data: Vec<u8>,
    },
    Symlink {
        path: String,
        target: String,
    },
    CharDev {
        path: String,
        mode: u32,
        major: u32,
        minor: u32,
    },
}

impl Entry {
    pub fn path(&self) -> &str {
        match self {
            Entry::Dir { path, .. }
            | Entry::File { path, .. }
            | Entry::Symlink { path, .. }
            | Entry::CharDev { path, .. } => path,
        }
    }
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

fn pad4(w: &mut impl Write, len: usize) -> io::Result<()> {
    let pad = (4 - len % 4) % 4;
    w.write_all(&[0u8; 3][..pad])
}

#[allow(clippy::too_many_arguments)]
fn header(
    w: &mut impl Write,
    ino: u32,
    mode: u32,
    nlink: u32,
    filesize: usize,
    rdev: (u32, u32),
    name: &str,
    mtime: u32,
) -> io::Result<()> {
    let namesize = name.len() + 1;
    write!(
        w,
        "070701{ino:08x}{mode:08x}{:08x}{:08x}{nlink:08x}{mtime:08x}{filesize:08x}{:08x}{:08x}{:08x}{:08x}{namesize:08x}{:08x}",
        0, 0, 0, 0, rdev.0, rdev.1, 0
    )?;
    w.write_all(name.as_bytes())?;
    w.write_all(&[0])?;
    pad4(w, 110 + namesize)
}

/// Writes `entries` as a newc archive. Paths are relative ("bin/sh").
/// `mtime` is the timestamp every entry gets (SOURCE_DATE_EPOCH).
pub fn write_archive(w: &mut impl Write, entries: &[Entry], mtime: u32) -> io::Result<()> {
    for (i, e) in entries.iter().enumerate() {
        let ino = i as u32 + 1;
        match e {
            Entry::Dir { path, mode } => header(w, ino, S_IFDIR | mode, 2, 0, (0, 0), path, mtime)?,
            Entry::File { path, mode, data } => {
                header(w, ino, S_IFREG | mode, 1, data.len(), (0, 0), path, mtime)?;
                w.write_all(data)?;
                pad4(w, data.len())?;
            }
            Entry::Symlink { path, target } => {
                header(
                    w,
                    ino,
                    S_IFLNK | 0o777,
                    1,
                    target.len(),
                    (0, 0),
                    path,
                    mtime,
                )?;
                w.write_all(target.as_bytes())?;
                pad4(w, target.len())?;
            }
            Entry::CharDev {
                path,
                mode,
                major,
                minor,
            } => header(w, ino, S_IFCHR | mode, 1, 0, (*major, *minor), path, mtime)?,
        }
    }
    header(w, 0, 0, 1, 0, (0, 0), "TRAILER!!!", 0)?;
    Ok(())
}

/// One entry as read back from an archive (for listing images).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub path: String,
    pub mode: u32,
    pub data: Vec<u8>,
}

impl Listed {
    pub fn is_file(&self) -> bool {
        self.mode & 0o170000 == S_IFREG
    }
}

fn field(b: &[u8], at: usize) -> io::Result<usize> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "bad cpio header field");
    let s = b.get(at..at + 8).ok_or_else(bad)?;
    let s = std::str::from_utf8(s).map_err(|_| bad())?;
    usize::from_str_radix(s, 16).map_err(|_| bad())
}

/// Reads a newc archive (uncompressed) up to its trailer.
pub fn read_archive(b: &[u8]) -> io::Result<Vec<Listed>> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
    let mut out = Vec::new();
    let mut at = 0usize;
    loop {
        let h = b
            .get(at..at + 110)
            .ok_or_else(|| bad("truncated cpio header"))?;
        if &h[..6] != b"070701" {
            return Err(bad("not a newc cpio archive"));
        }
        let mode = u32::try_from(field(h, 14)?).map_err(|_| bad("mode"))?;
        let filesize = field(h, 54)?;
        let namesize = field(h, 94)?;
        let name_end = at + 110 + namesize;
        let name = b
            .get(at + 110..name_end.saturating_sub(1))
            .ok_or_else(|| bad("truncated cpio name"))?;
        let name = String::from_utf8_lossy(name).to_string();
        let data_at = (name_end + 3) & !3;
        let data = b
            .get(data_at..data_at + filesize)
            .ok_or_else(|| bad("truncated cpio data"))?;
        if name == "TRAILER!!!" {
            return Ok(out);
        }
        out.push(Listed {
            path: name,
            mode,
            data: data.to_vec(),
        });
        at = (data_at + filesize + 3) & !3;
    }
}

/// Entries for a directory tree on disk, sorted by path so the archive does
/// not depend on the order the filesystem lists them in. Owners become root
/// and timestamps the archive's; modes are kept.
pub fn entries_from_dir(root: &std::path::Path) -> io::Result<Vec<Entry>> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let mut paths = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir)? {
            let p = e?.path();
            if std::fs::symlink_metadata(&p)?.is_dir() {
                stack.push(p.clone());
            }
            paths.push(p);
        }
    }
    paths.sort();
    let mut out = Vec::new();
    for p in paths {
        let rel = p
            .strip_prefix(root)
            .map_err(|_| io::Error::other("path outside the root"))?
            .to_string_lossy()
            .to_string();
        let md = std::fs::symlink_metadata(&p)?;
        let mode = md.permissions().mode() & 0o7777;
        let ft = md.file_type();
        if ft.is_dir() {
            out.push(Entry::Dir { path: rel, mode });
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&p)?.to_string_lossy().to_string();
            out.push(Entry::Symlink { path: rel, target });
        } else if ft.is_file() {
            out.push(Entry::File {
                path: rel,
                mode,
                data: std::fs::read(&p)?,
            });
        } else if ft.is_char_device() {
            return Err(io::Error::other(format!(
                "{}: device nodes are declared, not copied from a tree",
                p.display()
            )));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_aligned_and_deterministic() {
        let entries = vec![
            Entry::Dir {
                path: "bin".into(),
                mode: 0o755,
            },
            Entry::File {
                path: "bin/x".into(),
                mode: 0o755,
                data: b"abcde".to_vec(),
            },
            Entry::CharDev {
                path: "dev/console".into(),
                mode: 0o600,
                major: 5,
                minor: 1,
            },
        ];
        let mut a = Vec::new();
        write_archive(&mut a, &entries, 0).expect("write");
        let mut b = Vec::new();
        write_archive(&mut b, &entries, 0).expect("write");
        assert_eq!(a, b);
        assert_eq!(a.len() % 4, 0);
        assert!(a.starts_with(b"070701"));
        let s = String::from_utf8_lossy(&a);
        assert!(s.contains("TRAILER!!!"));
        assert!(s.contains("abcde"));
        let back = read_archive(&a).expect("read back");
        assert_eq!(back.len(), 3);
        assert_eq!(back[1].path, "bin/x");
        assert_eq!(back[1].data, b"abcde");
        assert!(back[1].is_file());
        assert!(read_archive(&a[..a.len() - 200]).is_err());
        assert!(read_archive(b"garbage").is_err());
    }
}
