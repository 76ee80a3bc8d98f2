//! The per-client query cap (`--max-qps-per-client`). Each client outside loopback (an IPv4
//! address, or an IPv6 /64, since one host may hold a whole /64) has a GCRA token bucket in
//! a fixed table of atomics: admitting a query is one hash, one load and, when admitted, one
//! compare-and-swap, with no lock and no allocation, and memory stays the same however many
//! clients there are. Two clients that land in one slot reset each other's bucket: a
//! collision can let a client through, never hold one back.

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tracing::warn;

/// Slots in the table (a power of two): 128 KiB.
const SLOTS: usize = 1 << 14;
/// A slot: the client's tag in the top 16 bits, its bucket's state in the low 48 (the
/// "theoretical arrival time" of GCRA, in microseconds since the limiter started: ~8.9 years).
const TIME_BITS: u32 = 48;
const TIME_MASK: u64 = (1 << TIME_BITS) - 1;
/// At most one log line about dropped queries per this interval.
const LOG_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct RateLimiter {
    slots: Box<[AtomicU64]>,
    /// Microseconds between queries at the cap (GCRA's emission interval).
    interval_us: u64,
    /// How far ahead of now a client's bucket may run: a burst of `rate` queries.
    tolerance_us: u64,
    rate: u32,
    start: Instant,
    /// Keyed per process, so that nobody can pick addresses that share a slot.
    hasher: foldhash::quality::RandomState,
    /// When the last line about dropped queries was logged (ms since start, +1; 0: never).
    logged_ms: AtomicU64,
}

impl RateLimiter {
    /// A cap of `rate` queries per second per client, with bursts of `rate`; `None` for 0.
    pub fn new(rate: u32) -> Option<RateLimiter> {
        if rate == 0 {
            return None;
        }
        let interval_us = (1_000_000 / u64::from(rate)).max(1);
        Some(RateLimiter {
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            interval_us,
            tolerance_us: interval_us * (u64::from(rate) - 1),
            rate,
            start: Instant::now(),
            hasher: foldhash::quality::RandomState::default(),
            logged_ms: AtomicU64::new(0),
        })
    }

    /// Whether a query from `client` is answered now (the caller counts the ones that are
    /// not). Loopback is never capped.
    #[inline]
    pub fn admit(&self, client: IpAddr) -> bool {
        let client = client.to_canonical();
        if client.is_loopback() {
            return true;
        }
        let now = self.start.elapsed();
        if self.admit_at(client, now.as_micros() as u64) {
            return true;
        }
        self.log_drop(client, now);
        false
    }

    fn admit_at(&self, client: IpAddr, now_us: u64) -> bool {
        let key: u128 = match client {
            IpAddr::V4(v4) => u128::from(u32::from(v4)),
            // the /64, marked so that it never equals an IPv4 key
            IpAddr::V6(v6) => (u128::from(v6) >> 64) | (1 << 64),
        };
        let hash = self.hasher.hash_one(key);
        let slot = &self.slots[hash as usize & (SLOTS - 1)];
        let tag = hash >> TIME_BITS;
        let now_us = now_us & TIME_MASK;
        let mut current = slot.load(Ordering::Relaxed);
        loop {
            // another client's state (or none yet) means a fresh, full bucket
            let tat = if current >> TIME_BITS == tag {
                current & TIME_MASK
            } else {
                0
            };
            let start = tat.max(now_us);
            if start - now_us > self.tolerance_us {
                return false;
            }
            let next = (tag << TIME_BITS) | ((start + self.interval_us) & TIME_MASK);
            match slot.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
    }

    /// Logs a dropped query, at most once per [`LOG_EVERY`] whatever the number of clients.
    #[cold]
    fn log_drop(&self, client: IpAddr, now: Duration) {
        let now_ms = now.as_millis() as u64 + 1;
        let last = self.logged_ms.load(Ordering::Relaxed);
        if last != 0 && now_ms - last < LOG_EVERY.as_millis() as u64 {
            return;
        }
        if self
            .logged_ms
            .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            warn!(
                %client,
                "client {client} sends more than --max-qps-per-client {}; dropping its excess \
                 queries (logged at most every {}s; zkdns_rate_limited_queries_total counts them)",
                self.rate,
                LOG_EVERY.as_secs()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// How many of `n` queries at `at_us` are admitted.
    fn burst(l: &RateLimiter, client: IpAddr, n: usize, at_us: u64) -> usize {
        (0..n).filter(|_| l.admit_at(client, at_us)).count()
    }

    #[test]
    fn a_burst_of_rate_then_rate_per_second() {
        let l = RateLimiter::new(100).unwrap();
        let c = ip("10.0.0.1");
        let t0 = 1_000_000;
        assert_eq!(burst(&l, c, 500, t0), 100);
        // 10 ms later: one more query's worth
        assert_eq!(burst(&l, c, 500, t0 + 10_000), 1);
        // a full second later: a full burst again, not more
        assert_eq!(burst(&l, c, 500, t0 + 1_010_000), 100);
        // a steady 100/s is never held back
        let l = RateLimiter::new(100).unwrap();
        let steady = (0..1000).filter(|i| l.admit_at(c, t0 + i * 10_000)).count();
        assert_eq!(steady, 1000);
    }

    #[test]
    fn clients_have_their_own_buckets() {
        let l = RateLimiter::new(10).unwrap();
        assert_eq!(burst(&l, ip("10.0.0.1"), 50, 5), 10);
        assert_eq!(burst(&l, ip("10.0.0.2"), 50, 5), 10);
        // one IPv6 /64 is one client; another /64 is another
        assert_eq!(burst(&l, ip("fd00:1:2:3::1"), 5, 5), 5);
        assert_eq!(burst(&l, ip("fd00:1:2:3::2"), 50, 5), 5);
        assert_eq!(burst(&l, ip("fd00:1:2:4::1"), 50, 5), 10);
    }

    #[test]
    fn loopback_is_never_capped_and_zero_is_off() {
        let l = RateLimiter::new(1).unwrap();
        assert!((0..1000).all(|_| l.admit(ip("127.0.0.1"))));
        assert!((0..1000).all(|_| l.admit(ip("::1"))));
        assert!((0..1000).all(|_| l.admit(ip("::ffff:127.0.0.2"))));
        assert!(l.admit(ip("192.0.2.1")));
        assert!(!l.admit(ip("192.0.2.1")));
        assert!(
            !l.admit(ip("::ffff:192.0.2.1")),
            "mapped is the same client"
        );
        assert!(RateLimiter::new(0).is_none());
    }

    #[test]
    fn memory_is_bounded() {
        let l = RateLimiter::new(5).unwrap();
        for i in 0..100_000u32 {
            l.admit_at(IpAddr::V4(i.into()), 1);
        }
        assert_eq!(l.slots.len(), SLOTS);
    }
}
