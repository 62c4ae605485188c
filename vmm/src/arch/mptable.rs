//! Intel MultiProcessor Specification 1.4 table: how a guest without ACPI
//! learns its CPUs, its IO-APIC and how ISA IRQs are routed to it.

use super::layout::{
    APIC_DEFAULT_PHYS_BASE, IOAPIC_PINS, IO_APIC_DEFAULT_PHYS_BASE, MPTABLE_START,
};
use crate::memory::GuestMemory;
use vm_memory::{Bytes, GuestAddress};

#[derive(Debug, thiserror::Error)]
pub enum MpTableError {
    #[error("MP table: {0} vCPUs do not fit (at most 254 APIC IDs)")]
    TooManyCpus(u8),
    #[error("MP table: writing to guest memory at {addr:#x}: {source}")]
    GuestMemory {
        addr: u64,
        source: vm_memory::GuestMemoryError,
    },
}

const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
const CPU_ENABLED: u8 = 1;
const CPU_BOOTPROCESSOR: u8 = 2;
const MP_IRQ_INT: u8 = 0;
const MP_IRQ_NMI: u8 = 1;
const MP_IRQ_EXTINT: u8 = 3;
/// CPU signature and feature flags copied into processor entries: family 6,
/// FPU and APIC present. Linux reads the real values from CPUID.
const CPU_SIGNATURE: u32 = (6 << 8) | (1 << 4);
const CPU_FEATURES: u32 = 0x201;

fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |acc, b| acc.wrapping_add(*b))
        .wrapping_neg()
}

/// The whole MP table (floating pointer followed by the configuration table),
/// as it must appear at `base`.
pub fn build(base: u64, num_cpus: u8) -> Result<Vec<u8>, MpTableError> {
    if num_cpus == 0 || num_cpus > 254 {
        return Err(MpTableError::TooManyCpus(num_cpus));
    }
    let ioapic_id = num_cpus;
    let mut entries = Vec::new();
    let mut count: u16 = 0;

    for cpu in 0..num_cpus {
        let flags = CPU_ENABLED | if cpu == 0 { CPU_BOOTPROCESSOR } else { 0 };
        entries.extend_from_slice(&[0, cpu, APIC_VERSION, flags]);
        entries.extend_from_slice(&CPU_SIGNATURE.to_le_bytes());
        entries.extend_from_slice(&CPU_FEATURES.to_le_bytes());
        entries.extend_from_slice(&[0; 8]);
        count += 1;
    }
    // Bus 0: ISA.
    entries.extend_from_slice(&[1, 0]);
    entries.extend_from_slice(b"ISA   ");
    count += 1;
    // The IO-APIC.
    entries.extend_from_slice(&[2, ioapic_id, IOAPIC_VERSION, 1]);
    entries.extend_from_slice(&IO_APIC_DEFAULT_PHYS_BASE.to_le_bytes());
    count += 1;
    // ISA IRQ n -> IO-APIC pin n, bus-default polarity and trigger.
    for irq in 0..IOAPIC_PINS as u8 {
        entries.extend_from_slice(&[3, MP_IRQ_INT, 0, 0, 0, irq, ioapic_id, irq]);
        count += 1;
    }
    // LINT0: ExtINT, LINT1: NMI, to every local APIC.
    entries.extend_from_slice(&[4, MP_IRQ_EXTINT, 0, 0, 0, 0, 0xff, 0]);
    entries.extend_from_slice(&[4, MP_IRQ_NMI, 0, 0, 0, 0, 0xff, 1]);
    count += 2;

    let config_addr = base + 16;
    let mut header = Vec::with_capacity(44);
    header.extend_from_slice(b"PCMP");
    header.extend_from_slice(&((44 + entries.len()) as u16).to_le_bytes());
    header.push(4); // spec revision 1.4
    header.push(0); // checksum, filled below
    header.extend_from_slice(b"PADDOCK ");
    header.extend_from_slice(b"PADDOCK-VMM ");
    header.extend_from_slice(&0u32.to_le_bytes()); // OEM table pointer
    header.extend_from_slice(&0u16.to_le_bytes()); // OEM table size
    header.extend_from_slice(&count.to_le_bytes());
    header.extend_from_slice(&APIC_DEFAULT_PHYS_BASE.to_le_bytes());
    header.extend_from_slice(&[0; 4]); // extended table length/checksum
    let mut config = header;
    config.extend_from_slice(&entries);
    config[7] = checksum(&config);

    let mut floating = Vec::with_capacity(16);
    floating.extend_from_slice(b"_MP_");
    floating.extend_from_slice(&(config_addr as u32).to_le_bytes());
    floating.push(1); // length in 16-byte units
    floating.push(4); // spec revision 1.4
    floating.push(0); // checksum
    floating.extend_from_slice(&[0; 5]); // feature bytes: table present, no default config
    floating[10] = checksum(&floating);

    let mut table = floating;
    table.extend_from_slice(&config);
    Ok(table)
}

pub fn setup_mptable(mem: &GuestMemory, num_cpus: u8) -> Result<(), MpTableError> {
    let table = build(MPTABLE_START, num_cpus)?;
    mem.write_slice(&table, GuestAddress(MPTABLE_START))
        .map_err(|source| MpTableError::GuestMemory {
            addr: MPTABLE_START,
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(bytes: &[u8]) -> u8 {
        bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b))
    }

    #[test]
    fn checksums_are_zero_and_counts_match() {
        let t = build(MPTABLE_START, 4).expect("table");
        assert_eq!(&t[0..4], b"_MP_");
        assert_eq!(sum(&t[0..16]), 0);
        assert_eq!(&t[16..20], b"PCMP");
        let len = u16::from_le_bytes([t[20], t[21]]) as usize;
        assert_eq!(len, t.len() - 16);
        assert_eq!(sum(&t[16..]), 0);
        let count = u16::from_le_bytes([t[16 + 34], t[16 + 35]]);
        assert_eq!(count, 4 + 1 + 1 + 24 + 2);
    }

    #[test]
    fn rejects_zero_and_too_many_cpus() {
        assert!(build(MPTABLE_START, 0).is_err());
        assert!(build(MPTABLE_START, 255).is_err());
        let t = build(MPTABLE_START, 254).expect("254 cpus");
        assert!(MPTABLE_START + t.len() as u64 <= crate::arch::layout::HIMEM_START);
    }
}
