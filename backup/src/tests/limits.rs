//! What only a key holder could put behind valid tags, and lengths over the
//! limits: refused before anything is allocated for them.

use super::*;

#[test]
fn lengths_far_over_the_limits_are_refused_before_allocating() {
    let file = small();
    let mut bad = file.clone();
    bad[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        Reader::open(&bad[..]),
        Err(BackupError::OverCap(_))
    ));
    let c = chunks(&file)[1].start;
    let mut bad = file.clone();
    bad[c..c + 4].copy_from_slice(&u32::MAX.to_be_bytes());
    let e = read_all(&bad).expect_err("chunk length");
    assert!(matches!(e, BackupError::OverCap(_)), "{e}");
    // Inside the authenticated stream, where only a key holder could put
    // them: a name, an entry's length, the count of entries.
    let stream = |parts: &[&[u8]]| seal_stream(&parts.concat()).expect("sealed");
    let e = read_all(&stream(&[&u16::MAX.to_be_bytes(), &[b'a'; 100]])).expect_err("name");
    assert!(matches!(e, BackupError::OverCap(_)), "{e}");
    let e = read_all(&stream(&[&[0, 1], b"a", &u64::MAX.to_be_bytes()])).expect_err("length");
    assert!(matches!(e, BackupError::OverCap(_)), "{e}");
    let e =
        read_all(&stream(&[&[0, 1], b"a", &(MAX_TOTAL + 1).to_be_bytes()])).expect_err("length");
    assert!(e.to_string().contains("more than 1073741824"), "{e}");
    let mut many = Vec::new();
    for i in 0..=MAX_ENTRIES {
        let name = format!("e{i}");
        many.extend_from_slice(&(name.len() as u16).to_be_bytes());
        many.extend_from_slice(name.as_bytes());
        many.extend_from_slice(&0u64.to_be_bytes());
    }
    many.extend_from_slice(&[0, 0]);
    let e = read_all(&seal_stream(&many).expect("sealed")).expect_err("count");
    assert!(e.to_string().contains("more than 256 entries"), "{e}");
    // The writer holds to the same limits.
    let mut w = Writer::new(Vec::new(), &meta(), &both()).expect("w");
    let e = w
        .entry("huge", MAX_TOTAL + 1, &mut std::io::empty())
        .expect_err("huge");
    assert!(matches!(e, BackupError::OverCap(_)), "{e}");
    let mut w = Writer::new(Vec::new(), &meta(), &both()).expect("w");
    for i in 0..MAX_ENTRIES {
        w.entry(&format!("e{i}"), 0, &mut std::io::empty())
            .expect("entry");
    }
    assert!(matches!(
        w.entry("one-more", 0, &mut std::io::empty()),
        Err(BackupError::OverCap(_))
    ));
}

#[test]
fn bad_names_are_refused_by_writer_and_reader() {
    for bad in ["../etc/passwd", "/abs", "a//b", "sp ace", ""] {
        let mut w = Writer::new(Vec::new(), &meta(), &both()).expect("w");
        let e = w.entry(bad, 1, &mut &b"x"[..]).expect_err(bad);
        assert!(matches!(e, BackupError::BadName { .. }), "{bad}: {e}");
        let mut s = (bad.len() as u16).to_be_bytes().to_vec();
        s.extend_from_slice(bad.as_bytes());
        s.extend_from_slice(&1u64.to_be_bytes());
        s.extend_from_slice(b"x\0\0");
        let e = read_all(&seal_stream(&s).expect("sealed")).expect_err(bad);
        // The empty name is the end marker, here not at the end.
        assert!(
            matches!(e, BackupError::BadName { .. } | BackupError::Malformed(_)),
            "{bad}: {e}"
        );
    }
    let mut w = Writer::new(Vec::new(), &meta(), &both()).expect("w");
    w.entry("a", 0, &mut std::io::empty()).expect("a");
    assert!(matches!(
        w.entry("a", 0, &mut std::io::empty()),
        Err(BackupError::BadName { .. })
    ));
    let twice = [
        &[0u8, 1][..],
        b"a",
        &[0; 8],
        &[0, 1],
        b"a",
        &[0; 8],
        &[0, 0],
    ]
    .concat();
    assert!(matches!(
        read_all(&seal_stream(&twice).expect("s")),
        Err(BackupError::BadName { .. })
    ));
}

#[test]
fn streams_a_writer_would_not_make_are_refused() {
    let entry = [&[0u8, 1][..], b"a", &3u64.to_be_bytes(), b"xyz"].concat();
    assert_eq!(
        read_all(&seal_stream(&[&entry[..], &[0, 0]].concat()).expect("s"))
            .expect("ok")
            .len(),
        1
    );
    for (why, s) in [
        (
            "data after the end marker",
            [&entry[..], &[0, 0, 7]].concat(),
        ),
        ("no end marker", entry.clone()),
        ("cut inside an entry", entry[..entry.len() - 1].to_vec()),
        (
            "the end marker, then a chunk",
            [&entry[..], &[0, 0], &[0; 70]].concat(),
        ),
    ] {
        let e = read_all(&seal_stream(&s).expect("s")).expect_err(why);
        assert!(matches!(e, BackupError::Malformed(_)), "{why}: {e}");
    }
    // The empty stream: a last chunk holding nothing.
    assert!(read_all(&seal_stream(b"").expect("s")).is_err());
}
