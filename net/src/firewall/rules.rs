//! The firewall's rules: the whole nf_tables table for a set of
//! workspaces and links, and the fence around the network services
//! process, as batches of operations (pure: nothing here touches the
//! kernel).

use super::WsNet;
use crate::addressing::{Slot, DNS_PORT, POOL, POOL_PREFIX, PROXY_PORT, REQUESTS_PORT, TAP_PREFIX};
use crate::nft::{self, Expr, Hook, Op, Rule, Verdict};
use crate::policy::{Egress, FORBIDDEN};
use std::net::Ipv4Addr;

pub(super) fn rule(chain: &str, parts: Vec<Vec<Expr>>, tail: Vec<Expr>, tag: Option<&str>) -> Op {
    let mut exprs: Vec<Expr> = parts.into_iter().flatten().collect();
    exprs.extend(tail);
    Op::AddRule(Rule {
        chain: chain.to_string(),
        exprs,
        tag: tag.map(str::to_string),
    })
}

pub(super) fn chain(name: &str) -> Op {
    Op::AddChain {
        name: name.to_string(),
        base: None,
    }
}

pub(super) fn base(name: &str, hook: Hook, prio: i32, kind: &'static str, accept: bool) -> Op {
    Op::AddChain {
        name: name.to_string(),
        base: Some((hook, prio, kind, accept)),
    }
}

pub(super) const TCP: u8 = 6;
pub(super) const UDP: u8 = 17;
pub(super) const REFUSED: &str = "refused";

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
pub(super) fn cidr_rules(chain: &str, egress: &Egress, verdict: Verdict) -> Vec<Op> {
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

pub(super) fn workspace_rules(
    ws: &WsNet,
    opens: &[(Slot, u16)],
    answers: &[(Slot, u16)],
) -> Vec<Op> {
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
