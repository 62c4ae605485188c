//! What PID 1 and the network services process say to each other over
//! their channel (one SOCK_SEQPACKET socket): PID 1 pushes `Update`s, the
//! process answers with `Report`s. Both sides build on these: the process
//! here, PID 1's supervisor and link in `paddock-init`.

use paddock_net::policy::Egress;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// Descriptors the process finds at start.
pub const CHANNEL_FD: i32 = 3;
pub const RESOLVER_FD: i32 = 4;
pub const PROXY_FD: i32 = 5;

/// Its uid and gid (no other process uses them).
pub const UID: u32 = 901;
pub const GID: u32 = 901;

/// Longest message from PID 1: one workspace's policy (256 entries of up
/// to 253 characters) fits with room to spare. The process's reports to
/// PID 1 keep the channel's default cap, since PID 1 does not trust them.
pub const MAX_UPDATE: usize = 160 * 1024;
/// Workspaces per refusal report (so a report stays under that cap).
pub const REPORT_CHUNK: usize = 256;
/// Activity records per report: each is at most a name (253 bytes), an
/// id, an address and a reason, so 64 stay under that cap.
pub const ACTIVITY_CHUNK: usize = 64;
/// Secret events per report (`broker::events`, where each is bounded).
pub use crate::broker::events::SECRET_EVENT_CHUNK;

/// PID 1 → network services.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "update", rename_all = "snake_case")]
pub enum Update {
    /// The workspace at guest slot `slot` and its policy, replacing any
    /// entry there.
    Set {
        slot: u32,
        id: String,
        egress: Egress,
    },
    Remove {
        slot: u32,
    },
    /// Where allowed names are asked, and the host's own addresses
    /// (never handed to a workspace).
    Resolvers {
        upstream: Vec<Ipv4Addr>,
        host: Vec<Ipv4Addr>,
    },
    /// Workspace `id`'s brokered secrets, replacing what it had (empty:
    /// none). Their values: `Brokered`'s Debug never shows them.
    Secrets {
        id: String,
        secrets: Vec<crate::broker::Brokered>,
    },
    /// The certificate the secret broker shows for one host.
    HostCert {
        cert: crate::broker::HostCert,
    },
    /// A workspace is gone: drop its counts.
    Forget {
        id: String,
    },
    /// Report what is new, then answer `Synced` with the same number.
    /// The first `Sync` after start also means "the state is complete:
    /// start serving".
    Sync {
        seq: u64,
    },
}

/// Network services → PID 1.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "report", rename_all = "snake_case")]
pub enum Report {
    /// Refusals counted since the last report, per workspace id.
    Refused {
        #[serde(default)]
        lookups: Vec<(String, u64)>,
        #[serde(default)]
        connections: Vec<(String, u64)>,
    },
    /// Where workspaces connected since the last report
    /// (`net::activity`), at most ACTIVITY_CHUNK records.
    Activity {
        records: Vec<(crate::activity::Key, crate::activity::Counts)>,
    },
    /// Destinations workspaces asked for (`net::requests`), at most
    /// ACTIVITY_CHUNK.
    Asks {
        asks: Vec<crate::requests::Ask>,
    },
    /// What the secret broker did (`net::broker::events`), at most
    /// SECRET_EVENT_CHUNK records.
    Secrets {
        events: Vec<(crate::broker::events::SecretEvent, u64)>,
    },
    Synced {
        seq: u64,
    },
    /// It cannot serve (its sockets are not what it expected, its filter
    /// would not load); PID 1 logs this and tries again later.
    Failed {
        error: String,
    },
}

/// The updates that turn the table `from` into `to`.
pub fn diff(
    from: &paddock_net::policy_table::Table,
    to: &paddock_net::policy_table::Table,
) -> Vec<Update> {
    let removed = from
        .keys()
        .filter(|slot| !to.contains_key(slot))
        .map(|&slot| Update::Remove { slot });
    let set = to
        .iter()
        .filter(|(slot, entry)| from.get(slot) != Some(entry))
        .map(|(&slot, (id, egress))| Update::Set {
            slot,
            id: id.clone(),
            egress: egress.clone(),
        });
    removed.chain(set).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use paddock_net::policy::{CheckEgress as _, EgressRequest};

    fn egress(domains: &[&str]) -> Egress {
        EgressRequest {
            domains: domains.iter().map(|d| d.to_string()).collect(),
            cidrs: Vec::new(),
        }
        .check()
        .expect("valid")
    }

    #[test]
    fn a_diff_sets_what_changed_and_removes_what_went() {
        let mut a = paddock_net::policy_table::Table::new();
        a.insert(1, ("ws_one".into(), egress(&["one.test"])));
        a.insert(2, ("ws_two".into(), egress(&["two.test"])));
        let mut b = a.clone();
        b.remove(&1);
        b.insert(2, ("ws_two".into(), egress(&["two.test", "more.test"])));
        b.insert(3, ("ws_three".into(), egress(&[])));
        let d = diff(&a, &b);
        assert_eq!(d.len(), 3, "{d:?}");
        assert_eq!(d[0], Update::Remove { slot: 1 });
        assert!(matches!(&d[1], Update::Set { slot: 2, egress, .. } if egress.domains.len() == 2));
        assert!(matches!(&d[2], Update::Set { slot: 3, id, .. } if id == "ws_three"));
        assert!(diff(&b, &b).is_empty());
    }

    #[test]
    fn the_largest_policy_fits_one_update() {
        // 247 characters each, near the 253 a name may have.
        let long = |i: usize| {
            let l = |c: &str, n| c.repeat(n);
            format!(
                "{i:03}{}.{}.{}.{}.test",
                l("a", 60),
                l("b", 63),
                l("c", 63),
                l("d", 50)
            )
        };
        let domains: Vec<String> = (0..256).map(|i| format!("{}:443+8443", long(i))).collect();
        let refs: Vec<&str> = domains.iter().map(String::as_str).collect();
        let e = egress(&refs);
        assert_eq!(e.domains.len(), 256);
        let u = Update::Set {
            slot: 4095,
            id: "ws_0123456789abcdef".into(),
            egress: e,
        };
        let n = serde_json::to_vec(&u).expect("json").len();
        assert!(n < MAX_UPDATE, "{n} bytes");
    }
}
