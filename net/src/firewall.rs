//! The workspace firewall: one nf_tables table, rebuilt whole and swapped
//! in atomically on every change (a workspace started, stopped, or its
//! policy changed), so there is never a moment with half a policy.
//!
//! Each workspace has a tap of its own (its own layer-2 segment: no ARP or
//! broadcast reaches another workspace) and a /30: the host side .1, the
//! guest .2. What it may do:
//! - ask the host's resolver (udp 53 to its gateway address);
//! - open TCP to ports its domain entries name: redirected to the host's
//!   proxy, which decides on the SNI or Host the client sends;
//! - open TCP to its CIDR entries' ports, routed and masqueraded, unless
//!   the address is in a forbidden range;
//! - nothing else: everything it sends that no rule opens is counted and
//!   dropped, in its own chain, so the count is its own.
//!
//! Nothing from outside reaches a workspace except replies.

pub use crate::addressing::{Slot, DNS_PORT, MAX_SLOTS, POOL_PREFIX, PROXY_PORT, REQUESTS_PORT};
use crate::addressing::{POOL, TAP_PREFIX};
use crate::nft::{self, Expr, Hook, Netlink, NftError, Op, Rule, Verdict};
use crate::policy::{Egress, FORBIDDEN};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Mutex;

pub const TABLE: &str = "paddock";
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WsNet {
    pub id: String,
    pub slot: Slot,
    pub egress: Egress,
    /// New connections (and other new flows) per second, all together.
    pub connections_per_s: u64,
    /// Published ports: (its port, the uplink's port that reaches it).
    pub published: Vec<(u16, u16)>,
}

fn rule(chain: &str, parts: Vec<Vec<Expr>>, tail: Vec<Expr>, tag: Option<&str>) -> Op {
    let mut exprs: Vec<Expr> = parts.into_iter().flatten().collect();
    exprs.extend(tail);
    Op::AddRule(Rule {
        chain: chain.to_string(),
        exprs,
        tag: tag.map(str::to_string),
    })
}

fn chain(name: &str) -> Op {
    Op::AddChain {
        name: name.to_string(),
        base: None,
    }
}

fn base(name: &str, hook: Hook, prio: i32, kind: &'static str, accept: bool) -> Op {
    Op::AddChain {
        name: name.to_string(),
        base: Some((hook, prio, kind, accept)),
    }
}

const TCP: u8 = 6;
const UDP: u8 = 17;
const REFUSED: &str = "refused";

/// A directed private link: `from` may open TCP connections to `to` on
/// `port`; `to` may only answer them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub id: String,
    pub from: String,
    pub to: String,
    pub port: u16,
}

/// The whole table for these workspaces and links, as one batch that
/// replaces whatever table was there. A link is in force only while both
/// its ends are.
pub fn ruleset(workspaces: &[WsNet], links: &[Link]) -> Vec<Op> {
    let mut ops = vec![Op::AddTable, Op::DeleteTable, Op::AddTable];
    ops.push(base("prerouting", Hook::Prerouting, -100, "nat", true));
    ops.push(base("postrouting", Hook::Postrouting, 100, "nat", true));
    ops.push(base("input", Hook::Input, 0, "filter", true));
    ops.push(base("forward", Hook::Forward, 0, "filter", false));
    let any_tap = format!("{TAP_PREFIX}*");
    // The resolver and the proxy answer workspaces only.
    for (proto, port) in [(UDP, DNS_PORT), (TCP, DNS_PORT), (TCP, PROXY_PORT)] {
        ops.push(rule(
            "input",
            vec![
                nft::iifname_not(&any_tap),
                nft::l4proto(proto),
                nft::dport(port),
            ],
            vec![Expr::Verdict(Verdict::Drop)],
            None,
        ));
    }
    // Replies from outside to what a workspace opened, and nothing else,
    // come back in. (Replies between workspaces are allowed per link, in
    // the answering workspace's chain, so removing a link stops them too.)
    ops.push(rule(
        "forward",
        vec![
            nft::iifname_not(&any_tap),
            nft::oifname(&any_tap),
            nft::ct_established(),
        ],
        vec![Expr::Verdict(Verdict::Accept)],
        None,
    ));
    ops.push(rule(
        "postrouting",
        vec![
            nft::ipv4(),
            nft::ip_addr_in(false, Ipv4Addr::from(POOL), POOL_PREFIX),
            nft::oifname_not(&any_tap),
        ],
        vec![Expr::Masquerade],
        None,
    ));
    // Published ports: the uplink's port to the workspace's, from outside only.
    for ws in workspaces {
        for (port, host_port) in &ws.published {
            ops.push(rule(
                "prerouting",
                vec![
                    nft::iifname_not(&any_tap),
                    nft::ipv4(),
                    nft::l4proto(TCP),
                    nft::dport(*host_port),
                ],
                vec![Expr::Dnat(ws.slot.guest(), *port)],
                None,
            ));
            ops.push(rule(
                "forward",
                vec![
                    nft::iifname_not(&any_tap),
                    nft::oifname(&ws.slot.tap()),
                    nft::ipv4(),
                    nft::ip_addr_in(true, ws.slot.guest(), 32),
                    nft::l4proto(TCP),
                    nft::dport(*port),
                ],
                vec![Expr::Verdict(Verdict::Accept)],
                None,
            ));
        }
    }
    for ws in workspaces {
        let slot_of = |id: &str| workspaces.iter().find(|w| w.id == id).map(|w| w.slot);
        // Its links, both ends present: as the opener and as the answerer.
        let opens: Vec<(Slot, u16)> = links
            .iter()
            .filter(|l| l.from == ws.id)
            .filter_map(|l| Some((slot_of(&l.to)?, l.port)))
            .collect();
        let answers: Vec<(Slot, u16)> = links
            .iter()
            .filter(|l| l.to == ws.id)
            .filter_map(|l| Some((slot_of(&l.from)?, l.port)))
            .collect();
        ops.extend(workspace_rules(ws, &opens, &answers));
    }
    // A tap without a workspace entry (one being cut off, or a stale one)
    // reaches nothing on the host either.
    ops.push(rule(
        "input",
        vec![nft::iifname(&any_tap)],
        vec![Expr::Verdict(Verdict::Drop)],
        None,
    ));
    ops
}

/// What the network services process (the resolver and the proxy, which
/// runs as `uid`) may reach on its own: the upstream resolvers on udp/53,
/// and otherwise only what a workspace's connection could reach, never a
/// forbidden range or the host's own addresses. The process checks this
/// itself before every connection; the fence holds if it is taken over.
///
/// Every socket it holds is its uid's: those it makes and accepts, and
/// the two PID 1 binds for it (on a thread with its filesystem uid,
/// `Sockets::bind_at`). Its answers to workspaces are let through by what
/// only they have: from the resolver's or the proxy's port, to a
/// workspace address, on an established flow. The process cannot make
/// another socket on those ports (no SO_REUSEADDR or SO_REUSEPORT under
/// its filter).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServicesFence {
    pub uid: u32,
    pub upstream: Vec<Ipv4Addr>,
    pub host: Vec<Ipv4Addr>,
}

/// The `output` chain for `fence`.
pub fn fence_rules(fence: &ServicesFence) -> Vec<Op> {
    let mut ops = vec![base("output", Hook::Output, 0, "filter", true)];
    let uid = || nft::skuid(fence.uid);
    for server in &fence.upstream {
        ops.push(rule(
            "output",
            vec![
                uid(),
                nft::ipv4(),
                nft::ip_addr_in(true, *server, 32),
                nft::l4proto(UDP),
                nft::dport(DNS_PORT),
            ],
            vec![Expr::Verdict(Verdict::Accept)],
            None,
        ));
    }
    // Its answers: the proxy's on the connections it accepted, the
    // resolver's to the queries it got.
    for (proto, port) in [(TCP, PROXY_PORT), (UDP, DNS_PORT)] {
        ops.push(rule(
            "output",
            vec![
                uid(),
                nft::ipv4(),
                nft::ip_addr_in(true, Ipv4Addr::from(POOL), POOL_PREFIX),
                nft::l4proto(proto),
                nft::sport(port),
                nft::ct_established(),
            ],
            vec![Expr::Verdict(Verdict::Accept)],
            None,
        ));
    }
    // Past its upstreams and its answers, only TCP (what the proxy opens).
    ops.push(rule(
        "output",
        vec![uid(), nft::l4proto_not(TCP)],
        vec![Expr::Counter, Expr::Verdict(Verdict::Drop)],
        Some(REFUSED),
    ));
    let closed = FORBIDDEN
        .iter()
        .copied()
        .chain(fence.host.iter().map(|h| (*h, 32)));
    for (net, prefix) in closed {
        ops.push(rule(
            "output",
            vec![uid(), nft::ipv4(), nft::ip_addr_in(true, net, prefix)],
            vec![Expr::Counter, Expr::Verdict(Verdict::Drop)],
            Some(REFUSED),
        ));
    }
    // Whoever's socket it is, what leaves port 53 goes only to a
    // workspace: the resolver's socket, bound by PID 1, must not become a
    // way out should it ever be handed over as root's. (Nothing else on
    // the box sends from port 53.)
    ops.push(rule(
        "output",
        vec![
            nft::ipv4(),
            nft::l4proto(UDP),
            nft::sport(DNS_PORT),
            nft::ip_addr_not_in(true, Ipv4Addr::from(POOL), POOL_PREFIX),
        ],
        vec![Expr::Counter, Expr::Verdict(Verdict::Drop)],
        Some(REFUSED),
    ));
    // It has no IPv6 sockets (its seccomp filter); nor any way out on it.
    ops.push(rule(
        "output",
        vec![uid(), nft::ipv6()],
        vec![Expr::Verdict(Verdict::Drop)],
        None,
    ));
    ops
}

/// One rule per CIDR entry and port, ending in `verdict`.
fn cidr_rules(chain: &str, egress: &Egress, verdict: Verdict) -> Vec<Op> {
    egress
        .cidrs
        .iter()
        .flat_map(|c| c.ports.iter().map(move |p| (c, *p)))
        .map(|(c, p)| {
            rule(
                chain,
                vec![
                    nft::ipv4(),
                    nft::ip_addr_in(true, c.net, c.prefix),
                    nft::l4proto(TCP),
                    nft::dport(p),
                ],
                vec![Expr::Verdict(verdict)],
                None,
            )
        })
        .collect()
}

fn workspace_rules(ws: &WsNet, opens: &[(Slot, u16)], answers: &[(Slot, u16)]) -> Vec<Op> {
    let n = ws.slot.0;
    let tap = ws.slot.tap();
    let (pre, input, fwd) = (format!("pre{n}"), format!("in{n}"), format!("fwd{n}"));
    let mut ops = vec![chain(&pre), chain(&input), chain(&fwd)];
    for (base_chain, own) in [("prerouting", &pre), ("input", &input), ("forward", &fwd)] {
        ops.push(rule(
            base_chain,
            vec![nft::iifname(&tap)],
            vec![Expr::GotoTo(own.clone())],
            None,
        ));
    }
    // Only its own source address: a guest that writes another
    // workspace's address (or anyone's) would otherwise be answered by the
    // resolver under that workspace's policy and have its traffic
    // masqueraded as the other's (issue 14, item 8).
    for own in [&input, &fwd] {
        ops.push(rule(
            own,
            vec![nft::ipv4(), nft::ip_saddr_not(ws.slot.guest())],
            vec![Expr::Counter, Expr::Verdict(Verdict::Drop)],
            Some(REFUSED),
        ));
    }
    // prerouting sees the first packet of each new flow only: the place
    // for the new-connection rate.
    ops.push(rule(
        &pre,
        vec![],
        vec![
            Expr::LimitOver(ws.connections_per_s.max(1)),
            Expr::Counter,
            Expr::Verdict(Verdict::Drop),
        ],
        Some(REFUSED),
    ));
    // prerouting: the box's own request endpoint (http://paddock.internal,
    // its gateway address, port 80: egress requests, net::requests) to the
    // proxy, whatever its allowlist; CIDR entries go straight on; domain
    // ports to the proxy.
    ops.push(rule(
        &pre,
        vec![
            nft::ipv4(),
            nft::ip_addr_in(true, ws.slot.host(), 32),
            nft::l4proto(TCP),
            nft::dport(REQUESTS_PORT),
        ],
        vec![Expr::Redirect(PROXY_PORT)],
        None,
    ));
    ops.extend(cidr_rules(&pre, &ws.egress, Verdict::Return));
    for p in ws.egress.domain_ports() {
        ops.push(rule(
            &pre,
            vec![nft::ipv4(), nft::l4proto(TCP), nft::dport(p)],
            vec![Expr::Redirect(PROXY_PORT)],
            None,
        ));
    }
    // input: its resolver, the proxy (after the redirect), replies.
    ops.push(rule(
        &input,
        vec![nft::ct_established()],
        vec![Expr::Verdict(Verdict::Accept)],
        None,
    ));
    // The proxy always: at least for the request endpoint.
    let services = vec![(UDP, DNS_PORT), (TCP, DNS_PORT), (TCP, PROXY_PORT)];
    for (proto, port) in services {
        ops.push(rule(
            &input,
            vec![
                nft::ipv4(),
                nft::ip_addr_in(true, ws.slot.host(), 32),
                nft::l4proto(proto),
                nft::dport(port),
            ],
            vec![Expr::Verdict(Verdict::Accept)],
            None,
        ));
    }
    ops.push(rule(
        &input,
        vec![],
        vec![Expr::Counter, Expr::Verdict(Verdict::Drop)],
        Some(REFUSED),
    ));
    // forward: its links first (the other workspace's address is in a
    // forbidden range), then another workspace is refused with a reset,
    // so a connection whose link was removed ends at its next packet.
    for (to, port) in opens {
        ops.push(rule(
            &fwd,
            vec![
                nft::oifname(&to.tap()),
                nft::ipv4(),
                nft::ip_addr_in(true, to.guest(), 32),
                nft::l4proto(TCP),
                nft::dport(*port),
            ],
            vec![Expr::Verdict(Verdict::Accept)],
            None,
        ));
    }
    // Answers on its published ports go back out (to the uplink only).
    for (port, _) in &ws.published {
        ops.push(rule(
            &fwd,
            vec![
                nft::oifname_not(&format!("{TAP_PREFIX}*")),
                nft::ipv4(),
                nft::l4proto(TCP),
                nft::sport(*port),
                nft::ct_established(),
            ],
            vec![Expr::Verdict(Verdict::Accept)],
            None,
        ));
    }
    for (from, port) in answers {
        ops.push(rule(
            &fwd,
            vec![
                nft::oifname(&from.tap()),
                nft::ipv4(),
                nft::l4proto(TCP),
                nft::sport(*port),
                nft::ct_established(),
            ],
            vec![Expr::Verdict(Verdict::Accept)],
            None,
        ));
    }
    ops.push(rule(
        &fwd,
        vec![
            nft::ipv4(),
            nft::ip_addr_in(true, Ipv4Addr::from(POOL), POOL_PREFIX),
            nft::l4proto(TCP),
        ],
        vec![Expr::Counter, Expr::RejectTcpReset],
        Some(REFUSED),
    ));
    // Then the forbidden ranges, whatever the entries say.
    for (net, prefix) in FORBIDDEN {
        ops.push(rule(
            &fwd,
            vec![nft::ipv4(), nft::ip_addr_in(true, net, prefix)],
            vec![Expr::Counter, Expr::Verdict(Verdict::Drop)],
            Some(REFUSED),
        ));
    }
    ops.extend(cidr_rules(&fwd, &ws.egress, Verdict::Accept));
    ops.push(rule(
        &fwd,
        vec![],
        vec![Expr::Counter, Expr::Verdict(Verdict::Drop)],
        Some(REFUSED),
    ));
    ops
}

/// The firewall as host-init keeps it: the workspaces it knows and what
/// their chains counted before the last rebuild reset them.
pub struct Firewall {
    nl: Netlink,
    workspaces: BTreeMap<String, WsNet>,
    links: Vec<Link>,
    refused_before: BTreeMap<String, u64>,
    fence: ServicesFence,
}

static FIREWALL: Mutex<Option<Firewall>> = Mutex::new(None);

fn with<T>(f: impl FnOnce(&mut Firewall) -> Result<T, NftError>) -> Result<T, NftError> {
    let mut g = FIREWALL.lock().unwrap_or_else(|e| e.into_inner());
    match g.as_mut() {
        Some(fw) => f(fw),
        None => Err(NftError::NoAnswer("the firewall (not started)".into())),
    }
}

/// The firewall's lock, held as a rebuild holds it (tests of what must
/// not wait for one).
#[cfg(test)]
pub fn hold_for_test() -> std::sync::MutexGuard<'static, Option<Firewall>> {
    FIREWALL.lock().unwrap_or_else(|e| e.into_inner())
}

impl Firewall {
    fn refused_now(&mut self, ws: &WsNet) -> u64 {
        let n = ws.slot.0;
        let mut total = 0;
        for c in [format!("pre{n}"), format!("in{n}"), format!("fwd{n}")] {
            if let Ok(cs) = self.nl.counters(TABLE, &c) {
                total += cs
                    .iter()
                    .filter(|(t, _, _)| t == REFUSED)
                    .map(|(_, p, _)| p)
                    .sum::<u64>();
            }
        }
        total
    }

    fn sync(&mut self) -> Result<(), NftError> {
        // A rebuild resets the counters: bank them first.
        let known: Vec<WsNet> = self.workspaces.values().cloned().collect();
        for ws in &known {
            let now = self.refused_now(ws);
            *self.refused_before.entry(ws.id.clone()).or_default() += now;
        }
        let mut ops = ruleset(&known, &self.links);
        ops.extend(fence_rules(&self.fence));
        self.nl.apply(TABLE, &ops)
    }
}

/// Installs the empty table (workspaces reach nothing; the network
/// services process, as `services_uid`, reaches no upstream yet) and turns
/// on forwarding; once, at boot, before any workspace runs.
pub fn start(services_uid: u32) -> Result<(), NftError> {
    let mut nl = Netlink::open()?;
    let fence = ServicesFence {
        uid: services_uid,
        ..ServicesFence::default()
    };
    let mut ops = ruleset(&[], &[]);
    ops.extend(fence_rules(&fence));
    nl.apply(TABLE, &ops)?;
    for (path, value) in [
        ("/proc/sys/net/ipv4/ip_forward", "1"),
        // Workspaces have no IPv6; the host does not route it for them.
        ("/proc/sys/net/ipv6/conf/all/forwarding", "0"),
    ] {
        let _ = std::fs::write(path, value);
    }
    *FIREWALL.lock().unwrap_or_else(|e| e.into_inner()) = Some(Firewall {
        nl,
        workspaces: BTreeMap::new(),
        links: Vec::new(),
        refused_before: BTreeMap::new(),
        fence,
    });
    Ok(())
}

/// The upstream resolvers the network services process may ask, and the
/// host's own addresses it may never reach; in force when this returns.
pub fn set_services_fence(upstream: &[Ipv4Addr], host: &[Ipv4Addr]) -> Result<(), NftError> {
    with(|fw| {
        let old = fw.fence.clone();
        fw.fence.upstream = upstream.to_vec();
        fw.fence.host = host.to_vec();
        let r = fw.sync();
        if r.is_err() {
            fw.fence = old;
        }
        r
    })
}

/// Adds a workspace or replaces its policy; in force when this returns.
pub fn set(ws: WsNet) -> Result<(), NftError> {
    let ticket = with(|fw| {
        let old = fw.workspaces.insert(ws.id.clone(), ws.clone());
        if let Err(e) = fw.sync() {
            // The kernel kept the old table; so does our picture of it.
            match old {
                Some(o) => fw.workspaces.insert(ws.id.clone(), o),
                None => fw.workspaces.remove(&ws.id),
            };
            return Err(e);
        }
        // The resolver and the proxy follow once the packets do.
        Ok(crate::policy_table::publish(fw.workspaces.values()))
    })?;
    // Waited for without the firewall's lock: a slow or stuck network
    // services process holds up only this call.
    if let Some(t) = ticket {
        t.wait();
    }
    Ok(())
}

/// Replaces the set of links; in force when this returns.
pub fn set_links(links: Vec<Link>) -> Result<(), NftError> {
    with(|fw| {
        let old = std::mem::replace(&mut fw.links, links);
        let r = fw.sync();
        if r.is_err() {
            fw.links = old;
        }
        r
    })
}

pub fn remove(id: &str) -> Result<(), NftError> {
    let (ticket, synced) = with(|fw| {
        if fw.workspaces.remove(id).is_none() {
            return Ok((None, Ok(())));
        }
        // Its lookups and connections are cut in the same breath as its
        // packets, both in force when this returns (quarantine relies on
        // it); the push goes first, as refusing early is never a hole.
        let ticket = crate::policy_table::publish(fw.workspaces.values());
        fw.refused_before.remove(id);
        Ok((ticket, fw.sync()))
    })?;
    if let Some(t) = ticket {
        t.wait();
    }
    synced
}

/// Packets the firewall refused from this workspace, since it started.
pub fn refused(id: &str) -> u64 {
    with(|fw| {
        let Some(ws) = fw.workspaces.get(id).cloned() else {
            return Ok(0);
        };
        Ok(fw.refused_before.get(id).copied().unwrap_or(0) + fw.refused_now(&ws))
    })
    .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{CheckEgress as _, EgressRequest};

    #[test]
    fn slots_map_to_their_own_slash_30() {
        let s = Slot::new(3).expect("slot");
        assert_eq!(s.tap(), "pdk3");
        assert_eq!(s.host(), Ipv4Addr::new(10, 200, 0, 13));
        assert_eq!(s.guest(), Ipv4Addr::new(10, 200, 0, 14));
        assert_eq!(Slot::of_guest(s.guest()), Some(s));
        assert_eq!(Slot::of_guest(s.host()), None);
        assert_eq!(Slot::of_guest(Ipv4Addr::new(10, 199, 0, 2)), None);
        assert!(Slot::new(MAX_SLOTS).is_none());
    }

    #[test]
    fn a_link_is_in_force_only_while_both_ends_are() {
        let ws = |id: &str, n: u32| WsNet {
            id: id.into(),
            slot: Slot(n),
            egress: Egress::default(),
            connections_per_s: 10,
            published: Vec::new(),
        };
        let link = Link {
            id: "lnk".into(),
            from: "a".into(),
            to: "b".into(),
            port: 8080,
        };
        let accepts_to_b = |ops: &[Op]| {
            ops.iter().any(|o| {
                matches!(o, Op::AddRule(r) if r.chain == "fwd1"
                    && r.exprs.contains(&Expr::Verdict(Verdict::Accept))
                    && r.exprs.contains(&Expr::Cmp { eq: true, data: {
                        let mut d = b"pdk2".to_vec();
                        d.resize(16, 0);
                        d
                    } }))
            })
        };
        let both = ruleset(&[ws("a", 1), ws("b", 2)], std::slice::from_ref(&link));
        assert!(accepts_to_b(&both));
        // b quarantined (its entry removed): a's opening to it goes too.
        let one = ruleset(&[ws("a", 1)], std::slice::from_ref(&link));
        assert!(!accepts_to_b(&one));
        assert!(!accepts_to_b(&ruleset(&[ws("a", 1), ws("b", 2)], &[])));
    }

    #[test]
    fn the_services_fence_lets_through_only_proxy_answers_then_drops_the_forbidden() {
        let fence = ServicesFence {
            uid: 901,
            upstream: vec![Ipv4Addr::new(10, 0, 2, 3)],
            host: vec![Ipv4Addr::new(198, 51, 100, 20)],
        };
        let rules: Vec<Rule> = fence_rules(&fence)
            .into_iter()
            .filter_map(|op| match op {
                Op::AddRule(r) => Some(r),
                _ => None,
            })
            .collect();
        let accepts = |r: &Rule| r.exprs.last() == Some(&Expr::Verdict(Verdict::Accept));
        let has =
            |r: &Rule, part: Vec<Expr>| r.exprs.windows(part.len()).any(|w| w == part.as_slice());
        // Every accept comes before any drop, and is the uid's.
        let first_drop = rules.iter().position(|r| !accepts(r)).expect("drops");
        assert!(rules[first_drop..].iter().all(|r| !accepts(r)));
        let allowed: Vec<&Rule> = rules[..first_drop].iter().collect();
        assert!(allowed.iter().all(|r| has(r, nft::skuid(901))));
        assert_eq!(
            allowed.len(),
            3,
            "the upstream, the proxy's answers, the resolver's answers"
        );
        assert!(has(allowed[0], nft::dport(DNS_PORT)) && has(allowed[0], nft::l4proto(UDP)));
        // The proxy's answers: from its port, to a workspace, established.
        assert!(has(allowed[1], nft::sport(PROXY_PORT)));
        assert!(has(allowed[1], nft::ct_established()));
        assert!(has(
            allowed[1],
            nft::ip_addr_in(true, Ipv4Addr::from(POOL), POOL_PREFIX)
        ));
        assert!(has(allowed[2], nft::sport(DNS_PORT)) && has(allowed[2], nft::ct_established()));
        // Then: anything not TCP, each forbidden range, the host's
        // address; and port 53 sends only to workspaces, whoever's socket.
        assert_eq!(rules.len() - first_drop, 1 + FORBIDDEN.len() + 1 + 1 + 1);
        let from_resolver: Vec<&Rule> = rules[first_drop..]
            .iter()
            .filter(|r| has(r, nft::sport(DNS_PORT)))
            .collect();
        assert_eq!(from_resolver.len(), 1);
        assert!(
            !has(from_resolver[0], nft::skuid(901)),
            "whoever's socket it is"
        );
    }

    #[test]
    fn a_workspace_without_entries_gets_no_opening() {
        let ws = WsNet {
            id: "w".into(),
            slot: Slot(0),
            egress: Egress::default(),
            connections_per_s: 10,
            published: Vec::new(),
        };
        let ops = workspace_rules(&ws, &[], &[]);
        let accepts_forward = ops.iter().any(|o| matches!(o, Op::AddRule(r) if r.chain == "fwd0" && r.exprs.contains(&Expr::Verdict(Verdict::Accept))));
        let redirects: Vec<&Rule> = ops
            .iter()
            .filter_map(|o| match o {
                Op::AddRule(r) if r.exprs.iter().any(|e| matches!(e, Expr::Redirect(_))) => Some(r),
                _ => None,
            })
            .collect();
        assert!(!accepts_forward);
        // Only the box's own request endpoint, on its gateway address.
        assert_eq!(redirects.len(), 1);
        let to_gateway = nft::ip_addr_in(true, ws.slot.host(), 32);
        assert!(redirects[0]
            .exprs
            .windows(to_gateway.len())
            .any(|w| w == to_gateway.as_slice()));
        let egress = EgressRequest {
            domains: vec!["allowed.test".into()],
            cidrs: vec!["198.51.100.0/24:8080".into()],
        }
        .check()
        .expect("valid");
        let ops = workspace_rules(&WsNet { egress, ..ws }, &[], &[]);
        let redirects = ops.iter().filter(|o| matches!(o, Op::AddRule(r) if r.exprs.iter().any(|e| matches!(e, Expr::Redirect(_))))).count();
        assert_eq!(
            redirects, 3,
            "the request endpoint and the two domain ports"
        );
    }
}
