//! DNS clients for the tests: `dig` (the real client), and hand-built queries encoded with
//! hickory-proto and sent over UDP or TCP, so a test can control every header bit and see the
//! raw reply.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::str::FromStr;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// How long a hand-built query waits for its reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(3);

/// Runs `dig @IP -p PORT +time=2 +tries=1 args...` and returns its stdout.
pub fn dig(server: SocketAddr, args: &[&str]) -> String {
    let out = Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string(), "+time=2", "+tries=1"])
        .args(args)
        .output()
        .expect("run dig (apt-get install bind9-dnsutils)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `status:` of a dig answer (`NOERROR`, `NXDOMAIN`, …), if dig got one.
pub fn dig_status(output: &str) -> Option<String> {
    let at = output.find("status: ")? + "status: ".len();
    Some(output[at..].split(',').next()?.trim().to_string())
}

/// How a hand-built query is sent.
#[derive(Debug, Clone, Copy)]
pub struct QueryOptions {
    /// EDNS(0) with this UDP payload size; `None` sends no OPT record.
    pub edns: Option<u16>,
    /// TCP instead of UDP.
    pub tcp: bool,
    pub recursion_desired: bool,
}

impl Default for QueryOptions {
    fn default() -> Self {
        Self {
            edns: Some(1232),
            tcp: false,
            recursion_desired: true,
        }
    }
}

/// An absolute name from text (a trailing dot is added if missing). Keeps the letter case.
pub fn name(text: &str) -> Name {
    let text = if text.ends_with('.') {
        text.to_string()
    } else {
        format!("{text}.")
    };
    Name::from_str(&text).unwrap_or_else(|e| panic!("bad name {text:?}: {e}"))
}

/// Encodes a query for `qname`/`rtype`.
pub fn build_query(qname: &str, rtype: RecordType, opts: QueryOptions) -> Message {
    let mut msg = Message::new(rand::random(), MessageType::Query, OpCode::Query);
    msg.add_query(Query::query(name(qname), rtype));
    msg.metadata.recursion_desired = opts.recursion_desired;
    if let Some(size) = opts.edns {
        let mut edns = Edns::new();
        edns.set_max_payload(size);
        msg.set_edns(edns);
    }
    msg
}

/// Sends raw bytes over UDP and returns the first reply, or `None` after `timeout`.
pub fn exchange_udp(server: SocketAddr, packet: &[u8], timeout: Duration) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind(local_for(server)).expect("bind UDP client socket");
    socket.connect(server).expect("connect UDP socket");
    socket.set_read_timeout(Some(timeout)).unwrap();
    socket.send(packet).expect("send UDP query");
    let mut buf = vec![0u8; 65535];
    let n = socket.recv(&mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

/// Sends one length-prefixed message over a new TCP connection and returns the reply.
pub fn exchange_tcp(server: SocketAddr, packet: &[u8], timeout: Duration) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&server, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).unwrap();
    let mut framed = (packet.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(packet);
    s.write_all(&framed).ok()?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len).ok()?;
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).ok()?;
    Some(buf)
}

fn local_for(server: SocketAddr) -> SocketAddr {
    if server.is_ipv4() {
        "0.0.0.0:0".parse().unwrap()
    } else {
        "[::]:0".parse().unwrap()
    }
}

/// The raw reply to a query, checked to be a response with the query's ID; `None` on timeout.
pub fn query_raw(
    server: SocketAddr,
    qname: &str,
    rtype: RecordType,
    opts: QueryOptions,
) -> Option<Vec<u8>> {
    let msg = build_query(qname, rtype, opts);
    let packet = msg.to_vec().expect("encode query");
    let reply = if opts.tcp {
        exchange_tcp(server, &packet, REPLY_TIMEOUT)
    } else {
        exchange_udp(server, &packet, REPLY_TIMEOUT)
    }?;
    assert!(reply.len() >= 12, "reply shorter than a header: {reply:?}");
    assert_eq!(reply[..2], packet[..2], "reply ID differs from the query's");
    Some(reply)
}

/// Decodes a reply, panicking with the bytes if it is not a valid message.
pub fn decode(reply: &[u8]) -> Message {
    Message::from_vec(reply).unwrap_or_else(|e| panic!("undecodable reply ({e}): {reply:?}"))
}

/// Queries without waiting for an async runtime: `None` on timeout (for `eventually`).
pub fn try_query(
    server: SocketAddr,
    qname: &str,
    rtype: RecordType,
    opts: QueryOptions,
) -> Option<Message> {
    query_raw(server, qname, rtype, opts).map(|r| decode(&r))
}

/// Queries with default options (UDP, EDNS 1232, RD), panicking if there is no reply.
pub fn query_blocking(server: SocketAddr, qname: &str, rtype: RecordType) -> Message {
    query_with(server, qname, rtype, QueryOptions::default())
}

/// Queries with `opts`, panicking if there is no reply.
pub fn query_with(
    server: SocketAddr,
    qname: &str,
    rtype: RecordType,
    opts: QueryOptions,
) -> Message {
    // one retry: a lost loopback datagram is not what these tests are about
    try_query(server, qname, rtype, opts)
        .or_else(|| try_query(server, qname, rtype, opts))
        .unwrap_or_else(|| panic!("no reply from {server} for {qname} {rtype}"))
}

/// Queries over UDP (EDNS 1232, RD) from an async test; panics if there is no reply.
pub async fn query(server: SocketAddr, name: &str, rtype: RecordType) -> Message {
    let name = name.to_string();
    tokio::task::spawn_blocking(move || query_blocking(server, &name, rtype))
        .await
        .expect("query task")
}

/// The response code of a message.
pub fn rcode(msg: &Message) -> ResponseCode {
    msg.metadata.response_code
}

/// The answers of type `rtype` as presentation-format RDATA strings, sorted.
pub fn answers_of(msg: &Message, rtype: RecordType) -> Vec<String> {
    let mut out: Vec<String> = msg
        .answers
        .iter()
        .filter(|r| r.record_type() == rtype)
        .map(|r| rdata_text(&r.data))
        .collect();
    out.sort();
    out
}

/// RDATA in presentation format; TXT keeps its character-string boundaries
/// (`"a" "b"`, where hickory's Display would print `ab`).
pub fn rdata_text(data: &RData) -> String {
    match data {
        RData::TXT(txt) => txt
            .txt_data
            .iter()
            .map(|s| format!("{:?}", String::from_utf8_lossy(s)))
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    }
}

/// The A and AAAA addresses in the answer section, sorted.
pub fn addresses(msg: &Message) -> Vec<String> {
    let mut out: Vec<String> = msg
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.to_string()),
            RData::AAAA(a) => Some(a.to_string()),
            _ => None,
        })
        .collect();
    out.sort();
    out
}

/// Every record of a section in one canonical text form: lower-case owner, TTL, class,
/// type, RDATA (lower-cased), sorted. For comparing two servers' answers.
pub fn canonical(records: &[Record]) -> Vec<String> {
    let mut out: Vec<String> = records
        .iter()
        .filter(|r| r.record_type() != RecordType::OPT)
        .map(|r| {
            format!(
                "{} {} {} {} {}",
                r.name.to_string().to_ascii_lowercase(),
                r.ttl,
                r.dns_class,
                r.record_type(),
                rdata_text(&r.data).to_ascii_lowercase()
            )
        })
        .collect();
    out.sort();
    out
}

/// The SOA records of the authority section, canonical.
pub fn authority_soa(msg: &Message) -> Vec<String> {
    let soa: Vec<Record> = msg
        .authorities
        .iter()
        .filter(|r| r.record_type() == RecordType::SOA)
        .cloned()
        .collect();
    canonical(&soa)
}

/// A one-line summary for assertion messages.
pub fn summary(msg: &Message) -> String {
    format!(
        "rcode={:?} aa={} tc={} answers={:?} authority={:?} additional={:?}",
        msg.metadata.response_code,
        msg.metadata.authoritative,
        msg.metadata.truncation,
        canonical(&msg.answers),
        canonical(&msg.authorities),
        canonical(&msg.additionals),
    )
}

/// A DNS "server" that never answers: its UDP socket and TCP listener are bound (so no ICMP
/// error or RST gives it away) but nothing is ever read or written. Queries to it time out.
pub struct SilentServer {
    udp: UdpSocket,
    _tcp: std::net::TcpListener,
}

impl SilentServer {
    pub fn start() -> SilentServer {
        for _ in 0..50 {
            let udp = UdpSocket::bind("127.0.0.1:0").expect("bind UDP");
            let port = udp.local_addr().unwrap().port();
            if let Ok(tcp) = std::net::TcpListener::bind(("127.0.0.1", port)) {
                return SilentServer { udp, _tcp: tcp };
            }
        }
        panic!("no port free for both UDP and TCP");
    }

    pub fn addr(&self) -> SocketAddr {
        self.udp.local_addr().unwrap()
    }
}

/// Whether the tests run as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A loopback address where port 53 is free for UDP and TCP, e.g. 127.53.x.y.
pub fn free_port_53() -> Option<SocketAddr> {
    // Tests of one process that run at once must not start from the same candidate: each
    // call starts further along, so two stubs do not race for one address.
    static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let first = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) * 211;
    let pid = std::process::id();
    (first..first + 200).find_map(|i| {
        let n = pid.wrapping_add(i.wrapping_mul(7919));
        let ip = Ipv4Addr::new(127, 53, (n >> 8) as u8, (n as u8).max(1));
        let addr = SocketAddr::from((ip, 53));
        let udp = UdpSocket::bind(addr).ok()?;
        let tcp = std::net::TcpListener::bind(addr).ok()?;
        drop((udp, tcp));
        Some(addr)
    })
}

/// Runs `getent ARGS` in a private mount namespace where /etc/resolv.conf names only
/// `nameserver` and /etc/nsswitch.conf resolves hosts by DNS alone. Returns (exit code, stdout).
pub fn getent(dir: &std::path::Path, nameserver: Ipv4Addr, args: &str) -> (i32, String) {
    let resolv = dir.join("resolv.conf");
    let nsswitch = dir.join("nsswitch.conf");
    std::fs::write(
        &resolv,
        format!("nameserver {nameserver}\noptions timeout:2 attempts:2\n"),
    )
    .unwrap();
    // DNS only: /etc/hosts, mDNS or systemd-resolved modules must not answer for the stub
    std::fs::write(&nsswitch, "hosts: dns\n").unwrap();
    let script = format!(
        "mount --bind {} /etc/resolv.conf && mount --bind {} /etc/nsswitch.conf && getent {args}",
        resolv.display(),
        nsswitch.display()
    );
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .output()
        .expect("run unshare");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}
