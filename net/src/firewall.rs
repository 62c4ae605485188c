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

mod rules;

pub use crate::addressing::{Slot, DNS_PORT, MAX_SLOTS, POOL_PREFIX, PROXY_PORT, REQUESTS_PORT};
use crate::nft::{Netlink, NftError};
use rules::REFUSED;
pub use rules::{fence_rules, ruleset, Link, ServicesFence};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Mutex;

pub const TABLE: &str = "paddock";
/// A workspace's entry (the policy's, which the policy table reads too).
pub use crate::policy::WsNet;

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
    use super::rules::*;
    use super::*;
    use crate::addressing::POOL;
    use crate::nft::{self, Expr, Op, Rule, Verdict};
    use crate::policy::Egress;
    use crate::policy::FORBIDDEN;
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
