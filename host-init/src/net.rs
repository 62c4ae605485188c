//! The workspaces' network as PID 1 names it: PID 1's own networking (the
//! uplink, taps, the firewall, the egress policy) is the `paddock-net`
//! crate, the guest-facing services (resolver, proxy, secret broker) the
//! `paddock-net-services` crate, run as their own process; PID 1 uses
//! the latter's record types and, for its webhooks, its resolver's and
//! broker's upstream clients. These names keep the paths the control
//! plane uses.

pub use paddock_net::{addressing, firewall, nft, policy, policy_table, tap};
pub use paddock_net::{bring_up, keep_lease, IfError, NetError, NetMode, Uplink};
pub use paddock_net_services::{activity, broker, dns, requests};
