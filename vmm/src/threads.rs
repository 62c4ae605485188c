//! Starting the VMM's threads under their seccomp filters.
//!
//! Threads known at start-up are started from the main thread and install
//! their own filter first thing. Device workers are set up later, when the
//! guest activates a device, by code running on a vCPU thread. That set-up
//! (eventfds, an epoll, a new thread) runs on one spawner thread instead,
//! which the vCPU asks over a channel and waits for, so that vCPU threads
//! need none of those calls (see seccomp.rs).

use crate::seccomp::{Filters, ThreadKind};
use std::sync::mpsc::{channel, sync_channel, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Set once filtering is on; without them (unit tests, `--no-seccomp`)
/// threads start unfiltered and worker set-up runs on the caller's thread.
static FILTERS: OnceLock<Arc<Filters>> = OnceLock::new();
static SPAWNER: OnceLock<Mutex<Sender<Job>>> = OnceLock::new();

/// Starts `body` on a new thread named `name` that first installs `kind`'s
/// filter, if filtering is on. A thread that cannot install its filter ends
/// the process: it must never run unfiltered.
pub fn spawn(
    name: String,
    kind: ThreadKind,
    body: impl FnOnce() + Send + 'static,
) -> std::io::Result<JoinHandle<()>> {
    let filters = FILTERS.get().cloned();
    std::thread::Builder::new().name(name).spawn(move || {
        if let Some(f) = filters {
            if let Err(e) = f.apply(kind) {
                eprintln!("paddock-vmm: {e}");
                std::process::exit(1);
            }
        }
        body()
    })
}

/// Turns filtering on: threads started from now on install their filters,
/// and the spawner thread starts.
pub fn enable(filters: Filters) -> std::io::Result<()> {
    FILTERS
        .set(Arc::new(filters))
        .map_err(|_| std::io::Error::other("seccomp filters were set up twice"))?;
    let (tx, rx) = channel::<Job>();
    spawn("spawner".into(), ThreadKind::Spawner, move || {
        while let Ok(job) = rx.recv() {
            job();
        }
    })?;
    SPAWNER
        .set(Mutex::new(tx))
        .map_err(|_| std::io::Error::other("the thread spawner was started twice"))
}

/// Runs `f` on the spawner thread and returns what it returned; runs it
/// right here when filtering is off.
pub fn on_spawner<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> std::io::Result<R> {
    let Some(spawner) = SPAWNER.get() else {
        return Ok(f());
    };
    let (reply, answer) = sync_channel(1);
    let job: Job = Box::new(move || {
        let _ = reply.send(f());
    });
    spawner
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send(job)
        .map_err(|_| std::io::Error::other("the thread spawner is gone"))?;
    answer
        .recv()
        .map_err(|_| std::io::Error::other("the thread spawner did not answer"))
}

/// Installs `kind`'s filter on the calling thread, if filtering is on.
pub fn confine_current(kind: ThreadKind) -> Result<(), crate::seccomp::SeccompError> {
    match FILTERS.get() {
        Some(f) => f.apply(kind),
        None => Ok(()),
    }
}
