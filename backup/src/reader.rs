//! Reading a backup: the header's checks, unlocking one slot, then the
//! entries as they stream out of verified chunks.

use crate::chunk::{chunk_ad, read_full, Opener};
use crate::error::{io, BackupError};
use crate::header::{self, Header, Meta};
use crate::slot::{self, Slot, SlotKind};
use crate::{name, MAGIC, MAX_ENTRIES, MAX_HEADER, MAX_NAME, MAX_TOTAL};
use std::collections::BTreeSet;
use std::io::{Read, Write};

/// A backup whose header passed its checks; nothing in it is
/// authenticated yet.
pub struct Reader<R: Read> {
    input: R,
    header: Header,
    /// Magic, length and header: what every chunk's associated data binds.
    prefix: Vec<u8>,
}

impl<R: Read> Reader<R> {
    /// Reads and checks the magic, the header's length and the header.
    pub fn open(mut input: R) -> Result<Reader<R>, BackupError> {
        let reading = "reading the backup's header";
        let mut magic = [0u8; 8];
        let n = read_full(&mut input, &mut magic).map_err(io(reading))?;
        if magic[..n] != MAGIC[..n] || n == 0 {
            return Err(if n == MAGIC.len() && magic[..6] == MAGIC[..6] {
                BackupError::UnsupportedVersion {
                    found: String::from_utf8_lossy(&magic[6..])
                        .escape_default()
                        .collect(),
                }
            } else {
                BackupError::NotABackup
            });
        }
        if n < MAGIC.len() {
            return Err(BackupError::Truncated {
                at: n as u64,
                what: "inside the magic",
            });
        }
        let mut len = [0u8; 4];
        let n = read_full(&mut input, &mut len).map_err(io(reading))?;
        if n < len.len() {
            return Err(BackupError::Truncated {
                at: 8 + n as u64,
                what: "inside the header's length",
            });
        }
        let len = u32::from_be_bytes(len);
        if len == 0 {
            return Err(BackupError::Header("its length is 0".into()));
        }
        if len > MAX_HEADER {
            return Err(BackupError::OverCap(format!(
                "the header says it is {len} bytes, at most {MAX_HEADER}"
            )));
        }
        let mut prefix = vec![0u8; 12 + len as usize];
        prefix[..8].copy_from_slice(MAGIC);
        prefix[8..12].copy_from_slice(&len.to_be_bytes());
        let n = read_full(&mut input, &mut prefix[12..]).map_err(io(reading))?;
        if n < len as usize {
            return Err(BackupError::Truncated {
                at: 12 + n as u64,
                what: "inside the header",
            });
        }
        let header = header::parse(&prefix[12..])?;
        Ok(Reader {
            input,
            header,
            prefix,
        })
    }

    /// What the header claims; not authenticated until `unlock`.
    pub fn meta(&self) -> &Meta {
        &self.header.meta
    }

    /// The key slots: one or two, at most one of each kind.
    pub fn slots(&self) -> &[Slot] {
        &self.header.slots
    }

    pub fn slot(&self, kind: SlotKind) -> Option<&Slot> {
        self.header.slots.iter().find(|s| s.kind == kind)
    }

    /// Whether `key` opens the slot of `kind`, keeping the reader: for a
    /// caller that tries the TPM and falls back to the recovery secret.
    pub fn try_key(&self, kind: SlotKind, key: &[u8; 32]) -> Result<(), BackupError> {
        slot::open(self.find(kind)?, key).map(drop)
    }

    fn find(&self, kind: SlotKind) -> Result<&Slot, BackupError> {
        self.slot(kind).ok_or_else(|| BackupError::NoSlot {
            kind,
            have: self
                .header
                .slots
                .iter()
                .map(|s| s.kind.label())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// Opens the slot of `kind` with `key`, then the first chunk: once
    /// this returns, the header (`Unlocked::meta`) is authenticated.
    pub fn unlock(self, kind: SlotKind, key: &[u8; 32]) -> Result<Unlocked<R>, BackupError> {
        let aead = slot::open(self.find(kind)?, key)?.aead_key()?;
        let mut chunks = Opener::new(
            self.input,
            aead,
            chunk_ad(&self.prefix),
            self.header.chunk_size,
            self.prefix.len() as u64,
        );
        chunks.next_chunk("the first entry")?;
        Ok(Unlocked {
            meta: self.header.meta,
            chunks,
            state: State::Between,
            names: BTreeSet::new(),
            total: 0,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Before an entry's head (or the end marker).
    Between,
    /// Inside an entry's bytes, this many left.
    Entry(u64),
    /// The end marker was read, at the end of the last chunk.
    Ended,
    /// An error stopped reading: the position in the stream is unknown.
    Failed,
}

/// A backup whose slot opened: its entries, in order. A restore must
/// stage what it reads and act on it only once `finish` succeeded: until
/// then the backup may still turn out cut short or altered.
pub struct Unlocked<R: Read> {
    meta: Meta,
    chunks: Opener<R>,
    state: State,
    names: BTreeSet<String>,
    total: u64,
}

/// One entry: its name and length, and its bytes through `Read` (or
/// `copy_to`). Bytes not read are skipped, still verified, by the next
/// `next_entry` or by `finish`.
pub struct Entry<'a, R: Read> {
    pub name: String,
    pub len: u64,
    unlocked: &'a mut Unlocked<R>,
}

impl<R: Read> Unlocked<R> {
    /// The header's metadata, authenticated.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// The next entry, or `None` after the last one.
    pub fn next_entry(&mut self) -> Result<Option<Entry<'_, R>>, BackupError> {
        let head = self.guard(Self::next_head)?;
        Ok(head.map(|(name, len)| Entry {
            name,
            len,
            unlocked: self,
        }))
    }

    /// Reads what is left (entries not read are verified and dropped),
    /// then checks that the stream ended at the end of the last chunk and
    /// that nothing follows it in the file.
    pub fn finish(mut self) -> Result<(), BackupError> {
        self.guard(|u| {
            while u.next_head()?.is_some() {}
            u.chunks.check_eof()
        })
    }

    /// Runs `op` unless an earlier error stopped reading, and stops
    /// reading if it fails.
    fn guard<T>(
        &mut self,
        op: impl FnOnce(&mut Self) -> Result<T, BackupError>,
    ) -> Result<T, BackupError> {
        if self.state == State::Failed {
            return Err(BackupError::Stopped);
        }
        let r = op(self);
        if r.is_err() {
            self.state = State::Failed;
        }
        r
    }

    fn next_head(&mut self) -> Result<Option<(String, u64)>, BackupError> {
        match self.state {
            State::Ended => return Ok(None),
            State::Failed => return Err(BackupError::Stopped),
            State::Entry(left) => self.skip(left)?,
            State::Between => {}
        }
        let mut len = [0u8; 2];
        self.chunks.read_exact(&mut len, "an entry's name length")?;
        let name_len = usize::from(u16::from_be_bytes(len));
        if name_len == 0 {
            if !self.chunks.at_end_of_last() {
                return Err(BackupError::Malformed(
                    "the end marker is not at the end of the last chunk".into(),
                ));
            }
            self.state = State::Ended;
            return Ok(None);
        }
        if self.names.len() >= MAX_ENTRIES {
            return Err(BackupError::OverCap(format!(
                "there are more than {MAX_ENTRIES} entries"
            )));
        }
        if name_len > MAX_NAME {
            return Err(BackupError::OverCap(format!(
                "entry {} has a name of {name_len} bytes, at most {MAX_NAME}",
                self.names.len()
            )));
        }
        let mut name = [0u8; MAX_NAME];
        self.chunks
            .read_exact(&mut name[..name_len], "an entry's name")?;
        let name = name::checked(&name[..name_len])?;
        if self.names.contains(&name) {
            return Err(BackupError::BadName {
                name,
                why: "a backup holds each name once, and this one is there twice",
            });
        }
        let mut len = [0u8; 8];
        self.chunks.read_exact(&mut len, "an entry's length")?;
        let len = u64::from_be_bytes(len);
        if len > MAX_TOTAL - self.total {
            return Err(BackupError::OverCap(format!(
                "entry {name:?} says it is {len} bytes, which would bring the entries to more than {MAX_TOTAL}"
            )));
        }
        self.total += len;
        self.names.insert(name.clone());
        self.state = State::Entry(len);
        Ok(Some((name, len)))
    }

    fn skip(&mut self, mut left: u64) -> Result<(), BackupError> {
        while left > 0 {
            let n = self.chunks.available("an entry")?.len() as u64;
            let n = n.min(left);
            self.chunks.consume(n as usize);
            left -= n;
        }
        self.state = State::Between;
        Ok(())
    }

    fn read_entry(&mut self, out: &mut [u8]) -> Result<usize, BackupError> {
        let State::Entry(left) = self.state else {
            return Ok(0);
        };
        if left == 0 || out.is_empty() {
            return Ok(0);
        }
        let avail = self.chunks.available("an entry")?;
        let n = avail
            .len()
            .min(out.len())
            .min(usize::try_from(left).unwrap_or(usize::MAX));
        out[..n].copy_from_slice(&avail[..n]);
        self.chunks.consume(n);
        self.state = State::Entry(left - n as u64);
        Ok(n)
    }
}

impl<R: Read> Entry<'_, R> {
    /// Copies the entry's bytes to `out`; how many.
    pub fn copy_to(&mut self, out: &mut impl Write) -> Result<u64, BackupError> {
        let mut copied = 0u64;
        let mut buf = zeroize::Zeroizing::new([0u8; 8192]);
        loop {
            let n = self.unlocked.guard(|u| u.read_entry(&mut buf[..]))?;
            if n == 0 {
                return Ok(copied);
            }
            out.write_all(&buf[..n])
                .map_err(io(format!("writing out entry {:?}", self.name)))?;
            copied += n as u64;
        }
    }
}

/// Errors are `BackupError`s inside an `io::Error`; `BackupError::from_io`
/// gets them back.
impl<R: Read> Read for Entry<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        self.unlocked
            .guard(|u| u.read_entry(out))
            .map_err(BackupError::into_io)
    }
}
