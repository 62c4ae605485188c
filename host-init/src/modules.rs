//! Loading the kernel modules the image carries, in the order the image
//! build resolved (dependencies first), then closing module loading for
//! the rest of the boot: nothing that reaches the box later can add code to
//! its kernel.

use crate::{info, warn};
use nix::kmod::{finit_module, ModuleInitFlags};
use std::ffi::CString;
use std::fs::File;

/// Written by the image build: one module path per line, dependencies first.
pub const LOAD_LIST: &str = "/lib/modules/load.list";

#[derive(Debug, Default)]
pub struct LoadReport {
    pub loaded: usize,
    /// Modules for hardware this box lacks (e.g. kvm_intel on AMD).
    pub no_device: Vec<String>,
    pub failed: Vec<String>,
}

pub fn load_all() -> LoadReport {
    let mut report = LoadReport::default();
    let list = match std::fs::read_to_string(LOAD_LIST) {
        Ok(l) => l,
        Err(e) => {
            warn!("no module list at {LOAD_LIST} ({e}); loading no modules");
            return report;
        }
    };
    let params = CString::default();
    for path in list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let name = path
            .rsplit('/')
            .next()
            .unwrap_or(path)
            .trim_end_matches(".ko")
            .to_string();
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) => {
                warn!("module {name}: {e}");
                report.failed.push(name);
                continue;
            }
        };
        match finit_module(&file, &params, ModuleInitFlags::empty()) {
            Ok(()) | Err(nix::Error::EEXIST) => report.loaded += 1,
            Err(nix::Error::ENODEV | nix::Error::EOPNOTSUPP | nix::Error::EIO) => {
                report.no_device.push(name)
            }
            Err(e) => {
                warn!("module {name}: {e}");
                report.failed.push(name);
            }
        }
    }
    info!(
        "modules: {} loaded, {} for absent hardware ({}), {} failed",
        report.loaded,
        report.no_device.len(),
        report.no_device.join(" "),
        report.failed.len()
    );
    report
}

/// One-way: the kernel refuses every module load until the next boot.
pub fn disable_loading() {
    match std::fs::write("/proc/sys/kernel/modules_disabled", "1") {
        Ok(()) => info!("module loading disabled until the next boot"),
        Err(e) => warn!("could not disable module loading: {e}"),
    }
}
