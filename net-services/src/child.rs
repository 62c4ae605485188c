//! The network services process itself (`paddock-init net-services`):
//! takes the sockets PID 1 bound, confines itself, waits for the state
//! PID 1 pushes, then serves the resolver and the proxy as tasks on a
//! tokio runtime while the main thread applies PID 1's updates.

use crate::wire::{
    Report, Update, ACTIVITY_CHUNK, PROXY_FD, REPORT_CHUNK, RESOLVER_FD, SECRET_EVENT_CHUNK,
};
use crate::{dns, proxy};
use paddock_net::policy_table;
use std::net::{TcpListener, UdpSocket};
use std::os::fd::{BorrowedFd, FromRawFd};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The process's channel to PID 1, as this crate needs it.
///
/// SEAM (issue 15): the seqpacket transport is `paddock-init`'s
/// `api::channel::Endpoint` here, on its way to a crate of its own
/// (`paddock-api-channel`). This crate does not depend on it: the
/// `paddock-init net-services` entry opens the `Endpoint` on `CHANNEL_FD`
/// (limits `MAX_LINE` out, `MAX_UPDATE` in) and hands it in behind this
/// trait. Once the transport is a crate, this crate may take its
/// `Endpoint` directly and the trait can go.
pub trait Channel: Send + Sync {
    /// Sends one report to PID 1.
    fn send(&self, report: &Report) -> Result<(), ChannelFault>;
    /// The next update from PID 1.
    fn recv(&self) -> Result<Update, ChannelFault>;
}

/// Why the channel did not carry a message. Display says it as the
/// transport does.
#[derive(Debug, thiserror::Error)]
pub enum ChannelFault {
    /// A message over the channel's cap (nothing was sent).
    #[error("message longer than {0} bytes")]
    TooLong(usize),
    /// PID 1 closed or reset its end: it wants this process gone.
    #[error("channel closed")]
    Closed,
    /// An update came with a descriptor, which PID 1 never sends.
    #[error("PID 1 attached a descriptor to an update")]
    Descriptor,
    /// Anything else, as the transport said it.
    #[error("{0}")]
    Other(String),
}

/// How often refusals are reported without being asked (so a crash loses
/// at most this much of them).
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// Whether `fd` is an open socket of type `ty`.
fn socket_of_type(fd: i32, ty: nix::sys::socket::SockType) -> bool {
    use nix::sys::socket::{getsockopt, sockopt};
    // SAFETY: only borrowed for one getsockopt; an fd that is not open
    // just makes it fail.
    let b = unsafe { BorrowedFd::borrow_raw(fd) };
    getsockopt(&b, sockopt::SockType) == Ok(ty)
}

/// The sockets PID 1 passed, if they are what they must be.
fn take_sockets() -> Result<(UdpSocket, TcpListener), String> {
    use nix::sys::socket::SockType;
    if !socket_of_type(RESOLVER_FD, SockType::Datagram) {
        return Err(format!("fd {RESOLVER_FD} is not the resolver's UDP socket"));
    }
    if !socket_of_type(PROXY_FD, SockType::Stream) {
        return Err(format!("fd {PROXY_FD} is not the proxy's listening socket"));
    }
    // SAFETY: both descriptors were checked to be open sockets of the
    // right type; PID 1 passed them for this process alone.
    let udp = unsafe { UdpSocket::from_raw_fd(RESOLVER_FD) };
    // SAFETY: as above.
    let tcp = unsafe { TcpListener::from_raw_fd(PROXY_FD) };
    Ok((udp, tcp))
}

/// Sends what was refused since the last report, then (if given) the
/// `Synced` answer; one at a time, so a `Synced` never overtakes the
/// counts before it.
struct Reporter {
    channel: Arc<dyn Channel>,
    turn: Mutex<()>,
}

impl Reporter {
    /// Sends a report of counts; one too long for the channel (its
    /// fields are bounded where they are recorded, so this is a bug's
    /// safety net) is dropped and said, never the end of the process: a
    /// guest must not be able to restart the resolver and the proxy by
    /// making a report big.
    fn send_counted(&self, report: &Report) -> Result<(), ChannelFault> {
        match self.channel.send(report) {
            Err(ChannelFault::TooLong(n)) => {
                log::warn!("a report of the network services over {n} bytes was dropped");
                Ok(())
            }
            other => other,
        }
    }

    fn report(&self, synced: Option<u64>) -> Result<(), ChannelFault> {
        let _turn = self.turn.lock().unwrap_or_else(|e| e.into_inner());
        let lookups = dns::new_refusals();
        let connections = crate::egress_refusals::new_refusals();
        let chunks = lookups.len().max(connections.len()).div_ceil(REPORT_CHUNK);
        let mut lookups = lookups.into_iter();
        let mut connections = connections.into_iter();
        for _ in 0..chunks {
            let report = Report::Refused {
                lookups: lookups.by_ref().take(REPORT_CHUNK).collect(),
                connections: connections.by_ref().take(REPORT_CHUNK).collect(),
            };
            self.channel.send(&report)?;
        }
        // Asks and activity go on the periodic tick only: a Sync (which
        // anyone can cause, with /metrics) then costs a few messages, never
        // a whole round of activity, and PID 1's flood limit holds.
        if synced.is_none() {
            let asks = crate::requests::take();
            for asks in asks.chunks(ACTIVITY_CHUNK) {
                let report = Report::Asks {
                    asks: asks.to_vec(),
                };
                self.send_counted(&report)?;
            }
            let events = crate::broker::events::take();
            for events in events.chunks(SECRET_EVENT_CHUNK) {
                let report = Report::Secrets {
                    events: events.to_vec(),
                };
                self.send_counted(&report)?;
            }
            let activity = crate::activity::take();
            for records in activity.chunks(ACTIVITY_CHUNK) {
                let report = Report::Activity {
                    records: records.to_vec(),
                };
                self.send_counted(&report)?;
            }
        }
        if let Some(seq) = synced {
            self.channel.send(&Report::Synced { seq })?;
        }
        Ok(())
    }
}

fn apply(update: Update) {
    match update {
        Update::Set { slot, id, egress } => policy_table::set(slot, id, egress),
        Update::Remove { slot } => policy_table::remove(slot),
        Update::Resolvers { upstream, host } => dns::configure(&upstream, &host),
        Update::Forget { id } => {
            dns::forget(&id);
            crate::egress_refusals::forget(&id);
        }
        Update::Secrets { id, secrets } => crate::broker::table::set_secrets(id, secrets),
        Update::HostCert { cert } => {
            if let Err(e) = crate::broker::table::set_cert(&cert) {
                log::warn!("secret broker: {e}");
            }
        }
        Update::Sync { .. } => {}
    }
}

/// The process, once `paddock-init net-services` has set up its log (the
/// `log` facade, relayed through PID 1) and opened `channel`.
pub fn main(channel: Arc<dyn Channel>) -> ExitCode {
    let fail = |error: String| {
        eprintln!("paddock-init net-services: {error}");
        let _ = channel.send(&Report::Failed { error });
        ExitCode::FAILURE
    };
    let (udp, tcp) = match take_sockets() {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    if let Err(e) = crate::sandbox::apply() {
        return fail(e.to_string());
    }
    let reporter = Arc::new(Reporter {
        channel: channel.clone(),
        turn: Mutex::new(()),
    });
    let mut serving: Option<tokio::runtime::Runtime> = None;
    loop {
        let update = match channel.recv() {
            Ok(u) => u,
            Err(e @ ChannelFault::Descriptor) => return fail(e.to_string()),
            // PID 1 closed the channel (or ended): it wants this process gone.
            Err(ChannelFault::Closed) => return ExitCode::SUCCESS,
            Err(e) => return fail(format!("reading PID 1's updates: {e}")),
        };
        let sync = match &update {
            Update::Sync { seq } => Some(*seq),
            _ => None,
        };
        apply(update);
        let Some(seq) = sync else { continue };
        // The first Sync completes the state a restart starts from; only
        // then are queries and connections taken (until then they wait in
        // the sockets' queues).
        if serving.is_none() {
            match start_serving(&udp, &tcp, &reporter) {
                Ok(runtime) => serving = Some(runtime),
                Err(e) => return fail(e),
            }
        }
        if let Err(e) = reporter.report(Some(seq)) {
            return fail(format!("reporting to PID 1: {e}"));
        }
    }
}

/// Starts the resolver and the proxy on a runtime of their own, and the
/// reporter's thread; the runtime is theirs for as long as it is kept.
fn start_serving(
    udp: &UdpSocket,
    tcp: &TcpListener,
    reporter: &Arc<Reporter>,
) -> Result<tokio::runtime::Runtime, String> {
    let udp = udp
        .try_clone()
        .map_err(|e| format!("resolver socket: {e}"))?;
    let tcp = tcp.try_clone().map_err(|e| format!("proxy socket: {e}"))?;
    // Two workers: the box's CPUs belong to the workspaces, and every
    // connection is I/O bound except a brokered one's TLS.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("net-services")
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    // A socket that fails for good ends the process: PID 1 starts another
    // on fresh sockets.
    fn until_it_fails(what: &'static str, e: std::io::Error) -> ! {
        log::error!("the {what}'s socket failed: {e}");
        std::process::exit(1)
    }
    runtime.spawn(async move { until_it_fails("resolver", dns::serve(udp).await) });
    runtime.spawn(async move { until_it_fails("proxy", proxy::serve(tcp).await) });
    let r = reporter.clone();
    std::thread::Builder::new()
        .name("report".into())
        .spawn(move || loop {
            std::thread::sleep(REPORT_EVERY);
            if r.report(None).is_err() {
                // PID 1 is gone or ended this process's channel.
                std::process::exit(0);
            }
        })
        .map_err(|e| format!("starting the report thread: {e}"))?;
    Ok(runtime)
}
