//! nf_tables messages as bytes: the netlink and nfnetlink headers, nested
//! attributes, and each object and expression the firewall uses.

use super::*;

pub(super) struct Msg {
    buf: Vec<u8>,
    nests: Vec<usize>,
}

impl Msg {
    pub(super) fn new(kind: u16, flags: u16, seq: u32, family: u8, res_id: u16) -> Msg {
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

    pub(super) fn attr(&mut self, kind: u16, data: &[u8]) -> &mut Self {
        let len = 4 + data.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(data);
        while self.buf.len() % 4 != 0 {
            self.buf.push(0);
        }
        self
    }

    pub(super) fn str(&mut self, kind: u16, s: &str) -> &mut Self {
        let mut d = s.as_bytes().to_vec();
        d.push(0);
        self.attr(kind, &d)
    }

    pub(super) fn u32(&mut self, kind: u16, v: u32) -> &mut Self {
        self.attr(kind, &v.to_be_bytes())
    }

    pub(super) fn begin(&mut self, kind: u16) -> &mut Self {
        self.nests.push(self.buf.len());
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        self
    }

    pub(super) fn end(&mut self) -> &mut Self {
        if let Some(at) = self.nests.pop() {
            let len = (self.buf.len() - at) as u16;
            self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
        }
        self
    }

    pub(super) fn finish(mut self) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

pub(super) const REG_VERDICT: u32 = 0;
pub(super) const REG_1: u32 = 1;
pub(super) const REG_2: u32 = 2;

pub(super) fn data_value(m: &mut Msg, kind: u16, value: &[u8]) {
    m.begin(kind).attr(1, value).end(); // NFTA_DATA_VALUE
}

pub(super) fn verdict_code(v: &Verdict) -> (i32, Option<&str>) {
    match v {
        Verdict::Drop => (0, None),
        Verdict::Accept => (1, None),
        Verdict::Return => (-5, None),
        Verdict::Jump(c) => (-3, Some(c)),
        Verdict::Goto(c) => (-4, Some(c)),
    }
}

pub(super) fn immediate_verdict(m: &mut Msg, code: i32, chain: Option<&str>) {
    m.str(1, "immediate").begin(2);
    m.u32(1, REG_VERDICT); // NFTA_IMMEDIATE_DREG
    m.begin(2).begin(2); // NFTA_IMMEDIATE_DATA > NFTA_DATA_VERDICT
    m.u32(1, code as u32); // NFTA_VERDICT_CODE
    if let Some(c) = chain {
        m.str(2, c); // NFTA_VERDICT_CHAIN
    }
    m.end().end().end();
}

pub(super) fn encode_expr(m: &mut Msg, e: &Expr) {
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

pub(super) fn nft_kind(cmd: u16) -> u16 {
    (NFNL_SUBSYS_NFTABLES << 8) | cmd
}

pub(super) fn encode_op(op: &Op, table: &str, seq: u32) -> Vec<u8> {
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

pub(super) fn describe(op: &Op) -> String {
    match op {
        Op::AddTable => "adding the table".into(),
        Op::DeleteTable => "deleting the table".into(),
        Op::AddChain { name, .. } => format!("adding chain {name}"),
        Op::FlushChain(name) => format!("flushing chain {name}"),
        Op::DeleteChain(name) => format!("deleting chain {name}"),
        Op::AddRule(r) => format!("a rule in {} ({:?})", r.chain, r.exprs),
    }
}
