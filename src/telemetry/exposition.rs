//! The Prometheus view of zkdns: every exported metric name and its help text, in one place.
//! A [`prometheus_client`] collector reads [`Metrics`], the [`Store`]'s sync status and the
//! upstream states when `/metrics` is scraped, so the query path keeps counting into its own
//! shards and pays nothing for the exposition.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

use crate::dns::cache::Cache;
use crate::dns::forward::UpstreamHealth;
use crate::metrics::{Counters, Metrics};
use crate::store::Store;

/// The `Content-Type` of what [`Exposition::render`] writes (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// What a scrape reads. Cheap to share: every part is a handle.
#[derive(Debug, Clone)]
pub struct Sources {
    pub metrics: Arc<Metrics>,
    pub store: Store,
    /// The forwarder's upstreams (none in `hosts` mode).
    pub upstreams: Option<Arc<UpstreamHealth>>,
    /// The cache of forwarded answers (none in `hosts` mode and with `--no-cache`).
    pub cache: Option<Arc<Cache>>,
}

#[derive(Debug)]
struct ZkdnsCollector {
    sources: Sources,
    /// Before the first sync, the age of the map is counted from here.
    started: std::time::Instant,
}

/// The registry `/metrics` renders.
#[derive(Debug)]
pub struct Exposition {
    registry: Registry,
}

impl Exposition {
    pub fn new(sources: Sources) -> Self {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(ZkdnsCollector {
            sources,
            started: std::time::Instant::now(),
        }));
        Self { registry }
    }

    /// The current values in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            .expect("writing to a String does not fail");
        out
    }
}

fn load(c: &std::sync::atomic::AtomicU64) -> u64 {
    c.load(std::sync::atomic::Ordering::Relaxed)
}

/// Writes one counter without labels; `name` is without the `_total` the encoder appends.
fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    m.encode_counter::<NoLabelSet, _, u64>(&v, None)
}

fn gauge<V>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    v: V,
) -> std::fmt::Result
where
    V: prometheus_client::encoding::EncodeGaugeValue + Send + Sync + std::fmt::Debug + 'static,
{
    let g = ConstGauge::new(v);
    let m = e.encode_descriptor(name, help, unit, g.metric_type())?;
    g.encode(m)
}

fn flag(b: bool) -> i64 {
    i64::from(b)
}

impl Collector for ZkdnsCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let Sources {
            metrics,
            store,
            upstreams,
            cache,
        } = &self.sources;
        let totals = metrics.totals();
        let c: &Counters = &metrics.counters;

        let mut m = e.encode_descriptor(
            "zkdns_queries",
            "DNS queries received, by query type",
            None,
            MetricType::Counter,
        )?;
        for (qtype, n) in &totals.qtypes {
            let labels = [("type", *qtype)];
            m.encode_family(&labels)?
                .encode_counter::<NoLabelSet, _, u64>(n, None)?;
        }
        let mut m = e.encode_descriptor(
            "zkdns_responses",
            "DNS responses sent, by response code",
            None,
            MetricType::Counter,
        )?;
        for (rcode, n) in &totals.rcodes {
            let labels = [("rcode", *rcode)];
            m.encode_family(&labels)?
                .encode_counter::<NoLabelSet, _, u64>(n, None)?;
        }
        // the shards keep cumulative counts; the encoder wants each bucket's own
        let mut below = 0;
        let buckets: Vec<(f64, u64)> = totals
            .latency_buckets
            .iter()
            .filter_map(|(bound, cumulative)| {
                let own = cumulative - below;
                below = *cumulative;
                bound.map(|b| (b, own))
            })
            .collect();
        let mut m = e.encode_descriptor(
            "zkdns_answer_duration",
            "Time from receiving a query to sending its answer (forwarded queries over TCP \
             included; over UDP a batch of answers shares one time)",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        m.encode_histogram::<NoLabelSet>(
            totals.latency_sum_ns as f64 / 1e9,
            totals.latency_count,
            &buckets,
            None,
        )?;

        counter(
            &mut e,
            "zkdns_forwarded_queries",
            "Queries forwarded to an upstream resolver",
            load(&c.forwarded),
        )?;
        counter(
            &mut e,
            "zkdns_forwards_coalesced",
            "Forwarded questions that joined an identical one already being asked upstream",
            load(&c.forwards_coalesced),
        )?;
        let mut m = e.encode_descriptor(
            "zkdns_upstream_bad_replies",
            "Upstream replies not taken as they came: another ID or question (ignored), larger \
             than asked for or malformed (refused), a TTL with its top bit set (taken as 0, not \
             cached)",
            None,
            MetricType::Counter,
        )?;
        for (reason, n) in [
            ("mismatch", &c.upstream_bad_mismatch),
            ("oversized", &c.upstream_bad_oversized),
            ("malformed", &c.upstream_bad_malformed),
            ("ttl_top_bit", &c.upstream_bad_ttl),
        ] {
            let labels = [("reason", reason)];
            m.encode_family(&labels)?
                .encode_counter::<NoLabelSet, _, u64>(&load(n), None)?;
        }
        if let Some(cache) = cache {
            counter(
                &mut e,
                "zkdns_cache_hits",
                "Forwarded questions answered from the cache (stale answers included)",
                totals.cache_hits,
            )?;
            counter(
                &mut e,
                "zkdns_cache_misses",
                "Forwarded questions the cache could not answer, which went to the upstreams",
                load(&c.cache_misses),
            )?;
            counter(
                &mut e,
                "zkdns_cache_stale_answers",
                "Answers from expired cache entries, served because every upstream failed",
                totals.cache_stale,
            )?;
            counter(
                &mut e,
                "zkdns_cache_inserts",
                "Replies kept in the cache",
                load(&cache.counters.inserts),
            )?;
            counter(
                &mut e,
                "zkdns_cache_evictions",
                "Cache entries dropped to stay within --cache-size",
                load(&cache.counters.evictions),
            )?;
            let (entries, bytes) = cache.usage();
            gauge(
                &mut e,
                "zkdns_cache_entries",
                "Entries in the cache",
                None,
                entries as i64,
            )?;
            gauge(
                &mut e,
                "zkdns_cache_size",
                "What the cache entries take, counted as --cache-size counts them",
                Some(&Unit::Bytes),
                bytes as i64,
            )?;
        }
        counter(
            &mut e,
            "zkdns_upstream_errors",
            "Exchanges with an upstream that failed (refused, unmatched or bad reply)",
            load(&c.upstream_errors),
        )?;
        counter(
            &mut e,
            "zkdns_upstream_timeouts",
            "Exchanges with an upstream that timed out",
            load(&c.upstream_timeouts),
        )?;
        counter(
            &mut e,
            "zkdns_rate_limited_queries",
            "Queries dropped because their client was over --max-qps-per-client",
            load(&c.rate_limited),
        )?;
        if let Some(health) = upstreams {
            let mut m = e.encode_descriptor(
                "zkdns_upstream_up",
                "Whether the upstream answered its last exchange (1) or failed (0)",
                None,
                MetricType::Gauge,
            )?;
            for (addr, up) in health.states() {
                let labels = [("upstream", addr.to_string())];
                m.encode_family(&labels)?.encode_gauge(&flag(up))?;
            }
        }

        gauge(
            &mut e,
            "zkdns_zookeeper_connected",
            "Whether the ZooKeeper session is connected (1) or not (0)",
            None,
            load(&c.zk_connected) as i64,
        )?;
        counter(
            &mut e,
            "zkdns_zookeeper_sessions",
            "ZooKeeper sessions established (the first, and a new one after each expiry)",
            load(&c.zk_sessions),
        )?;
        counter(
            &mut e,
            "zkdns_zookeeper_reconnects",
            "Reconnects to ZooKeeper within a session",
            load(&c.zk_reconnects),
        )?;
        counter(
            &mut e,
            "zkdns_zookeeper_expirations",
            "ZooKeeper sessions that ended (expired, closed by the server, auth failed)",
            load(&c.zk_expirations),
        )?;
        counter(
            &mut e,
            "zkdns_zookeeper_resyncs",
            "Full reads of the zones from ZooKeeper (at start, after an expiry, after a \
             reconnect that the change marks cannot explain)",
            load(&c.zk_resyncs),
        )?;
        counter(
            &mut e,
            "zkdns_zookeeper_catchups",
            "Reconnects caught up by reading only what changed while disconnected",
            load(&c.zk_catchups),
        )?;
        counter(
            &mut e,
            "zkdns_zookeeper_catchup_requests",
            "ZooKeeper requests sent by catch-ups (stats, listings, reads)",
            load(&c.zk_catchup_requests),
        )?;
        counter(
            &mut e,
            "zkdns_zookeeper_catchup_data_reads",
            "Zones, record sets and members whose data catch-ups read",
            load(&c.zk_catchup_data_reads),
        )?;
        gauge(
            &mut e,
            "zkdns_zookeeper_last_resync_duration",
            "How long the last full read of the zones took",
            Some(&Unit::Seconds),
            load(&c.zk_last_resync_ms) as f64 / 1e3,
        )?;

        let (zones, names, records) = {
            let snap = store.load();
            (snap.zones().count(), snap.names, snap.records)
        };
        gauge(
            &mut e,
            "zkdns_zones",
            "Zones in the map",
            None,
            zones as i64,
        )?;
        gauge(
            &mut e,
            "zkdns_names",
            "Names with records in the map",
            None,
            names as i64,
        )?;
        gauge(
            &mut e,
            "zkdns_records",
            "Records in the map, SOA and NS included",
            None,
            records as i64,
        )?;
        gauge(
            &mut e,
            "zkdns_ready",
            "Whether the first full read of ZooKeeper is done (1) or not yet (0)",
            None,
            flag(store.is_ready()),
        )?;
        gauge(
            &mut e,
            "zkdns_stale",
            "Whether the map may be behind ZooKeeper (1: not synced yet, or ZooKeeper is \
             disconnected and the last map is served)",
            None,
            flag(store.is_stale()),
        )?;
        gauge(
            &mut e,
            "zkdns_since_last_sync",
            "Time since the map was last known to match ZooKeeper (0 while connected)",
            Some(&Unit::Seconds),
            // Store::since_sync counts from the Unix epoch until the first sync
            if store.is_ready() {
                store.since_sync()
            } else {
                self.started.elapsed()
            }
            .as_secs_f64(),
        )?;
        gauge(
            &mut e,
            "zkdns_bad_znodes",
            "Znodes skipped because their data is not valid",
            None,
            load(&c.bad_znodes) as i64,
        )?;
        counter(
            &mut e,
            "zkdns_hosts_writes",
            "Writes of the hosts file",
            load(&c.hosts_writes),
        )?;
        let mut m =
            e.encode_descriptor("zkdns_build", "The zkdns version", None, MetricType::Info)?;
        m.encode_info(&[("version", env!("CARGO_PKG_VERSION"))])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sources() -> Sources {
        Sources {
            metrics: Arc::new(Metrics::new(2)),
            store: Store::new(),
            upstreams: None,
            cache: None,
        }
    }

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines()
            .find(|l| l.starts_with(prefix) && l[prefix.len()..].starts_with(' '))
            .map(|l| l[prefix.len() + 1..].trim())
    }

    #[test]
    fn counters_and_labels_are_rendered() {
        let s = sources();
        s.metrics.shard(1).query(1);
        s.metrics.shard(2).query(1);
        s.metrics.shard(0).query(28);
        s.metrics.shard(1).response(3);
        Counters::add(&s.metrics.counters.forwarded, 4);
        Counters::set(&s.metrics.counters.zk_last_resync_ms, 1500);
        let text = Exposition::new(s).render();
        assert_eq!(line(&text, r#"zkdns_queries_total{type="A"}"#), Some("2"));
        assert_eq!(
            line(&text, r#"zkdns_queries_total{type="AAAA"}"#),
            Some("1")
        );
        assert_eq!(line(&text, r#"zkdns_queries_total{type="MX"}"#), Some("0"));
        assert_eq!(
            line(&text, r#"zkdns_responses_total{rcode="NXDOMAIN"}"#),
            Some("1")
        );
        assert_eq!(line(&text, "zkdns_forwarded_queries_total"), Some("4"));
        assert_eq!(
            line(&text, "zkdns_zookeeper_last_resync_duration_seconds"),
            Some("1.5")
        );
        assert_eq!(line(&text, "zkdns_ready"), Some("0"));
        assert_eq!(line(&text, "zkdns_stale"), Some("1"));
        let age: f64 = line(&text, "zkdns_since_last_sync_seconds")
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            age < 60.0,
            "counted from the start before the first sync: {age}"
        );
        assert!(text.contains("# HELP zkdns_queries_total DNS queries received"));
        assert!(text.contains("# TYPE zkdns_answer_duration_seconds histogram"));
        assert!(text.contains(r#"zkdns_build_info{version=""#));
    }

    #[test]
    fn histogram_buckets_are_cumulative_once() {
        let s = sources();
        s.metrics.shard(1).latency(Duration::from_micros(20), 3);
        s.metrics.shard(2).latency(Duration::from_micros(700), 1);
        s.metrics.shard(2).latency(Duration::from_secs(1), 1);
        let text = Exposition::new(s).render();
        let b = |le: &str| {
            line(
                &text,
                &format!("zkdns_answer_duration_seconds_bucket{{le=\"{le}\"}}"),
            )
        };
        assert_eq!(b("1e-05"), Some("0"));
        assert_eq!(b("2.5e-05"), Some("3"));
        assert_eq!(b("0.001"), Some("4"));
        assert_eq!(b("0.25"), Some("4"));
        assert_eq!(b("+Inf"), Some("5"));
        assert_eq!(
            line(&text, "zkdns_answer_duration_seconds_count"),
            Some("5")
        );
    }
}
