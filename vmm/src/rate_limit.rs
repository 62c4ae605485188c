//! Token buckets for a device's bytes and operations per second.
//!
//! A request is admitted at once and paid for in full, even if that puts a
//! bucket in debt; the device then waits until the debt is repaid before
//! serving anything more. So a large request is never starved by small
//! ones, the long-run rate never exceeds the limit, and at most one second
//! of burst (the bucket's size) passes unthrottled.

use std::time::{Duration, Instant};

/// Limits for one device; None: unlimited in that dimension.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub bytes_per_s: Option<u64>,
    pub ops_per_s: Option<u64>,
}

impl RateLimit {
    pub fn is_unlimited(&self) -> bool {
        self.bytes_per_s.is_none() && self.ops_per_s.is_none()
    }
}

#[derive(Debug)]
struct Bucket {
    rate: f64,
    size: f64,
    /// May go below zero: the debt of the last request admitted.
    level: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: u64, now: Instant) -> Bucket {
        let rate = rate.max(1) as f64;
        Bucket {
            rate,
            size: rate,
            level: rate,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.level = (self.level + dt * self.rate).min(self.size);
        self.at = now;
    }

    /// Time until the level is back at zero.
    fn debt(&self) -> Duration {
        if self.level >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.level / self.rate)
        }
    }
}

#[derive(Debug)]
pub struct RateLimiter {
    bytes: Option<Bucket>,
    ops: Option<Bucket>,
}

impl RateLimiter {
    pub fn new(limit: RateLimit, now: Instant) -> RateLimiter {
        RateLimiter {
            bytes: limit.bytes_per_s.map(|r| Bucket::new(r, now)),
            ops: limit.ops_per_s.map(|r| Bucket::new(r, now)),
        }
    }

    /// How long to wait before serving the next request.
    pub fn wait(&mut self, now: Instant) -> Duration {
        let mut d = Duration::ZERO;
        for b in [&mut self.bytes, &mut self.ops].into_iter().flatten() {
            b.refill(now);
            d = d.max(b.debt());
        }
        d
    }

    /// Pays for a request of `bytes` (and one operation), admitted now.
    pub fn charge(&mut self, now: Instant, bytes: u64) {
        if let Some(b) = &mut self.bytes {
            b.refill(now);
            b.level -= bytes as f64;
        }
        if let Some(o) = &mut self.ops {
            o.refill(now);
            o.level -= 1.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serves `n` requests of `bytes` each as a device would, on a clock
    /// that only moves by the waits; returns the time taken.
    fn serve(limit: RateLimit, n: u32, bytes: u64) -> Duration {
        let start = Instant::now();
        let mut now = start;
        let mut r = RateLimiter::new(limit, now);
        for _ in 0..n {
            now += r.wait(now);
            r.charge(now, bytes);
        }
        now += r.wait(now);
        now - start
    }

    #[test]
    fn bytes_are_held_to_the_rate_after_one_second_of_burst() {
        let limit = RateLimit {
            bytes_per_s: Some(1 << 20),
            ops_per_s: None,
        };
        // 5 MiB at 1 MiB/s with a 1 MiB burst: 4 s.
        let t = serve(limit, 40, 128 << 10);
        assert!((t.as_secs_f64() - 4.0).abs() < 0.01, "{t:?}");
    }

    #[test]
    fn operations_are_held_to_the_rate_and_the_stricter_limit_wins() {
        let limit = RateLimit {
            bytes_per_s: Some(1 << 30),
            ops_per_s: Some(100),
        };
        let t = serve(limit, 300, 4096);
        assert!((t.as_secs_f64() - 2.0).abs() < 0.01, "{t:?}");
    }

    #[test]
    fn a_request_larger_than_the_bucket_still_goes_through() {
        let limit = RateLimit {
            bytes_per_s: Some(1000),
            ops_per_s: None,
        };
        let t = serve(limit, 1, 5000);
        assert!((t.as_secs_f64() - 4.0).abs() < 0.01, "{t:?}");
    }

    #[test]
    fn unlimited_never_waits() {
        assert_eq!(serve(RateLimit::default(), 1000, 1 << 20), Duration::ZERO);
    }
}
