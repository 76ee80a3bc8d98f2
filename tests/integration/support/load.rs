//! A steady DNS query load for the fault and soak tests: one thread sends A queries for a fixed
//! list of in-zone names over UDP at a fixed rate, with a bounded number in flight, and checks
//! every reply against what that name may answer at that moment ([`Expectations`]). Timeouts,
//! error rcodes and wrong answers are failures. Queries are pre-encoded and replies parsed by a
//! few lines of wire code, so the load costs little CPU even in a debug build.

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What an A query for an in-zone name answered.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Answer {
    NxDomain,
    /// NOERROR with these addresses (sorted); empty is NODATA.
    Addrs(Vec<Ipv4Addr>),
}

impl Answer {
    /// NOERROR with `addrs` (any order).
    pub fn addrs<I: IntoIterator<Item = Ipv4Addr>>(addrs: I) -> Answer {
        let mut v: Vec<Ipv4Addr> = addrs.into_iter().collect();
        v.sort();
        Answer::Addrs(v)
    }

    /// NOERROR with addresses given as text.
    pub fn of(addrs: &[&str]) -> Answer {
        Answer::addrs(addrs.iter().map(|a| a.parse().expect("an IPv4 address")))
    }
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Answer::NxDomain => write!(f, "NXDOMAIN"),
            Answer::Addrs(a) if a.is_empty() => write!(f, "NODATA"),
            Answer::Addrs(a) => {
                let text: Vec<String> = a.iter().map(Ipv4Addr::to_string).collect();
                write!(f, "[{}]", text.join(" "))
            }
        }
    }
}

/// One answer a name may give, and since when it is out of date (`None`: current).
struct Allowed {
    answer: Answer,
    superseded: Option<Instant>,
}

/// For every name the load asks about, the answers it may give right now. A test announces a
/// change *before* making it ([`Expectations::change`]); the old answer stays allowed until the
/// test [`settle`](Expectations::settle)s the name (fault tests: stale answers are right while
/// ZooKeeper is away) or, with a `stale_limit`, until it has been out of date that long.
pub struct Expectations {
    names: Vec<String>,
    index: HashMap<String, usize>,
    allowed: RwLock<Vec<Vec<Allowed>>>,
    stale_limit: Option<Duration>,
}

impl Expectations {
    pub fn new(initial: Vec<(String, Answer)>, stale_limit: Option<Duration>) -> Arc<Expectations> {
        let names: Vec<String> = initial.iter().map(|(n, _)| n.clone()).collect();
        let index = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        let allowed = initial
            .into_iter()
            .map(|(_, answer)| {
                vec![Allowed {
                    answer,
                    superseded: None,
                }]
            })
            .collect();
        Arc::new(Expectations {
            names,
            index,
            allowed: RwLock::new(allowed),
            stale_limit,
        })
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    fn idx(&self, name: &str) -> usize {
        *self
            .index
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not one of the load's names"))
    }

    /// `name` is about to answer `answer`; what it answered so far becomes out of date.
    pub fn change(&self, name: &str, answer: Answer) {
        let i = self.idx(name);
        let now = Instant::now();
        let mut all = self.allowed.write().unwrap();
        let list = &mut all[i];
        for a in list.iter_mut() {
            a.superseded.get_or_insert(now);
        }
        if let Some(limit) = self.stale_limit {
            list.retain(|a| {
                a.superseded
                    .is_none_or(|t| now.duration_since(t) < limit * 2)
            });
        }
        list.push(Allowed {
            answer,
            superseded: None,
        });
    }

    /// `name` may also answer `answer` from now on (changes whose order is not known, such as
    /// a member that expires while another joins).
    pub fn also_allow(&self, name: &str, answer: Answer) {
        let i = self.idx(name);
        let mut all = self.allowed.write().unwrap();
        if !all[i].iter().any(|a| a.answer == answer) {
            all[i].push(Allowed {
                answer,
                superseded: None,
            });
        }
    }

    /// From now on `name` must answer exactly `answer`.
    pub fn settle(&self, name: &str, answer: Answer) {
        let i = self.idx(name);
        self.allowed.write().unwrap()[i] = vec![Allowed {
            answer,
            superseded: None,
        }];
    }

    /// Every name with the answer it must give once everything has converged (the latest).
    pub fn current(&self) -> Vec<(String, Answer)> {
        let all = self.allowed.read().unwrap();
        self.names
            .iter()
            .zip(all.iter())
            .map(|(n, list)| (n.clone(), list.last().expect("an answer").answer.clone()))
            .collect()
    }

    fn check(&self, i: usize, got: &Answer, sent: Instant) -> Result<(), String> {
        let all = self.allowed.read().unwrap();
        let ok = all[i].iter().any(|a| {
            a.answer == *got
                && match (a.superseded, self.stale_limit) {
                    (Some(t), Some(limit)) => sent < t + limit,
                    _ => true,
                }
        });
        if ok {
            return Ok(());
        }
        let allowed: Vec<String> = all[i].iter().map(|a| a.answer.to_string()).collect();
        Err(format!(
            "{} answered {got}, allowed {}",
            self.names[i],
            allowed.join(" | ")
        ))
    }
}

/// Rate and patience of a [`QueryLoad`].
#[derive(Debug, Clone, Copy)]
pub struct LoadConfig {
    /// Queries per second (a ceiling: with `window` queries unanswered, sending waits).
    pub rate: u32,
    /// Queries in flight at most.
    pub window: usize,
    /// A query unanswered after this long is a failure.
    pub timeout: Duration,
}

/// Counters a test can read while the load runs.
#[derive(Default)]
pub struct LiveCounts {
    pub sent: AtomicU64,
    pub answered: AtomicU64,
    pub failed: AtomicU64,
}

/// What a load saw from start to finish.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub duration: Duration,
    pub sent: u64,
    pub answered: u64,
    pub timeouts: u64,
    /// Replies with an rcode other than NOERROR/NXDOMAIN (SERVFAIL, REFUSED, …).
    pub bad_rcode: u64,
    /// Replies whose answer was not one the name may give, or not authoritative.
    pub wrong: u64,
    pub malformed: u64,
    /// The first few failures, with the time since the load started.
    pub examples: Vec<String>,
    pub latency_p50: Duration,
    pub latency_p99: Duration,
    pub latency_max: Duration,
}

impl LoadReport {
    pub fn failed(&self) -> u64 {
        self.timeouts + self.bad_rcode + self.wrong + self.malformed
    }

    /// Queries answered per second.
    pub fn rate(&self) -> f64 {
        self.answered as f64 / self.duration.as_secs_f64().max(1e-9)
    }

    pub fn summary(&self) -> String {
        format!(
            "{} queries in {:.1} s ({:.0}/s), {} failed (timeouts {}, bad rcode {}, wrong {}, \
             malformed {}), latency p50 {:?} p99 {:?} max {:?}",
            self.sent,
            self.duration.as_secs_f64(),
            self.rate(),
            self.failed(),
            self.timeouts,
            self.bad_rcode,
            self.wrong,
            self.malformed,
            self.latency_p50,
            self.latency_p99,
            self.latency_max,
        )
    }
}

/// A running query load; [`QueryLoad::finish`] stops it and returns the report.
pub struct QueryLoad {
    stop: Arc<AtomicBool>,
    live: Arc<LiveCounts>,
    thread: Option<JoinHandle<LoadReport>>,
}

impl QueryLoad {
    /// Starts asking `server` about every name of `expect`, round robin.
    pub fn start(server: SocketAddr, expect: Arc<Expectations>, config: LoadConfig) -> QueryLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let live = Arc::new(LiveCounts::default());
        let (s, l) = (stop.clone(), live.clone());
        let thread = std::thread::Builder::new()
            .name("dns-load".into())
            .spawn(move || run(server, &expect, config, &s, &l))
            .expect("spawn the load thread");
        QueryLoad {
            stop,
            live,
            thread: Some(thread),
        }
    }

    pub fn live(&self) -> &LiveCounts {
        &self.live
    }

    /// Stops sending, waits for the queries in flight (up to the timeout), and reports.
    pub fn finish(mut self) -> LoadReport {
        self.stop.store(true, Ordering::Release);
        self.thread
            .take()
            .expect("load thread")
            .join()
            .expect("the load thread panicked")
    }
}

impl Drop for QueryLoad {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The sending and receiving loop of a [`QueryLoad`].
fn run(
    server: SocketAddr,
    expect: &Expectations,
    config: LoadConfig,
    stop: &AtomicBool,
    live: &LiveCounts,
) -> LoadReport {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the load's socket");
    socket.connect(server).expect("connect the load's socket");
    let mut queries: Vec<Vec<u8>> = expect.names().iter().map(|n| encode_query(n, 0)).collect();
    // by query ID: when it was sent and for which name
    let mut in_flight: Vec<Option<(Instant, usize)>> = vec![None; 1 << 16];
    let mut outstanding = 0usize;
    let mut next_id: u16 = rand::random();
    let mut cursor = 0usize;
    let interval = Duration::from_secs_f64(1.0 / f64::from(config.rate.max(1)));
    // a late sender catches up by at most this much, so that a stall never becomes a burst
    let max_backlog = Duration::from_millis(20);
    let mut report = LoadReport::default();
    let mut latencies: Vec<u32> = Vec::new();
    let mut buf = vec![0u8; 65535];
    let started = Instant::now();
    let mut next_send = started;
    let mut last_sweep = started;
    let mut stopped_at: Option<Instant> = None;
    let fail = |report: &mut LoadReport, at: Instant, what: String| {
        live.failed.fetch_add(1, Ordering::Relaxed);
        if report.examples.len() < 30 {
            report.examples.push(format!(
                "+{:.3}s {what}",
                at.duration_since(started).as_secs_f64()
            ));
        }
    };
    loop {
        let now = Instant::now();
        if stopped_at.is_none() && stop.load(Ordering::Acquire) {
            stopped_at = Some(now);
        }
        if let Some(at) = stopped_at {
            if outstanding == 0 || now.duration_since(at) > config.timeout {
                break;
            }
        } else {
            if now > next_send + max_backlog {
                next_send = now - max_backlog;
            }
            while outstanding < config.window && next_send <= now {
                while in_flight[next_id as usize].is_some() {
                    next_id = next_id.wrapping_add(1);
                }
                let query = &mut queries[cursor];
                query[..2].copy_from_slice(&next_id.to_be_bytes());
                if let Err(e) = socket.send(query) {
                    panic!("cannot send a query to {server}: {e}");
                }
                in_flight[next_id as usize] = Some((now, cursor));
                outstanding += 1;
                report.sent += 1;
                live.sent.fetch_add(1, Ordering::Relaxed);
                next_id = next_id.wrapping_add(1);
                cursor = (cursor + 1) % queries.len();
                next_send += interval;
            }
        }
        let wait = if stopped_at.is_none() && outstanding < config.window {
            next_send.saturating_duration_since(now)
        } else {
            Duration::from_millis(5)
        };
        socket
            .set_read_timeout(Some(
                wait.clamp(Duration::from_micros(50), Duration::from_millis(5)),
            ))
            .expect("set the read timeout");
        if let Ok(n) = socket.recv(&mut buf) {
            let got_at = Instant::now();
            let reply = &buf[..n];
            if reply.len() >= 2 {
                let id = u16::from_be_bytes([reply[0], reply[1]]);
                // a reply to a query already counted as timed out is ignored
                if let Some((sent, i)) = in_flight[id as usize].take() {
                    outstanding -= 1;
                    report.answered += 1;
                    live.answered.fetch_add(1, Ordering::Relaxed);
                    latencies.push(
                        got_at
                            .duration_since(sent)
                            .as_micros()
                            .min(u128::from(u32::MAX)) as u32,
                    );
                    match parse_reply(reply) {
                        Err(e) => {
                            report.malformed += 1;
                            fail(&mut report, sent, format!("{}: {e}", expect.names[i]));
                        }
                        Ok(Reply::Rcode(code)) => {
                            report.bad_rcode += 1;
                            fail(
                                &mut report,
                                sent,
                                format!("{}: rcode {}", expect.names[i], rcode_name(code)),
                            );
                        }
                        Ok(Reply::NotAuthoritative(answer)) => {
                            report.wrong += 1;
                            fail(
                                &mut report,
                                sent,
                                format!("{}: {answer} without AA", expect.names[i]),
                            );
                        }
                        Ok(Reply::Answer(answer)) => {
                            if let Err(e) = expect.check(i, &answer, sent) {
                                report.wrong += 1;
                                fail(&mut report, sent, e);
                            }
                        }
                    }
                }
            }
        }
        let now = Instant::now();
        if now.duration_since(last_sweep) > Duration::from_millis(20) || stopped_at.is_some() {
            last_sweep = now;
            let all_due = stopped_at.is_some_and(|at| now.duration_since(at) > config.timeout);
            for slot in in_flight.iter_mut() {
                if let Some((sent, i)) = *slot {
                    if all_due || now.duration_since(sent) > config.timeout {
                        *slot = None;
                        outstanding -= 1;
                        report.timeouts += 1;
                        fail(
                            &mut report,
                            sent,
                            format!("{}: no reply within {:?}", expect.names[i], config.timeout),
                        );
                    }
                }
            }
        }
    }
    report.duration = started.elapsed();
    latencies.sort_unstable();
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
            .map_or(Duration::ZERO, |&us| Duration::from_micros(u64::from(us)))
    };
    report.latency_p50 = pick(0.5);
    report.latency_p99 = pick(0.99);
    report.latency_max = pick(1.0);
    report
}

/// One A query over a new socket, with one retry: what `name` answers now, or `None`.
pub fn ask(server: SocketAddr, name: &str) -> Option<Result<Answer, String>> {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a UDP socket");
    socket.connect(server).expect("connect the UDP socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut buf = vec![0u8; 65535];
    for _ in 0..2 {
        let id: u16 = rand::random();
        socket.send(&encode_query(name, id)).expect("send a query");
        while let Ok(n) = socket.recv(&mut buf) {
            if n >= 2 && buf[..2] == id.to_be_bytes() {
                return Some(match parse_reply(&buf[..n]) {
                    Ok(Reply::Answer(a)) => Ok(a),
                    Ok(Reply::NotAuthoritative(a)) => Err(format!("{a} without AA")),
                    Ok(Reply::Rcode(c)) => Err(format!("rcode {}", rcode_name(c))),
                    Err(e) => Err(e),
                });
            }
        }
    }
    None
}

/// A query for `name` A IN with EDNS(0) (payload 1232), RD clear.
pub fn encode_query(name: &str, id: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 1]); // flags, QD 1, AN 0, NS 0, AR 1
    for label in name.trim_end_matches('.').split('.') {
        assert!(
            !label.is_empty() && label.len() < 64,
            "bad label in {name:?}"
        );
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&[0, 1, 0, 1]); // A IN
    // OPT: root owner, type 41, class = payload size, TTL 0, no options
    q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    q
}

enum Reply {
    Answer(Answer),
    NotAuthoritative(Answer),
    Rcode(u8),
}

fn rcode_name(code: u8) -> &'static str {
    match code {
        1 => "FORMERR",
        2 => "SERVFAIL",
        4 => "NOTIMP",
        5 => "REFUSED",
        _ => "other",
    }
}

/// The rcode and A records of a reply to one of our queries.
fn parse_reply(msg: &[u8]) -> Result<Reply, String> {
    if msg.len() < 12 {
        return Err(format!("reply of {} bytes", msg.len()));
    }
    let flags = u16::from_be_bytes([msg[2], msg[3]]);
    if flags & 0x8000 == 0 {
        return Err("not a response".into());
    }
    if flags & 0x0200 != 0 {
        return Err("truncated (TC)".into());
    }
    let rcode = (flags & 0x000f) as u8;
    let authoritative = flags & 0x0400 != 0;
    let qd = u16::from_be_bytes([msg[4], msg[5]]);
    let an = u16::from_be_bytes([msg[6], msg[7]]);
    let mut at = 12;
    for _ in 0..qd {
        at = skip_name(msg, at)? + 4;
    }
    let mut addrs = Vec::new();
    for _ in 0..an {
        at = skip_name(msg, at)?;
        let fixed = msg.get(at..at + 10).ok_or("answer cut short")?;
        let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let len = u16::from_be_bytes([fixed[8], fixed[9]]) as usize;
        at += 10;
        let rdata = msg.get(at..at + len).ok_or("rdata cut short")?;
        if rtype == 1 {
            let octets: [u8; 4] = rdata.try_into().map_err(|_| "A record not 4 bytes")?;
            addrs.push(Ipv4Addr::from(octets));
        }
        at += len;
    }
    let answer = match rcode {
        0 => Answer::addrs(addrs),
        3 => Answer::NxDomain,
        other => return Ok(Reply::Rcode(other)),
    };
    Ok(if authoritative {
        Reply::Answer(answer)
    } else {
        Reply::NotAuthoritative(answer)
    })
}

/// The offset just past the (possibly compressed) name at `at`.
fn skip_name(msg: &[u8], mut at: usize) -> Result<usize, String> {
    loop {
        let len = *msg.get(at).ok_or("name runs past the end")?;
        match len {
            0 => return Ok(at + 1),
            l if l & 0xc0 == 0xc0 => return Ok(at + 2),
            l => at += 1 + l as usize,
        }
    }
}
