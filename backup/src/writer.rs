//! Writing a backup: the header with its key slots, then the entries as
//! one sealed stream.

use crate::chunk::{chunk_ad, read_full, Sealer};
use crate::error::{io, BackupError};
use crate::header::{self, Header, Meta};
use crate::slot::{self, DataKey, SlotKey, SlotKind};
use crate::{name, CHUNK_SIZE, MAGIC, MAX_ENTRIES, MAX_HEADER, MAX_TOTAL};
use std::collections::BTreeSet;
use std::io::{Read, Write};

/// Streams a backup into `W`. Nothing before a successful `finish` is a
/// backup: without its last chunk a reader calls the file truncated.
pub struct Writer<W: Write> {
    sealer: Sealer<W>,
    names: BTreeSet<String>,
    total: u64,
    /// An entry failed part-way: what was written is not a backup.
    failed: bool,
}

impl<W: Write> Writer<W> {
    /// Writes the header: `meta`, and a slot for each of `slots` (at least
    /// one, at most one of each kind), sealing a new random data key.
    pub fn new(out: W, meta: &Meta, slots: &[SlotKey]) -> Result<Writer<W>, BackupError> {
        Writer::with_chunk_size(out, meta, slots, CHUNK_SIZE)
    }

    /// `new` with another plaintext chunk size (MIN_CHUNK_SIZE to
    /// MAX_CHUNK_SIZE): for tests, which want many chunks from little data.
    pub fn with_chunk_size(
        mut out: W,
        meta: &Meta,
        slots: &[SlotKey],
        chunk_size: u32,
    ) -> Result<Writer<W>, BackupError> {
        header::check_meta(meta)?;
        header::check_chunk_size(chunk_size)?;
        let kinds: Vec<SlotKind> = slots.iter().map(|s| s.kind).collect();
        header::check_slot_kinds(&kinds).map_err(|why| BackupError::Slots(why.into()))?;
        let data = DataKey::random()?;
        let slots = slots
            .iter()
            .map(|k| slot::seal(k, &data))
            .collect::<Result<Vec<_>, _>>()?;
        let text = header::encode(&Header {
            meta: meta.clone(),
            chunk_size,
            slots,
        })?;
        let len = u32::try_from(text.len())
            .ok()
            .filter(|l| (1..=MAX_HEADER).contains(l))
            .ok_or_else(|| {
                BackupError::OverCap(format!(
                    "the header is {} bytes, at most {MAX_HEADER}",
                    text.len()
                ))
            })?;
        let mut prefix = Vec::with_capacity(12 + text.len());
        prefix.extend_from_slice(MAGIC);
        prefix.extend_from_slice(&len.to_be_bytes());
        prefix.extend_from_slice(&text);
        out.write_all(&prefix)
            .map_err(io("writing the backup's header"))?;
        let sealer = Sealer::new(
            out,
            data.aead_key()?,
            chunk_ad(&prefix),
            chunk_size,
            prefix.len() as u64,
        );
        Ok(Writer {
            sealer,
            names: BTreeSet::new(),
            total: 0,
            failed: false,
        })
    }

    /// Adds entry `name` of exactly `len` bytes read from `data`. A reader
    /// that gives fewer or more is an error, and so is anything after it:
    /// the backup being written is then unusable.
    pub fn entry(&mut self, name: &str, len: u64, data: &mut impl Read) -> Result<(), BackupError> {
        if self.failed {
            return Err(BackupError::Stopped);
        }
        let r = self.entry_inner(name, len, data);
        self.failed = r.is_err();
        r
    }

    fn entry_inner(
        &mut self,
        name: &str,
        len: u64,
        data: &mut impl Read,
    ) -> Result<(), BackupError> {
        let name = name::checked(name.as_bytes())?;
        if self.names.contains(&name) {
            return Err(BackupError::BadName {
                name,
                why: "it is already in the backup",
            });
        }
        if self.names.len() >= MAX_ENTRIES {
            return Err(BackupError::OverCap(format!(
                "entry {name:?} would be entry {}; a backup holds at most {MAX_ENTRIES}",
                MAX_ENTRIES + 1
            )));
        }
        if len > MAX_TOTAL - self.total {
            return Err(BackupError::OverCap(format!(
                "entry {name:?} of {len} bytes would bring the entries to more than {MAX_TOTAL} bytes"
            )));
        }
        // Checked: at most MAX_NAME bytes.
        self.sealer.push(&(name.len() as u16).to_be_bytes())?;
        self.sealer.push(name.as_bytes())?;
        self.sealer.push(&len.to_be_bytes())?;
        let mut left = len;
        while left > 0 {
            let room = self.sealer.room()?;
            let want = room.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = read_full(data, &mut room[..want])
                .map_err(io(format!("reading entry {name:?} to back it up")))?;
            self.sealer.advance(n);
            left -= n as u64;
            if n < want {
                return Err(BackupError::EntryLength {
                    name,
                    said: len,
                    gave: (len - left).to_string(),
                });
            }
        }
        let mut more = [0u8; 1];
        if read_full(data, &mut more)
            .map_err(io(format!("reading entry {name:?} to back it up")))?
            != 0
        {
            return Err(BackupError::EntryLength {
                name,
                said: len,
                gave: format!("more than {len}"),
            });
        }
        self.total += len;
        self.names.insert(name);
        Ok(())
    }

    /// Writes the end marker and the last chunk; gives the output back.
    pub fn finish(mut self) -> Result<W, BackupError> {
        if self.failed {
            return Err(BackupError::Stopped);
        }
        self.sealer.push(&[0, 0])?;
        self.sealer.finish()
    }

    /// Seals `stream` as the whole plaintext, entry framing, end marker
    /// and all: how tests and the fuzzer reach the entry parser behind
    /// valid tags with streams the writer would never make.
    #[cfg(any(test, fuzzing))]
    pub(crate) fn finish_raw(mut self, stream: &[u8]) -> Result<W, BackupError> {
        self.sealer.push(stream)?;
        self.sealer.finish()
    }
}
