//! TCP fairness (issue 15, item 4): a flood of idle connections from one address costs that
//! address its own idlest connections, not another address its service. Before, 600 idle
//! connections from one client held the listener at its cap of 512 and every other TCP client
//! waited for the 10 s idle timeout.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use socket2::{Domain, Protocol, Socket, Type};

use crate::support::*;

/// The stub's idle timeout: what a client kept out used to wait.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TCP connection to `server` from `source`.
fn connect_from(source: Ipv4Addr, server: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    socket.bind(&SocketAddr::from((source, 0)).into()).unwrap();
    socket
        .connect_timeout(&server.into(), Duration::from_secs(5))
        .expect("connect");
    socket.into()
}

/// Whether the stub has closed `conn` (EOF or reset), without waiting.
fn closed(conn: &TcpStream) -> bool {
    conn.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let gone = match (&mut &*conn).read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    };
    conn.set_nonblocking(false).unwrap();
    gone
}

/// Opens `n` idle connections from 127.0.0.2, then asks from 127.0.0.3 over TCP: answered
/// long before any idle timeout. Returns the flood's connections still open afterwards.
async fn flood_then_ask(stub: &Zkdns, n: usize) -> usize {
    let flooder = Ipv4Addr::new(127, 0, 0, 2);
    let flood: Vec<TcpStream> = (0..n).map(|_| connect_from(flooder, stub.addr())).collect();
    let started = Instant::now();
    let fresh = connect_from(Ipv4Addr::new(127, 0, 0, 3), stub.addr());
    let server = stub.addr();
    let reply = tokio::task::spawn_blocking(move || {
        let query = build_query("web.tcp.test", RecordType::A, QueryOptions::default())
            .to_vec()
            .unwrap();
        exchange_on(fresh, &query, IDLE_TIMEOUT)
    })
    .await
    .unwrap();
    let waited = started.elapsed();
    let reply = reply.unwrap_or_else(|| panic!("no TCP answer for 127.0.0.3 ({server})"));
    let msg = hickory_proto::op::Message::from_vec(&reply).unwrap();
    assert_eq!(addresses(&msg), vec!["10.0.0.1"]);
    assert!(
        waited < IDLE_TIMEOUT / 2,
        "127.0.0.3 waited {waited:?}, as if for the flood's idle timeout"
    );
    // the flood lost its idlest (its first) connections, and nothing was lost by anyone else
    let deadline = Instant::now() + Duration::from_secs(5);
    while !closed(&flood[0]) {
        assert!(
            Instant::now() < deadline,
            "the flood's first connection is still open"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    flood.iter().filter(|c| !closed(c)).count()
}

/// One framed exchange on an open connection.
fn exchange_on(mut s: TcpStream, packet: &[u8], timeout: Duration) -> Option<Vec<u8>> {
    use std::io::Write;
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

async fn stub_with_web(extra: &[&str]) -> Zkdns {
    let zk = ZooKeeper::shared();
    let root = unique_root();
    let client = zk.client().await;
    put_root(&client, &root).await;
    put_zone(&client, &root, "tcp.test", "{}").await;
    put_set(&client, &root, "tcp.test", "web", r#"{"A": ["10.0.0.1"]}"#).await;
    close_session(client).await;
    Zkdns::serve_ready(zk, &root, extra)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_address_costs_only_its_own_connections() {
    // over the per-client cap: the flooder keeps at most its cap
    let stub = stub_with_web(&["--max-tcp-per-client", "8"]).await;
    let open = flood_then_ask(&stub, 300).await;
    assert!(
        open <= 8,
        "{open} of the flood's connections still open, over its cap of 8"
    );
    assert!(open > 0, "the flood's newest connections are kept");
    assert!(
        stub.wait_log("TCP connections over their caps", Duration::from_secs(5)),
        "the shedding is not logged:\n{}",
        stub.logs()
    );

    // the listener's total cap (512), as the flood that used to starve everyone else
    let stub = stub_with_web(&["--max-tcp-per-client", "512"]).await;
    let open = flood_then_ask(&stub, 600).await;
    assert!(open <= 511, "{open} of the flood's connections still open");
}
