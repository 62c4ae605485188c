//! The payload's chunks: sealing a plaintext stream into them (STREAM:
//! each chunk's nonce is its index and whether it is the last) and opening
//! them again, handing out no byte before its chunk's tag checked.

use crate::error::{io, BackupError};
use ring::aead::{Aad, LessSafeKey, Nonce};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use zeroize::Zeroizing;

pub(crate) const TAG_LEN: usize = 16;
const CHUNK_AD_LABEL: &[u8] = b"paddock backup v1 chunk\0";
const AD_LEN: usize = CHUNK_AD_LABEL.len() + 32;

/// Every chunk's associated data: the label and the SHA-256 of the file's
/// bytes before the first chunk (magic, header length, header). A chunk
/// authenticates only behind the exact header it was written with.
pub(crate) fn chunk_ad(prefix: &[u8]) -> [u8; AD_LEN] {
    let mut ad = [0u8; AD_LEN];
    ad[..CHUNK_AD_LABEL.len()].copy_from_slice(CHUNK_AD_LABEL);
    ad[CHUNK_AD_LABEL.len()..].copy_from_slice(&Sha256::digest(prefix));
    ad
}

/// Three zero bytes, the index (u64, big-endian), 1 for the last chunk
/// else 0. The data key is new for every backup, so index and flag alone
/// make each nonce unique; the flag makes a cut after any chunk show.
fn nonce(index: u64, last: bool) -> Nonce {
    let mut n = [0u8; 12];
    n[3..11].copy_from_slice(&index.to_be_bytes());
    n[11] = u8::from(last);
    Nonce::assume_unique_for_key(n)
}

/// Reads until `buf` is full or the input ends; how many bytes came.
pub(crate) fn read_full(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// The writing side: plaintext goes into `buf`; a full chunk is sealed
/// only once more plaintext comes, so the one sealed by `finish` as the
/// last is never empty.
pub(crate) struct Sealer<W: Write> {
    out: W,
    key: LessSafeKey,
    ad: [u8; AD_LEN],
    /// A whole chunk as written: length, chunk_size bytes of plaintext
    /// (`fill` used) sealed in place, tag; one write for an unbuffered
    /// file. Plaintext not sealed yet is wiped on drop.
    buf: Zeroizing<Vec<u8>>,
    chunk_size: usize,
    fill: usize,
    index: u64,
    /// Bytes written so far, for errors.
    at: u64,
}

impl<W: Write> Sealer<W> {
    pub(crate) fn new(
        out: W,
        key: LessSafeKey,
        ad: [u8; AD_LEN],
        chunk_size: u32,
        at: u64,
    ) -> Sealer<W> {
        Sealer {
            out,
            key,
            ad,
            buf: Zeroizing::new(vec![0; 4 + chunk_size as usize + TAG_LEN]),
            chunk_size: chunk_size as usize,
            fill: 0,
            index: 0,
            at,
        }
    }

    /// Free space in the current chunk, after sealing it if it is full.
    /// Call only with more plaintext to put in.
    pub(crate) fn room(&mut self) -> Result<&mut [u8], BackupError> {
        if self.fill == self.chunk_size {
            self.seal(false)?;
        }
        Ok(&mut self.buf[4 + self.fill..4 + self.chunk_size])
    }

    /// `n` bytes of `room()` were filled.
    pub(crate) fn advance(&mut self, n: usize) {
        self.fill = (self.fill + n).min(self.chunk_size);
    }

    pub(crate) fn push(&mut self, mut data: &[u8]) -> Result<(), BackupError> {
        while !data.is_empty() {
            let room = self.room()?;
            let n = room.len().min(data.len());
            room[..n].copy_from_slice(&data[..n]);
            self.advance(n);
            data = &data[n..];
        }
        Ok(())
    }

    fn seal(&mut self, last: bool) -> Result<(), BackupError> {
        let end = 4 + self.fill;
        let tag = self
            .key
            .seal_in_place_separate_tag(
                nonce(self.index, last),
                Aad::from(&self.ad),
                &mut self.buf[4..end],
            )
            .map_err(|_| BackupError::Crypto("sealing a chunk"))?;
        let len = (self.fill + TAG_LEN) as u32;
        self.buf[..4].copy_from_slice(&len.to_be_bytes());
        self.buf[end..end + TAG_LEN].copy_from_slice(tag.as_ref());
        self.out
            .write_all(&self.buf[..end + TAG_LEN])
            .map_err(io(format!(
                "writing the backup's chunk {} (at byte {})",
                self.index, self.at
            )))?;
        self.at += 4 + u64::from(len);
        self.index += 1;
        self.fill = 0;
        Ok(())
    }

    /// Seals what is left as the last chunk.
    pub(crate) fn finish(mut self) -> Result<W, BackupError> {
        self.seal(true)?;
        self.out.flush().map_err(io("writing the backup's end"))?;
        Ok(self.out)
    }
}

/// The reading side: one chunk at a time, `buf[pos..plain]` being what
/// is verified and not yet handed out.
pub(crate) struct Opener<R: Read> {
    input: R,
    key: LessSafeKey,
    ad: [u8; AD_LEN],
    /// chunk_size + TAG_LEN bytes, allocated once (chunk_size is capped).
    buf: Zeroizing<Vec<u8>>,
    /// The ciphertext of a full chunk, kept for its second try.
    spare: Vec<u8>,
    plain: usize,
    pos: usize,
    /// The next chunk's index.
    index: u64,
    /// Bytes read from the input so far.
    at: u64,
    /// The chunk in `buf` opened as the last one.
    last: bool,
}

impl<R: Read> Opener<R> {
    pub(crate) fn new(
        input: R,
        key: LessSafeKey,
        ad: [u8; AD_LEN],
        chunk_size: u32,
        at: u64,
    ) -> Opener<R> {
        let full = chunk_size as usize + TAG_LEN;
        Opener {
            input,
            key,
            ad,
            buf: Zeroizing::new(vec![0; full]),
            spare: vec![0; full],
            plain: 0,
            pos: 0,
            index: 0,
            at,
            last: false,
        }
    }

    /// Reads and opens the next chunk. `what` is what the caller was
    /// reading, for the error if the contents end inside it.
    pub(crate) fn next_chunk(&mut self, what: &str) -> Result<(), BackupError> {
        if self.last {
            return Err(BackupError::Malformed(format!("they end inside {what}")));
        }
        self.plain = 0;
        self.pos = 0;
        let start = self.at;
        let index = self.index;
        let reading = || format!("reading the backup (chunk {index}, at byte {start})");
        let mut len = [0u8; 4];
        let n = read_full(&mut self.input, &mut len).map_err(io(reading()))?;
        if n < len.len() {
            return Err(BackupError::Truncated {
                at: start + n as u64,
                what: if n == 0 {
                    "at the end of a chunk that is not its last"
                } else {
                    "inside a chunk's length"
                },
            });
        }
        let len = u32::from_be_bytes(len) as usize;
        let full = self.buf.len();
        if len > full {
            return Err(BackupError::OverCap(format!(
                "chunk {index} (at byte {start}) says it is {len} bytes; this backup's chunks are at most {full}"
            )));
        }
        // Never written (the last chunk holds the end marker at least):
        // not worth a tag check.
        if len <= TAG_LEN {
            return Err(BackupError::Damaged {
                chunk: index,
                at: start,
            });
        }
        let n = read_full(&mut self.input, &mut self.buf[..len]).map_err(io(reading()))?;
        if n < len {
            return Err(BackupError::Truncated {
                at: start + 4 + n as u64,
                what: "inside a chunk",
            });
        }
        self.at = start + 4 + len as u64;
        // A short chunk can only be the last. A full one is tried as a
        // middle chunk first (nearly all are), then as the last: ring
        // wipes what fails to open, hence the copy.
        let opened = if len == full {
            self.spare[..len].copy_from_slice(&self.buf[..len]);
            match self.open(index, false, len) {
                Some(p) => Some((p, false)),
                None => {
                    self.buf[..len].copy_from_slice(&self.spare[..len]);
                    self.open(index, true, len).map(|p| (p, true))
                }
            }
        } else {
            self.open(index, true, len).map(|p| (p, true))
        };
        let (plain, last) = opened.ok_or(BackupError::Damaged {
            chunk: index,
            at: start,
        })?;
        self.plain = plain;
        self.last = last;
        self.index += 1;
        Ok(())
    }

    /// How many plaintext bytes chunk `index` in `buf[..len]` holds, if it
    /// opens with that place in the stream.
    fn open(&mut self, index: u64, last: bool, len: usize) -> Option<usize> {
        self.key
            .open_in_place(
                nonce(index, last),
                Aad::from(&self.ad),
                &mut self.buf[..len],
            )
            .ok()
            .map(|p| p.len())
    }

    /// Verified bytes not handed out yet, opening the next chunk when the
    /// current one is used up: never empty.
    pub(crate) fn available(&mut self, what: &str) -> Result<&[u8], BackupError> {
        if self.pos == self.plain {
            self.next_chunk(what)?;
        }
        Ok(&self.buf[self.pos..self.plain])
    }

    /// `n` bytes of `available()` were used.
    pub(crate) fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.plain);
    }

    pub(crate) fn read_exact(&mut self, out: &mut [u8], what: &str) -> Result<(), BackupError> {
        let mut got = 0;
        while got < out.len() {
            let avail = self.available(what)?;
            let n = avail.len().min(out.len() - got);
            out[got..got + n].copy_from_slice(&avail[..n]);
            self.consume(n);
            got += n;
        }
        Ok(())
    }

    /// Whether everything the last chunk held has been used.
    pub(crate) fn at_end_of_last(&self) -> bool {
        self.last && self.pos == self.plain
    }

    /// Nothing may follow the last chunk.
    pub(crate) fn check_eof(&mut self) -> Result<(), BackupError> {
        let mut one = [0u8; 1];
        let n = read_full(&mut self.input, &mut one).map_err(io(format!(
            "reading the backup after its end (at byte {})",
            self.at
        )))?;
        if n != 0 {
            return Err(BackupError::Trailing { at: self.at });
        }
        Ok(())
    }
}
