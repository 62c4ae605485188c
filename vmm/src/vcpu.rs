//! The vCPU run loop: one thread per vCPU, dispatching I/O exits to the buses.

use crate::devices::Bus;
use crate::exit::{ExitSignal, VmExit};
use kvm_ioctls::{VcpuExit, VcpuFd};
use std::sync::Arc;

pub struct Vcpu {
    pub fd: VcpuFd,
    pub index: u8,
    pub pio: Arc<Bus>,
    pub mmio: Arc<Bus>,
    pub exit: Arc<ExitSignal>,
}

impl Vcpu {
    /// Runs until the guest or KVM ends this vCPU, then reports why.
    pub fn run(mut self) {
        let outcome = loop {
            match self.fd.run() {
                Ok(VcpuExit::IoIn(port, data)) => {
                    self.pio.read(u64::from(port), data);
                }
                Ok(VcpuExit::IoOut(port, data)) => {
                    self.pio.write(u64::from(port), data);
                }
                Ok(VcpuExit::MmioRead(addr, data)) => {
                    self.mmio.read(addr, data);
                }
                Ok(VcpuExit::MmioWrite(addr, data)) => {
                    self.mmio.write(addr, data);
                }
                // With the in-kernel irqchip a halted vCPU waits inside KVM;
                // an exit here just means "run again".
                Ok(VcpuExit::Hlt) => {}
                Ok(VcpuExit::Shutdown) => break VmExit::TripleFault,
                Ok(VcpuExit::FailEntry(reason, cpu)) => {
                    break VmExit::VcpuError(format!(
                        "vCPU {}: KVM could not enter the guest (hardware reason {reason:#x}, cpu {cpu})",
                        self.index
                    ))
                }
                Ok(VcpuExit::InternalError) => {
                    break VmExit::VcpuError(format!(
                        "vCPU {}: KVM internal error (often an instruction KVM cannot emulate)",
                        self.index
                    ))
                }
                Ok(other) => {
                    break VmExit::VcpuError(format!(
                        "vCPU {}: unexpected exit {other:?}",
                        self.index
                    ))
                }
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {}
                Err(e) => break VmExit::VcpuError(format!("vCPU {}: KVM_RUN: {e}", self.index)),
            }
        };
        self.exit.report(outcome);
    }
}
