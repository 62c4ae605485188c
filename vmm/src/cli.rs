//! Command-line flags: either `--config FILE` or flags for the common case.

use crate::config::{
    ConfigError, Console, DriveConfig, NetConfig, VmConfig, VsockConfig, DEFAULT_MEMORY_MIB,
    DEFAULT_VCPUS,
};
use std::path::PathBuf;

pub const USAGE: &str = "\
usage: paddock-vmm --config FILE
       paddock-vmm --kernel PATH [--initramfs PATH] [--cmdline ARGS]
                   [--vcpus N] [--memory-mib N]
                   [--drive id=ID,path=PATH[,ro][,bps=N][,iops=N]]... [--vsock cid=N,uds=PATH]
                   [--net fd=N,mac=MAC[,bps=N][,pps=N]]
                   [--console stdout|off|PATH] [--control PATH] [--no-rng] [--no-seccomp]

Boots one microVM and exits when it ends:
  0 guest rebooted or powered off    1 VMM error
  2 invalid configuration            3 guest kernel panic
  4 unexpected guest triple fault";

pub enum Command {
    Run(Box<VmConfig>),
    Help,
}

fn err(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.to_string(),
        message: message.into(),
    }
}

fn parse_number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, ConfigError> {
    v.parse()
        .map_err(|_| err(flag, format!("{v:?} is not a valid number")))
}

fn parse_drive(v: &str) -> Result<DriveConfig, ConfigError> {
    let mut id = None;
    let mut path = None;
    let mut read_only = false;
    let mut rate = crate::rate_limit::RateLimit::default();
    for part in v.split(',') {
        match part.split_once('=') {
            Some(("id", x)) => id = Some(x.to_string()),
            Some(("path", x)) => path = Some(PathBuf::from(x)),
            Some(("bps", x)) => rate.bytes_per_s = Some(parse_number("--drive bps", x)?),
            Some(("iops", x)) => rate.ops_per_s = Some(parse_number("--drive iops", x)?),
            None if part == "ro" => read_only = true,
            _ => {
                return Err(err(
                    "--drive",
                    format!("unknown part {part:?} (expected id=, path=, ro, bps=, iops=)"),
                ))
            }
        }
    }
    Ok(DriveConfig {
        id: id.ok_or_else(|| err("--drive", "missing id="))?,
        path: path.ok_or_else(|| err("--drive", "missing path="))?,
        read_only,
        rate,
    })
}

fn parse_net(v: &str) -> Result<NetConfig, ConfigError> {
    let mut fd = None;
    let mut mac = None;
    let mut rate = crate::rate_limit::RateLimit::default();
    for part in v.split(',') {
        match part.split_once('=') {
            Some(("fd", x)) => fd = Some(parse_number("--net fd", x)?),
            Some(("mac", x)) => mac = Some(x.to_string()),
            Some(("bps", x)) => rate.bytes_per_s = Some(parse_number("--net bps", x)?),
            Some(("pps", x)) => rate.ops_per_s = Some(parse_number("--net pps", x)?),
            _ => {
                return Err(err(
                    "--net",
                    format!("unknown part {part:?} (expected fd=, mac=, bps=, pps=)"),
                ))
            }
        }
    }
    Ok(NetConfig {
        tap_fd: fd.ok_or_else(|| err("--net", "missing fd="))?,
        mac: mac.ok_or_else(|| err("--net", "missing mac="))?,
        rate,
    })
}

fn parse_vsock(v: &str) -> Result<VsockConfig, ConfigError> {
    let mut cid = None;
    let mut uds = None;
    for part in v.split(',') {
        match part.split_once('=') {
            Some(("cid", x)) => cid = Some(parse_number::<u64>("--vsock", x)?),
            Some(("uds", x)) => uds = Some(PathBuf::from(x)),
            _ => {
                return Err(err(
                    "--vsock",
                    format!("unknown part {part:?} (expected cid=, uds=)"),
                ))
            }
        }
    }
    Ok(VsockConfig {
        cid: cid.ok_or_else(|| err("--vsock", "missing cid="))?,
        uds_path: uds.ok_or_else(|| err("--vsock", "missing uds="))?,
    })
}

pub fn parse(args: &[String]) -> Result<Command, ConfigError> {
    let mut config_file: Option<PathBuf> = None;
    let mut kernel: Option<PathBuf> = None;
    let mut cfg = VmConfig {
        kernel: PathBuf::new(),
        initramfs: None,
        cmdline: String::new(),
        vcpus: DEFAULT_VCPUS,
        memory_mib: DEFAULT_MEMORY_MIB,
        drives: Vec::new(),
        vsock: None,
        console: Console::Stdout,
        rng: true,
        seccomp: true,
        control: None,
        net: None,
    };
    let mut any_flag = false;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let flag = flag.as_str();
        if matches!(flag, "-h" | "--help") {
            return Ok(Command::Help);
        }
        if flag == "--no-rng" {
            cfg.rng = false;
            any_flag = true;
            continue;
        }
        // For debugging only: runs every thread without its filter.
        if flag == "--no-seccomp" {
            cfg.seccomp = false;
            any_flag = true;
            continue;
        }
        let value = it
            .next()
            .ok_or_else(|| err(flag, "needs a value"))?
            .as_str();
        match flag {
            "--config" => {
                config_file = Some(PathBuf::from(value));
                continue;
            }
            "--kernel" => kernel = Some(PathBuf::from(value)),
            "--initramfs" => cfg.initramfs = Some(PathBuf::from(value)),
            "--cmdline" => cfg.cmdline = value.to_string(),
            "--vcpus" => cfg.vcpus = parse_number(flag, value)?,
            "--memory-mib" => cfg.memory_mib = parse_number(flag, value)?,
            "--drive" => cfg.drives.push(parse_drive(value)?),
            "--vsock" => cfg.vsock = Some(parse_vsock(value)?),
            "--net" => cfg.net = Some(parse_net(value)?),
            "--console" => cfg.console = Console::parse(value),
            "--control" => cfg.control = Some(PathBuf::from(value)),
            other => return Err(err(other, "unknown flag (see --help)")),
        }
        any_flag = true;
    }
    match (config_file, kernel) {
        (Some(_), _) if any_flag => Err(err("--config", "cannot be combined with other flags")),
        (Some(path), _) => Ok(Command::Run(Box::new(VmConfig::from_file(&path)?))),
        (None, Some(k)) => {
            cfg.kernel = k;
            Ok(Command::Run(Box::new(cfg)))
        }
        (None, None) => Err(err("--kernel", "required (or --config FILE)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn flags_build_a_config() {
        let Ok(Command::Run(c)) = parse(&args(&[
            "--kernel",
            "/k",
            "--vcpus",
            "2",
            "--memory-mib",
            "128",
            "--drive",
            "id=root,path=/r.img,ro",
            "--vsock",
            "cid=3,uds=/tmp/v.sock",
            "--no-rng",
        ])) else {
            panic!("expected a config");
        };
        assert_eq!(c.vcpus, 2);
        assert_eq!(c.memory_mib, 128);
        assert!(c.drives[0].read_only);
        assert_eq!(c.vsock.as_ref().map(|v| v.cid), Some(3));
        assert!(!c.rng);
    }

    #[test]
    fn drives_take_rate_limits_and_refuse_bad_ones() {
        let Ok(Command::Run(c)) = parse(&args(&[
            "--kernel",
            "/k",
            "--drive",
            "id=data,path=/d.img,bps=1048576,iops=200",
        ])) else {
            panic!("expected a config");
        };
        assert_eq!(c.drives[0].rate.bytes_per_s, Some(1 << 20));
        assert_eq!(c.drives[0].rate.ops_per_s, Some(200));
        assert!(parse(&args(&[
            "--kernel",
            "/k",
            "--drive",
            "id=d,path=/d,bps=fast"
        ]))
        .is_err());
        let Ok(Command::Run(c)) =
            parse(&args(&["--kernel", "/k", "--drive", "id=d,path=/d,iops=0"]))
        else {
            panic!("expected a config");
        };
        let errors = c.validate(1 << 20, 8);
        assert!(
            errors.iter().any(|e| e.field == "drives[0].rate.ops_per_s"),
            "{errors:?}"
        );
    }

    #[test]
    fn bad_flags_name_themselves() {
        for (a, field) in [
            (vec!["--kernel"], "--kernel"),
            (vec!["--kernel", "/k", "--vcpus", "x"], "--vcpus"),
            (vec!["--kernel", "/k", "--vcpus", "300"], "--vcpus"),
            (vec!["--kernel", "/k", "--bogus", "1"], "--bogus"),
            (vec!["--kernel", "/k", "--drive", "path=/x"], "--drive"),
            (vec!["--config", "/c", "--vcpus", "1"], "--config"),
            (vec![], "--kernel"),
        ] {
            match parse(&args(&a)) {
                Err(e) => assert_eq!(e.field, field, "{a:?}"),
                Ok(_) => panic!("{a:?} should fail"),
            }
        }
    }
}
