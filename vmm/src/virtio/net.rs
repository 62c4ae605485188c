//! virtio-net over a tap the host opened and handed us (we never open one:
//! the VMM's network namespace is empty). No offloads are offered, so every
//! frame is at most one MTU and the 12-byte virtio header carries nothing
//! we read: on transmit it is skipped, on receive it is written as zeros.
//!
//! The guest is hostile: a transmit chain is checked (readable only, sane
//! length, at least an Ethernet header) before a byte of it reaches the tap;
//! a frame that does not fit the receive buffer the guest offered is
//! dropped and counted, never truncated or written past the buffer.
//!
//! Both directions have their own token buckets (bytes and frames per
//! second, set at start and through the control socket). A throttled
//! direction stops popping chains or reading the tap and arms a timer;
//! nothing sleeps, so one direction never stalls the other.

use super::chain::{Chain, ChainLimits};
use super::worker::{self, DeviceFault, DeviceWorker, WorkerContext, WorkerHandle};
use super::{device_id, read_config_bytes, ActivateError, Activation, VirtioDevice};
use crate::memory::GuestMemory;
use crate::rate_limit::{RateLimit, RateLimiter};
use crate::seccomp::ThreadKind;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use virtio_queue::{Queue, QueueT};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::timerfd::TimerFd;

const VIRTIO_NET_F_MAC: u64 = 1 << 5;
/// virtio_net_hdr with num_buffers (virtio 1.x, 5.1.6).
pub const HEADER_LEN: usize = 12;
/// Destination, source, EtherType.
const ETHERNET_HEADER: usize = 14;
/// The largest frame we move: a 1500-byte MTU plus Ethernet and a VLAN tag.
/// Without offloads the guest never builds a larger one; one that claims
/// to is refused.
pub const MAX_FRAME: usize = 1518;
const QUEUE_SIZE: u16 = 256;
const RX: usize = 0;
const TX: usize = 1;
const LIMITS: ChainLimits = ChainLimits {
    max_descriptors: QUEUE_SIZE as usize,
    max_bytes: 1 << 20,
};
const TAP_TOKEN: u64 = worker::DEVICE_TOKEN_BASE;
const TIMER_TOKEN: u64 = worker::DEVICE_TOKEN_BASE + 1;
/// Guest mistakes are logged this many times, then only counted.
const MAX_LOGGED_ERRORS: u64 = 10;

/// What the device counts; the host reads them off the VMM's exit report.
#[derive(Default, Debug)]
pub struct NetCounters {
    pub tx_frames: AtomicU64,
    pub tx_bytes: AtomicU64,
    pub rx_frames: AtomicU64,
    pub rx_bytes: AtomicU64,
    /// Chains the guest got wrong (bad direction, size, short header).
    pub tx_malformed: AtomicU64,
    /// Frames the tap would not take (full) or the guest had no room for.
    pub dropped: AtomicU64,
}

pub struct Net {
    tap: File,
    timer: TimerFd,
    config: [u8; 6],
    rate: RateLimit,
    control: Option<Arc<crate::control::RateCell>>,
    counters: Arc<NetCounters>,
    worker: Option<WorkerHandle>,
}

impl Net {
    /// `tap` must be a non-blocking descriptor that reads and writes one
    /// Ethernet frame per call (a tap opened IFF_TAP | IFF_NO_PI).
    pub fn new(tap: File, mac: [u8; 6]) -> std::io::Result<Net> {
        Ok(Net {
            tap,
            timer: TimerFd::new()?,
            config: mac,
            rate: RateLimit::default(),
            control: None,
            counters: Arc::default(),
            worker: None,
        })
    }

    pub fn with_rate(mut self, rate: RateLimit) -> Self {
        self.rate = rate;
        self
    }

    pub fn with_control(mut self, cell: Arc<crate::control::RateCell>) -> Self {
        self.control = Some(cell);
        self
    }

    pub fn counters(&self) -> Arc<NetCounters> {
        self.counters.clone()
    }
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        device_id::NET
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE]
    }
    fn features(&self) -> u64 {
        VIRTIO_NET_F_MAC
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }
    fn activate(&mut self, activation: Activation) -> Result<(), ActivateError> {
        let tap = self.tap.try_clone().map_err(ActivateError::EventFd)?;
        let timer = clone_timer(&self.timer).map_err(ActivateError::EventFd)?;
        let w = NetWorker::new(tap, timer, self.rate, self.counters.clone());
        let w = match &self.control {
            Some(c) => w.with_control(c.clone()),
            None => w,
        };
        self.worker = Some(worker::spawn("net", ThreadKind::Net, activation, w)?);
        Ok(())
    }
    fn reset(&mut self) {
        if let Some(mut w) = self.worker.take() {
            w.stop();
        }
    }
    fn worker_mut(&mut self) -> Option<&mut WorkerHandle> {
        self.worker.as_mut()
    }
}

/// A second descriptor of the same timer (TimerFd has no try_clone); the
/// device keeps one so a reset device can be activated again.
fn clone_timer(t: &TimerFd) -> std::io::Result<TimerFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: F_DUPFD_CLOEXEC on a descriptor we own returns a new one or -1.
    let fd = unsafe { libc::fcntl(t.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor of a timerfd that nothing else owns.
    Ok(unsafe { TimerFd::from_raw_fd(fd) })
}

/// One direction's throttle.
struct Throttle {
    limiter: Option<RateLimiter>,
}

impl Throttle {
    fn new(rate: RateLimit) -> Throttle {
        Throttle {
            limiter: (!rate.is_unlimited()).then(|| RateLimiter::new(rate, Instant::now())),
        }
    }

    fn wait(&mut self) -> Duration {
        self.limiter
            .as_mut()
            .map_or(Duration::ZERO, |l| l.wait(Instant::now()))
    }

    fn charge(&mut self, bytes: usize) {
        if let Some(l) = &mut self.limiter {
            l.charge(Instant::now(), bytes as u64);
        }
    }
}

pub struct NetWorker {
    tap: File,
    timer: TimerFd,
    control: Option<Arc<crate::control::RateCell>>,
    rx: Throttle,
    tx: Throttle,
    counters: Arc<NetCounters>,
    /// A frame read from the tap that no receive buffer has taken yet.
    pending: Option<usize>,
    /// The received frame (`pending` says how much of it waits).
    frame: Box<[u8; MAX_FRAME + 1]>,
    /// A transmitted frame on its way to the tap: its own buffer, so a
    /// transmit never overwrites a received frame still waiting for a
    /// guest buffer.
    tx_frame: Box<[u8; MAX_FRAME]>,
    /// Whether epoll reports the tap: off while the guest has no receive
    /// buffer or receiving is throttled, so a waiting frame does not spin us.
    tap_watched: bool,
    timer_armed: bool,
    logged: u64,
}

impl NetWorker {
    pub fn new(
        tap: File,
        timer: TimerFd,
        rate: RateLimit,
        counters: Arc<NetCounters>,
    ) -> NetWorker {
        NetWorker {
            tap,
            timer,
            control: None,
            rx: Throttle::new(rate),
            tx: Throttle::new(rate),
            counters,
            pending: None,
            frame: Box::new([0u8; MAX_FRAME + 1]),
            tx_frame: Box::new([0u8; MAX_FRAME]),
            tap_watched: false,
            timer_armed: false,
            logged: 0,
        }
    }

    pub fn with_control(mut self, cell: Arc<crate::control::RateCell>) -> Self {
        self.control = Some(cell);
        self
    }

    fn guest_error(&mut self, what: impl std::fmt::Display) {
        self.counters.tx_malformed.fetch_add(1, Ordering::Relaxed);
        self.logged += 1;
        if self.logged <= MAX_LOGGED_ERRORS {
            eprintln!("paddock-vmm: virtio-net: {what}");
        }
    }

    fn take_new_rate(&mut self) {
        if let Some(rate) = self.control.as_ref().and_then(|c| c.take()) {
            self.rx = Throttle::new(rate);
            self.tx = Throttle::new(rate);
        }
    }

    fn arm(&mut self, after: Duration) {
        if self.timer_armed {
            return;
        }
        // A zero duration would disarm the timer.
        let after = after.max(Duration::from_micros(50));
        if let Err(e) = self.timer.reset(after, None) {
            eprintln!("paddock-vmm: virtio-net: arming the rate timer: {e}");
            return;
        }
        self.timer_armed = true;
    }

    fn watch_tap(&mut self, ctx: &WorkerContext, on: bool) -> Result<(), DeviceFault> {
        if self.tap_watched == on {
            return Ok(());
        }
        let events = if on { EventSet::IN } else { EventSet::empty() };
        ctx.rewatch(self.tap.as_raw_fd(), TAP_TOKEN, events)
            .map_err(|e| DeviceFault(format!("watching the tap: {e}")))?;
        self.tap_watched = on;
        Ok(())
    }

    /// Sends every frame the guest queued (until throttled).
    pub fn transmit(&mut self, mem: &GuestMemory, queue: &mut Queue) -> Result<bool, DeviceFault> {
        let mut used_any = false;
        loop {
            let wait = self.tx.wait();
            if !wait.is_zero() {
                self.arm(wait);
                break;
            }
            let Some(chain) = queue.pop_descriptor_chain(mem) else {
                break;
            };
            let head = chain.head_index();
            match Chain::parse(chain, LIMITS) {
                Ok(c) => self.send(mem, &c),
                Err(e) => self.guest_error(format!("transmit chain: {e}")),
            }
            queue
                .add_used(mem, head, 0)
                .map_err(|e| DeviceFault(format!("used ring: {e}")))?;
            used_any = true;
        }
        worker::check_avail_ring(queue, mem)?;
        Ok(used_any)
    }

    fn send(&mut self, mem: &GuestMemory, c: &Chain) {
        if c.writable_len() != 0 {
            return self.guest_error("transmit chain has device-writable buffers");
        }
        let total = c.readable_len() as usize;
        if !(HEADER_LEN + ETHERNET_HEADER..=HEADER_LEN + MAX_FRAME).contains(&total) {
            return self.guest_error(format!(
                "transmit chain of {total} bytes (a frame is {}..={} after the {HEADER_LEN}-byte header)",
                ETHERNET_HEADER, MAX_FRAME
            ));
        }
        let len = total - HEADER_LEN;
        let frame = &mut self.tx_frame[..len];
        if let Err(e) = c.read_at(mem, HEADER_LEN as u64, frame) {
            return self.guest_error(format!("transmit chain: {e}"));
        }
        match self.tap.write(frame) {
            Ok(_) => {
                self.counters.tx_frames.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .tx_bytes
                    .fetch_add(len as u64, Ordering::Relaxed);
            }
            // A full tap drops, as a full NIC ring would.
            Err(_) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.tx.charge(len);
    }

    /// Moves frames from the tap into the guest's receive buffers until
    /// the tap is empty, the guest has no buffer, or the throttle says wait.
    /// Returns whether any buffer was used and whether to keep watching
    /// the tap.
    pub fn receive(
        &mut self,
        mem: &GuestMemory,
        queue: &mut Queue,
    ) -> Result<(bool, bool), DeviceFault> {
        let mut used_any = false;
        loop {
            let wait = self.rx.wait();
            if !wait.is_zero() {
                self.arm(wait);
                return Ok((used_any, false));
            }
            let len = match self.pending {
                Some(n) => n,
                None => match self.tap.read(&mut self.frame[..]) {
                    Ok(0) => return Ok((used_any, true)),
                    // Longer than any frame we move: not from our host's
                    // tap (its MTU is ours); dropped.
                    Ok(n) if n > MAX_FRAME => {
                        self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        return Ok((used_any, true))
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(DeviceFault(format!("reading the tap: {e}"))),
                },
            };
            let Some(chain) = queue.pop_descriptor_chain(mem) else {
                worker::check_avail_ring(queue, mem)?;
                // No room: keep the frame until the guest offers a buffer.
                self.pending = Some(len);
                return Ok((used_any, false));
            };
            self.pending = None;
            let head = chain.head_index();
            let written = match Chain::parse(chain, LIMITS) {
                Ok(c) => self.deliver(mem, &c, len),
                Err(e) => {
                    self.guest_error(format!("receive chain: {e}"));
                    0
                }
            };
            queue
                .add_used(mem, head, written)
                .map_err(|e| DeviceFault(format!("used ring: {e}")))?;
            used_any = true;
        }
    }

    fn deliver(&mut self, mem: &GuestMemory, c: &Chain, len: usize) -> u32 {
        if c.writable_len() < (HEADER_LEN + len) as u64 {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return 0;
        }
        let mut header = [0u8; HEADER_LEN];
        // num_buffers: the frame is in this one buffer.
        header[10] = 1;
        let ok = c.write_at(mem, 0, &header).is_ok()
            && c.write_at(mem, HEADER_LEN as u64, &self.frame[..len])
                .is_ok();
        if !ok {
            self.guest_error("receive chain: writing into guest memory failed");
            return 0;
        }
        self.counters.rx_frames.fetch_add(1, Ordering::Relaxed);
        self.counters
            .rx_bytes
            .fetch_add(len as u64, Ordering::Relaxed);
        self.rx.charge(len);
        (HEADER_LEN + len) as u32
    }

    fn run_rx(&mut self, ctx: &mut WorkerContext) -> Result<(), DeviceFault> {
        let (used, keep_watching) = {
            let WorkerContext { mem, queues, .. } = &mut *ctx;
            match queues.get_mut(RX) {
                Some(q) => self.receive(mem, q)?,
                None => (false, false),
            }
        };
        self.watch_tap(ctx, keep_watching)?;
        if used {
            ctx.interrupt.signal_used_queue();
        }
        Ok(())
    }

    fn run_tx(&mut self, ctx: &mut WorkerContext) -> Result<(), DeviceFault> {
        let used = {
            let WorkerContext { mem, queues, .. } = &mut *ctx;
            match queues.get_mut(TX) {
                Some(q) => self.transmit(mem, q)?,
                None => false,
            }
        };
        if used {
            ctx.interrupt.signal_used_queue();
        }
        Ok(())
    }
}

impl DeviceWorker for NetWorker {
    fn start(&mut self, ctx: &mut WorkerContext) -> Result<(), DeviceFault> {
        ctx.watch(self.tap.as_raw_fd(), TAP_TOKEN, EventSet::IN)
            .map_err(|e| DeviceFault(format!("watching the tap: {e}")))?;
        self.tap_watched = true;
        ctx.watch(self.timer.as_raw_fd(), TIMER_TOKEN, EventSet::IN)
            .map_err(|e| DeviceFault(format!("watching the rate timer: {e}")))?;
        Ok(())
    }

    fn queue_notified(&mut self, index: usize, ctx: &mut WorkerContext) -> Result<(), DeviceFault> {
        self.take_new_rate();
        match index {
            RX => self.run_rx(ctx),
            TX => self.run_tx(ctx),
            _ => Ok(()),
        }
    }

    fn fd_ready(
        &mut self,
        token: u64,
        _events: EventSet,
        ctx: &mut WorkerContext,
    ) -> Result<(), DeviceFault> {
        self.take_new_rate();
        if token == TIMER_TOKEN {
            let _ = self.timer.wait();
            self.timer_armed = false;
            self.run_tx(ctx)?;
        }
        self.run_rx(ctx)
    }
}

#[cfg(test)]
#[path = "net_tests.rs"]
mod tests;
