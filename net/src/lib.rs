//! PID 1's networking: the uplink (the wired NIC, by DHCP or static
//! configuration), each workspace's tap, the workspace firewall over
//! nf_tables, and the egress policy every workspace is held to.
//!
//! Two pieces are shared with the network services process (the
//! `paddock-net-services` crate, which depends on this one): the policy
//! types (`policy`) with the table of who sits at which guest address
//! (`policy_table`), and the addressing both sides know workspaces by
//! (`addressing`). Nothing here depends on `paddock-init`: what PID 1
//! must hear of (a new policy table to push) it registers a hook for.

pub mod addressing;
mod dhcp;
pub mod firewall;
mod ifconfig;
pub mod nft;
pub mod policy;
pub mod policy_table;
pub mod tap;
pub mod uplink;

pub use uplink::{bring_up, keep_lease, IfError, NetError, NetMode, Uplink};
