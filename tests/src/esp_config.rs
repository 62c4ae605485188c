//! A test's own appliance configuration on a copy of the image: the ESP
//! rebuilt with another `paddock.json`, so one test can turn on what the
//! shared test image leaves off (a webhook aimed into its fake internet,
//! which the other tests must never dial); and a slot's UKI put in place
//! as an update would, for the tests of the slots themselves.

use paddock_image::slots::{Slot, UkiName};
use paddock_image::{esp, gpt, LABEL_ESP};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum EspConfigError {
    #[error("{what}: {detail}")]
    Failed { what: String, detail: String },
}

fn failed(what: impl Into<String>, detail: impl ToString) -> EspConfigError {
    EspConfigError::Failed {
        what: what.into(),
        detail: detail.to_string(),
    }
}

/// The test image's configuration (firmware/test-config.json) with `extra`'s
/// top-level keys put over it.
pub fn test_config_with(extra: serde_json::Value) -> Result<Vec<u8>, EspConfigError> {
    let path = crate::appliance::repo_root().join("firmware/test-config.json");
    let text =
        std::fs::read(&path).map_err(|e| failed(format!("reading {}", path.display()), e))?;
    let mut config: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| failed("firmware/test-config.json", e))?;
    let (Some(base), Some(extra)) = (config.as_object_mut(), extra.as_object()) else {
        return Err(failed("the configuration", "not a JSON object"));
    };
    for (k, v) in extra {
        base.insert(k.clone(), v.clone());
    }
    serde_json::to_vec(&config).map_err(|e| failed("the configuration", e))
}

/// Writes a fresh ESP over `disk`'s with `config` as the appliance's
/// configuration; everything else on it (boot manager, slots, PCR
/// signatures) stays.
pub fn set(disk: &Path, config: &[u8]) -> Result<(), EspConfigError> {
    rewrite(disk, |files| {
        files.retain(|(p, _)| p != esp::CONFIG_PATH);
        files.push((esp::CONFIG_PATH.to_string(), config.to_vec()));
    })
}

/// What an update writes, without the update mechanism: `uki` in `slot`
/// on the ESP (whatever that slot held goes) with `tries` left on its boot
/// counter (None: already blessed), its PCR signature when given, and, for
/// slot B, slot A's template (the test image's) in slot B's partition: a
/// slot whose template partition is empty boots no workspace.
pub fn install_uki(
    disk: &Path,
    slot: Slot,
    uki: &Path,
    tries: Option<u32>,
    signature: Option<Vec<u8>>,
) -> Result<(), EspConfigError> {
    let uki = std::fs::read(uki).map_err(|e| failed(format!("reading {}", uki.display()), e))?;
    if slot != Slot::A {
        copy_template(disk, Slot::A, slot)?;
    }
    rewrite(disk, |files| {
        let sig = format!("{}/{slot}.json", paddock_keys::signed::SIGNATURE_DIR);
        files.retain(|(p, _)| *p != sig && UkiName::parse(p).is_none_or(|n| n.slot != slot));
        files.push((slot.uki_path(tries), uki));
        if let Some(bytes) = signature {
            files.push((sig, bytes));
        }
    })
}

/// Copies slot `from`'s template partition over slot `to`'s (the whole of
/// the smaller of the two).
pub fn copy_template(disk: &Path, from: Slot, to: Slot) -> Result<(), EspConfigError> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(disk)
        .map_err(|e| failed(format!("opening {}", disk.display()), e))?;
    let table = gpt::Gpt::read(&mut f).map_err(|e| failed("reading the partition table", e))?;
    let span = |slot: Slot| {
        table
            .find(slot.template_label())
            .map(|(_, p)| (p.first_lba * gpt::SECTOR, p.size_bytes()))
            .ok_or_else(|| {
                failed(
                    "the partition table",
                    format!("no {}", slot.template_label()),
                )
            })
    };
    let ((src, src_len), (dst, dst_len)) = (span(from)?, span(to)?);
    let mut buf = vec![0u8; 4 << 20];
    let mut done = 0;
    let len = src_len.min(dst_len);
    while done < len {
        let n = (len - done).min(buf.len() as u64) as usize;
        f.seek(SeekFrom::Start(src + done))
            .and_then(|_| f.read_exact(&mut buf[..n]))
            .map_err(|e| failed("reading a template partition", e))?;
        f.seek(SeekFrom::Start(dst + done))
            .and_then(|_| f.write_all(&buf[..n]))
            .map_err(|e| failed("writing a template partition", e))?;
        done += n as u64;
    }
    f.sync_all().map_err(|e| failed("syncing the disk", e))
}

/// The slots' UKI file names on `disk`'s ESP, sorted.
pub fn slot_ukis(disk: &Path) -> Result<Vec<String>, EspConfigError> {
    let mut v: Vec<String> = files(disk)?
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| UkiName::parse(p).is_some())
        .collect();
    v.sort();
    Ok(v)
}

/// Signs every EFI program on `disk`'s ESP (the boot manager, the slots'
/// UKIs) for Secure Boot with Debian's OVMF test key
/// (`crate::secure_boot`), in place.
pub fn sign_efi(disk: &Path) -> Result<(), EspConfigError> {
    let mut err = None;
    rewrite(disk, |files| {
        for (path, bytes) in files.iter_mut() {
            if !path.to_ascii_lowercase().ends_with(".efi") || err.is_some() {
                continue;
            }
            match crate::secure_boot::sign(bytes) {
                Ok(signed) => *bytes = signed,
                Err(e) => err = Some(failed(format!("signing {path}"), e)),
            }
        }
    })?;
    err.map_or(Ok(()), Err)
}

/// The files on `disk`'s ESP (path, bytes).
pub fn files(disk: &Path) -> Result<Vec<(String, Vec<u8>)>, EspConfigError> {
    let mut out = Vec::new();
    rewrite_with(disk, false, |files| out = files.clone())?;
    Ok(out)
}

/// Reads every file of `disk`'s ESP, lets `change` alter the list, and
/// writes a fresh ESP of the same size.
fn rewrite(
    disk: &Path,
    change: impl FnOnce(&mut Vec<(String, Vec<u8>)>),
) -> Result<(), EspConfigError> {
    rewrite_with(disk, true, change)
}

fn rewrite_with(
    disk: &Path,
    write: bool,
    change: impl FnOnce(&mut Vec<(String, Vec<u8>)>),
) -> Result<(), EspConfigError> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .open(disk)
        .map_err(|e| failed(format!("opening {}", disk.display()), e))?;
    let table = gpt::Gpt::read(&mut f).map_err(|e| failed("reading the partition table", e))?;
    let (_, p) = table
        .find(LABEL_ESP)
        .ok_or_else(|| failed("the partition table", "no ESP"))?;
    let size = (p.last_lba + 1 - p.first_lba) * gpt::SECTOR;
    let mut old = vec![0u8; size as usize];
    f.seek(SeekFrom::Start(p.first_lba * gpt::SECTOR))
        .and_then(|_| f.read_exact(&mut old))
        .map_err(|e| failed("reading the ESP", e))?;
    let mut files = Vec::new();
    for (path, _) in esp::list(&old).map_err(|e| failed("listing the ESP", e))? {
        let bytes = esp::read_file(&old, &path).map_err(|e| failed("reading the ESP", e))?;
        files.push((path, bytes));
    }
    change(&mut files);
    if !write {
        return Ok(());
    }
    let fat = esp::build(&files, size, 0x7e57_c0f9).map_err(|e| failed("building the ESP", e))?;
    f.seek(SeekFrom::Start(p.first_lba * gpt::SECTOR))
        .and_then(|_| f.write_all(&fat))
        .and_then(|_| f.sync_all())
        .map_err(|e| failed("writing the ESP", e))
}
