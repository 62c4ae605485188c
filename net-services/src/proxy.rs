//! The egress proxy: the firewall redirects a workspace's TCP connections
//! on its domain entries' ports here. The proxy reads the name the client
//! asks for (TLS SNI, or HTTP Host), checks it and the original port
//! against that workspace's allowlist, resolves the name itself, and opens
//! the upstream connection to what the name resolves to: the address the
//! guest dialled is ignored, so a connection that presents an allowed name
//! to some other address does not get that address.
//!
//! On plain HTTP every request on the connection is checked (see
//! `http_stream`), not only the first. Each workspace has a fair share of
//! the connections (`fair_share`).
//!
//! Refusals are counted per workspace; an HTTP client gets a 403 that
//! says why, a TLS client an `unrecognized_name` alert.

use crate::egress_refusals::refused;
use crate::fair_share::{FairShare, Permit};
use crate::http_stream::RequestStream;
use crate::sni::{self, Peek};
use crate::splice::{splice, Allowed, Splice};
use paddock_net::policy::Egress;
use paddock_net::policy_table;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long a client has to say where it is going.
const PEEK_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections open at once, all workspaces together. One workspace
/// holds at most 256; the last 1024 go only to workspaces holding fewer
/// than 16, so busy workspaces never use up the pool: 64 more workspaces
/// still get 16 each. Past its share a workspace's new connections are
/// closed at once (and counted). (A connection is a task and two sockets,
/// a few KiB while idle; the bound is the descriptors and the fairness.)
static POOL: FairShare = FairShare::new(4096, 256, 16, 1024);

/// Serves workspaces' redirected connections on `listener` (bound by
/// PID 1), each as a task on the current runtime, until the listener
/// fails for good; why.
pub async fn serve(listener: std::net::TcpListener) -> std::io::Error {
    let listener = match listener
        .set_nonblocking(true)
        .and_then(|()| TcpListener::from_std(listener))
    {
        Ok(l) => l,
        Err(e) => return e,
    };
    loop {
        let (conn, peer) = match listener.accept().await {
            Ok(got) => got,
            Err(e) if crate::transient(&e) => continue,
            Err(e)
                if e.raw_os_error() == Some(libc::EMFILE)
                    || e.raw_os_error() == Some(libc::ENFILE) =>
            {
                // Out of descriptors: the connections that hold them end
                // within the idle limit.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(e) => return e,
        };
        let SocketAddr::V4(peer) = peer else {
            continue;
        };
        // Subscribed before the lookup: a change from here on (while the
        // name is read and resolved and the upstream dialled) is one the
        // connection sees.
        let changes = policy_table::changes();
        let Some((id, egress)) = policy_table::lookup(*peer.ip()) else {
            continue;
        };
        let Some(permit) = admit(&POOL, &id) else {
            continue;
        };
        tokio::spawn(async move {
            handle(conn, peer, id, egress, changes).await;
            drop(permit);
        });
    }
}

/// The address the guest dialled, before the redirect (SO_ORIGINAL_DST).
fn original_destination(s: &TcpStream) -> Option<SocketAddrV4> {
    const SO_ORIGINAL_DST: libc::c_int = 80;
    // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `addr`, which we own.
    let r = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_IP,
            SO_ORIGINAL_DST,
            (&mut addr as *mut libc::sockaddr_in).cast(),
            &mut len,
        )
    };
    (r == 0).then(|| {
        SocketAddrV4::new(
            Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)),
            u16::from_be(addr.sin_port),
        )
    })
}

/// Reads until the first bytes name a destination (or can't). Reads
/// straight into `buf`: a buffer on the stack here would be part of every
/// connection's task for its whole life.
async fn read_name(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Peek {
    let mut scanned = 0;
    loop {
        // A TLS record says its own length, cheap to check; an HTTP head
        // is parsed at its first bytes and then only once it may have
        // ended (a head sent a byte at a time is not parsed per byte).
        let tls = buf.first() == Some(&0x16);
        if tls || scanned == 0 || crate::http_stream::head_may_end(buf, scanned) {
            match sni::peek(buf) {
                Peek::NeedMore => {}
                decided => return decided,
            }
        }
        scanned = buf.len();
        let room = sni::MAX_PEEK.saturating_sub(buf.len());
        buf.reserve(room.min(4096));
        match (&mut *conn).take(room as u64).read_buf(buf).await {
            Ok(0) | Err(_) => return Peek::NoName("the client said nothing in time"),
            Ok(_) => {}
        }
        if buf.len() >= sni::MAX_PEEK {
            if let Peek::NeedMore = sni::peek(buf) {
                return Peek::NoName("no name in the first 16 KiB");
            }
        }
    }
}

/// A slot in `pool` for workspace `id`, or a counted refusal.
fn admit(pool: &'static FairShare, id: &str) -> Option<Permit> {
    let permit = pool.acquire(id);
    if permit.is_none() {
        let why = "it holds its share of the proxy's connections";
        refused(id, "", None, why, why);
    }
    permit
}

/// Runs blocking `f` on a thread of its own with a `stack`-byte stack,
/// without holding one of the runtime's; None if no thread could be had.
async fn on_thread<T: Send + 'static>(
    stack: usize,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("egress-thread".into())
        .stack_size(stack)
        .spawn(move || {
            let _ = tx.send(f());
        })
        .ok()?;
    rx.await.ok()
}

/// Makes a tokio stream a blocking std one again, for a thread.
fn blocking(s: TcpStream) -> Option<std::net::TcpStream> {
    let s = s.into_std().ok()?;
    s.set_nonblocking(false).ok()?;
    Some(s)
}

/// The name's addresses a workspace may reach, tried in order.
async fn connect_upstream(addrs: &[Ipv4Addr], port: u16) -> Option<TcpStream> {
    for a in addrs {
        if !crate::dns::reachable(std::net::IpAddr::V4(*a)) {
            continue;
        }
        let attempt = TcpStream::connect(SocketAddr::from((*a, port)));
        if let Ok(Ok(s)) = tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
            return Some(s);
        }
    }
    None
}

async fn handle(
    mut conn: TcpStream,
    peer: SocketAddrV4,
    id: String,
    egress: Egress,
    changes: tokio::sync::watch::Receiver<u64>,
) {
    let Some(dest) = original_destination(&conn) else {
        let why = "no original destination (not a redirected connection)";
        return refused(&id, "", None, why, why);
    };
    // Relayed bytes go at once (small HTTP/2 frames would otherwise wait
    // for the peer's delayed ACK).
    let _ = conn.set_nodelay(true);
    let mut first = Vec::with_capacity(2048);
    let peeked = tokio::time::timeout(PEEK_TIMEOUT, read_name(&mut conn, &mut first)).await;
    let name = match peeked.unwrap_or(Peek::NoName("the client said nothing in time")) {
        Peek::Name(n) => n,
        Peek::Ech => {
            let why = "TLS with Encrypted Client Hello";
            return refused(&id, "", Some(dest), why, &format!("{dest}: {why}"));
        }
        Peek::NoName(why) => return refused(&id, "", Some(dest), why, &format!("{dest}: {why}")),
        Peek::NeedMore => return,
    };
    let tls = first.first() == Some(&0x16);
    // The box's own request endpoint: answered here, never forwarded. Its
    // handler is blocking and rare: a thread of its own.
    if name == crate::dns::INTERNAL_NAME {
        if tls || dest.port() != paddock_net::addressing::REQUESTS_PORT {
            let why = "paddock.internal answers plain HTTP on port 80 only";
            return deny(conn, tls, why).await;
        }
        let Some(conn) = blocking(conn) else { return };
        on_thread(128 << 10, move || {
            crate::requests::serve(conn, &id, &egress, first)
        })
        .await;
        return;
    }
    if !egress.allows(&name, dest.port()) {
        refused(
            &id,
            &name,
            Some(dest),
            "not on its allowlist",
            &format!("{name}:{} is not on its allowlist", dest.port()),
        );
        let why = format!(
            "{name}:{} is not on this workspace's allowlist",
            dest.port()
        );
        return deny(conn, tls, &why).await;
    }
    let addrs = match crate::dns::resolve(&name).await {
        Ok(a) if !a.is_empty() => a,
        Ok(_) => {
            refused(
                &id,
                &name,
                Some(dest),
                "no address a workspace may reach",
                &format!("{name}: no address a workspace may reach"),
            );
            let why = format!("{name} has no address a workspace may reach");
            return deny(conn, tls, &why).await;
        }
        Err(e) => {
            refused(&id, &name, Some(dest), &e.to_string(), &e.to_string());
            return deny(conn, tls, &e.to_string()).await;
        }
    };
    // The guest named one host and dialled another address (the proxy
    // connects to the name's own addresses either way).
    let mismatched = !addrs.contains(dest.ip());
    let record = |bytes_up, bytes_down, upstream_failed, brokered| {
        crate::activity::connection(crate::activity::Connection {
            id: &id,
            name: &name,
            dest: Some(dest),
            denied: None,
            bytes_up,
            bytes_down,
            upstream_failed,
            mismatched,
            brokered,
        })
    };
    let Some(mut upstream) = connect_upstream(&addrs, dest.port()).await else {
        record(0, 0, true, None);
        let why = format!("{name}:{} did not answer", dest.port());
        return deny(conn, tls, &why).await;
    };
    let _ = upstream.set_nodelay(true);
    // A host one of the workspace's secrets goes to: the broker takes the
    // connection over (TLS ended here, each request checked and given
    // its secret).
    if let Some(plan) = crate::broker::table::plan(&id, &name, tls) {
        let allowed = policy_allows(*peer.ip());
        let (n, p) = (name.clone(), dest.port());
        let broker = crate::broker::intercept::Conn {
            id: id.clone(),
            name: name.clone(),
            port: dest.port(),
            tls,
            plan,
            allowed: Box::new(move || allowed(&n, p)),
        };
        let (Some(conn), Some(upstream)) = (blocking(conn), blocking(upstream)) else {
            return record(0, 0, true, None);
        };
        let outcome = on_thread(crate::broker::intercept::STACK, move || {
            crate::broker::intercept::serve_blocking(conn, upstream, first, broker)
        })
        .await
        .unwrap_or(crate::broker::intercept::Outcome {
            upstream_failed: true,
            ..Default::default()
        });
        let brokered = Some((outcome.injected, outcome.misuse));
        return record(
            outcome.bytes_up,
            outcome.bytes_down,
            outcome.upstream_failed,
            brokered,
        );
    }
    // Plain HTTP: every request on the connection is checked, not only
    // the first (a keep-alive or pipelined request for another name would
    // reach whatever else this address serves); the checker starts with
    // the bytes read to learn the name. A brokered secret's placeholder
    // in a head stops the request (the secret may not go here this way).
    let requests = if tls {
        if upstream.write_all(&first).await.is_err() {
            return record(0, 0, true, None);
        }
        None
    } else {
        let refusing = crate::broker::table::secrets_of(&id)
            .map(|secrets| {
                secrets
                    .iter()
                    .map(|s| {
                        let why = crate::broker::rules::misuse_why(s, &name, false);
                        (s.placeholder.clone(), s.name.clone(), why)
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some((RequestStream::new(&name).refusing(refusing), first))
    };
    let (up, down) = splice(
        conn,
        upstream,
        Splice {
            allowed: policy_allows(*peer.ip()),
            changes,
            id: id.clone(),
            name: name.clone(),
            port: dest.port(),
            idle: crate::splice::IDLE,
            requests,
        },
    )
    .await;
    record(up, down, false, None);
}

async fn deny(mut conn: TcpStream, tls: bool, why: &str) {
    if tls {
        // A fatal unrecognized_name alert, as a server without the name sends.
        let _ = conn
            .write_all(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x70])
            .await;
    } else {
        let body = format!("paddock: {why}\npaddock: {}\n", crate::requests::HOW_TO_ASK);
        let _ = conn
            .write_all(
                format!(
                    "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            )
            .await;
    }
    let _ = conn.shutdown().await;
}

/// Asks the current policy table about the workspace at `peer`.
fn policy_allows(peer: Ipv4Addr) -> Allowed {
    Box::new(move |name, port| policy_table::allows(peer, name, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by review: a workspace removed (or its policy narrowed) while
    /// `handle` resolved the name and dialled the upstream. The splice
    /// subscribed to changes only after that, took the current value as
    /// seen, and relayed until some other workspace's policy changed.
    #[test]
    fn a_revocation_during_resolve_or_connect_is_seen() {
        // Subscribed before the lookup (as `serve` does now), and after
        // the change (as `handle` did: only the splice's first look at the
        // policy catches it).
        for subscribed_first in [true, false] {
            revoked_while_connecting(subscribed_first);
        }
    }

    fn revoked_while_connecting(subscribed_first: bool) {
        use paddock_net::policy::{CheckEgress as _, EgressRequest};
        use std::io::{Read, Write};
        let slot = paddock_net::firewall::Slot::new(4001).expect("slot");
        let guest = slot.guest();
        let egress = EgressRequest {
            domains: vec!["allowed.test".into()],
            cidrs: vec![],
        }
        .check()
        .expect("policy");
        policy_table::set(slot.0, "ws_race".into(), egress);
        let early = subscribed_first.then(policy_table::changes);
        let (_, looked_up) = policy_table::lookup(guest).expect("in the table");
        assert!(looked_up.allows("allowed.test", 80));
        // Meanwhile (resolving, connecting) the workspace goes.
        policy_table::remove(slot.0);
        let changes = early.unwrap_or_else(policy_table::changes);
        let echo = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let up = echo.local_addr().expect("addr");
        std::thread::spawn(move || {
            let Ok((mut s, _)) = echo.accept() else {
                return;
            };
            let mut b = [0u8; 4096];
            while let Ok(n) = s.read(&mut b) {
                if n == 0 || s.write_all(&b[..n]).is_err() {
                    return;
                }
            }
        });
        let front = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut client =
            std::net::TcpStream::connect(front.local_addr().expect("addr")).expect("connect");
        let (conn, _) = front.accept().expect("accept");
        let upstream = std::net::TcpStream::connect(up).expect("upstream");
        let t = crate::splice::tests::run_splice(conn, upstream, move || Splice {
            allowed: policy_allows(guest),
            changes,
            id: "ws_race".into(),
            name: "allowed.test".into(),
            port: 80,
            idle: crate::splice::IDLE,
            requests: None,
        });
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut b = [0u8; 5];
        let relayed = client.write_all(b"data!").is_ok() && client.read_exact(&mut b).is_ok();
        assert!(
            !relayed,
            "a connection whose workspace was removed relayed (subscribed first: {subscribed_first})"
        );
        assert!(t.join().is_ok());
    }

    #[test]
    fn a_workspace_holding_its_share_of_connections_leaves_room_for_the_others() {
        // Workspace A opens and holds as many as it may: it is stopped at
        // its share, and the refusals are counted against it.
        let a: Vec<_> = std::iter::from_fn(|| admit(&POOL, "ws_greedy")).collect();
        assert_eq!(a.len(), 256);
        assert!(crate::egress_refusals::REFUSED.get("ws_greedy") >= 1);
        // Fifteen more greedy workspaces take the pool down to its reserve
        // (the last four only their floor of the reserve)...
        let others: Vec<Vec<_>> = (0..15)
            .map(|i| std::iter::from_fn(|| admit(&POOL, &format!("ws_greedy{i}"))).collect())
            .collect();
        assert_eq!(
            others.iter().map(Vec::len).sum::<usize>(),
            4096 - 256 - 1024 + 4 * 16
        );
        // ...and a quiet workspace still gets its connections.
        let b: Vec<_> = std::iter::from_fn(|| admit(&POOL, "ws_quiet")).collect();
        assert_eq!(b.len(), 16);
        drop(b);
        assert!(admit(&POOL, "ws_quiet").is_some());
    }
}
