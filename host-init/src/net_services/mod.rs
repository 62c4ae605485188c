//! PID 1's side of the network services process: the workspaces'
//! resolver and egress proxy (the `paddock-net-services` crate), the two
//! services a guest talks to
//! directly, in a process of their own (`paddock-init net-services`),
//! so a bug a hostile guest finds there costs a restart of that process,
//! not a reboot of the box.
//!
//! It runs as its own uid with no capabilities, no_new_privs, a seccomp
//! filter (`sandbox`) and a memory cgroup. PID 1 binds its sockets (udp/53
//! needs a privilege it does not have) and keeps them: while the process
//! restarts, queries and connections wait in the sockets' queues rather
//! than being refused. PID 1 pushes it everything it decides by
//! (`Update`): each workspace's policy, the upstream resolvers, and
//! `Sync`, which it answers once all before has taken effect; it reports
//! back what it refused (`Report`), which PID 1 adds up for /metrics.
//!
//! `supervisor` is PID 1's side (start, restart, reports), `link` what
//! PID 1 sends and waits for, `secrets` what it pushes to the broker,
//! `child` the process's start in this binary (its log and its channel,
//! then the crate's `child::main`). The messages are the crate's `wire`.

pub mod child;
pub mod link;
pub mod secrets;
pub mod supervisor;

/// The channel's messages and the process's fixed numbers (descriptors,
/// uid, caps), shared with the process's own crate.
pub use paddock_net_services::wire::*;

pub use link::{
    flush, forget, push_policy, refused_connections, refused_lookups, set_resolvers, Ticket,
};

/// The workspaces' side of the network: firewall, then the resolver and
/// the proxy (`exe net-services`, a confined process of their own).
/// Failures are logged and leave workspaces without a network opening
/// (their creation then fails with the reason), never with an open one.
pub fn start_workspace_network(exe: std::path::PathBuf) {
    use crate::net::firewall;
    use crate::{error, info};
    match firewall::start(UID) {
        Ok(()) => info!(
            "workspace firewall installed (nf_tables table inet {})",
            firewall::TABLE
        ),
        Err(e) => {
            error!("workspace firewall: {e}; workspaces cannot be created");
            return;
        }
    }
    use supervisor::{start, Confine, Sockets};
    let started = Sockets::bind().and_then(|sockets| start(exe, sockets, Confine::APPLIANCE));
    if let Err(e) = started {
        error!("workspace resolver and egress proxy: {e}");
    }
}
