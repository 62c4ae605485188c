//! Listing what an appliance disk image holds, down to every file in the
//! initramfs inside the unified kernel image, and the check that none of
//! it is a shell or an interpreter.

use crate::{cpio, esp, gpt};
use std::io::Cursor;

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("reading the partition table: {0}")]
    Gpt(#[from] gpt::GptError),
    #[error("reading the ESP: {0}")]
    Esp(#[from] esp::EspError),
    #[error("the image has no {0} partition")]
    Missing(&'static str),
    #[error("the UKI is malformed: {0}")]
    Pe(String),
    #[error("the initramfs: {0}")]
    Initramfs(String),
}

/// One section of a PE image.
pub use crate::pe::Section;

/// The sections of a PE file (a UKI: .linux, .initrd, .cmdline, .osrel, ...).
pub fn pe_sections(pe: &[u8]) -> Result<Vec<Section<'_>>, InspectError> {
    crate::pe::sections(pe).map_err(|e| InspectError::Pe(e.to_string()))
}

/// Decompresses an initramfs (zstd or plain) and reads its entries.
pub fn initramfs_entries(data: &[u8]) -> Result<Vec<cpio::Listed>, InspectError> {
    let plain = if data.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        use std::io::Read;
        let mut out = Vec::new();
        ruzstd::decoding::StreamingDecoder::new(Cursor::new(data))
            .map_err(|e| InspectError::Initramfs(e.to_string()))?
            .read_to_end(&mut out)
            .map_err(|e| InspectError::Initramfs(e.to_string()))?;
        out
    } else {
        data.to_vec()
    };
    cpio::read_archive(&plain).map_err(|e| InspectError::Initramfs(e.to_string()))
}

/// Names no file in the host image may have.
const FORBIDDEN: &[&str] = &[
    "sh", "bash", "dash", "ash", "zsh", "ksh", "csh", "tcsh", "fish", "busybox", "toybox",
    "python", "python3", "perl", "ruby", "lua", "node", "tclsh", "wish", "awk", "gawk", "mawk",
    "php", "sudo", "su", "login", "getty", "agetty", "sshd", "ssh", "dropbear", "apt", "dpkg",
];

/// Why a file looks like a shell, an interpreter or a script, if it does.
pub fn forbidden_reason(e: &cpio::Listed) -> Option<String> {
    if !e.is_file() {
        return None;
    }
    let base = e.path.rsplit('/').next().unwrap_or(&e.path);
    let stem = base.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
    if FORBIDDEN.contains(&base) || FORBIDDEN.contains(&stem) {
        return Some(format!("{} is named like a shell or interpreter", e.path));
    }
    if e.data.starts_with(b"#!") {
        return Some(format!("{} is a script", e.path));
    }
    None
}

/// The full listing of a disk image, one line per item.
pub fn list_disk(disk: &[u8]) -> Result<(Vec<String>, Vec<cpio::Listed>), InspectError> {
    let mut lines = Vec::new();
    let table = gpt::Gpt::read(&mut Cursor::new(disk))?;
    let part = |p: &gpt::Partition| {
        let a = (p.first_lba * gpt::SECTOR) as usize;
        let b = ((p.last_lba + 1) * gpt::SECTOR) as usize;
        disk.get(a..b.min(disk.len())).unwrap_or(&[])
    };
    for (slot, p) in &table.partitions {
        lines.push(format!(
            "partition {} {:<14} {:>10} bytes  type {}",
            slot + 1,
            p.name,
            p.size_bytes(),
            p.type_guid
        ));
    }
    let (_, esp_part) = table
        .partitions
        .iter()
        .find(|(_, p)| p.type_guid == gpt::TYPE_ESP)
        .ok_or(InspectError::Missing("EFI system"))?;
    let esp_bytes = part(esp_part);
    for (path, size) in esp::list(esp_bytes)? {
        lines.push(format!("esp {path} {size} bytes"));
    }
    // Each slot's UKI; the initramfs checked is the first slot's (what
    // an image build made; an update's is checked by its own build).
    let mut entries = Vec::new();
    let mut ukis: Vec<String> = esp::list(esp_bytes)?
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| crate::slots::UkiName::parse(p).is_some())
        .collect();
    ukis.sort();
    if ukis.is_empty() {
        return Err(InspectError::Missing("slot UKI"));
    }
    for path in &ukis {
        let uki = esp::read_file(esp_bytes, path)?;
        for s in pe_sections(&uki)? {
            lines.push(format!(
                "uki {path} section {:<9} {} bytes",
                s.name,
                s.data.len()
            ));
            match s.name.as_str() {
                ".cmdline" | ".osrel" | ".uname" => {
                    for l in String::from_utf8_lossy(s.data)
                        .trim_end_matches('\0')
                        .lines()
                    {
                        lines.push(format!("uki {path} {} | {l}", s.name));
                    }
                }
                ".initrd" if entries.is_empty() => entries = initramfs_entries(s.data)?,
                _ => {}
            }
        }
    }
    for e in &entries {
        lines.push(format!(
            "initramfs {:06o} {:>10} {}",
            e.mode,
            e.data.len(),
            e.path
        ));
    }
    Ok((lines, entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, data: &[u8]) -> cpio::Listed {
        cpio::Listed {
            path: path.into(),
            mode: 0o100755,
            data: data.to_vec(),
        }
    }

    #[test]
    fn shells_interpreters_and_scripts_are_named() {
        assert!(forbidden_reason(&file("bin/sh", b"\x7fELF")).is_some());
        assert!(forbidden_reason(&file("usr/bin/python3.11", b"\x7fELF")).is_some());
        assert!(forbidden_reason(&file("usr/lib/x/run", b"#!/bin/foo\n")).is_some());
        assert!(forbidden_reason(&file("init", b"\x7fELF")).is_none());
        assert!(forbidden_reason(&file("usr/sbin/mke2fs", b"\x7fELF")).is_none());
    }

    #[test]
    fn hostile_pe_is_an_error() {
        assert!(pe_sections(b"MZ").is_err());
        let mut pe = vec![0u8; 512];
        pe[0] = b'M';
        pe[1] = b'Z';
        pe[0x3c] = 0x40;
        pe[0x40..0x44].copy_from_slice(b"PE\0\0");
        pe[0x46] = 0xff; // many sections, table past the end
        assert!(pe_sections(&pe).is_err());
    }
}
