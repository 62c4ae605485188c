//! The network services process's seccomp filter: what a threaded UDP
//! resolver and TCP proxy call, nothing else. Anything off the list kills
//! the process (PID 1 starts it again and logs why).
//!
//! Narrower than the API process's, because a guest talks to it:
//! - new sockets are IPv4 only (`socket` with AF_INET; no Unix, netlink or
//!   packet sockets, so no way to reach PID 1's other channels or the
//!   kernel's routing and firewall);
//! - `ioctl` only sets non-blocking mode (std's connect with a timeout);
//! - `clone` only makes threads (CLONE_THREAD, no new namespaces), and
//!   `clone3`, whose flags sit in memory a filter cannot read, answers
//!   ENOSYS so the C library falls back to `clone`: a process that could
//!   fork would leave a copy serving the sockets after PID 1 killed it;
//! - `setsockopt` only sets the two timeouts and TCP_NODELAY (SO_LINGER in particular
//!   would let it hand PID 1 a socket whose close never returns);
//! - `prctl` only names threads.
//!
//! Opening a file fails with EACCES rather than killing: glibc's allocator
//! reads /proc/sys/vm/overcommit_memory on its own and copes when it
//! cannot (the API process met the same).

use paddock_jail::seccomp_rules::{
    arg_is, cond, errno_filter, program, rule, thread_only_clone, RuleError, ABSENT, REFUSED,
    THREADED_PROCESS,
};
use seccompiler::{BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompRule};
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
#[error("building the network services' seccomp filter: {0}")]
pub struct SandboxError(#[from] RuleError);

const ALLOWED: &[libc::c_long] = &[
    // sockets
    libc::SYS_accept4,
    libc::SYS_accept,
    libc::SYS_connect,
    libc::SYS_bind,
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_writev,
    libc::SYS_recvfrom,
    libc::SYS_sendto,
    libc::SYS_recvmsg,
    libc::SYS_sendmsg,
    libc::SYS_shutdown,
    libc::SYS_close,
    libc::SYS_getsockopt,
    libc::SYS_getsockname,
    libc::SYS_getpeername,
    libc::SYS_fcntl,
    libc::SYS_poll,
    libc::SYS_ppoll,
    // the secret broker's per-connection tokio runtime (its I/O driver)
    libc::SYS_epoll_create1,
    libc::SYS_epoll_ctl,
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_eventfd2,
];

/// `socket(AF_INET, SOCK_STREAM or SOCK_DGRAM (with any of its flags),
/// 0 or TCP or UDP)`: nothing else, MPTCP in particular, whose subflows
/// are the kernel's own sockets, which the firewall's fence (by socket
/// owner) would not see.
fn ipv4_tcp_and_udp_sockets() -> Result<Vec<SeccompRule>, SandboxError> {
    let mut rules = Vec::new();
    for (ty, proto) in [
        (libc::SOCK_STREAM, 0),
        (libc::SOCK_STREAM, libc::IPPROTO_TCP),
        (libc::SOCK_DGRAM, 0),
        (libc::SOCK_DGRAM, libc::IPPROTO_UDP),
    ] {
        rules.push(rule(vec![
            cond(
                0,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::Eq,
                libc::AF_INET as u64,
            )?,
            cond(
                1,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::MaskedEq(0xf),
                ty as u64,
            )?,
            cond(2, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, proto as u64)?,
        ])?);
    }
    Ok(rules)
}

/// The three filters, in the order they must be installed: the two
/// errno answers, then the allow-list (which lets those calls through to
/// them). The kernel runs all and takes the strictest answer.
pub fn filters() -> Result<[BpfProgram; 3], SandboxError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = ALLOWED
        .iter()
        .chain(THREADED_PROCESS)
        .chain(REFUSED)
        .chain(ABSENT)
        .map(|s| (*s, Vec::new()))
        .collect();
    rules.insert(libc::SYS_socket, ipv4_tcp_and_udp_sockets()?);
    rules.insert(libc::SYS_ioctl, vec![arg_is(1, libc::FIONBIO)?]);
    rules.insert(libc::SYS_prctl, vec![arg_is(0, libc::PR_SET_NAME as u64)?]);
    rules.insert(libc::SYS_clone, vec![thread_only_clone()?]);
    // The two timeouts, and TCP_NODELAY: relayed HTTP/2's small frames
    // otherwise wait out Nagle against the peer's delayed ACK (40 ms).
    let timeouts = [
        (libc::SOL_SOCKET, libc::SO_RCVTIMEO),
        (libc::SOL_SOCKET, libc::SO_SNDTIMEO),
        (libc::IPPROTO_TCP, libc::TCP_NODELAY),
    ]
    .into_iter()
    .map(|(level, opt)| {
        rule(vec![
            cond(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, level as u64)?,
            cond(2, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, opt as u64)?,
        ])
    })
    .collect::<Result<Vec<_>, _>>()?;
    rules.insert(libc::SYS_setsockopt, timeouts);
    let allow = program(rules, SeccompAction::KillProcess, SeccompAction::Allow)?;
    Ok([
        errno_filter(REFUSED, libc::EACCES)?,
        errno_filter(ABSENT, libc::ENOSYS)?,
        allow,
    ])
}

/// Applies the filters to every thread of the process.
pub fn apply() -> Result<(), SandboxError> {
    for prog in filters()? {
        seccompiler::apply_filter_all_threads(&prog)
            .map_err(|e| SandboxError(RuleError::new(e.to_string())))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;
    use nix::sys::wait::WaitStatus;

    /// Runs `probe` in a child under the filters; its wait status.
    fn under_filters(probe: fn() -> i32) -> WaitStatus {
        paddock_jail::seccomp_probe::run_under(&filters().expect("filters"), probe)
    }

    fn killed(status: WaitStatus) -> bool {
        matches!(status, WaitStatus::Signaled(_, Signal::SIGSYS, _))
    }

    const PROBE_ENV: &str = "PADDOCK_NET_SERVICES_FILTER_PROBE";

    /// What the resolver and the proxy do, through std as they do it,
    /// under the filter: accept, connect with a timeout, clone and time
    /// out sockets, UDP both ways, threads with small stacks, randomness.
    /// Run in a fresh process (this test binary again), since the filter
    /// cannot be taken off the process that installs it.
    #[test]
    fn what_the_services_do_passes_the_filter() {
        use std::io::{Read, Write};
        use std::net::{Ipv4Addr, TcpListener, TcpStream, UdpSocket};
        use std::time::Duration;
        if std::env::var_os(PROBE_ENV).is_none() {
            let exe = std::env::current_exe().expect("test binary");
            let out = std::process::Command::new(exe)
                .args([
                    "--exact",
                    "sandbox::tests::what_the_services_do_passes_the_filter",
                    "--test-threads=1",
                    "--nocapture",
                ])
                .env(PROBE_ENV, "1")
                .output()
                .expect("run the probe");
            assert!(
                out.status.success() && String::from_utf8_lossy(&out.stdout).contains("1 passed"),
                "{:?}\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            return;
        }
        // Bound before the filter, as PID 1 binds them.
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("listener");
        let server = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("udp");
        let (to_tcp, to_udp) = (
            listener.local_addr().expect("addr"),
            server.local_addr().expect("addr"),
        );
        // The runtime's listener, bound before too.
        let second = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("listener");
        let to_second = second.local_addr().expect("addr");
        apply().expect("filter");
        let accepted = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || {
                let (mut c, _) = listener.accept().expect("accept");
                let mut b = [0u8; 4];
                c.read_exact(&mut b).expect("read");
                c.write_all(&b).expect("write");
                c.shutdown(std::net::Shutdown::Both).expect("shutdown");
            })
            .expect("thread");
        let mut c = TcpStream::connect_timeout(&to_tcp, Duration::from_secs(10)).expect("connect");
        let c2 = c.try_clone().expect("clone");
        c2.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        c2.set_write_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        assert!(c.peer_addr().is_ok() && c.local_addr().is_ok());
        c.write_all(b"ping").expect("send");
        let mut back = Vec::new();
        c.read_to_end(&mut back).expect("echo");
        assert_eq!(back, b"ping");
        accepted.join().expect("accept thread");
        let client = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("udp bind");
        client.connect(to_udp).expect("udp connect");
        client.send(b"query").expect("udp send");
        let mut buf = [0u8; 16];
        let (n, from) = server.recv_from(&mut buf).expect("recv_from");
        server.send_to(&buf[..n], from).expect("send_to");
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        assert_eq!(client.recv(&mut buf).expect("recv"), 5);
        let mut id = [0u8; 2];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut id)
            .expect("randomness");
        std::thread::sleep(Duration::from_millis(1));
        // The services' runtime: workers, a listener taken from std, a
        // connection out, UDP, timers, a blocking thread.
        let (listener, to_tcp) = (second, to_second);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime under the filter");
        runtime.block_on(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            listener.set_nonblocking(true).expect("nonblocking");
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let echo = tokio::spawn(async move {
                let (mut c, _) = listener.accept().await.expect("accept");
                let mut b = [0u8; 4];
                c.read_exact(&mut b).await.expect("read");
                c.write_all(&b).await.expect("write");
                c.shutdown().await.expect("shutdown");
            });
            let mut c = tokio::net::TcpStream::connect(to_tcp)
                .await
                .expect("connect");
            c.set_nodelay(true).expect("nodelay");
            c.write_all(b"pong").await.expect("send");
            let mut back = Vec::new();
            c.read_to_end(&mut back).await.expect("echo");
            assert_eq!(back, b"pong");
            echo.await.expect("echo task");
            let udp = tokio::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
                .await
                .expect("udp");
            udp.connect(to_udp).await.expect("udp connect");
            udp.send(b"q").await.expect("udp send");
            tokio::time::sleep(Duration::from_millis(1)).await;
            let std = c.into_std().expect("into std");
            std.set_nonblocking(false).expect("blocking");
            let (tx, rx) = tokio::sync::oneshot::channel();
            std::thread::Builder::new()
                .stack_size(128 * 1024)
                .spawn(move || tx.send(std.peer_addr().is_ok()))
                .expect("thread");
            assert_eq!(rx.await.ok(), Some(true));
        });
        runtime.shutdown_timeout(Duration::from_secs(1));
    }

    #[test]
    fn ipv4_sockets_are_allowed() {
        let status = under_filters(|| {
            // SAFETY: socket with plain values; the descriptor is closed.
            let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
            if fd < 0 {
                return 1;
            }
            let mut on: libc::c_int = 1;
            // SAFETY: FIONBIO reads one int from a local we own.
            let r = unsafe { libc::ioctl(fd, libc::FIONBIO, &mut on) };
            // SAFETY: closing the descriptor made above.
            unsafe { libc::close(fd) };
            i32::from(r != 0)
        });
        assert!(matches!(status, WaitStatus::Exited(_, 0)), "{status:?}");
    }

    #[test]
    fn mptcp_and_raw_sockets_kill() {
        let mptcp = under_filters(|| {
            // SAFETY: socket with plain values (262: IPPROTO_MPTCP).
            unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 262) };
            0
        });
        assert!(killed(mptcp), "MPTCP: {mptcp:?}");
        let raw = under_filters(|| {
            // SAFETY: socket with plain values.
            unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP) };
            0
        });
        assert!(killed(raw), "raw: {raw:?}");
        let tcp = under_filters(|| {
            // SAFETY: socket with plain values; closed right after.
            let fd = unsafe {
                libc::socket(
                    libc::AF_INET,
                    libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                    libc::IPPROTO_TCP,
                )
            };
            // SAFETY: closing what was made above.
            unsafe { libc::close(fd) };
            i32::from(fd < 0)
        });
        assert!(
            matches!(tcp, WaitStatus::Exited(_, 0)),
            "TCP with flags: {tcp:?}"
        );
    }

    #[test]
    fn unix_and_netlink_sockets_kill() {
        for family in [
            libc::AF_UNIX,
            libc::AF_NETLINK,
            libc::AF_PACKET,
            libc::AF_INET6,
        ] {
            let status = match family {
                libc::AF_UNIX => under_filters(|| {
                    // SAFETY: socket with plain values.
                    unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0) };
                    0
                }),
                libc::AF_NETLINK => under_filters(|| {
                    // SAFETY: socket with plain values.
                    unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW, 0) };
                    0
                }),
                libc::AF_PACKET => under_filters(|| {
                    // SAFETY: socket with plain values.
                    unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
                    0
                }),
                _ => under_filters(|| {
                    // SAFETY: socket with plain values.
                    unsafe { libc::socket(libc::AF_INET6, libc::SOCK_STREAM, 0) };
                    0
                }),
            };
            assert!(killed(status), "family {family}: {status:?}");
        }
    }

    #[test]
    fn forks_lingering_sockets_and_other_prctls_kill_and_clone3_is_absent() {
        let fork = under_filters(|| {
            // SAFETY: a raw fork-like clone; the child, if there were one,
            // exits at once.
            let r = unsafe {
                libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_ulong, 0, 0, 0, 0)
            };
            if r == 0 {
                // SAFETY: leaving the forked child at once.
                unsafe { libc::_exit(0) };
            }
            0
        });
        assert!(killed(fork), "fork: {fork:?}");
        let linger = under_filters(|| {
            // SAFETY: socket with plain values.
            let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
            let l = libc::linger {
                l_onoff: 1,
                l_linger: 1_000_000,
            };
            // SAFETY: SO_LINGER reads a linger struct we own.
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&l as *const libc::linger).cast(),
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                )
            };
            0
        });
        assert!(killed(linger), "SO_LINGER: {linger:?}");
        let prctl = under_filters(|| {
            // SAFETY: a prctl with plain values.
            unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) };
            0
        });
        assert!(killed(prctl), "prctl: {prctl:?}");
        let clone3 = under_filters(|| {
            // SAFETY: clone3 with a null argument: without the filter this
            // fails with EFAULT; with it, ENOSYS before the kernel looks.
            let r = unsafe { libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0) };
            // SAFETY: reading errno right after the call.
            let errno = unsafe { *libc::__errno_location() };
            i32::from(!(r < 0 && errno == libc::ENOSYS))
        });
        assert!(
            matches!(clone3, WaitStatus::Exited(_, 0)),
            "clone3: {clone3:?}"
        );
    }

    #[test]
    fn other_ioctls_and_exec_kill_and_opening_files_fails() {
        let status = under_filters(|| {
            let mut n: libc::c_int = 0;
            // SAFETY: FIONREAD on stdin writes one int into a local.
            unsafe { libc::ioctl(0, libc::FIONREAD, &mut n) };
            0
        });
        assert!(killed(status), "{status:?}");
        let status = under_filters(|| {
            let path = c"/bin/true";
            let argv = [path.as_ptr(), std::ptr::null()];
            let envp = [std::ptr::null()];
            // SAFETY: execve with NUL-terminated strings and arrays.
            unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
            0
        });
        assert!(killed(status), "{status:?}");
        let status = under_filters(|| {
            let path = c"/etc/passwd";
            // SAFETY: a plain open of a NUL-terminated path.
            let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY) };
            // SAFETY: reading errno right after the call.
            let errno = unsafe { *libc::__errno_location() };
            i32::from(!(fd < 0 && errno == libc::EACCES))
        });
        assert!(matches!(status, WaitStatus::Exited(_, 0)), "{status:?}");
    }
}
