use super::super::testing::{desc, guest_memory, TestQueue, F_NEXT, F_WRITE};
use super::*;
use std::os::fd::FromRawFd;
use vm_memory::{Bytes, GuestAddress};

/// A datagram socket pair standing in for the tap: one frame per call,
/// as a tap gives. Returns (device end, host end).
fn fake_tap() -> (File, std::os::unix::net::UnixDatagram) {
    let (a, b) = std::os::unix::net::UnixDatagram::pair().expect("socketpair");
    a.set_nonblocking(true).expect("nonblocking");
    // SAFETY: into_raw_fd hands over ownership of a valid descriptor.
    let f = unsafe { File::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(a)) };
    (f, b)
}

fn worker(rate: RateLimit) -> (NetWorker, std::os::unix::net::UnixDatagram) {
    let (tap, host) = fake_tap();
    let w = NetWorker::new(tap, TimerFd::new().expect("timerfd"), rate, Arc::default());
    (w, host)
}

fn frame(n: usize, fill: u8) -> Vec<u8> {
    vec![fill; n]
}

#[test]
fn transmits_a_frame_without_its_header_split_over_descriptors() {
    let mem = guest_memory();
    let tq = TestQueue::new(&mem, 16);
    let (mut w, host) = worker(RateLimit::default());
    mem.write_slice(&[0xee; HEADER_LEN], GuestAddress(0x10000))
        .expect("w");
    mem.write_slice(&frame(60, 0xab), GuestAddress(0x20000))
        .expect("w");
    tq.set_descs(vec![
        desc(0x10000, HEADER_LEN as u32, F_NEXT, 1),
        desc(0x20000, 60, 0, 0),
    ]);
    tq.publish(&[0]);
    let mut q = tq.queue();
    assert!(w.transmit(&mem, &mut q).expect("ok"));
    let mut got = [0u8; 2048];
    let n = host.recv(&mut got).expect("frame");
    assert_eq!(&got[..n], &frame(60, 0xab)[..]);
    assert_eq!(w.counters.tx_frames.load(Ordering::Relaxed), 1);
}

#[test]
fn refuses_hostile_transmit_chains_without_sending_anything() {
    let mem = guest_memory();
    let tq = TestQueue::new(&mem, 16);
    let (mut w, host) = worker(RateLimit::default());
    host.set_nonblocking(true).expect("nb");
    for d in [
        // Too short for a header and an Ethernet header.
        desc(0x10000, (HEADER_LEN + 13) as u32, 0, 0),
        // Larger than any frame.
        desc(0x10000, (HEADER_LEN + MAX_FRAME + 1) as u32, 0, 0),
        // Writable: not a transmit buffer.
        desc(0x10000, 100, F_WRITE, 0),
        // Outside guest memory.
        desc(0xffff_ffff_0000, 100, 0, 0),
    ] {
        tq.set_descs(vec![d]);
        tq.publish(&[0]);
    }
    let mut q = tq.queue();
    assert!(w
        .transmit(&mem, &mut q)
        .expect("requests fail, device lives"));
    assert_eq!(tq.used_idx(), 4);
    assert_eq!(w.counters.tx_malformed.load(Ordering::Relaxed), 4);
    let mut got = [0u8; 64];
    assert!(host.recv(&mut got).is_err(), "nothing reached the tap");
    // A ring index running away is a fault, not a loop.
    tq.set_avail_idx(500);
    assert!(w.transmit(&mem, &mut q).is_err());
}

#[test]
fn receives_into_the_offered_buffer_and_drops_what_does_not_fit() {
    let mem = guest_memory();
    let tq = TestQueue::new(&mem, 16);
    let (mut w, host) = worker(RateLimit::default());
    host.send(&frame(100, 0x11)).expect("send");
    host.send(&frame(1000, 0x22)).expect("send");
    tq.set_descs(vec![
        desc(0x10000, 512, F_WRITE, 0),
        desc(0x20000, 256, F_WRITE, 0),
    ]);
    tq.publish(&[0, 1]);
    let mut q = tq.queue();
    let (used, watching) = w.receive(&mem, &mut q).expect("ok");
    assert!(used && watching);
    assert_eq!(tq.used_elem(0), (0, (HEADER_LEN + 100) as u32));
    let mut b = [0u8; HEADER_LEN + 100];
    mem.read_slice(&mut b, GuestAddress(0x10000)).expect("r");
    assert_eq!(b[10], 1);
    assert!(b[HEADER_LEN..].iter().all(|&x| x == 0x11));
    // 1000 bytes into 256: dropped, the buffer handed back empty.
    assert_eq!(tq.used_elem(1), (1, 0));
    assert_eq!(w.counters.dropped.load(Ordering::Relaxed), 1);
}

#[test]
fn a_frame_waits_for_a_buffer_and_the_tap_is_not_watched_meanwhile() {
    let mem = guest_memory();
    let tq = TestQueue::new(&mem, 16);
    let (mut w, host) = worker(RateLimit::default());
    host.send(&frame(64, 0x33)).expect("send");
    let mut q = tq.queue();
    let (used, watching) = w.receive(&mem, &mut q).expect("ok");
    assert!(!used && !watching);
    assert_eq!(w.pending, Some(64));
    tq.set_descs(vec![desc(0x10000, 2048, F_WRITE, 0)]);
    tq.publish(&[0]);
    let (used, watching) = w.receive(&mem, &mut q).expect("ok");
    assert!(used && watching);
    assert_eq!(tq.used_elem(0), (0, (HEADER_LEN + 64) as u32));
}

#[test]
fn a_transmit_leaves_a_waiting_received_frame_intact() {
    let mem = guest_memory();
    let (rxq, txq) = (TestQueue::new(&mem, 16), TestQueue::new(&mem, 16));
    let (mut w, host) = worker(RateLimit::default());
    host.send(&frame(64, 0x33)).expect("send");
    let mut rq = rxq.queue();
    assert!(!w.receive(&mem, &mut rq).expect("ok").0, "no buffer yet");
    mem.write_slice(&frame(HEADER_LEN + 100, 0x77), GuestAddress(0x30000))
        .expect("w");
    txq.set_descs(vec![desc(0x30000, (HEADER_LEN + 100) as u32, 0, 0)]);
    txq.publish(&[0]);
    let mut tq = txq.queue();
    assert!(w.transmit(&mem, &mut tq).expect("ok"));
    rxq.set_descs(vec![desc(0x10000, 2048, F_WRITE, 0)]);
    rxq.publish(&[0]);
    assert!(w.receive(&mem, &mut rq).expect("ok").0);
    let mut got = vec![0u8; 64];
    mem.read_slice(&mut got, GuestAddress(0x10000 + HEADER_LEN as u64))
        .expect("r");
    assert_eq!(
        got,
        frame(64, 0x33),
        "the guest gets the frame the tap sent"
    );
}

#[test]
fn a_throttled_direction_stops_and_arms_its_timer() {
    let mem = guest_memory();
    let tq = TestQueue::new(&mem, 16);
    let (mut w, host) = worker(RateLimit {
        bytes_per_s: None,
        ops_per_s: Some(2),
    });
    for i in 0..4u16 {
        let a = 0x10000 + u64::from(i) * 0x1000;
        mem.write_slice(&[0u8; HEADER_LEN + 60], GuestAddress(a))
            .expect("w");
        tq.set_desc(i, desc(a, (HEADER_LEN + 60) as u32, 0, 0));
    }
    tq.publish(&[0, 1, 2, 3]);
    let mut q = tq.queue();
    w.transmit(&mem, &mut q).expect("ok");
    // Two frames of burst, then the bucket is in debt: the rest wait.
    assert_eq!(tq.used_idx(), 3);
    assert!(w.timer_armed);
    host.set_nonblocking(true).expect("nb");
    let mut got = [0u8; 128];
    let mut sent = 0;
    while host.recv(&mut got).is_ok() {
        sent += 1;
    }
    assert_eq!(sent, 3);
}
