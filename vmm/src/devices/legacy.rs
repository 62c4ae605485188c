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

    /// The UART as a snapshot left it (registers, unread input).
    pub fn with_state(
        irq: EventFd,
        out: Box<dyn std::io::Write + Send>,
        panic: PanicNote,
        state: &crate::snapshot::state::SerialState,
    ) -> Result<Self, String> {
        Serial::from_state(
            &state.into(),
            IrqTrigger(irq),
            NoEvents,
            ConsoleWriter::new(out, panic),
        )
        .map(SerialConsole)
        .map_err(|e| format!("{e:?}"))
    }

    pub fn state(&self) -> crate::snapshot::state::SerialState {
        self.0.state().into()
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

#[cfg(test)]
mod uart_8250_tests {
    // They drive `SerialConsole` only through `BusDevice` (port offsets from
    // 0x3f8) and watch the irqfd the way KVM does: every write to it is one
    // rising edge on IRQ 4 (irqfd_inject raises and lowers the line), and the
    // MP table declares IRQ 4 an ISA (edge-triggered) interrupt.
    use super::*;

    const RBR_THR: u64 = 0;
    const IER: u64 = 1;
    const IIR: u64 = 2;
    const LCR: u64 = 3;
    const MCR: u64 = 4;
    const LSR: u64 = 5;
    const MSR: u64 = 6;
    const IER_RDI: u8 = 0x01;
    const IER_THRI: u8 = 0x02;
    const IER_RLSI: u8 = 0x04;
    const IIR_NO_INT: u8 = 0x01;
    const LSR_THRE: u8 = 0x20;
    const LSR_TEMT: u8 = 0x40;

    /// The UART plus the guest's view of its interrupt line.
    struct Port {
        uart: SerialConsole,
        irq: EventFd,
    }

    impl Port {
        fn new() -> Self {
            let irq = EventFd::new(libc::EFD_NONBLOCK).expect("eventfd");
            let uart = SerialConsole::new(
                irq.try_clone().expect("clone"),
                Box::new(std::io::sink()),
                PanicNote::default(),
            );
            Port { uart, irq }
        }
        fn inb(&mut self, off: u64) -> u8 {
            let mut b = [0u8];
            self.uart.read(off, &mut b);
            b[0]
        }
        fn outb(&mut self, off: u64, v: u8) {
            self.uart.write(off, &[v]);
        }
        /// Edges raised on IRQ 4 since the last call.
        fn edges(&mut self) -> u64 {
            self.irq.read().unwrap_or(0)
        }
    }

    /// serial8250_do_startup (Linux 6.12, drivers/tty/serial/8250/8250_port.c
    /// 2245-2418), register by register, as run when init first opens the
    /// console. A UART that fails the THRE test gets UART_BUG_THRE and a backup
    /// timer (8250_core.c:270); one that fails the TX test gets UART_BUG_TXEN.
    #[test]
    fn linux_8250_startup_finds_a_working_thre_interrupt() {
        let mut p = Port::new();
        // What console setup left: 8N1, DLAB clear, IER 0 (8250_port.c:2830).
        p.outb(LCR, 0x03);
        p.outb(IER, 0);
        // 2250-2253: clear the interrupt registers.
        p.inb(LSR);
        p.inb(RBR_THR);
        p.inb(IIR);
        p.inb(MSR);
        assert_ne!(p.inb(LSR), 0xff, "LSR safety check (2260)");
        p.edges();
        // 2308: request_irq. 2330-2338: the THRE re-assertion test.
        assert_eq!(
            p.inb(LSR) & LSR_THRE,
            LSR_THRE,
            "wait_for_xmitr(THRE) would spin 10 ms"
        );
        p.outb(IER, IER_THRI);
        let iir1 = p.inb(IIR);
        p.outb(IER, 0);
        p.outb(IER, IER_THRI);
        let iir = p.inb(IIR);
        p.outb(IER, 0);
        assert!(
            !((iir1 & IIR_NO_INT) == 0 && (iir & IIR_NO_INT) != 0),
            "UART_BUG_THRE: iir1={iir1:#x} iir={iir:#x}; the guest would poll with the backup timer"
        );
        // A 16550 asserts THRE each time THRI is enabled with THR empty ...
        assert_eq!(iir1 & 0x0f, 0x02, "iir1={iir1:#x}");
        assert_eq!(iir & 0x0f, 0x02, "iir={iir:#x}");
        // ... and on an edge-triggered line each assertion is an edge.
        assert_eq!(p.edges(), 2, "each THRI enable must raise IRQ 4");
        // 2362-2373: 8N1, OUT2|RTS|DTR.
        p.outb(LCR, 0x03);
        p.outb(MCR, 0x0b);
        // 2393-2405: the TX-enable test.
        p.outb(IER, IER_THRI);
        let lsr = p.inb(LSR);
        let iir = p.inb(IIR);
        p.outb(IER, 0);
        assert!(
            !((lsr & LSR_TEMT) != 0 && (iir & IIR_NO_INT) != 0),
            "UART_BUG_TXEN: lsr={lsr:#x} iir={iir:#x}"
        );
        // 2415-2418, then rx interrupts on (set_termios writes up->ier).
        p.inb(LSR);
        p.inb(RBR_THR);
        p.inb(IIR);
        p.inb(MSR);
        p.outb(IER, IER_RLSI | IER_RDI);
        assert_eq!(p.inb(IIR) & IIR_NO_INT, IIR_NO_INT, "nothing left pending");
    }

    /// The guest side of interrupt-driven transmit (tty writes to ttyS0):
    /// __start_tx/serial8250_set_THRI, serial8250_interrupt's loop over
    /// serial8250_default_handle_irq (IIR read outside the port lock, then
    /// serial8250_handle_irq -> serial8250_tx_chars, 16 bytes a pass, __stop_tx
    /// when the buffer empties), and serial8250_console_write (IER saved,
    /// cleared, bytes polled out, IER restored) interleaved at every point the
    /// port lock allows on SMP. IRQ 4 is an edge interrupt into a local APIC:
    /// edges coalesce into one pending bit, and an edge during the handler runs
    /// it again after EOI. The property: the guest is never left with bytes to
    /// send, THRI enabled, and no interrupt coming; that is the state in which
    /// Linux would wait for a timer (there is none without UART_BUG_THRE).
    #[test]
    fn interrupt_driven_transmit_never_loses_the_thre_edge() {
        for seed in 0..2000u64 {
            let mut rng = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let mut next = move || {
                rng = rng
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (rng >> 33) as u32
            };
            let mut p = Port::new();
            p.outb(LCR, 0x03);
            let mut shadow_ier = IER_RLSI | IER_RDI; // up->ier after startup
            p.outb(IER, shadow_ier);
            p.edges();

            let mut xmit: usize = 0; // bytes in the tty's xmit fifo
            let mut to_write: usize = 3000; // bytes userspace still has to write
            let mut apic_pending = false; // IRR bit for IRQ 4's vector
                                          // Handler state: None = not running; Some(false) = about to read IIR;
                                          // Some(true) = read IIR (got an interrupt), waiting for the port lock.
            let mut handler: Option<bool> = None;
            let mut invocations = 0u32;
            let mut unhandled = 0u32;
            let mut first_read = false;
            let mut passes = 0u32;
            let mut steps = 0u32;

            loop {
                steps += 1;
                assert!(steps < 1_000_000, "seed {seed}: no progress");
                if p.edges() > 0 {
                    apic_pending = true;
                }
                let quiet = handler.is_none() && !apic_pending;
                if quiet && to_write == 0 {
                    break;
                }
                if quiet && xmit > 0 && shadow_ier & IER_THRI != 0 {
                    panic!("seed {seed}: {xmit} bytes queued, THRI on, no interrupt coming");
                }
                match next() % 4 {
                    // Userspace writes; uart_write -> __start_tx under the port lock.
                    0 if to_write > 0 => {
                        let n = (1 + next() as usize % 700).min(to_write);
                        to_write -= n;
                        xmit += n;
                        if shadow_ier & IER_THRI == 0 {
                            shadow_ier |= IER_THRI;
                            p.outb(IER, shadow_ier);
                        }
                    }
                    // printk on another CPU: serial8250_console_write under the port lock.
                    1 => {
                        let ier = p.inb(IER);
                        p.outb(IER, 0);
                        for _ in 0..(1 + next() % 40) {
                            assert_ne!(p.inb(LSR) & LSR_THRE, 0);
                            p.outb(RBR_THR, b'k');
                        }
                        assert_eq!(p.inb(LSR) & (LSR_THRE | LSR_TEMT), LSR_THRE | LSR_TEMT);
                        p.outb(IER, ier);
                    }
                    // The interrupt side.
                    _ => match handler {
                        None if apic_pending => {
                            apic_pending = false;
                            handler = Some(false);
                            invocations += 1;
                            first_read = true;
                            passes = 0;
                        }
                        None => {
                            // Nothing to run; let a writer go.
                        }
                        Some(false) => {
                            // serial8250_default_handle_irq: IIR read, no lock held.
                            let iir = p.inb(IIR);
                            let was_first = std::mem::replace(&mut first_read, false);
                            if iir & IIR_NO_INT == 0 {
                                handler = Some(true);
                            } else {
                                if was_first {
                                    unhandled += 1;
                                }
                                // serial8250_interrupt: one idle pass over the one port ends it.
                                handler = None;
                            }
                        }
                        Some(true) => {
                            // serial8250_handle_irq under the port lock.
                            let lsr = p.inb(LSR);
                            if lsr & LSR_THRE != 0 && shadow_ier & IER_THRI != 0 {
                                if xmit == 0 {
                                    shadow_ier &= !IER_THRI;
                                    p.outb(IER, shadow_ier);
                                } else {
                                    let n = xmit.min(16);
                                    for _ in 0..n {
                                        p.outb(RBR_THR, b'x');
                                    }
                                    xmit -= n;
                                    if xmit == 0 {
                                        shadow_ier &= !IER_THRI;
                                        p.outb(IER, shadow_ier);
                                    }
                                }
                            }
                            passes += 1;
                            // serial8250_interrupt gives up after PASS_LIMIT (512) passes.
                            handler = if passes > 512 { None } else { Some(false) };
                        }
                    },
                }
            }
            assert_eq!(xmit, 0, "seed {seed}");
            // note_interrupt() disables an IRQ only when > 99,900 of 100,000
            // invocations return IRQ_NONE; stay far from that.
            assert!(
                unhandled * 10 < invocations * 9,
                "seed {seed}: {unhandled}/{invocations} spurious"
            );
        }
    }
}
