//! The workspaces' only resolver. It answers a name only if the asking
//! workspace's allowlist has it; anything else gets NXDOMAIN from here and
//! never reaches the upstream, so a lookup cannot carry data out. Allowed
//! names are asked upstream (A only: workspaces have no IPv6; HTTPS and
//! SVCB records, which would hand out ECH configurations, are answered
//! empty), and addresses no workspace may reach are taken out of the
//! answer, so DNS rebinding gets nowhere.
//!
//! The proxy resolves through the same code (`resolve`).

use crate::fair_share::FairShare;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use paddock_net::policy;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::RwLock;
use std::time::Duration;
use tokio::net::UdpSocket;

/// Queries answered at once, all workspaces together (a task each, up to
/// UPSTREAM_TIMEOUT). One workspace has at most 16 in flight; the last 64
/// go only to workspaces with fewer than 4, so one busy workspace cannot
/// hold the resolver: 16 more workspaces still get 4 each. Past its
/// share a workspace's queries are dropped (its resolver retries).
static IN_FLIGHT: FairShare = FairShare::new(256, 16, 4, 64);
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest TTL passed on: a changed policy or record is seen within it.
const MAX_TTL: u32 = 300;

static UPSTREAM: RwLock<Vec<Ipv4Addr>> = RwLock::new(Vec::new());
/// The host's own addresses (the uplink's), forbidden like the ranges.
static HOST_ADDRS: RwLock<Vec<Ipv4Addr>> = RwLock::new(Vec::new());
static REFUSED: crate::refusals::Refusals = crate::refusals::Refusals::new();
static CACHE: crate::dns_cache::Cache = crate::dns_cache::Cache::new();
/// Names being asked upstream now (one question per name at a time).
static ASKING: crate::single_flight::Flights<Result<(ResponseCode, Vec<Record>), String>> =
    crate::single_flight::Flights::new();

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("no upstream resolver is configured")]
    NoUpstream,
    #[error("resolving {name}: {detail}")]
    Failed { name: String, detail: String },
    #[error("{name} does not exist")]
    NxDomain { name: String },
}

/// Where allowed names are asked, and the host's own addresses (refused
/// in answers). Called at boot and when the uplink changes.
pub fn configure(upstream: &[Ipv4Addr], host: &[Ipv4Addr]) {
    *UPSTREAM.write().unwrap_or_else(|e| e.into_inner()) = upstream.to_vec();
    *HOST_ADDRS.write().unwrap_or_else(|e| e.into_inner()) = host.to_vec();
    // Answers were filtered against the old host addresses.
    CACHE.clear();
}

pub fn host_addrs() -> Vec<Ipv4Addr> {
    HOST_ADDRS.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Refused lookups counted since the last call (the network services
/// process reports them to PID 1, which keeps the totals).
pub fn new_refusals() -> Vec<(String, u64)> {
    REFUSED.take_new()
}

pub fn forget(id: &str) {
    REFUSED.forget(id);
}

/// Serves workspaces on `sock` (udp/53, bound by PID 1; the firewall keeps
/// everyone else out), each query a task on the current runtime, until the
/// socket fails for good; why.
pub async fn serve(sock: std::net::UdpSocket) -> std::io::Error {
    let sock = match sock
        .set_nonblocking(true)
        .and_then(|()| UdpSocket::from_std(sock))
    {
        Ok(s) => Arc::new(s),
        Err(e) => return e,
    };
    let mut buf = [0u8; 4096];
    loop {
        let (n, from) = match sock.recv_from(&mut buf).await {
            Ok(got) => got,
            // An ICMP error for an earlier answer, a signal: the socket is fine.
            Err(e) if crate::transient(&e) => continue,
            Err(e) => return e,
        };
        let SocketAddr::V4(from4) = from else {
            continue;
        };
        let Some((id, egress)) = paddock_net::policy_table::lookup(*from4.ip()) else {
            continue;
        };
        let Some(permit) = IN_FLIGHT.acquire(&id) else {
            continue;
        };
        let query = buf[..n].to_vec();
        let reply_sock = sock.clone();
        tokio::spawn(async move {
            let gateway = paddock_net::addressing::Slot::of_guest(*from4.ip()).map(|s| s.host());
            if let Some(reply) = answer_for(&query, &id, &egress, gateway).await {
                let _ = reply_sock.send_to(&reply, from).await;
            }
            drop(permit);
        });
    }
}

fn reply_to(q: &Message, code: ResponseCode) -> Message {
    let mut m = Message::new();
    m.set_id(q.id())
        .set_message_type(MessageType::Response)
        .set_op_code(q.op_code())
        .set_recursion_desired(q.recursion_desired())
        .set_recursion_available(true)
        .set_response_code(code);
    m.add_queries(q.queries().to_vec());
    m
}

/// The name of the box's own request endpoint (net::requests), answered
/// with the asking workspace's gateway address whatever its allowlist.
pub const INTERNAL_NAME: &str = "paddock.internal";

/// The reply to one query from workspace `id`, or None for input that is
/// not a DNS query at all (dropped without an answer).
/// Blocks the caller (fuzz targets, tests) on a runtime of its own.
pub fn answer(query: &[u8], id: &str, egress: &policy::Egress) -> Option<Vec<u8>> {
    block_on(answer_for(query, id, egress, None))?
}

/// Runs `f` to its end on a single-threaded runtime made for it (None if
/// none could be made), for callers outside the network services'
/// runtime.
fn block_on<F: std::future::Future>(f: F) -> Option<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    Some(rt.block_on(f))
}

/// `answer`, knowing the asker's gateway address (for INTERNAL_NAME).
pub async fn answer_for(
    query: &[u8],
    id: &str,
    egress: &policy::Egress,
    gateway: Option<Ipv4Addr>,
) -> Option<Vec<u8>> {
    let q = match Message::from_vec(query) {
        Ok(q) => q,
        // A header we can read gets FORMERR; garbage gets nothing.
        Err(_) if query.len() >= 12 => {
            let mut m = Message::new();
            m.set_id(u16::from_be_bytes([query[0], query[1]]))
                .set_message_type(MessageType::Response)
                .set_response_code(ResponseCode::FormErr);
            return m.to_vec().ok();
        }
        Err(_) => return None,
    };
    if q.message_type() != MessageType::Query {
        return None;
    }
    if q.op_code() != OpCode::Query || q.queries().len() != 1 {
        return reply_to(&q, ResponseCode::NotImp).to_vec().ok();
    }
    let question = &q.queries()[0];
    let name = question.name().to_lowercase().to_ascii();
    let name = name.trim_end_matches('.');
    if let (INTERNAL_NAME, Some(gw)) = (name, gateway) {
        let mut m = reply_to(&q, ResponseCode::NoError);
        if question.query_type() == RecordType::A {
            m.add_answer(Record::from_rdata(
                question.name().clone(),
                60,
                RData::A(hickory_proto::rr::rdata::A(gw)),
            ));
        }
        return m.to_vec().ok();
    }
    if !egress.allows_name(name) {
        REFUSED.count(id);
        crate::activity::lookup(id, name, false, "not on its allowlist", &[]);
        return reply_to(&q, ResponseCode::NXDomain).to_vec().ok();
    }
    if question.query_type() != RecordType::A {
        // AAAA, HTTPS, SVCB and the rest: the name exists, with nothing
        // of that type for a workspace.
        return reply_to(&q, ResponseCode::NoError).to_vec().ok();
    }
    let reply = match lookup(question.name()).await {
        Ok((code, records)) => {
            let answers: Vec<Ipv4Addr> = records
                .iter()
                .filter_map(|r| match r.data() {
                    RData::A(a) => Some(a.0),
                    _ => None,
                })
                .collect();
            crate::activity::lookup(id, name, true, "allowlist", &answers);
            let mut m = reply_to(&q, code);
            m.add_answers(records);
            m
        }
        Err(e) => {
            crate::activity::lookup(id, name, true, &format!("allowed; {e}"), &[]);
            reply_to(&q, ResponseCode::ServFail)
        }
    };
    let bytes = reply.to_vec().ok()?;
    // Without EDNS a client takes 512 bytes; more is cut, marked truncated.
    if bytes.len() > 512 && q.extensions().is_none() {
        return reply.truncate().to_vec().ok();
    }
    Some(bytes)
}

/// `name`'s A records, from the cache or upstream (`dns_cache`); the
/// response code and the answer with forbidden addresses taken out (CNAMEs
/// kept, TTLs capped).
async fn lookup(name: &Name) -> Result<(ResponseCode, Vec<Record>), DnsError> {
    let key = name.to_lowercase().to_ascii();
    let now = std::time::Instant::now();
    if let Some(kept) = CACHE.get(&key, now) {
        return Ok(kept);
    }
    // Each upstream is given UPSTREAM_TIMEOUT; a waiter gives the one
    // asking that for each, and a little more.
    let servers = UPSTREAM.read().unwrap_or_else(|e| e.into_inner()).len() as u32;
    let wait = UPSTREAM_TIMEOUT * servers.max(1) + Duration::from_secs(1);
    let answer = ASKING
        .run(&key, wait, || async {
            let answer = ask_upstream(name).await.map_err(|e| e.to_string());
            if let Ok((code, records)) = &answer {
                CACHE.put(key.clone(), *code, records, now);
            }
            answer
        })
        .await;
    match answer {
        Some(Ok(found)) => Ok(found),
        Some(Err(detail)) => Err(DnsError::Failed {
            name: name.to_ascii(),
            detail,
        }),
        None => Err(DnsError::Failed {
            name: name.to_ascii(),
            detail: "the upstream question for it did not end in time".into(),
        }),
    }
}

/// Asks the upstream resolvers for `name`'s A records.
async fn ask_upstream(name: &Name) -> Result<(ResponseCode, Vec<Record>), DnsError> {
    let servers = UPSTREAM.read().unwrap_or_else(|e| e.into_inner()).clone();
    if servers.is_empty() {
        return Err(DnsError::NoUpstream);
    }
    let host = host_addrs();
    let fail = |detail: String| DnsError::Failed {
        name: name.to_ascii(),
        detail,
    };
    let mut last = fail("no upstream answered".into());
    for server in servers {
        match ask(server, name).await {
            Ok(m) => {
                let records = m
                    .answers()
                    .iter()
                    .filter(|r| match r.data() {
                        RData::A(a) => !policy::forbidden(a.0, &host),
                        RData::CNAME(_) => true,
                        _ => false,
                    })
                    .map(|r| {
                        let mut r = r.clone();
                        let ttl = r.ttl().min(MAX_TTL);
                        r.set_ttl(ttl);
                        r
                    })
                    .collect();
                return Ok((m.response_code(), records));
            }
            Err(e) => last = fail(e),
        }
    }
    Err(last)
}

async fn ask(server: Ipv4Addr, name: &Name) -> Result<Message, String> {
    tokio::time::timeout(UPSTREAM_TIMEOUT, ask_once(server, name))
        .await
        .map_err(|_| format!("{server}: no answer in {UPSTREAM_TIMEOUT:?}"))?
}

async fn ask_once(server: Ipv4Addr, name: &Name) -> Result<Message, String> {
    let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .await
        .map_err(|e| e.to_string())?;
    sock.connect((server, 53))
        .await
        .map_err(|e| e.to_string())?;
    // A random id (and a random source port, from bind): an off-path
    // spoofer must guess both.
    let mut id = [0u8; 2];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut id)
        .map_err(|_| "no randomness".to_string())?;
    let id = u16::from_ne_bytes(id);
    let mut m = Message::new();
    m.set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true);
    m.add_query(Query::query(name.clone(), RecordType::A));
    let bytes = m.to_vec().map_err(|e| e.to_string())?;
    sock.send(&bytes).await.map_err(|e| e.to_string())?;
    let mut buf = [0u8; 4096];
    loop {
        let n = sock
            .recv(&mut buf)
            .await
            .map_err(|e| format!("{server}: {e}"))?;
        let Ok(r) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        // Only the answer to this question (a spoofed reply would need the
        // id and the name both).
        if r.id() == id
            && r.message_type() == MessageType::Response
            && r.queries().first().map(|q| q.name().to_lowercase()) == Some(name.to_lowercase())
        {
            return Ok(r);
        }
    }
}

/// The addresses a workspace's connection to `name` may go to: the name's
/// A records (following CNAMEs) less the forbidden ones.
pub async fn resolve(name: &str) -> Result<Vec<Ipv4Addr>, DnsError> {
    let fqdn = Name::from_ascii(format!("{name}.")).map_err(|e| DnsError::Failed {
        name: name.into(),
        detail: e.to_string(),
    })?;
    let (code, records) = lookup(&fqdn).await?;
    if code == ResponseCode::NXDomain {
        return Err(DnsError::NxDomain { name: name.into() });
    }
    let addrs: Vec<Ipv4Addr> = records
        .iter()
        .filter_map(|r| match r.data() {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect();
    Ok(addrs)
}

/// `resolve` for a caller outside any runtime (PID 1's webhooks).
pub fn resolve_blocking(name: &str) -> Result<Vec<Ipv4Addr>, DnsError> {
    block_on(resolve(name)).unwrap_or_else(|| {
        Err(DnsError::Failed {
            name: name.into(),
            detail: "no runtime to ask on".into(),
        })
    })
}

/// Whether an address from anywhere (a guest's or an upstream's) is one
/// a workspace may be connected to.
pub fn reachable(ip: IpAddr) -> bool {
    match ip {
        // Workspaces' own addresses are in 10.0.0.0/8, forbidden too.
        IpAddr::V4(v4) => !policy::forbidden(v4, &host_addrs()),
        IpAddr::V6(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use paddock_net::policy::CheckEgress as _;
    use policy::EgressRequest;

    fn query(name: &str, t: RecordType) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(0x1234)
            .set_message_type(MessageType::Query)
            .set_recursion_desired(true);
        m.add_query(Query::query(Name::from_ascii(name).expect("name"), t));
        m.to_vec().expect("encode")
    }

    fn egress() -> policy::Egress {
        EgressRequest {
            domains: vec!["allowed.test".into()],
            cidrs: vec![],
        }
        .check()
        .expect("policy")
    }

    #[test]
    fn a_workspace_with_its_queries_in_flight_leaves_room_for_the_others() {
        let a: Vec<_> = std::iter::from_fn(|| IN_FLIGHT.acquire("ws_greedy")).collect();
        assert_eq!(a.len(), 16);
        let busy: Vec<Vec<_>> = (0..20)
            .map(|i| std::iter::from_fn(|| IN_FLIGHT.acquire(&format!("ws_busy{i}"))).collect())
            .collect();
        assert_eq!(
            busy.iter().map(Vec::len).sum::<usize>(),
            256 - 16 - 64 + 9 * 4
        );
        let b: Vec<_> = std::iter::from_fn(|| IN_FLIGHT.acquire("ws_quiet")).collect();
        assert_eq!(b.len(), 4);
    }

    #[test]
    fn unlisted_names_get_nxdomain_without_asking_upstream_and_are_counted() {
        // No upstream is configured: an answer other than NXDOMAIN would
        // have needed one.
        let r = answer(
            &query("x7f3.exfil.test.", RecordType::A),
            "ws_dns1",
            &egress(),
        )
        .expect("reply");
        let m = Message::from_vec(&r).expect("parse");
        assert_eq!(m.id(), 0x1234);
        assert_eq!(m.response_code(), ResponseCode::NXDomain);
        assert_eq!(REFUSED.get("ws_dns1"), 1);
    }

    #[test]
    fn the_boxs_own_endpoint_resolves_to_the_askers_gateway_whatever_its_allowlist() {
        let none = EgressRequest::default().check().expect("policy");
        let gw = Ipv4Addr::new(10, 200, 0, 5);
        let r = block_on(answer_for(
            &query("paddock.internal.", RecordType::A),
            "ws_dns3",
            &none,
            Some(gw),
        ))
        .flatten()
        .expect("reply");
        let m = Message::from_vec(&r).expect("parse");
        assert_eq!(m.response_code(), ResponseCode::NoError);
        assert!(matches!(m.answers()[0].data(), RData::A(a) if a.0 == gw));
        assert_eq!(REFUSED.get("ws_dns3"), 0);
        // Without a gateway (not a workspace's query) it is any other name.
        let r =
            answer(&query("paddock.internal.", RecordType::A), "ws_dns3", &none).expect("reply");
        assert_eq!(
            Message::from_vec(&r).expect("parse").response_code(),
            ResponseCode::NXDomain
        );
    }

    #[test]
    fn https_and_aaaa_records_of_allowed_names_are_empty() {
        for t in [RecordType::HTTPS, RecordType::SVCB, RecordType::AAAA] {
            let r = answer(&query("allowed.test.", t), "ws_dns2", &egress()).expect("reply");
            let m = Message::from_vec(&r).expect("parse");
            assert_eq!(m.response_code(), ResponseCode::NoError);
            assert!(m.answers().is_empty());
        }
        assert_eq!(REFUSED.get("ws_dns2"), 0);
    }

    #[test]
    fn garbage_gets_formerr_or_nothing() {
        assert!(answer(b"xx", "w", &egress()).is_none());
        let r = answer(&[0xab; 40], "w", &egress()).expect("formerr");
        let m = Message::from_vec(&r).expect("parse");
        assert_eq!(m.response_code(), ResponseCode::FormErr);
        assert_eq!(m.id(), 0xabab);
    }
}
