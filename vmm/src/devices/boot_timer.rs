//! A one-register MMIO device: the guest's init writes the magic value to
//! mark "userspace is up", and the VMM logs the time since its own start.

use super::bus::BusDevice;
use crate::arch::layout::BOOT_TIMER_MAGIC;
use std::time::Instant;

pub struct BootTimer {
    start: Instant,
    reported: bool,
}

impl BootTimer {
    pub fn new(start: Instant) -> Self {
        BootTimer {
            start,
            reported: false,
        }
    }
}

impl BusDevice for BootTimer {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        // Only the first magic write counts; later ones would let the guest
        // flood the log.
        if offset == 0 && data.first() == Some(&BOOT_TIMER_MAGIC) && !self.reported {
            self.reported = true;
            let us = self.start.elapsed().as_micros();
            eprintln!(
                "paddock-vmm: boot-timer: guest init reached {}.{:03} ms after VMM start",
                us / 1000,
                us % 1000
            );
        }
    }
}
