//! Legacy and platform devices: serial console, i8042 reset line, boot timer.

pub mod boot_timer;
pub mod bus;
pub mod console;
pub mod detached;
pub mod legacy;

pub use bus::{lock, Bus, BusDevice};
