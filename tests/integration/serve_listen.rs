//! Binding the listeners: with port 0 the kernel picks the port, and UDP and TCP must end up
//! on the same one (the "listening for UDP on ADDR" line is how clients find it).

use std::net::{SocketAddr, TcpListener};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listen_address_answers_over_udp_and_tcp() {
    let zk = ZooKeeper::shared();
    let root = unique_root();
    let c = zk.client().await;
    put_set(&c, &root, "l.test", "web", r#"{"A": ["10.12.0.1"]}"#).await;
    close_session(c).await;
    let first: SocketAddr = format!("127.0.0.1:{}", free_dns_port()).parse().unwrap();
    let second: SocketAddr = format!("127.0.0.2:{}", free_dns_port()).parse().unwrap();
    // repeated, and comma-separated
    let stub = Zkdns::serve_ready(
        zk,
        &root,
        &[
            "--listen",
            &first.to_string(),
            "--listen",
            &format!("{second},[::1]:0"),
        ],
    );
    assert_eq!(stub.addr(), first);
    let logs = stub.logs();
    let v6: SocketAddr = logs
        .lines()
        .filter_map(|l| l.split("listening for TCP on ").nth(1))
        .filter_map(|a| a.trim().parse().ok())
        .find(|a: &SocketAddr| a.is_ipv6())
        .unwrap_or_else(|| panic!("no IPv6 listener in the log:\n{logs}"));
    for server in [first, second, v6] {
        for tcp in [false, true] {
            let opts = QueryOptions {
                tcp,
                ..QueryOptions::default()
            };
            let m = query_with(server, "web.l.test", RecordType::A, opts);
            assert_eq!(rcode(&m), ResponseCode::NoError, "{server} tcp={tcp}");
            assert_eq!(addresses(&m), vec!["10.12.0.1"], "{server} tcp={tcp}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_listeners_answer_from_the_address_asked() {
    // On a wildcard socket a reply used to leave from the kernel's choice of source address:
    // a query to 127.0.0.2 was answered from 127.0.0.1, which a client drops ("reply from
    // unexpected source"); and `[::]` beside `0.0.0.0` on the same port failed to bind, as the
    // IPv6 sockets took IPv4 too.
    let zk = ZooKeeper::shared();
    let root = unique_root();
    let c = zk.client().await;
    put_set(&c, &root, "l.test", "web", r#"{"A": ["10.12.0.1"]}"#).await;
    close_session(c).await;
    let upstream = Upstream::start();
    let port = free_dns_port();
    let listen = format!("0.0.0.0:{port},[::]:{port}");
    let upstream_arg = upstream.addr().to_string();
    let _stub = Zkdns::serve_ready(
        zk,
        &root,
        &["--listen", &listen, "--upstream", &upstream_arg],
    );
    for ip in ["127.0.0.2", "127.0.0.1", "::1"] {
        let server = SocketAddr::new(ip.parse().unwrap(), port);
        for tcp in [false, true] {
            let opts = QueryOptions {
                tcp,
                ..QueryOptions::default()
            };
            // the client's UDP socket is connected to `server`: a reply from any other
            // address never reaches it
            let m = query_with(server, "web.l.test", RecordType::A, opts);
            assert_eq!(addresses(&m), vec!["10.12.0.1"], "{server} tcp={tcp}");
            let m = query_with(server, "www.upstream.test", RecordType::A, opts);
            assert_eq!(
                addresses(&m),
                vec!["192.0.2.80"],
                "forwarded: {server} tcp={tcp}"
            );
        }
    }
    let server = SocketAddr::from(([127, 0, 0, 3], port));
    let out = dig(server, &["web.l.test", "+short"]);
    assert_eq!(out.trim(), "10.12.0.1", "dig @{server}");
}

#[test]
fn port_zero_finds_a_port_free_for_both_udp_and_tcp() {
    // In a namespace of our own the ephemeral range can be two ports, 40000-40001, with TCP
    // 40000 held by a listener. zkdns binds UDP to port 0, gets 40000 or 40001 at random, and
    // then binds TCP to that same port: for 40000 it fails with "failed to bind to TCP socket
    // address 127.0.0.1:40000: Address already in use" and exits 1, so about every second
    // start fails. A bind that retries port 0 until both protocols fit always gets 40001.
    // Outside this test it shows as rare failures to start with `--listen 127.0.0.1:0`
    // whenever the port is in use by some TCP connection.
    let ns = match NetNs::create() {
        Ok(ns) => ns,
        Err(reason) => {
            eprintln!("skipped: cannot create a network namespace: {reason}");
            return;
        }
    };
    let out = ns.exec(&["sysctl", "-w", "net.ipv4.ip_local_port_range=40000 40001"]);
    assert!(
        out.status.success(),
        "sysctl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _held = ns.run_inside(|| TcpListener::bind("127.0.0.1:40000").expect("hold TCP 40000"));
    for start in 1..=20 {
        let mut cmd = ns.command(env!("CARGO_BIN_EXE_zkdns"));
        // no ZooKeeper in the namespace: zkdns binds first and keeps retrying ZooKeeper
        cmd.args(["--zk", "127.0.0.1:9", "--root", "/zkdns"])
            .env("NO_COLOR", "1");
        let cmd = serve_command(cmd, &["--listen", "127.0.0.1:0"]);
        match Zkdns::try_start(cmd) {
            Ok(stub) => assert_eq!(stub.addr().port(), 40001, "start {start}"),
            Err(log) => panic!("start {start} of 20 failed:\n{log}"),
        }
    }
}

/// Runs `zkdns serve` with `args` against a ZooKeeper that is never needed (it fails before
/// connecting) and returns (exit code, stderr).
fn serve_fails(args: &[&str]) -> (i32, String) {
    let zk = ZooKeeper::shared();
    let mut cmd = serve_command(zkdns_cmd(zk, &unique_root()), args);
    let out = cmd.output().expect("run zkdns");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `zkdns: error:` lines of stderr.
fn error_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("zkdns: error:"))
        .collect()
}

#[test]
fn a_port_in_use_is_a_runtime_failure_naming_the_address() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, stderr) = serve_fails(&["--listen", &addr]);
    assert_eq!(code, 1, "{stderr}");
    let errors = error_lines(&stderr);
    assert_eq!(errors.len(), 1, "one error line:\n{stderr}");
    assert!(errors[0].contains(&addr), "{stderr}");
}

#[test]
fn a_bind_error_names_its_cause_once() {
    // zkdns: error: failed to bind to UDP socket address 127.0.0.1:P: Address already in use
    // (os error 98): Address already in use (os error 98)
    // ServerError's message embeds {source} and also returns it as source(), and main prints
    // the whole chain, so the cause appears twice.
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (_, stderr) = serve_fails(&["--listen", &addr]);
    let line = error_lines(&stderr)
        .first()
        .copied()
        .unwrap_or_default()
        .to_string();
    assert_eq!(line.matches("Address already in use").count(), 1, "{line}");
}

#[test]
fn an_upstream_that_is_the_stub_itself_is_bad_usage() {
    let port = free_dns_port();
    let listen = format!("127.0.0.1:{port}");
    let (code, stderr) = serve_fails(&["--listen", &listen, "--upstream", &listen]);
    assert_eq!(code, 2, "{stderr}");
    let errors = error_lines(&stderr);
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("--upstream"), "{stderr}");
}
