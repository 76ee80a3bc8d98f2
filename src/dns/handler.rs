//! The query handler, apart from the listeners that feed it: which clients are answered
//! ([`Acl`], the per-client rate limit), and for each packet the [`Verdict`]: the reply written
//! from the current snapshot, the packet to forward upstream, or silence. Shared by the UDP
//! workers and the TCP connections alike.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use tokio::sync::Semaphore;

use crate::dns::answer::{self, AnswerOptions, Freshness, Outcome};
use crate::dns::cache::{self, Age, Entry, Found, KEY_MAX};
use crate::dns::forward::{ForwardError, Forwarder};
use crate::dns::ratelimit::RateLimiter;
use crate::dns::wire::{self, rcode};
use crate::metrics::{Counters, Metrics, QueryShard};
use crate::names::{ZoneName, label_offsets, wire_key_str};
use crate::store::{Snapshot, Store};

/// Forwarded queries in flight at once; past this, queries are dropped and clients retry.
const MAX_FORWARDS: usize = 4096;
/// At shutdown, how long TCP connections get to finish the query they are answering (or the
/// upstream timeout, if longer, so that a forwarded query can still be answered).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// What to do with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The reply is in the buffer.
    Reply,
    /// The name is not in the zones: it goes to the upstreams.
    Forward,
    /// No reply at all (a response, shorter than a header, or a client over its rate).
    Silent,
}

/// The RCODE (low four bits) of a response in wire format.
fn response_rcode(msg: &[u8]) -> u16 {
    msg.get(3).map_or(0, |b| u16::from(b & 0x0F))
}

/// Which clients get answers: loopback always, plus the `--allow` networks.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    allow: Vec<IpNet>,
}

impl Acl {
    pub fn new(allow: Vec<IpNet>) -> Self {
        Self { allow }
    }

    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_loopback() || self.allow.iter().any(|net| net.contains(&ip))
    }
}

/// Everything a listener needs, shared by all of them.
#[derive(Debug)]
pub struct Handler {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub forwarder: Forwarder,
    pub acl: Acl,
    /// Keys of the zones named by `--zone`: until the first full read, their names get
    /// SERVFAIL rather than being forwarded.
    configured_zones: Vec<Box<[u8]>>,
    forwards: Semaphore,
    stale: StalePolicy,
    /// `--max-qps-per-client`: `None` when off.
    limiter: Option<RateLimiter>,
}

/// How answers are served while ZooKeeper is away (RFC 8767).
#[derive(Debug, Clone, Copy)]
pub struct StalePolicy {
    /// TTL cap of stale answers.
    pub ttl: u32,
    /// How long after the map last matched ZooKeeper it may still be served.
    pub max_age: Duration,
}

impl Default for StalePolicy {
    fn default() -> Self {
        Self {
            ttl: 30,
            max_age: Duration::from_secs(3 * 86400),
        }
    }
}

impl Handler {
    pub fn new(
        store: Store,
        metrics: Arc<Metrics>,
        forwarder: Forwarder,
        acl: Acl,
        zones: &[ZoneName],
    ) -> Self {
        Self {
            store,
            metrics,
            forwarder,
            acl,
            configured_zones: zones.iter().map(|z| wire_key_str(z.as_str())).collect(),
            forwards: Semaphore::new(MAX_FORWARDS),
            stale: StalePolicy::default(),
            limiter: None,
        }
    }

    /// Caps the queries of each client outside loopback (`--max-qps-per-client`).
    pub fn with_rate_limit(mut self, limiter: Option<RateLimiter>) -> Self {
        self.limiter = limiter;
        self
    }

    /// Serve-stale settings (default: TTL 30 s, up to 3 days).
    pub fn with_stale_policy(mut self, stale: StalePolicy) -> Self {
        self.stale = stale;
        self
    }

    /// How current the map is now: one atomic load while connected.
    fn freshness(&self) -> Freshness {
        if !self.store.is_stale() {
            Freshness::Fresh
        } else if self.store.since_sync() > self.stale.max_age {
            Freshness::TooOld
        } else {
            Freshness::Stale {
                ttl: self.stale.ttl,
            }
        }
    }

    fn awaits_first_sync(&self, q: &wire::Query<'_>) -> bool {
        if self.configured_zones.is_empty() || self.store.is_ready() {
            return false;
        }
        let mut buf = [0u8; 257];
        let key = q.key(&mut buf);
        label_offsets(key).any(|at| self.configured_zones.iter().any(|z| **z == key[at..]))
    }

    /// How long shutdown waits for answers under way: a forwarded query gets its upstream
    /// timeout, a TCP connection at least [`SHUTDOWN_GRACE`].
    pub fn shutdown_grace(&self) -> Duration {
        SHUTDOWN_GRACE.max(self.forwarder.timeout())
    }

    /// Waits until no forwarded query is in flight, or `deadline`; returns how many are left.
    /// Every forward holds a permit of `forwards` while it runs, so all permits back means
    /// all forwards done (new ones are no longer started: the listeners have stopped).
    pub async fn drain_forwards(&self, deadline: tokio::time::Instant) -> usize {
        let all = MAX_FORWARDS as u32;
        match tokio::time::timeout_at(deadline, self.forwards.acquire_many(all)).await {
            Ok(_) => 0,
            Err(_) => MAX_FORWARDS - self.forwards.available_permits(),
        }
    }

    fn options(&self) -> AnswerOptions {
        AnswerOptions {
            recursion_available: self.forwarder.has_upstreams(),
            freshness: self.freshness(),
        }
    }

    /// Answers what can be answered without waiting, from `snap`, into `out`; or says to
    /// forward the packet, or to send nothing at all.
    pub fn answer_now(
        &self,
        snap: &Snapshot,
        packet: &[u8],
        client: IpAddr,
        tcp: bool,
        out: &mut Vec<u8>,
        shard: &QueryShard,
    ) -> Verdict {
        // over its cap, a client gets nothing, not even REFUSED: no reflection to spoofed
        // sources, and no work for the flood
        if self.limiter.as_ref().is_some_and(|l| !l.admit(client)) {
            Counters::add(&self.metrics.counters.rate_limited, 1);
            return Verdict::Silent;
        }
        let q = match wire::parse_query(packet) {
            Ok(q) => q,
            Err(reason) => {
                if !self.acl.permits(client) || !answer::reject(reason, out) {
                    return Verdict::Silent;
                }
                shard.response(response_rcode(out));
                return Verdict::Reply;
            }
        };
        shard.query(q.qtype);
        if !self.acl.permits(client) {
            answer::error_reply(packet, &q, rcode::REFUSED, out);
            shard.response(rcode::REFUSED);
            return Verdict::Reply;
        }
        let limit = if tcp {
            u16::MAX as usize
        } else {
            q.udp_limit()
        };
        match answer::answer(snap, packet, &q, limit, self.options(), out) {
            Outcome::Reply => {}
            Outcome::Forward if self.awaits_first_sync(&q) => {
                // a zone we were told to serve, not read yet: make the client retry
                answer::error_reply(packet, &q, rcode::SERVFAIL, out);
            }
            Outcome::Forward => {
                let Some(cache) = self.forwarder.cache() else {
                    return Verdict::Forward;
                };
                let mut keybuf = [0u8; KEY_MAX];
                let key = cache::key(&q, &mut keybuf);
                match cache.answer(key, packet, &q, limit, out) {
                    Found::Answered { rcode, stale } => {
                        shard.cache_hit(stale);
                        shard.response(rcode);
                        return Verdict::Reply;
                    }
                    Found::Miss => return Verdict::Forward,
                }
            }
        }
        shard.response(response_rcode(out));
        Verdict::Reply
    }

    /// Asks the upstreams about `packet` (a question the cache could not answer at once) and
    /// returns the client's reply: from the upstreams' answer; when they all fail, from stale
    /// data if the cache has some (RFC 8767), else SERVFAIL; REFUSED without upstreams.
    /// `None` when the packet deserves no reply, or too many questions are pending.
    pub async fn forward(&self, packet: &[u8], tcp: bool) -> Option<Vec<u8>> {
        let q = wire::parse_query(packet).ok()?;
        let _permit = self.forwards.try_acquire().ok()?;
        let counters = &self.metrics.counters;
        let shard = self.metrics.shard(0);
        let limit = if tcp {
            u16::MAX as usize
        } else {
            q.udp_limit()
        };
        let mut out = Vec::new();
        let mut keybuf = [0u8; KEY_MAX];
        let key = cache::key(&q, &mut keybuf);
        let cache = self.forwarder.cache();
        if let Some(cache) = cache {
            // TCP comes here without looking first; UDP looked a moment ago
            if let Found::Answered { rcode, stale } = cache.answer(key, packet, &q, limit, &mut out)
            {
                shard.cache_hit(stale);
                shard.response(rcode);
                return Some(out);
            }
            Counters::add(&counters.cache_misses, 1);
        }
        let now = cache.map_or(1, |c| c.now());
        let code = match self.forwarder.resolve(key, counters).await {
            Ok(entry) => entry.write_reply(packet, &q, limit, now, None, &mut out),
            Err(ForwardError::NoUpstream) => {
                answer::error_reply(packet, &q, rcode::REFUSED, &mut out);
                rcode::REFUSED
            }
            Err(ForwardError::AllFailed) => {
                let stale = cache.and_then(|c| {
                    let entry = c.get(key)?;
                    (entry.age(now, c.config()) == Age::Stale)
                        .then(|| (entry, c.config().stale_ttl))
                });
                match stale {
                    Some((entry, ttl)) => {
                        shard.cache_hit(true);
                        entry.write_reply(packet, &q, limit, now, Some(ttl), &mut out)
                    }
                    None => {
                        Entry::failure(key, now).write_reply(packet, &q, limit, now, None, &mut out)
                    }
                }
            }
        };
        shard.response(code);
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acl_admits_loopback_and_allowed_networks() {
        let acl = Acl::new(vec!["10.0.0.0/8".parse().unwrap()]);
        assert!(acl.permits("127.0.0.1".parse().unwrap()));
        assert!(acl.permits("127.9.9.9".parse().unwrap()));
        assert!(acl.permits("::1".parse().unwrap()));
        assert!(acl.permits("::ffff:10.1.2.3".parse().unwrap()));
        assert!(acl.permits("10.1.2.3".parse().unwrap()));
        assert!(!acl.permits("192.168.1.1".parse().unwrap()));
    }
}
