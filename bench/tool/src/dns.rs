//! A minimal DNS client for measuring: one A query at a time over a connected UDP socket, and
//! a prober thread that repeats a query back to back until the answer shows an expected
//! change, stamping the moment the first such answer arrived.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

const TYPE_A: u16 = 1;
pub const NXDOMAIN: u8 = 3;
/// The pause between a probe's questions. Back to back, the prober and the server answering
/// it kept both cores of a 2-core machine busy, and ZooKeeper's write, its event and the
/// stub's re-read waited for a scheduler tick (4 ms) in a few percent of the changes: the
/// benchmark measured its own load. 100 µs apart (about 150 µs with the timer's slack) the
/// first answer that shows a change comes at most that much after it could have.
const PROBE_GAP: Duration = Duration::from_micros(100);

/// What an answer said about a name's A records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub rcode: u8,
    pub addrs: Vec<Ipv4Addr>,
}

/// The state a prober waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// NOERROR with this address among the answers.
    Has(Ipv4Addr),
    /// NOERROR without this address (NODATA included).
    Lacks(Ipv4Addr),
    NxDomain,
}

impl Expect {
    pub fn met(self, a: &Answer) -> bool {
        match self {
            Expect::Has(ip) => a.rcode == 0 && a.addrs.contains(&ip),
            Expect::Lacks(ip) => a.rcode == 0 && !a.addrs.contains(&ip),
            Expect::NxDomain => a.rcode == NXDOMAIN,
        }
    }
}

fn encode_query(id: u16, name: &str, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]); // no RD, one question
    for label in name.trim_end_matches('.').split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out.extend_from_slice(&TYPE_A.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
}

fn skip_name(p: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *p.get(at)? as usize;
        if len & 0xC0 == 0xC0 {
            return Some(at + 2);
        }
        at += 1 + len;
        if len == 0 {
            return Some(at);
        }
    }
}

fn u16_at(p: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*p.get(at)?, *p.get(at + 1)?]))
}

/// Parses a response to query `id`: rcode and the A records of the answer section.
pub fn parse_answer(p: &[u8], id: u16) -> Option<Answer> {
    if u16_at(p, 0)? != id || p.get(2)? & 0x80 == 0 {
        return None;
    }
    let rcode = p[3] & 0x0F;
    let qd = u16_at(p, 4)?;
    let an = u16_at(p, 6)?;
    let mut at = 12;
    for _ in 0..qd {
        at = skip_name(p, at)? + 4;
    }
    let mut addrs = Vec::new();
    for _ in 0..an {
        at = skip_name(p, at)?;
        let rtype = u16_at(p, at)?;
        let rdlen = u16_at(p, at + 8)? as usize;
        let rdata = p.get(at + 10..at + 10 + rdlen)?;
        if rtype == TYPE_A && rdlen == 4 {
            addrs.push(Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3]));
        }
        at += 10 + rdlen;
    }
    Some(Answer { rcode, addrs })
}

/// One outstanding query at a time to one server.
pub struct Client {
    sock: UdpSocket,
    id: u16,
    buf: Vec<u8>,
    rx: Vec<u8>,
}

impl Client {
    pub fn new(server: SocketAddr) -> io::Result<Self> {
        let sock = UdpSocket::bind("127.0.0.1:0")?;
        sock.connect(server)?;
        Ok(Self {
            sock,
            id: std::process::id() as u16,
            buf: Vec::with_capacity(512),
            rx: vec![0; 4096],
        })
    }

    /// Asks for `name`'s A records. `Ok(None)` when nothing answered within `timeout`; an error
    /// (e.g. connection refused while the server is not up yet) is returned at once.
    pub fn ask(&mut self, name: &str, timeout: Duration) -> io::Result<Option<Answer>> {
        self.id = self.id.wrapping_add(1);
        encode_query(self.id, name, &mut self.buf);
        self.sock.send(&self.buf)?;
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.sock.set_read_timeout(Some(left))?;
            match self.sock.recv(&mut self.rx) {
                Ok(n) => {
                    if let Some(a) = parse_answer(&self.rx[..n], self.id) {
                        return Ok(Some(a));
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Asks until the answer meets `expect` or `timeout` passes, [`PROBE_GAP`] apart; the time
    /// the first answer that met it arrived.
    pub fn wait_for(&mut self, name: &str, expect: Expect, timeout: Duration) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.ask(name, Duration::from_millis(100)) {
                Ok(Some(a)) if expect.met(&a) => return Some(Instant::now()),
                Ok(_) => std::thread::sleep(PROBE_GAP),
                // not listening yet: do not spin on ICMP errors
                Err(_) => std::thread::sleep(Duration::from_micros(500)),
            }
        }
        None
    }
}

struct Probe {
    name: String,
    expect: Expect,
    timeout: Duration,
    reply: oneshot::Sender<Option<Instant>>,
}

/// A thread that answers probes: each is asked back to back until met. Give it the probe
/// *before* making the change, so it is already asking when the change lands.
pub struct Prober {
    tx: Option<mpsc::Sender<Probe>>,
    thread: Option<JoinHandle<()>>,
}

impl Prober {
    pub fn start(server: SocketAddr) -> io::Result<Self> {
        let mut client = Client::new(server)?;
        let (tx, rx) = mpsc::channel::<Probe>();
        let thread = std::thread::Builder::new()
            .name("prober".into())
            .spawn(move || {
                for p in rx {
                    let at = client.wait_for(&p.name, p.expect, p.timeout);
                    let _ = p.reply.send(at);
                }
            })?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    pub fn probe(
        &self,
        name: &str,
        expect: Expect,
        timeout: Duration,
    ) -> oneshot::Receiver<Option<Instant>> {
        let (reply, rx) = oneshot::channel();
        let _ = self.tx.as_ref().expect("prober running").send(Probe {
            name: name.to_string(),
            expect,
            timeout,
            reply,
        });
        rx
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_compressed_answer() {
        let mut q = Vec::new();
        encode_query(7, "web.c.test", &mut q);
        let mut r = q.clone();
        r[2] = 0x84;
        r[7] = 1; // ANCOUNT
        r.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 10, 0, 0, 9]);
        let a = parse_answer(&r, 7).unwrap();
        assert_eq!(a.rcode, 0);
        assert_eq!(a.addrs, vec![Ipv4Addr::new(10, 0, 0, 9)]);
        assert!(parse_answer(&r, 8).is_none());
        assert!(Expect::Has(Ipv4Addr::new(10, 0, 0, 9)).met(&a));
    }
}
