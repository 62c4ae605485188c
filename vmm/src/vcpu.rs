//! The vCPU run loop: one thread per vCPU, dispatching I/O exits to the buses.

use crate::devices::Bus;
use crate::exit::{ExitSignal, VmExit};
use crate::pause::{PauseGate, SaveOwnState};
use crate::snapshot::state::VcpuState;
use kvm_ioctls::{VcpuExit, VcpuFd};
use std::sync::Arc;

pub struct Vcpu {
    pub fd: VcpuFd,
    pub index: u8,
    pub pio: Arc<Bus>,
    pub mmio: Arc<Bus>,
    pub exit: Arc<ExitSignal>,
    pub gate: Arc<PauseGate>,
    /// The MSRs KVM saves and restores (KVM_GET_MSR_INDEX_LIST).
    pub msr_list: Arc<Vec<u32>>,
    /// The CPUID this vCPU was given, recorded in its snapshots.
    pub cpuid: kvm_bindings::CpuId,
}

impl SaveOwnState for Vcpu {
    fn save_state(&self) -> Result<VcpuState, String> {
        crate::snapshot::kvm::save_vcpu(&self.fd, &self.msr_list, &self.cpuid)
            .map_err(|e| e.to_string())
    }
}

/// Serves an I/O exit on its bus; any other exit is handed back.
fn serve_io<'a>(pio: &Bus, mmio: &Bus, exit: VcpuExit<'a>) -> Option<VcpuExit<'a>> {
    match exit {
        VcpuExit::IoIn(port, data) => {
            pio.read(u64::from(port), data);
        }
        VcpuExit::IoOut(port, data) => {
            pio.write(u64::from(port), data);
        }
        VcpuExit::MmioRead(addr, data) => {
            mmio.read(addr, data);
        }
        VcpuExit::MmioWrite(addr, data) => {
            mmio.write(addr, data);
        }
        other => return Some(other),
    }
    None
}

impl Vcpu {
    /// Stops here until the VM is resumed. An I/O exit the loop just
    /// handled is only finished by the next KVM_RUN (the value an IN or
    /// MMIO read returns lands in the guest's register then): that KVM_RUN
    /// is made first, with immediate_exit set so no guest code runs, or the
    /// saved registers would miss it.
    fn park(&mut self) {
        self.fd.set_kvm_immediate_exit(1);
        // Finishing one access can need another exit (a string I/O or a
        // split MMIO access): serve them until KVM says EINTR.
        while let Ok(exit) = self.fd.run() {
            if serve_io(&self.pio, &self.mmio, exit).is_some() {
                break;
            }
        }
        self.fd.set_kvm_immediate_exit(0);
        let gate = self.gate.clone();
        gate.park(usize::from(self.index), &*self);
    }

    /// Runs until the guest or KVM ends this vCPU, then reports why.
    pub fn run(mut self) {
        self.gate.register_current(usize::from(self.index));
        let outcome = loop {
            if self.gate.wanted() {
                self.park();
            }
            let exit = match self.fd.run() {
                Ok(exit) => serve_io(&self.pio, &self.mmio, exit),
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => None,
                Err(e) => break VmExit::VcpuError(format!("vCPU {}: KVM_RUN: {e}", self.index)),
            };
            match exit {
                None => {}
                // With the in-kernel irqchip a halted vCPU waits inside KVM;
                // an exit here just means "run again".
                Some(VcpuExit::Hlt) => {}
                Some(VcpuExit::Shutdown) => break VmExit::TripleFault,
                Some(VcpuExit::FailEntry(reason, cpu)) => {
                    break VmExit::VcpuError(format!(
                        "vCPU {}: KVM could not enter the guest (hardware reason {reason:#x}, cpu {cpu})",
                        self.index
                    ))
                }
                Some(VcpuExit::InternalError) => {
                    break VmExit::VcpuError(format!(
                        "vCPU {}: KVM internal error (often an instruction KVM cannot emulate)",
                        self.index
                    ))
                }
                Some(other) => {
                    break VmExit::VcpuError(format!(
                        "vCPU {}: unexpected exit {other:?}",
                        self.index
                    ))
                }
            }
        };
        self.gate.unregister(usize::from(self.index));
        self.exit.report(outcome);
    }
}
