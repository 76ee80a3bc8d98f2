//! The packet path of the real binary (issue 6, item 4): the fuzzing generators' packets
//! (random, generated, mutated, RFC 9267) over UDP and TCP against `zkdns serve` holding the
//! fuzz test tree, every reply checked as the in-process run checks it and compared with the
//! in-process answer; then the RFC 8906 probes sent to zkdns and to Knot DNS 3.2 side by side.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use hickory_proto::rr::RecordType;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use zkdns::testkit::{
    CLIENT, MapState, Verdict, answer_packet, build_query, check_reply, random_packet, test_nodes,
    test_snapshot,
};

use crate::support::*;

const UDP_PACKETS: usize = 3_000;
const TCP_PACKETS: usize = 300;
const REPLY_TIMEOUT: Duration = Duration::from_secs(3);

/// `zkdns serve --no-upstream` with the fuzz test tree (`testkit::test_nodes`) loaded.
async fn stub_with_test_tree() -> Zkdns {
    let zk = ZooKeeper::shared();
    let root = unique_root();
    let c = zk.client().await;
    for (path, data) in test_nodes() {
        put_node(&c, &format!("{root}/zones/{path}"), data.as_bytes()).await;
    }
    close_session(c).await;
    Zkdns::serve_ready(zk, &root, &[])
}

/// Checks a reply of the binary against the in-process answer to the same packet: it passes
/// `check_reply`, and has the same header (flags, RCODE, counts; the records may rotate). A
/// name the in-process handler forwards is REFUSED by a stub without upstreams.
fn compare(packet: &[u8], tcp: bool, local: Verdict, expected: &[u8], reply: &[u8]) {
    let what = || format!("tcp={tcp}\n  packet {packet:02x?}\n  reply {reply:02x?}");
    if local == Verdict::Forward {
        assert!(
            reply.len() >= 12 && reply[..2] == packet[..2] && reply[3] & 0x0F == 5,
            "not REFUSED: {}",
            what()
        );
        return;
    }
    if let Err(e) = check_reply(MapState::Fresh, test_snapshot(), packet, tcp, local, reply) {
        panic!("{e}: {}", what());
    }
    assert_eq!(
        reply[2..12],
        expected[2..12],
        "header differs from in-process: {}",
        what()
    );
}

/// Waits for the reply with `id` on `socket`; any other datagram is a reply to a packet that
/// should have had none.
fn recv_reply(socket: &UdpSocket, id: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 65535];
    let n = socket
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no reply for ID {id:02x?}: {e}"));
    assert_eq!(
        &buf[..2],
        id,
        "a reply to another packet: {:02x?}",
        &buf[..n]
    );
    buf.truncate(n);
    buf
}

/// Sends one framed message on a new connection; returns the reply, or `None` when the stub
/// closed the connection without one.
fn tcp_exchange(server: SocketAddr, packet: &[u8]) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect(server).expect("connect");
    s.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
    let mut framed = (packet.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(packet);
    s.write_all(&framed).ok()?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len).ok()?;
    let mut reply = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut reply).expect("a whole reply");
    Some(reply)
}

fn assert_web_answers(stub: &mut Zkdns) {
    stub.assert_running();
    for tcp in [false, true] {
        let opts = QueryOptions {
            tcp,
            ..QueryOptions::default()
        };
        let m = query_with(stub.addr(), "web.fz.test", RecordType::A, opts);
        assert_eq!(addresses(&m), ["10.0.0.1", "10.0.0.2"], "tcp={tcp}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_packets_against_the_binary_match_the_in_process_answers() {
    let mut stub = stub_with_test_tree().await;
    let seed: u64 = std::env::var("ZKDNS_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("seed {seed} (ZKDNS_FUZZ_SEED replays it)");
    let mut rng = SmallRng::seed_from_u64(seed);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(stub.addr()).unwrap();
    socket.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
    let mut expected = Vec::new();
    let (mut replies, mut silent) = (0, 0);
    for i in 0..UDP_PACKETS + TCP_PACKETS {
        let tcp = i >= UDP_PACKETS;
        let mut packet = random_packet(&mut rng);
        if tcp && packet.len() < 2 {
            packet.resize(2, 0); // an ID to match the reply with
        }
        let local = answer_packet(test_snapshot(), &packet, CLIENT, tcp, &mut expected);
        if tcp {
            let reply = tcp_exchange(stub.addr(), &packet);
            match (local, reply) {
                (Verdict::Silent, None) => silent += 1,
                (Verdict::Silent, Some(r)) => panic!("a reply to {packet:02x?}: {r:02x?}"),
                (_, None) => panic!("no reply over TCP to {packet:02x?} (seed {seed})"),
                (v, Some(r)) => {
                    compare(&packet, true, v, &expected, &r);
                    replies += 1;
                }
            }
            continue;
        }
        socket.send(&packet).unwrap();
        if local == Verdict::Silent {
            silent += 1;
            continue;
        }
        let reply = recv_reply(&socket, &packet[..2]);
        compare(&packet, false, local, &expected, &reply);
        replies += 1;
    }
    // nothing came for the packets that deserve silence
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 512];
    if let Ok(n) = socket.recv(&mut buf) {
        panic!("a reply to a packet that deserved none: {:02x?}", &buf[..n]);
    }
    eprintln!("{replies} replies checked, {silent} packets rightly unanswered");
    assert_web_answers(&mut stub);
}

/// What a server did with a probe: nothing, or a reply summarised as (RCODE with the OPT's
/// extended bits, OPT present, question echoed, AA).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Silent,
    Reply(u16, bool, bool, bool),
}

fn probe(server: SocketAddr, packet: &[u8]) -> Seen {
    let Some(reply) = exchange_udp(server, packet, Duration::from_secs(1)) else {
        return Seen::Silent;
    };
    let m = decode(&reply);
    let high = m.edns.as_ref().map_or(0, |e| u16::from(e.rcode_high()));
    Seen::Reply(
        high << 4 | u16::from(reply[3] & 0x0F),
        m.edns.is_some(),
        m.queries.len() == 1,
        m.metadata.authoritative,
    )
}

/// RFC 8906 probes (and the RFC 9267 shapes) to zkdns and to Knot 3.2 serving the same zone.
/// Where they differ, both answers are pinned here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc8906_probes_against_knot() {
    let knot = Knot::start(&[(
        "fz.test",
        "$ORIGIN fz.test.\n$TTL 30\n@ IN SOA ns hostmaster 1 3600 600 86400 10\n@ IN NS ns\n\
         ns IN A 10.0.0.53\nweb IN A 10.0.0.1\nweb IN A 10.0.0.2\n",
    )]);
    let stub = stub_with_test_tree().await;
    let edns =
        |name: &str, qtype: u16, qclass: u16| build_query(0x4242, name, qtype, qclass, Some(1232));
    let opt = |version: u8, flags: u16| {
        let mut o = vec![0, 0, 41, 0x04, 0xD0, 0, version];
        o.extend_from_slice(&flags.to_be_bytes());
        o.extend_from_slice(&[0, 0]);
        o
    };
    let with_opt = |o: &[u8]| {
        let mut p = build_query(0x4242, "web.fz.test", 1, 1, None);
        p.extend_from_slice(o);
        p[11] = 1;
        p
    };
    let opcode = |mut p: Vec<u8>, op: u8| {
        p[2] = (p[2] & 0x87) | op << 3;
        p
    };
    // a header with QDCOUNT 0 and an OPT record
    let no_question = |op: u8| {
        let mut p = vec![0x42, 0x42, op << 3 | 1, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        p.extend(opt(0, 0));
        p
    };
    use Seen::*;
    // (probe, zkdns, Knot where it differs)
    let probes: Vec<(&str, Vec<u8>, Seen, Option<Seen>)> = vec![
        (
            "EDNS query",
            edns("web.fz.test", 1, 1),
            Reply(0, true, true, true),
            None,
        ),
        (
            "no EDNS",
            build_query(1, "web.fz.test", 1, 1, None),
            Reply(0, false, true, true),
            None,
        ),
        (
            "NXDOMAIN",
            edns("nope.fz.test", 1, 1),
            Reply(3, true, true, true),
            None,
        ),
        (
            "NODATA",
            edns("web.fz.test", 16, 1),
            Reply(0, true, true, true),
            None,
        ),
        (
            "unknown type",
            edns("web.fz.test", 1234, 1),
            Reply(0, true, true, true),
            None,
        ),
        (
            "type 0",
            edns("web.fz.test", 0, 1),
            Reply(0, true, true, true),
            Some(Reply(4, true, true, false)),
        ),
        (
            "EDNS version 1",
            with_opt(&opt(1, 0)),
            Reply(16, true, true, false),
            None,
        ),
        (
            "EDNS unknown flags",
            with_opt(&opt(0, 0x7FFF)),
            Reply(0, true, true, true),
            None,
        ),
        (
            "opcode 1",
            opcode(edns("web.fz.test", 1, 1), 1),
            Reply(4, true, true, false),
            None,
        ),
        (
            "opcode 3",
            opcode(edns("web.fz.test", 1, 1), 3),
            Reply(4, true, true, false),
            None,
        ),
        (
            "opcode 15",
            opcode(edns("web.fz.test", 1, 1), 15),
            Reply(4, true, true, false),
            None,
        ),
        (
            "opcode 15, EDNS version 1",
            opcode(with_opt(&opt(1, 0)), 15),
            Reply(16, true, true, false),
            None,
        ),
        (
            "class CH",
            edns("web.fz.test", 1, 3),
            Reply(5, true, true, false),
            None,
        ),
        (
            "class NONE",
            edns("web.fz.test", 1, 254),
            Reply(5, true, true, false),
            None,
        ),
        (
            "class ANY",
            edns("web.fz.test", 1, 255),
            Reply(0, true, true, true),
            None,
        ),
        (
            "AXFR over UDP",
            edns("fz.test", 252, 1),
            Reply(5, true, true, false),
            Some(Reply(4, true, true, false)),
        ),
        (
            "IXFR over UDP",
            edns("fz.test", 251, 1),
            Reply(5, true, true, false),
            Some(Reply(9, true, true, false)),
        ),
        (
            "QR=1",
            {
                let mut p = edns("web.fz.test", 1, 1);
                p[2] |= 0x80;
                p
            },
            Silent,
            None,
        ),
        (
            "Z bit",
            {
                let mut p = edns("web.fz.test", 1, 1);
                p[3] |= 0x40;
                p
            },
            Reply(0, true, true, true),
            None,
        ),
        (
            "no question",
            no_question(0),
            Reply(1, false, false, false),
            Some(Reply(1, true, false, false)),
        ),
        (
            "opcode 15, no question",
            no_question(15),
            Reply(4, false, false, false),
            Some(Reply(4, true, false, false)),
        ),
        (
            "two questions",
            {
                let mut p = build_query(1, "web.fz.test", 1, 1, None);
                p[5] = 2;
                let q = p[12..].to_vec();
                p.extend(q);
                p
            },
            Reply(1, false, false, false),
            Some(Silent),
        ),
        (
            "two OPT",
            {
                let mut p = with_opt(&[opt(0, 0), opt(0, 0)].concat());
                p[11] = 2;
                p
            },
            Reply(1, false, false, false),
            Some(Reply(1, false, true, false)),
        ),
        (
            "OPT owned by a name",
            {
                let mut o = opt(0, 0);
                o.splice(0..1, [1, b'a', 0]);
                with_opt(&o)
            },
            Reply(1, false, false, false),
            Some(Reply(0, true, true, true)),
        ),
        (
            "counts past the end",
            {
                let mut p = build_query(1, "web.fz.test", 1, 1, None);
                p[11] = 3;
                p
            },
            Reply(1, false, false, false),
            Some(Reply(1, false, true, false)),
        ),
        (
            "trailing bytes",
            {
                let mut p = build_query(1, "web.fz.test", 1, 1, None);
                p.extend([0, 1, 2]);
                p
            },
            Reply(0, false, true, true),
            Some(Reply(1, false, true, false)),
        ),
        (
            "pointer in the question",
            {
                let mut p = build_query(1, "web.fz.test", 1, 1, None);
                p.truncate(12);
                p.extend([0xC0, 0x0C, 0, 1, 0, 1]);
                p
            },
            Reply(1, false, false, false),
            Some(Silent),
        ),
        (
            "label of 64",
            {
                let mut p = build_query(1, "web.fz.test", 1, 1, None);
                p.truncate(12);
                p.push(64);
                p.extend([b'a'; 64]);
                p.extend([0, 0, 1, 0, 1]);
                p
            },
            Reply(1, false, false, false),
            Some(Silent),
        ),
        (
            "question cut short",
            {
                let p = build_query(1, "web.fz.test", 1, 1, None);
                p[..p.len() - 1].to_vec()
            },
            Reply(1, false, false, false),
            Some(Silent),
        ),
        (
            "header cut short",
            build_query(1, "web.fz.test", 1, 1, None)[..11].to_vec(),
            Silent,
            None,
        ),
    ];
    let mut differences = Vec::new();
    for (label, packet, want, knot_differs) in &probes {
        let ours = probe(stub.addr(), packet);
        let theirs = probe(knot.addr(), packet);
        assert_eq!(ours, *want, "zkdns, {label}");
        assert_eq!(theirs, knot_differs.unwrap_or(*want), "Knot, {label}");
        if ours != theirs {
            differences.push(format!("{label}: zkdns {ours:?}, Knot {theirs:?}"));
        }
    }
    eprintln!(
        "where zkdns and Knot 3.2 differ:\n{}",
        differences.join("\n")
    );
}
