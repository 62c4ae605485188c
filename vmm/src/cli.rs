//! Command-line flags: either `--config FILE` or flags for the common case.
//! clap splits the command line; the syntax inside values is `values`'s,
//! and whether the result makes sense is `VmConfig::validate`'s, the same
//! checks as for the JSON form.

mod values;

use crate::config::{ConfigError, Console, DriveConfig, NetConfig, VmConfig, VsockConfig};
use crate::config::{DEFAULT_MEMORY_MIB, DEFAULT_VCPUS};
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{ArgAction, Parser};
use std::ffi::OsString;
use std::path::PathBuf;
use values::{err, number, path, text};

pub const USAGE: &str = "\
usage: paddock-vmm --config FILE
       paddock-vmm (--kernel PATH [--initramfs PATH] [--cmdline ARGS] | --restore DIR [--restore-copy])
                   [--vcpus N] [--memory-mib N]
                   [--drive id=ID,path=PATH[,ro][,bps=N][,iops=N]]... [--vsock cid=N,uds=PATH]
                   [--net fd=N,mac=MAC[,bps=N][,pps=N]]
                   [--console stdout|off|PATH] [--control PATH] [--no-rng] [--no-seccomp]

Boots one microVM (or resumes one from the snapshot in DIR, written
through --control) and exits when it ends:
  0 guest rebooted or powered off    1 VMM error
  2 invalid configuration            3 guest kernel panic
  4 unexpected guest triple fault";

pub enum Command {
    Run(Box<VmConfig>),
    Help,
}

/// The command line as clap takes it. Value flags take the next argument
/// whatever it looks like (`--cmdline -v`; `--memory-mib -5` gets our "not
/// a valid number"), and a repeated flag keeps its last value: callers
/// of the parser before clap got both and may rely on them.
/// Defaults are left to `into_command` so they come from config.rs alone.
#[derive(Parser, Debug)]
#[command(name = "paddock-vmm", override_help = USAGE, args_override_self = true)]
pub struct Flags {
    /// Exclusive: with flags beside it, which of the two wins would be a
    /// guess.
    #[arg(long, exclusive = true, allow_hyphen_values = true, value_parser = path())]
    pub config: Option<PathBuf>,
    #[arg(long, allow_hyphen_values = true, value_parser = path())]
    pub kernel: Option<PathBuf>,
    #[arg(long, allow_hyphen_values = true, value_parser = path())]
    pub initramfs: Option<PathBuf>,
    #[arg(long, allow_hyphen_values = true, value_parser = text("--cmdline", |v| Ok(v.to_string())))]
    pub cmdline: Option<String>,
    #[arg(long, allow_hyphen_values = true, value_parser = number::<u8>("--vcpus"))]
    pub vcpus: Option<u8>,
    #[arg(long, allow_hyphen_values = true, value_parser = number::<u64>("--memory-mib"))]
    pub memory_mib: Option<u64>,
    #[arg(long = "drive", allow_hyphen_values = true, value_parser = text("--drive", values::parse_drive))]
    pub drives: Vec<DriveConfig>,
    #[arg(long, allow_hyphen_values = true, value_parser = text("--vsock", values::parse_vsock))]
    pub vsock: Option<VsockConfig>,
    #[arg(long, allow_hyphen_values = true, value_parser = text("--net", values::parse_net))]
    pub net: Option<NetConfig>,
    #[arg(long, allow_hyphen_values = true, value_parser = values::console())]
    pub console: Option<Console>,
    #[arg(long, allow_hyphen_values = true, value_parser = path())]
    pub control: Option<PathBuf>,
    #[arg(long, allow_hyphen_values = true, value_parser = path())]
    pub restore: Option<PathBuf>,
    #[arg(long = "restore-copy", action = ArgAction::SetTrue)]
    pub restore_copy: bool,
    #[arg(long = "no-rng", action = ArgAction::SetFalse)]
    pub rng: bool,
    /// For debugging only: runs every thread without its filter.
    #[arg(long = "no-seccomp", action = ArgAction::SetFalse)]
    pub seccomp: bool,
}

impl Flags {
    pub fn into_command(self) -> Result<Command, ConfigError> {
        if let Some(file) = self.config {
            return Ok(Command::Run(Box::new(VmConfig::from_file(&file)?)));
        }
        // Checked here, not by clap, so that `--help` alone still helps and
        // the message points at the JSON form too.
        let kernel = match (self.kernel, &self.restore) {
            (Some(k), _) => k,
            (None, Some(_)) => PathBuf::new(),
            (None, None) => {
                return Err(err(
                    "--kernel",
                    "required (or --restore DIR, or --config FILE)",
                ))
            }
        };
        Ok(Command::Run(Box::new(VmConfig {
            kernel,
            initramfs: self.initramfs,
            cmdline: self.cmdline.unwrap_or_default(),
            vcpus: self.vcpus.unwrap_or(DEFAULT_VCPUS),
            memory_mib: self.memory_mib.unwrap_or(DEFAULT_MEMORY_MIB),
            drives: self.drives,
            vsock: self.vsock,
            console: self.console.unwrap_or_default(),
            rng: self.rng,
            seccomp: self.seccomp,
            control: self.control,
            net: self.net,
            restore: self.restore,
            restore_copy: self.restore_copy,
        })))
    }
}

/// Parses a whole command line, program name first (`std::env::args_os()`).
/// Every refusal is a `ConfigError` naming the flag, so main reports it
/// like any other bad configuration: one line, exit status 2.
pub fn parse<I, T>(args: I) -> Result<Command, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    match Flags::try_parse_from(args) {
        Ok(flags) => flags.into_command(),
        Err(e) if e.kind() == ErrorKind::DisplayHelp => Ok(Command::Help),
        Err(e) => Err(from_clap(&e)),
    }
}

/// clap's errors in the shape the tests and host-init's logs know:
/// "FLAG: what is wrong", on one line, rather than clap's usage block.
fn from_clap(e: &clap::Error) -> ConfigError {
    let ours = std::error::Error::source(e).and_then(|s| s.downcast_ref::<ConfigError>());
    if let Some(c) = ours {
        return err(&c.field, c.message.clone());
    }
    let arg = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => s.as_str(),
        _ => "",
    };
    // clap names an option with its value ("--kernel <KERNEL>").
    let flag = arg.split([' ', '=']).next().unwrap_or(arg);
    let value_missing = matches!(
        e.get(ContextKind::InvalidValue),
        Some(ContextValue::String(v)) if v.is_empty()
    );
    match e.kind() {
        ErrorKind::UnknownArgument => err(flag, "unknown flag (see --help)"),
        ErrorKind::InvalidValue if value_missing => err(flag, "needs a value"),
        ErrorKind::ArgumentConflict => err(flag, "cannot be combined with other flags"),
        _ => {
            let text = e.to_string();
            let line = text.lines().next().unwrap_or_default();
            let field = if flag.is_empty() { "arguments" } else { flag };
            err(field, line.trim_start_matches("error: "))
        }
    }
}

#[cfg(test)]
mod tests;
