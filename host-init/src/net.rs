//! The workspaces' network as PID 1 names it. PID 1's own networking (the
//! uplink, taps, the firewall, the egress policy) is the `paddock-net`
//! crate; these names keep the paths the control plane uses.

pub mod activity;
pub mod broker;
pub mod dns;
pub mod dns_cache;
pub mod fair_share;
pub mod http_stream;
pub mod proxy;
pub mod refusals;
pub mod requests;
pub mod single_flight;
pub mod sni;
pub mod splice;

pub use paddock_net::{addressing, firewall, nft, policy, policy_table, tap};
pub use paddock_net::{bring_up, keep_lease, IfError, NetError, NetMode, Uplink};

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
