//! nf_tables over netlink, written by hand: the handful of objects and
//! expressions the workspace firewall uses, sent as one atomic batch (the
//! kernel applies all of it or none), and rule counters read back by dump.
//! There is no `nft` binary in the image and no C library behind this.
//!
//! Wire format: linux/netfilter/nf_tables.h and nfnetlink.h. Every number
//! nf_tables takes is big-endian; netlink's own headers are host-endian.

mod encode;
mod netlink;

pub use netlink::Netlink;

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("netlink socket: {0}")]
    Socket(std::io::Error),
    #[error("nf_tables refused {what}: {source}")]
    Refused {
        what: String,
        source: std::io::Error,
    },
    #[error("nf_tables: no answer to {0}")]
    NoAnswer(String),
    #[error("nf_tables: malformed reply: {0}")]
    Malformed(&'static str),
}

const NETLINK_NETFILTER: i32 = 12;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NLA_F_NESTED: u16 = 0x8000;

const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_DELCHAIN: u16 = 5;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_GETRULE: u16 = 7;
const NFT_MSG_DELRULE: u16 = 8;

pub const NFPROTO_INET: u8 = 1;
const NFPROTO_IPV4: u8 = 2;

/// Netfilter hooks (NF_INET_*).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Prerouting = 0,
    Input = 1,
    Forward = 2,
    Output = 3,
    Postrouting = 4,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Drop,
    Accept,
    Return,
    Jump(&'static str),
    Goto(&'static str),
}

/// One expression of a rule. Registers: NFT_REG_1 (16 bytes) for data,
/// NFT_REG_VERDICT for verdicts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr {
    /// Load meta `key` into reg 1.
    Meta(MetaKey),
    /// Load `len` bytes at `offset` of the network (IPv4) or transport header.
    Payload {
        transport: bool,
        offset: u32,
        len: u32,
    },
    /// reg1 = reg1 & mask (len = mask length).
    Mask(Vec<u8>),
    /// Compare reg 1 (its first `data.len()` bytes) with `data`.
    Cmp {
        eq: bool,
        data: Vec<u8>,
    },
    /// Load the connection-tracking state bits into reg 1.
    CtState,
    Counter,
    /// Redirect to a local port (nat chains only).
    Redirect(u16),
    Masquerade,
    /// Destination NAT to an IPv4 address and port (nat chains only).
    Dnat(std::net::Ipv4Addr, u16),
    /// TCP reset to the sender.
    RejectTcpReset,
    /// Matches packets past `per_second` (a burst of as many allowed).
    LimitOver(u64),
    Verdict(Verdict),
    /// Dynamic chain names (per-workspace) need owned strings.
    JumpTo(String),
    GotoTo(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaKey {
    IifName = 6,
    OifName = 7,
    NfProto = 15,
    L4Proto = 16,
    /// The uid owning the packet's socket (locally made packets only).
    SkUid = 10,
}

/// connection-tracking state bits (NF_CT_STATE_*).
pub const CT_ESTABLISHED: u32 = 2;
pub const CT_RELATED: u32 = 4;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub chain: String,
    pub exprs: Vec<Expr>,
    /// Stored with the rule (NFTA_RULE_USERDATA); `counters` finds rules by it.
    pub tag: Option<String>,
}

/// What one batch does, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    AddTable,
    DeleteTable,
    AddChain {
        name: String,
        /// Base chains: hook, priority, "filter"/"nat", default-accept?
        base: Option<(Hook, i32, &'static str, bool)>,
    },
    /// Removes every rule of the chain.
    FlushChain(String),
    DeleteChain(String),
    AddRule(Rule),
}

// ---- rule-building helpers, so policies read like nft syntax ----

/// `meta nfproto ipv4`
pub fn ipv4() -> Vec<Expr> {
    vec![
        Expr::Meta(MetaKey::NfProto),
        Expr::Cmp {
            eq: true,
            data: vec![NFPROTO_IPV4],
        },
    ]
}

/// `meta skuid UID`: the packet's socket belongs to `uid`.
pub fn skuid(uid: u32) -> Vec<Expr> {
    vec![
        Expr::Meta(MetaKey::SkUid),
        Expr::Cmp {
            eq: true,
            // The kernel loads the uid in host order.
            data: uid.to_ne_bytes().to_vec(),
        },
    ]
}

/// `meta nfproto ipv6`
pub fn ipv6() -> Vec<Expr> {
    vec![
        Expr::Meta(MetaKey::NfProto),
        Expr::Cmp {
            eq: true,
            data: vec![10],
        },
    ]
}

/// Interface name, exact (`name`) or by prefix (`name*`).
fn ifname(key: MetaKey, pattern: &str, eq: bool) -> Vec<Expr> {
    let data = match pattern.strip_suffix('*') {
        Some(prefix) => prefix.as_bytes().to_vec(),
        None => {
            let mut d = pattern.as_bytes().to_vec();
            d.resize(16, 0);
            d
        }
    };
    vec![Expr::Meta(key), Expr::Cmp { eq, data }]
}

pub fn iifname(pattern: &str) -> Vec<Expr> {
    ifname(MetaKey::IifName, pattern, true)
}

pub fn oifname(pattern: &str) -> Vec<Expr> {
    ifname(MetaKey::OifName, pattern, true)
}

pub fn iifname_not(pattern: &str) -> Vec<Expr> {
    ifname(MetaKey::IifName, pattern, false)
}

pub fn oifname_not(pattern: &str) -> Vec<Expr> {
    ifname(MetaKey::OifName, pattern, false)
}

/// `meta l4proto N` (6 tcp, 17 udp, 1 icmp).
pub fn l4proto(proto: u8) -> Vec<Expr> {
    vec![
        Expr::Meta(MetaKey::L4Proto),
        Expr::Cmp {
            eq: true,
            data: vec![proto],
        },
    ]
}

/// `ip daddr NET/PREFIX` (or saddr); the caller has matched IPv4.
pub fn ip_addr_in(dest: bool, net: std::net::Ipv4Addr, prefix: u8) -> Vec<Expr> {
    let mask = u32::MAX
        .checked_shl(32 - u32::from(prefix.min(32)))
        .unwrap_or(0);
    let mut v = vec![Expr::Payload {
        transport: false,
        offset: if dest { 16 } else { 12 },
        len: 4,
    }];
    if prefix < 32 {
        v.push(Expr::Mask(mask.to_be_bytes().to_vec()));
    }
    v.push(Expr::Cmp {
        eq: true,
        data: (u32::from(net) & mask).to_be_bytes().to_vec(),
    });
    v
}

/// `meta l4proto != PROTO`
pub fn l4proto_not(proto: u8) -> Vec<Expr> {
    let mut v = l4proto(proto);
    if let Some(Expr::Cmp { eq, .. }) = v.last_mut() {
        *eq = false;
    }
    v
}

/// `ip daddr` (`dest`) or `ip saddr` not in NET/PREFIX; the caller has
/// matched IPv4.
pub fn ip_addr_not_in(dest: bool, net: std::net::Ipv4Addr, prefix: u8) -> Vec<Expr> {
    let mut v = ip_addr_in(dest, net, prefix);
    if let Some(Expr::Cmp { eq, .. }) = v.last_mut() {
        *eq = false;
    }
    v
}

/// `ip saddr != ADDR`; the caller has matched IPv4.
pub fn ip_saddr_not(addr: std::net::Ipv4Addr) -> Vec<Expr> {
    vec![
        Expr::Payload {
            transport: false,
            offset: 12,
            len: 4,
        },
        Expr::Cmp {
            eq: false,
            data: addr.octets().to_vec(),
        },
    ]
}

/// `th dport P` (TCP and UDP share the offset); the caller matched l4proto.
pub fn dport(port: u16) -> Vec<Expr> {
    vec![
        Expr::Payload {
            transport: true,
            offset: 2,
            len: 2,
        },
        Expr::Cmp {
            eq: true,
            data: port.to_be_bytes().to_vec(),
        },
    ]
}

/// `th sport P`; the caller matched l4proto.
pub fn sport(port: u16) -> Vec<Expr> {
    vec![
        Expr::Payload {
            transport: true,
            offset: 0,
            len: 2,
        },
        Expr::Cmp {
            eq: true,
            data: port.to_be_bytes().to_vec(),
        },
    ]
}

/// `ct state established,related`
pub fn ct_established() -> Vec<Expr> {
    vec![
        Expr::CtState,
        Expr::Mask((CT_ESTABLISHED | CT_RELATED).to_ne_bytes().to_vec()),
        Expr::Cmp {
            eq: false,
            data: 0u32.to_ne_bytes().to_vec(),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::encode::{encode_expr, nft_kind, Msg};
    use super::netlink::{attrs, messages, rule_counter};
    use super::*;

    #[test]
    fn attributes_are_padded_and_nests_sized() {
        let mut m = Msg::new(nft_kind(NFT_MSG_NEWRULE), 0, 7, NFPROTO_INET, 0);
        m.str(1, "t").begin(4);
        encode_expr(&mut m, &Expr::Counter);
        m.end();
        let buf = m.finish();
        assert_eq!(buf.len() % 4, 0);
        assert_eq!(
            u32::from_ne_bytes(buf[..4].try_into().expect("len")) as usize,
            buf.len()
        );
        let msgs = messages(&buf).expect("parse");
        assert_eq!(msgs.len(), 1);
        let top = attrs(&msgs[0].2[4..]).expect("attrs");
        assert_eq!(top[0], (1, &b"t\0"[..]));
        assert_eq!(top[1].0, 4);
    }

    #[test]
    fn hostile_replies_are_errors_not_panics() {
        assert!(messages(&[0xff; 20]).is_err());
        assert!(attrs(&[200, 0, 1, 0]).is_err());
        assert!(rule_counter(&[8, 0, 4, 0, 3, 0, 1, 0]).is_err());
        assert_eq!(messages(&[1, 2, 3]).expect("short is empty").len(), 0);
    }

    #[test]
    fn prefixes_compile_to_masks() {
        let e = ip_addr_in(true, "10.1.2.3".parse().expect("ip"), 8);
        assert_eq!(e[1], Expr::Mask(vec![255, 0, 0, 0]));
        assert_eq!(
            e[2],
            Expr::Cmp {
                eq: true,
                data: vec![10, 0, 0, 0]
            }
        );
        let e = ip_addr_in(true, "0.0.0.0".parse().expect("ip"), 0);
        assert_eq!(e[1], Expr::Mask(vec![0, 0, 0, 0]));
        assert_eq!(
            iifname("pdk*")[1],
            Expr::Cmp {
                eq: true,
                data: b"pdk".to_vec()
            }
        );
    }
}
