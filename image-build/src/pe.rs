//! The sections of a PE image (a UKI: `.linux`, `.initrd`, `.cmdline`,
//! `.osrel`, ...), read with bounds checks: the image listing shows them,
//! the PCR 11 computation measures them, host-init reads a slot's version
//! from them. A file that is not what it claims is an error, never a panic.

#[derive(Debug, thiserror::Error)]
pub enum PeError {
    #[error("not a PE image: {0}")]
    NotPe(&'static str),
    #[error("section {name} lies outside the file ({offset}+{len} of {size} bytes)")]
    OutOfFile {
        name: String,
        offset: u64,
        len: u64,
        size: u64,
    },
    #[error("the UKI has two {0} sections")]
    Twice(String),
}

/// One section: its bytes in the file (borrowed: a hostile file cannot
/// make copies of itself), and how long the loader maps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section<'a> {
    pub name: String,
    /// The section's bytes as stored (at most `virtual_size` of them).
    pub data: &'a [u8],
    pub virtual_size: u64,
}

/// The PE format's own limit on sections.
const MAX_SECTIONS: usize = 96;

impl Section<'_> {
    /// The section as the loader maps it: `virtual_size` bytes, zeros past
    /// what the file stores.
    pub fn mapped(&self) -> Vec<u8> {
        let mut v = self.data.to_vec();
        v.resize(self.virtual_size as usize, 0);
        v
    }
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, PeError> {
    b.get(at..at + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or(PeError::NotPe("truncated header"))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, PeError> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(PeError::NotPe("truncated header"))
}

/// Every section of `pe`, in the file's order.
pub fn sections(pe: &[u8]) -> Result<Vec<Section<'_>>, PeError> {
    if pe.get(..2) != Some(b"MZ") {
        return Err(PeError::NotPe("no MZ header"));
    }
    let at = u32_at(pe, 0x3C)? as usize;
    if pe.get(at..at + 4) != Some(b"PE\0\0") {
        return Err(PeError::NotPe("no PE signature"));
    }
    let coff = at + 4;
    let count = u16_at(pe, coff + 2)? as usize;
    if count > MAX_SECTIONS {
        return Err(PeError::NotPe("more sections than the format allows"));
    }
    let optional = u16_at(pe, coff + 16)? as usize;
    let table = coff + 20 + optional;
    let mut out = Vec::with_capacity(count.min(96));
    for i in 0..count {
        let h = table + i * 40;
        let raw_name = pe
            .get(h..h + 8)
            .ok_or(PeError::NotPe("truncated section table"))?;
        let end = raw_name.iter().position(|b| *b == 0).unwrap_or(8);
        let name = String::from_utf8_lossy(&raw_name[..end]).into_owned();
        let virtual_size = u32_at(pe, h + 8)? as u64;
        let raw_size = u32_at(pe, h + 16)? as u64;
        let raw_at = u32_at(pe, h + 20)? as u64;
        // A virtual size of 0 means "as stored" to some linkers.
        let (virtual_size, present) = if virtual_size == 0 {
            (raw_size, raw_size)
        } else {
            (virtual_size, virtual_size.min(raw_size))
        };
        let bytes = pe
            .get(raw_at as usize..(raw_at + present) as usize)
            .ok_or_else(|| PeError::OutOfFile {
                name: name.clone(),
                offset: raw_at,
                len: present,
                size: pe.len() as u64,
            })?;
        out.push(Section {
            name,
            data: bytes,
            virtual_size,
        });
    }
    Ok(out)
}

/// Whether `pe` carries an Authenticode signature: a certificate table
/// (data directory 4) inside the file whose first entry is PKCS#7 signed
/// data. Its shape only: the firmware checks it against its keys; this
/// tells an update that would never boot under Secure Boot from one that
/// may.
pub fn authenticode_signed(pe: &[u8]) -> Result<bool, PeError> {
    if pe.get(..2) != Some(b"MZ") {
        return Err(PeError::NotPe("no MZ header"));
    }
    let at = u32_at(pe, 0x3C)? as usize;
    if pe.get(at..at + 4) != Some(b"PE\0\0") {
        return Err(PeError::NotPe("no PE signature"));
    }
    let opt = at + 24;
    // PE32+ keeps its data directories 16 bytes later than PE32.
    let (count_at, dirs) = match u16_at(pe, opt)? {
        0x20b => (opt + 108, opt + 112),
        0x10b => (opt + 92, opt + 96),
        _ => return Err(PeError::NotPe("unknown optional header")),
    };
    if u32_at(pe, count_at)? <= 4 {
        return Ok(false);
    }
    let (offset, size) = (
        u32_at(pe, dirs + 32)? as usize,
        u32_at(pe, dirs + 36)? as usize,
    );
    if size < 8 || offset.checked_add(size).is_none_or(|end| end > pe.len()) {
        return Ok(false);
    }
    // WIN_CERTIFICATE: length, revision, type (2: PKCS_SIGNED_DATA).
    Ok(u16_at(pe, offset + 6)? == 2 && u32_at(pe, offset)? as usize >= 8)
}

/// The `.osrel` section's `KEY=value` for `key` (quotes removed).
pub fn osrel_value(pe: &[u8], key: &str) -> Result<Option<String>, PeError> {
    let Some(osrel) = sections(pe)?.into_iter().find(|s| s.name == ".osrel") else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(osrel.data).into_owned();
    Ok(text.lines().find_map(|l| {
        let v = l.strip_prefix(key)?.strip_prefix('=')?;
        Some(v.trim_end_matches('\0').trim_matches('"').to_string())
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PE32+ header with 16 data directories and, when `cert` is given,
    /// a certificate table of that WIN_CERTIFICATE type at the end.
    fn pe(cert: Option<u16>, table_len: u32) -> Vec<u8> {
        let mut b = vec![0u8; 0x400];
        b[..2].copy_from_slice(b"MZ");
        b[0x3C..0x40].copy_from_slice(&0x40u32.to_le_bytes());
        b[0x40..0x44].copy_from_slice(b"PE\0\0");
        let opt = 0x40 + 24;
        b[opt..opt + 2].copy_from_slice(&0x20bu16.to_le_bytes());
        b[opt + 108..opt + 112].copy_from_slice(&16u32.to_le_bytes());
        if let Some(kind) = cert {
            let at = 0x300u32;
            b[opt + 144..opt + 148].copy_from_slice(&at.to_le_bytes());
            b[opt + 148..opt + 152].copy_from_slice(&table_len.to_le_bytes());
            let at = at as usize;
            b[at..at + 4].copy_from_slice(&0x100u32.to_le_bytes());
            b[at + 4..at + 6].copy_from_slice(&0x200u16.to_le_bytes());
            b[at + 6..at + 8].copy_from_slice(&kind.to_le_bytes());
        }
        b
    }

    #[test]
    fn a_signature_is_told_from_none_and_from_a_lie() {
        assert!(authenticode_signed(&pe(Some(2), 0x100)).expect("pe"));
        assert!(!authenticode_signed(&pe(None, 0)).expect("pe"), "no table");
        assert!(
            !authenticode_signed(&pe(Some(1), 0x100)).expect("pe"),
            "an X.509 entry is no signature"
        );
        assert!(
            !authenticode_signed(&pe(Some(2), 0x1000)).expect("pe"),
            "a table past the file's end"
        );
        assert!(
            authenticode_signed(b"MZ").is_err(),
            "truncated: an error, not a panic"
        );
        assert!(authenticode_signed(b"not a pe").is_err());
    }
}
