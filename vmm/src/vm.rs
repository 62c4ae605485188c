//! Builds a VM from a validated configuration and runs it to its end.

use crate::arch::boot::{load_boot_image, BootError};
use crate::arch::cpuid::{filter_cpuid, HostCaps};
use crate::arch::layout::*;
use crate::arch::mptable::{setup_mptable, MpTableError};
use crate::arch::regs::{self, RegsError};
use crate::config::{Console, VmConfig, NET_RATE_ID};
use crate::devices::boot_timer::BootTimer;
use crate::devices::bus::BusError;
use crate::devices::console::PanicNote;
use crate::devices::detached::Detached;
use crate::devices::legacy::{spawn_stdin_feeder, SerialConsole, I8042};
use crate::devices::{lock, Bus, BusDevice};
use crate::exit::{ExitSignal, VmExit};
use crate::memory::{create_guest_memory, GuestMemory, MemoryError};
use crate::pause::PauseGate;
use crate::seccomp::{Filters, SeccompError, ThreadKind};
use crate::snapshot::state::SerialState;
use crate::threads;
use crate::vcpu::Vcpu;
use crate::virtio::block::{Block, Disk};
use crate::virtio::mmio::{MmioTransport, TransportError, REG_QUEUE_NOTIFY};
use crate::virtio::net::Net;
use crate::virtio::rng::Rng;

fn set_nonblocking(f: &std::fs::File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: fcntl on a descriptor we own, with integer arguments only.
    let flags = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
use crate::virtio::vsock::Vsock;
use crate::virtio::{Interrupt, VirtioDevice};
use kvm_bindings::{
    kvm_pit_config, kvm_userspace_memory_region, KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY,
};
use kvm_ioctls::{Cap, IoEventAddress, Kvm, VmFd};
use linux_loader::cmdline::Cmdline;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use vm_memory::{Address, GuestMemoryBackend, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;

/// Arguments the VMM always puts first on the kernel command line: the
/// console it provides, how Linux should reboot (the i8042 reset we catch),
/// an immediate reboot on panic so a panicked guest doesn't linger, no
/// probing for buses the VM doesn't have, and a quiet kernel: each console
/// byte is a VM exit, and a boot's informational log (~14 KB) was about
/// half of its time under nested emulation (BENCHMARKS.md). Warnings,
/// errors and panics still print, with a timestamp.
const BASE_CMDLINE: &str =
    "console=ttyS0 reboot=k panic=-1 pci=off nomodule 8250.nr_uarts=1 quiet printk.time=1";
/// Where KVM puts its three-page TSS on Intel: just below the 4 GiB BIOS area.
const KVM_TSS_ADDRESS: usize = 0xfffb_d000;

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("opening /dev/kvm: {0}")]
    OpenKvm(kvm_ioctls::Error),
    #[error("KVM lacks a capability Paddock needs: {0:?}")]
    MissingCap(Cap),
    #[error("{what}: {source}")]
    Kvm {
        what: &'static str,
        source: kvm_ioctls::Error,
    },
    #[error(transparent)]
    Memory(#[from] MemoryError),
    #[error(transparent)]
    Boot(#[from] BootError),
    #[error(transparent)]
    MpTable(#[from] MpTableError),
    #[error("vCPU {index}: {source}")]
    Regs { index: u8, source: RegsError },
    #[error("registering a device: {0}")]
    Bus(#[from] BusError),
    #[error("virtio transport: {0}")]
    Transport(#[from] TransportError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    #[error("kernel command line: {0}")]
    Cmdline(linux_loader::cmdline::Error),
    #[error("restoring the snapshot: {0}")]
    Restore(#[from] crate::restore::RestoreError),
    #[error("restoring vCPU {index}: {source}")]
    RestoreVcpu {
        index: u8,
        source: crate::snapshot::kvm::KvmStateError,
    },
    #[error("restoring the VM's interrupt controllers and clocks: {0}")]
    RestoreVm(crate::snapshot::kvm::KvmStateError),
}

fn kvm_err(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmError {
    move |source| VmError::Kvm { what, source }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> VmError {
    let what = what.into();
    move |source| VmError::Io { what, source }
}

/// The highest vCPU count this host's KVM allows.
pub fn kvm_max_vcpus() -> Result<usize, VmError> {
    let kvm = Kvm::new().map_err(VmError::OpenKvm)?;
    Ok(kvm.get_max_vcpus())
}

struct Devices {
    pio: Bus,
    mmio: Bus,
    serial: Arc<Mutex<SerialConsole>>,
    cmdline_devices: Vec<String>,
    vsock_path: Option<PathBuf>,
    /// Each drive's and the NIC's rate limit, changeable through the
    /// control socket.
    rates: crate::control::Devices,
    /// Every virtio transport in bus order, for pause and snapshot.
    transports: Vec<Arc<Mutex<MmioTransport>>>,
}

fn register_memory(vm: &VmFd, mem: &GuestMemory) -> Result<(), VmError> {
    for (slot, region) in mem.iter().enumerate() {
        let host_addr = region
            .get_host_address(vm_memory::MemoryRegionAddress(0))
            .map_err(|e| VmError::Io {
                what: "guest memory region has no host mapping".into(),
                source: std::io::Error::other(e.to_string()),
            })?;
        let r = kvm_userspace_memory_region {
            slot: slot as u32,
            flags: 0,
            guest_phys_addr: region.start_addr().raw_value(),
            memory_size: region.len(),
            userspace_addr: host_addr as u64,
        };
        // SAFETY: the region is a live mapping owned by `mem`, which the VM
        // holds until the process exits, and regions never overlap.
        unsafe { vm.set_user_memory_region(r) }.map_err(kvm_err("KVM_SET_USER_MEMORY_REGION"))?;
    }
    Ok(())
}

/// The console's sink, written by a thread of its own so that a slow file or
/// pipe never holds up the vCPU that is printing.
fn console_writer(console: &Console) -> Result<Box<dyn std::io::Write + Send>, VmError> {
    let sink: Box<dyn std::io::Write + Send> = match console {
        Console::Stdout => Box::new(std::io::stdout()),
        Console::Off => return Ok(Box::new(std::io::sink())),
        Console::File(p) => Box::new(
            std::fs::File::create(p)
                .map_err(io_err(format!("console: creating {}", p.display())))?,
        ),
    };
    Ok(Box::new(
        Detached::spawn(sink).map_err(io_err("starting the console output thread"))?,
    ))
}

fn add_virtio(
    vm: &VmFd,
    mem: &GuestMemory,
    devices: &mut Devices,
    device: Box<dyn VirtioDevice>,
) -> Result<(), VmError> {
    let index = devices.cmdline_devices.len();
    let addr = virtio_mmio_addr(index);
    let irq = virtio_irq(index);
    let irqfd = EventFd::new(libc::EFD_NONBLOCK).map_err(io_err("creating an irqfd"))?;
    vm.register_irqfd(&irqfd, irq)
        .map_err(kvm_err("KVM_IRQFD"))?;
    let transport = MmioTransport::new(device, mem.clone(), Interrupt::new(irqfd))?;
    for (q, evt) in transport.queue_evts().iter().enumerate() {
        vm.register_ioevent(
            evt,
            &IoEventAddress::Mmio(addr + REG_QUEUE_NOTIFY),
            q as u32,
        )
        .map_err(kvm_err("KVM_IOEVENTFD"))?;
    }
    let transport = Arc::new(Mutex::new(transport));
    devices.transports.push(transport.clone());
    let on_bus: Arc<Mutex<dyn BusDevice>> = transport;
    devices.mmio.insert(on_bus, addr, VIRTIO_MMIO_SIZE)?;
    devices
        .cmdline_devices
        .push(format!("virtio_mmio.device=4K@{addr:#x}:{irq}"));
    Ok(())
}

fn create_devices(
    vm: &VmFd,
    mem: &GuestMemory,
    cfg: &VmConfig,
    exit: &Arc<ExitSignal>,
    panic: &PanicNote,
    start: Instant,
    serial_state: Option<&SerialState>,
) -> Result<Devices, VmError> {
    let serial_irq = EventFd::new(libc::EFD_NONBLOCK).map_err(io_err("creating an irqfd"))?;
    vm.register_irqfd(&serial_irq, SERIAL_IRQ)
        .map_err(kvm_err("KVM_IRQFD"))?;
    let out = console_writer(&cfg.console)?;
    let serial = match serial_state {
        None => SerialConsole::new(serial_irq, out, panic.clone()),
        Some(state) => SerialConsole::with_state(serial_irq, out, panic.clone(), state)
            .map_err(crate::restore::RestoreError::Serial)?,
    };
    let serial = Arc::new(Mutex::new(serial));
    let mut devices = Devices {
        pio: Bus::default(),
        mmio: Bus::default(),
        serial: serial.clone(),
        cmdline_devices: Vec::new(),
        vsock_path: None,
        rates: Default::default(),
        transports: Vec::new(),
    };
    devices.pio.insert(
        serial,
        u64::from(SERIAL_PORT_BASE),
        u64::from(SERIAL_PORT_LEN),
    )?;
    devices.pio.insert(
        Arc::new(Mutex::new(I8042::new(exit.clone()))),
        u64::from(I8042_PORT_BASE),
        u64::from(I8042_PORT_LEN),
    )?;
    devices.mmio.insert(
        Arc::new(Mutex::new(BootTimer::new(start))),
        BOOT_TIMER_ADDR,
        0x1000,
    )?;

    for d in &cfg.drives {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(!d.read_only)
            .open(&d.path)
            .map_err(io_err(format!(
                "drive {}: opening {}",
                d.id,
                d.path.display()
            )))?;
        let cell = Arc::new(crate::control::RateCell::default());
        devices.rates.insert(d.id.clone(), cell.clone());
        let disk = Disk::new(file, d.read_only, &d.id)
            .map_err(io_err(format!("drive {}: reading its size", d.id)))?
            .with_rate(d.rate)
            .with_control(cell);
        add_virtio(vm, mem, &mut devices, Box::new(Block::new(disk)))?;
    }
    if let Some(v) = &cfg.vsock {
        let listener = bind_listening(&v.uds_path)
            .map_err(io_err(format!("vsock: binding {}", v.uds_path.display())))?;
        devices.vsock_path = Some(v.uds_path.clone());
        add_virtio(
            vm,
            mem,
            &mut devices,
            Box::new(Vsock::new(v.cid, v.uds_path.clone(), listener)),
        )?;
    }
    if let Some(n) = &cfg.net {
        let mac = crate::config::parse_mac(&n.mac).ok_or_else(|| VmError::Io {
            what: format!("net: MAC {:?}", n.mac),
            source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
        })?;
        // SAFETY: validate() checked that the descriptor is open and a
        // character device; our parent passed it to us for this device
        // alone, and nothing else in this process owns it.
        let tap = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(n.tap_fd) };
        set_nonblocking(&tap).map_err(io_err("net: making the tap non-blocking"))?;
        let cell = Arc::new(crate::control::RateCell::default());
        devices.rates.insert(NET_RATE_ID.to_string(), cell.clone());
        let net = Net::new(tap, mac)
            .map_err(io_err("net: creating its rate timer"))?
            .with_rate(n.rate)
            .with_control(cell);
        add_virtio(vm, mem, &mut devices, Box::new(net))?;
    }
    if cfg.rng {
        add_virtio(vm, mem, &mut devices, Box::<Rng>::default())?;
    }
    Ok(devices)
}

/// A listening socket at `path` that appears there only once it listens:
/// bound under a temporary name, then renamed. (The file of a plain bind
/// exists a moment before listen(), and a host that connects as soon as it
/// sees it is refused; a restored VM is dialled at once.)
fn bind_listening(path: &std::path::Path) -> std::io::Result<UnixListener> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".binding");
    let tmp = PathBuf::from(tmp);
    // As a plain bind would: another VM's socket is not taken over.
    if std::fs::symlink_metadata(path).is_ok() {
        return Err(std::io::ErrorKind::AddrInUse.into());
    }
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp)?;
    std::fs::rename(&tmp, path)?;
    Ok(listener)
}

fn build_cmdline(cfg: &VmConfig, devices: &Devices) -> Result<Cmdline, VmError> {
    let mut cmdline = Cmdline::new(CMDLINE_MAX_SIZE).map_err(VmError::Cmdline)?;
    cmdline.insert_str(BASE_CMDLINE).map_err(VmError::Cmdline)?;
    for d in &devices.cmdline_devices {
        cmdline.insert_str(d).map_err(VmError::Cmdline)?;
    }
    if !cfg.cmdline.trim().is_empty() {
        cmdline
            .insert_str(cfg.cmdline.trim())
            .map_err(VmError::Cmdline)?;
    }
    Ok(cmdline)
}

fn check_caps(kvm: &Kvm) -> Result<(), VmError> {
    for cap in [
        Cap::Irqchip,
        Cap::Ioeventfd,
        Cap::Irqfd,
        Cap::UserMemory,
        Cap::Pit2,
    ] {
        if !kvm.check_extension(cap) {
            return Err(VmError::MissingCap(cap));
        }
    }
    Ok(())
}

/// Where a VM's first instruction comes from.
enum Origin<'a> {
    Kernel(crate::arch::boot::BootEntry),
    Snapshot(&'a crate::restore::Loaded),
}

/// Boots the VM described by `cfg` (already validated), or restores it
/// from its snapshot, and waits for its end.
pub fn run(cfg: &VmConfig, start: Instant) -> Result<VmExit, VmError> {
    let trace = crate::trace::Trace::from_env(start);
    trace.mark("main entered");
    if cfg.seccomp {
        // Before any thread exists, so that each starts under its filter.
        crate::seccomp::install_report_handler()
            .map_err(io_err("installing the seccomp report handler"))?;
        threads::enable(Filters::compile()?).map_err(io_err("starting the thread spawner"))?;
    }
    let kvm = Kvm::new().map_err(VmError::OpenKvm)?;
    check_caps(&kvm)?;
    let vm = kvm.create_vm().map_err(kvm_err("KVM_CREATE_VM"))?;
    vm.set_tss_address(KVM_TSS_ADDRESS)
        .map_err(kvm_err("KVM_SET_TSS_ADDR"))?;
    vm.create_irq_chip()
        .map_err(kvm_err("KVM_CREATE_IRQCHIP"))?;
    let pit = kvm_pit_config {
        flags: KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    };
    vm.create_pit2(pit).map_err(kvm_err("KVM_CREATE_PIT2"))?;

    let xsave_size = kvm.check_extension_int(Cap::Xsave2);
    let restored = match &cfg.restore {
        Some(dir) => Some(crate::restore::load(dir, cfg, xsave_size)?),
        None => None,
    };
    let mem = match &restored {
        Some(r) => r.mem.clone(),
        None => create_guest_memory(cfg.memory_mib)?,
    };
    register_memory(&vm, &mem)?;
    trace.mark("VM and guest memory created");

    let exit = Arc::new(ExitSignal::default());
    let panic = PanicNote::default();
    let serial_state = restored.as_ref().map(|r| &r.snapshot.serial);
    let mut devices = create_devices(&vm, &mem, cfg, &exit, &panic, start, serial_state)?;
    trace.mark("devices created");
    let origin = match &restored {
        Some(r) => Origin::Snapshot(r),
        None => {
            let cmdline = build_cmdline(cfg, &devices)?;
            let entry = load_boot_image(&mem, &cfg.kernel, cfg.initramfs.as_deref(), &cmdline)?;
            setup_mptable(&mem, cfg.vcpus)?;
            trace.mark("kernel and initramfs loaded");
            Origin::Kernel(entry)
        }
    };

    let base_cpuid = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(kvm_err("KVM_GET_SUPPORTED_CPUID"))?;
    let caps = HostCaps {
        tsc_deadline: kvm.check_extension(Cap::TscDeadlineTimer),
    };
    let msr_list = Arc::new(
        kvm.get_msr_index_list()
            .map_err(kvm_err("KVM_GET_MSR_INDEX_LIST"))?
            .as_slice()
            .to_vec(),
    );
    let gate = Arc::new(PauseGate::new(usize::from(cfg.vcpus)));
    crate::pause::install_kick_handler().map_err(io_err("installing the vCPU kick handler"))?;
    let pio = Arc::new(std::mem::take(&mut devices.pio));
    let mmio = Arc::new(std::mem::take(&mut devices.mmio));
    let mut vcpus = Vec::with_capacity(usize::from(cfg.vcpus));
    for index in 0..cfg.vcpus {
        let fd = vm
            .create_vcpu(u64::from(index))
            .map_err(kvm_err("KVM_CREATE_VCPU"))?;
        let mut cpuid = base_cpuid.clone();
        filter_cpuid(&mut cpuid, index, cfg.vcpus, caps);
        match &origin {
            Origin::Snapshot(r) => {
                let restore_err = |source| VmError::RestoreVcpu { index, source };
                let saved = &r.snapshot.vcpus[usize::from(index)];
                crate::snapshot::kvm::check_cpuid(usize::from(index), saved, &cpuid)
                    .map_err(restore_err)?;
                crate::snapshot::kvm::restore_vcpu(&fd, saved).map_err(restore_err)?;
                cpuid = kvm_bindings::CpuId::from_entries(&saved.cpuid)
                    .map_err(|e| restore_err(crate::snapshot::kvm::KvmStateError::Fam(e)))?;
            }
            Origin::Kernel(entry) => {
                fd.set_cpuid2(&cpuid).map_err(kvm_err("KVM_SET_CPUID2"))?;
                let regs_err = |source| VmError::Regs { index, source };
                regs::setup_msrs(&fd).map_err(regs_err)?;
                regs::setup_fpu(&fd).map_err(regs_err)?;
                regs::setup_lint(&fd).map_err(regs_err)?;
                if index == 0 {
                    regs::setup_regs(&fd, entry.mode, entry.entry).map_err(regs_err)?;
                    regs::setup_sregs(&mem, &fd, entry.mode).map_err(regs_err)?;
                }
            }
        }
        vcpus.push(Vcpu {
            fd,
            index,
            pio: pio.clone(),
            mmio: mmio.clone(),
            exit: exit.clone(),
            gate: gate.clone(),
            msr_list: msr_list.clone(),
            cpuid,
        });
    }
    if let Origin::Snapshot(r) = &origin {
        crate::snapshot::kvm::restore_vm(&vm, &r.snapshot.vm).map_err(VmError::RestoreVm)?;
        trace.mark("vCPUs and VM state restored");
        // Last: a restored device may raise an interrupt as it starts (the
        // vsock's transport reset), and setting the irqchips' and LAPICs'
        // state would wipe one raised before.
        crate::restore::restore_devices(&devices.transports, &r.snapshot.devices)?;
        trace.mark("devices restored");
    }
    let vm = Arc::new(vm);
    if cfg.console == Console::Stdout {
        spawn_stdin_feeder(devices.serial.clone())
            .map_err(io_err("starting the console input thread"))?;
    }
    trace.mark("vCPUs configured; starting them");
    for vcpu in vcpus {
        let name = format!("vcpu{}", vcpu.index);
        threads::spawn(name.clone(), ThreadKind::Vcpu, move || vcpu.run())
            .map_err(io_err(format!("starting {name}")))?;
    }
    if let Some(path) = &cfg.control {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)
            .map_err(io_err(format!("control: binding {}", path.display())))?;
        let rates = std::mem::take(&mut devices.rates);
        let machine = crate::snapshot::Machine {
            vm: vm.clone(),
            gate: gate.clone(),
            transports: devices.transports.clone(),
            serial: devices.serial.clone(),
            mem: mem.clone(),
            memory_mib: cfg.memory_mib,
            xsave_fits: xsave_size <= crate::restore::XSAVE_LEGACY_SIZE,
        };
        threads::spawn("control".into(), ThreadKind::Control, move || {
            crate::control::serve(listener, rates, Some(machine))
        })
        .map_err(io_err("starting the control thread"))?;
    }
    // From here on the main thread only waits for the end and cleans up.
    threads::confine_current(ThreadKind::Main)?;

    let outcome = exit.wait();
    // The other threads are still running the guest; they end with the
    // process. What must not be lost is the console's last partial line.
    lock(&devices.serial).flush();
    for p in devices.vsock_path.iter().chain(cfg.control.iter()) {
        let _ = std::fs::remove_file(p);
    }
    let panic_reason = lock(&panic).clone();
    Ok(match (outcome, panic_reason) {
        (VmExit::GuestReset | VmExit::TripleFault, Some(reason)) => VmExit::GuestPanic(reason),
        (outcome, _) => outcome,
    })
}
