//! nf_tables over netlink, written by hand: the handful of objects and
//! expressions the workspace firewall uses, sent as one atomic batch (the
//! kernel applies all of it or none), and rule counters read back by dump.
//! There is no `nft` binary in the image and no C library behind this.
//!
//! Wire format: linux/netfilter/nf_tables.h and nfnetlink.h. Every number
//! nf_tables takes is big-endian; netlink's own headers are host-endian.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

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

// ---- netlink encoding ----

struct Msg {
    buf: Vec<u8>,
    nests: Vec<usize>,
}

impl Msg {
    fn new(kind: u16, flags: u16, seq: u32, family: u8, res_id: u16) -> Msg {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(&[family, 0]);
        buf.extend_from_slice(&res_id.to_be_bytes());
        Msg {
            buf,
            nests: Vec::new(),
        }
    }

    fn attr(&mut self, kind: u16, data: &[u8]) -> &mut Self {
        let len = 4 + data.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(data);
        while self.buf.len() % 4 != 0 {
            self.buf.push(0);
        }
        self
    }

    fn str(&mut self, kind: u16, s: &str) -> &mut Self {
        let mut d = s.as_bytes().to_vec();
        d.push(0);
        self.attr(kind, &d)
    }

    fn u32(&mut self, kind: u16, v: u32) -> &mut Self {
        self.attr(kind, &v.to_be_bytes())
    }

    fn begin(&mut self, kind: u16) -> &mut Self {
        self.nests.push(self.buf.len());
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        self
    }

    fn end(&mut self) -> &mut Self {
        if let Some(at) = self.nests.pop() {
            let len = (self.buf.len() - at) as u16;
            self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
        }
        self
    }

    fn finish(mut self) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

const REG_VERDICT: u32 = 0;
const REG_1: u32 = 1;
const REG_2: u32 = 2;

fn data_value(m: &mut Msg, kind: u16, value: &[u8]) {
    m.begin(kind).attr(1, value).end(); // NFTA_DATA_VALUE
}

fn verdict_code(v: &Verdict) -> (i32, Option<&str>) {
    match v {
        Verdict::Drop => (0, None),
        Verdict::Accept => (1, None),
        Verdict::Return => (-5, None),
        Verdict::Jump(c) => (-3, Some(c)),
        Verdict::Goto(c) => (-4, Some(c)),
    }
}

fn immediate_verdict(m: &mut Msg, code: i32, chain: Option<&str>) {
    m.str(1, "immediate").begin(2);
    m.u32(1, REG_VERDICT); // NFTA_IMMEDIATE_DREG
    m.begin(2).begin(2); // NFTA_IMMEDIATE_DATA > NFTA_DATA_VERDICT
    m.u32(1, code as u32); // NFTA_VERDICT_CODE
    if let Some(c) = chain {
        m.str(2, c); // NFTA_VERDICT_CHAIN
    }
    m.end().end().end();
}

fn encode_expr(m: &mut Msg, e: &Expr) {
    m.begin(1); // NFTA_LIST_ELEM
    match e {
        Expr::Meta(key) => {
            m.str(1, "meta").begin(2);
            m.u32(1, REG_1).u32(2, *key as u32);
            m.end();
        }
        Expr::Payload {
            transport,
            offset,
            len,
        } => {
            m.str(1, "payload").begin(2);
            m.u32(1, REG_1)
                .u32(2, if *transport { 2 } else { 1 })
                .u32(3, *offset)
                .u32(4, *len);
            m.end();
        }
        Expr::Mask(mask) => {
            m.str(1, "bitwise").begin(2);
            m.u32(1, REG_1).u32(2, REG_1).u32(3, mask.len() as u32);
            data_value(m, 4, mask);
            data_value(m, 5, &vec![0u8; mask.len()]);
            m.end();
        }
        Expr::Cmp { eq, data } => {
            m.str(1, "cmp").begin(2);
            m.u32(1, REG_1).u32(2, if *eq { 0 } else { 1 });
            data_value(m, 3, data);
            m.end();
        }
        Expr::CtState => {
            m.str(1, "ct").begin(2);
            m.u32(1, REG_1).u32(2, 0); // NFT_CT_STATE
            m.end();
        }
        Expr::Counter => {
            m.str(1, "counter").begin(2);
            m.attr(1, &0u64.to_be_bytes()).attr(2, &0u64.to_be_bytes());
            m.end();
        }
        Expr::Redirect(port) => {
            // immediate reg1 = port; redir to it.
            m.str(1, "immediate").begin(2);
            m.u32(1, REG_1);
            data_value(m, 2, &port.to_be_bytes());
            m.end().end();
            m.begin(1);
            m.str(1, "redir").begin(2);
            // NFTA_REDIR_REG_PROTO_MIN, MAX; NF_NAT_RANGE_PROTO_SPECIFIED.
            m.u32(1, REG_1).u32(2, REG_1).u32(3, 2);
            m.end();
        }
        Expr::Masquerade => {
            m.str(1, "masq");
        }
        Expr::Dnat(addr, port) => {
            // reg1 = address, reg2 = port; nat DNAT ipv4 to them.
            m.str(1, "immediate").begin(2);
            m.u32(1, REG_1);
            data_value(m, 2, &addr.octets());
            m.end().end();
            m.begin(1);
            m.str(1, "immediate").begin(2);
            m.u32(1, REG_2);
            data_value(m, 2, &port.to_be_bytes());
            m.end().end();
            m.begin(1);
            m.str(1, "nat").begin(2);
            // NFT_NAT_DNAT, NFPROTO_IPV4, addr min, proto min,
            // NF_NAT_RANGE_MAP_IPS | NF_NAT_RANGE_PROTO_SPECIFIED.
            m.u32(1, 1)
                .u32(2, u32::from(NFPROTO_IPV4))
                .u32(3, REG_1)
                .u32(5, REG_2)
                .u32(7, 3);
            m.end();
        }
        Expr::RejectTcpReset => {
            m.str(1, "reject").begin(2);
            m.u32(1, 1); // NFT_REJECT_TCP_RST
            m.end();
        }
        Expr::LimitOver(rate) => {
            m.str(1, "limit").begin(2);
            m.attr(1, &rate.to_be_bytes()).attr(2, &1u64.to_be_bytes());
            // burst, NFT_LIMIT_PKTS, NFT_LIMIT_F_INV ("over")
            m.u32(3, u32::try_from(*rate).unwrap_or(u32::MAX))
                .u32(4, 0)
                .u32(5, 1);
            m.end();
        }
        Expr::Verdict(v) => {
            let (code, chain) = verdict_code(v);
            immediate_verdict(m, code, chain);
        }
        Expr::JumpTo(c) => immediate_verdict(m, -3, Some(c)),
        Expr::GotoTo(c) => immediate_verdict(m, -4, Some(c)),
    }
    m.end();
}

fn nft_kind(cmd: u16) -> u16 {
    (NFNL_SUBSYS_NFTABLES << 8) | cmd
}

fn encode_op(op: &Op, table: &str, seq: u32) -> Vec<u8> {
    let ack = NLM_F_REQUEST | NLM_F_ACK;
    match op {
        Op::AddTable => {
            let mut m = Msg::new(
                nft_kind(NFT_MSG_NEWTABLE),
                ack | NLM_F_CREATE,
                seq,
                NFPROTO_INET,
                0,
            );
            m.str(1, table);
            m.finish()
        }
        Op::DeleteTable => {
            let mut m = Msg::new(nft_kind(NFT_MSG_DELTABLE), ack, seq, NFPROTO_INET, 0);
            m.str(1, table);
            m.finish()
        }
        Op::AddChain { name, base } => {
            let mut m = Msg::new(
                nft_kind(NFT_MSG_NEWCHAIN),
                ack | NLM_F_CREATE,
                seq,
                NFPROTO_INET,
                0,
            );
            m.str(1, table).str(3, name);
            if let Some((hook, prio, kind, accept)) = base {
                m.begin(4).u32(1, *hook as u32).u32(2, *prio as u32).end();
                m.u32(5, u32::from(*accept)); // NFTA_CHAIN_POLICY
                m.str(7, kind); // NFTA_CHAIN_TYPE
            }
            m.finish()
        }
        Op::FlushChain(name) => {
            let mut m = Msg::new(nft_kind(NFT_MSG_DELRULE), ack, seq, NFPROTO_INET, 0);
            m.str(1, table).str(2, name);
            m.finish()
        }
        Op::DeleteChain(name) => {
            let mut m = Msg::new(nft_kind(NFT_MSG_DELCHAIN), ack, seq, NFPROTO_INET, 0);
            m.str(1, table).str(3, name);
            m.finish()
        }
        Op::AddRule(rule) => {
            let mut m = Msg::new(
                nft_kind(NFT_MSG_NEWRULE),
                ack | NLM_F_CREATE | NLM_F_APPEND,
                seq,
                NFPROTO_INET,
                0,
            );
            m.str(1, table).str(2, &rule.chain);
            m.begin(4);
            for e in &rule.exprs {
                encode_expr(&mut m, e);
            }
            m.end();
            if let Some(tag) = &rule.tag {
                m.attr(7, tag.as_bytes());
            }
            m.finish()
        }
    }
}

fn describe(op: &Op) -> String {
    match op {
        Op::AddTable => "adding the table".into(),
        Op::DeleteTable => "deleting the table".into(),
        Op::AddChain { name, .. } => format!("adding chain {name}"),
        Op::FlushChain(name) => format!("flushing chain {name}"),
        Op::DeleteChain(name) => format!("deleting chain {name}"),
        Op::AddRule(r) => format!("a rule in {} ({:?})", r.chain, r.exprs),
    }
}

// ---- the socket ----

pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

impl Netlink {
    pub fn open() -> Result<Netlink, NftError> {
        // SAFETY: plain socket(2); the result is checked and owned below.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                NETLINK_NETFILTER,
            )
        };
        if fd < 0 {
            return Err(NftError::Socket(std::io::Error::last_os_error()));
        }
        // SAFETY: fd is a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let tv = libc::timeval {
            tv_sec: 5,
            tv_usec: 0,
        };
        // SAFETY: setsockopt with a pointer to a local timeval of the right size.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        Ok(Netlink { fd, seq: 1 })
    }

    fn send(&self, buf: &[u8]) -> Result<(), NftError> {
        // SAFETY: send from a buffer we own, its length given.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), 0) };
        if n < 0 || n as usize != buf.len() {
            return Err(NftError::Socket(std::io::Error::last_os_error()));
        }
        Ok(())
    }

    fn recv(&self, buf: &mut [u8]) -> Result<usize, NftError> {
        // SAFETY: recv into a buffer we own, its length given.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(NftError::Socket(std::io::Error::last_os_error()));
        }
        Ok(n as usize)
    }

    /// Applies `ops` to `table` atomically: all of them or, on the first
    /// refusal, none (the kernel aborts the whole batch).
    pub fn apply(&mut self, table: &str, ops: &[Op]) -> Result<(), NftError> {
        if ops.is_empty() {
            return Ok(());
        }
        let first = self.seq;
        let mut buf = Msg::new(
            NFNL_MSG_BATCH_BEGIN,
            NLM_F_REQUEST,
            first,
            0,
            NFNL_SUBSYS_NFTABLES,
        )
        .finish();
        for (i, op) in ops.iter().enumerate() {
            buf.extend(encode_op(op, table, first + 1 + i as u32));
        }
        let last = first + ops.len() as u32;
        buf.extend(
            Msg::new(
                NFNL_MSG_BATCH_END,
                NLM_F_REQUEST,
                last + 1,
                0,
                NFNL_SUBSYS_NFTABLES,
            )
            .finish(),
        );
        self.seq = last + 2;
        self.send(&buf)?;
        // One ack per operation; an error names the operation by its seq.
        let mut acked = 0usize;
        let mut rbuf = vec![0u8; 1 << 16];
        while acked < ops.len() {
            let n = match self.recv(&mut rbuf) {
                Ok(n) => n,
                Err(NftError::Socket(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    return Err(NftError::NoAnswer(format!(
                        "a batch of {} operations",
                        ops.len()
                    )))
                }
                Err(e) => return Err(e),
            };
            for (kind, seq, payload) in messages(&rbuf[..n])? {
                // Only this batch's answers count: anything older (the acks
                // of a batch that failed part way) is left behind.
                if kind != NLMSG_ERROR || !(first + 1..=last).contains(&seq) {
                    continue;
                }
                let code = payload
                    .get(..4)
                    .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                    .ok_or(NftError::Malformed("short error message"))?;
                if code != 0 {
                    let what = seq
                        .checked_sub(first + 1)
                        .and_then(|i| ops.get(i as usize))
                        .map(describe)
                        .unwrap_or_else(|| format!("the batch (seq {seq})"));
                    return Err(NftError::Refused {
                        what,
                        source: std::io::Error::from_raw_os_error(-code),
                    });
                }
                acked += 1;
            }
        }
        Ok(())
    }

    /// Packets and bytes of every counter in `chain`'s rules, by the rules' tags.
    pub fn counters(
        &mut self,
        table: &str,
        chain: &str,
    ) -> Result<Vec<(String, u64, u64)>, NftError> {
        let seq = self.seq;
        self.seq += 1;
        let mut m = Msg::new(
            nft_kind(NFT_MSG_GETRULE),
            NLM_F_REQUEST | NLM_F_DUMP,
            seq,
            NFPROTO_INET,
            0,
        );
        m.str(1, table).str(2, chain);
        self.send(&m.finish())?;
        let mut out = Vec::new();
        let mut rbuf = vec![0u8; 1 << 16];
        loop {
            let n = self.recv(&mut rbuf)?;
            for (kind, got, payload) in messages(&rbuf[..n])? {
                if got != seq {
                    continue;
                }
                match kind {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => {
                        let code = payload
                            .get(..4)
                            .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                            .unwrap_or(-libc::EPROTO);
                        return Err(NftError::Refused {
                            what: format!("reading chain {chain}"),
                            source: std::io::Error::from_raw_os_error(-code),
                        });
                    }
                    k if k == nft_kind(NFT_MSG_NEWRULE) => {
                        if let Some(c) = rule_counter(payload.get(4..).unwrap_or_default())? {
                            out.push(c);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Splits a netlink datagram into (type, seq, payload) messages.
/// (type, seq, payload) of one netlink message.
type Message<'a> = (u16, u32, &'a [u8]);

fn messages(buf: &[u8]) -> Result<Vec<Message<'_>>, NftError> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at + 16 <= buf.len() {
        let len = u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as usize;
        if len < 16 || at + len > buf.len() {
            return Err(NftError::Malformed("message length"));
        }
        let kind = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
        let seq = u32::from_ne_bytes([buf[at + 8], buf[at + 9], buf[at + 10], buf[at + 11]]);
        out.push((kind, seq, &buf[at + 16..at + len]));
        at += (len + 3) & !3;
    }
    Ok(out)
}

/// Attributes of a nested block: (type without flags, payload).
fn attrs(mut buf: &[u8]) -> Result<Vec<(u16, &[u8])>, NftError> {
    let mut out = Vec::new();
    while buf.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([buf[0], buf[1]]));
        let kind = u16::from_ne_bytes([buf[2], buf[3]]) & 0x3fff;
        if len < 4 || len > buf.len() {
            return Err(NftError::Malformed("attribute length"));
        }
        out.push((kind, &buf[4..len]));
        buf = &buf[((len + 3) & !3).min(buf.len())..];
    }
    Ok(out)
}

fn be_u64(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(..8)?.try_into().ok()?))
}

/// A dumped rule's tag and its counter's packets and bytes, if it has both.
fn rule_counter(payload: &[u8]) -> Result<Option<(String, u64, u64)>, NftError> {
    let mut tag = None;
    let mut counter = None;
    for (kind, data) in attrs(payload)? {
        match kind {
            7 => tag = Some(String::from_utf8_lossy(data).to_string()),
            4 => {
                for (_, elem) in attrs(data)? {
                    let fields = attrs(elem)?;
                    let is_counter = fields
                        .iter()
                        .any(|(k, v)| *k == 1 && v.starts_with(b"counter"));
                    if !is_counter {
                        continue;
                    }
                    if let Some((_, d)) = fields.iter().find(|(k, _)| *k == 2) {
                        let inner = attrs(d)?;
                        let get = |k: u16| {
                            inner
                                .iter()
                                .find(|(x, _)| *x == k)
                                .and_then(|(_, v)| be_u64(v))
                        };
                        counter = Some((get(2).unwrap_or(0), get(1).unwrap_or(0)));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(match (tag, counter) {
        (Some(t), Some((packets, bytes))) => Some((t, packets, bytes)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
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
