//! Stopping every vCPU outside KVM_RUN, and starting them again.
//!
//! A vCPU thread spends its life inside KVM_RUN, where nothing of ours
//! runs. To stop it the control thread raises a flag and sends the thread
//! a signal whose handler does nothing: the signal ends KVM_RUN with
//! EINTR, the run loop sees the flag and parks here. The kick is repeated
//! until every vCPU has parked, which closes the window where the flag is
//! raised just after a vCPU looked at it and just before it re-entered the
//! guest.
//!
//! While parked a vCPU answers requests to save its own state: KVM's vCPU
//! ioctls run on the vCPU's own thread, and the state is read only once
//! the thread is out of KVM_RUN for good.

use crate::snapshot::state::VcpuState;
use crate::sync::lock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a pause waits for every vCPU before it gives up: a vCPU that
/// takes this long is stuck in KVM or gone, not busy.
const PARK_WAIT: Duration = Duration::from_secs(10);
const KICK_EVERY: Duration = Duration::from_millis(2);

#[derive(Debug, thiserror::Error)]
pub enum PauseError {
    #[error("vCPU {0} did not stop within {PARK_WAIT:?}")]
    NotParked(usize),
    #[error("the VM is not paused")]
    NotPaused,
    #[error("the VM is already paused")]
    AlreadyPaused,
    #[error("vCPU {index} could not save its state: {message}")]
    Save { index: usize, message: String },
}

/// The signal that kicks a vCPU out of KVM_RUN; its handler does nothing.
pub fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN()
}

/// Installs the do-nothing handler for the kick signal, without
/// SA_RESTART so that KVM_RUN returns EINTR to the run loop.
pub fn install_kick_handler() -> std::io::Result<()> {
    extern "C" fn nothing(_: libc::c_int) {}
    // SAFETY: a zeroed sigaction is valid; the handler is an extern "C"
    // function that touches nothing, so it is async-signal-safe.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = nothing as *const () as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        if libc::sigaction(kick_signal(), &sa, std::ptr::null_mut()) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[derive(Default)]
struct GateState {
    paused: bool,
    parked: Vec<bool>,
    /// Bumped by each save request; a vCPU saves once per generation.
    save_generation: u64,
    saved: Vec<Option<(u64, Result<VcpuState, String>)>>,
    /// Filled in by vCPU threads as they start, for the kick.
    threads: Vec<Option<libc::pthread_t>>,
}

/// Shared by the vCPU threads and whoever pauses them.
pub struct PauseGate {
    wanted: AtomicBool,
    state: Mutex<GateState>,
    cv: Condvar,
}

/// What a parked vCPU does for a save request.
pub trait SaveOwnState {
    fn save_state(&self) -> Result<VcpuState, String>;
}

impl PauseGate {
    pub fn new(vcpus: usize) -> Self {
        PauseGate {
            wanted: AtomicBool::new(false),
            state: Mutex::new(GateState {
                parked: vec![false; vcpus],
                saved: (0..vcpus).map(|_| None).collect(),
                threads: vec![None; vcpus],
                ..Default::default()
            }),
            cv: Condvar::new(),
        }
    }

    /// Called by each vCPU thread first thing, so it can be kicked.
    pub fn register_current(&self, index: usize) {
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() };
        if let Some(slot) = lock(&self.state).threads.get_mut(index) {
            *slot = Some(me);
        }
    }

    /// Called by a vCPU thread whose run loop has ended: it can no longer
    /// be kicked (its thread id may be reused) nor park.
    pub fn unregister(&self, index: usize) {
        if let Some(slot) = lock(&self.state).threads.get_mut(index) {
            *slot = None;
        }
    }

    /// The run loop's check, once per exit: one relaxed load when no
    /// pause is wanted.
    pub fn wanted(&self) -> bool {
        self.wanted.load(Ordering::Acquire)
    }

    /// Parks vCPU `index` until the VM resumes, saving its state on request.
    pub fn park(&self, index: usize, vcpu: &dyn SaveOwnState) {
        let mut s = lock(&self.state);
        let mut saved_generation = s.save_generation;
        if let Some(p) = s.parked.get_mut(index) {
            *p = true;
        }
        self.cv.notify_all();
        while s.paused || self.wanted() {
            if s.save_generation != saved_generation {
                saved_generation = s.save_generation;
                let generation = s.save_generation;
                drop(s);
                let result = vcpu.save_state();
                s = lock(&self.state);
                if let Some(slot) = s.saved.get_mut(index) {
                    *slot = Some((generation, result));
                }
                self.cv.notify_all();
                continue;
            }
            s = self.cv.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        if let Some(p) = s.parked.get_mut(index) {
            *p = false;
        }
    }

    /// Stops every vCPU; returns once all are parked.
    pub fn pause(&self) -> Result<(), PauseError> {
        {
            let mut s = lock(&self.state);
            if s.paused {
                return Err(PauseError::AlreadyPaused);
            }
            s.paused = true;
        }
        self.wanted.store(true, Ordering::Release);
        let deadline = Instant::now() + PARK_WAIT;
        let mut s = lock(&self.state);
        loop {
            let missing = s.parked.iter().position(|p| !p);
            let Some(index) = missing else {
                return Ok(());
            };
            if Instant::now() >= deadline {
                drop(s);
                self.resume();
                return Err(PauseError::NotParked(index));
            }
            for (i, t) in s.threads.iter().enumerate() {
                if let (Some(t), false) = (t, s.parked.get(i).copied().unwrap_or(true)) {
                    // SAFETY: the thread registered itself and vCPU threads
                    // live until the process exits; the signal's handler
                    // does nothing.
                    unsafe { libc::pthread_kill(*t, kick_signal()) };
                }
            }
            s = self
                .cv
                .wait_timeout(s, KICK_EVERY)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Every parked vCPU's state, in vCPU order.
    pub fn save_all(&self) -> Result<Vec<VcpuState>, PauseError> {
        let mut s = lock(&self.state);
        if !s.paused {
            return Err(PauseError::NotPaused);
        }
        s.save_generation += 1;
        let generation = s.save_generation;
        for slot in s.saved.iter_mut() {
            *slot = None;
        }
        self.cv.notify_all();
        let deadline = Instant::now() + PARK_WAIT;
        loop {
            let pending = s
                .saved
                .iter()
                .position(|r| !matches!(r, Some((g, _)) if *g == generation));
            let Some(index) = pending else { break };
            if Instant::now() >= deadline {
                return Err(PauseError::NotParked(index));
            }
            s = self
                .cv
                .wait_timeout(s, KICK_EVERY)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let mut out = Vec::with_capacity(s.saved.len());
        for (index, slot) in s.saved.iter_mut().enumerate() {
            match slot.take() {
                Some((_, Ok(state))) => out.push(state),
                Some((_, Err(message))) => return Err(PauseError::Save { index, message }),
                None => return Err(PauseError::NotParked(index)),
            }
        }
        Ok(out)
    }

    pub fn is_paused(&self) -> bool {
        lock(&self.state).paused
    }

    /// Lets every vCPU run again.
    pub fn resume(&self) {
        let mut s = lock(&self.state);
        s.paused = false;
        self.wanted.store(false, Ordering::Release);
        self.cv.notify_all();
        drop(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    struct Fake(usize);
    impl SaveOwnState for Fake {
        fn save_state(&self) -> Result<VcpuState, String> {
            Err(format!("fake {}", self.0))
        }
    }

    /// Threads that behave like vCPUs: loop until a pause is wanted, park,
    /// go on after resume. Each blocks in a sleep, which the kick ends.
    #[test]
    fn pause_parks_every_vcpu_and_resume_releases_them() {
        install_kick_handler().expect("handler");
        let gate = Arc::new(PauseGate::new(2));
        let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for i in 0..2 {
            let (gate, runs) = (gate.clone(), runs.clone());
            std::thread::spawn(move || {
                gate.register_current(i);
                loop {
                    if gate.wanted() {
                        gate.park(i, &Fake(i));
                    }
                    runs.fetch_add(1, Ordering::SeqCst);
                    // A long blocking call, like KVM_RUN on a halted vCPU.
                    // SAFETY: a plain sleep; the kick interrupts it.
                    unsafe { libc::sleep(3600) };
                }
            });
        }
        std::thread::sleep(Duration::from_millis(50));
        gate.pause().expect("pause");
        assert!(gate.is_paused());
        assert!(matches!(gate.pause(), Err(PauseError::AlreadyPaused)));
        let before = runs.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(runs.load(Ordering::SeqCst), before, "parked vCPUs ran");
        match gate.save_all() {
            Err(PauseError::Save { index: 0, message }) => assert_eq!(message, "fake 0"),
            other => panic!("unexpected {:?}", other.map(|v| v.len())),
        }
        gate.resume();
        let deadline = Instant::now() + Duration::from_secs(5);
        while runs.load(Ordering::SeqCst) < before + 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(runs.load(Ordering::SeqCst) >= before + 2, "vCPUs resumed");
        assert!(matches!(gate.save_all(), Err(PauseError::NotPaused)));
    }
}
