//! `just run` (until the appliance image exists): boots the demo workspace
//! in paddock-vmm on whatever KVM works here and hands it the terminal.

use paddock_tests::harness::{base_stage, run_script_with, Artifacts, Console};

fn main() {
    let result = Artifacts::from_env()
        .and_then(|a| base_stage(&a))
        .and_then(|stage| {
            eprintln!("paddock demo: booting a workspace VM (the guest's console follows)");
            run_script_with("demo.sh", &stage, Console::Interactive)
        });
    if let Err(e) = result {
        eprintln!("paddock demo: {e}");
        std::process::exit(1);
    }
}
