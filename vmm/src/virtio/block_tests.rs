use super::super::testing::{desc, guest_memory, TestQueue, F_NEXT, F_WRITE};
use super::*;
use std::io::Write;
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::EventFd;

const HDR: u64 = 0x10000;
const DATA: u64 = 0x20000;
const STATUS: u64 = 0x30000;

fn disk(sectors: u64, read_only: bool) -> (Disk, std::path::PathBuf) {
    let path = std::env::temp_dir().join(format!("paddock-blk-test-{}-{}", std::process::id(), {
        let mut b = [0u8; 8];
        crate::entropy::fill(&mut b).expect("rand");
        u64::from_le_bytes(b)
    }));
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .expect("create");
    let content: Vec<u8> = (0..sectors * 512).map(|i| (i % 251) as u8).collect();
    f.write_all(&content).expect("fill");
    (Disk::new(f, read_only, "test-disk").expect("disk"), path)
}

fn header(mem: &GuestMemory, kind: u32, sector: u64) {
    mem.write_obj(kind, GuestAddress(HDR)).expect("w");
    mem.write_obj(0u32, GuestAddress(HDR + 4)).expect("w");
    mem.write_obj(sector, GuestAddress(HDR + 8)).expect("w");
    mem.write_obj(0xeeu8, GuestAddress(STATUS)).expect("w");
}

fn run(w: &mut BlockWorker, mem: &GuestMemory, tq: &TestQueue) -> (u32, u8) {
    let mut q = tq.queue();
    let irq = Interrupt::new(EventFd::new(libc::EFD_NONBLOCK).expect("evt"));
    w.handle_queue(mem, &mut q, &irq).expect("queue ok");
    let (_, len) = tq.used_elem(tq.used_idx().wrapping_sub(1));
    (len, mem.read_obj(GuestAddress(STATUS)).expect("status"))
}

#[test]
fn reads_the_right_bytes() {
    let mem = guest_memory();
    let (d, path) = disk(8, true);
    let mut w = BlockWorker::new(d);
    let tq = TestQueue::new(&mem, 16);
    header(&mem, VIRTIO_BLK_T_IN, 2);
    tq.set_descs(vec![
        desc(HDR, 16, F_NEXT, 1),
        desc(DATA, 1024, F_NEXT | F_WRITE, 2),
        desc(STATUS, 1, F_WRITE, 0),
    ]);
    tq.publish(&[0]);
    assert_eq!(run(&mut w, &mem, &tq), (1025, VIRTIO_BLK_S_OK));
    let mut got = vec![0u8; 1024];
    mem.read_slice(&mut got, GuestAddress(DATA)).expect("r");
    let want: Vec<u8> = (1024..2048u64).map(|i| (i % 251) as u8).collect();
    assert_eq!(got, want);
    let _ = std::fs::remove_file(path);
}

#[test]
fn out_of_range_and_partial_sector_requests_fail() {
    let mem = guest_memory();
    let (d, path) = disk(8, false);
    let mut w = BlockWorker::new(d);
    let tq = TestQueue::new(&mem, 16);
    for (sector, len) in [(7u64, 1024u32), (8, 512), (u64::MAX, 512), (0, 100)] {
        header(&mem, VIRTIO_BLK_T_IN, sector);
        tq.set_descs(vec![
            desc(HDR, 16, F_NEXT, 1),
            desc(DATA, len, F_NEXT | F_WRITE, 2),
            desc(STATUS, 1, F_WRITE, 0),
        ]);
        tq.publish(&[0]);
        assert_eq!(
            run(&mut w, &mem, &tq).1,
            VIRTIO_BLK_S_IOERR,
            "sector {sector} len {len}"
        );
    }
    let _ = std::fs::remove_file(path);
}

#[test]
fn writes_land_and_read_only_refuses() {
    let mem = guest_memory();
    mem.write_slice(&[0xabu8; 512], GuestAddress(DATA))
        .expect("w");
    let tq = TestQueue::new(&mem, 16);
    let descs = vec![
        desc(HDR, 16, F_NEXT, 1),
        desc(DATA, 512, F_NEXT, 2),
        desc(STATUS, 1, F_WRITE, 0),
    ];

    let (d, path) = disk(4, false);
    let mut w = BlockWorker::new(d);
    header(&mem, VIRTIO_BLK_T_OUT, 3);
    tq.set_descs(descs.clone());
    tq.publish(&[0]);
    assert_eq!(run(&mut w, &mem, &tq), (1, VIRTIO_BLK_S_OK));
    let content = std::fs::read(&path).expect("read back");
    assert!(content[1536..2048].iter().all(|&b| b == 0xab));
    let _ = std::fs::remove_file(path);

    let (d, path) = disk(4, true);
    let mut w = BlockWorker::new(d);
    header(&mem, VIRTIO_BLK_T_OUT, 0);
    tq.publish(&[0]);
    assert_eq!(run(&mut w, &mem, &tq).1, VIRTIO_BLK_S_IOERR);
    assert_eq!(std::fs::read(&path).expect("r")[0], 0);
    let _ = std::fs::remove_file(path);
}

/// Waits the worker asked for, in microseconds (one test uses it).
static WAITED_US: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn record_wait(d: Duration) {
    WAITED_US.fetch_add(d.as_micros() as u64, std::sync::atomic::Ordering::SeqCst);
}

#[test]
fn a_rate_limited_disk_holds_the_guest_to_its_rate() {
    let mem = guest_memory();
    let tq = TestQueue::new(&mem, 16);
    let (d, path) = disk(64, false);
    // 4 KiB/s: one second of burst, then each 4 KiB write waits a second.
    let mut w = BlockWorker::new(d.with_rate(RateLimit {
        bytes_per_s: Some(4096),
        ops_per_s: None,
    }));
    w.sleep = record_wait;
    tq.set_descs(vec![
        desc(HDR, 16, F_NEXT, 1),
        desc(DATA, 4096, F_NEXT, 2),
        desc(STATUS, 1, F_WRITE, 0),
    ]);
    header(&mem, VIRTIO_BLK_T_OUT, 0);
    tq.publish(&[0, 0, 0]);
    assert_eq!(run(&mut w, &mem, &tq), (1, VIRTIO_BLK_S_OK));
    assert_eq!(tq.used_idx(), 3);
    // The sleeps were recorded, not slept: the clock did not move, so
    // the first write came out of the burst, the second went into debt
    // and the third waited for it (one second).
    let waited = WAITED_US.load(std::sync::atomic::Ordering::SeqCst);
    assert!((900_000..=1_000_000).contains(&waited), "{waited} us");
    let _ = std::fs::remove_file(path);
}

#[test]
fn a_rate_set_through_the_control_cell_takes_over_at_the_next_request() {
    let (d, path) = disk(1, false);
    let cell = std::sync::Arc::new(crate::control::RateCell::default());
    let mut w = BlockWorker::new(d.with_control(cell.clone()));
    w.sleep = |_| {};
    w.throttle(4096);
    assert!(w.limiter.is_none(), "unlimited until told otherwise");
    let slow = RateLimit {
        bytes_per_s: Some(1 << 20),
        ops_per_s: Some(10),
    };
    cell.set(slow);
    w.throttle(4096);
    assert_eq!(w.disk.rate, slow);
    assert!(w.limiter.is_some());
    cell.set(RateLimit::default());
    w.throttle(4096);
    assert!(w.limiter.is_none(), "lifted again");
    let _ = std::fs::remove_file(path);
}

#[test]
fn flush_get_id_and_unknown_types() {
    let mem = guest_memory();
    let (d, path) = disk(1, false);
    let mut w = BlockWorker::new(d);
    let tq = TestQueue::new(&mem, 16);
    header(&mem, VIRTIO_BLK_T_FLUSH, 0);
    tq.set_descs(vec![desc(HDR, 16, F_NEXT, 1), desc(STATUS, 1, F_WRITE, 0)]);
    tq.publish(&[0]);
    assert_eq!(run(&mut w, &mem, &tq), (1, VIRTIO_BLK_S_OK));

    header(&mem, 77, 0);
    tq.publish(&[0]);
    assert_eq!(run(&mut w, &mem, &tq).1, VIRTIO_BLK_S_UNSUPP);

    header(&mem, VIRTIO_BLK_T_GET_ID, 0);
    tq.set_descs(vec![
        desc(HDR, 16, F_NEXT, 1),
        desc(DATA, 20, F_NEXT | F_WRITE, 2),
        desc(STATUS, 1, F_WRITE, 0),
    ]);
    tq.publish(&[0]);
    assert_eq!(run(&mut w, &mem, &tq), (21, VIRTIO_BLK_S_OK));
    let mut id = [0u8; 9];
    mem.read_slice(&mut id, GuestAddress(DATA)).expect("r");
    assert_eq!(&id, b"test-disk");
    let _ = std::fs::remove_file(path);
}

#[test]
fn hostile_chains_fail_without_touching_the_disk() {
    let mem = guest_memory();
    let (d, path) = disk(4, false);
    let mut w = BlockWorker::new(d);
    let tq = TestQueue::new(&mem, 16);
    // Data buffer outside guest memory.
    header(&mem, VIRTIO_BLK_T_IN, 0);
    tq.set_descs(vec![
        desc(HDR, 16, F_NEXT, 1),
        desc(0xffff_0000_0000, 512, F_NEXT | F_WRITE, 2),
        desc(STATUS, 1, F_WRITE, 0),
    ]);
    tq.publish(&[0]);
    assert_eq!(run(&mut w, &mem, &tq), (0, 0xee));
    // A loop.
    tq.set_descs(vec![
        desc(HDR, 16, F_NEXT, 1),
        desc(STATUS, 1, F_WRITE | F_NEXT, 0),
    ]);
    tq.publish(&[0]);
    assert_eq!(run(&mut w, &mem, &tq).0, 0);
    // Status byte in a readable descriptor; no header.
    tq.set_descs(vec![desc(STATUS, 1, 0, 0)]);
    tq.publish(&[0]);
    assert_eq!(run(&mut w, &mem, &tq).0, 0);
    // Writable before readable.
    tq.set_descs(vec![
        desc(STATUS, 1, F_WRITE | F_NEXT, 1),
        desc(HDR, 16, 0, 0),
    ]);
    tq.publish(&[0]);
    assert_eq!(run(&mut w, &mem, &tq).0, 0);
    let content = std::fs::read(&path).expect("r");
    assert!(content
        .iter()
        .enumerate()
        .all(|(i, &b)| b == (i % 251) as u8));
    let _ = std::fs::remove_file(path);
}

#[test]
fn corrupt_avail_index_is_a_device_fault() {
    let mem = guest_memory();
    let (d, path) = disk(1, false);
    let mut w = BlockWorker::new(d);
    let tq = TestQueue::new(&mem, 16);
    tq.set_avail_idx(1000);
    let mut q = tq.queue();
    let irq = Interrupt::new(EventFd::new(libc::EFD_NONBLOCK).expect("evt"));
    assert!(w.handle_queue(&mem, &mut q, &irq).is_err());
    let _ = std::fs::remove_file(path);
}
