//! paddock-init: PID 1 of the Paddock appliance, and (as `paddock-init
//! api-server`, started by itself) the unprivileged API process.

use paddock_init::{api, pid1};
use std::process::ExitCode;

const USAGE: &str = "\
usage: paddock-init              (as PID 1 of the appliance only)
       paddock-init api-server   (started by PID 1 with its channel on fd 3)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("api-server") if args.len() == 1 => api::server::main(),
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
