//! The sub-syntax inside flag values (`id=root,path=/r.img,ro`): ours, not
//! clap's, because the same messages name the same fields as before and the
//! JSON form spells these fields differently anyway.

use crate::config::{ConfigError, Console, DriveConfig, NetConfig, VsockConfig};
use crate::rate_limit::RateLimit;
use clap::builder::{OsStringValueParser, TypedValueParser};
use std::path::PathBuf;

pub(super) fn err(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.to_string(),
        message: message.into(),
    }
}

/// A clap value parser around one of ours. It takes the raw OS string so a
/// value that is not UTF-8 is refused naming its flag (clap's own `&str`
/// parsers report no flag), and the `ConfigError` rides as the clap error's
/// source for `cli::from_clap` to hand back unchanged.
pub(super) fn text<T, F>(flag: &'static str, parse: F) -> impl TypedValueParser<Value = T>
where
    T: Clone + Send + Sync + 'static,
    F: Fn(&str) -> Result<T, ConfigError> + Clone + Send + Sync + 'static,
{
    OsStringValueParser::new().try_map(move |v| match v.to_str() {
        Some(s) => parse(s),
        None => Err(err(flag, format!("{v:?} is not valid UTF-8"))),
    })
}

/// Paths are taken as they come, empty ones too: `VmConfig::validate` says
/// what is wrong with them, the same as for the JSON form.
pub(super) fn path() -> impl TypedValueParser<Value = PathBuf> {
    OsStringValueParser::new().map(PathBuf::from)
}

pub(super) fn number<T>(flag: &'static str) -> impl TypedValueParser<Value = T>
where
    T: std::str::FromStr + Clone + Send + Sync + 'static,
{
    text(flag, move |v| parse_number(flag, v))
}

fn parse_number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, ConfigError> {
    v.parse()
        .map_err(|_| err(flag, format!("{v:?} is not a valid number")))
}

pub(super) fn parse_drive(v: &str) -> Result<DriveConfig, ConfigError> {
    let mut id = None;
    let mut path = None;
    let mut read_only = false;
    let mut rate = RateLimit::default();
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

pub(super) fn parse_net(v: &str) -> Result<NetConfig, ConfigError> {
    let mut fd = None;
    let mut mac = None;
    let mut rate = RateLimit::default();
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

pub(super) fn parse_vsock(v: &str) -> Result<VsockConfig, ConfigError> {
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

/// "stdout", "off" or a file, which may have any name a path may.
pub(super) fn console() -> impl TypedValueParser<Value = Console> {
    OsStringValueParser::new().map(|v| match v.to_str() {
        Some(s) => Console::parse(s),
        None => Console::File(PathBuf::from(v)),
    })
}
