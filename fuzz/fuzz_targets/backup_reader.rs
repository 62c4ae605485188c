//! A backup uploaded for a restore comes from outside: made by anyone, or
//! damaged on the way. Reading it must refuse what is wrong with an error,
//! never crash, and never allocate what a length in it says. The input
//! goes in as a whole file (magic, header, slots, chunk framing: the tags
//! stop it there), and sealed as the plaintext stream of a backup the
//! fixed key opens, so the entry parser and its limits are reached behind
//! valid tags.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paddock_backup::testing::{seal_stream, FUZZ_KEY};
use paddock_backup::{BackupError, Reader, SlotKind, MAX_ENTRIES, MAX_NAME};
use std::io::Read;

/// Opens, unlocks with the fixed key, reads every other entry in small
/// pieces (the rest are skipped, which still verifies them), finishes.
fn read(file: &[u8]) -> Result<usize, BackupError> {
    let reader = Reader::open(file)?;
    let _ = reader.try_key(SlotKind::Tpm, &FUZZ_KEY);
    let mut unlocked = reader.unlock(SlotKind::Recovery, &FUZZ_KEY)?;
    let mut entries = 0;
    while let Some(mut e) = unlocked.next_entry()? {
        assert!(!e.name.is_empty() && e.name.len() <= MAX_NAME);
        assert!(!e.name.starts_with('/') && !e.name.split('/').any(|p| p == ".."));
        if entries % 2 == 0 {
            let mut piece = [0u8; 100];
            let mut got = 0u64;
            loop {
                let n = e.read(&mut piece).map_err(BackupError::from_io)?;
                if n == 0 {
                    break;
                }
                got += n as u64;
            }
            assert_eq!(got, e.len);
        }
        entries += 1;
    }
    unlocked.finish()?;
    Ok(entries)
}

fuzz_target!(|input: &[u8]| {
    let _ = read(input);
    if let Ok(file) = seal_stream(input) {
        if let Ok(entries) = read(&file) {
            assert!(entries <= MAX_ENTRIES);
        }
    }
});
