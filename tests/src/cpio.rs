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
    }
}
