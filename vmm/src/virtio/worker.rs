//! One thread per activated device: waits on its queue notifications (and
//! any sockets it owns) and runs the device's handlers.

use super::{ActivateError, Activation, Interrupt, NeedsReset};
use crate::memory::GuestMemory;
use crate::seccomp::ThreadKind;
use std::os::fd::{AsRawFd, RawFd};
use std::thread::JoinHandle;
use virtio_queue::Queue;
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

/// Tokens below this are queue indexes; a device's own fds use tokens from here.
pub const DEVICE_TOKEN_BASE: u64 = 1 << 32;
const STOP_TOKEN: u64 = u64::MAX;

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

/// A running worker thread and the means to stop it.
pub struct WorkerHandle {
    stop: EventFd,
    thread: Option<JoinHandle<()>>,
}

impl WorkerHandle {
    pub fn stop(&mut self) {
        let _ = self.stop.write(1);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
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
    let stop = EventFd::new(libc::EFD_NONBLOCK).map_err(ActivateError::EventFd)?;
    let stop_clone = stop.try_clone().map_err(ActivateError::EventFd)?;
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
            stop_clone.as_raw_fd(),
            EpollEvent::new(EventSet::IN, STOP_TOKEN),
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
        let _stop = stop_clone;
        if let Err(e) = run(&mut worker, &mut ctx, &queue_evts) {
            fault(&label, &e, &needs_reset, &ctx.interrupt);
        }
    })
    .map_err(ActivateError::Thread)?;
    Ok(WorkerHandle {
        stop,
        thread: Some(thread),
    })
}

fn fault(name: &str, e: &DeviceFault, needs_reset: &NeedsReset, interrupt: &Interrupt) {
    eprintln!("paddock-vmm: virtio-{name}: device needs reset: {e}");
    needs_reset.set();
    interrupt.signal_config_change();
}

fn run<W: DeviceWorker>(
    worker: &mut W,
    ctx: &mut WorkerContext,
    queue_evts: &[EventFd],
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
            if token == STOP_TOKEN {
                return Ok(());
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
