//! PID 1 reaps every process that ends in the workspace. One thread calls
//! waitpid(-1) for all of them, so nothing else may wait; exec sessions
//! register the pids they care about and get their status from here.

use std::collections::HashMap;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

/// How a process ended, as waitpid reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    Code(i32),
    Signal(i32),
}

/// Senders for the pids someone waits on. A child is registered while the
/// lock is held from before its fork, and the reaper takes the lock before
/// looking a pid up, so no status can arrive unregistered: any pid not
/// here is an orphan and is simply reaped.
#[derive(Default)]
struct State {
    waiting: HashMap<i32, Sender<Ended>>,
}

struct Reaper {
    state: Mutex<State>,
    wake: Condvar,
}

fn reaper() -> &'static Reaper {
    static R: OnceLock<Reaper> = OnceLock::new();
    R.get_or_init(|| Reaper {
        state: Mutex::new(State::default()),
        wake: Condvar::new(),
    })
}

fn lock() -> std::sync::MutexGuard<'static, State> {
    reaper().state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `spawn` (which forks a child and returns its pid) with the reaper
/// held off, and returns a receiver for that child's end.
pub fn spawn_watched<T, E>(
    spawn: impl FnOnce() -> Result<(T, i32), E>,
) -> Result<(T, Receiver<Ended>), E> {
    let mut st = lock();
    let (value, pid) = spawn()?;
    let (tx, rx) = channel();
    st.waiting.insert(pid, tx);
    reaper().wake.notify_all();
    Ok((value, rx))
}

/// Sends `signal` to the process group led by `pid` if that child has not
/// been reaped yet (so `pid` is still its, never a reused one). Says
/// whether it was sent.
pub fn signal_group(pid: i32, signal: i32) -> bool {
    let st = lock();
    if !st.waiting.contains_key(&pid) {
        return false;
    }
    // SAFETY: kill takes plain integers; the group's leader is our
    // unreaped child (the reaper reaps only under this lock).
    unsafe { libc::kill(-pid, signal) == 0 }
}

/// The reaping loop; runs forever in its own thread.
///
/// It first only *looks* for a finished child (waitid with WNOWAIT), then
/// takes the lock and reaps that one pid. A spawn holds the lock from fork
/// until its pid is registered, and std reaps a child whose exec failed
/// inside spawn; looking first keeps the reaper from stealing that child
/// (std treats a missing child there as a bug and panics).
pub fn run() {
    loop {
        // SAFETY: siginfo_t is plain data; waitid fills it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointer to a local siginfo_t.
        let r = unsafe { libc::waitid(libc::P_ALL, 0, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if r < 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::ECHILD) {
                // Nothing to reap until something is spawned. The timeout
                // covers orphans of processes we did not start ourselves.
                let st = lock();
                let _ = reaper().wake.wait_timeout(st, Duration::from_millis(500));
            }
            continue;
        }
        // SAFETY: waitid succeeded for a child state change, so si_pid is set.
        let pid = unsafe { info.si_pid() };
        let mut st = lock();
        let mut status = 0;
        // SAFETY: waitpid on one pid with a valid pointer to a local int.
        let reaped = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if reaped != pid {
            // Reaped by its spawner already (a failed exec).
            continue;
        }
        let ended = if libc::WIFEXITED(status) {
            Ended::Code(libc::WEXITSTATUS(status))
        } else if libc::WIFSIGNALED(status) {
            Ended::Signal(libc::WTERMSIG(status))
        } else {
            continue;
        };
        if let Some(tx) = st.waiting.remove(&pid) {
            let _ = tx.send(ended);
        }
    }
}
