//! What PID 1 does when it cannot go on: say why, sync the disks, and
//! reboot after a delay (or halt, when the operator asked for that). It
//! never returns and never lets the process exit, which would panic the
//! kernel with no message of ours.

use crate::error;
use nix::sys::reboot::{reboot, RebootMode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static HALT_ON_FATAL: AtomicBool = AtomicBool::new(false);
const REBOOT_DELAY: Duration = Duration::from_secs(10);

pub fn set_halt_on_fatal(halt: bool) {
    HALT_ON_FATAL.store(halt, Ordering::SeqCst);
}

fn end() -> ! {
    nix::unistd::sync();
    if HALT_ON_FATAL.load(Ordering::SeqCst) {
        error!("halted (paddock.on_fatal=halt); power-cycle the machine to retry");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    error!("rebooting in {} s", REBOOT_DELAY.as_secs());
    std::thread::sleep(REBOOT_DELAY);
    crate::log::flush(Duration::from_secs(2));
    nix::unistd::sync();
    let _ = reboot(RebootMode::RB_AUTOBOOT);
    // reboot(2) only returns on error; there is nothing left but to wait.
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

pub fn die(why: &str) -> ! {
    error!("FATAL: {why}");
    end()
}

/// A panic anywhere in PID 1 goes through the same path as a fatal error
/// (release builds abort after the hook, so the hook must not return).
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        error!("FATAL: internal error: {info}");
        end()
    }));
}
