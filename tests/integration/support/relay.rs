//! A counting relay in front of an upstream DNS server: it listens on a free loopback port
//! (UDP and TCP), passes every query to the upstream and the reply back unchanged, and keeps
//! the question of each query it passed, so a test sees what reached the upstream without
//! trusting the stub's own counters. Its threads end when it is dropped.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use hickory_proto::op::Message;

/// How long the relay waits for the upstream's reply to one query.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the relay's threads look whether it was dropped.
const POLL: Duration = Duration::from_millis(50);

/// One query that went through: the question as `name type` (name lower-case, with the
/// trailing dot) and whether it came over TCP.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Relayed {
    pub question: String,
    pub tcp: bool,
}

pub struct CountingRelay {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Relayed>>>,
    /// While set, queries are counted but neither passed on nor answered: the upstream as a
    /// dead one looks to the stub.
    silent: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl CountingRelay {
    /// Starts relaying to `upstream`.
    pub fn start(upstream: SocketAddr) -> CountingRelay {
        let (udp, tcp) = (0..50)
            .find_map(|_| {
                let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).ok()?;
                let tcp = TcpListener::bind(udp.local_addr().ok()?).ok()?;
                Some((udp, tcp))
            })
            .expect("a loopback port free for UDP and TCP");
        let addr = udp.local_addr().unwrap();
        udp.set_read_timeout(Some(POLL)).unwrap();
        tcp.set_nonblocking(true).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let silent = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = vec![
            {
                let (seen, silent, stop) = (seen.clone(), silent.clone(), stop.clone());
                std::thread::spawn(move || relay_udp(udp, upstream, &seen, &silent, &stop))
            },
            {
                let (seen, stop) = (seen.clone(), stop.clone());
                std::thread::spawn(move || relay_tcp(tcp, upstream, &seen, &stop))
            },
        ];
        CountingRelay {
            addr,
            seen,
            silent,
            stop,
            threads,
        }
    }

    /// Stops answering over UDP (queries are still counted), as a dead upstream; or, with
    /// `false`, answers again.
    pub fn set_silent(&self, silent: bool) {
        self.silent.store(silent, Ordering::Relaxed);
    }

    /// Where the stub sends its queries instead of the upstream.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every query relayed so far, in order.
    pub fn seen(&self) -> Vec<Relayed> {
        self.seen.lock().unwrap().clone()
    }

    /// Forgets the queries relayed so far.
    pub fn clear(&self) {
        self.seen.lock().unwrap().clear();
    }
}

impl Drop for CountingRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// `name type` of a query's first question; `?` if it does not decode.
fn question(packet: &[u8]) -> String {
    Message::from_vec(packet)
        .ok()
        .and_then(|m| m.queries.first().cloned())
        .map_or_else(
            || "?".to_string(),
            |q| {
                format!(
                    "{} {}",
                    q.name().to_string().to_ascii_lowercase(),
                    q.query_type()
                )
            },
        )
}

fn relay_udp(
    socket: UdpSocket,
    upstream: SocketAddr,
    seen: &Mutex<Vec<Relayed>>,
    silent: &AtomicBool,
    stop: &AtomicBool,
) {
    let mut buf = vec![0u8; 65535];
    let mut reply = vec![0u8; 65535];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, client)) = socket.recv_from(&mut buf) else {
            continue; // the poll timeout
        };
        seen.lock().unwrap().push(Relayed {
            question: question(&buf[..n]),
            tcp: false,
        });
        if silent.load(Ordering::Relaxed) {
            continue;
        }
        // one socket per query, as the stub does: a late reply cannot answer the next one
        let Ok(out) = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)) else {
            continue;
        };
        out.set_read_timeout(Some(UPSTREAM_TIMEOUT)).unwrap();
        if out.send_to(&buf[..n], upstream).is_err() {
            continue;
        }
        if let Ok((m, _)) = out.recv_from(&mut reply) {
            let _ = socket.send_to(&reply[..m], client);
        }
    }
}

fn relay_tcp(
    listener: TcpListener,
    upstream: SocketAddr,
    seen: &Mutex<Vec<Relayed>>,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::Relaxed) {
        let Ok((client, _)) = listener.accept() else {
            std::thread::sleep(POLL);
            continue;
        };
        // one connection at a time is enough for a test: the stub's TCP forwards are rare
        let _ = relay_connection(client, upstream, seen);
    }
}

fn relay_connection(
    mut client: TcpStream,
    upstream: SocketAddr,
    seen: &Mutex<Vec<Relayed>>,
) -> std::io::Result<()> {
    client.set_nonblocking(false)?;
    client.set_read_timeout(Some(UPSTREAM_TIMEOUT))?;
    let mut server = TcpStream::connect_timeout(&upstream, UPSTREAM_TIMEOUT)?;
    server.set_read_timeout(Some(UPSTREAM_TIMEOUT))?;
    loop {
        let Ok(query) = read_framed(&mut client) else {
            return Ok(()); // the client closed the connection, or went quiet
        };
        seen.lock().unwrap().push(Relayed {
            question: question(&query),
            tcp: true,
        });
        write_framed(&mut server, &query)?;
        let reply = read_framed(&mut server)?;
        write_framed(&mut client, &reply)?;
    }
}

fn read_framed(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len)?;
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf)?;
    Ok(buf)
}

fn write_framed(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<()> {
    let mut framed = (msg.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(msg);
    s.write_all(&framed)
}
