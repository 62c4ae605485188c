//! The EFI system partition: a FAT filesystem holding systemd-boot at the
//! removable-media default path (so firmware boots it with no boot entries
//! configured), its configuration, the slots' UKIs (`slots`), their PCR
//! signatures and the operator's configuration. Every timestamp is fixed,
//! so the same files give the same bytes.

use std::io::{Cursor, Write};

/// Where UEFI firmware looks when it has no boot entry for a disk.
pub const DEFAULT_LOADER: &str = "EFI/BOOT/BOOTX64.EFI";

#[derive(Debug, thiserror::Error)]
pub enum EspError {
    #[error("building the FAT filesystem: {0}")]
    Io(#[from] std::io::Error),
    #[error("{need} bytes of files do not fit an ESP of {size} bytes")]
    TooSmall { need: u64, size: u64 },
}

/// The FAT epoch: any fixed moment works, this one needs no conversion.
#[derive(Debug)]
struct FixedTime;

const EPOCH: fatfs::Date = fatfs::Date {
    year: 1980,
    month: 1,
    day: 1,
};

impl fatfs::TimeProvider for FixedTime {
    fn get_current_date(&self) -> fatfs::Date {
        EPOCH
    }
    fn get_current_date_time(&self) -> fatfs::DateTime {
        fatfs::DateTime {
            date: EPOCH,
            time: fatfs::Time {
                hour: 0,
                min: 0,
                sec: 0,
                millis: 0,
            },
        }
    }
}

static FIXED_TIME: FixedTime = FixedTime;

/// Where host-init looks for the appliance's configuration on the ESP.
pub const CONFIG_PATH: &str = "paddock/config.json";

/// Writes `bytes` at `path` ('/'-separated) under `root`, making its
/// directories.
fn put<T: fatfs::ReadWriteSeek>(
    root: &fatfs::Dir<T>,
    path: &str,
    bytes: &[u8],
) -> Result<(), EspError> {
    let (dirs, name) = path.rsplit_once('/').unwrap_or(("", path));
    let mut dir = root.clone();
    for d in dirs.split('/').filter(|d| !d.is_empty()) {
        dir = dir.create_dir(d)?;
    }
    let mut f = dir.create_file(name)?;
    f.truncate()?;
    f.write_all(bytes)?;
    f.flush()?;
    Ok(())
}

/// A FAT image of `size` bytes holding `files` (path, bytes).
pub fn build(files: &[(String, Vec<u8>)], size: u64, volume_id: u32) -> Result<Vec<u8>, EspError> {
    let need: u64 = files.iter().map(|(_, b)| b.len() as u64).sum();
    // FAT's own tables and the clusters' slack.
    if need + 2 * 1024 * 1024 > size {
        return Err(EspError::TooSmall { need, size });
    }
    let mut img = Cursor::new(vec![0u8; size as usize]);
    fatfs::format_volume(
        &mut img,
        fatfs::FormatVolumeOptions::new()
            .volume_id(volume_id)
            .volume_label(*b"PADDOCK-ESP"),
    )?;
    {
        let fs =
            fatfs::FileSystem::new(&mut img, fatfs::FsOptions::new().time_provider(&FIXED_TIME))?;
        let root = fs.root_dir();
        for (path, bytes) in files {
            put(&root, path, bytes)?;
        }
    }
    Ok(img.into_inner())
}

/// Every file in the ESP with its size, for listings.
pub fn list(esp: &[u8]) -> Result<Vec<(String, u64)>, EspError> {
    let fs = fatfs::FileSystem::new(Cursor::new(esp.to_vec()), fatfs::FsOptions::new())?;
    let mut out = Vec::new();
    let mut stack = vec![(String::new(), fs.root_dir())];
    while let Some((prefix, dir)) = stack.pop() {
        for e in dir.iter() {
            let e = e?;
            let name = e.file_name();
            if name == "." || name == ".." {
                continue;
            }
            let path = format!("{prefix}{name}");
            if e.is_dir() {
                stack.push((format!("{path}/"), e.to_dir()));
            } else {
                out.push((path, e.len()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Reads one file out of the ESP.
pub fn read_file(esp: &[u8], path: &str) -> Result<Vec<u8>, EspError> {
    use std::io::Read;
    let fs = fatfs::FileSystem::new(Cursor::new(esp.to_vec()), fatfs::FsOptions::new())?;
    let mut f = fs.root_dir().open_file(path)?;
    let mut out = Vec::new();
    f.read_to_end(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_input_same_bytes_and_readable() {
        let files = |uki: &[u8]| {
            vec![
                (DEFAULT_LOADER.to_string(), b"loader".to_vec()),
                ("EFI/Linux/paddock-a.efi".to_string(), uki.to_vec()),
                (CONFIG_PATH.to_string(), b"{}".to_vec()),
                ("paddock/pcrsig/a.json".to_string(), b"[]".to_vec()),
            ]
        };
        let uki = vec![0x5au8; 300_000];
        let a = build(&files(&uki), 8 * 1024 * 1024, 0x1234_5678).expect("build");
        let b = build(&files(&uki), 8 * 1024 * 1024, 0x1234_5678).expect("build");
        assert!(a == b, "ESP not deterministic");
        assert_eq!(
            list(&a).expect("list"),
            vec![
                ("EFI/BOOT/BOOTX64.EFI".to_string(), 6),
                ("EFI/Linux/paddock-a.efi".to_string(), 300_000),
                ("paddock/config.json".to_string(), 2),
                ("paddock/pcrsig/a.json".to_string(), 2),
            ]
        );
        assert_eq!(read_file(&a, "EFI/Linux/paddock-a.efi").expect("read"), uki);
        assert_eq!(
            read_file(&a, "paddock/pcrsig/a.json").expect("signature"),
            b"[]"
        );
        assert!(matches!(
            build(&files(&uki), 1024 * 1024, 1),
            Err(EspError::TooSmall { .. })
        ));
    }
}
