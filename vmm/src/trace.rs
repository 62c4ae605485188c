//! Phase timings on stderr when PADDOCK_VMM_TRACE=1: where the time before
//! the guest's first instruction goes.

use std::time::Instant;

pub struct Trace {
    start: Instant,
    enabled: bool,
}

impl Trace {
    pub fn from_env(start: Instant) -> Trace {
        Trace {
            start,
            enabled: std::env::var_os("PADDOCK_VMM_TRACE").is_some_and(|v| v == "1"),
        }
    }

    pub fn mark(&self, what: &str) {
        if self.enabled {
            let us = self.start.elapsed().as_micros();
            eprintln!(
                "paddock-vmm: trace: {:>6}.{:03} ms {what}",
                us / 1000,
                us % 1000
            );
        }
    }
}
