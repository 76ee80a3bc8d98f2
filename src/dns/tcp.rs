//! DNS over TCP (RFC 7766): each connection's queries answered in turn, under two caps, on
//! the connections from one client (an IPv4 address or an IPv6 /64) and on all of them. A new
//! connection over either cap closes the connection in its way that has waited longest for a
//! query, rather than wait for a slot: one client holding hundreds of idle connections (a
//! shared per-host stub's noisy neighbour, or a slowloris) only ever churns its own, and
//! another client is served at once. Connections in the middle of a query are never closed;
//! when every one in the way is, the new connection is refused (closed) and the client retries.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::dns::handler::{Handler, Verdict};

/// Idle time after which a TCP connection is closed (RFC 7766 suggests seconds).
const TCP_IDLE: Duration = Duration::from_secs(10);
/// At most this often, a log line about connections closed or refused for the caps.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// The caps on TCP connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpLimits {
    /// In all, per listen address.
    pub total: usize,
    /// From one client.
    pub per_client: usize,
}

impl Default for TcpLimits {
    fn default() -> Self {
        TcpLimits {
            total: 512,
            per_client: 32,
        }
    }
}

/// One client: its IPv4 address, or its IPv6 /64 (marked so it never equals an IPv4 key).
fn client_key(ip: IpAddr) -> u128 {
    match ip.to_canonical() {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => (u128::from(v6) >> 64) | (1 << 64),
    }
}

/// A connection as the table sees it.
struct Slot {
    client: u128,
    /// Milliseconds since the table started at which it began to wait for a query; `BUSY`
    /// while it answers one.
    idle_since: AtomicU64,
    /// Tells the connection to close.
    shed: Notify,
}

const BUSY: u64 = u64::MAX;

#[derive(Default)]
struct Inner {
    next: u64,
    conns: HashMap<u64, Arc<Slot>>,
    per_client: HashMap<u128, usize>,
    /// Closed or refused for the caps since the last log line.
    unlogged: (u64, u64),
    logged: Option<Instant>,
}

impl Inner {
    /// The connection that has waited longest for a query, of those `filter` picks.
    fn idlest(&self, filter: impl Fn(&Slot) -> bool) -> Option<u64> {
        self.conns
            .iter()
            .filter(|(_, s)| filter(s))
            .map(|(id, s)| (s.idle_since.load(Ordering::Relaxed), *id))
            .filter(|(since, _)| *since != BUSY)
            .min()
            .map(|(_, id)| id)
    }

    fn remove(&mut self, id: u64) -> Option<Arc<Slot>> {
        let slot = self.conns.remove(&id)?;
        if let Some(n) = self.per_client.get_mut(&slot.client) {
            *n -= 1;
            if *n == 0 {
                self.per_client.remove(&slot.client);
            }
        }
        Some(slot)
    }

    fn shed(&mut self, id: u64) {
        if let Some(slot) = self.remove(id) {
            slot.shed.notify_one();
            self.unlogged.0 += 1;
        }
    }
}

/// The connections of one listener. A lock per connection (never per query: a query only
/// stores its connection's idle time).
struct Table {
    limits: TcpLimits,
    start: Instant,
    inner: Mutex<Inner>,
}

/// A connection admitted to the [`Table`]; leaves it when dropped.
struct Admitted {
    table: Arc<Table>,
    id: u64,
    slot: Arc<Slot>,
}

impl Admitted {
    fn idle(&self) {
        let now = self.table.start.elapsed().as_millis() as u64;
        self.slot.idle_since.store(now, Ordering::Relaxed);
    }

    fn busy(&self) {
        self.slot.idle_since.store(BUSY, Ordering::Relaxed);
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Ok(mut inner) = self.table.inner.lock() {
            inner.remove(self.id);
        }
    }
}

impl Table {
    fn new(limits: TcpLimits) -> Arc<Table> {
        Arc::new(Table {
            limits,
            start: Instant::now(),
            inner: Mutex::new(Inner::default()),
        })
    }

    /// Admits a connection from `client`, closing the idlest one in its way if it is over a
    /// cap; `None` (refused) when every connection in the way is answering a query.
    fn admit(self: &Arc<Self>, client: IpAddr) -> Option<Admitted> {
        let key = client_key(client);
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let refused = |inner: &mut Inner| {
            inner.unlogged.1 += 1;
            self.log(inner);
            None
        };
        if inner.per_client.get(&key).copied().unwrap_or(0) >= self.limits.per_client {
            match inner.idlest(|s| s.client == key) {
                Some(id) => inner.shed(id),
                None => return refused(&mut inner),
            }
        }
        if inner.conns.len() >= self.limits.total {
            match inner.idlest(|_| true) {
                Some(id) => inner.shed(id),
                None => return refused(&mut inner),
            }
        }
        let id = inner.next;
        inner.next += 1;
        let slot = Arc::new(Slot {
            client: key,
            idle_since: AtomicU64::new(self.start.elapsed().as_millis() as u64),
            shed: Notify::new(),
        });
        inner.conns.insert(id, slot.clone());
        *inner.per_client.entry(key).or_default() += 1;
        self.log(&mut inner);
        Some(Admitted {
            table: self.clone(),
            id,
            slot,
        })
    }

    fn log(&self, inner: &mut Inner) {
        let (shed, refused) = inner.unlogged;
        if shed + refused == 0 || inner.logged.is_some_and(|t| t.elapsed() < LOG_EVERY) {
            return;
        }
        inner.logged = Some(Instant::now());
        inner.unlogged = (0, 0);
        warn!(
            shed,
            refused,
            per_client = self.limits.per_client,
            total = self.limits.total,
            "TCP connections over their caps: closed the idlest ones, refused where all were busy"
        );
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().unwrap().conns.len()
    }
}

/// Accepts and serves TCP connections on `listener` until `cancel` fires; then stops
/// accepting and gives the connections still answering the handler's grace period.
pub async fn serve(
    listener: TcpListener,
    handler: Arc<Handler>,
    limits: TcpLimits,
    cancel: CancellationToken,
) {
    let table = Table::new(limits);
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
        let Some(admitted) = table.admit(client.ip()) else {
            continue; // dropping the stream closes it
        };
        let handler = handler.clone();
        let cancel = cancel.clone();
        conns.spawn(async move {
            if let Err(e) = serve_conn(stream, client, &handler, &admitted, &cancel).await {
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

/// Answers the queries of one TCP connection until the client closes it, it idles, the table
/// sheds it, or `cancel` fires while it waits for the next query (a query already read is
/// answered).
async fn serve_conn(
    mut stream: TcpStream,
    client: SocketAddr,
    handler: &Handler,
    admitted: &Admitted,
    cancel: &CancellationToken,
) -> std::io::Result<()> {
    // buffers kept across the connection's queries
    let mut out = Vec::with_capacity(4096);
    let mut packet = Vec::new();
    let mut framed = Vec::new();
    loop {
        admitted.idle();
        let mut len = [0u8; 2];
        let read = tokio::select! {
            r = tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut len)) => r,
            () = admitted.slot.shed.notified() => return Ok(()),
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
        // a client that sends half a query is still idle: it may be shed meanwhile
        let read = tokio::select! {
            r = tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut packet)) => r,
            () = admitted.slot.shed.notified() => return Ok(()),
        };
        read.map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "read timed out"))??;
        admitted.busy();
        let started = std::time::Instant::now();
        let shard = handler.metrics.shard(0);
        let answered = {
            let snap = handler.store.load();
            handler.answer_now(&snap, &packet, client.ip(), true, &mut out, shard)
        };
        let reply = match answered {
            Verdict::Reply => std::mem::take(&mut out),
            Verdict::Forward => match handler.forward(&packet, true).await {
                Some(reply) => reply,
                None => continue,
            },
            Verdict::Silent => return Ok(()),
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

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_client_over_its_cap_loses_its_idlest_connection() {
        let table = Table::new(TcpLimits {
            total: 10,
            per_client: 2,
        });
        let a1 = table.admit(ip("10.0.0.1")).unwrap();
        std::thread::sleep(Duration::from_millis(2));
        let a2 = table.admit(ip("10.0.0.1")).unwrap();
        let a3 = table.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(table.len(), 2);
        let gone = !table.inner.lock().unwrap().conns.contains_key(&a1.id);
        assert!(gone, "the oldest idle one goes");
        // a busy one is not closed: with both busy, the next is refused
        a2.busy();
        a3.busy();
        assert!(table.admit(ip("10.0.0.1")).is_none());
        // another client is not affected; one /64 is one client
        assert!(table.admit(ip("10.0.0.2")).is_some());
        let v6 = table.admit(ip("fd00::1")).unwrap();
        let v6b = table.admit(ip("fd00::2")).unwrap();
        v6b.busy();
        let _v6c = table.admit(ip("fd00::3")).unwrap();
        assert!(!table.inner.lock().unwrap().conns.contains_key(&v6.id));
    }

    #[test]
    fn at_the_total_cap_the_idlest_connection_goes() {
        let table = Table::new(TcpLimits {
            total: 3,
            per_client: 3,
        });
        let first = table.admit(ip("10.0.0.1")).unwrap();
        std::thread::sleep(Duration::from_millis(2));
        let _b = table.admit(ip("10.0.0.2")).unwrap();
        let _c = table.admit(ip("10.0.0.3")).unwrap();
        let _d = table.admit(ip("10.0.0.4")).unwrap();
        assert_eq!(table.len(), 3);
        assert!(!table.inner.lock().unwrap().conns.contains_key(&first.id));
        // the shed connection's own drop changes nothing more
        drop(first);
        assert_eq!(table.len(), 3);
    }
}
