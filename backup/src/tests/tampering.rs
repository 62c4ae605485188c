//! Files damaged, cut, spliced or extended: each refused, never read whole.

use super::*;

#[test]
fn every_single_byte_change_is_refused() {
    let file = small();
    assert!(chunks(&file).len() >= 3);
    let read_every_way = |f: &[u8]| -> bool {
        read_with(f, SlotKind::Recovery, &RECOVERY_KEY).is_err()
            && read_with(f, SlotKind::Tpm, &TPM_KEY).is_err()
    };
    for i in 0..file.len() {
        for flip in [0x01u8, 0x20, 0x80, 0xff] {
            let mut bad = file.clone();
            bad[i] ^= flip;
            assert!(read_every_way(&bad), "byte {i} ^ {flip:#x} was accepted");
        }
    }
    // In a chunk: its number and where it starts.
    let c = chunks(&file)[1].clone();
    let mut bad = file.clone();
    bad[c.start + 10] ^= 1;
    let e = read_with(&bad, SlotKind::Recovery, &RECOVERY_KEY).expect_err("damaged");
    assert!(
        matches!(e, BackupError::Damaged { chunk: 1, at } if at == c.start as u64),
        "{e}"
    );
    // A header field in clear: unlock itself fails, on chunk 0.
    let at = file
        .windows(5)
        .position(|w| w == b"0.3.1")
        .expect("version");
    let mut bad = file.clone();
    bad[at] = b'9';
    assert!(matches!(
        Reader::open(&bad[..])
            .expect("parses")
            .unlock(SlotKind::Tpm, &TPM_KEY),
        Err(BackupError::Damaged { chunk: 0, .. })
    ));
}

#[test]
fn a_cut_anywhere_is_truncation() {
    let file = small();
    for cut in 0..file.len() {
        match read_all(&file[..cut]) {
            Err(BackupError::NotABackup) if cut == 0 => {}
            Err(BackupError::Truncated { at, .. }) => assert_eq!(at, cut as u64, "cut at {cut}"),
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
    // Exactly after a full chunk, and with the last chunk dropped.
    let cs = chunks(&file);
    let e = read_all(&file[..cs[1].end]).expect_err("cut");
    assert!(
        e.to_string().contains(&format!(
            "truncated: it ends after {} bytes, at the end of a chunk that is not its last",
            cs[1].end
        )),
        "{e}"
    );
    // A writer dropped before finish leaves a truncated file.
    let mut out = Vec::new();
    {
        let mut w =
            Writer::with_chunk_size(&mut out, &meta(), &both(), FUZZ_CHUNK_SIZE).expect("w");
        w.entry("a", 500, &mut &data(500, 8)[..]).expect("entry");
    }
    assert!(matches!(read_all(&out), Err(BackupError::Truncated { .. })));
}

#[test]
fn chunks_swapped_dropped_repeated_or_from_another_backup_are_refused() {
    let file = small();
    let cs = chunks(&file);
    let head = &file[..cs[0].start];
    let part = |i: usize| &file[cs[i].clone()];
    let rest = |from: usize| &file[cs[from].start..];
    let damaged_at = |f: Vec<u8>, chunk: u64| match read_all(&f) {
        Err(BackupError::Damaged { chunk: c, .. }) => assert_eq!(c, chunk),
        other => panic!("want chunk {chunk} damaged: {other:?}"),
    };
    damaged_at([head, part(1), part(0), rest(2)].concat(), 0);
    damaged_at([head, part(0), rest(2)].concat(), 1);
    damaged_at([head, part(0), part(0), rest(1)].concat(), 1);
    // The last chunk repeated after itself: the file goes on after its end.
    let last = cs.len() - 1;
    assert!(matches!(
        read_all(&[&file[..], part(last)].concat()),
        Err(BackupError::Trailing { .. })
    ));
    // Another backup's header (same keys, same contexts) on this payload,
    // and this header on another payload of the same shape.
    let slots = both();
    let twin = |s: &[SlotKey]| -> Vec<SlotKey> {
        s.iter()
            .map(|k| SlotKey {
                kind: k.kind,
                context: k.context,
                key: k.key,
            })
            .collect()
    };
    let a = backup(&twin(&slots), FUZZ_CHUNK_SIZE, &[("a", b"1")]);
    let b = backup(&twin(&slots), FUZZ_CHUNK_SIZE, &[("a", b"2")]);
    let (ha, hb) = (chunks(&a)[0].start, chunks(&b)[0].start);
    assert_eq!(ha, hb);
    damaged_at([&a[..ha], &b[hb..]].concat(), 0);
    damaged_at([&b[..hb], &a[ha..]].concat(), 0);
}

#[test]
fn anything_after_the_end_is_refused() {
    let file = small();
    for tail in [&b"\0"[..], b"garbage", &[0, 0, 0, 17]] {
        let e = read_all(&[&file[..], tail].concat()).expect_err("trailing");
        assert!(
            matches!(e, BackupError::Trailing { at } if at == file.len() as u64),
            "{e}"
        );
    }
}

#[test]
fn an_error_stops_reading() {
    let file = small();
    let cs = chunks(&file);
    let mut bad = file.clone();
    bad[cs[1].start + 20] ^= 1;
    let mut u = Reader::open(&bad[..])
        .expect("open")
        .unlock(SlotKind::Tpm, &TPM_KEY)
        .expect("chunk 0 is fine");
    let mut errs = Vec::new();
    for _ in 0..3 {
        match u.next_entry() {
            Ok(Some(mut e)) => {
                if let Err(x) = e.copy_to(&mut std::io::sink()) {
                    errs.push(x);
                }
            }
            Ok(None) => panic!("reached the end"),
            Err(x) => errs.push(x),
        }
    }
    assert!(
        matches!(errs[0], BackupError::Damaged { chunk: 1, .. }),
        "{:?}",
        errs[0]
    );
    assert!(
        errs[1..].iter().all(|e| matches!(e, BackupError::Stopped)),
        "{errs:?}"
    );
    assert!(matches!(u.finish(), Err(BackupError::Stopped)));
}

#[test]
fn not_a_backup_or_another_version_says_so() {
    assert!(matches!(
        Reader::open(&b""[..]),
        Err(BackupError::NotABackup)
    ));
    assert!(matches!(
        Reader::open(&b"\x7fELF\x02\x01\x01\0\0\0\0\0"[..]),
        Err(BackupError::NotABackup)
    ));
    let e = Reader::open(&b"PDKBAK02\0\0\0\x02{}"[..])
        .err()
        .expect("v2");
    assert!(e.to_string().contains("format 02"), "{e}");
    let mut v2 = small();
    let at = v2
        .windows(10)
        .position(|w| w == b"\"format\":1")
        .expect("format")
        + 9;
    v2[at] = b'2';
    let e = Reader::open(&v2[..]).err().expect("v2");
    assert!(
        e.to_string()
            .contains("this backup is format 2; this box reads format 1"),
        "{e}"
    );
}
