//! The network services process (`paddock-init net-services`): the two
//! services a guest talks to directly, the workspaces' resolver (`dns`)
//! and their egress proxy (`proxy`, with `splice` and the secret broker,
//! `broker`), in a process of their own, so a bug a hostile guest finds
//! here costs a restart of that process, not a reboot of the box.
//!
//! `child` is the process (`child::main`), `sandbox` its seccomp filter,
//! `wire` what it and PID 1 say to each other. PID 1's side (starting
//! it, pushing it policy, adding up its reports) stays in `paddock-init`,
//! which depends on this crate for `wire` and for the record types the
//! reports carry (`activity`, `requests`, `broker::events`). This crate
//! depends on `paddock-net` for the policy and the addressing, never on
//! `paddock-init`.

pub mod activity;
pub mod broker;
pub mod child;
pub mod dns;
pub mod dns_cache;
pub mod egress_refusals;
pub mod fair_share;
pub mod http_stream;
pub mod proxy;
pub mod refusals;
pub mod requests;
pub mod sandbox;
pub mod single_flight;
pub mod sni;
pub mod splice;
pub mod wire;

/// Whether a socket error leaves the socket usable (the resolver and the
/// proxy go on; anything else ends their process, and PID 1 starts a new
/// one on fresh sockets).
pub(crate) fn transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        Interrupted
            | WouldBlock
            | TimedOut
            | ConnectionRefused
            | ConnectionReset
            | ConnectionAborted
    ) || e.raw_os_error() == Some(libc::EPROTO)
}
