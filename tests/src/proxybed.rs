//! The workspaces' resolver and egress proxy as the appliance runs them
//! (the real `paddock-init net-services`, confined as uid 901, pushed its
//! policy by the same supervisor PID 1 uses), on a bench in a network
//! namespace of its own: "guests" are addresses on its loopback, an
//! nf_tables output rule redirects their port-80 connections to the proxy
//! as the firewall's prerouting rule does for a tap, and a fake upstream
//! resolver and HTTP server stand in for the internet. No VM, no
//! emulation: what it measures is the process itself. Needs root.
//!
//! Everything stays in the namespace (loopback only).

use paddock_init::net_services::supervisor::{self, Confine, Sockets};
use paddock_init::net_services::{self, GID, UID};
use paddock_net::firewall::{Slot, WsNet};
use paddock_net::nft::{self, Expr, Hook, Netlink, Op, Rule};
use paddock_net::policy::{CheckEgress as _, EgressRequest};
use paddock_net::policy_table;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

/// Where every name resolves, and the HTTP server there.
pub const UPSTREAM_HTTP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
const UPSTREAM_DNS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 53);
/// The name the guests may reach.
pub const ALLOWED: &str = "allowed.test";
/// What the upstream answers every request with.
pub const BODY: &[u8] = b"ok\n";
const TABLE: &str = "paddock_proxybed";

#[derive(Debug, thiserror::Error)]
pub enum BedError {
    #[error("the proxy bench needs root (a network namespace, a uid to drop to)")]
    NotRoot,
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("ip {args}: failed")]
    Ip { args: String },
    #[error("the redirect rule: {0}")]
    Nft(String),
    #[error("the network services process did not start")]
    NotStarted,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BedError {
    let what = what.into();
    move |source| BedError::Io { what, source }
}

pub struct ProxyBed {
    /// One address per guest, in slot order (slots 1..).
    pub guests: Vec<Ipv4Addr>,
    /// The resolver's socket.
    pub resolver: SocketAddr,
    /// With an HTTPS upstream: what it received.
    pub echo: Option<crate::echo_https::Log>,
}

/// What a bench serves besides plain HTTP on port 80.
#[derive(Default)]
pub struct BedOptions {
    /// Every guest's allowlist (default: ALLOWED on port 80).
    pub domains: Vec<String>,
    /// An HTTPS echo server on UPSTREAM_HTTP:443 with this configuration,
    /// and guests' port-443 connections redirected to the proxy too.
    pub https: Option<std::sync::Arc<rustls::ServerConfig>>,
}

fn ip(args: &[&str]) -> Result<(), BedError> {
    let ok = std::process::Command::new("ip")
        .args(args)
        .status()
        .map_err(io("running ip(8)"))?
        .success();
    ok.then_some(()).ok_or_else(|| BedError::Ip {
        args: args.join(" "),
    })
}

/// Answers every A query with UPSTREAM_HTTP (hand-built: a fixed answer
/// to the one question asked).
fn fake_dns(sock: UdpSocket) {
    let mut buf = [0u8; 512];
    while let Ok((n, from)) = sock.recv_from(&mut buf) {
        if n < 12 {
            continue;
        }
        let mut r = buf[..n].to_vec();
        r[2] = 0x81; // response, recursion desired
        r[3] = 0x80; // recursion available, no error
        r[6..8].copy_from_slice(&1u16.to_be_bytes()); // one answer
        r[8..12].fill(0);
        // The answer: a pointer to the question's name, A, IN, TTL 60.
        r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        r.extend_from_slice(&UPSTREAM_HTTP.octets());
        let _ = sock.send_to(&r, from);
    }
}

/// Serves keep-alive HTTP/1.1: every request head gets BODY.
fn fake_http(listener: TcpListener) {
    for conn in listener.incoming().flatten() {
        std::thread::spawn(move || {
            let Ok(mut out) = conn.try_clone() else {
                return;
            };
            let mut reader = BufReader::new(conn);
            let mut line = String::new();
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) if line == "\r\n" => {
                        // One write: a second, small one would wait
                        // for the first's ACK (Nagle and delayed ACK).
                        let mut answer =
                            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", BODY.len())
                                .into_bytes();
                        answer.extend_from_slice(BODY);
                        if out.write_all(&answer).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                }
            }
        });
    }
}

/// The output rule that sends `guest`'s connections to `port` to the proxy.
fn redirect(guest: Ipv4Addr, port: u16, proxy_port: u16) -> Op {
    let exprs = [
        nft::ipv4(),
        nft::ip_addr_in(false, guest, 32),
        nft::l4proto(6),
        nft::dport(port),
    ]
    .into_iter()
    .flatten()
    .chain([Expr::Redirect(proxy_port)])
    .collect();
    Op::AddRule(Rule {
        chain: "out".into(),
        exprs,
        tag: None,
    })
}

impl ProxyBed {
    /// Moves the calling thread into a new network namespace (threads it
    /// starts after follow) and starts everything there, the network
    /// services process (`exe net-services`) last; `guests` workspaces,
    /// each allowed ALLOWED on port 80.
    pub fn start(exe: &Path, guests: u32) -> Result<ProxyBed, BedError> {
        Self::start_with(exe, guests, BedOptions::default())
    }

    /// As `start`, with more to serve and allow.
    pub fn start_with(exe: &Path, guests: u32, opts: BedOptions) -> Result<ProxyBed, BedError> {
        if !nix::unistd::geteuid().is_root() {
            return Err(BedError::NotRoot);
        }
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| io("unshare(CLONE_NEWNET)")(e.into()))?;
        ip(&["link", "set", "lo", "up"])?;
        let slots: Vec<Slot> = (1..=guests).filter_map(Slot::new).collect();
        let addrs: Vec<Ipv4Addr> = slots.iter().map(|s| s.guest()).collect();
        for a in addrs.iter().chain([&UPSTREAM_HTTP]) {
            ip(&["addr", "add", &format!("{a}/32"), "dev", "lo"])?;
        }
        let dns = UdpSocket::bind((UPSTREAM_DNS, 53)).map_err(io("the fake resolver"))?;
        std::thread::spawn(move || fake_dns(dns));
        let http = TcpListener::bind((UPSTREAM_HTTP, 80)).map_err(io("the fake web server"))?;
        std::thread::spawn(move || fake_http(http));
        let echo = match &opts.https {
            Some(tls) => {
                let l =
                    TcpListener::bind((UPSTREAM_HTTP, 443)).map_err(io("the fake HTTPS server"))?;
                Some(crate::echo_https::start(l, tls.clone()))
            }
            None => None,
        };

        let sockets = Sockets {
            resolver: UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).map_err(io("resolver socket"))?,
            proxy: TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(io("proxy socket"))?,
        };
        let resolver = sockets.resolver.local_addr().map_err(io("resolver"))?;
        let proxy_port = sockets.proxy.local_addr().map_err(io("proxy"))?.port();
        let mut ops = vec![
            Op::AddTable,
            Op::DeleteTable,
            Op::AddTable,
            Op::AddChain {
                name: "out".into(),
                base: Some((Hook::Output, -100, "nat", true)),
            },
        ];
        ops.extend(addrs.iter().map(|a| redirect(*a, 80, proxy_port)));
        if opts.https.is_some() {
            ops.extend(addrs.iter().map(|a| redirect(*a, 443, proxy_port)));
        }
        Netlink::open()
            .and_then(|mut nl| nl.apply(TABLE, &ops))
            .map_err(|e| BedError::Nft(e.to_string()))?;

        let domains = if opts.domains.is_empty() {
            vec![format!("{ALLOWED}:80")]
        } else {
            opts.domains.clone()
        };
        let egress = EgressRequest {
            domains,
            cidrs: Vec::new(),
        }
        .check()
        .map_err(|p| BedError::Nft(p.join("; ")))?;
        let workspaces: Vec<WsNet> = slots
            .iter()
            .map(|s| WsNet {
                id: format!("ws_bed{}", s.0),
                slot: *s,
                egress: egress.clone(),
                connections_per_s: 1000,
                published: Vec::new(),
            })
            .collect();
        let _ = policy_table::publish(workspaces.iter());
        net_services::set_resolvers(&[UPSTREAM_DNS], &[]);
        let confine = Confine {
            drop_to: Some((UID, GID)),
            memory_cgroup: false,
        };
        supervisor::start(exe.to_path_buf(), sockets, confine).map_err(|_| BedError::NotStarted)?;
        // Started and holding its state once it confirms an update.
        for _ in 0..600 {
            if supervisor::pid().is_some() {
                net_services::flush();
                return Ok(ProxyBed {
                    guests: addrs,
                    resolver,
                    echo,
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(BedError::NotStarted)
    }

    /// A TCP connection from `guest` to the upstream's port 80 (which the
    /// redirect hands to the proxy).
    pub fn connect_from(guest: Ipv4Addr) -> Result<TcpStream, BedError> {
        Self::connect_from_port(guest, 80)
    }

    /// Whether a network services process other than `killed` is running
    /// within 30 s (the supervisor's restart).
    pub fn restarted_after(killed: u32) -> bool {
        (0..300).any(|_| {
            let back = supervisor::pid().is_some_and(|p| p != killed);
            if !back {
                std::thread::sleep(Duration::from_millis(100));
            }
            back
        })
    }

    /// A TCP connection from `guest` to the upstream's `port` (80 and,
    /// with HTTPS, 443 are redirected to the proxy).
    pub fn connect_from_port(guest: Ipv4Addr, port: u16) -> Result<TcpStream, BedError> {
        use nix::sys::socket::{
            bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn,
        };
        let fd = socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| io("socket")(e.into()))?;
        bind(
            fd.as_raw_fd(),
            &SockaddrIn::from(SocketAddrV4::new(guest, 0)),
        )
        .map_err(|e| io(format!("bind to {guest}"))(e.into()))?;
        connect(
            fd.as_raw_fd(),
            &SockaddrIn::from(SocketAddrV4::new(UPSTREAM_HTTP, port)),
        )
        .map_err(|e| io("connect")(e.into()))?;
        let s = TcpStream::from(fd);
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(io("timeout"))?;
        Ok(s)
    }

    /// The upstream directly, from no guest (no redirect): the peer path.
    pub fn connect_direct() -> Result<TcpStream, BedError> {
        let s = TcpStream::connect((UPSTREAM_HTTP, 80)).map_err(io("connect"))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(io("timeout"))?;
        Ok(s)
    }
}

/// Sends one keep-alive request for `host` and reads its answer: the
/// status line and body.
pub fn request(conn: &mut TcpStream, host: &str) -> Result<(String, Vec<u8>), BedError> {
    let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
    conn.write_all(req.as_bytes()).map_err(io("request"))?;
    let mut reader = BufReader::new(conn);
    let mut status = String::new();
    reader.read_line(&mut status).map_err(io("status line"))?;
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).map_err(io("header"))? == 0 || line == "\r\n" {
            break;
        }
        if let Some(v) = line
            .to_ascii_lowercase()
            .strip_prefix("content-length:")
            .map(|v| v.trim().to_string())
        {
            len = v.parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).map_err(io("body"))?;
    Ok((status.trim_end().to_string(), body))
}

/// The network services process's resident memory, in KiB.
pub fn services_rss_kib() -> Option<u64> {
    let pid = supervisor::pid()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}
