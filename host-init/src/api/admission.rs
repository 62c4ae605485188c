//! Who gets one of the API process's threads, and for how long (issue 14,
//! item 2). Before a request is authenticated all a client can hold is a
//! connection slot, capped per address and bounded in time by the head
//! deadline; after, each tenant (a token tree, control::access) holds at
//! most a few requests at once, and tenants together never take the slots
//! kept for admin tokens, so an admin can always revoke, delete or
//! quarantine while a tenant floods.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Connections (threads) served at once.
pub const MAX_CONNECTIONS: usize = 256;
/// Connections one client address may hold at once, authenticated or not.
pub const MAX_PER_ADDRESS: usize = 32;
/// Requests one tenant may have in flight at once (a long exec holds one).
pub const MAX_PER_TENANT: usize = 8;
/// Connection slots only admin tokens' requests may use.
pub const ADMIN_RESERVE: usize = 32;

#[derive(Default)]
struct State {
    connections: usize,
    per_address: HashMap<IpAddr, usize>,
    tenant_requests: usize,
    per_tenant: HashMap<String, usize>,
}

#[derive(Default)]
pub struct Admission {
    state: Mutex<State>,
}

/// Why a request was not admitted, as the answer to give.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "this token's tree already has {MAX_PER_TENANT} requests in flight; retry when one ends"
    )]
    Tenant,
    #[error(
        "the API is serving as many requests as it allows for non-admin tokens; retry shortly"
    )]
    Busy,
}

/// A connection slot, given back on drop.
pub struct Connection {
    admission: Arc<Admission>,
    address: IpAddr,
}

/// A tenant's request slot, given back on drop.
pub struct TenantRequest {
    admission: Arc<Admission>,
    tenant: String,
}

fn dec<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = map.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(key);
        }
    }
}

impl Admission {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a new connection from `address`, or None (over the
    /// global or the per-address cap).
    pub fn connect(self: &Arc<Self>, address: IpAddr) -> Option<Connection> {
        let mut s = self.lock();
        let mine = s.per_address.get(&address).copied().unwrap_or(0);
        if s.connections >= MAX_CONNECTIONS || mine >= MAX_PER_ADDRESS {
            return None;
        }
        s.connections += 1;
        *s.per_address.entry(address).or_insert(0) += 1;
        Some(Connection {
            admission: self.clone(),
            address,
        })
    }

    /// Admits an authenticated request: admins always (their connection
    /// slot is all they need), tenants within their own cap and outside the
    /// admin reserve.
    pub fn request(
        self: &Arc<Self>,
        tenant: &str,
        admin: bool,
    ) -> Result<Option<TenantRequest>, Refusal> {
        if admin {
            return Ok(None);
        }
        let mut s = self.lock();
        if s.per_tenant.get(tenant).copied().unwrap_or(0) >= MAX_PER_TENANT {
            return Err(Refusal::Tenant);
        }
        if s.tenant_requests >= MAX_CONNECTIONS - ADMIN_RESERVE {
            return Err(Refusal::Busy);
        }
        s.tenant_requests += 1;
        *s.per_tenant.entry(tenant.to_string()).or_insert(0) += 1;
        Ok(Some(TenantRequest {
            admission: self.clone(),
            tenant: tenant.to_string(),
        }))
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let mut s = self.admission.lock();
        s.connections = s.connections.saturating_sub(1);
        dec(&mut s.per_address, &self.address);
    }
}

impl Drop for TenantRequest {
    fn drop(&mut self) {
        let mut s = self.admission.lock();
        s.tenant_requests = s.tenant_requests.saturating_sub(1);
        dec(&mut s.per_tenant, &self.tenant);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_and_slots_come_back() {
        let a = Arc::new(Admission::default());
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let held: Vec<Connection> = (0..MAX_PER_ADDRESS)
            .map(|_| a.connect(ip).expect("slot"))
            .collect();
        assert!(a.connect(ip).is_none(), "per-address cap");
        assert!(a.connect("192.0.2.2".parse().expect("ip")).is_some());
        drop(held);
        assert!(a.connect(ip).is_some(), "slots come back");

        let reqs: Vec<_> = (0..MAX_PER_TENANT)
            .map(|_| a.request("tok_a", false).expect("slot"))
            .collect();
        assert_eq!(a.request("tok_a", false).err(), Some(Refusal::Tenant));
        assert!(a.request("tok_b", false).is_ok());
        assert!(
            a.request("tok_a", true).is_ok(),
            "admins are never refused here"
        );
        drop(reqs);
        assert!(a.request("tok_a", false).is_ok());

        let many: Vec<_> = (0..(MAX_CONNECTIONS - ADMIN_RESERVE))
            .map(|i| a.request(&format!("t{i}"), false).expect("slot"))
            .collect();
        assert_eq!(a.request("tok_z", false).err(), Some(Refusal::Busy));
        drop(many);
    }
}
