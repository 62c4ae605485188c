//! The PC legacy devices a Linux guest needs: a 16550 UART for the console
//! and the i8042 controller, whose reset command is how Linux reboots.

use super::bus::BusDevice;
use super::console::{ConsoleWriter, PanicNote};
use crate::exit::{ExitSignal, VmExit};
use std::sync::Arc;
use vm_superio::serial::NoEvents;
use vm_superio::{I8042Device, Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

/// Raises an interrupt line by writing to its KVM irqfd.
pub struct IrqTrigger(pub EventFd);

impl Trigger for IrqTrigger {
    type E = std::io::Error;
    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

pub struct SerialConsole(Serial<IrqTrigger, NoEvents, ConsoleWriter>);

impl SerialConsole {
    pub fn new(irq: EventFd, out: Box<dyn std::io::Write + Send>, panic: PanicNote) -> Self {
        SerialConsole(Serial::new(IrqTrigger(irq), ConsoleWriter::new(out, panic)))
    }
}

impl SerialConsole {
    /// Queues console input for the guest; returns how many bytes fit.
    pub fn feed(&mut self, input: &[u8]) -> usize {
        let n = input.len().min(self.0.fifo_capacity());
        if n == 0 {
            return 0;
        }
        match self.0.enqueue_raw_bytes(&input[..n]) {
            Ok(n) => n,
            Err(e) => {
                eprintln!("paddock-vmm: serial input: {e:?}");
                n
            }
        }
    }

    /// At the end of the VM: what the guest wrote goes out before exit.
    pub fn flush(&mut self) {
        self.0.writer_mut().finish();
    }
}

impl BusDevice for SerialConsole {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if data.len() == 1 {
            data[0] = self.0.read(offset as u8);
        } else {
            data.fill(0xff);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if data.len() == 1 {
            if let Err(e) = self.0.write(offset as u8, data[0]) {
                eprintln!("paddock-vmm: serial: {e:?}");
            }
        }
    }
}

/// Copies our stdin into the guest's serial port until stdin ends, so the
/// console can be used interactively. Waits while the UART's FIFO is full.
pub fn spawn_stdin_feeder(serial: Arc<std::sync::Mutex<SerialConsole>>) -> std::io::Result<()> {
    crate::threads::spawn(
        "console-in".into(),
        crate::seccomp::ThreadKind::ConsoleIn,
        move || {
            use std::io::Read;
            let mut stdin = std::io::stdin().lock();
            let mut buf = [0u8; 256];
            loop {
                let n = match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let mut done = 0;
                while done < n {
                    done += super::lock(&serial).feed(&buf[done..n]);
                    if done < n {
                        std::thread::sleep(std::time::Duration::from_millis(2));
                    }
                }
            }
        },
    )
    .map(|_| ())
}

/// Ends the VM when the guest asks the keyboard controller for a CPU reset.
pub struct ResetTrigger(pub Arc<ExitSignal>);

impl Trigger for ResetTrigger {
    type E = std::convert::Infallible;
    fn trigger(&self) -> Result<(), Self::E> {
        self.0.report(VmExit::GuestReset);
        Ok(())
    }
}

pub struct I8042(I8042Device<ResetTrigger>);

impl I8042 {
    pub fn new(exit: Arc<ExitSignal>) -> Self {
        I8042(I8042Device::new(ResetTrigger(exit)))
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if data.len() == 1 {
            data[0] = self.0.read(offset as u8);
        } else {
            data.fill(0xff);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if data.len() == 1 {
            // The trigger cannot fail; an unknown command is ignored by the device.
            let _ = self.0.write(offset as u8, data[0]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::mpsc;

    /// A console sink that never finishes a write until it is let go.
    struct Stuck(mpsc::Receiver<()>);

    impl Write for Stuck {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.recv();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn guest_writes_to_the_uart_never_wait_for_the_console_sink() {
        let (release, stuck) = mpsc::channel();
        let out = super::super::detached::Detached::spawn(Box::new(Stuck(stuck))).expect("spawn");
        let irq = EventFd::new(0).expect("eventfd");
        let mut uart = SerialConsole::new(irq, Box::new(out), PanicNote::default());
        let (done, finished) = mpsc::channel();
        std::thread::spawn(move || {
            // A boot's worth of printk, a byte per port write as a guest does.
            for i in 0..20_000u32 {
                uart.write(0, &[b'a' + (i % 26) as u8]);
            }
            let _ = done.send(());
        });
        // A liveness check, not a timing: before, each byte waited up to 2 s
        // for the sink (the UART model flushes after every byte), so 20,000
        // bytes took hours against this sink.
        let r = finished.recv_timeout(std::time::Duration::from_secs(60));
        drop(release);
        assert!(
            r.is_ok(),
            "the guest's port writes waited on the console sink"
        );
    }
}
