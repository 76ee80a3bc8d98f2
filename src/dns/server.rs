//! The listeners: UDP and TCP on every `--listen` address. Each packet is checked against the
//! client ACL, parsed, answered from the current snapshot or handed to the forwarder, and never
//! allowed to take the server down. Every loop stops when the cancellation token fires; the
//! answers already under way are finished within a grace period (see [`serve`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ipnet::IpNet;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::dns::answer::{self, AnswerOptions, Freshness, Outcome};
use crate::dns::forward::{ForwardError, Forwarder};
use crate::dns::ratelimit::RateLimiter;
use crate::dns::udp::UdpGroup;
use crate::dns::wire::{self, rcode};
use crate::metrics::{Counters, Metrics, QueryShard};
use crate::names::{ZoneName, label_offsets, wire_key_str};
use crate::store::{Snapshot, Store};

/// The RCODE (low four bits) of a response in wire format.
fn response_rcode(msg: &[u8]) -> u16 {
    msg.get(3).map_or(0, |b| u16::from(b & 0x0F))
}

/// Idle time after which a TCP connection is closed (RFC 7766 suggests seconds).
const TCP_IDLE: Duration = Duration::from_secs(10);
/// TCP connections served at once; more wait in the kernel's backlog.
const MAX_TCP_CONNECTIONS: usize = 512;
/// Forwarded queries in flight at once; past this, queries are dropped and clients retry.
const MAX_FORWARDS: usize = 4096;
/// At shutdown, how long TCP connections get to finish the query they are answering (or the
/// upstream timeout, if longer, so that a forwarded query can still be answered).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, Error)]
pub enum ServerError {
    #[error("failed to bind to UDP socket address {addr}")]
    BindUdp {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to bind to TCP socket address {addr}")]
    BindTcp {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
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
    fn shutdown_grace(&self) -> Duration {
        SHUTDOWN_GRACE.max(self.forwarder.timeout())
    }

    /// Waits until no forwarded query is in flight, or `deadline`; returns how many are left.
    /// Every forward holds a permit of `forwards` while it runs, so all permits back means
    /// all forwards done (new ones are no longer started: the listeners have stopped).
    async fn drain_forwards(&self, deadline: tokio::time::Instant) -> usize {
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

    /// Answers what can be answered without waiting, from `snap`. Returns `Some(true)` when
    /// `out` holds the reply, `Some(false)` to forward, `None` to stay silent.
    pub(crate) fn answer_now(
        &self,
        snap: &Snapshot,
        packet: &[u8],
        client: IpAddr,
        tcp: bool,
        out: &mut Vec<u8>,
        shard: &QueryShard,
    ) -> Option<bool> {
        // over its cap, a client gets nothing, not even REFUSED: no reflection to spoofed
        // sources, and no work for the flood
        if self.limiter.as_ref().is_some_and(|l| !l.admit(client)) {
            Counters::add(&self.metrics.counters.rate_limited, 1);
            return None;
        }
        let q = match wire::parse_query(packet) {
            Ok(q) => q,
            Err(reason) => {
                if !self.acl.permits(client) || !answer::reject(reason, out) {
                    return None;
                }
                shard.response(response_rcode(out));
                return Some(true);
            }
        };
        shard.query(q.qtype);
        if !self.acl.permits(client) {
            answer::error_reply(packet, &q, rcode::REFUSED, out);
            shard.response(rcode::REFUSED);
            return Some(true);
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
            Outcome::Forward => return Some(false),
        }
        shard.response(response_rcode(out));
        Some(true)
    }

    /// Forwards `packet` and returns the client's reply (relayed, or SERVFAIL/REFUSED).
    pub(crate) async fn forward(&self, packet: &[u8], tcp: bool) -> Option<Vec<u8>> {
        let q = wire::parse_query(packet).ok()?;
        let _permit = self.forwards.try_acquire().ok()?;
        let counters = &self.metrics.counters;
        Counters::add(&counters.forwarded, 1);
        let mut out = Vec::new();
        let shard = self.metrics.shard(0);
        match self.forwarder.forward(packet, &q, tcp, counters).await {
            Ok(reply) => {
                shard.response(response_rcode(&reply));
                return Some(reply);
            }
            Err(ForwardError::NoUpstream) => {
                answer::error_reply(packet, &q, rcode::REFUSED, &mut out)
            }
            Err(ForwardError::AllFailed) => {
                answer::error_reply(packet, &q, rcode::SERVFAIL, &mut out)
            }
        }
        shard.response(response_rcode(&out));
        Some(out)
    }
}

/// The sockets of one `--listen` address.
pub struct Listener {
    pub udp: UdpGroup,
    pub tcp: TcpListener,
}

/// Binds every listener (UDP with `udp_workers` sockets each); fails if any address cannot be
/// bound.
pub async fn bind(listen: &[SocketAddr], udp_workers: usize) -> Result<Vec<Listener>, ServerError> {
    let mut out = Vec::new();
    for &addr in listen {
        // port 0: the port the kernel gives UDP may be taken for TCP; then ask again
        let attempts = if addr.port() == 0 { 50 } else { 1 };
        let mut attempt = 0;
        let listener = loop {
            attempt += 1;
            let udp = UdpGroup::bind(addr, udp_workers)
                .map_err(|source| ServerError::BindUdp { addr, source })?;
            let tcp_addr = udp.local;
            match tcp_listener(tcp_addr) {
                Ok(tcp) => break Listener { udp, tcp },
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && attempt < attempts => {}
                Err(source) => {
                    return Err(ServerError::BindTcp {
                        addr: tcp_addr,
                        source,
                    });
                }
            }
        };
        out.push(listener);
    }
    Ok(out)
}

/// A TCP listener on `addr`; on `[::]` for IPv6 only, so that `0.0.0.0` on the same port can
/// be listened on too (as for UDP).
fn tcp_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// Serves on the bound sockets until `cancel` fires. Then it stops taking queries, lets the
/// UDP workers send the replies of the batch in hand, gives TCP connections and forwarded
/// queries the grace period ([`SHUTDOWN_GRACE`], or the upstream timeout if longer) to finish,
/// and abandons what is left.
pub async fn serve(listeners: Vec<Listener>, handler: Arc<Handler>, cancel: CancellationToken) {
    let stop = Arc::new(AtomicBool::new(false));
    let runtime = tokio::runtime::Handle::current();
    let mut threads = Vec::new();
    let mut tasks = JoinSet::new();
    let mut groups = Vec::new();
    for Listener { udp, tcp } in listeners {
        info!("listening for UDP on {}", udp.local);
        if let Ok(addr) = tcp.local_addr() {
            info!("listening for TCP on {addr}");
        }
        match udp.spawn(
            handler.clone(),
            runtime.clone(),
            stop.clone(),
            threads.len() + 1,
        ) {
            Ok(t) => threads.extend(t),
            Err(e) => warn!(error = %e, "cannot start UDP workers"),
        }
        groups.push(udp);
        tasks.spawn(serve_tcp(tcp, handler.clone(), cancel.clone()));
    }
    cancel.cancelled().await;
    let deadline = tokio::time::Instant::now() + handler.shutdown_grace();
    info!("stopped taking queries; finishing the answers under way");
    stop.store(true, Ordering::Relaxed);
    for group in &groups {
        group.wake();
    }
    let _ = tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ = t.join();
        }
    })
    .await;
    drop(groups);
    while tasks.join_next().await.is_some() {}
    let abandoned = handler.drain_forwards(deadline).await;
    if abandoned > 0 {
        warn!("abandoned {abandoned} forwarded queries still waiting for an upstream");
    }
}

async fn serve_tcp(listener: TcpListener, handler: Arc<Handler>, cancel: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    let mut conns = JoinSet::new();
    // accept errors (e.g. out of file descriptors) repeat until the cause goes: log the change
    let mut accept_failing = false;
    loop {
        let (stream, client) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => {
                    if std::mem::take(&mut accept_failing) {
                        info!("TCP accept works again");
                    }
                    x
                }
                Err(e) => {
                    if !std::mem::replace(&mut accept_failing, true) {
                        warn!(error = %e, "TCP accept failing; retrying");
                    } else {
                        debug!(error = %e, "TCP accept still failing");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            () = cancel.cancelled() => break,
        };
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = cancel.cancelled() => break,
        };
        let handler = handler.clone();
        let cancel = cancel.clone();
        conns.spawn(async move {
            let _permit = permit;
            if let Err(e) = serve_tcp_conn(stream, client, &handler, &cancel).await {
                debug!(%client, error = %e, "TCP connection ended");
            }
        });
    }
    // stop accepting at once; connections still answering get the grace period
    let local = listener.local_addr().ok();
    drop(listener);
    let grace = handler.shutdown_grace();
    let drained =
        tokio::time::timeout(grace, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        warn!(
            listen = ?local,
            "closing {} TCP connections still answering after {grace:?}",
            conns.len()
        );
    }
    conns.shutdown().await;
}

/// Answers the queries of one TCP connection until the client closes it, it idles, or
/// `cancel` fires while it waits for the next query (a query already read is answered).
async fn serve_tcp_conn(
    mut stream: TcpStream,
    client: SocketAddr,
    handler: &Handler,
    cancel: &CancellationToken,
) -> std::io::Result<()> {
    // buffers kept across the connection's queries
    let mut out = Vec::with_capacity(4096);
    let mut packet = Vec::new();
    let mut framed = Vec::new();
    loop {
        let mut len = [0u8; 2];
        let read = tokio::select! {
            r = tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut len)) => r,
            () = cancel.cancelled() => return Ok(()),
        };
        match read {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(()), // idle
        }
        packet.clear();
        packet.resize(u16::from_be_bytes(len) as usize, 0);
        tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut packet))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "read timed out"))??;
        let started = std::time::Instant::now();
        let shard = handler.metrics.shard(0);
        let answered = {
            let snap = handler.store.load();
            handler.answer_now(&snap, &packet, client.ip(), true, &mut out, shard)
        };
        let reply = match answered {
            Some(true) => std::mem::take(&mut out),
            Some(false) => match handler.forward(&packet, true).await {
                Some(reply) => reply,
                None => continue,
            },
            None => return Ok(()),
        };
        framed.clear();
        framed.extend_from_slice(&(reply.len() as u16).to_be_bytes());
        framed.extend_from_slice(&reply);
        stream.write_all(&framed).await?;
        shard.latency(started.elapsed(), 1);
        out = reply;
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
