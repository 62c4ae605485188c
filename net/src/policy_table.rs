//! Which workspace sits at a guest address and what it may reach: the
//! question the resolver and the proxy ask on every query and connection.
//!
//! Two copies exist. PID 1's is written by the firewall after each change
//! and is what PID 1 pushes to the network services process
//! (`net_services`), entry by entry, and pushes whole to a restarted one.
//! That process's copy is the one the resolver and the proxy read.
//!
//! It is kept apart from the firewall's lock, which a rebuild holds while
//! it reads every workspace's counters and loads a new table over netlink:
//! behind that lock, one tenant creating and deleting workspaces in a loop
//! held up every other workspace's lookups and connections (issue 14,
//! item 7). Readers take a read lock for one map lookup; the firewall
//! replaces the whole map after each change.

use crate::addressing::Slot;
use crate::policy::{Egress, WsNet};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{LazyLock, OnceLock, RwLock};
use tokio::sync::watch;

/// Slot number → workspace id and policy.
pub type Table = BTreeMap<u32, (String, Egress)>;

static TABLE: RwLock<Table> = RwLock::new(BTreeMap::new());
/// Ticks on every change to this process's copy: the proxy's open
/// connections wait on it to ask their policy again, instead of polling.
static CHANGES: LazyLock<watch::Sender<u64>> = LazyLock::new(|| watch::channel(0).0);

/// A receiver that wakes when the table changes.
pub fn changes() -> watch::Receiver<u64> {
    CHANGES.subscribe()
}

fn changed() {
    CHANGES.send_modify(|n| *n = n.wrapping_add(1));
}

/// A pushed table the network services process has yet to confirm.
#[must_use = "the network services follow only once the ticket is waited on"]
pub struct Ticket(Box<dyn FnOnce() + Send>);

impl Ticket {
    /// `wait` returns once the push it stands for is in force.
    pub fn new(wait: impl FnOnce() + Send + 'static) -> Ticket {
        Ticket(Box::new(wait))
    }

    pub fn wait(self) {
        (self.0)()
    }
}

/// How PID 1 sends a new table to the network services process. The line
/// to that process is PID 1's (`paddock-init`'s `net_services::link`),
/// above this crate, so it registers itself here instead of being called
/// by name: this crate never depends back on PID 1.
pub type Push = fn(&Table) -> Option<Ticket>;

static PUSH: OnceLock<Push> = OnceLock::new();

/// Sets where `publish` sends the table (once; later calls change
/// nothing). Until then `publish` only keeps it, as it did before the
/// process started: a process that starts gets the whole table.
pub fn push_with(push: Push) {
    let _ = PUSH.set(push);
}

/// Makes `workspaces` the whole table (PID 1) and sends the changes to
/// the network services; wait on the ticket (once the firewall's lock is
/// let go) for them to be in force there.
#[must_use = "the network services follow only once the ticket is waited on"]
pub fn publish<'a>(workspaces: impl IntoIterator<Item = &'a WsNet>) -> Option<Ticket> {
    let next: Table = workspaces
        .into_iter()
        .map(|w| (w.slot.0, (w.id.clone(), w.egress.clone())))
        .collect();
    *TABLE.write().unwrap_or_else(|e| e.into_inner()) = next.clone();
    PUSH.get().and_then(|push| push(&next))
}

/// The whole table as it stands.
pub fn snapshot() -> Table {
    TABLE.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// The ids of the workspaces in the table.
pub fn ids() -> std::collections::BTreeSet<String> {
    TABLE
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .map(|(id, _)| id.clone())
        .collect()
}

/// Sets one entry (the network services process, as PID 1 says).
pub fn set(slot: u32, id: String, egress: Egress) {
    TABLE
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(slot, (id, egress));
    changed();
}

/// Removes one entry (the network services process, as PID 1 says).
pub fn remove(slot: u32) {
    TABLE
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&slot);
    changed();
}

/// Whether the workspace at `guest` may reach `name`:`port`, asked
/// without copying its policy (every open connection asks on every
/// change to the table).
pub fn allows(guest: Ipv4Addr, name: &str, port: u16) -> bool {
    let Some(slot) = Slot::of_guest(guest) else {
        return false;
    };
    TABLE
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(&slot.0)
        .is_some_and(|(_, egress)| egress.allows(name, port))
}

/// The workspace at guest address `guest` and its policy.
pub fn lookup(guest: Ipv4Addr) -> Option<(String, Egress)> {
    let slot = Slot::of_guest(guest)?;
    TABLE
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(&slot.0)
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_are_answered_while_the_firewall_rebuilds() {
        let ws = WsNet {
            id: "ws_reader".into(),
            slot: Slot::new(7).expect("slot"),
            egress: Egress::default(),
            connections_per_s: 10,
            published: Vec::new(),
        };
        let _ = publish([&ws]); // no network services process here
        let guest = ws.slot.guest();
        // A rebuild in progress: the firewall's lock is held throughout.
        let held = crate::firewall::hold_for_test();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(lookup(guest).map(|(id, _)| id));
        });
        // A liveness check, not a timing: the old lookup waited on the
        // firewall's lock, so this never arrived while it was held.
        let got = rx.recv_timeout(std::time::Duration::from_secs(60));
        drop(held);
        assert_eq!(got, Ok(Some("ws_reader".to_string())));
        let _ = publish([]);
        assert_eq!(lookup(guest), None);
    }
}
