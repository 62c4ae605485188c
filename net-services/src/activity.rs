//! Where each workspace tried to connect, as the resolver and the proxy
//! saw it: lookups (name, answers, allowed or not) and connections (the
//! name from SNI or Host, where the guest aimed, the decision and why,
//! bytes each way, whether the upstream answered). Counted here, in the
//! network services process, by key; the reporter drains them to PID 1
//! every second (`take`), which keeps them per workspace
//! (control::netlog). Never payloads or secrets: names, addresses, ports,
//! counts.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Mutex;

/// Distinct keys kept between reports, all workspaces together, and per
/// workspace; past them a workspace's records are counted in one
/// "(more)" record, so a guest inventing names cannot grow this.
const MAX_KEYS: usize = 8192;
const MAX_KEYS_PER_WORKSPACE: usize = 256;
/// Answers kept with a lookup.
pub const MAX_ANSWERS: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A lookup at the workspace's resolver.
    Dns,
    /// A connection through the egress proxy.
    Tcp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Allowed,
    Denied,
}

/// What is counted together.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Key {
    pub workspace: String,
    pub kind: Kind,
    /// The name asked (DNS) or named (SNI or Host); "" when there was none.
    pub name: String,
    /// Where the guest aimed the connection (its original destination).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest: Option<SocketAddrV4>,
    pub decision: Decision,
    /// Why it was denied (the rule), or for an allowed one what allowed it.
    pub reason: String,
}

/// The counts of one key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub count: u64,
    #[serde(default)]
    pub bytes_up: u64,
    #[serde(default)]
    pub bytes_down: u64,
    /// Connections whose upstream did not answer.
    #[serde(default)]
    pub upstream_failed: u64,
    /// Connections aimed at an address the name does not resolve to (the
    /// guest named one host and dialled another; the proxy connects to
    /// the name's own addresses).
    #[serde(default)]
    pub mismatched: u64,
    /// Requests the secret broker put a secret into.
    #[serde(default)]
    pub secrets_injected: u64,
    /// Requests the secret broker refused for a misplaced placeholder.
    #[serde(default)]
    pub secret_misuse: u64,
    /// A lookup's last answers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answers: Vec<Ipv4Addr>,
}

impl Counts {
    pub fn merge(&mut self, other: &Counts) {
        self.count = self.count.saturating_add(other.count);
        self.bytes_up = self.bytes_up.saturating_add(other.bytes_up);
        self.bytes_down = self.bytes_down.saturating_add(other.bytes_down);
        self.upstream_failed = self.upstream_failed.saturating_add(other.upstream_failed);
        self.mismatched = self.mismatched.saturating_add(other.mismatched);
        self.secrets_injected = self.secrets_injected.saturating_add(other.secrets_injected);
        self.secret_misuse = self.secret_misuse.saturating_add(other.secret_misuse);
        if !other.answers.is_empty() {
            self.answers = other.answers.clone();
        }
    }
}

/// What is counted, and how many keys each workspace has (kept up with
/// the map, so a new key costs no scan).
#[derive(Default)]
struct Seen {
    counts: HashMap<Key, Counts>,
    keys_of: HashMap<String, usize>,
}

static SEEN: Mutex<Option<Seen>> = Mutex::new(None);

fn add(key: Key, counts: Counts) {
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    let seen = seen.get_or_insert_with(Seen::default);
    let key = if seen.counts.contains_key(&key) {
        key
    } else {
        let mine = seen.keys_of.get(&key.workspace).copied().unwrap_or(0);
        if seen.counts.len() >= MAX_KEYS || mine >= MAX_KEYS_PER_WORKSPACE {
            Key {
                name: "(more)".into(),
                dest: None,
                reason: "more distinct destinations than are kept per second".into(),
                ..key
            }
        } else {
            key
        }
    };
    if !seen.counts.contains_key(&key) {
        if seen.counts.len() >= MAX_KEYS + 64 {
            // Even the "(more)" records are full: counted nowhere.
            return;
        }
        *seen.keys_of.entry(key.workspace.clone()).or_default() += 1;
    }
    seen.counts.entry(key).or_default().merge(&counts);
}

/// A lookup from workspace `id`.
pub fn lookup(id: &str, name: &str, allowed: bool, reason: &str, answers: &[Ipv4Addr]) {
    add(
        Key {
            workspace: id.to_string(),
            kind: Kind::Dns,
            name: name.to_string(),
            dest: None,
            decision: if allowed {
                Decision::Allowed
            } else {
                Decision::Denied
            },
            reason: reason.to_string(),
        },
        Counts {
            count: 1,
            answers: answers.iter().take(MAX_ANSWERS).copied().collect(),
            ..Counts::default()
        },
    );
}

/// One connection from workspace `id` through the proxy, when it ended
/// (or was refused).
pub struct Connection<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub dest: Option<SocketAddrV4>,
    pub denied: Option<&'a str>,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub upstream_failed: bool,
    pub mismatched: bool,
    /// Through the secret broker: requests given a secret, and refused.
    pub brokered: Option<(u64, u64)>,
}

pub fn connection(c: Connection<'_>) {
    add(
        Key {
            workspace: c.id.to_string(),
            kind: Kind::Tcp,
            name: c.name.to_string(),
            dest: c.dest,
            decision: if c.denied.is_some() {
                Decision::Denied
            } else {
                Decision::Allowed
            },
            reason: match (c.denied, c.brokered) {
                (Some(why), _) => why.to_string(),
                (None, Some(_)) => "allowlist, secret broker".to_string(),
                (None, None) => "allowlist".to_string(),
            },
        },
        Counts {
            count: 1,
            bytes_up: c.bytes_up,
            bytes_down: c.bytes_down,
            upstream_failed: u64::from(c.upstream_failed),
            mismatched: u64::from(c.mismatched),
            secrets_injected: c.brokered.map_or(0, |b| b.0),
            secret_misuse: c.brokered.map_or(0, |b| b.1),
            answers: Vec::new(),
        },
    );
}

/// Everything counted since the last call.
pub fn take() -> Vec<(Key, Counts)> {
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    seen.take()
        .map(|s| s.counts.into_iter().collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_key_adds_up_and_a_flood_of_names_stays_bounded() {
        // The map is process-wide: this test's workspace ids are its own.
        for _ in 0..3 {
            lookup(
                "ws_act1",
                "pypi.org",
                true,
                "allowlist",
                &[Ipv4Addr::new(203, 0, 113, 1)],
            );
        }
        connection(Connection {
            id: "ws_act1",
            name: "pypi.org",
            dest: Some(SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 1), 443)),
            denied: None,
            bytes_up: 10,
            bytes_down: 2000,
            upstream_failed: false,
            mismatched: false,
            brokered: None,
        });
        for n in 0..1000 {
            lookup(
                "ws_act2",
                &format!("n{n}.example"),
                false,
                "not on its allowlist",
                &[],
            );
        }
        let all = take();
        let mine: Vec<_> = all
            .iter()
            .filter(|(k, _)| k.workspace == "ws_act1")
            .collect();
        assert_eq!(mine.len(), 2);
        let dns = mine.iter().find(|(k, _)| k.kind == Kind::Dns).expect("dns");
        assert_eq!((dns.1.count, dns.1.answers.len()), (3, 1));
        let flood: Vec<_> = all
            .iter()
            .filter(|(k, _)| k.workspace == "ws_act2")
            .collect();
        assert!(flood.len() <= MAX_KEYS_PER_WORKSPACE + 1, "{}", flood.len());
        let total: u64 = flood.iter().map(|(_, c)| c.count).sum();
        assert_eq!(total, 1000, "every lookup counted, some under (more)");
        assert!(take()
            .iter()
            .all(|(k, _)| !k.workspace.starts_with("ws_act")));
    }
}
