//! Round trips: slots, chunk boundaries, sizes, and the writer's own checks.

use super::*;

#[test]
fn round_trips_with_either_slot_opening_it() {
    let log = data(5000, 2);
    let entries: &[(&str, &[u8])] = &[
        ("redb.json", b"{}"),
        ("audit/2024.log", &log),
        ("empty", b""),
    ];
    let file = backup(&both(), CHUNK_SIZE, entries);
    for (kind, k) in [(SlotKind::Tpm, TPM_KEY), (SlotKind::Recovery, RECOVERY_KEY)] {
        assert_eq!(
            read_with(&file, kind, &k).unwrap_or_else(|e| panic!("{kind}: {e}")),
            owned(entries)
        );
    }
    let r = Reader::open(&file[..]).expect("open");
    assert_eq!(r.meta(), &meta());
    assert_eq!(r.slots().len(), 2);
    assert_eq!(r.slots()[0].kind, SlotKind::Tpm);
    assert!(r.try_key(SlotKind::Tpm, &RECOVERY_KEY).is_err());
    r.try_key(SlotKind::Tpm, &TPM_KEY).expect("tpm key");
    let u = r.unlock(SlotKind::Tpm, &TPM_KEY).expect("unlock");
    assert_eq!(u.meta(), &meta());
}

#[test]
fn round_trips_with_one_slot_and_with_no_entries() {
    for kind in [SlotKind::Tpm, SlotKind::Recovery] {
        let file = backup(&[key(kind)], CHUNK_SIZE, &[("a", b"x")]);
        let k = if kind == SlotKind::Tpm {
            TPM_KEY
        } else {
            RECOVERY_KEY
        };
        assert_eq!(
            read_with(&file, kind, &k).expect("read"),
            owned(&[("a", b"x")])
        );
    }
    let empty = backup(&both(), CHUNK_SIZE, &[]);
    assert_eq!(chunks(&empty).len(), 1);
    assert!(read_with(&empty, SlotKind::Recovery, &RECOVERY_KEY)
        .expect("read")
        .is_empty());
    let none = Meta {
        box_id: None,
        ..meta()
    };
    let file = Writer::new(Vec::new(), &none, &both())
        .expect("w")
        .finish()
        .expect("f");
    assert_eq!(Reader::open(&file[..]).expect("open").meta().box_id, None);
}

#[test]
fn chunk_boundaries_round_trip() {
    // An entry of exactly one chunk.
    let one = data(CHUNK_SIZE as usize, 3);
    let file = backup(&both(), CHUNK_SIZE, &[("one", &one)]);
    assert_eq!(
        read_with(&file, SlotKind::Tpm, &TPM_KEY).expect("read"),
        owned(&[("one", &one)])
    );
    // A stream of exactly two chunks: the last one full. Head 2 + 1 + 8,
    // end marker 2.
    let c = FUZZ_CHUNK_SIZE as usize;
    let fill = data(2 * c - 13, 4);
    let file = backup(&both(), FUZZ_CHUNK_SIZE, &[("a", &fill)]);
    let cs = chunks(&file);
    assert_eq!(cs.len(), 2);
    assert!(cs.iter().all(|r| r.len() == 4 + c + 16));
    assert_eq!(
        read_with(&file, SlotKind::Tpm, &TPM_KEY).expect("read"),
        owned(&[("a", &fill)])
    );
    // One byte either side.
    for len in [2 * c - 14, 2 * c - 12] {
        let fill = data(len, 5);
        let file = backup(&both(), FUZZ_CHUNK_SIZE, &[("a", &fill)]);
        assert_eq!(
            read_with(&file, SlotKind::Tpm, &TPM_KEY).expect("read"),
            owned(&[("a", &fill)])
        );
    }
}

#[test]
fn megabytes_stream_through_many_chunks_read_in_odd_pieces() {
    let big = data(5 << 20, 6);
    let small = data(70_000, 7);
    let file = backup(
        &both(),
        CHUNK_SIZE,
        &[("big", &big), ("skipped", &small), ("small", &small)],
    );
    assert!(chunks(&file).len() > 80);
    let mut u = Reader::open(&file[..])
        .expect("open")
        .unlock(SlotKind::Recovery, &RECOVERY_KEY)
        .expect("unlock");
    let mut e = u.next_entry().expect("next").expect("big");
    assert_eq!((e.name.as_str(), e.len), ("big", big.len() as u64));
    let mut got = Vec::new();
    let mut piece = [0u8; 1000];
    loop {
        let n = std::io::Read::read(&mut e, &mut piece).expect("read");
        if n == 0 {
            break;
        }
        got.extend_from_slice(&piece[..n]);
    }
    assert!(got == big);
    // Not read at all: skipped, still verified.
    assert_eq!(
        u.next_entry().expect("next").expect("skipped").name,
        "skipped"
    );
    let mut e = u.next_entry().expect("next").expect("small");
    let mut half = vec![0u8; 30_000];
    std::io::Read::read_exact(&mut e, &mut half).expect("half");
    assert!(half[..] == small[..30_000]);
    // finish reads the rest.
    u.finish().expect("finish");
}

#[test]
fn the_wrong_key_or_a_missing_slot_says_so() {
    let file = backup(&both(), CHUNK_SIZE, &[("a", b"x")]);
    let e = read_with(&file, SlotKind::Recovery, &TPM_KEY).expect_err("wrong");
    assert!(matches!(e, BackupError::WrongKey(SlotKind::Recovery)));
    assert!(
        e.to_string()
            .contains("the recovery secret does not open this backup"),
        "{e}"
    );
    let e = read_with(&file, SlotKind::Tpm, &RECOVERY_KEY).expect_err("wrong");
    assert!(
        e.to_string()
            .contains("this box's TPM (in this boot state) did not make this backup"),
        "{e}"
    );
    // The same key under the other kind opens nothing: the kind is in the
    // derivation.
    let same = backup(
        &[SlotKey {
            key: TPM_KEY,
            ..key(SlotKind::Recovery)
        }],
        CHUNK_SIZE,
        &[],
    );
    assert!(read_with(&same, SlotKind::Recovery, &TPM_KEY).is_ok());
    let only_tpm = backup(&[key(SlotKind::Tpm)], CHUNK_SIZE, &[]);
    let e = read_with(&only_tpm, SlotKind::Recovery, &RECOVERY_KEY).expect_err("no slot");
    assert!(matches!(
        e,
        BackupError::NoSlot {
            kind: SlotKind::Recovery,
            ..
        }
    ));
    assert!(
        e.to_string()
            .contains("no recovery key slot (its slots: tpm)"),
        "{e}"
    );
}

#[test]
fn an_entry_must_be_as_long_as_announced() {
    let mut w = Writer::new(Vec::new(), &meta(), &both()).expect("w");
    let e = w.entry("short", 10, &mut &b"123"[..]).expect_err("short");
    assert!(
        e.to_string()
            .contains("announced as 10 bytes but its reader gave 3"),
        "{e}"
    );
    assert!(matches!(
        w.entry("next", 0, &mut std::io::empty()),
        Err(BackupError::Stopped)
    ));
    assert!(matches!(w.finish(), Err(BackupError::Stopped)));
    let mut w = Writer::new(Vec::new(), &meta(), &both()).expect("w");
    let e = w.entry("long", 2, &mut &b"123"[..]).expect_err("long");
    assert!(e.to_string().contains("gave more than 2"), "{e}");
}

#[test]
fn writer_arguments_are_checked() {
    let e = Writer::new(Vec::new(), &meta(), &[])
        .err()
        .expect("no slot");
    assert!(e.to_string().contains("no key slot"), "{e}");
    let e = Writer::new(
        Vec::new(),
        &meta(),
        &[key(SlotKind::Tpm), key(SlotKind::Tpm)],
    )
    .err()
    .expect("two");
    assert!(e.to_string().contains("two tpm key slots"), "{e}");
    let bad = Meta {
        box_version: "1\n2".into(),
        ..meta()
    };
    assert!(matches!(
        Writer::new(Vec::new(), &bad, &both()),
        Err(BackupError::Header(_))
    ));
    assert!(Writer::with_chunk_size(Vec::new(), &meta(), &both(), 63).is_err());
    assert!(Writer::with_chunk_size(Vec::new(), &meta(), &both(), MAX_CHUNK_SIZE + 1).is_err());
}
