//! PID 1's copy of what the secret broker in the network services
//! process needs: each workspace's brokered secrets and a certificate per
//! brokered host (issued here, from the egress CA). Pushed as it changes,
//! and whole to a restarted process.

use super::link;
use super::Update;
use crate::control::egress_ca;
use crate::net::broker::{Brokered, HostCert, SecretValue};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

/// Host certificates kept; past it, those no workspace's secret names
/// any more are dropped.
const MAX_CERTS: usize = 4096;

#[derive(Default)]
struct State {
    by_workspace: BTreeMap<String, Vec<Brokered>>,
    /// host → its certificate and when that ends (Unix seconds).
    certs: BTreeMap<String, (HostCert, i64)>,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);
/// One change at a time from here to the process, so two changes of one
/// workspace reach it in the order they were made here.
static PUSHING: Mutex<()> = Mutex::new(());

#[derive(Debug, thiserror::Error)]
pub enum BrokerPushError {
    #[error("the egress CA: {0}")]
    Ca(#[from] egress_ca::CaError),
}

/// Makes `secrets` workspace `id`'s brokered secrets (empty: it has none)
/// and returns once the network services process has them (or is being
/// restarted, which gives it them too).
pub fn set(id: &str, secrets: Vec<Brokered>) -> Result<(), BrokerPushError> {
    let _turn = PUSHING.lock().unwrap_or_else(|e| e.into_inner());
    let mut updates = Vec::new();
    {
        let mut state = STATE.lock().unwrap_or_else(|e| e.into_inner());
        let state = state.get_or_insert_with(State::default);
        let hosts: BTreeSet<&String> = secrets.iter().flat_map(|s| &s.hosts).collect();
        let now = egress_ca::now();
        let stale: Vec<&String> = hosts
            .into_iter()
            .filter(|h| {
                state
                    .certs
                    .get(*h)
                    .is_none_or(|(_, until)| until - now < egress_ca::RENEW_S)
            })
            .collect();
        if !stale.is_empty() {
            let ca = egress_ca::get()?;
            for host in stale {
                let issued = ca.issue(host)?;
                let cert = HostCert {
                    host: host.clone(),
                    chain_pem: issued.chain_pem,
                    key_pem: SecretValue::new(issued.key_pem),
                };
                updates.push(Update::HostCert { cert: cert.clone() });
                state.certs.insert(host.clone(), (cert, issued.not_after));
            }
        }
        if secrets.is_empty() {
            state.by_workspace.remove(id);
        } else {
            state.by_workspace.insert(id.to_string(), secrets.clone());
        }
        if state.certs.len() > MAX_CERTS {
            let used: BTreeSet<String> = state
                .by_workspace
                .values()
                .flatten()
                .flat_map(|s| s.hosts.iter().cloned())
                .collect();
            state.certs.retain(|h, _| used.contains(h));
        }
    }
    updates.push(Update::Secrets {
        id: id.to_string(),
        secrets,
    });
    // The state lock is let go first: a restart's hand-over takes the
    // link's lock and then this state's.
    if let Some(ticket) = link::push(&updates) {
        ticket.wait();
    }
    Ok(())
}

/// Workspace `id` has no brokered secrets any more (deleted, stopped).
pub fn clear(id: &str) {
    let known = STATE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .is_some_and(|s| s.by_workspace.contains_key(id));
    if known {
        // Needs no certificate, so it cannot fail.
        let _ = set(id, Vec::new());
    }
}

/// Everything, for a process that starts empty.
pub(super) fn whole_state() -> Vec<Update> {
    let state = STATE.lock().unwrap_or_else(|e| e.into_inner());
    let Some(state) = state.as_ref() else {
        return Vec::new();
    };
    let certs = state
        .certs
        .values()
        .map(|(cert, _)| Update::HostCert { cert: cert.clone() });
    let secrets = state
        .by_workspace
        .iter()
        .map(|(id, secrets)| Update::Secrets {
            id: id.clone(),
            secrets: secrets.clone(),
        });
    certs.chain(secrets).collect()
}

/// Whether workspace `id` has a secret called `name` (a report from the
/// process names only those).
pub fn has(id: &str, name: &str) -> bool {
    STATE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .and_then(|s| s.by_workspace.get(id))
        .is_some_and(|secrets| secrets.iter().any(|s| s.name == name))
}
