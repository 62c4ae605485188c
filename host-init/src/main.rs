//! paddock-init: PID 1 of the Paddock appliance, and (started by itself)
//! the unprivileged API process (`api-server`), the unprivileged network
//! services process (`net-services`: the workspaces' resolver and egress
//! proxy) and the jail each workspace's VMM runs in (`jail`).

use paddock_init::{log, net_services, pid1};
use paddock_jail as jail;
use std::process::ExitCode;

const USAGE: &str = "\
usage: paddock-init              (as PID 1 of the appliance only)
       paddock-init api-server   (started by PID 1 with its channel on fd 3)
       paddock-init net-services (started by PID 1: channel on fd 3, resolver fd 4, proxy fd 5)
       paddock-init jail ...     (started by PID 1 around each VMM; see --help there)
       paddock-init jail-probe [PATH...]  (run inside a jail: reports what it sees)
       paddock-init build-info   (what this build holds; the image build checks it)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("api-server") if args.len() == 1 => {
            // The API crate logs through the `log` facade; host-init's log
            // writes its lines to this process's stderr (PID 1's, inherited),
            // as `paddock-init: ...` like before the crate was split off.
            log::install_facade();
            paddock_api_server::main()
        }
        Some("net-services") if args.len() == 1 => net_services::child::main(),
        Some("jail") => jail::main(&args[1..]),
        Some("jail-probe") => jail::probe(&args[1..]),
        Some("build-info") if args.len() == 1 => {
            // A product image must not carry the test suite's probes; the
            // image build asks each binary before it packs it. They live in
            // the control plane, so it is asked whether it has them.
            let probes = if paddock_init::control::TEST_PROBES {
                "yes"
            } else {
                "no"
            };
            println!(
                "version {}\ntest-probes {probes}",
                env!("CARGO_PKG_VERSION")
            );
            ExitCode::SUCCESS
        }
        None if std::process::id() == 1 => pid1::run(),
        None => {
            eprintln!("paddock-init: this is the appliance's init and runs only as PID 1\n{USAGE}");
            ExitCode::from(2)
        }
        Some(_) => {
            eprintln!("paddock-init: unexpected arguments {args:?}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
