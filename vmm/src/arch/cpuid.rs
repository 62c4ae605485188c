//! CPUID the guest sees: what KVM supports, with per-vCPU identity and
//! topology filled in and the hypervisor bit set.

use kvm_bindings::CpuId;

const LEAF_FEATURES: u32 = 0x1;
const LEAF_EXT_TOPOLOGY: u32 = 0xb;
const LEAF_XSAVE: u32 = 0xd;
/// Legacy FXSAVE area plus the XSAVE header.
const XSAVE_LEGACY_SIZE: u32 = 512 + 64;
const ECX_AVX: u32 = 1 << 28;
const XFEATURE_YMM: u32 = 1 << 2;
const ECX_HYPERVISOR: u32 = 1 << 31;
const ECX_TSC_DEADLINE: u32 = 1 << 24;
const EDX_HTT: u32 = 1 << 28;
/// Leaf 0xb level types.
const LEVEL_TYPE_SMT: u32 = 1;
const LEVEL_TYPE_CORE: u32 = 2;

/// Bits needed to number `count` items (at least 1 item).
fn bits_for(count: u32) -> u32 {
    u32::BITS - count.saturating_sub(1).leading_zeros()
}

/// Leaf 0xD subleaf 0 ECX is the XSAVE area size for every feature in EAX;
/// KVM reports the host's figure, which may count components EAX leaves
/// out, and Linux then distrusts XSAVE ("XSAVE consistency problem") and
/// falls back to FXSAVE. Recompute it from the components offered.
fn fix_xsave_size(cpuid: &mut CpuId) {
    // AVX state is only usable when CPUID.1 says AVX exists; a model that
    // offers the state but not the instructions makes Linux's size check fail.
    let avx = cpuid
        .as_slice()
        .iter()
        .any(|e| e.function == LEAF_FEATURES && e.ecx & ECX_AVX != 0);
    if !avx {
        for e in cpuid.as_mut_slice() {
            if e.function == LEAF_XSAVE && e.index == 0 {
                e.eax &= !XFEATURE_YMM;
            }
        }
    }
    let entries = cpuid.as_slice();
    let Some(features) = entries
        .iter()
        .find(|e| e.function == LEAF_XSAVE && e.index == 0)
        .map(|e| u64::from(e.eax) | (u64::from(e.edx) << 32))
    else {
        return;
    };
    let size = entries
        .iter()
        .filter(|e| e.function == LEAF_XSAVE && (2..64).contains(&e.index))
        .filter(|e| features & (1 << e.index) != 0)
        // Subleaf i: EAX = component size, EBX = its offset in the area.
        .map(|e| e.ebx.saturating_add(e.eax))
        .fold(XSAVE_LEGACY_SIZE, u32::max);
    for e in cpuid.as_mut_slice() {
        if e.function == LEAF_XSAVE && e.index == 0 {
            e.ecx = size;
        }
    }
}

/// What the host's KVM can do beyond its supported-CPUID list.
#[derive(Clone, Copy, Debug, Default)]
pub struct HostCaps {
    /// KVM emulates the LAPIC TSC-deadline timer (KVM_CAP_TSC_DEADLINE_TIMER).
    /// Advertising it spares the guest calibrating the LAPIC timer, which
    /// is slow and, nested, unreliable.
    pub tsc_deadline: bool,
}

/// Adjusts `cpuid` (the KVM supported set) for vCPU `cpu_index` of `cpu_count`.
/// Each vCPU is one core of a single socket, without SMT.
pub fn filter_cpuid(cpuid: &mut CpuId, cpu_index: u8, cpu_count: u8, caps: HostCaps) {
    fix_xsave_size(cpuid);
    let apic_id = u32::from(cpu_index);
    let count = u32::from(cpu_count);
    for entry in cpuid.as_mut_slice().iter_mut() {
        match entry.function {
            LEAF_FEATURES => {
                entry.ebx = (entry.ebx & 0x0000_ffff) | (apic_id << 24) | (count << 16);
                entry.ecx |= ECX_HYPERVISOR;
                if caps.tsc_deadline {
                    entry.ecx |= ECX_TSC_DEADLINE;
                }
                if count > 1 {
                    entry.edx |= EDX_HTT;
                } else {
                    entry.edx &= !EDX_HTT;
                }
            }
            LEAF_EXT_TOPOLOGY => {
                entry.edx = apic_id;
                match entry.index {
                    0 => {
                        entry.eax = 0;
                        entry.ebx = 1;
                        entry.ecx = (LEVEL_TYPE_SMT << 8) | entry.index;
                    }
                    1 => {
                        entry.eax = bits_for(count);
                        entry.ebx = count;
                        entry.ecx = (LEVEL_TYPE_CORE << 8) | entry.index;
                    }
                    _ => {
                        entry.eax = 0;
                        entry.ebx = 0;
                        entry.ecx = entry.index;
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::kvm_cpuid_entry2;

    fn entry(function: u32, index: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            ..Default::default()
        }
    }

    #[test]
    fn bits_for_counts() {
        assert_eq!(bits_for(1), 0);
        assert_eq!(bits_for(2), 1);
        assert_eq!(bits_for(3), 2);
        assert_eq!(bits_for(4), 2);
        assert_eq!(bits_for(5), 3);
    }

    #[test]
    fn xsave_size_counts_only_offered_components() {
        let mut leaf0 = entry(0xd, 0);
        leaf0.eax = 0b111; // x87, SSE, AVX
        leaf0.ecx = 832; // host figure, counting a component not offered
        let mut avx = entry(0xd, 2);
        avx.eax = 256;
        avx.ebx = 576;
        let mut other = entry(0xd, 9);
        other.eax = 8;
        other.ebx = 2688;
        let mut leaf1 = entry(1, 0);
        leaf1.ecx = ECX_AVX;
        let mut cpuid = CpuId::from_entries(&[leaf0, avx, other, leaf1]).expect("cpuid");
        filter_cpuid(&mut cpuid, 0, 1, HostCaps::default());
        assert_eq!(cpuid.as_slice()[0].ecx, 832);
        // Without AVX in leaf 1 the YMM state goes too.
        let mut no_avx = CpuId::from_entries(&[leaf0, avx, other]).expect("cpuid");
        filter_cpuid(&mut no_avx, 0, 1, HostCaps::default());
        assert_eq!(no_avx.as_slice()[0].eax, 0b11);
        assert_eq!(no_avx.as_slice()[0].ecx, 576);
        let mut cpuid2 = cpuid.clone();
        cpuid2.as_mut_slice()[0].eax = 0b11;
        filter_cpuid(&mut cpuid2, 0, 1, HostCaps::default());
        assert_eq!(cpuid2.as_slice()[0].ecx, 576);
    }

    #[test]
    fn sets_apic_id_and_hypervisor_bit() {
        let mut cpuid =
            CpuId::from_entries(&[entry(1, 0), entry(0xb, 0), entry(0xb, 1)]).expect("cpuid");
        filter_cpuid(&mut cpuid, 3, 4, HostCaps { tsc_deadline: true });
        let e = cpuid.as_slice();
        assert_eq!(e[0].ebx >> 24, 3);
        assert_eq!((e[0].ebx >> 16) & 0xff, 4);
        assert_ne!(e[0].ecx & ECX_HYPERVISOR, 0);
        assert_ne!(e[0].ecx & ECX_TSC_DEADLINE, 0);
        assert_eq!(e[1].edx, 3);
        assert_eq!(e[2].ebx, 4);
        assert_eq!(e[2].eax, 2);
    }
}
