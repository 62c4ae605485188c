//! The resolver's upstream answers, kept for their time to live, so each
//! proxied connection and each guest lookup of a busy name does not ask
//! upstream again (a UDP round trip per connection was most of what the
//! proxy added to a new connection: BENCHMARKS.md, bench-proxy).
//!
//! What is kept is what `dns::lookup` returns: answers already stripped of
//! forbidden addresses, TTLs already capped, and only ever for a name a
//! workspace's policy allowed (the policy is checked before the cache is
//! asked, on every query). Empty answers and NXDOMAIN are kept for
//! `NEGATIVE_TTL`. Bounded: past `CAPACITY` names, expired ones go first,
//! then the one closest to expiring. Cleared when the upstreams or the
//! host's addresses change (the latter are filtered out of answers).

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::Record;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Names kept at most.
pub const CAPACITY: usize = 4096;
/// How long an empty answer or NXDOMAIN is kept.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(30);

struct Entry {
    code: ResponseCode,
    records: Vec<Record>,
    until: Instant,
}

pub struct Cache(Mutex<Option<HashMap<String, Entry>>>);

impl Default for Cache {
    fn default() -> Cache {
        Cache::new()
    }
}

impl Cache {
    pub const fn new() -> Cache {
        Cache(Mutex::new(None))
    }

    fn map(&self) -> std::sync::MutexGuard<'_, Option<HashMap<String, Entry>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The answer kept for `name` at `now`, its TTLs lowered to what is
    /// left of them.
    pub fn get(&self, name: &str, now: Instant) -> Option<(ResponseCode, Vec<Record>)> {
        let mut g = self.map();
        let map = g.as_mut()?;
        let e = map.get(name)?;
        if e.until <= now {
            map.remove(name);
            return None;
        }
        let left = (e.until - now).as_secs().max(1) as u32;
        let records = e
            .records
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r.set_ttl(r.ttl().min(left));
                r
            })
            .collect();
        Some((e.code, records))
    }

    /// Keeps the answer for `name` (NOERROR and NXDOMAIN only; a record
    /// with TTL 0 keeps nothing).
    pub fn put(&self, name: String, code: ResponseCode, records: &[Record], now: Instant) {
        let ttl = match (code, records.iter().map(Record::ttl).min()) {
            (ResponseCode::NoError, Some(0)) => return,
            (ResponseCode::NoError, Some(t)) => Duration::from_secs(u64::from(t)),
            (ResponseCode::NoError | ResponseCode::NXDomain, _) => NEGATIVE_TTL,
            _ => return,
        };
        let mut g = self.map();
        let map = g.get_or_insert_with(HashMap::new);
        if map.len() >= CAPACITY && !map.contains_key(&name) {
            map.retain(|_, e| e.until > now);
            if map.len() >= CAPACITY {
                if let Some(soonest) = map
                    .iter()
                    .min_by_key(|(_, e)| e.until)
                    .map(|(k, _)| k.clone())
                {
                    map.remove(&soonest);
                }
            }
        }
        map.insert(
            name,
            Entry {
                code,
                records: records.to_vec(),
                until: now + ttl,
            },
        );
    }

    pub fn clear(&self) {
        *self.map() = None;
    }

    pub fn len(&self) -> usize {
        self.map().as_ref().map_or(0, HashMap::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{Name, RData};
    use std::net::Ipv4Addr;

    fn a(ttl: u32) -> Record {
        Record::from_rdata(
            Name::from_ascii("allowed.test.").expect("name"),
            ttl,
            RData::A(A(Ipv4Addr::new(203, 0, 113, 7))),
        )
    }

    #[test]
    fn answers_are_kept_for_their_ttl_and_served_with_what_is_left() {
        let c = Cache::new();
        let t0 = Instant::now();
        c.put("allowed.test.".into(), ResponseCode::NoError, &[a(60)], t0);
        let (code, got) = c
            .get("allowed.test.", t0 + Duration::from_secs(20))
            .expect("kept");
        assert_eq!(code, ResponseCode::NoError);
        assert_eq!(got[0].ttl(), 40);
        assert!(c
            .get("allowed.test.", t0 + Duration::from_secs(60))
            .is_none());
        assert!(c.is_empty(), "an expired answer is dropped when met");
    }

    #[test]
    fn negative_answers_are_kept_briefly_and_failures_and_zero_ttls_not_at_all() {
        let c = Cache::new();
        let t0 = Instant::now();
        c.put("gone.test.".into(), ResponseCode::NXDomain, &[], t0);
        assert!(c
            .get("gone.test.", t0 + NEGATIVE_TTL - Duration::from_secs(1))
            .is_some());
        assert!(c.get("gone.test.", t0 + NEGATIVE_TTL).is_none());
        c.put("broken.test.".into(), ResponseCode::ServFail, &[], t0);
        c.put("zero.test.".into(), ResponseCode::NoError, &[a(0)], t0);
        assert!(c.is_empty());
    }

    #[test]
    fn the_cache_stays_bounded_dropping_the_soonest_to_expire() {
        let c = Cache::new();
        let t0 = Instant::now();
        for i in 0..CAPACITY {
            c.put(
                format!("n{i}.test."),
                ResponseCode::NoError,
                &[a(100 + i as u32)],
                t0,
            );
        }
        c.put("late.test.".into(), ResponseCode::NoError, &[a(300)], t0);
        assert_eq!(c.len(), CAPACITY);
        assert!(
            c.get("n0.test.", t0).is_none(),
            "the soonest to expire went"
        );
        assert!(c.get("late.test.", t0).is_some());
        c.clear();
        assert!(c.is_empty());
    }
}
