//! The appliance's configuration: defaults, then an optional JSON file on
//! the data partition, then `paddock.*` options on the kernel command line.
//! Every problem is reported with where it came from; a bad value is
//! ignored (the layer below it stays in force) so the box stays reachable.

use serde::Deserialize;
use std::net::Ipv4Addr;

pub const CONFIG_FILE: &str = "/data/config/paddock.json";
pub const DEFAULT_API_PORT: u16 = 8443;

pub use crate::api::channel::PlainHttp;

/// How the uplink gets its address; the networking crate brings it up.
pub use paddock_net::NetMode;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Uplink interface; the first wired NIC when unset.
    pub interface: Option<String>,
    pub net: NetMode,
    pub dns: Vec<Ipv4Addr>,
    pub api_port: u16,
    /// Halt instead of rebooting after a fatal error.
    pub halt_on_fatal: bool,
    /// Boot a demo workspace at startup (`just run` asks for one).
    pub demo_workspace: bool,
    /// Start workspaces from snapshots of the booted template (on unless
    /// configured off): control/src/template_snapshots.rs.
    pub template_snapshots: bool,
    /// SHA-256 (hex) of a bootstrap admin credential chosen at image build
    /// time; first boot then makes none and shows none.
    pub bootstrap_admin_sha256: Option<String>,
    /// For the test suite's image only: serves the admin-only diagnostics
    /// the end-to-end tests need (a scan of every host process's argv and
    /// environment for a string). Shown on the status screen when on.
    pub test_probes: bool,
    /// Without a TPM, keep workspace disk keys under a key stored on the
    /// data partition instead of refusing encrypted workspaces. Weaker (a
    /// copy of the disk holds everything) and said so on the status screen.
    pub allow_software_keys: bool,
    /// SHA-256 (hex) of a recovery secret chosen at image build time; first
    /// boot then makes none and shows none.
    pub recovery_key_sha256: Option<String>,
    /// The API also without TLS, on one interface only: for clients that
    /// cannot be given the appliance's certificate (E2B's SDK checks the
    /// OS store) on a network the owner trusts. Off unless configured.
    pub plain_http: Option<PlainHttp>,
    /// The box's DNS domain: the API's certificate also names it and
    /// `*.{domain}`, and E2B's SDK told `E2B_DOMAIN={domain}` finds the API
    /// at `api.{domain}` and each sandbox at `49983-{id}.{domain}`.
    pub domain: Option<String>,
    /// Where the audit events a person should hear about at once are
    /// POSTed (`notify.webhook`, docs/runbook.md).
    pub webhook: Option<crate::notify::Webhook>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            interface: None,
            net: NetMode::Dhcp,
            dns: Vec::new(),
            api_port: DEFAULT_API_PORT,
            halt_on_fatal: false,
            demo_workspace: false,
            template_snapshots: true,
            bootstrap_admin_sha256: None,
            test_probes: false,
            allow_software_keys: false,
            recovery_key_sha256: None,
            plain_http: None,
            domain: None,
            webhook: None,
        }
    }
}

/// One problem, naming where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigProblem {
    pub origin: String,
    pub message: String,
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.origin, self.message)
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileNet {
    interface: Option<String>,
    mode: Option<String>,
    address: Option<String>,
    gateway: Option<String>,
    #[serde(default)]
    dns: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileApi {
    port: Option<u16>,
    plain_http: Option<FilePlainHttp>,
    domain: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePlainHttp {
    interface: String,
    port: u16,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    network: FileNet,
    #[serde(default)]
    api: FileApi,
    on_fatal: Option<String>,
    demo_workspace: Option<bool>,
    template_snapshots: Option<bool>,
    bootstrap_admin_sha256: Option<String>,
    test_probes: Option<bool>,
    allow_software_keys: Option<bool>,
    recovery_key_sha256: Option<String>,
    notify: Option<serde_json::Value>,
}

/// A kernel command line switch: `1`/`yes` or `0`/`no`.
fn parse_switch(v: &str) -> Result<bool, String> {
    match v {
        "1" | "yes" => Ok(true),
        "0" | "no" => Ok(false),
        _ => Err(format!("{v:?} is not 0 or 1")),
    }
}

fn parse_cidr(v: &str) -> Result<(Ipv4Addr, u8), String> {
    let (a, p) = v
        .split_once('/')
        .ok_or_else(|| format!("{v:?} is not ADDRESS/PREFIX (e.g. 192.0.2.10/24)"))?;
    let address: Ipv4Addr = a
        .parse()
        .map_err(|_| format!("{a:?} is not an IPv4 address"))?;
    let prefix: u8 = p
        .parse()
        .ok()
        .filter(|n| (1..=32).contains(n))
        .ok_or_else(|| format!("prefix {p:?} is not 1 to 32"))?;
    Ok((address, prefix))
}

fn parse_ip(v: &str) -> Result<Ipv4Addr, String> {
    v.parse()
        .map_err(|_| format!("{v:?} is not an IPv4 address"))
}

fn valid_ifname(v: &str) -> Result<String, String> {
    if v.is_empty() || v.len() > 15 || v.contains('/') || v.contains(char::is_whitespace) {
        Err(format!("{v:?} is not an interface name"))
    } else {
        Ok(v.to_string())
    }
}

/// A DNS name of letters, digits and hyphens (lower-cased), as certificate
/// names and E2B's host names need.
fn valid_domain(v: &str) -> Result<String, String> {
    let d = v.trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if d.len() > 200 || d.split('.').count() < 2 || !d.split('.').all(label_ok) {
        return Err(format!(
            "{v:?} is not a domain name of two labels or more (letters, digits and hyphens): certificates name *.{{domain}}, which must not cover a whole top-level domain"
        ));
    }
    Ok(d)
}

fn parse_sha256_hex(v: &str) -> Result<String, String> {
    if v.len() == 64 && v.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(v.to_ascii_lowercase())
    } else {
        Err("not a SHA-256 in hex (64 hex digits; `printf %s TOKEN | sha256sum` makes one)".into())
    }
}

fn parse_on_fatal(v: &str) -> Result<bool, String> {
    match v {
        "reboot" => Ok(false),
        "halt" => Ok(true),
        _ => Err(format!("{v:?} is not \"reboot\" or \"halt\"")),
    }
}

/// Ports the plain-HTTP listener may not take: those published workspace
/// ports are given (a published port's forwarding would take its
/// connections, tokens and all).
const RESERVED_PORTS: std::ops::RangeInclusive<u16> = 20000..=29999;

impl Config {
    /// Checks what only the layers together decide (run after the last):
    /// a plain-HTTP port that became the TLS port (or is the resolver's or
    /// the proxy's) is dropped, never the TLS port; a TLS port among the
    /// published ports' goes back to 8443.
    pub fn finish(&mut self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        if RESERVED_PORTS.contains(&self.api_port) {
            problems.push(ConfigProblem {
                origin: "api.port".into(),
                message: format!(
                    "{} is in the range published workspace ports are given from; {DEFAULT_API_PORT} is used",
                    self.api_port
                ),
            });
            self.api_port = DEFAULT_API_PORT;
        }
        if let Some(p) = &self.plain_http {
            let clash = p.port == self.api_port
                || [
                    crate::net::firewall::PROXY_PORT,
                    crate::net::firewall::DNS_PORT,
                ]
                .contains(&p.port);
            if clash {
                problems.push(ConfigProblem {
                    origin: "api.plain_http.port".into(),
                    message: format!(
                        "{} is the TLS port or the resolver's or the proxy's; plain HTTP is off",
                        p.port
                    ),
                });
                self.plain_http = None;
            }
        }
        problems
    }

    /// Applies the JSON file's text on top of `self`.
    pub fn apply_file(&mut self, text: &str, origin: &str) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        let mut bad = |field: &str, message: String| {
            problems.push(ConfigProblem {
                origin: format!("{origin}: {field}"),
                message,
            })
        };
        let f: FileConfig = match serde_json::from_str(text) {
            Ok(f) => f,
            Err(e) => {
                bad("file", format!("not valid configuration JSON: {e}"));
                return problems;
            }
        };
        if let Some(i) = f.network.interface {
            match valid_ifname(&i) {
                Ok(i) => self.interface = Some(i),
                Err(m) => bad("network.interface", m),
            }
        }
        match f.network.mode.as_deref() {
            None | Some("dhcp") if f.network.address.is_none() => {}
            None | Some("dhcp") => bad(
                "network.address",
                "given, but network.mode is not \"static\"".into(),
            ),
            Some("static") => match f.network.address.as_deref().map(parse_cidr) {
                None => bad(
                    "network.address",
                    "static mode needs an ADDRESS/PREFIX".into(),
                ),
                Some(Err(m)) => bad("network.address", m),
                Some(Ok((address, prefix))) => {
                    let gateway = match f.network.gateway.as_deref().map(parse_ip).transpose() {
                        Ok(g) => g,
                        Err(m) => {
                            bad("network.gateway", m);
                            None
                        }
                    };
                    self.net = NetMode::Static {
                        address,
                        prefix,
                        gateway,
                    };
                }
            },
            Some(other) => bad(
                "network.mode",
                format!("{other:?} is not \"dhcp\" or \"static\""),
            ),
        }
        let mut dns = Vec::new();
        for d in &f.network.dns {
            match parse_ip(d) {
                Ok(ip) => dns.push(ip),
                Err(m) => bad("network.dns", m),
            }
        }
        if !dns.is_empty() {
            self.dns = dns;
        }
        if let Some(p) = f.api.port {
            if p == 0 {
                bad("api.port", "0 is not a port".into());
            } else {
                self.api_port = p;
            }
        }
        if let Some(d) = f.api.domain {
            match valid_domain(&d) {
                Ok(d) => self.domain = Some(d),
                Err(m) => bad("api.domain", m),
            }
        }
        if let Some(plain) = f.api.plain_http {
            match valid_ifname(&plain.interface) {
                Err(m) => bad("api.plain_http.interface", m),
                Ok(i) if i == "lo" || i.starts_with("pdk") => bad(
                    "api.plain_http.interface",
                    format!("{i:?} is the loopback or a workspace's tap; name the network the clients are on"),
                ),
                Ok(_) if plain.port < 1024 || RESERVED_PORTS.contains(&plain.port) => bad(
                    "api.plain_http.port",
                    format!(
                        "{} is not free for it (below 1024, or the resolver's, the proxy's or a published workspace port's)",
                        plain.port
                    ),
                ),
                Ok(interface) => {
                    self.plain_http = Some(PlainHttp {
                        interface,
                        port: plain.port,
                    })
                }
            }
        }
        if let Some(v) = f.on_fatal {
            match parse_on_fatal(&v) {
                Ok(h) => self.halt_on_fatal = h,
                Err(m) => bad("on_fatal", m),
            }
        }
        if let Some(d) = f.demo_workspace {
            self.demo_workspace = d;
        }
        if let Some(t) = f.template_snapshots {
            self.template_snapshots = t;
        }
        if let Some(t) = f.test_probes {
            self.test_probes = t;
        }
        if let Some(h) = f.bootstrap_admin_sha256 {
            match parse_sha256_hex(&h) {
                Ok(h) => self.bootstrap_admin_sha256 = Some(h),
                Err(m) => bad("bootstrap_admin_sha256", m),
            }
        }
        if let Some(a) = f.allow_software_keys {
            self.allow_software_keys = a;
        }
        if let Some(h) = f.recovery_key_sha256 {
            match parse_sha256_hex(&h) {
                Ok(h) => self.recovery_key_sha256 = Some(h),
                Err(m) => bad("recovery_key_sha256", m),
            }
        }
        if let Some(n) = f.notify {
            match crate::notify::from_config(n) {
                Ok(w) => self.webhook = w,
                Err(m) => bad("notify", m),
            }
        }
        problems
    }

    /// Applies `paddock.*` kernel command-line options on top of `self`.
    pub fn apply_cmdline(&mut self, cmdline: &str) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        let mut static_ip = None;
        let mut gateway = None;
        for arg in cmdline.split_whitespace() {
            let Some(opt) = arg.strip_prefix("paddock.") else {
                continue;
            };
            let (key, value) = opt.split_once('=').unwrap_or((opt, ""));
            let result: Result<(), String> = match key {
                "ip" if value == "dhcp" => {
                    self.net = NetMode::Dhcp;
                    Ok(())
                }
                "ip" => parse_cidr(value).map(|c| static_ip = Some(c)),
                "gw" => parse_ip(value).map(|g| gateway = Some(g)),
                "dns" => value
                    .split(',')
                    .map(parse_ip)
                    .collect::<Result<Vec<_>, _>>()
                    .map(|d| self.dns = d),
                "iface" => valid_ifname(value).map(|i| self.interface = Some(i)),
                "api_port" => value
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .map(|p| self.api_port = p)
                    .ok_or_else(|| format!("{value:?} is not a port")),
                "on_fatal" => parse_on_fatal(value).map(|h| self.halt_on_fatal = h),
                "demo" => parse_switch(value).map(|on| self.demo_workspace = on),
                "template_snapshots" => parse_switch(value).map(|on| self.template_snapshots = on),
                _ => Err("unknown option".to_string()),
            };
            if let Err(message) = result {
                problems.push(ConfigProblem {
                    origin: format!("kernel command line: paddock.{key}"),
                    message,
                });
            }
        }
        match (static_ip, gateway) {
            (Some((address, prefix)), gateway) => {
                self.net = NetMode::Static {
                    address,
                    prefix,
                    gateway,
                }
            }
            (None, Some(g)) => match &mut self.net {
                NetMode::Static { gateway, .. } => *gateway = Some(g),
                NetMode::Dhcp => problems.push(ConfigProblem {
                    origin: "kernel command line: paddock.gw".into(),
                    message: "needs paddock.ip=ADDRESS/PREFIX (DHCP supplies its own gateway)"
                        .into(),
                }),
            },
            (None, None) => {}
        }
        problems
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
