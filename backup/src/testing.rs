//! What the tests and the fuzzer share: the fuzzer's fixed key, and a way
//! to seal any plaintext stream so that the entry parser is reached past
//! the tags.

use crate::{BackupError, Meta, SlotKey, SlotKind, Writer};

/// The recovery key the fuzz target unlocks with, and its seeds are made
/// with.
pub const FUZZ_KEY: [u8; 32] = [0x5a; 32];
/// Small, so that a fuzzer-sized input spans several chunks.
pub const FUZZ_CHUNK_SIZE: u32 = 64;

pub fn fuzz_meta() -> Meta {
    Meta {
        created_at: 1_700_000_000,
        box_version: "0.1.0".into(),
        box_id: Some("fuzz".into()),
    }
}

/// A backup opened by FUZZ_KEY (recovery) whose whole plaintext stream is
/// `stream`, as is: no entry framing or end marker added.
pub fn seal_stream(stream: &[u8]) -> Result<Vec<u8>, BackupError> {
    let slot = SlotKey {
        kind: SlotKind::Recovery,
        context: [1; 32],
        key: FUZZ_KEY,
    };
    Writer::with_chunk_size(Vec::new(), &fuzz_meta(), &[slot], FUZZ_CHUNK_SIZE)?.finish_raw(stream)
}

/// Opens `file` with FUZZ_KEY and reads it all: the entries' names and
/// bytes, or the first error.
pub fn read_all(file: &[u8]) -> Result<Vec<(String, Vec<u8>)>, BackupError> {
    let mut u = crate::Reader::open(file)?.unlock(SlotKind::Recovery, &FUZZ_KEY)?;
    let mut out = Vec::new();
    while let Some(mut e) = u.next_entry()? {
        let mut bytes = Vec::new();
        e.copy_to(&mut bytes)?;
        out.push((e.name.clone(), bytes));
    }
    u.finish()?;
    Ok(out)
}
