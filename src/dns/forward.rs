//! Asking the upstream resolvers about names outside the served zones. A question goes out
//! once, however many clients ask it at the same time ([`Forwarder::resolve`]): with a fresh
//! random ID from a fresh socket (random source port), EDNS (our UDP size, the client's DO
//! bit) and RD, over UDP and again over TCP when the reply is truncated. Only a reply from the
//! upstream's address and port with that ID and the same question is accepted (RFC 5452).
//! Upstreams are tried in turn, starting with the last one that answered. The reply becomes a
//! cache [`Entry`], from which every client's answer is written (and which the cache keeps
//! when it is worth keeping). [`UpstreamHealth`] remembers which upstreams answer, so that the
//! log says once when one stops and once when it answers again; bad replies are counted, and
//! logged once per upstream and kind.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::oneshot;
use tokio::time::{Instant, timeout_at};
use tracing::{debug, info, warn};

use crate::dns::cache::{Age, BadReply, Cache, CacheConfig, Entry, key_parts};
use crate::dns::wire::{EDNS_UDP, HEADER_LEN, TYPE_OPT};
use crate::metrics::Counters;

/// Largest reply read from an upstream over UDP without EDNS (RFC 1035 §4.2.1).
const PLAIN_UDP_REPLY: usize = 512;

/// What resolving a question gave: the reply that every waiting client's answer is written
/// from, or why there is none.
pub type Outcome = Result<Arc<Entry>, ForwardError>;

/// Questions being asked now, by cache key, with the clients waiting for each besides the one
/// asking it.
type Pending = Mutex<HashMap<Box<[u8]>, Vec<oneshot::Sender<Outcome>>>>;

#[derive(Debug)]
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    timeout: Duration,
    /// Index of the upstream that answered last; tried first.
    preferred: AtomicUsize,
    health: Arc<UpstreamHealth>,
    cache: Option<Arc<Cache>>,
    /// How replies are judged when there is no cache (`--no-cache`).
    config: CacheConfig,
    pending: Pending,
}

/// Whether each upstream answered its last exchange. Only a change of state is logged (warn
/// when an upstream starts failing, info when it answers again), so an upstream that is down
/// costs one log line, not one per forwarded query. Forwarding runs on the async side, so the
/// one atomic load per exchange never touches the UDP answer path.
#[derive(Debug)]
pub struct UpstreamHealth {
    upstreams: Vec<SocketAddr>,
    down: Box<[AtomicBool]>,
    /// Per upstream, per [`BadKind`]: whether that kind of bad reply was logged already.
    bad_logged: Box<[[AtomicBool; BadKind::COUNT]]>,
}

/// The kinds of bad upstream replies, as counted and logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadKind {
    /// From the upstream's address and port, but with another ID or question (RFC 5452:
    /// ignored, and the real reply waited for).
    Mismatch,
    /// Larger than the UDP size we asked for.
    Oversized,
    Malformed,
    /// A TTL with the top bit set: relayed with TTL 0, never cached.
    TtlTopBit,
}

impl BadKind {
    const COUNT: usize = 4;

    fn describe(self) -> &'static str {
        match self {
            BadKind::Mismatch => "a reply with another ID or question (ignored)",
            BadKind::Oversized => "a reply larger than the size asked for (refused)",
            BadKind::Malformed => "a malformed reply (refused)",
            BadKind::TtlTopBit => "a TTL with its top bit set (taken as 0, not cached)",
        }
    }

    fn counter(self, c: &Counters) -> &std::sync::atomic::AtomicU64 {
        match self {
            BadKind::Mismatch => &c.upstream_bad_mismatch,
            BadKind::Oversized => &c.upstream_bad_oversized,
            BadKind::Malformed => &c.upstream_bad_malformed,
            BadKind::TtlTopBit => &c.upstream_bad_ttl,
        }
    }
}

impl From<BadReply> for BadKind {
    fn from(b: BadReply) -> Self {
        match b {
            BadReply::Malformed => BadKind::Malformed,
            BadReply::TtlTopBit => BadKind::TtlTopBit,
        }
    }
}

impl UpstreamHealth {
    fn new(upstreams: &[SocketAddr]) -> Self {
        Self {
            upstreams: upstreams.to_vec(),
            down: upstreams.iter().map(|_| AtomicBool::new(false)).collect(),
            bad_logged: upstreams
                .iter()
                .map(|_| std::array::from_fn(|_| AtomicBool::new(false)))
                .collect(),
        }
    }

    /// Counts a bad reply from upstream `idx`, and logs the first of its kind.
    fn bad(&self, idx: usize, kind: BadKind, counters: &Counters) {
        Counters::add(kind.counter(counters), 1);
        let logged = &self.bad_logged[idx][kind as usize];
        if !logged.load(Ordering::Relaxed) && !logged.swap(true, Ordering::Relaxed) {
            let upstream = self.upstreams[idx];
            warn!(%upstream, kind = ?kind, "upstream {upstream} sent {} (logged once; counted in zkdns_upstream_bad_replies_total)", kind.describe());
        }
    }

    /// Each upstream and whether its last exchange succeeded (true until one fails).
    pub fn states(&self) -> impl Iterator<Item = (SocketAddr, bool)> + '_ {
        self.upstreams
            .iter()
            .zip(self.down.iter())
            .map(|(up, down)| (*up, !down.load(Ordering::Relaxed)))
    }

    fn answered(&self, idx: usize) {
        let down = &self.down[idx];
        if down.load(Ordering::Relaxed) && down.swap(false, Ordering::Relaxed) {
            info!(upstream = %self.upstreams[idx], "upstream {} answers again", self.upstreams[idx]);
        }
    }

    fn failed(&self, idx: usize, error: &std::io::Error) {
        let down = &self.down[idx];
        if !down.load(Ordering::Relaxed) && !down.swap(true, Ordering::Relaxed) {
            warn!(upstream = %self.upstreams[idx], %error, "upstream {} is failing: {error}", self.upstreams[idx]);
        }
    }
}

/// Why a forward failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardError {
    /// No upstream is configured.
    NoUpstream,
    /// Every upstream failed or timed out.
    AllFailed,
}

/// Removes a pending question when its leader is done or gone; the waiters it still holds
/// then see their channel closed (a failure) rather than wait forever.
struct Leading<'a> {
    pending: &'a Pending,
    key: &'a [u8],
}

impl Leading<'_> {
    fn waiters(&self) -> Vec<oneshot::Sender<Outcome>> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.remove(self.key).unwrap_or_default()
    }
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        drop(self.waiters());
    }
}

impl Forwarder {
    pub fn new(upstreams: Vec<SocketAddr>, timeout: Duration, cache: Option<Arc<Cache>>) -> Self {
        Self {
            health: Arc::new(UpstreamHealth::new(&upstreams)),
            upstreams,
            timeout,
            preferred: AtomicUsize::new(0),
            config: cache
                .as_ref()
                .map_or_else(CacheConfig::default, |c| *c.config()),
            cache,
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// The per-upstream state tracker, for metrics.
    pub fn health(&self) -> Arc<UpstreamHealth> {
        self.health.clone()
    }

    /// The cache of forwarded answers (`None` with `--no-cache`).
    pub fn cache(&self) -> Option<&Arc<Cache>> {
        self.cache.as_ref()
    }

    /// How long one upstream is given before the next is tried.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn has_upstreams(&self) -> bool {
        !self.upstreams.is_empty()
    }

    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    fn order(&self) -> impl Iterator<Item = (usize, SocketAddr)> + '_ {
        let n = self.upstreams.len();
        let first = self.preferred.load(Ordering::Relaxed) % n.max(1);
        (0..n).map(move |i| {
            let idx = (first + i) % n;
            (idx, self.upstreams[idx])
        })
    }

    /// Resolves the question `key` (see [`crate::dns::cache::key`]) with the upstreams: once
    /// for everyone who asks it meanwhile. A reply worth keeping goes into the cache before
    /// the waiters are woken; when every upstream fails, a stale entry is marked so that it is
    /// served without asking again for a while, or else the failure itself is kept briefly.
    pub async fn resolve(&self, key: &[u8], counters: &Counters) -> Outcome {
        if self.upstreams.is_empty() {
            return Err(ForwardError::NoUpstream);
        }
        let waiting = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            match pending.get_mut(key) {
                Some(waiters) => {
                    let (tx, rx) = oneshot::channel();
                    waiters.push(tx);
                    Some(rx)
                }
                None => {
                    pending.insert(key.into(), Vec::new());
                    None
                }
            }
        };
        if let Some(rx) = waiting {
            Counters::add(&counters.forwards_coalesced, 1);
            return rx.await.unwrap_or(Err(ForwardError::AllFailed));
        }
        let leading = Leading {
            pending: &self.pending,
            key,
        };
        let outcome = self.ask_upstreams(key, counters).await;
        if let Some(cache) = &self.cache {
            match &outcome {
                Ok(entry) => cache.insert(entry.clone()),
                Err(_) => {
                    let now = cache.now();
                    match cache.get(key) {
                        Some(e) if e.age(now, cache.config()) == Age::Stale => {
                            e.mark_refresh_failed(now)
                        }
                        _ => cache.insert(Arc::new(Entry::failure(key, now))),
                    }
                }
            }
        }
        for waiter in leading.waiters() {
            let _ = waiter.send(outcome.clone());
        }
        outcome
    }

    /// Asks the upstreams in turn until one gives a reply that can be relayed.
    async fn ask_upstreams(&self, key: &[u8], counters: &Counters) -> Outcome {
        let (name, qtype, qclass, dnssec_ok, cd) = key_parts(key);
        for (idx, upstream) in self.order() {
            let id: u16 = rand::random();
            let query = upstream_query(id, name, qtype, qclass, dnssec_ok, cd);
            let question = &query[HEADER_LEN..HEADER_LEN + name.len() + 4];
            let deadline = Instant::now() + self.timeout;
            Counters::add(&counters.forwarded, 1);
            let bad = |kind| self.health.bad(idx, kind, counters);
            let mut result = exchange_udp(
                upstream,
                &query,
                id,
                question,
                deadline,
                EDNS_UDP.into(),
                &bad,
            )
            .await;
            if let Ok(reply) = &result {
                if reply[2] & 0x02 != 0 {
                    // truncated over UDP: the whole answer over TCP, from the same upstream
                    Counters::add(&counters.forwarded, 1);
                    result = exchange_tcp(upstream, &query, id, question, deadline).await;
                }
            }
            let failure = match result {
                Ok(reply) => {
                    let now = self.cache.as_ref().map_or(1, |c| c.now());
                    match Entry::from_reply(key, &reply, &self.config, now) {
                        Ok((entry, note)) => {
                            if let Some(b) = note {
                                bad(b.into());
                            }
                            self.preferred.store(idx, Ordering::Relaxed);
                            self.health.answered(idx);
                            return Ok(Arc::new(entry));
                        }
                        Err(b) => {
                            bad(b.into());
                            std::io::Error::new(std::io::ErrorKind::InvalidData, b.reason())
                        }
                    }
                }
                Err(e) => e,
            };
            let counter = if failure.kind() == std::io::ErrorKind::TimedOut {
                &counters.upstream_timeouts
            } else {
                &counters.upstream_errors
            };
            Counters::add(counter, 1);
            self.health.failed(idx, &failure);
            debug!(%upstream, error = %failure, "upstream failed");
        }
        Err(ForwardError::AllFailed)
    }
}

/// The query for `name` that goes to an upstream: RD, CD as the client set it, and an OPT
/// record with our UDP size and the client's DO bit.
fn upstream_query(
    id: u16,
    name: &[u8],
    qtype: u16,
    qclass: u16,
    dnssec_ok: bool,
    cd: bool,
) -> Vec<u8> {
    let mut q = Vec::with_capacity(HEADER_LEN + name.len() + 4 + 11);
    q.extend_from_slice(&id.to_be_bytes());
    q.push(0x01); // RD
    q.push(if cd { 0x10 } else { 0 });
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 1]);
    q.extend_from_slice(name);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&qclass.to_be_bytes());
    q.push(0);
    q.extend_from_slice(&TYPE_OPT.to_be_bytes());
    q.extend_from_slice(&EDNS_UDP.to_be_bytes());
    q.extend_from_slice(&[0, 0]);
    q.extend_from_slice(&(if dnssec_ok { 0x8000u16 } else { 0 }).to_be_bytes());
    q.extend_from_slice(&[0, 0]);
    q
}

/// What [`probe`] learnt from an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeReply {
    /// The RCODE of the reply.
    pub rcode: u16,
    pub elapsed: Duration,
}

/// Sends `. NS` with RD to `upstream` over UDP, exactly as a forwarded query goes, and waits up
/// to `timeout` for a matching reply of any RCODE.
pub async fn probe(upstream: SocketAddr, timeout: Duration) -> std::io::Result<ProbeReply> {
    let id: u16 = rand::random();
    let mut query = Vec::with_capacity(HEADER_LEN + 5);
    query.extend_from_slice(&id.to_be_bytes());
    query.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD; one question
    query.extend_from_slice(&[0, 0, 2, 0, 1]); // root, NS, IN
    let started = Instant::now();
    let question = query[HEADER_LEN..].to_vec();
    let reply = exchange_udp(
        upstream,
        &query,
        id,
        &question,
        started + timeout,
        PLAIN_UDP_REPLY,
        &|_| {},
    )
    .await?;
    Ok(ProbeReply {
        rcode: u16::from(reply[3] & 0x0F),
        elapsed: started.elapsed(),
    })
}

/// Whether `reply` answers our query: a response, our ID, our question (the name in any
/// letter case).
fn matches(reply: &[u8], id: u16, question: &[u8]) -> bool {
    reply.len() >= HEADER_LEN + question.len()
        && reply[..2] == id.to_be_bytes()
        && reply[2] & 0x80 != 0
        && reply[4..6] == [0, 1]
        && reply[HEADER_LEN..HEADER_LEN + question.len()].eq_ignore_ascii_case(question)
}

async fn exchange_udp(
    upstream: SocketAddr,
    query: &[u8],
    id: u16,
    question: &[u8],
    deadline: Instant,
    max_reply: usize,
    bad: &(dyn Fn(BadKind) + Sync),
) -> std::io::Result<Vec<u8>> {
    let bind: SocketAddr = if upstream.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal address")
    } else {
        "[::]:0".parse().expect("literal address")
    };
    let socket = UdpSocket::bind(bind).await?;
    // connect() makes the kernel drop datagrams from any other address or port
    socket.connect(upstream).await?;
    socket.send(query).await?;
    // one byte more than allowed, so that an oversized reply is seen and refused, not cut
    let mut buf = vec![0u8; max_reply + 1];
    loop {
        let n = timeout_at(deadline, socket.recv(&mut buf))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"))??;
        if !matches(&buf[..n], id, question) {
            // RFC 5452: not the reply to this query (a late one, or a forgery); keep waiting
            bad(BadKind::Mismatch);
            continue;
        }
        if n > max_reply {
            bad(BadKind::Oversized);
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "reply larger than the UDP size asked for",
            ));
        }
        buf.truncate(n);
        return Ok(buf);
    }
}

async fn exchange_tcp(
    upstream: SocketAddr,
    query: &[u8],
    id: u16,
    question: &[u8],
    deadline: Instant,
) -> std::io::Result<Vec<u8>> {
    let timed_out = || std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out");
    let mut stream = timeout_at(deadline, TcpStream::connect(upstream))
        .await
        .map_err(|_| timed_out())??;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&(query.len() as u16).to_be_bytes());
    framed.extend_from_slice(query);
    timeout_at(deadline, stream.write_all(&framed))
        .await
        .map_err(|_| timed_out())??;
    let reply = timeout_at(deadline, async {
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await?;
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        stream.read_exact(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    })
    .await
    .map_err(|_| timed_out())??;
    if !matches(&reply, id, question) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "reply does not match the query",
        ));
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_state_changes_once_per_transition() {
        let ups: Vec<SocketAddr> = vec![
            "192.0.2.1:53".parse().unwrap(),
            "192.0.2.2:53".parse().unwrap(),
        ];
        let health = UpstreamHealth::new(&ups);
        let states = |h: &UpstreamHealth| h.states().map(|(_, up)| up).collect::<Vec<_>>();
        assert_eq!(states(&health), vec![true, true]);
        let e = std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out");
        health.failed(1, &e);
        health.failed(1, &e);
        assert_eq!(states(&health), vec![true, false]);
        health.answered(1);
        assert_eq!(states(&health), vec![true, true]);
    }

    #[test]
    fn reply_must_match_id_and_question() {
        let question = b"\x01a\x00\x00\x01\x00\x01";
        let mut reply = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0];
        reply.extend_from_slice(question);
        assert!(matches(&reply, 0x1234, question));
        assert!(!matches(&reply, 0x1235, question));
        let mut other = reply.clone();
        other[13] = b'b';
        assert!(!matches(&other, 0x1234, question));
        let mut not_response = reply.clone();
        not_response[2] = 0x01;
        assert!(!matches(&not_response, 0x1234, question));
    }
}
