//! Where things live in guest physical memory. One place, so the E820 map,
//! the MP table, the loaders and the device bus agree.

/// GDT used for the first instructions (64-bit or 32-bit PVH flavour).
pub const BOOT_GDT_START: u64 = 0x500;
/// An empty IDT: the kernel installs its own before enabling interrupts.
pub const BOOT_IDT_START: u64 = 0x520;
/// PVH `hvm_start_info`, followed by its memory map and module list.
pub const PVH_INFO_START: u64 = 0x6000;
/// Linux `boot_params` ("zero page") for the 64-bit boot protocol.
pub const ZERO_PAGE_START: u64 = 0x7000;
/// Initial stack pointer for the 64-bit entry.
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// Identity-map page tables for the 64-bit entry.
pub const PML4_START: u64 = 0x9000;
pub const PDPTE_START: u64 = 0xa000;
pub const PDE_START: u64 = 0xb000;
/// Kernel command line.
pub const CMDLINE_START: u64 = 0x20000;
pub const CMDLINE_MAX_SIZE: usize = 0x10000;
/// The MP table lives in the BIOS area, one of the places Linux scans for it;
/// 64 KiB there holds a table for 254 vCPUs.
pub const MPTABLE_START: u64 = 0xf_0000;
/// End of usable base memory (start of the legacy VGA/BIOS hole).
pub const EBDA_START: u64 = 0x9fc00;
/// Kernels are loaded at 1 MiB.
pub const HIMEM_START: u64 = 0x10_0000;

/// Start of the 32-bit MMIO hole; guest RAM above this moves to 4 GiB.
pub const MMIO_HOLE_START: u64 = 0xc000_0000;
pub const MMIO_HOLE_END: u64 = 0x1_0000_0000;

/// Boot-timer page: the guest's init writes [`BOOT_TIMER_MAGIC`] here.
pub const BOOT_TIMER_ADDR: u64 = 0xd000_0000;
pub const BOOT_TIMER_MAGIC: u8 = 123;
/// Virtio-MMIO devices, one page each, after the boot timer.
pub const VIRTIO_MMIO_START: u64 = 0xd000_1000;
pub const VIRTIO_MMIO_SIZE: u64 = 0x1000;

/// Local APIC and IO-APIC, at their architectural addresses.
pub const APIC_DEFAULT_PHYS_BASE: u32 = 0xfee0_0000;
pub const IO_APIC_DEFAULT_PHYS_BASE: u32 = 0xfec0_0000;
/// IO-APIC pins the in-kernel irqchip provides.
pub const IOAPIC_PINS: u32 = 24;

/// Legacy I/O ports.
pub const SERIAL_PORT_BASE: u16 = 0x3f8;
pub const SERIAL_PORT_LEN: u16 = 8;
pub const SERIAL_IRQ: u32 = 4;
pub const I8042_PORT_BASE: u16 = 0x60;
pub const I8042_PORT_LEN: u16 = 5;

/// First IRQ handed to virtio devices; the rest follow up to the last IO-APIC pin.
pub const VIRTIO_IRQ_BASE: u32 = 5;
/// How many virtio-mmio devices fit in the IRQ space.
pub const MAX_VIRTIO_DEVICES: usize = (IOAPIC_PINS - VIRTIO_IRQ_BASE) as usize;

/// Address of the Nth virtio-mmio device.
pub fn virtio_mmio_addr(index: usize) -> u64 {
    VIRTIO_MMIO_START + index as u64 * VIRTIO_MMIO_SIZE
}

/// IRQ line of the Nth virtio-mmio device.
pub fn virtio_irq(index: usize) -> u32 {
    VIRTIO_IRQ_BASE + index as u32
}
