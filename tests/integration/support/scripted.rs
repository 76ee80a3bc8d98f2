//! A scripted upstream: a UDP DNS server on a free loopback port that answers every question
//! with an A record, except that the first label of the name picks a misbehaviour, and that
//! counts the queries it gets per name. For the tests of what the stub does with slow and bad
//! upstreams.
//!
//! | first label | reply |
//! | --- | --- |
//! | `slow` | the answer after 400 ms |
//! | `wrongid` | first one with another ID, then the answer |
//! | `wrongq` | first one for another question, then the answer |
//! | `malformed` | a header and a question, then a record cut short |
//! | `ttltop` | the answer with a TTL of 2^31 + 5 |
//! | `huge` | 100 A records in one UDP datagram, whatever size was asked |
//! | anything else | `192.0.2.7` with TTL 60 |

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record};

/// The address every ordinary answer holds.
pub const SCRIPTED_ADDR: &str = "192.0.2.7";
/// How long a `slow` name's answer takes.
pub const SLOW: Duration = Duration::from_millis(400);

pub struct ScriptedUpstream {
    addr: SocketAddr,
    seen: Arc<Mutex<BTreeMap<String, usize>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ScriptedUpstream {
    pub fn start() -> ScriptedUpstream {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(BTreeMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || serve(socket, &seen, &stop))
        };
        ScriptedUpstream {
            addr,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many queries for `name` (lower-case, with the trailing dot) arrived.
    pub fn count(&self, name: &str) -> usize {
        self.seen.lock().unwrap().get(name).copied().unwrap_or(0)
    }
}

impl Drop for ScriptedUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(socket: UdpSocket, seen: &Mutex<BTreeMap<String, usize>>, stop: &AtomicBool) {
    let socket = Arc::new(socket);
    let mut buf = vec![0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, client)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let Ok(query) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        let Some(q) = query.queries.first() else {
            continue;
        };
        let name = q.name().to_ascii().to_ascii_lowercase();
        *seen.lock().unwrap().entry(name.clone()).or_default() += 1;
        let first = name.split('.').next().unwrap_or_default().to_string();
        let replies = replies(&query, &first);
        let socket = socket.clone();
        // each reply on its own thread, so that a slow one holds up no other
        std::thread::spawn(move || {
            if first == "slow" {
                std::thread::sleep(SLOW);
            }
            for reply in replies {
                let _ = socket.send_to(&reply, client);
            }
        });
    }
}

/// The answer to `query`: its ID and question, `count` A records with `ttl`.
fn answer(query: &Message, count: u8, ttl: u32) -> Message {
    let mut m = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
    m.metadata.recursion_desired = query.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    let q = query.queries[0].clone();
    let owner = q.name().clone();
    m.add_query(q);
    for i in 0..count {
        let addr = if count == 1 {
            SCRIPTED_ADDR.parse().unwrap()
        } else {
            Ipv4Addr::new(198, 51, 100, i)
        };
        m.add_answer(Record::from_rdata(
            owner.clone(),
            ttl,
            RData::A(A::from(addr)),
        ));
    }
    m
}

fn replies(query: &Message, first: &str) -> Vec<Vec<u8>> {
    let good = answer(query, 1, 60);
    match first {
        "wrongid" => {
            let mut other = good.clone();
            other.metadata.id = good.metadata.id.wrapping_add(1);
            vec![other.to_vec().unwrap(), good.to_vec().unwrap()]
        }
        "wrongq" => {
            let mut other = good.clone();
            let mut q = other.queries[0].clone();
            q.set_name(hickory_proto::rr::Name::from_ascii("elsewhere.example.").unwrap());
            other.queries = vec![q];
            vec![other.to_vec().unwrap(), good.to_vec().unwrap()]
        }
        "malformed" => {
            let mut bytes = good.to_vec().unwrap();
            bytes.truncate(bytes.len() - 3);
            vec![bytes]
        }
        "ttltop" => vec![answer(query, 1, 0x8000_0005).to_vec().unwrap()],
        "huge" => vec![answer(query, 100, 60).to_vec().unwrap()],
        _ => vec![good.to_vec().unwrap()],
    }
}
