//! Hostile and broken input never takes the server down: random and mutated UDP datagrams,
//! malformed TCP streams, and responses sent as queries (which get no reply at all).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use rand::Rng;

use crate::support::*;

async fn start() -> Zkdns {
    let zk = ZooKeeper::shared();
    let root = unique_root();
    let c = zk.client().await;
    put_zone(&c, &root, "g.test", "").await;
    put_set(&c, &root, "g.test", "web", r#"{"A": ["10.6.0.1"]}"#).await;
    close_session(c).await;
    Zkdns::serve_ready(zk, &root, &[])
}

/// The server still answers correctly, over UDP and TCP.
fn assert_answers(stub: &mut Zkdns) {
    stub.assert_running();
    for tcp in [false, true] {
        let opts = QueryOptions {
            tcp,
            ..QueryOptions::default()
        };
        let m = query_with(stub.addr(), "web.g.test", RecordType::A, opts);
        assert_eq!(
            rcode(&m),
            ResponseCode::NoError,
            "tcp={tcp}: {}",
            summary(&m)
        );
        assert_eq!(addresses(&m), vec!["10.6.0.1"], "tcp={tcp}");
    }
}

fn valid_query(id: u16) -> Vec<u8> {
    let mut packet = build_query("web.g.test", RecordType::A, QueryOptions::default())
        .to_vec()
        .unwrap();
    packet[..2].copy_from_slice(&id.to_be_bytes());
    packet
}

/// Hand-made packets aimed at the parser's edge cases.
fn crafted() -> Vec<Vec<u8>> {
    let q = valid_query(0x4242);
    let mut out = vec![
        vec![],
        vec![0],
        q[..11].to_vec(),
        q[..12].to_vec(),
        q[..q.len() - 1].to_vec(),
    ];
    let header = |flags: [u8; 2], counts: [u16; 4]| {
        let mut h = vec![0x12, 0x34, flags[0], flags[1]];
        for c in counts {
            h.extend_from_slice(&c.to_be_bytes());
        }
        h
    };
    // QDCOUNT 0, 2, 65535; answer counts that lie
    for counts in [
        [0, 0, 0, 0],
        [2, 0, 0, 0],
        [65535, 0, 0, 0],
        [1, 65535, 65535, 65535],
    ] {
        let mut p = header([1, 0], counts);
        p.extend_from_slice(&q[12..]);
        out.push(p);
    }
    // every opcode, and every flag combination of the second byte
    for opcode in 0..16u8 {
        let mut p = q.clone();
        p[2] = (opcode << 3) | 1;
        out.push(p);
    }
    for flags in [0x00u8, 0x0f, 0x70, 0xff] {
        let mut p = q.clone();
        p[3] = flags;
        out.push(p);
    }
    // compression pointers in the question: to itself, forward, out of the packet
    for name in [
        &[0xc0, 0x0c][..],
        &[0xc0, 0x20],
        &[0xc0, 0xff],
        &[0x03, b'w', b'e', b'b', 0xc0, 0x0c],
    ] {
        let mut p = header([1, 0], [1, 0, 0, 0]);
        p.extend_from_slice(name);
        p.extend_from_slice(&[0, 1, 0, 1]);
        out.push(p);
    }
    // labels over 63 bytes, a name over 255 bytes, a label running past the end
    let mut p = header([1, 0], [1, 0, 0, 0]);
    p.push(64);
    p.extend_from_slice(&[b'a'; 64]);
    p.extend_from_slice(&[0, 0, 1, 0, 1]);
    out.push(p);
    let mut p = header([1, 0], [1, 0, 0, 0]);
    for _ in 0..5 {
        p.push(63);
        p.extend_from_slice(&[b'a'; 63]);
    }
    p.extend_from_slice(&[0, 0, 1, 0, 1]);
    out.push(p);
    let mut p = header([1, 0], [1, 0, 0, 0]);
    p.extend_from_slice(&[40, b'a', b'b']);
    out.push(p);
    // OPT records: version 1, two of them, a bad RDLENGTH, OPT in the answer section
    let opt = |version: u8, rdlen: u16| {
        let mut o = vec![0, 0, 41, 0x04, 0xd0, 0, version, 0, 0];
        o.extend_from_slice(&rdlen.to_be_bytes());
        o
    };
    let plain = build_query(
        "web.g.test",
        RecordType::A,
        QueryOptions {
            edns: None,
            ..QueryOptions::default()
        },
    )
    .to_vec()
    .unwrap();
    for (counts, extra) in [
        ([1, 0, 0, 1], opt(1, 0)),
        ([1, 0, 0, 2], [opt(0, 0), opt(0, 0)].concat()),
        ([1, 0, 0, 1], opt(0, 500)),
        ([1, 1, 0, 0], opt(0, 0)),
        ([1, 0, 0, 1], [opt(0, 4), vec![0, 10, 0, 8]].concat()),
    ] {
        let mut p = header([1, 0], counts);
        p.extend_from_slice(&plain[12..]);
        p.extend_from_slice(&extra);
        out.push(p);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_udp_never_kills_the_server() {
    let mut stub = start().await;
    let mut rng = rand::rng();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let base = valid_query(0x5151);
    let mut packets = crafted();
    for i in 0..1200 {
        let p = match i % 3 {
            // random bytes
            0 => {
                let len = rng.random_range(0..600);
                (0..len).map(|_| rng.random::<u8>()).collect()
            }
            // a valid query with a few bytes changed
            1 => {
                let mut p = base.clone();
                for _ in 0..rng.random_range(1..6) {
                    let at = rng.random_range(0..p.len());
                    p[at] = rng.random();
                }
                p
            }
            // a valid query cut short or with junk appended
            _ => {
                let mut p = base.clone();
                if rng.random_bool(0.5) {
                    p.truncate(rng.random_range(0..p.len()));
                } else {
                    let extra = rng.random_range(1..200);
                    p.extend((0..extra).map(|_| rng.random::<u8>()));
                }
                p
            }
        };
        packets.push(p);
    }
    for (i, p) in packets.iter().enumerate() {
        let _ = socket.send_to(p, stub.addr());
        // pace the burst so the server really parses every datagram, and check it still
        // answers along the way
        if i % 100 == 99 {
            let m = query_blocking(stub.addr(), "web.g.test", RecordType::A);
            assert_eq!(addresses(&m), vec!["10.6.0.1"], "after {} packets", i + 1);
        }
    }
    // every reply the garbage got is a response (QR set), never an echo
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 65535];
    let mut replies = 0;
    while let Ok((n, _)) = socket.recv_from(&mut buf) {
        assert!(
            n >= 12 && buf[2] & 0x80 != 0,
            "reply is not a response: {:?}",
            &buf[..n]
        );
        replies += 1;
    }
    assert!(
        replies > 0,
        "not even the well-formed mutations got replies"
    );
    assert_answers(&mut stub);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_get_no_reply() {
    let mut stub = start().await;
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(stub.addr()).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let mut response = valid_query(0x1111);
    response[2] |= 0x80; // QR: this is a response
    socket.send(&response).unwrap();
    let mut response_nxdomain = valid_query(0x1112);
    response_nxdomain[2] |= 0x84; // QR + AA
    response_nxdomain[3] |= 0x03; // NXDOMAIN
    socket.send(&response_nxdomain).unwrap();
    socket.send(&valid_query(0x2222)).unwrap();
    let mut buf = [0u8; 4096];
    let n = socket
        .recv(&mut buf)
        .expect("the query after the responses is answered");
    assert_eq!(
        u16::from_be_bytes([buf[0], buf[1]]),
        0x2222,
        "a response was answered: {:?}",
        &buf[..n]
    );
    // nothing else arrives
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    if let Ok(n) = socket.recv(&mut buf) {
        panic!("unexpected datagram: {:?}", &buf[..n]);
    }
    // over TCP, a response gets no reply either: the next frame is answered first
    let mut tcp = TcpStream::connect(stub.addr()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut frames = Vec::new();
    for p in [&response, &valid_query(0x3333)] {
        frames.extend_from_slice(&(p.len() as u16).to_be_bytes());
        frames.extend_from_slice(p);
    }
    // zkdns may close the connection on the response (then the write or the read fails)
    let _ = tcp.write_all(&frames);
    let mut len = [0u8; 2];
    if tcp.read_exact(&mut len).is_ok() {
        let mut reply = vec![0u8; u16::from_be_bytes(len) as usize];
        let _ = tcp.read_exact(&mut reply);
        assert_ne!(reply[..2], [0x11, 0x11], "a response was answered over TCP");
    }
    assert_answers(&mut stub);
}

fn tcp_send_and_close(server: SocketAddr, bytes: &[u8]) {
    if let Ok(mut s) = TcpStream::connect(server) {
        let _ = s.write_all(bytes);
        let _ = s.shutdown(std::net::Shutdown::Write);
        // read whatever comes back until the server closes or goes quiet
        let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_tcp_never_kills_the_server() {
    let mut stub = start().await;
    let server = stub.addr();
    let mut rng = rand::rng();
    // a connection that says nothing stays open meanwhile: it must not block the others
    let idle = TcpStream::connect(server).unwrap();
    // a connection that announces 512 bytes and sends 2, then waits
    let mut stalled = TcpStream::connect(server).unwrap();
    stalled.write_all(&[0x02, 0x00, 0xab, 0xcd]).unwrap();

    for i in 0..50 {
        let len = rng.random_range(1..2000);
        let random: Vec<u8> = (0..len).map(|_| rng.random::<u8>()).collect();
        tcp_send_and_close(server, &random);
        // a length prefix longer than the data, then close
        let mut short = vec![0x10, 0x00];
        short.extend((0..rng.random_range(0..100)).map(|_| rng.random::<u8>()));
        tcp_send_and_close(server, &short);
        if i % 10 == 0 {
            assert_answers(&mut stub);
        }
    }
    // a zero length, a lone length byte, a full 64 KiB frame of junk, a frame of junk after
    // a valid query on the same connection
    tcp_send_and_close(server, &[0, 0]);
    tcp_send_and_close(server, &[0]);
    let mut big = vec![0xff, 0xff];
    big.extend((0..65535).map(|_| rng.random::<u8>()));
    tcp_send_and_close(server, &big);
    let q = valid_query(0x7777);
    let mut both = (q.len() as u16).to_be_bytes().to_vec();
    both.extend_from_slice(&q);
    both.extend_from_slice(&[0x00, 0x20]);
    both.extend((0..32).map(|_| rng.random::<u8>()));
    tcp_send_and_close(server, &both);
    for p in crafted() {
        let mut framed = (p.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&p);
        tcp_send_and_close(server, &framed);
    }
    // connections opened and dropped at once
    for _ in 0..100 {
        drop(TcpStream::connect(server));
    }
    assert_answers(&mut stub);
    drop(idle);
    drop(stalled);
    assert_answers(&mut stub);
}

/// Sends `packet` over UDP and returns the reply, panicking if there is none.
fn udp_reply(server: SocketAddr, packet: &[u8]) -> Vec<u8> {
    exchange_udp(server, packet, Duration::from_secs(3))
        .unwrap_or_else(|| panic!("no reply to {packet:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_errors_get_the_right_rcode() {
    let stub = start().await;
    // EDNS version 1: BADVERS (extended rcode 16 = 1 in the OPT's high bits), our version 0
    let mut q = build_query("web.g.test", RecordType::A, QueryOptions::default());
    q.edns.as_mut().unwrap().set_version(1);
    let m = decode(&udp_reply(stub.addr(), &q.to_vec().unwrap()));
    let edns = m.edns.as_ref().expect("OPT in the BADVERS reply");
    assert_eq!(edns.rcode_high(), 1, "BADVERS: {}", summary(&m));
    assert_eq!(edns.version(), 0);
    assert!(m.answers.is_empty());
    // dig then retries with version 0 and gets the answer
    let out = dig(stub.addr(), &["+edns=1", "web.g.test"]);
    assert!(
        out.contains("BADVERS, retrying with EDNS version 0"),
        "{out}"
    );
    assert!(out.contains("10.6.0.1"), "{out}");

    // opcodes other than QUERY: NOTIMP, same ID
    for opcode in [1u8, 2, 5, 15] {
        let mut p = valid_query(0x6000 + u16::from(opcode));
        p[2] = (opcode << 3) | 1;
        let reply = udp_reply(stub.addr(), &p);
        assert_eq!(reply[..2], p[..2]);
        assert_eq!(reply[2] & 0x80, 0x80, "QR");
        assert_eq!((reply[2] >> 3) & 0x0f, opcode, "opcode echoed");
        assert_eq!(reply[3] & 0x0f, 4, "opcode {opcode}: NOTIMP, got {reply:?}");
    }

    // two questions: FORMERR
    let q = valid_query(0x6100);
    let mut p = q[..12].to_vec();
    p[5] = 2;
    p[11] = 0;
    let question = &q[12..12 + "web.g.test".len() + 2 + 4];
    p.extend_from_slice(question);
    p.extend_from_slice(question);
    let reply = udp_reply(stub.addr(), &p);
    assert_eq!(reply[3] & 0x0f, 1, "QDCOUNT 2: FORMERR, got {reply:?}");

    // class CHAOS for a name in our zone: REFUSED
    let out = dig(stub.addr(), &["-c", "CH", "web.g.test"]);
    assert_eq!(dig_status(&out).as_deref(), Some("REFUSED"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notimp_reply_to_an_edns_query_carries_opt() {
    let stub = start().await;
    // dig +opcode=2 (STATUS) with EDNS. Knot 3.2 answers NOTIMP with the question and an OPT;
    // zkdns answers a bare 12-byte header, and dig warns "EDNS query returned status NOTIMP".
    let mut p = valid_query(0x6202);
    p[2] = (2 << 3) | 1;
    let reply = udp_reply(stub.addr(), &p);
    let m = decode(&reply);
    assert_eq!(reply[3] & 0x0f, 4, "NOTIMP");
    assert!(m.edns.is_some(), "no OPT in the NOTIMP reply: {reply:?}");
    assert_eq!(m.queries.len(), 1, "question not echoed: {reply:?}");
}
