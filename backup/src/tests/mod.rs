//! The format end to end: round trips, and every way a file can be
//! damaged, cut, spliced or forged.

use crate::testing::{read_all, seal_stream, FUZZ_CHUNK_SIZE, FUZZ_KEY};
use crate::*;

mod limits;
mod round_trip;
mod tampering;

const TPM_KEY: [u8; 32] = [0x11; 32];
const RECOVERY_KEY: [u8; 32] = FUZZ_KEY;

fn meta() -> Meta {
    Meta {
        created_at: 1_712_345_678,
        box_version: "0.3.1".into(),
        box_id: Some("box-7f3a".into()),
    }
}

fn key(kind: SlotKind) -> SlotKey {
    SlotKey {
        kind,
        context: new_context().expect("rng"),
        key: match kind {
            SlotKind::Tpm => TPM_KEY,
            SlotKind::Recovery => RECOVERY_KEY,
        },
    }
}

fn both() -> Vec<SlotKey> {
    vec![key(SlotKind::Tpm), key(SlotKind::Recovery)]
}

/// Bytes that differ from chunk to chunk (xorshift).
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn backup(slots: &[SlotKey], chunk: u32, entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = Writer::with_chunk_size(Vec::new(), &meta(), slots, chunk).expect("writer");
    for (name, bytes) in entries {
        w.entry(name, bytes.len() as u64, &mut &bytes[..])
            .expect("entry");
    }
    w.finish().expect("finish")
}

/// A backup of a few small chunks, both slots: small enough to damage at
/// every byte.
fn small() -> Vec<u8> {
    let a = data(100, 1);
    backup(
        &both(),
        FUZZ_CHUNK_SIZE,
        &[("redb.json", b"{\"k\":1}"), ("audit/0.log", &a)],
    )
}

fn read_with(
    file: &[u8],
    kind: SlotKind,
    key: &[u8; 32],
) -> Result<Vec<(String, Vec<u8>)>, BackupError> {
    let mut u = Reader::open(file)?.unlock(kind, key)?;
    let mut out = Vec::new();
    while let Some(mut e) = u.next_entry()? {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut bytes).map_err(BackupError::from_io)?;
        assert_eq!(bytes.len() as u64, e.len);
        out.push((e.name.clone(), bytes));
    }
    u.finish()?;
    Ok(out)
}

fn owned(entries: &[(&str, &[u8])]) -> Vec<(String, Vec<u8>)> {
    entries
        .iter()
        .map(|(n, b)| (n.to_string(), b.to_vec()))
        .collect()
}

/// Where each chunk starts and ends (after its length field).
fn chunks(file: &[u8]) -> Vec<std::ops::Range<usize>> {
    let h = u32::from_be_bytes(file[8..12].try_into().expect("4")) as usize;
    let mut at = 12 + h;
    let mut out = Vec::new();
    while at < file.len() {
        let len = u32::from_be_bytes(file[at..at + 4].try_into().expect("4")) as usize;
        out.push(at..at + 4 + len);
        at += 4 + len;
    }
    out
}

/// Writes the fuzzer's seeds where PADDOCK_BACKUP_SEEDS says:
/// `PADDOCK_BACKUP_SEEDS=fuzz/corpus/backup_reader cargo test -p
/// paddock-backup seeds`.
#[test]
fn seeds_for_the_fuzzer() {
    let one = |kinds: &[SlotKind], entries: &[(&str, &[u8])]| {
        let slots: Vec<SlotKey> = kinds
            .iter()
            .map(|k| SlotKey {
                kind: *k,
                context: [2; 32],
                key: FUZZ_KEY,
            })
            .collect();
        let mut w =
            Writer::with_chunk_size(Vec::new(), &testing::fuzz_meta(), &slots, FUZZ_CHUNK_SIZE)
                .expect("w");
        for (n, b) in entries {
            w.entry(n, b.len() as u64, &mut &b[..]).expect("entry");
        }
        w.finish().expect("finish")
    };
    let log = data(300, 9);
    let seeds = [
        (
            "two-entries",
            one(
                &[SlotKind::Tpm, SlotKind::Recovery],
                &[("redb.json", b"{\"a\":1}"), ("audit/0.log", &log)],
            ),
        ),
        ("empty", one(&[SlotKind::Recovery], &[])),
        // A bare stream: the target also seals its input as a stream.
        (
            "stream",
            [
                &[0u8, 9][..],
                b"redb.json",
                &4u64.to_be_bytes(),
                b"{}{}",
                &[0, 0],
            ]
            .concat(),
        ),
        (
            "stream-two",
            [
                &[0u8, 11][..],
                b"audit/1.log",
                &100u64.to_be_bytes(),
                &log[..100],
                &[0, 1],
                b"x",
                &0u64.to_be_bytes(),
                &[0, 0],
            ]
            .concat(),
        ),
    ];
    for (name, bytes) in &seeds {
        if !name.starts_with("stream") {
            assert!(read_all(bytes).is_ok(), "{name}");
        }
        assert!(bytes.len() <= 8192, "fuzz.sh's -max_len");
    }
    if let Some(dir) = std::env::var_os("PADDOCK_BACKUP_SEEDS") {
        let dir = std::path::PathBuf::from(dir);
        std::fs::create_dir_all(&dir).expect("dir");
        for (name, bytes) in &seeds {
            std::fs::write(dir.join(name), bytes).expect("write a seed");
        }
    }
}
