use super::*;
use crate::memory::GuestMemory;
use crate::virtio::testing::{desc, guest_memory, TestQueue, F_WRITE};
use crate::virtio::Interrupt;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::EventFd;

const CID: u64 = 3;
const QSIZE: u16 = 16;
const RX_BUF_SIZE: u32 = 4096;

struct Harness<'a> {
    mem: &'a GuestMemory,
    rx: TestQueue<'a>,
    tx: TestQueue<'a>,
    ctx: WorkerContext,
    mux: Muxer,
    tx_slot: u16,
    rx_slot: u16,
    rx_seen: u16,
    dir: PathBuf,
}

fn temp_dir() -> PathBuf {
    let mut b = [0u8; 8];
    crate::entropy::fill(&mut b).expect("rand");
    let d = std::env::temp_dir().join(format!("paddock-vsock-{}", u64::from_le_bytes(b)));
    std::fs::create_dir_all(&d).expect("dir");
    d
}

impl<'a> Harness<'a> {
    fn new(mem: &'a GuestMemory) -> Self {
        let rx = TestQueue::at(mem, QSIZE, 0x10_0000);
        let tx = TestQueue::at(mem, QSIZE, 0x20_0000);
        let ev = TestQueue::at(mem, QSIZE, 0x30_0000);
        let irq = Interrupt::new(EventFd::new(libc::EFD_NONBLOCK).expect("evt"));
        let ctx =
            WorkerContext::for_test(mem.clone(), vec![rx.queue(), tx.queue(), ev.queue()], irq);
        let dir = temp_dir();
        let uds = dir.join("vm.sock");
        let listener = UnixListener::bind(&uds).expect("bind");
        let mut mux = Muxer::new(CID, uds, listener);
        let mut ctx = ctx;
        mux.start(&mut ctx).expect("start");
        Harness {
            mem,
            rx,
            tx,
            ctx,
            mux,
            tx_slot: 0,
            rx_slot: 0,
            rx_seen: 0,
            dir,
        }
    }

    fn hdr(&self, op: u16, src_port: u32, dst_port: u32, len: u32) -> Header {
        Header {
            src_cid: CID,
            dst_cid: HOST_CID,
            src_port,
            dst_port,
            len,
            type_: TYPE_STREAM,
            op,
            flags: 0,
            buf_alloc: 1 << 20,
            fwd_cnt: 0,
        }
    }

    /// Puts one tx packet (header then payload, one readable descriptor) on
    /// the queue and notifies. `extra` lets tests lie about the length.
    fn send_raw(&mut self, bytes: &[u8]) {
        let slot = self.tx_slot % QSIZE;
        let addr = 0x40_0000 + u64::from(slot) * 0x2_0000;
        self.mem.write_slice(bytes, GuestAddress(addr)).expect("w");
        self.tx.set_desc(slot, desc(addr, bytes.len() as u32, 0, 0));
        self.tx.publish(&[slot]);
        self.tx_slot = self.tx_slot.wrapping_add(1);
        self.mux
            .queue_notified(TX_QUEUE, &mut self.ctx)
            .expect("tx ok");
    }

    fn send(&mut self, h: Header, payload: &[u8]) {
        let mut b = h.to_bytes().to_vec();
        b.extend_from_slice(payload);
        self.send_raw(&b);
    }

    fn post_rx(&mut self, n: u16) {
        for _ in 0..n {
            let slot = self.rx_slot % QSIZE;
            let addr = 0x80_0000 + u64::from(slot) * 0x2000;
            self.rx.set_desc(slot, desc(addr, RX_BUF_SIZE, F_WRITE, 0));
            self.rx.publish(&[slot]);
            self.rx_slot = self.rx_slot.wrapping_add(1);
        }
        self.mux
            .queue_notified(RX_QUEUE, &mut self.ctx)
            .expect("rx ok");
    }

    /// Packets the device put in rx buffers since the last call.
    fn received(&mut self) -> Vec<(Header, Vec<u8>)> {
        let mut out = Vec::new();
        while self.rx_seen != self.rx.used_idx() {
            let (id, len) = self.rx.used_elem(self.rx_seen);
            self.rx_seen = self.rx_seen.wrapping_add(1);
            let addr = 0x80_0000 + u64::from(id) * 0x2000;
            let mut raw = [0u8; HEADER_LEN];
            self.mem
                .read_slice(&mut raw, GuestAddress(addr))
                .expect("r");
            let h = Header::parse(&raw);
            let mut payload = vec![0u8; len as usize - HEADER_LEN];
            self.mem
                .read_slice(&mut payload, GuestAddress(addr + HEADER_LEN as u64))
                .expect("r");
            out.push((h, payload));
        }
        out
    }

    /// Runs the worker on every fd epoll says is ready.
    fn poll(&mut self) {
        for _ in 0..10 {
            let ready = self.ctx.ready();
            if ready.is_empty() {
                return;
            }
            for (token, ev) in ready {
                self.mux.fd_ready(token, ev, &mut self.ctx).expect("fd ok");
            }
        }
    }

    fn listen(&self, port: u32) -> UnixListener {
        UnixListener::bind(format!("{}_{port}", self.uds().display())).expect("bind port")
    }

    /// A connection the guest (port 1234) opened to host port 5000, with
    /// `buf_alloc` as the guest's receive buffer; returns the host's end.
    fn guest_connection(&mut self, buf_alloc: u32) -> UnixStream {
        let l = self.listen(5000);
        self.post_rx(8);
        let mut req = self.hdr(OP_REQUEST, 1234, 5000, 0);
        req.buf_alloc = buf_alloc;
        self.send(req, b"");
        assert_eq!(ops(&self.received()), vec![OP_RESPONSE]);
        l.accept().expect("accept").0
    }

    fn uds(&self) -> PathBuf {
        self.dir.join("vm.sock")
    }
}

impl Drop for Harness<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ops(pkts: &[(Header, Vec<u8>)]) -> Vec<u16> {
    pkts.iter().map(|(h, _)| h.op).collect()
}

fn read_exact_timeout(s: &mut UnixStream, n: usize) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let mut b = vec![0u8; n];
    s.read_exact(&mut b).expect("read");
    b
}

#[test]
fn guest_connects_to_a_host_listener_and_data_flows_both_ways() {
    let mem = guest_memory();
    let mut h = Harness::new(&mem);
    let l = h.listen(5000);
    h.post_rx(4);
    h.send(h.hdr(OP_REQUEST, 1234, 5000, 0), b"");
    let got = h.received();
    assert_eq!(ops(&got), vec![OP_RESPONSE]);
    assert_eq!((got[0].0.src_port, got[0].0.dst_port), (5000, 1234));
    assert_eq!(got[0].0.dst_cid, CID);

    let (mut host, _) = l.accept().expect("accept");
    h.send(h.hdr(OP_RW, 1234, 5000, 5), b"hello");
    assert_eq!(read_exact_timeout(&mut host, 5), b"hello");

    host.write_all(b"world").expect("w");
    h.poll();
    let got = h.received();
    assert_eq!(ops(&got), vec![OP_RW]);
    assert_eq!(got[0].1, b"world");

    // Host closes: the guest is told no more data will come.
    drop(host);
    h.poll();
    let got = h.received();
    assert_eq!(ops(&got), vec![OP_SHUTDOWN]);
    assert_eq!(got[0].0.flags & SHUTDOWN_SEND, SHUTDOWN_SEND);
}

#[test]
fn connecting_to_a_port_nobody_listens_on_is_reset() {
    let mem = guest_memory();
    let mut h = Harness::new(&mem);
    h.post_rx(2);
    h.send(h.hdr(OP_REQUEST, 1234, 6000, 0), b"");
    assert_eq!(ops(&h.received()), vec![OP_RST]);
}

#[test]
fn host_initiated_connection_handshake() {
    let mem = guest_memory();
    let mut h = Harness::new(&mem);
    h.post_rx(4);
    let mut host = UnixStream::connect(h.uds()).expect("connect");
    host.write_all(b"CONNECT 52\nearly").expect("w");
    h.poll();
    h.poll();
    let got = h.received();
    assert_eq!(ops(&got), vec![OP_REQUEST]);
    let req = got[0].0;
    assert_eq!(req.dst_port, 52);
    assert!(req.src_port >= FIRST_HOST_PORT);
    // Guest accepts.
    let mut resp = h.hdr(OP_RESPONSE, 52, req.src_port, 0);
    resp.buf_alloc = 1 << 20;
    h.send(resp, b"");
    let line = format!("OK {}\n", req.src_port);
    assert_eq!(read_exact_timeout(&mut host, line.len()), line.as_bytes());
    // The bytes that followed the CONNECT line reach the guest.
    h.mux.queue_notified(RX_QUEUE, &mut h.ctx).expect("rx");
    let got = h.received();
    assert_eq!(ops(&got), vec![OP_RW]);
    assert_eq!(got[0].1, b"early");
}

#[test]
fn malformed_connect_lines_are_refused() {
    let mem = guest_memory();
    let mut h = Harness::new(&mem);
    h.post_rx(2);
    for line in [&b"HELLO 52\n"[..], b"CONNECT x\n", b"CONNECT 99999999999\n"] {
        let mut host = UnixStream::connect(h.uds()).expect("connect");
        host.write_all(line).expect("w");
        h.poll();
        h.poll();
        let mut reply = String::new();
        host.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("t");
        let _ = host.read_to_string(&mut reply);
        assert!(reply.starts_with("ERR"), "{line:?} -> {reply:?}");
    }
    // A line that never ends is cut off.
    let mut host = UnixStream::connect(h.uds()).expect("connect");
    host.write_all(&[b'A'; 200]).expect("w");
    h.poll();
    h.poll();
    h.poll();
    let mut rest = Vec::new();
    host.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("t");
    // Closed with our bytes unread: EOF or a reset, never a reply.
    match host.read_to_end(&mut rest) {
        Ok(n) => assert_eq!(n, 0),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
    }
    assert!(h.received().is_empty());
    assert!(h.mux.conns.is_empty());
}

#[test]
fn spoofed_and_malformed_packets_are_dropped_or_reset() {
    let mem = guest_memory();
    let mut h = Harness::new(&mem);
    let _l = h.listen(5000);
    h.post_rx(8);
    // Wrong source CID: dropped silently.
    let mut spoof = h.hdr(OP_REQUEST, 1, 5000, 0);
    spoof.src_cid = 7;
    h.send(spoof, b"");
    // To someone other than the host: dropped.
    let mut other = h.hdr(OP_REQUEST, 1, 5000, 0);
    other.dst_cid = 9;
    h.send(other, b"");
    // Shorter than a header: nothing.
    h.send_raw(&[0u8; 10]);
    assert!(h.received().is_empty());
    // Datagram type: reset.
    let mut dgram = h.hdr(OP_REQUEST, 1, 5000, 0);
    dgram.type_ = 3;
    h.send(dgram, b"");
    // Data for a connection that does not exist: reset.
    h.send(h.hdr(OP_RW, 2, 5000, 3), b"abc");
    // Length larger than the payload carried: reset.
    h.send(h.hdr(OP_RW, 3, 5000, 1000), b"abc");
    assert_eq!(ops(&h.received()), vec![OP_RST, OP_RST, OP_RST]);
    assert!(h.mux.conns.is_empty());
}

#[test]
fn guest_overrunning_its_credit_is_reset() {
    let mem = guest_memory();
    let mut h = Harness::new(&mem);
    let host = h.guest_connection(1 << 20);
    // Fill the host socket's buffer by never reading it, then keep sending.
    let chunk = vec![7u8; 60_000];
    let mut reset = false;
    for _ in 0..200 {
        h.send(h.hdr(OP_RW, 1234, 5000, chunk.len() as u32), &chunk);
        let got = h.received();
        if ops(&got).contains(&OP_RST) {
            reset = true;
            break;
        }
        if h.rx.used_idx() == h.rx_slot {
            h.post_rx(8);
        }
    }
    assert!(reset, "guest exceeded BUF_ALLOC without a reset");
    assert!(h.mux.conns.is_empty());
    drop(host);
}

#[test]
fn unusable_rx_buffers_are_returned_empty() {
    let mem = guest_memory();
    let mut h = Harness::new(&mem);
    // A readable (wrong direction) rx buffer, then a too-small one.
    h.rx.set_desc(0, desc(0x80_0000, 4096, 0, 0));
    h.rx.set_desc(1, desc(0x80_2000, 8, F_WRITE, 0));
    h.rx.publish(&[0, 1]);
    h.rx_slot = 2;
    h.send(h.hdr(OP_REQUEST, 1, 6000, 0), b"");
    assert_eq!(h.rx.used_idx(), 2);
    assert_eq!(h.rx.used_elem(0).1, 0);
    assert_eq!(h.rx.used_elem(1).1, 0);
    h.rx_seen = 2;
    // The RST still goes out once a good buffer arrives.
    h.post_rx(1);
    assert_eq!(ops(&h.received()), vec![OP_RST]);
}

#[test]
fn corrupt_tx_ring_is_a_device_fault() {
    let mem = guest_memory();
    let mut h = Harness::new(&mem);
    h.tx.set_avail_idx(200);
    assert!(h.mux.queue_notified(TX_QUEUE, &mut h.ctx).is_err());
    let _ = Path::new("");
}

#[test]
fn a_guest_close_delivers_everything_still_buffered_first() {
    let mem = guest_memory();
    let mut h = Harness::new(&mem);
    let mut host = h.guest_connection(1 << 20);
    // More than the host socket buffers at once, so some stays with us.
    let chunk: Vec<u8> = (0..60_000u32).map(|i| (i % 251) as u8).collect();
    let mut sent = 0usize;
    for _ in 0..4 {
        h.send(h.hdr(OP_RW, 1234, 5000, chunk.len() as u32), &chunk);
        sent += chunk.len();
    }
    let mut close = h.hdr(OP_SHUTDOWN, 1234, 5000, 0);
    close.flags = SHUTDOWN_SEND | SHUTDOWN_RCV;
    h.send(close, b"");
    // The host reads everything while the worker keeps flushing.
    host.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    for _ in 0..200 {
        match host.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        h.poll();
    }
    assert_eq!(got.len(), sent, "bytes lost on close");
    assert!(got.chunks(60_000).all(|c| c == &chunk[..c.len()]));
    // Then the guest gets its RST and the connection is gone.
    assert!(ops(&h.received()).contains(&OP_RST));
    assert!(h.mux.conns.is_empty());
}

#[test]
fn a_guest_out_of_credit_is_asked_for_an_update() {
    let mem = guest_memory();
    let mut h = Harness::new(&mem);
    let mut host = h.guest_connection(1000);
    host.write_all(&[9u8; 5000]).expect("w");
    h.poll();
    let got = h.received();
    assert_eq!(ops(&got), vec![OP_RW, OP_CREDIT_REQUEST]);
    assert_eq!(got[0].1.len(), 1000);
    // The guest's update lets the rest through.
    let mut upd = h.hdr(OP_CREDIT_UPDATE, 1234, 5000, 0);
    upd.buf_alloc = 1000;
    upd.fwd_cnt = 1000;
    h.send(upd, b"");
    h.poll();
    let got = h.received();
    assert_eq!(got.first().map(|p| p.1.len()), Some(1000));
}

/// A restored device: the driver gets a transport reset in its event
/// buffer, and host connections wait until the driver has handled it
/// (it posts a fresh buffer), or the reset would take them down too.
#[test]
fn a_restored_device_resets_the_driver_before_letting_hosts_in() {
    let mem = guest_memory();
    let rx = TestQueue::at(&mem, QSIZE, 0x10_0000);
    let tx = TestQueue::at(&mem, QSIZE, 0x20_0000);
    let ev = TestQueue::at(&mem, QSIZE, 0x30_0000);
    ev.set_desc(0, desc(0x38_0000, 8, F_WRITE, 0));
    ev.set_desc(1, desc(0x38_1000, 8, F_WRITE, 0));
    ev.publish(&[0]);
    mem.write_obj(0xffff_ffffu32, GuestAddress(0x38_0000))
        .expect("poison");
    let irq = Interrupt::new(EventFd::new(libc::EFD_NONBLOCK).expect("evt"));
    let mut ctx =
        WorkerContext::for_test(mem.clone(), vec![rx.queue(), tx.queue(), ev.queue()], irq);
    let dir = temp_dir();
    let uds = dir.join("vm.sock");
    let listener = UnixListener::bind(&uds).expect("bind");
    let mut mux = Muxer::new(CID, uds.clone(), listener);
    mux.reset_transport_on_start();
    mux.start(&mut ctx).expect("start");
    assert_eq!(ev.used_idx(), 1, "the reset went out");
    assert_eq!(ev.used_elem(0), (0, 4));
    let id: u32 = mem.read_obj(GuestAddress(0x38_0000)).expect("event");
    assert_eq!(id, 0, "VIRTIO_VSOCK_EVENT_TRANSPORT_RESET");

    let _host = std::os::unix::net::UnixStream::connect(&uds).expect("connect");
    // A notification that is not the driver's refill (the restore's poke).
    mux.queue_notified(super::super::EVENT_QUEUE, &mut ctx)
        .expect("poke");
    assert!(
        ctx.ready().is_empty(),
        "the listener is watched before the driver handled the reset"
    );
    ev.publish(&[1]);
    mux.queue_notified(super::super::EVENT_QUEUE, &mut ctx)
        .expect("refill");
    assert!(
        ctx.ready().iter().any(|(t, _)| *t == LISTENER_TOKEN),
        "the waiting host connection is let in"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
