//! Forensics without a VM: a lying memory map refused, guest RAM found in
//! a VMM's maps, and the sparse copy's content, holes and hash.

use super::*;

#[test]
fn a_lying_memory_map_is_refused_before_any_copy() {
    let mib = 256u64;
    let good = vec![(0x7f00_0000_0000, 0x7f00_0000_0000 + (mib << 20), 0)];
    assert_eq!(plausible(good, mib).expect("plausible").1, mib << 20);
    let cases = [
        // Grown: the copy would write zeros until /data is full.
        vec![(0x7f00_0000_0000, 0x7f00_0000_0000 + (64 << 30), 0)],
        // A second, renamed mapping claiming far-away guest memory.
        vec![
            (0x7f00_0000_0000, 0x7f00_0000_0000 + (mib << 20), 0),
            (0x7f10_0000_0000, 0x7f10_0000_1000, 1 << 45),
        ],
        // Only part of the memory.
        vec![(0x7f00_0000_0000, 0x7f00_0000_1000, 0)],
        // Overlapping regions.
        vec![
            (0x7f00_0000_0000, 0x7f00_0000_0000 + (128 << 20), 0),
            (0x7f10_0000_0000, 0x7f10_0000_0000 + (128 << 20), 64 << 20),
        ],
        // Inverted.
        vec![(0x7f00_0000_1000, 0x7f00_0000_0000, 0)],
    ];
    for c in cases {
        assert!(
            matches!(
                plausible(c.clone(), mib),
                Err(ForensicsError::ImplausibleMemory(..))
            ),
            "{c:x?}"
        );
    }
    // A guest above 3 GiB: low RAM to the hole, the rest from 4 GiB.
    let big = 4096u64;
    let split = vec![
        (0x7f00_0000_0000, 0x7f00_0000_0000 + MMIO_HOLE_START, 0),
        (
            0x7f10_0000_0000,
            0x7f10_0000_0000 + (1 << 30),
            HIGH_RAM_START,
        ),
    ];
    assert_eq!(
        plausible(split, big).expect("split").1,
        HIGH_RAM_START + (1 << 30)
    );
}

#[test]
fn finds_guest_ram_in_maps() {
    let maps = "\
7f0000000000-7f0008000000 rw-s 00000000 00:01 1234 /memfd:paddock-guest-ram@0x0 (deleted)
7f1000000000-7f1040000000 rw-s 00000000 00:01 1235 /memfd:paddock-guest-ram@0x100000000 (deleted)
7f2000000000-7f2000001000 rw-p 00000000 00:00 0 [heap]
7f3000000000-7f3000001000 rw-s 00000000 00:01 99 /memfd:other (deleted)";
    assert_eq!(
        ram_regions(maps),
        vec![
            (0x7f00_0000_0000, 0x7f00_0800_0000, 0),
            (0x7f10_0000_0000, 0x7f10_4000_0000, 0x1_0000_0000),
        ]
    );
}

#[test]
fn sparse_copy_keeps_content_and_holes_and_hashes_the_flat_image() {
    let dir = std::env::temp_dir().join(format!("paddock-forensics-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let mut src = vec![0u8; 3 * CHUNK + 100];
    src[CHUNK + 5..CHUNK + 11].copy_from_slice(b"marker");
    src[3 * CHUNK + 99] = 7;
    let out = create(&dir.join("out")).expect("create");
    let mut hash = Sha256::new();
    copy_sparse(
        |buf, off| {
            let off = off as usize;
            let n = buf.len().min(src.len().saturating_sub(off));
            buf[..n].copy_from_slice(&src[off..off + n]);
            Ok(n)
        },
        src.len() as u64,
        &out,
        0,
        &mut hash,
    )
    .expect("copy");
    let m = finish(&dir.join("out"), &out, src.len() as u64, hash).expect("finish");
    assert_eq!(std::fs::read(dir.join("out")).expect("read"), src);
    assert_eq!(m.sha256, hex(&Sha256::digest(&src)));
    // Chunks 0 and 2 were all zeros: not written, so not allocated.
    let blocks = std::os::unix::fs::MetadataExt::blocks(&out.metadata().expect("meta"));
    assert!(blocks * 512 < 3 * CHUNK as u64, "{blocks} blocks");
    let _ = std::fs::remove_dir_all(&dir);
}
