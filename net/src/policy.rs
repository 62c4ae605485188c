//! A workspace's network policy: what it asked for (checked entry by entry
//! into typed rules), the addresses no rule can open, and the questions the
//! resolver and the proxy ask of it.

use std::net::Ipv4Addr;

/// Ports a domain entry opens when it names none.
pub const DEFAULT_PORTS: [u16; 2] = [443, 80];
const MAX_ENTRIES: usize = 256;

/// The request's form (the API's wire type): `{"domains": ["example.com",
/// "*.pypi.org:443"], "cidrs": ["203.0.113.0/24:8080"]}`. Empty: nothing.
pub use paddock_api_types::Egress as EgressRequest;

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DomainRule {
    /// Lower case, no trailing dot; `*.` prefix kept for wildcards.
    pub pattern: String,
    pub ports: Vec<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CidrRule {
    pub net: Ipv4Addr,
    pub prefix: u8,
    pub ports: Vec<u16>,
}

/// Checked rules; serialisable because PID 1 hands them to the network
/// services process (which trusts its sender and does not check again).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Egress {
    pub domains: Vec<DomainRule>,
    pub cidrs: Vec<CidrRule>,
}

/// Ranges never reachable from a workspace, whatever its policy says:
/// "this" network, RFC 1918, CGNAT, loopback, link-local (cloud metadata
/// among it), IETF protocol assignments, benchmarking, multicast and
/// reserved. The host's own addresses are refused separately (they change).
pub const FORBIDDEN: [(Ipv4Addr, u8); 11] = [
    (Ipv4Addr::new(0, 0, 0, 0), 8),
    (Ipv4Addr::new(10, 0, 0, 0), 8),
    (Ipv4Addr::new(100, 64, 0, 0), 10),
    (Ipv4Addr::new(127, 0, 0, 0), 8),
    (Ipv4Addr::new(169, 254, 0, 0), 16),
    (Ipv4Addr::new(172, 16, 0, 0), 12),
    (Ipv4Addr::new(192, 0, 0, 0), 24),
    (Ipv4Addr::new(192, 168, 0, 0), 16),
    (Ipv4Addr::new(198, 18, 0, 0), 15),
    (Ipv4Addr::new(224, 0, 0, 0), 4),
    (Ipv4Addr::new(240, 0, 0, 0), 4),
];

fn in_net(ip: Ipv4Addr, net: Ipv4Addr, prefix: u8) -> bool {
    let mask = u32::MAX
        .checked_shl(32 - u32::from(prefix.min(32)))
        .unwrap_or(0);
    u32::from(ip) & mask == u32::from(net) & mask
}

/// Whether `ip` is one no workspace may reach (the host's own addresses
/// given as `host`).
pub fn forbidden(ip: Ipv4Addr, host: &[Ipv4Addr]) -> bool {
    FORBIDDEN.iter().any(|(n, p)| in_net(ip, *n, *p)) || host.contains(&ip)
}

fn parse_ports(s: Option<&str>, entry: &str) -> Result<Vec<u16>, String> {
    let Some(s) = s else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for p in s.split('+') {
        match p.parse::<u16>() {
            Ok(n) if n > 0 => out.push(n),
            _ => return Err(format!("{entry:?}: port {p:?} is not 1 to 65535")),
        }
    }
    Ok(out)
}

/// Checks one domain pattern: LDH labels, at most one leading `*.`, no IP
/// addresses (those go in `cidrs`).
fn domain_pattern(s: &str) -> Result<String, String> {
    let lower = s.trim_end_matches('.').to_ascii_lowercase();
    let body = lower.strip_prefix("*.").unwrap_or(&lower);
    let labels: Vec<&str> = body.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if body.len() > 253 || labels.len() < 2 || !labels.iter().all(label_ok) {
        return Err(format!(
            "{s:?} is not a domain name (letters, digits, hyphens; at least two labels; an optional leading \"*.\")"
        ));
    }
    if body.parse::<Ipv4Addr>().is_ok()
        || labels
            .last()
            .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("{s:?} is an address; put addresses in \"cidrs\""));
    }
    Ok(lower)
}

/// Checking a request entry by entry (a trait: the request is the wire
/// crate's type).
pub trait CheckEgress {
    /// The typed policy, or every problem found.
    fn check(&self) -> Result<Egress, Vec<String>>;
}

impl CheckEgress for EgressRequest {
    fn check(&self) -> Result<Egress, Vec<String>> {
        let mut problems = Vec::new();
        let mut out = Egress::default();
        if self.domains.len() + self.cidrs.len() > MAX_ENTRIES {
            problems.push(format!("at most {MAX_ENTRIES} entries"));
        }
        for d in &self.domains {
            let (name, ports) = match d.rsplit_once(':') {
                Some((n, p)) => (n, Some(p)),
                None => (d.as_str(), None),
            };
            match (domain_pattern(name), parse_ports(ports, d)) {
                (Ok(pattern), Ok(ports)) => out.domains.push(DomainRule {
                    pattern,
                    ports: if ports.is_empty() {
                        DEFAULT_PORTS.to_vec()
                    } else {
                        ports
                    },
                }),
                (Err(e), _) | (_, Err(e)) => problems.push(format!("domains: {e}")),
            }
        }
        for c in &self.cidrs {
            let (net, ports) = match c.split_once(':') {
                Some((n, p)) => (n, Some(p)),
                None => (c.as_str(), None),
            };
            let (addr, prefix) = net.split_once('/').unwrap_or((net, "32"));
            let parsed = (addr.parse::<Ipv4Addr>(), prefix.parse::<u8>());
            let ports = match parse_ports(ports, c) {
                Ok(p) if p.is_empty() => Err(format!(
                    "{c:?}: give the ports (\"{net}:443\" or \"{net}:80+443\")"
                )),
                other => other,
            };
            match (parsed, ports) {
                ((Ok(a), Ok(p)), Ok(ports)) if p <= 32 => {
                    let mask = u32::MAX.checked_shl(32 - u32::from(p)).unwrap_or(0);
                    if u32::from(a) & !mask != 0 {
                        problems.push(format!("cidrs: {c:?} has host bits set"));
                    } else {
                        out.cidrs.push(CidrRule {
                            net: a,
                            prefix: p,
                            ports,
                        });
                    }
                }
                (_, Err(e)) => problems.push(format!("cidrs: {e}")),
                _ => problems.push(format!(
                    "cidrs: {c:?} is not an IPv4 network (a.b.c.d/n:port)"
                )),
            }
        }
        if problems.is_empty() {
            Ok(out)
        } else {
            Err(problems)
        }
    }
}

impl Egress {
    pub fn is_none(&self) -> bool {
        self.domains.is_empty() && self.cidrs.is_empty()
    }

    /// Whether `name` may be resolved (any port).
    pub fn allows_name(&self, name: &str) -> bool {
        self.domains.iter().any(|d| matches(&d.pattern, name))
    }

    /// Whether a connection to `name` on `port` may be made.
    pub fn allows(&self, name: &str, port: u16) -> bool {
        self.domains
            .iter()
            .any(|d| d.ports.contains(&port) && matches(&d.pattern, name))
    }

    /// Whether every entry here is one `grant` already allows: a name (or
    /// wildcard) at or below one of its patterns on ports it lists, a
    /// network inside one of its networks on ports it lists. Err names the
    /// first entry that is not.
    pub fn within(&self, grant: &Egress) -> Result<(), String> {
        for d in &self.domains {
            let ok = grant.domains.iter().any(|g| {
                d.ports.iter().all(|p| g.ports.contains(p))
                    && pattern_within(&d.pattern, &g.pattern)
            });
            if !ok {
                return Err(format!("{:?} on ports {:?}", d.pattern, d.ports));
            }
        }
        for c in &self.cidrs {
            let ok = grant.cidrs.iter().any(|g| {
                c.ports.iter().all(|p| g.ports.contains(p))
                    && g.prefix <= c.prefix
                    && in_net(c.net, g.net, g.prefix)
            });
            if !ok {
                return Err(format!("{}/{} on ports {:?}", c.net, c.prefix, c.ports));
            }
        }
        Ok(())
    }

    /// Every port some domain entry opens (the firewall sends them to the proxy).
    pub fn domain_ports(&self) -> Vec<u16> {
        let mut p: Vec<u16> = self.domains.iter().flat_map(|d| d.ports.clone()).collect();
        p.sort_unstable();
        p.dedup();
        p
    }
}

/// Whether every name `pattern` matches is one `grant` matches.
fn pattern_within(pattern: &str, grant: &str) -> bool {
    match (pattern.strip_prefix("*."), grant.strip_prefix("*.")) {
        (None, _) => matches(grant, pattern),
        (Some(_), None) => false,
        (Some(zone), Some(gzone)) => zone == gzone || matches(grant, zone),
    }
}

/// `*.example.com` matches names below example.com (not example.com
/// itself); anything else matches exactly. Both sides are lower case, no
/// trailing dot.
pub fn matches(pattern: &str, name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(zone) => {
            name.len() > zone.len() + 1
                && name.ends_with(zone)
                && name.as_bytes()[name.len() - zone.len() - 1] == b'.'
        }
        None => pattern == name,
    }
}

/// A workspace's network as PID 1 decides it: where it sits, where it may
/// go, how fast it may open connections and which of its ports are
/// published. The firewall is built from these, and the resolver and proxy
/// read them through the policy table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WsNet {
    pub id: String,
    pub slot: crate::addressing::Slot,
    pub egress: Egress,
    /// New connections (and other new flows) per second, all together.
    pub connections_per_s: u64,
    /// Published ports: (its port, the uplink's port that reaches it).
    pub published: Vec<(u16, u16)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(domains: &[&str], cidrs: &[&str]) -> EgressRequest {
        EgressRequest {
            domains: domains.iter().map(|s| s.to_string()).collect(),
            cidrs: cidrs.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn entries_parse_with_default_and_explicit_ports() {
        let e = req(
            &["Allowed.Test.", "*.pkg.test:8443+443"],
            &["198.51.100.0/24:8080"],
        )
        .check()
        .expect("valid");
        assert_eq!(e.domains[0].pattern, "allowed.test");
        assert_eq!(e.domains[0].ports, vec![443, 80]);
        assert_eq!(e.domains[1].ports, vec![8443, 443]);
        assert_eq!(e.cidrs[0].prefix, 24);
        assert_eq!(e.domain_ports(), vec![80, 443, 8443]);
    }

    #[test]
    fn bad_entries_are_named() {
        let problems = req(
            &[
                "nodots", "a..b", "1.2.3.4", "x.test:0", "-a.test", "*.*.test",
            ],
            &[
                "10.0.0.0/33:1",
                "10.0.0.1/8:443",
                "10.0.0.0/8",
                "example.com:443",
            ],
        )
        .check()
        .expect_err("invalid");
        assert_eq!(problems.len(), 10, "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("put addresses in")));
        assert!(problems.iter().any(|p| p.contains("host bits")));
        assert!(problems.iter().any(|p| p.contains("give the ports")));
    }

    #[test]
    fn wildcards_match_below_the_zone_only() {
        assert!(matches("*.example.com", "a.example.com"));
        assert!(matches("*.example.com", "b.a.EXAMPLE.com."));
        assert!(!matches("*.example.com", "example.com"));
        assert!(!matches("*.example.com", "badexample.com"));
        assert!(matches("allowed.test", "ALLOWED.test."));
        assert!(!matches("allowed.test", "x.allowed.test"));
        let e = req(&["allowed.test"], &[]).check().expect("valid");
        assert!(e.allows("allowed.test", 443) && e.allows("allowed.test", 80));
        assert!(!e.allows("allowed.test", 8443));
        assert!(!e.allows("other.test", 443));
    }

    #[test]
    fn a_grant_covers_only_narrower_entries() {
        let grant = req(&["*.pkg.test:443", "api.test"], &["198.51.100.0/24:443+80"])
            .check()
            .expect("valid");
        let ok = |d: &[&str], c: &[&str]| req(d, c).check().expect("valid").within(&grant);
        assert!(ok(
            &["a.pkg.test:443", "*.x.pkg.test:443", "*.pkg.test:443"],
            &[]
        )
        .is_ok());
        assert!(ok(&["api.test", "api.test:80"], &["198.51.100.128/25:443"]).is_ok());
        assert!(
            ok(&["pkg.test:443"], &[]).is_err(),
            "the zone itself is not below it"
        );
        assert!(ok(&["a.pkg.test"], &[]).is_err(), "port 80 was not granted");
        let narrow = req(&["*.x.pkg.test:443"], &[]).check().expect("valid");
        let wide = req(&["*.pkg.test:443"], &[]).check().expect("valid");
        assert!(wide.within(&narrow).is_err(), "a wider wildcard");
        assert!(ok(&["x.api.test"], &[]).is_err());
        assert!(ok(&[], &["198.51.0.0/16:443"]).is_err(), "a wider network");
        assert!(ok(&[], &["198.51.100.0/24:22"]).is_err(), "another port");
        assert!(ok(&[], &[]).is_ok());
    }

    #[test]
    fn metadata_private_and_host_addresses_are_forbidden() {
        let host = [Ipv4Addr::new(203, 0, 113, 5)];
        for ip in [
            "169.254.169.254",
            "10.200.0.1",
            "192.168.1.1",
            "127.0.0.1",
            "100.64.0.1",
            "172.20.0.1",
            "203.0.113.5",
            "224.0.0.1",
        ] {
            assert!(forbidden(ip.parse().expect("ip"), &host), "{ip}");
        }
        for ip in ["198.51.100.10", "203.0.113.10", "8.8.8.8"] {
            assert!(!forbidden(ip.parse().expect("ip"), &host), "{ip}");
        }
    }
}
