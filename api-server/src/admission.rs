//! Who gets a connection to the API process, and who gets one of its
//! handler threads (issue 14, item 2). Before a request is authenticated all a client can hold is a
//! connection slot, capped per address and bounded in time by the head
//! deadline; after, each tenant (a token tree, control::access) holds at
//! most a few requests at once, and tenants together never take the slots
//! kept for admin tokens, so an admin can always revoke, delete or
//! quarantine while a tenant floods.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Connections served at once. An idle or half-open connection costs its
/// socket and TLS and HTTP buffers (tens of KiB), not a thread: what runs
/// on a thread is an admitted request, capped below.
pub const MAX_CONNECTIONS: usize = 1024;
/// Connections one client address may hold at once, authenticated or not.
pub const MAX_PER_ADDRESS: usize = 64;
/// Requests one tenant may have in flight at once (a long exec holds one).
pub const MAX_PER_TENANT: usize = 8;
/// Requests all tenants together may have in flight at once; admins'
/// requests are not counted, so a flood of tenants never keeps an admin
/// from revoking, deleting or quarantining.
pub const MAX_TENANT_REQUESTS: usize = 224;
/// Room kept for admin tokens' requests beyond the tenants' (in host-init's
/// exchanges, paddock_init::api::supervisor).
pub const ADMIN_RESERVE: usize = 32;
/// Connections taken beyond the caps above, on a shorter head deadline, so
/// that a client over them gets an answer (health, an admin's request, or
/// 503 saying why) rather than a reset.
pub const MAX_OVERFLOW: usize = 16;
/// Overflow connections one address may hold: a flooding address cannot
/// take the overflow for everyone else.
pub const MAX_OVERFLOW_PER_ADDRESS: usize = 2;
/// Failed authentications one address may have in `AUTH_WINDOW`; beyond,
/// its requests get 429 without reaching host-init. Each failure there is
/// an audit event written and synced, so a guessing client would otherwise
/// rotate the audit log's real events away and slow every audited call.
pub const MAX_AUTH_FAILURES: u32 = 20;
pub const AUTH_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);
/// Authentications (who-am-I exchanges with host-init) one address may
/// have in flight at once. Failures are counted when host-init answers,
/// so without this an address could have as many guesses in flight as it
/// has HTTP/2 streams, all passing the failure check at once.
pub const MAX_ASKING_PER_ADDRESS: usize = 16;
/// Addresses remembered for failures before the stale ones are dropped.
const AUTH_FAILURE_ADDRESSES: usize = 4096;
/// Bearers that authenticated lately (by hash) pass an address's guessing
/// limit, so one client's bad token does not lock out others behind the
/// same address; host-init still checks them on every request.
const KNOWN_BEARERS: usize = 4096;
const KNOWN_BEARER_TTL: std::time::Duration = std::time::Duration::from_secs(600);

#[derive(Default)]
struct State {
    connections: usize,
    per_address: HashMap<IpAddr, usize>,
    overflow: usize,
    overflow_per_address: HashMap<IpAddr, usize>,
    tenant_requests: usize,
    asking: HashMap<IpAddr, usize>,
    per_tenant: HashMap<String, usize>,
    /// Per address: when its current window started, failures in it.
    auth_failures: HashMap<IpAddr, (std::time::Instant, u32)>,
    /// SHA-256 of bearers host-init accepted, and when.
    known_bearers: HashMap<[u8; 32], std::time::Instant>,
}

fn bearer_hash(bearer: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bearer.as_bytes()).into()
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
    overflow: bool,
}

impl Connection {
    /// Whether this is an overflow slot: the client was over a cap, and
    /// only health and admin requests are served on it.
    pub fn is_overflow(&self) -> bool {
        self.overflow
    }
}

/// An authentication in flight from an address, given back on drop.
pub struct Asking {
    admission: Arc<Admission>,
    address: IpAddr,
}

impl Drop for Asking {
    fn drop(&mut self) {
        let mut s = self.admission.lock();
        dec(&mut s.asking, &self.address);
    }
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

    /// A slot for a new connection from `address`: a regular one, an
    /// overflow one when the global or the per-address cap is reached, or
    /// None when the overflow is full too (the connection is closed unread).
    pub fn connect(self: &Arc<Self>, address: IpAddr) -> Option<Connection> {
        let mut s = self.lock();
        let mine = s.per_address.get(&address).copied().unwrap_or(0);
        let overflow = if s.connections < MAX_CONNECTIONS && mine < MAX_PER_ADDRESS {
            s.connections += 1;
            *s.per_address.entry(address).or_insert(0) += 1;
            false
        } else {
            let mine = s.overflow_per_address.get(&address).copied().unwrap_or(0);
            if s.overflow >= MAX_OVERFLOW || mine >= MAX_OVERFLOW_PER_ADDRESS {
                return None;
            }
            s.overflow += 1;
            *s.overflow_per_address.entry(address).or_insert(0) += 1;
            true
        };
        Some(Connection {
            admission: self.clone(),
            address,
            overflow,
        })
    }

    /// A slot for one more authentication from `address`, unless it has
    /// `MAX_ASKING_PER_ADDRESS` in flight.
    pub fn begin_asking(self: &Arc<Self>, address: IpAddr) -> Option<Asking> {
        let mut s = self.lock();
        let n = s.asking.entry(address).or_insert(0);
        if *n >= MAX_ASKING_PER_ADDRESS {
            return None;
        }
        *n += 1;
        Some(Asking {
            admission: self.clone(),
            address,
        })
    }

    /// Whether `address` failed authentication too often lately.
    pub fn auth_blocked(&self, address: IpAddr) -> bool {
        let s = self.lock();
        s.auth_failures
            .get(&address)
            .is_some_and(|(since, n)| since.elapsed() < AUTH_WINDOW && *n >= MAX_AUTH_FAILURES)
    }

    /// Whether host-init accepted `bearer` lately.
    pub fn known_bearer(&self, bearer: &str) -> bool {
        let s = self.lock();
        s.known_bearers
            .get(&bearer_hash(bearer))
            .is_some_and(|at| at.elapsed() < KNOWN_BEARER_TTL)
    }

    /// Notes that host-init accepted `bearer`.
    pub fn accepted_bearer(&self, bearer: &str) {
        let mut s = self.lock();
        if s.known_bearers.len() >= KNOWN_BEARERS {
            s.known_bearers
                .retain(|_, at| at.elapsed() < KNOWN_BEARER_TTL);
        }
        if s.known_bearers.len() < KNOWN_BEARERS {
            s.known_bearers
                .insert(bearer_hash(bearer), std::time::Instant::now());
        }
    }

    /// Counts a failed authentication from `address`.
    pub fn auth_failed(&self, address: IpAddr) {
        let mut s = self.lock();
        if s.auth_failures.len() >= AUTH_FAILURE_ADDRESSES {
            s.auth_failures
                .retain(|_, (since, _)| since.elapsed() < AUTH_WINDOW);
        }
        if s.auth_failures.len() >= AUTH_FAILURE_ADDRESSES {
            // Still full of fresh entries: many addresses failing at once.
            // Forgetting one lets it guess a little more; growing without
            // bound would let a flood of addresses take the memory.
            return;
        }
        let now = std::time::Instant::now();
        let entry = s.auth_failures.entry(address).or_insert((now, 0));
        if entry.0.elapsed() >= AUTH_WINDOW {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
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
        if s.tenant_requests >= MAX_TENANT_REQUESTS {
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
        if self.overflow {
            s.overflow = s.overflow.saturating_sub(1);
            dec(&mut s.overflow_per_address, &self.address);
        } else {
            s.connections = s.connections.saturating_sub(1);
            dec(&mut s.per_address, &self.address);
        }
    }
}

impl Drop for TenantRequest {
    fn drop(&mut self) {
        let mut s = self.admission.lock();
        s.tenant_requests = s.tenant_requests.saturating_sub(1);
        dec(&mut s.per_tenant, &self.tenant);
    }
}

/// A counting semaphore for work whose memory must not pile up across
/// threads (reading and parsing bodies).
pub struct Permits {
    used: Mutex<usize>,
    freed: std::sync::Condvar,
    max: usize,
}

/// One of a `Permits`, given back on drop.
pub struct Permit<'a>(&'a Permits);

impl Permits {
    pub const fn new(max: usize) -> Permits {
        Permits {
            used: Mutex::new(0),
            freed: std::sync::Condvar::new(),
            max,
        }
    }

    /// A permit, waiting at most `wait` for one to come free.
    pub fn take(&self, wait: std::time::Duration) -> Option<Permit<'_>> {
        let used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        let (mut used, _) = self
            .freed
            .wait_timeout_while(used, wait, |u| *u >= self.max)
            .unwrap_or_else(|e| e.into_inner());
        if *used >= self.max {
            return None;
        }
        *used += 1;
        Some(Permit(self))
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut used = self.0.used.lock().unwrap_or_else(|e| e.into_inner());
        *used = used.saturating_sub(1);
        self.0.freed.notify_one();
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
        assert!(held.iter().all(|c| !c.is_overflow()));
        let over: Vec<Connection> = (0..MAX_OVERFLOW_PER_ADDRESS)
            .map(|_| a.connect(ip).expect("an overflow slot"))
            .collect();
        assert!(over.iter().all(Connection::is_overflow), "per-address cap");
        assert!(a.connect(ip).is_none(), "the overflow's per-address cap");
        let other = a.connect("192.0.2.2".parse().expect("ip")).expect("slot");
        assert!(!other.is_overflow());
        drop((held, over, other));
        assert!(
            a.connect(ip).is_some_and(|c| !c.is_overflow()),
            "slots come back"
        );

        // Over the global cap, every address gets a little overflow, no more.
        let all: Vec<Connection> = (0..MAX_CONNECTIONS)
            .map(|i| {
                let ip = IpAddr::from([10, 0, (i / 50) as u8, (i % 50) as u8]);
                a.connect(ip).expect("slot")
            })
            .collect();
        let spill: Vec<Connection> = (0..MAX_OVERFLOW)
            .map(|i| {
                a.connect(IpAddr::from([10, 1, 0, i as u8]))
                    .expect("overflow")
            })
            .collect();
        assert!(spill.iter().all(Connection::is_overflow));
        assert!(
            a.connect(IpAddr::from([10, 2, 0, 1])).is_none(),
            "overflow full"
        );
        drop((all, spill));

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

        let many: Vec<_> = (0..MAX_TENANT_REQUESTS)
            .map(|i| a.request(&format!("t{i}"), false).expect("slot"))
            .collect();
        assert_eq!(a.request("tok_z", false).err(), Some(Refusal::Busy));
        drop(many);
    }

    #[test]
    fn authentications_in_flight_are_capped_per_address() {
        let a = Arc::new(Admission::default());
        let ip: IpAddr = "192.0.2.8".parse().expect("ip");
        let held: Vec<_> = (0..MAX_ASKING_PER_ADDRESS)
            .map(|_| a.begin_asking(ip).expect("slot"))
            .collect();
        assert!(a.begin_asking(ip).is_none(), "over the cap");
        assert!(a.begin_asking("192.0.2.7".parse().expect("ip")).is_some());
        drop(held);
        assert!(a.begin_asking(ip).is_some(), "slots come back");
    }

    #[test]
    fn failed_authentications_are_counted_per_address() {
        let a = Arc::new(Admission::default());
        let ip: IpAddr = "192.0.2.9".parse().expect("ip");
        for _ in 0..MAX_AUTH_FAILURES {
            assert!(!a.auth_blocked(ip));
            a.auth_failed(ip);
        }
        assert!(a.auth_blocked(ip));
        assert!(!a.auth_blocked("192.0.2.10".parse().expect("ip")));
        assert!(!a.known_bearer("pdk_good"));
        a.accepted_bearer("pdk_good");
        assert!(a.known_bearer("pdk_good"));
        assert!(!a.known_bearer("pdk_other"));
    }

    #[test]
    fn permits_are_counted_and_waited_for() {
        let p = Permits::new(2);
        let a = p.take(std::time::Duration::ZERO).expect("first");
        let _b = p.take(std::time::Duration::ZERO).expect("second");
        assert!(p.take(std::time::Duration::from_millis(10)).is_none());
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(std::time::Duration::from_millis(50));
                drop(a);
            });
            assert!(
                p.take(std::time::Duration::from_secs(10)).is_some(),
                "a waiter gets the permit given back"
            );
        });
    }
}
