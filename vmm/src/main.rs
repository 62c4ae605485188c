use paddock_vmm::cli::{self, Command, USAGE};
use paddock_vmm::config::{host_memory_mib, MAX_VCPUS};
use paddock_vmm::exit::VmExit;
use paddock_vmm::vm;
use std::time::Instant;

const EXIT_VMM_ERROR: i32 = 1;
const EXIT_CONFIG: i32 = 2;

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        src = inner.source();
    }
    s
}

fn main() {
    let start = Instant::now();
    let cfg = match cli::parse(std::env::args_os()) {
        Ok(Command::Run(cfg)) => cfg,
        Ok(Command::Help) => {
            println!("{USAGE}");
            return;
        }
        Err(e) => {
            eprintln!("paddock-vmm: invalid configuration: {e}");
            std::process::exit(EXIT_CONFIG);
        }
    };
    let host_mib = host_memory_mib().unwrap_or(u64::MAX);
    // Configuration errors are reported even where KVM is missing; only
    // the vCPU limit needs it, and a missing KVM fails right after.
    let kvm = vm::kvm_max_vcpus();
    let max_vcpus = kvm.as_ref().map_or(MAX_VCPUS, |n| *n);
    let errors = cfg.validate(host_mib, max_vcpus);
    if !errors.is_empty() {
        for e in &errors {
            eprintln!("paddock-vmm: invalid configuration: {e}");
        }
        std::process::exit(EXIT_CONFIG);
    }
    if let Err(e) = kvm {
        eprintln!("paddock-vmm: {}", error_chain(&e));
        std::process::exit(EXIT_VMM_ERROR);
    }
    let outcome = match vm::run(&cfg, start) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("paddock-vmm: {}", error_chain(&e));
            std::process::exit(EXIT_VMM_ERROR);
        }
    };
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    match &outcome {
        VmExit::GuestReset => eprintln!("paddock-vmm: guest rebooted after {ms:.1} ms"),
        VmExit::GuestPanic(reason) => eprintln!("paddock-vmm: guest kernel panic: {reason}"),
        VmExit::TripleFault => eprintln!("paddock-vmm: guest triple fault (unexpected shutdown)"),
        VmExit::VcpuError(e) => eprintln!("paddock-vmm: {e}"),
    }
    std::process::exit(outcome.exit_code());
}
