//! Moves vsock streams between the guest's queues and host Unix sockets.
//!
//! Everything in a tx packet is the guest's word and is checked: its source
//! CID, destination, type, length and credit. A guest that sends more than
//! the credit we gave it, or speaks for a connection that doesn't exist,
//! gets the connection reset; nothing it sends can make us buffer more than
//! `BUF_ALLOC` per connection or `MAX_CONNECTIONS` connections.

use super::packet::*;
use super::{RX_QUEUE, TX_QUEUE};
use crate::virtio::chain::{Chain, ChainLimits};
use crate::virtio::worker::{
    check_avail_ring, DeviceFault, DeviceWorker, WorkerContext, DEVICE_TOKEN_BASE,
};
use std::collections::{HashMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use virtio_queue::QueueT;
use vmm_sys_util::epoll::EventSet;

mod host_side;
mod to_guest;

/// Receive buffer we advertise per connection: how much guest data we hold
/// at most while the host side is slow to read.
pub const BUF_ALLOC: u32 = 256 * 1024;
/// Largest payload in one packet, either way.
const MAX_PKT_PAYLOAD: usize = 64 * 1024;
const MAX_CONNECTIONS: usize = 1024;
/// Control packets waiting for rx buffers; past this we stop reading tx.
const MAX_PENDING_CONTROL: usize = 4096;
const MAX_CONNECT_LINE: usize = 64;
const LISTENER_TOKEN: u64 = DEVICE_TOKEN_BASE;
const FIRST_HOST_PORT: u32 = 1 << 30;
const LIMITS: ChainLimits = ChainLimits {
    max_descriptors: 64,
    max_bytes: (HEADER_LEN + MAX_PKT_PAYLOAD) as u64 + 4096,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Host connected to the VM socket; waiting for its `CONNECT <port>` line.
    AwaitConnectLine,
    /// REQUEST sent to the guest; waiting for RESPONSE or RST.
    Connecting,
    Established,
}

struct Conn {
    stream: UnixStream,
    state: State,
    /// Host side (CID 2) port and guest side port; 0 until known.
    local_port: u32,
    peer_port: u32,
    line: Vec<u8>,
    /// Guest data (and, first, `to_host_control` bytes of our own) not yet
    /// written to the host socket.
    to_host: VecDeque<u8>,
    to_host_control: usize,
    /// Guest data bytes delivered to the host socket (wrapping, as on the wire).
    fwd_cnt: u32,
    last_fwd_cnt_sent: u32,
    /// Host data read but not yet in a guest buffer.
    to_guest: Vec<u8>,
    tx_cnt: u32,
    peer_buf_alloc: u32,
    peer_fwd_cnt: u32,
    host_eof: bool,
    /// The host socket hung up: epoll would report it forever, so the fd is
    /// no longer watched and what is left in it is read as the guest makes room.
    host_hup: bool,
    guest_done_sending: bool,
    /// We asked the guest for a credit update since its last packet.
    credit_requested: bool,
    /// The guest closed the connection (SHUTDOWN with both flags) while we
    /// still held its data: hand that over, then confirm with RST.
    close_when_drained: bool,
    interest: EventSet,
}

impl Conn {
    fn new(stream: UnixStream, state: State) -> Self {
        Conn {
            stream,
            state,
            local_port: 0,
            peer_port: 0,
            line: Vec::new(),
            to_host: VecDeque::new(),
            to_host_control: 0,
            fwd_cnt: 0,
            last_fwd_cnt_sent: 0,
            to_guest: Vec::new(),
            tx_cnt: 0,
            peer_buf_alloc: 0,
            peer_fwd_cnt: 0,
            host_eof: false,
            host_hup: false,
            guest_done_sending: false,
            credit_requested: false,
            close_when_drained: false,
            interest: EventSet::empty(),
        }
    }

    /// Bytes the guest can still take on this connection.
    fn peer_credit(&self) -> u32 {
        let in_flight = self.tx_cnt.wrapping_sub(self.peer_fwd_cnt);
        self.peer_buf_alloc.saturating_sub(in_flight)
    }

    fn wanted_interest(&self) -> EventSet {
        let mut e = EventSet::empty();
        let reading = match self.state {
            State::AwaitConnectLine => true,
            State::Connecting => false,
            State::Established => {
                !self.host_hup
                    && !self.host_eof
                    && self.to_guest.is_empty()
                    && self.peer_credit() > 0
            }
        };
        if reading {
            e |= EventSet::IN;
        }
        if !self.to_host.is_empty() && !self.host_hup {
            e |= EventSet::OUT;
        }
        e
    }
}

pub struct Muxer {
    guest_cid: u64,
    uds_path: PathBuf,
    listener: UnixListener,
    conns: HashMap<u64, Conn>,
    by_ports: HashMap<(u32, u32), u64>,
    next_token: u64,
    next_host_port: u32,
    control: VecDeque<Header>,
    errors: u32,
    reset_on_start: bool,
    /// After a transport reset: the event queue's available index when it
    /// was sent. Host connections wait in the listener's backlog until the
    /// driver posts a new event buffer, which it does only after it has
    /// reset its sockets; a connection let through before that would be
    /// reset with the old ones.
    reset_pending: Option<u16>,
}

impl Muxer {
    pub fn new(guest_cid: u64, uds_path: PathBuf, listener: UnixListener) -> Self {
        Muxer {
            guest_cid,
            uds_path,
            listener,
            conns: HashMap::new(),
            by_ports: HashMap::new(),
            next_token: LISTENER_TOKEN + 1,
            next_host_port: FIRST_HOST_PORT,
            control: VecDeque::new(),
            errors: 0,
            reset_on_start: false,
            reset_pending: None,
        }
    }

    /// For a device restored from a snapshot: the first thing the worker
    /// does is tell the driver its connections are gone.
    pub fn reset_transport_on_start(&mut self) {
        self.reset_on_start = true;
    }

    fn guest_error(&mut self, what: impl std::fmt::Display) {
        self.errors = self.errors.saturating_add(1);
        if self.errors <= 10 {
            eprintln!("paddock-vmm: virtio-vsock: {what}");
        }
    }

    fn header(&self, op: u16, local_port: u32, peer_port: u32) -> Header {
        Header {
            src_cid: HOST_CID,
            dst_cid: self.guest_cid,
            src_port: local_port,
            dst_port: peer_port,
            len: 0,
            type_: TYPE_STREAM,
            op,
            flags: 0,
            buf_alloc: BUF_ALLOC,
            fwd_cnt: 0,
        }
    }

    fn send_control(&mut self, mut h: Header) {
        if let Some(c) = self
            .by_ports
            .get(&(h.src_port, h.dst_port))
            .and_then(|t| self.conns.get_mut(t))
        {
            h.fwd_cnt = c.fwd_cnt;
            c.last_fwd_cnt_sent = c.fwd_cnt;
        }
        self.control.push_back(h);
    }

    fn send_rst(&mut self, local_port: u32, peer_port: u32) {
        let h = self.header(OP_RST, local_port, peer_port);
        self.control.push_back(h);
    }

    fn remove(&mut self, token: u64, ctx: &WorkerContext) {
        if let Some(c) = self.conns.remove(&token) {
            let _ = ctx.unwatch(c.stream.as_raw_fd());
            if c.local_port != 0 || c.peer_port != 0 {
                self.by_ports.remove(&(c.local_port, c.peer_port));
            }
        }
    }

    /// Resets the guest side and forgets the connection.
    fn reset(&mut self, token: u64, ctx: &WorkerContext) {
        if let Some(c) = self.conns.get(&token) {
            if c.state != State::AwaitConnectLine {
                let (l, p) = (c.local_port, c.peer_port);
                self.send_rst(l, p);
            }
        }
        self.remove(token, ctx);
    }

    fn update_interest(&mut self, token: u64, ctx: &WorkerContext) {
        if let Some(c) = self.conns.get_mut(&token) {
            let want = c.wanted_interest();
            if want != c.interest {
                let fd = c.stream.as_raw_fd();
                let r = if c.interest.is_empty() {
                    ctx.watch(fd, token, want)
                } else if want.is_empty() {
                    ctx.unwatch(fd)
                } else {
                    ctx.rewatch(fd, token, want)
                };
                if r.is_ok() {
                    c.interest = want;
                }
            }
        }
    }

    fn add_conn(&mut self, conn: Conn, ctx: &WorkerContext) -> u64 {
        let token = self.next_token;
        self.next_token += 1;
        if conn.local_port != 0 || conn.peer_port != 0 {
            self.by_ports
                .insert((conn.local_port, conn.peer_port), token);
        }
        self.conns.insert(token, conn);
        self.update_interest(token, ctx);
        token
    }

    fn alloc_host_port(&mut self) -> u32 {
        loop {
            let p = self.next_host_port;
            self.next_host_port = self
                .next_host_port
                .checked_add(1)
                .unwrap_or(FIRST_HOST_PORT);
            if !self.by_ports.keys().any(|(l, _)| *l == p) {
                return p;
            }
        }
    }

    // ---- guest -> host ----

    fn process_tx(&mut self, ctx: &mut WorkerContext) -> Result<(), DeviceFault> {
        let mut used_any = false;
        loop {
            if self.control.len() >= MAX_PENDING_CONTROL {
                // The guest is not taking our replies; stop taking its requests.
                break;
            }
            let mem = &ctx.mem;
            let Some(chain) = ctx.queues[TX_QUEUE].pop_descriptor_chain(mem) else {
                check_avail_ring(&ctx.queues[TX_QUEUE], mem)?;
                break;
            };
            let head = chain.head_index();
            match Chain::parse(chain, LIMITS) {
                Ok(c) => self.handle_tx_packet(&c, ctx),
                Err(e) => self.guest_error(format!("bad tx chain: {e}")),
            }
            ctx.queues[TX_QUEUE]
                .add_used(&ctx.mem, head, 0)
                .map_err(|e| DeviceFault(format!("tx used ring: {e}")))?;
            used_any = true;
        }
        if used_any {
            ctx.interrupt.signal_used_queue();
        }
        Ok(())
    }

    fn handle_tx_packet(&mut self, c: &Chain, ctx: &WorkerContext) {
        let mut raw = [0u8; HEADER_LEN];
        if c.read_at(&ctx.mem, 0, &mut raw).is_err() {
            self.guest_error("tx packet shorter than its header");
            return;
        }
        let h = Header::parse(&raw);
        if h.src_cid != self.guest_cid || h.dst_cid != HOST_CID {
            self.guest_error(format!(
                "dropped packet from CID {} to CID {} (guest is {})",
                h.src_cid, h.dst_cid, self.guest_cid
            ));
            return;
        }
        let (local, peer) = (h.dst_port, h.src_port);
        if h.type_ != TYPE_STREAM {
            self.guest_error(format!("unsupported socket type {}", h.type_));
            self.send_rst(local, peer);
            return;
        }
        let payload_len = h.len as usize;
        let available = c.readable_len().saturating_sub(HEADER_LEN as u64);
        if payload_len > MAX_PKT_PAYLOAD || payload_len as u64 > available {
            self.guest_error(format!(
                "packet claims {payload_len} payload bytes, carries {available}"
            ));
            if let Some(&t) = self.by_ports.get(&(local, peer)) {
                self.reset(t, ctx);
            } else {
                self.send_rst(local, peer);
            }
            return;
        }
        let token = self.by_ports.get(&(local, peer)).copied();
        if let Some(t) = token {
            if let Some(conn) = self.conns.get_mut(&t) {
                conn.peer_buf_alloc = h.buf_alloc;
                conn.peer_fwd_cnt = h.fwd_cnt;
                conn.credit_requested = false;
            }
        }
        match (h.op, token) {
            (OP_REQUEST, None) => self.guest_connect(&h, ctx),
            (OP_REQUEST, Some(t)) => self.reset(t, ctx),
            (OP_RESPONSE, Some(t)) => self.guest_accepted(t, ctx),
            (OP_RW, Some(t)) => {
                let mut data = vec![0u8; payload_len];
                if c.read_at(&ctx.mem, HEADER_LEN as u64, &mut data).is_err() {
                    self.reset(t, ctx);
                    return;
                }
                self.guest_data(t, data, ctx);
            }
            (OP_CREDIT_UPDATE, Some(_)) => {}
            (OP_CREDIT_REQUEST, Some(_)) => {
                let h = self.header(OP_CREDIT_UPDATE, local, peer);
                self.send_control(h);
            }
            (OP_SHUTDOWN, Some(t)) => self.guest_shutdown(t, h.flags, ctx),
            (OP_RST, Some(t)) => self.remove(t, ctx),
            (OP_RST, None) => {}
            (op, Some(t)) => {
                self.guest_error(format!("unknown op {op}"));
                self.reset(t, ctx);
            }
            (_, None) => self.send_rst(local, peer),
        }
        if let Some(t) = token {
            self.update_interest(t, ctx);
        }
    }

    fn guest_connect(&mut self, h: &Header, ctx: &WorkerContext) {
        let (local, peer) = (h.dst_port, h.src_port);
        if self.conns.len() >= MAX_CONNECTIONS {
            self.guest_error("connection limit reached");
            self.send_rst(local, peer);
            return;
        }
        let mut path = self.uds_path.clone().into_os_string();
        path.push(format!("_{local}"));
        match UnixStream::connect(&path) {
            Ok(stream) => {
                if stream.set_nonblocking(true).is_err() {
                    self.send_rst(local, peer);
                    return;
                }
                let mut conn = Conn::new(stream, State::Established);
                conn.local_port = local;
                conn.peer_port = peer;
                // The request carries the guest's receive buffer: the host
                // may speak first on this connection.
                conn.peer_buf_alloc = h.buf_alloc;
                conn.peer_fwd_cnt = h.fwd_cnt;
                self.add_conn(conn, ctx);
                let h = self.header(OP_RESPONSE, local, peer);
                self.send_control(h);
            }
            Err(_) => self.send_rst(local, peer),
        }
    }

    fn guest_accepted(&mut self, token: u64, ctx: &WorkerContext) {
        let Some(c) = self.conns.get_mut(&token) else {
            return;
        };
        if c.state != State::Connecting {
            self.reset(token, ctx);
            return;
        }
        c.state = State::Established;
        let ok = format!("OK {}\n", c.local_port);
        c.to_host_control = ok.len();
        // Bytes the host sent right after its CONNECT line precede any reply.
        let mut front: VecDeque<u8> = ok.into_bytes().into();
        front.append(&mut c.to_host);
        c.to_host = front;
        self.flush_to_host(token, ctx);
    }

    fn guest_data(&mut self, token: u64, data: Vec<u8>, ctx: &WorkerContext) {
        let Some(c) = self.conns.get_mut(&token) else {
            return;
        };
        let buffered = c.to_host.len() - c.to_host_control;
        if c.state != State::Established || c.guest_done_sending {
            self.reset(token, ctx);
            return;
        }
        if buffered + data.len() > BUF_ALLOC as usize {
            self.guest_error("guest overran its credit");
            self.reset(token, ctx);
            return;
        }
        c.to_host.extend(data);
        self.flush_to_host(token, ctx);
    }

    fn guest_shutdown(&mut self, token: u64, flags: u32, ctx: &WorkerContext) {
        let Some(c) = self.conns.get_mut(&token) else {
            return;
        };
        if flags & SHUTDOWN_SEND != 0 {
            c.guest_done_sending = true;
        }
        if flags & (SHUTDOWN_SEND | SHUTDOWN_RCV) == SHUTDOWN_SEND | SHUTDOWN_RCV {
            // A full close. What we still hold for the host is delivered
            // first (flush_to_host finishes the close once it is out).
            c.guest_done_sending = true;
            c.close_when_drained = true;
        }
        self.flush_to_host(token, ctx);
    }
}

impl Muxer {
    fn watch_listener(&self, ctx: &WorkerContext) -> Result<(), DeviceFault> {
        ctx.watch(self.listener.as_raw_fd(), LISTENER_TOKEN, EventSet::IN)
            .map_err(|e| DeviceFault(format!("watching the vsock listener: {e}")))
    }
}

impl DeviceWorker for Muxer {
    fn start(&mut self, ctx: &mut WorkerContext) -> Result<(), DeviceFault> {
        // Here, on the worker's own thread: its seccomp filter allows
        // making sockets non-blocking; the vCPU that activated it may not.
        self.listener
            .set_nonblocking(true)
            .map_err(|e| DeviceFault(format!("making the vsock listener non-blocking: {e}")))?;
        if std::mem::take(&mut self.reset_on_start) {
            if super::event::send_transport_reset(ctx)? {
                self.reset_pending = super::event::posted(ctx);
            } else {
                self.guest_error("restored with no event buffer posted: no transport reset sent");
            }
        }
        if self.reset_pending.is_none() {
            self.watch_listener(ctx)?;
        }
        Ok(())
    }

    fn queue_notified(&mut self, index: usize, ctx: &mut WorkerContext) -> Result<(), DeviceFault> {
        if let Some(at) = self.reset_pending {
            if super::event::posted(ctx).is_some_and(|now| now != at) {
                self.reset_pending = None;
                self.watch_listener(ctx)?;
            }
        }
        match index {
            TX_QUEUE => {
                self.process_tx(ctx)?;
                self.pump(ctx)?;
                // Replies may have freed room for more tx.
                self.process_tx(ctx)
            }
            RX_QUEUE => {
                self.pump(ctx)?;
                self.process_tx(ctx)
            }
            _ => Ok(()),
        }
    }

    fn fd_ready(
        &mut self,
        token: u64,
        events: EventSet,
        ctx: &mut WorkerContext,
    ) -> Result<(), DeviceFault> {
        if token == LISTENER_TOKEN {
            self.accept(ctx);
            return Ok(());
        }
        if events.contains(EventSet::OUT) {
            self.flush_to_host(token, ctx);
        }
        if events.intersects(EventSet::HANG_UP | EventSet::ERROR) {
            self.host_hung_up(token, ctx);
        } else if events.contains(EventSet::IN) {
            self.host_readable(token, ctx);
        }
        self.process_rx(ctx)
    }
}

#[cfg(test)]
mod tests;
