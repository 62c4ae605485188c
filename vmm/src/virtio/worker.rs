//! One thread per activated device: waits on its queue notifications (and
//! any sockets it owns) and runs the device's handlers.

use super::{ActivateError, Activation, Interrupt, NeedsReset};
use crate::memory::GuestMemory;
use crate::seccomp::ThreadKind;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread::JoinHandle;
use virtio_queue::Queue;
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

/// Tokens below this are queue indexes; a device's own fds use tokens from here.
pub const DEVICE_TOKEN_BASE: u64 = 1 << 32;
const COMMAND_TOKEN: u64 = u64::MAX;

/// A device gave up on the guest: it broke the queue protocol badly enough
/// that the device can't go on (a request it can merely fail is not this).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DeviceFault(pub String);

pub struct WorkerContext {
    pub mem: GuestMemory,
    pub queues: Vec<Queue>,
    pub interrupt: Interrupt,
    epoll: Epoll,
}

impl WorkerContext {
    /// Watches `fd` for `events`, reporting it to `fd_ready` as `token`.
    pub fn watch(&self, fd: RawFd, token: u64, events: EventSet) -> std::io::Result<()> {
        self.epoll
            .ctl(ControlOperation::Add, fd, EpollEvent::new(events, token))
    }

    pub fn rewatch(&self, fd: RawFd, token: u64, events: EventSet) -> std::io::Result<()> {
        self.epoll
            .ctl(ControlOperation::Modify, fd, EpollEvent::new(events, token))
    }

    pub fn unwatch(&self, fd: RawFd) -> std::io::Result<()> {
        self.epoll
            .ctl(ControlOperation::Delete, fd, EpollEvent::default())
    }
}

pub trait DeviceWorker: Send + 'static {
    /// Runs once in the new thread before any event.
    fn start(&mut self, _ctx: &mut WorkerContext) -> Result<(), DeviceFault> {
        Ok(())
    }
    /// The driver notified queue `index`.
    fn queue_notified(&mut self, index: usize, ctx: &mut WorkerContext) -> Result<(), DeviceFault>;
    /// A watched fd of the device's own is ready.
    fn fd_ready(
        &mut self,
        _token: u64,
        _events: EventSet,
        _ctx: &mut WorkerContext,
    ) -> Result<(), DeviceFault> {
        Ok(())
    }
}

/// How long a pause waits for a worker to finish what it is doing: a
/// rate-limited drive can hold its worker in a guest's long queue of
/// requests for much longer, and the control thread must not hang there.
const PAUSE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PauseFailed {
    #[error("the device's worker has stopped (the device faulted)")]
    Stopped,
    #[error("the device's worker did not stop within {PAUSE_WAIT:?} (a rate-limited drive working through a long queue?)")]
    Busy,
}

/// What the owner of a worker asks of it, besides queue work.
enum Command {
    /// Stop touching guest memory, report the queues and wait for `Resume`.
    Pause,
    Resume,
    Stop,
}

/// A running worker thread and the means to pause and stop it: commands go
/// over a channel, and an eventfd in the worker's epoll wakes it to read
/// them.
pub struct WorkerHandle {
    poke: EventFd,
    commands: Sender<Command>,
    paused: Receiver<Vec<virtio_queue::QueueState>>,
    thread: Option<JoinHandle<()>>,
}

impl WorkerHandle {
    fn send(&self, c: Command) -> bool {
        self.commands.send(c).is_ok() && self.poke.write(1).is_ok()
    }

    pub fn stop(&mut self) {
        self.send(Command::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Returns once the worker is parked between two events, with the
    /// state of its queues at that point.
    pub fn pause(&mut self) -> Result<Vec<virtio_queue::QueueState>, PauseFailed> {
        // An answer to an earlier pause that gave up waiting.
        while self.paused.try_recv().is_ok() {}
        if !self.send(Command::Pause) {
            return Err(PauseFailed::Stopped);
        }
        match self.paused.recv_timeout(PAUSE_WAIT) {
            Ok(states) => Ok(states),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                // It will see the pause some time; let it go on when it does.
                let _ = self.commands.send(Command::Resume);
                Err(PauseFailed::Busy)
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(PauseFailed::Stopped),
        }
    }

    pub fn resume(&mut self) {
        // A paused worker waits on the channel alone: no poke needed.
        let _ = self.commands.send(Command::Resume);
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts `worker` on a thread of its own (of seccomp kind `kind`) serving
/// the activated queues. Called from a vCPU thread; the set-up runs on the
/// spawner thread (see threads.rs).
pub fn spawn<W: DeviceWorker>(
    name: &str,
    kind: ThreadKind,
    activation: Activation,
    worker: W,
) -> Result<WorkerHandle, ActivateError> {
    let name = name.to_string();
    crate::threads::on_spawner(move || start(&name, kind, activation, worker))
        .map_err(ActivateError::Thread)?
}

fn start<W: DeviceWorker>(
    name: &str,
    kind: ThreadKind,
    activation: Activation,
    mut worker: W,
) -> Result<WorkerHandle, ActivateError> {
    let poke = EventFd::new(libc::EFD_NONBLOCK).map_err(ActivateError::EventFd)?;
    let poke_clone = poke.try_clone().map_err(ActivateError::EventFd)?;
    let (commands, command_rx) = channel();
    let (paused_tx, paused) = channel();
    let epoll = Epoll::new().map_err(ActivateError::EventFd)?;
    for (i, evt) in activation.queue_evts.iter().enumerate() {
        epoll
            .ctl(
                ControlOperation::Add,
                evt.as_raw_fd(),
                EpollEvent::new(EventSet::IN, i as u64),
            )
            .map_err(ActivateError::EventFd)?;
    }
    epoll
        .ctl(
            ControlOperation::Add,
            poke_clone.as_raw_fd(),
            EpollEvent::new(EventSet::IN, COMMAND_TOKEN),
        )
        .map_err(ActivateError::EventFd)?;
    let Activation {
        mem,
        queues,
        queue_evts,
        interrupt,
        needs_reset,
        ..
    } = activation;
    let mut ctx = WorkerContext {
        mem,
        queues,
        interrupt,
        epoll,
    };
    let label = name.to_string();
    let thread = crate::threads::spawn(format!("virtio-{name}"), kind, move || {
        let control = Control {
            poke: poke_clone,
            commands: command_rx,
            paused: paused_tx,
        };
        if let Err(e) = run(&mut worker, &mut ctx, &queue_evts, &control) {
            fault(&label, &e, &needs_reset, &ctx.interrupt);
        }
    })
    .map_err(ActivateError::Thread)?;
    Ok(WorkerHandle {
        poke,
        commands,
        paused,
        thread: Some(thread),
    })
}

fn fault(name: &str, e: &DeviceFault, needs_reset: &NeedsReset, interrupt: &Interrupt) {
    eprintln!("paddock-vmm: virtio-{name}: device needs reset: {e}");
    needs_reset.set();
    interrupt.signal_config_change();
}

/// The worker's end of its handle.
struct Control {
    poke: EventFd,
    commands: Receiver<Command>,
    paused: Sender<Vec<virtio_queue::QueueState>>,
}

enum Next {
    Continue,
    Stop,
}

impl Control {
    /// Carries out the commands waiting; a pause holds the thread here
    /// until it is resumed or stopped.
    fn obey(&self, ctx: &WorkerContext) -> Next {
        let _ = self.poke.read();
        loop {
            let command = match self.commands.try_recv() {
                Ok(c) => c,
                Err(std::sync::mpsc::TryRecvError::Empty) => return Next::Continue,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => return Next::Stop,
            };
            match command {
                Command::Stop => return Next::Stop,
                Command::Resume => {}
                Command::Pause => {
                    let states = ctx.queues.iter().map(|q| q.state()).collect();
                    if self.paused.send(states).is_err() {
                        return Next::Stop;
                    }
                    loop {
                        match self.commands.recv() {
                            Ok(Command::Resume) => break,
                            Ok(Command::Pause) => {}
                            Ok(Command::Stop) | Err(_) => return Next::Stop,
                        }
                    }
                }
            }
        }
    }
}

fn run<W: DeviceWorker>(
    worker: &mut W,
    ctx: &mut WorkerContext,
    queue_evts: &[EventFd],
    control: &Control,
) -> Result<(), DeviceFault> {
    worker.start(ctx)?;
    let mut events = vec![EpollEvent::default(); 64];
    loop {
        let n = match ctx.epoll.wait(-1, &mut events) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(DeviceFault(format!("epoll_wait: {e}"))),
        };
        for ev in &events[..n] {
            let token = ev.data();
            if token == COMMAND_TOKEN {
                match control.obey(ctx) {
                    Next::Stop => return Ok(()),
                    Next::Continue => continue,
                }
            }
            if token < DEVICE_TOKEN_BASE {
                let index = token as usize;
                if let Some(evt) = queue_evts.get(index) {
                    // Draining the counter; a spurious wakeup just finds no work.
                    let _ = evt.read();
                }
                worker.queue_notified(index, ctx)?;
            } else {
                worker.fd_ready(token, ev.event_set(), ctx)?;
            }
        }
    }
}

/// pop_descriptor_chain() returns None both for "nothing available" and for
/// a corrupt ring; this tells them apart so a broken driver is faulted
/// instead of silently ignored.
pub fn check_avail_ring(queue: &Queue, mem: &GuestMemory) -> Result<(), DeviceFault> {
    use virtio_queue::QueueT;
    let idx = queue
        .avail_idx(mem, std::sync::atomic::Ordering::Acquire)
        .map_err(|e| DeviceFault(format!("avail ring unreadable: {e}")))?;
    let pending = idx - std::num::Wrapping(queue.next_avail());
    if pending.0 > queue.size() {
        return Err(DeviceFault(format!(
            "avail index {} is {} entries ahead of a {}-entry queue",
            idx.0,
            pending.0,
            queue.size()
        )));
    }
    Ok(())
}

#[cfg(any(test, fuzzing))]
impl WorkerContext {
    /// A context with a private epoll, for driving workers from tests.
    pub fn for_test(mem: GuestMemory, queues: Vec<Queue>, interrupt: Interrupt) -> Self {
        WorkerContext {
            mem,
            queues,
            interrupt,
            epoll: Epoll::new().expect("epoll"),
        }
    }

    /// Fds the worker asked to watch that are ready now (non-blocking).
    pub fn ready(&self) -> Vec<(u64, EventSet)> {
        let mut events = vec![EpollEvent::default(); 64];
        let n = self.epoll.wait(0, &mut events).expect("epoll_wait");
        events[..n]
            .iter()
            .map(|e| (e.data(), e.event_set()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::testing::guest_memory;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    use virtio_queue::QueueT;

    struct Counter(Arc<AtomicUsize>);

    impl DeviceWorker for Counter {
        fn queue_notified(&mut self, _: usize, _: &mut WorkerContext) -> Result<(), DeviceFault> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    fn wait_for(count: &AtomicUsize, n: usize) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while count.load(Ordering::SeqCst) < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        count.load(Ordering::SeqCst) >= n
    }

    #[test]
    fn a_paused_worker_touches_nothing_until_resumed() {
        let count = Arc::new(AtomicUsize::new(0));
        let evt = EventFd::new(libc::EFD_NONBLOCK).expect("eventfd");
        let mut queue = Queue::new(16).expect("queue");
        queue.set_next_avail(5);
        let activation = Activation {
            mem: guest_memory(),
            queues: vec![queue],
            queue_evts: vec![evt.try_clone().expect("dup")],
            interrupt: Interrupt::new(EventFd::new(libc::EFD_NONBLOCK).expect("irq")),
            needs_reset: NeedsReset::default(),
            acked_features: 0,
        };
        let mut h =
            spawn("test", ThreadKind::Rng, activation, Counter(count.clone())).expect("spawn");
        evt.write(1).expect("notify");
        assert!(wait_for(&count, 1));
        let states = h.pause().expect("pause");
        assert_eq!(states.len(), 1);
        assert_eq!(states[0].next_avail, 5, "the queue as the worker had it");
        evt.write(1).expect("notify");
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(count.load(Ordering::SeqCst), 1, "a paused worker ran");
        h.resume();
        assert!(
            wait_for(&count, 2),
            "the notification waited for the resume"
        );
        // A paused worker can still be stopped.
        h.pause().expect("pause again");
        h.stop();
        assert!(h.pause().is_err(), "a stopped worker cannot pause");
    }
}

#[cfg(test)]
mod pause_limit_tests {
    use super::*;
    use crate::virtio::testing::guest_memory;
    use std::time::Duration;
    use virtio_queue::QueueT;

    /// A worker the guest keeps busy (a rate-limited drive working through
    /// a long queue) longer than a pause may wait.
    struct Slow;

    impl DeviceWorker for Slow {
        fn queue_notified(&mut self, _: usize, _: &mut WorkerContext) -> Result<(), DeviceFault> {
            std::thread::sleep(PAUSE_WAIT + Duration::from_secs(1));
            Ok(())
        }
    }

    #[test]
    fn a_worker_held_busy_fails_the_pause_instead_of_hanging_it() {
        let evt = EventFd::new(libc::EFD_NONBLOCK).expect("eventfd");
        let activation = Activation {
            mem: guest_memory(),
            queues: vec![Queue::new(16).expect("queue")],
            queue_evts: vec![evt.try_clone().expect("dup")],
            interrupt: Interrupt::new(EventFd::new(libc::EFD_NONBLOCK).expect("irq")),
            needs_reset: NeedsReset::default(),
            acked_features: 0,
        };
        let mut h = spawn("slow", ThreadKind::Block, activation, Slow).expect("spawn");
        evt.write(1).expect("notify");
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(h.pause(), Err(PauseFailed::Busy));
        // Once it is done, the late pause was let go and a new one works.
        assert!(h.pause().is_ok(), "a pause after the busy spell");
        h.resume();
        h.stop();
    }
}
