//! Every counter zkdns keeps, in one place. The query path writes only to its own shard
//! (one per UDP worker thread, padded to its own cache lines, relaxed atomics), so counting
//! costs a few uncontended increments; readers sum the shards when they are scraped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Query types counted by name; everything else is "other".
pub const QTYPES: [(u16, &str); 13] = [
    (1, "A"),
    (28, "AAAA"),
    (5, "CNAME"),
    (16, "TXT"),
    (33, "SRV"),
    (15, "MX"),
    (12, "PTR"),
    (6, "SOA"),
    (2, "NS"),
    (255, "ANY"),
    (65, "HTTPS"),
    (64, "SVCB"),
    (252, "AXFR"),
];
/// Response codes counted by name (index = RCODE); higher ones are "other".
pub const RCODES: [&str; 6] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED",
];
/// Upper bounds of the answer-latency histogram, in microseconds (the last bucket is +Inf).
pub const LATENCY_BOUNDS_US: [u64; 11] = [
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 10_000, 50_000, 250_000,
];

const NQ: usize = QTYPES.len() + 1;
const NR: usize = RCODES.len() + 1;
const NB: usize = LATENCY_BOUNDS_US.len() + 1;

fn qtype_index(qtype: u16) -> usize {
    QTYPES
        .iter()
        .position(|(t, _)| *t == qtype)
        .unwrap_or(QTYPES.len())
}

/// The counters one query-path thread writes.
#[derive(Debug)]
#[repr(align(128))]
pub struct QueryShard {
    qtype: [AtomicU64; NQ],
    rcode: [AtomicU64; NR],
    latency: [AtomicU64; NB],
    latency_sum_ns: AtomicU64,
    /// Forwarded questions answered from the cache, and how many of those from stale data.
    cache_hits: AtomicU64,
    cache_stale: AtomicU64,
}

impl Default for QueryShard {
    fn default() -> Self {
        Self {
            qtype: std::array::from_fn(|_| AtomicU64::new(0)),
            rcode: std::array::from_fn(|_| AtomicU64::new(0)),
            latency: std::array::from_fn(|_| AtomicU64::new(0)),
            latency_sum_ns: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
            cache_stale: AtomicU64::new(0),
        }
    }
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl QueryShard {
    /// One query received, by type.
    #[inline]
    pub fn query(&self, qtype: u16) {
        bump(&self.qtype[qtype_index(qtype)], 1);
    }

    /// One response sent, by RCODE.
    #[inline]
    pub fn response(&self, rcode: u16) {
        bump(&self.rcode[usize::from(rcode).min(NR - 1)], 1);
    }

    /// One forwarded question answered from the cache (`stale`: from expired data).
    #[inline]
    pub fn cache_hit(&self, stale: bool) {
        bump(&self.cache_hits, 1);
        if stale {
            bump(&self.cache_stale, 1);
        }
    }

    /// `n` answers that each took `elapsed` from receipt to send (a batch shares its time).
    #[inline]
    pub fn latency(&self, elapsed: Duration, n: u64) {
        let us = elapsed.as_micros() as u64;
        let bucket = LATENCY_BOUNDS_US
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(NB - 1);
        bump(&self.latency[bucket], n);
        bump(&self.latency_sum_ns, elapsed.as_nanos() as u64 * n);
    }
}

/// Gauges and counters of the parts outside the query path.
#[derive(Debug, Default)]
pub struct Counters {
    /// Queries sent to an upstream (a UDP exchange and its retry over TCP count as two).
    pub forwarded: AtomicU64,
    /// Forwarded questions that joined an identical one already being asked.
    pub forwards_coalesced: AtomicU64,
    /// Forwarded questions that the cache could not answer.
    pub cache_misses: AtomicU64,
    /// Bad upstream replies, by kind (see `dns::forward::BadKind`).
    pub upstream_bad_mismatch: AtomicU64,
    pub upstream_bad_oversized: AtomicU64,
    pub upstream_bad_malformed: AtomicU64,
    pub upstream_bad_ttl: AtomicU64,
    /// Upstream exchanges that failed (refused, bad reply) or timed out.
    pub upstream_errors: AtomicU64,
    pub upstream_timeouts: AtomicU64,
    /// 1 while the ZooKeeper session is connected, else 0.
    pub zk_connected: AtomicU64,
    /// ZooKeeper sessions established (the first and every one after an expiry).
    pub zk_sessions: AtomicU64,
    /// Reconnects within a session.
    pub zk_reconnects: AtomicU64,
    pub zk_expirations: AtomicU64,
    /// Full reads of the zones subtree, and how long the last one took.
    pub zk_resyncs: AtomicU64,
    pub zk_last_resync_ms: AtomicU64,
    /// Reconnects caught up from the stats and change marks instead of a full read; the
    /// requests they sent, and the nodes whose data they read.
    pub zk_catchups: AtomicU64,
    pub zk_catchup_requests: AtomicU64,
    pub zk_catchup_data_reads: AtomicU64,
    /// Znodes currently skipped as bad.
    pub bad_znodes: AtomicU64,
    /// Hosts-file writes.
    pub hosts_writes: AtomicU64,
    /// Queries dropped by `--max-qps-per-client`.
    pub rate_limited: AtomicU64,
}

impl Counters {
    pub fn add(c: &AtomicU64, n: u64) {
        bump(c, n);
    }

    pub fn set(c: &AtomicU64, v: u64) {
        c.store(v, Ordering::Relaxed);
    }
}

/// All metrics of one process.
#[derive(Debug)]
pub struct Metrics {
    /// Index 0 is shared by the async side (TCP, forwarded replies); 1.. by UDP workers.
    shards: Box<[QueryShard]>,
    pub counters: Counters,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(0)
    }
}

/// Summed query-path counters, for exposition.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryTotals {
    /// (type name, count), in [`QTYPES`] order then "other".
    pub qtypes: Vec<(&'static str, u64)>,
    /// (rcode name, count), in [`RCODES`] order then "other".
    pub rcodes: Vec<(&'static str, u64)>,
    /// Cumulative histogram buckets: (upper bound in seconds, None for +Inf; count).
    pub latency_buckets: Vec<(Option<f64>, u64)>,
    pub latency_sum_ns: u64,
    pub latency_count: u64,
    pub cache_hits: u64,
    pub cache_stale: u64,
}

impl Metrics {
    /// Metrics for `udp_workers` query threads (plus the shared shard).
    pub fn new(udp_workers: usize) -> Self {
        Self {
            shards: (0..=udp_workers).map(|_| QueryShard::default()).collect(),
            counters: Counters::default(),
        }
    }

    /// The shard of a query thread (0: the shared one; out of range: the shared one).
    pub fn shard(&self, i: usize) -> &QueryShard {
        self.shards.get(i).unwrap_or(&self.shards[0])
    }

    /// Sums the shards.
    pub fn totals(&self) -> QueryTotals {
        let sum = |f: &dyn Fn(&QueryShard) -> &AtomicU64| -> u64 {
            self.shards
                .iter()
                .map(|s| f(s).load(Ordering::Relaxed))
                .sum()
        };
        let qtypes = (0..NQ)
            .map(|i| {
                let name = QTYPES.get(i).map_or("other", |(_, n)| *n);
                (name, sum(&|s| &s.qtype[i]))
            })
            .collect();
        let rcodes = (0..NR)
            .map(|i| {
                (
                    RCODES.get(i).copied().unwrap_or("other"),
                    sum(&|s| &s.rcode[i]),
                )
            })
            .collect();
        let mut cumulative = 0;
        let latency_buckets = (0..NB)
            .map(|i| {
                cumulative += sum(&|s| &s.latency[i]);
                let bound = LATENCY_BOUNDS_US.get(i).map(|us| *us as f64 / 1e6);
                (bound, cumulative)
            })
            .collect();
        QueryTotals {
            qtypes,
            rcodes,
            latency_buckets,
            latency_sum_ns: sum(&|s| &s.latency_sum_ns),
            latency_count: cumulative,
            cache_hits: sum(&|s| &s.cache_hits),
            cache_stale: sum(&|s| &s.cache_stale),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_sum_up() {
        let m = Metrics::new(2);
        m.shard(1).query(1);
        m.shard(2).query(1);
        m.shard(0).query(99);
        m.shard(7).response(3);
        m.shard(1).response(17);
        m.shard(1).latency(Duration::from_micros(30), 4);
        let t = m.totals();
        assert_eq!(t.qtypes[0], ("A", 2));
        assert_eq!(t.qtypes.last(), Some(&("other", 1)));
        assert_eq!(t.rcodes[3], ("NXDOMAIN", 1));
        assert_eq!(t.rcodes.last(), Some(&("other", 1)));
        assert_eq!(t.latency_count, 4);
        assert_eq!(t.latency_buckets[1], (Some(25e-6), 0));
        assert_eq!(t.latency_buckets[2], (Some(50e-6), 4));
        assert_eq!(t.latency_sum_ns, 120_000);
    }
}
