//! Reading and writing KVM's own state: each vCPU's, and the VM's
//! interrupt controllers, timer and clock.

use super::state::{VcpuState, VmState};
use kvm_bindings::{
    kvm_irqchip, kvm_msr_entry, CpuId, Msrs, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER,
    KVM_IRQCHIP_PIC_SLAVE,
};
use kvm_ioctls::{VcpuFd, VmFd};

/// IA32_TSC_DEADLINE: armed against the TSC, so it must be written after
/// the TSC itself or the timer fires at the wrong time (or never).
const MSR_TSC_DEADLINE: u32 = 0x6e0;
/// KVM reads MSRs in batches of at most this many.
const MSR_BATCH: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum KvmStateError {
    #[error("{what}: {source}")]
    Kvm {
        what: &'static str,
        source: kvm_ioctls::Error,
    },
    #[error("building a list for KVM: {0}")]
    Fam(vmm_sys_util::fam::Error),
    #[error("KVM refused MSR {0:#x} from the snapshot")]
    Msr(u32),
    #[error(
        "this host's CPU differs from the one the snapshot was taken on (CPUID leaf {leaf:#x}.{index} of vCPU {vcpu}); the guest chose its code paths by it"
    )]
    Cpuid { vcpu: usize, leaf: u32, index: u32 },
}

fn kvm(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> KvmStateError {
    move |source| KvmStateError::Kvm { what, source }
}

/// Reads the MSRs in `index_list` that this vCPU has; an MSR KVM lists but
/// cannot read for this guest is left out rather than failing the save.
fn read_msrs(fd: &VcpuFd, index_list: &[u32]) -> Result<Vec<kvm_msr_entry>, KvmStateError> {
    let mut out = Vec::with_capacity(index_list.len());
    let mut rest = index_list;
    while !rest.is_empty() {
        let batch = &rest[..rest.len().min(MSR_BATCH)];
        let entries: Vec<kvm_msr_entry> = batch
            .iter()
            .map(|&index| kvm_msr_entry {
                index,
                ..Default::default()
            })
            .collect();
        let mut msrs = Msrs::from_entries(&entries).map_err(KvmStateError::Fam)?;
        let read = fd.get_msrs(&mut msrs).map_err(kvm("KVM_GET_MSRS"))?;
        out.extend_from_slice(&msrs.as_slice()[..read.min(batch.len())]);
        // KVM stops at the first MSR it cannot read: skip that one.
        let advance = if read < batch.len() {
            read + 1
        } else {
            batch.len()
        };
        rest = &rest[advance..];
    }
    // TSC first, the deadline last (see MSR_TSC_DEADLINE).
    out.sort_by_key(|m| m.index == MSR_TSC_DEADLINE);
    Ok(out)
}

/// Everything KVM holds for one vCPU. Called on the vCPU's own thread,
/// while it is out of KVM_RUN. `cpuid` is what the VMM set: KVM's own
/// view (KVM_GET_CPUID2) has runtime bits folded in and, on some hosts,
/// leaves rewritten, which would make the snapshot look foreign to the
/// host it was taken on.
pub fn save_vcpu(
    fd: &VcpuFd,
    msr_index_list: &[u32],
    cpuid: &CpuId,
) -> Result<VcpuState, KvmStateError> {
    Ok(VcpuState {
        cpuid: cpuid.as_slice().to_vec(),
        regs: fd.get_regs().map_err(kvm("KVM_GET_REGS"))?,
        sregs: fd.get_sregs().map_err(kvm("KVM_GET_SREGS"))?,
        xsave: fd.get_xsave().map_err(kvm("KVM_GET_XSAVE"))?,
        xcrs: fd.get_xcrs().map_err(kvm("KVM_GET_XCRS"))?,
        debugregs: fd.get_debug_regs().map_err(kvm("KVM_GET_DEBUGREGS"))?,
        lapic: fd.get_lapic().map_err(kvm("KVM_GET_LAPIC"))?,
        mp_state: fd.get_mp_state().map_err(kvm("KVM_GET_MP_STATE"))?,
        events: fd.get_vcpu_events().map_err(kvm("KVM_GET_VCPU_EVENTS"))?,
        msrs: read_msrs(fd, msr_index_list)?,
    })
}

/// A CPUID entry with the bits KVM rewrites while the guest runs masked
/// out: they follow the guest's CR4, XCR0 and APIC base, not the host.
fn stable(e: &kvm_bindings::kvm_cpuid_entry2) -> (u32, u32, u32, u32, u32, u32, u32) {
    const OSXSAVE: u32 = 1 << 27; // leaf 1, ECX
    const APIC: u32 = 1 << 9; // leaf 1, EDX
    const OSPKE: u32 = 1 << 4; // leaf 7, ECX
    let (mut ebx, mut ecx, mut edx) = (e.ebx, e.ecx, e.edx);
    match (e.function, e.index) {
        (1, _) => {
            ecx &= !OSXSAVE;
            edx &= !APIC;
        }
        (7, 0) => ecx &= !OSPKE,
        // The XSAVE area's size for the features XCR0 enables now.
        (0xd, 0 | 1) => ebx = 0,
        _ => {}
    }
    (e.function, e.index, e.flags, e.eax, ebx, ecx, edx)
}

/// Refuses a snapshot whose CPUID differs from what this host gives the
/// same vCPU (apart from the bits that follow the guest's own state).
pub fn check_cpuid(vcpu: usize, saved: &VcpuState, fresh: &CpuId) -> Result<(), KvmStateError> {
    let mut a: Vec<_> = saved.cpuid.iter().map(stable).collect();
    let mut b: Vec<_> = fresh.as_slice().iter().map(stable).collect();
    a.sort_unstable();
    b.sort_unstable();
    if let Some((x, y)) = a.iter().zip(&b).find(|(x, y)| x != y) {
        let first = x.min(y);
        return Err(KvmStateError::Cpuid {
            vcpu,
            leaf: first.0,
            index: first.1,
        });
    }
    if a.len() != b.len() {
        let extra = if a.len() > b.len() {
            a[b.len()]
        } else {
            b[a.len()]
        };
        return Err(KvmStateError::Cpuid {
            vcpu,
            leaf: extra.0,
            index: extra.1,
        });
    }
    Ok(())
}

/// Puts a saved vCPU back, in the order KVM needs: the CPUID the state was
/// made under, then registers, then the LAPIC, then MSRs (TSC before its
/// deadline), then pending events last, since setting the others can
/// clear them.
pub fn restore_vcpu(fd: &VcpuFd, s: &VcpuState) -> Result<(), KvmStateError> {
    let cpuid = CpuId::from_entries(&s.cpuid).map_err(KvmStateError::Fam)?;
    fd.set_cpuid2(&cpuid).map_err(kvm("KVM_SET_CPUID2"))?;
    fd.set_mp_state(s.mp_state)
        .map_err(kvm("KVM_SET_MP_STATE"))?;
    fd.set_sregs(&s.sregs).map_err(kvm("KVM_SET_SREGS"))?;
    fd.set_regs(&s.regs).map_err(kvm("KVM_SET_REGS"))?;
    // SAFETY: `kvm_xsave` is the legacy 4 KiB area, which is what this
    // VMM saved (get_xsave); vm.rs refuses hosts whose XSAVE state is
    // larger (KVM_CAP_XSAVE2), where the 4 KiB buffer would be short.
    unsafe { fd.set_xsave(&s.xsave) }.map_err(kvm("KVM_SET_XSAVE"))?;
    fd.set_xcrs(&s.xcrs).map_err(kvm("KVM_SET_XCRS"))?;
    fd.set_debug_regs(&s.debugregs)
        .map_err(kvm("KVM_SET_DEBUGREGS"))?;
    fd.set_lapic(&s.lapic).map_err(kvm("KVM_SET_LAPIC"))?;
    for chunk in s.msrs.chunks(MSR_BATCH) {
        let msrs = Msrs::from_entries(chunk).map_err(KvmStateError::Fam)?;
        let set = fd.set_msrs(&msrs).map_err(kvm("KVM_SET_MSRS"))?;
        if set < chunk.len() {
            return Err(KvmStateError::Msr(chunk[set].index));
        }
    }
    fd.set_vcpu_events(&s.events)
        .map_err(kvm("KVM_SET_VCPU_EVENTS"))?;
    Ok(())
}

fn irqchip(vm: &VmFd, chip_id: u32) -> Result<kvm_irqchip, KvmStateError> {
    let mut chip = kvm_irqchip {
        chip_id,
        ..Default::default()
    };
    vm.get_irqchip(&mut chip).map_err(kvm("KVM_GET_IRQCHIP"))?;
    Ok(chip)
}

/// The VM-wide state: both PICs, the IOAPIC, the PIT and kvmclock.
pub fn save_vm(vm: &VmFd) -> Result<VmState, KvmStateError> {
    Ok(VmState {
        pic_master: irqchip(vm, KVM_IRQCHIP_PIC_MASTER)?,
        pic_slave: irqchip(vm, KVM_IRQCHIP_PIC_SLAVE)?,
        ioapic: irqchip(vm, KVM_IRQCHIP_IOAPIC)?,
        pit: vm.get_pit2().map_err(kvm("KVM_GET_PIT2"))?,
        clock: vm.get_clock().map_err(kvm("KVM_GET_CLOCK"))?,
    })
}

/// Puts the VM-wide state back. The chips' ids come from the snapshot but
/// are forced to the one each field stands for, so a forged file cannot
/// write one chip's state into another.
pub fn restore_vm(vm: &VmFd, s: &VmState) -> Result<(), KvmStateError> {
    for (chip, id) in [
        (&s.pic_master, KVM_IRQCHIP_PIC_MASTER),
        (&s.pic_slave, KVM_IRQCHIP_PIC_SLAVE),
        (&s.ioapic, KVM_IRQCHIP_IOAPIC),
    ] {
        let mut chip = *chip;
        chip.chip_id = id;
        vm.set_irqchip(&chip).map_err(kvm("KVM_SET_IRQCHIP"))?;
    }
    vm.set_pit2(&s.pit).map_err(kvm("KVM_SET_PIT2"))?;
    // Only the clock's value: its flags describe the host it was read on.
    let mut clock = s.clock;
    clock.flags = 0;
    vm.set_clock(&clock).map_err(kvm("KVM_SET_CLOCK"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::kvm_cpuid_entry2;

    fn leaf(function: u32, index: u32, ecx: u32, edx: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            ecx,
            edx,
            ..Default::default()
        }
    }

    fn saved(cpuid: Vec<kvm_cpuid_entry2>) -> VcpuState {
        VcpuState::zeroed(cpuid)
    }

    #[test]
    fn cpuid_bits_that_follow_the_guest_do_not_block_a_restore() {
        let fresh = CpuId::from_entries(&[leaf(0, 0, 0, 0), leaf(1, 0, 0x1, 0x10)]).expect("cpuid");
        // The guest turned on OSXSAVE and its APIC: KVM shows both.
        let s = saved(vec![
            leaf(1, 0, 0x1 | 1 << 27, 0x10 | 1 << 9),
            leaf(0, 0, 0, 0),
        ]);
        assert!(check_cpuid(0, &s, &fresh).is_ok());
    }

    #[test]
    fn a_host_with_other_features_is_refused() {
        let fresh = CpuId::from_entries(&[leaf(0, 0, 0, 0), leaf(1, 0, 0x1, 0x10)]).expect("cpuid");
        let s = saved(vec![leaf(0, 0, 0, 0), leaf(1, 0, 0x3, 0x10)]);
        assert!(matches!(
            check_cpuid(0, &s, &fresh),
            Err(KvmStateError::Cpuid { leaf: 1, .. })
        ));
        let s = saved(vec![leaf(0, 0, 0, 0)]);
        assert!(matches!(
            check_cpuid(2, &s, &fresh),
            Err(KvmStateError::Cpuid {
                vcpu: 2,
                leaf: 1,
                ..
            })
        ));
    }
}
