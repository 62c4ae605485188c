//! GUID partition tables: enough to build the appliance disk, find a
//! partition by its label, and grow the last partition to the end of a disk
//! that is larger than the image written onto it.
//!
//! 512-byte logical sectors only (what `dd` onto a server disk and QEMU
//! give us); a 4Kn disk is refused with a clear error rather than misread.

use std::io::{Read, Seek, SeekFrom, Write};

pub const SECTOR: u64 = 512;
const SIGNATURE: &[u8; 8] = b"EFI PART";
const REVISION: u32 = 0x0001_0000;
const HEADER_SIZE: u32 = 92;
const ENTRY_SIZE: u32 = 128;
const ENTRY_COUNT: u32 = 128;
/// Sectors the entry array takes (128 × 128 bytes).
const ENTRY_SECTORS: u64 = (ENTRY_SIZE as u64 * ENTRY_COUNT as u64) / SECTOR;

/// EFI System Partition.
pub const TYPE_ESP: Guid = Guid::parse_const("C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
/// Linux filesystem data.
pub const TYPE_LINUX: Guid = Guid::parse_const("0FC63DAF-8483-4772-8E79-3D69D8477DE4");

#[derive(Debug, thiserror::Error)]
pub enum GptError {
    #[error("i/o on the disk: {0}")]
    Io(#[from] std::io::Error),
    #[error("no GPT header (signature missing at LBA 1)")]
    NoGpt,
    #[error("GPT header is damaged: {0}")]
    Corrupt(String),
    #[error("the disk is too small: {0}")]
    TooSmall(String),
    #[error("partition {index} ({name}) is not the last one on the disk, so it cannot grow")]
    NotLast { index: usize, name: String },
}

/// A GUID in its on-disk (mixed-endian) byte order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Guid(pub [u8; 16]);

const fn hex(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => panic!("not a hex digit in a GUID constant"),
    }
}

impl Guid {
    /// Parses the canonical text form at compile time (constants only).
    pub const fn parse_const(s: &str) -> Guid {
        let b = s.as_bytes();
        let mut raw = [0u8; 16];
        let mut i = 0;
        let mut n = 0;
        while i < b.len() {
            if b[i] == b'-' {
                i += 1;
                continue;
            }
            raw[n] = hex(b[i]) << 4 | hex(b[i + 1]);
            n += 1;
            i += 2;
        }
        // The first three fields are stored little-endian.
        Guid([
            raw[3], raw[2], raw[1], raw[0], raw[5], raw[4], raw[7], raw[6], raw[8], raw[9],
            raw[10], raw[11], raw[12], raw[13], raw[14], raw[15],
        ])
    }

    /// A version-4 style GUID from 16 bytes of a hash or of randomness.
    pub fn from_bytes(mut b: [u8; 16]) -> Guid {
        b[7] = (b[7] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        Guid(b)
    }

    pub fn is_zero(&self) -> bool {
        self.0 == [0; 16]
    }
}

impl std::fmt::Display for Guid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02X}{:02X}{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-",
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9]
        )?;
        for x in &b[10..] {
            write!(f, "{x:02X}")?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    pub type_guid: Guid,
    pub guid: Guid,
    pub first_lba: u64,
    pub last_lba: u64,
    pub attributes: u64,
    pub name: String,
}

impl Partition {
    pub fn size_bytes(&self) -> u64 {
        (self.last_lba + 1 - self.first_lba) * SECTOR
    }
}

/// A parsed table; `entries` keeps empty slots out, `slots` remembers
/// where each entry lives so rewriting keeps partition numbers stable.
#[derive(Clone, Debug)]
pub struct Gpt {
    pub disk_guid: Guid,
    pub first_usable: u64,
    pub last_usable: u64,
    /// LBA of the backup header as the table says (the disk's last sector
    /// when the table was written).
    pub alternate_lba: u64,
    pub partitions: Vec<(usize, Partition)>,
}

fn le32(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

fn guid_at(b: &[u8], at: usize) -> Guid {
    let mut g = [0u8; 16];
    g.copy_from_slice(&b[at..at + 16]);
    Guid(g)
}

fn name_from_utf16(b: &[u8]) -> String {
    let units: Vec<u16> = b
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    String::from_utf16_lossy(&units)
}

impl Gpt {
    /// A fresh table for a disk of `disk_sectors`.
    pub fn new(disk_sectors: u64, disk_guid: Guid) -> Result<Gpt, GptError> {
        let need = 2 * (ENTRY_SECTORS + 1) + 2;
        if disk_sectors < need + 1 {
            return Err(GptError::TooSmall(format!(
                "{disk_sectors} sectors cannot hold a GPT ({need} needed)"
            )));
        }
        Ok(Gpt {
            disk_guid,
            first_usable: 2 + ENTRY_SECTORS,
            last_usable: disk_sectors - 2 - ENTRY_SECTORS,
            alternate_lba: disk_sectors - 1,
            partitions: Vec::new(),
        })
    }

    /// Reads and verifies the primary table (header and entry CRCs).
    pub fn read(disk: &mut (impl Read + Seek)) -> Result<Gpt, GptError> {
        let mut hdr = [0u8; SECTOR as usize];
        disk.seek(SeekFrom::Start(SECTOR))?;
        disk.read_exact(&mut hdr)?;
        if &hdr[0..8] != SIGNATURE {
            return Err(GptError::NoGpt);
        }
        let size = le32(&hdr, 12);
        if !(HEADER_SIZE..=SECTOR as u32).contains(&size) {
            return Err(GptError::Corrupt(format!("header size {size}")));
        }
        let want_crc = le32(&hdr, 16);
        let mut check = hdr[..size as usize].to_vec();
        check[16..20].fill(0);
        if crc32fast::hash(&check) != want_crc {
            return Err(GptError::Corrupt("header CRC mismatch".into()));
        }
        let entries_lba = le64(&hdr, 72);
        let count = le32(&hdr, 80);
        let entry_size = le32(&hdr, 84);
        if !(128..=4096).contains(&entry_size) || count > 1024 || entry_size % 8 != 0 {
            return Err(GptError::Corrupt(format!(
                "{count} entries of {entry_size} bytes"
            )));
        }
        let mut table = vec![0u8; count as usize * entry_size as usize];
        let at = entries_lba
            .checked_mul(SECTOR)
            .ok_or_else(|| GptError::Corrupt(format!("entry array at LBA {entries_lba}")))?;
        disk.seek(SeekFrom::Start(at))?;
        disk.read_exact(&mut table)?;
        if crc32fast::hash(&table) != le32(&hdr, 88) {
            return Err(GptError::Corrupt(
                "partition entry array CRC mismatch".into(),
            ));
        }
        let mut partitions = Vec::new();
        for (i, e) in table.chunks_exact(entry_size as usize).enumerate() {
            let type_guid = guid_at(e, 0);
            if type_guid.is_zero() {
                continue;
            }
            partitions.push((
                i,
                Partition {
                    type_guid,
                    guid: guid_at(e, 16),
                    first_lba: le64(e, 32),
                    last_lba: le64(e, 40),
                    attributes: le64(e, 48),
                    name: name_from_utf16(&e[56..128]),
                },
            ));
        }
        Ok(Gpt {
            disk_guid: guid_at(&hdr, 56),
            first_usable: le64(&hdr, 40),
            last_usable: le64(&hdr, 48),
            alternate_lba: le64(&hdr, 32),
            partitions,
        })
    }

    /// Appends a partition of `sectors` after the last one (1 MiB aligned);
    /// `sectors == 0` takes the rest of the disk. Returns its slot index.
    pub fn add(
        &mut self,
        name: &str,
        type_guid: Guid,
        guid: Guid,
        sectors: u64,
    ) -> Result<usize, GptError> {
        const ALIGN: u64 = 2048;
        let after = self
            .partitions
            .iter()
            .map(|(_, p)| p.last_lba + 1)
            .max()
            .unwrap_or(self.first_usable);
        let first = after.div_ceil(ALIGN) * ALIGN;
        let last = if sectors == 0 {
            self.last_usable
        } else {
            first + sectors - 1
        };
        if last > self.last_usable || first > last {
            return Err(GptError::TooSmall(format!(
                "partition {name} ({sectors} sectors at {first}) does not fit"
            )));
        }
        let slot = self.partitions.len();
        self.partitions.push((
            slot,
            Partition {
                type_guid,
                guid,
                first_lba: first,
                last_lba: last,
                attributes: 0,
                name: name.to_string(),
            },
        ));
        Ok(slot)
    }

    pub fn find(&self, name: &str) -> Option<&(usize, Partition)> {
        self.partitions.iter().find(|(_, p)| p.name == name)
    }

    /// Moves the backup table to the end of a disk of `disk_sectors` and
    /// extends partition `name` (which must be the last) to fill it.
    /// Returns whether anything changed.
    pub fn grow_to_disk(&mut self, name: &str, disk_sectors: u64) -> Result<bool, GptError> {
        let new_last_usable = disk_sectors
            .checked_sub(2 + ENTRY_SECTORS)
            .ok_or_else(|| GptError::TooSmall(format!("{disk_sectors} sectors")))?;
        let (slot, part) = self
            .find(name)
            .cloned()
            .ok_or_else(|| GptError::Corrupt(format!("no partition named {name}")))?;
        if self
            .partitions
            .iter()
            .any(|(_, p)| p.first_lba > part.first_lba)
        {
            return Err(GptError::NotLast {
                index: slot + 1,
                name: name.to_string(),
            });
        }
        if new_last_usable < part.last_lba {
            return Err(GptError::TooSmall(format!(
                "the disk ({disk_sectors} sectors) ends before partition {name} does"
            )));
        }
        if new_last_usable == part.last_lba && self.alternate_lba == disk_sectors - 1 {
            return Ok(false);
        }
        self.last_usable = new_last_usable;
        self.alternate_lba = disk_sectors - 1;
        for (s, p) in &mut self.partitions {
            if *s == slot {
                p.last_lba = new_last_usable;
            }
        }
        Ok(true)
    }

    fn entry_array(&self) -> Vec<u8> {
        let mut table = vec![0u8; (ENTRY_SIZE * ENTRY_COUNT) as usize];
        for (slot, p) in &self.partitions {
            let at = slot * ENTRY_SIZE as usize;
            let e = &mut table[at..at + ENTRY_SIZE as usize];
            e[0..16].copy_from_slice(&p.type_guid.0);
            e[16..32].copy_from_slice(&p.guid.0);
            e[32..40].copy_from_slice(&p.first_lba.to_le_bytes());
            e[40..48].copy_from_slice(&p.last_lba.to_le_bytes());
            e[48..56].copy_from_slice(&p.attributes.to_le_bytes());
            for (i, u) in p.name.encode_utf16().take(35).enumerate() {
                e[56 + 2 * i..58 + 2 * i].copy_from_slice(&u.to_le_bytes());
            }
        }
        table
    }

    fn header(&self, my_lba: u64, other_lba: u64, entries_lba: u64, entries_crc: u32) -> Vec<u8> {
        let mut h = vec![0u8; SECTOR as usize];
        h[0..8].copy_from_slice(SIGNATURE);
        h[8..12].copy_from_slice(&REVISION.to_le_bytes());
        h[12..16].copy_from_slice(&HEADER_SIZE.to_le_bytes());
        h[24..32].copy_from_slice(&my_lba.to_le_bytes());
        h[32..40].copy_from_slice(&other_lba.to_le_bytes());
        h[40..48].copy_from_slice(&self.first_usable.to_le_bytes());
        h[48..56].copy_from_slice(&self.last_usable.to_le_bytes());
        h[56..72].copy_from_slice(&self.disk_guid.0);
        h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        h[80..84].copy_from_slice(&ENTRY_COUNT.to_le_bytes());
        h[84..88].copy_from_slice(&ENTRY_SIZE.to_le_bytes());
        h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        let crc = crc32fast::hash(&h[..HEADER_SIZE as usize]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// Writes the protective MBR, both headers and both entry arrays. The
    /// backup goes first so that a crash in between leaves the old primary
    /// (still valid for the old disk end) in place.
    pub fn write(&self, disk: &mut (impl Write + Seek)) -> Result<(), GptError> {
        let table = self.entry_array();
        let crc = crc32fast::hash(&table);
        let backup_entries = self
            .alternate_lba
            .checked_sub(ENTRY_SECTORS)
            .filter(|b| *b > self.last_usable)
            .ok_or_else(|| {
                GptError::Corrupt(format!("backup header at LBA {}", self.alternate_lba))
            })?;
        disk.seek(SeekFrom::Start(backup_entries * SECTOR))?;
        disk.write_all(&table)?;
        disk.write_all(&self.header(self.alternate_lba, 1, backup_entries, crc))?;
        disk.flush()?;

        let mut mbr = vec![0u8; SECTOR as usize];
        let pe = &mut mbr[446..462];
        pe[1] = 0x00;
        pe[2] = 0x02; // CHS of LBA 1, as the protective MBR convention has it
        pe[4] = 0xEE;
        pe[5..8].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
        pe[8..12].copy_from_slice(&1u32.to_le_bytes());
        let size = u32::try_from(self.alternate_lba).unwrap_or(u32::MAX);
        pe[12..16].copy_from_slice(&size.to_le_bytes());
        mbr[510] = 0x55;
        mbr[511] = 0xAA;
        disk.seek(SeekFrom::Start(0))?;
        disk.write_all(&mbr)?;
        disk.write_all(&self.header(1, self.alternate_lba, 2, crc))?;
        disk.write_all(&table)?;
        disk.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn disk(sectors: u64) -> Cursor<Vec<u8>> {
        Cursor::new(vec![0u8; (sectors * SECTOR) as usize])
    }

    #[test]
    fn guid_text_round_trip() {
        assert_eq!(TYPE_ESP.to_string(), "C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
    }

    #[test]
    fn write_read_and_grow() {
        let mut d = disk(8192);
        let mut g = Gpt::new(8192, Guid::from_bytes([7; 16])).expect("gpt");
        g.add("esp", TYPE_ESP, Guid::from_bytes([1; 16]), 2048)
            .expect("esp");
        g.add("data", TYPE_LINUX, Guid::from_bytes([2; 16]), 1024)
            .expect("data");
        g.write(&mut d).expect("write");
        let back = Gpt::read(&mut d).expect("read");
        assert_eq!(back.partitions, g.partitions);
        assert_eq!(back.find("data").map(|(_, p)| p.first_lba), Some(4096));

        // The same bytes on a bigger disk: the data partition grows.
        let mut big = d.into_inner();
        big.resize((20000 * SECTOR) as usize, 0);
        let mut big = Cursor::new(big);
        let mut t = Gpt::read(&mut big).expect("read on big disk");
        assert!(t.grow_to_disk("data", 20000).expect("grow"));
        t.write(&mut big).expect("write");
        let t = Gpt::read(&mut big).expect("reread");
        let (_, p) = t.find("data").expect("data");
        assert_eq!(p.last_lba, 20000 - 34);
        assert_eq!(t.alternate_lba, 19999);
        assert!(!t.clone().grow_to_disk("data", 20000).expect("again"));
        // Only the last partition may grow.
        assert!(matches!(
            t.clone().grow_to_disk("esp", 20000),
            Err(GptError::NotLast { .. })
        ));
    }

    #[test]
    fn damage_is_detected_not_misread() {
        let mut d = disk(4096);
        let mut g = Gpt::new(4096, Guid::from_bytes([7; 16])).expect("gpt");
        g.add("data", TYPE_LINUX, Guid::from_bytes([2; 16]), 0)
            .expect("data");
        g.write(&mut d).expect("write");
        let mut bytes = d.into_inner();
        bytes[2 * SECTOR as usize + 60] ^= 0xff; // inside entry 0's name
        assert!(matches!(
            Gpt::read(&mut Cursor::new(bytes.clone())),
            Err(GptError::Corrupt(_))
        ));
        bytes[SECTOR as usize] = b'X';
        assert!(matches!(
            Gpt::read(&mut Cursor::new(bytes)),
            Err(GptError::NoGpt)
        ));
        assert!(matches!(
            Gpt::read(&mut Cursor::new(vec![0u8; 100])),
            Err(GptError::Io(_))
        ));
    }
}
