//! Forwarding of names outside the served zones to the upstream resolvers. Each query goes out
//! with a fresh random ID from a fresh socket (random source port), and only a reply from the
//! upstream's address and port with that ID and the same question is accepted (RFC 5452). The
//! reply is relayed as received, with the client's ID put back. Upstreams are tried in turn,
//! starting with the last one that answered. [`UpstreamHealth`] remembers which upstreams
//! answer, so that the log says once when one stops and once when it answers again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{Instant, timeout_at};
use tracing::{debug, info, warn};

use crate::dns::wire::{HEADER_LEN, Query};
use crate::metrics::Counters;

/// Largest reply read from an upstream over UDP without EDNS (RFC 1035 §4.2.1).
const PLAIN_UDP_REPLY: usize = 512;

#[derive(Debug)]
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    timeout: Duration,
    /// Index of the upstream that answered last; tried first.
    preferred: AtomicUsize,
    health: Arc<UpstreamHealth>,
}

/// Whether each upstream answered its last exchange. Only a change of state is logged (warn
/// when an upstream starts failing, info when it answers again), so an upstream that is down
/// costs one log line, not one per forwarded query. Forwarding runs on the async side, so the
/// one atomic load per exchange never touches the UDP answer path.
#[derive(Debug)]
pub struct UpstreamHealth {
    upstreams: Vec<SocketAddr>,
    down: Box<[AtomicBool]>,
}

impl UpstreamHealth {
    fn new(upstreams: &[SocketAddr]) -> Self {
        Self {
            upstreams: upstreams.to_vec(),
            down: upstreams.iter().map(|_| AtomicBool::new(false)).collect(),
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

impl Forwarder {
    pub fn new(upstreams: Vec<SocketAddr>, timeout: Duration) -> Self {
        Self {
            health: Arc::new(UpstreamHealth::new(&upstreams)),
            upstreams,
            timeout,
            preferred: AtomicUsize::new(0),
        }
    }

    /// The per-upstream state tracker, for metrics.
    pub fn health(&self) -> Arc<UpstreamHealth> {
        self.health.clone()
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

    /// Forwards a query that arrived over `tcp` or UDP; returns the reply for the client.
    pub async fn forward(
        &self,
        packet: &[u8],
        q: &Query<'_>,
        tcp: bool,
        counters: &Counters,
    ) -> Result<Vec<u8>, ForwardError> {
        if self.upstreams.is_empty() {
            return Err(ForwardError::NoUpstream);
        }
        let question = &packet[HEADER_LEN..q.question_end];
        for (idx, upstream) in self.order() {
            let id: u16 = rand::random();
            let mut out = packet.to_vec();
            out[..2].copy_from_slice(&id.to_be_bytes());
            let deadline = Instant::now() + self.timeout;
            let result = if tcp {
                exchange_tcp(upstream, &out, id, question, deadline).await
            } else {
                // the upstream answers within what the client's query allows: read no more
                let max = q.edns.map_or(PLAIN_UDP_REPLY, |e| {
                    usize::from(e.payload).max(PLAIN_UDP_REPLY)
                });
                exchange_udp(upstream, &out, id, question, deadline, max).await
            };
            match result {
                Ok(mut reply) => {
                    self.preferred.store(idx, Ordering::Relaxed);
                    self.health.answered(idx);
                    reply[..2].copy_from_slice(&q.id.to_be_bytes());
                    return Ok(reply);
                }
                Err(e) => {
                    let counter = if e.kind() == std::io::ErrorKind::TimedOut {
                        &counters.upstream_timeouts
                    } else {
                        &counters.upstream_errors
                    };
                    Counters::add(counter, 1);
                    self.health.failed(idx, &e);
                    debug!(%upstream, error = %e, "upstream failed");
                }
            }
        }
        Err(ForwardError::AllFailed)
    }
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
    )
    .await?;
    Ok(ProbeReply {
        rcode: u16::from(reply[3] & 0x0F),
        elapsed: started.elapsed(),
    })
}

/// Whether `reply` answers our query: a response, our ID, our question, byte for byte.
fn matches(reply: &[u8], id: u16, question: &[u8]) -> bool {
    reply.len() >= HEADER_LEN + question.len()
        && reply[..2] == id.to_be_bytes()
        && reply[2] & 0x80 != 0
        && reply[4..6] == [0, 1]
        && reply[HEADER_LEN..HEADER_LEN + question.len()] == *question
}

async fn exchange_udp(
    upstream: SocketAddr,
    query: &[u8],
    id: u16,
    question: &[u8],
    deadline: Instant,
    max_reply: usize,
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
        if n <= max_reply && matches(&buf[..n], id, question) {
            buf.truncate(n);
            return Ok(buf);
        }
        debug!(%upstream, "ignoring a reply that does not match the query");
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
