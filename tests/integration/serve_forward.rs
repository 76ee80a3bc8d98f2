//! Names outside the served zones: forwarded to the upstreams, their records relayed with a
//! recursive forwarder's flags (RA, no AA), with failover past a dead upstream, SERVFAIL when
//! every upstream fails, REFUSED without any. The upstream is a second DNS server on loopback
//! (Knot serving `upstream.test.`). The cache in front of it is `serve_cache`'s.

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

use crate::support::*;

/// Each upstream gets this long before the next is tried; short, so the tests stay quick.
const UPSTREAM_TIMEOUT: &str = "500ms";

async fn root_with_zone() -> String {
    let zk = ZooKeeper::shared();
    let root = unique_root();
    let c = zk.client().await;
    put_zone(&c, &root, "cluster.test", "").await;
    put_set(&c, &root, "cluster.test", "web", r#"{"A": ["10.10.0.1"]}"#).await;
    close_session(c).await;
    root
}

fn serve_with_upstreams(root: &str, upstreams: &str) -> Zkdns {
    Zkdns::serve_ready(
        ZooKeeper::shared(),
        root,
        &[
            "--upstream",
            upstreams,
            "--upstream-timeout",
            UPSTREAM_TIMEOUT,
        ],
    )
}

/// Asks the stub for `www.upstream.test A` over TCP or UDP, and checks the reply's RCODE.
fn ask_www(stub: &Zkdns, tcp: bool, want: ResponseCode) -> Message {
    let opts = QueryOptions {
        tcp,
        ..QueryOptions::default()
    };
    let m = query_with(stub.addr(), "www.upstream.test", RecordType::A, opts);
    assert_eq!(rcode(&m), want, "tcp={tcp}: {}", summary(&m));
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_outside_the_zones_are_forwarded_and_relayed() {
    let upstream = Upstream::start();
    let root = root_with_zone().await;
    let stub = serve_with_upstreams(&root, &upstream.addr().to_string());

    let ours = query_blocking(stub.addr(), "www.upstream.test", RecordType::A);
    let theirs = query_blocking(upstream.addr(), "www.upstream.test", RecordType::A);
    assert_eq!(rcode(&ours), ResponseCode::NoError, "{}", summary(&ours));
    assert_eq!(addresses(&ours), vec!["192.0.2.80"]);
    // Knot's records, with a recursive forwarder's flags: RA set, Knot's AA not relayed
    assert!(theirs.metadata.authoritative);
    assert!(
        !ours.metadata.authoritative && ours.metadata.recursion_available,
        "flags: {}",
        summary(&ours)
    );
    // (the TTLs may differ by the second the answer spent in the cache)
    assert_eq!(addresses(&ours), addresses(&theirs));

    // negative answers are relayed too, with the upstream's SOA
    let ours = query_blocking(stub.addr(), "nope.upstream.test", RecordType::A);
    assert_eq!(rcode(&ours), ResponseCode::NXDomain, "{}", summary(&ours));
    assert_eq!(
        authority_soa(&ours),
        vec![
            "upstream.test. 30 IN SOA ns.upstream.test. hostmaster.upstream.test. 7 3600 600 86400 30"
        ]
    );
    let ours = query_blocking(stub.addr(), "txt.upstream.test", RecordType::TXT);
    assert_eq!(
        answers_of(&ours, RecordType::TXT),
        vec!["\"from upstream\""]
    );

    // over TCP as well, with an answer too big for 512 bytes
    let tcp = QueryOptions {
        tcp: true,
        edns: None,
        ..QueryOptions::default()
    };
    let m = query_with(stub.addr(), "big.upstream.test", RecordType::A, tcp);
    assert_eq!(addresses(&m).len(), 40, "{}", summary(&m));
    // and over UDP without EDNS, TC with the whole records that fit in 512 bytes
    let plain = QueryOptions {
        edns: None,
        ..QueryOptions::default()
    };
    let reply = query_raw(stub.addr(), "big.upstream.test", RecordType::A, plain).unwrap();
    assert!(reply.len() <= 512, "{} bytes", reply.len());
    let m = decode(&reply);
    assert!(m.metadata.truncation, "TC: {}", summary(&m));
    assert_eq!(addresses(&m).len(), (512 - 12 - 21) / 16, "{}", summary(&m));

    // dig, the real client, through the stub
    let out = dig(stub.addr(), &["www.upstream.test"]);
    assert_eq!(dig_status(&out).as_deref(), Some("NOERROR"), "{out}");
    assert!(out.contains("192.0.2.80"), "{out}");
    // our own zone is still answered by us
    let m = query_blocking(stub.addr(), "web.cluster.test", RecordType::A);
    assert_eq!(addresses(&m), vec!["10.10.0.1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_upstream_is_skipped() {
    let upstream = Upstream::start();
    let dead = dead_addr();
    let root = root_with_zone().await;
    let stub = serve_with_upstreams(&root, &format!("{dead},{}", upstream.addr()));
    for tcp in [false, true, false] {
        let m = ask_www(&stub, tcp, ResponseCode::NoError);
        assert_eq!(addresses(&m), vec!["192.0.2.80"], "tcp={tcp}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_upstream_times_out_and_the_next_answers() {
    // no ICMP error, no RST: only the per-upstream timeout moves zkdns on
    let upstream = Upstream::start();
    let silent = SilentServer::start();
    let root = root_with_zone().await;
    for tcp in [false, true] {
        // a fresh stub each time: after an answer, zkdns tries the upstream that answered first
        let stub = serve_with_upstreams(&root, &format!("{},{}", silent.addr(), upstream.addr()));
        let m = ask_www(&stub, tcp, ResponseCode::NoError);
        assert_eq!(addresses(&m), vec!["192.0.2.80"], "tcp={tcp}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_dead_upstreams_give_servfail() {
    let root = root_with_zone().await;
    // one refuses connections, one never answers
    let silent = SilentServer::start();
    let stub = serve_with_upstreams(&root, &format!("{},{}", dead_addr(), silent.addr()));
    for tcp in [false, true] {
        let m = ask_www(&stub, tcp, ResponseCode::ServFail);
        assert!(m.answers.is_empty());
        assert!(m.edns.is_some(), "an EDNS query gets OPT in SERVFAIL too");
    }
    let m = query_blocking(stub.addr(), "web.cluster.test", RecordType::A);
    assert_eq!(addresses(&m), vec!["10.10.0.1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_upstream_gives_refused() {
    let root = root_with_zone().await;
    let stub = Zkdns::serve_ready(ZooKeeper::shared(), &root, &["--no-upstream"]);
    for tcp in [false, true] {
        let m = ask_www(&stub, tcp, ResponseCode::Refused);
        assert!(m.answers.is_empty());
        assert!(!m.metadata.recursion_available, "RA without an upstream");
    }
    // reverse names of addresses zkdns does not serve are not its own either
    let m = query_blocking(stub.addr(), "9.9.9.9.in-addr.arpa", RecordType::PTR);
    assert_eq!(rcode(&m), ResponseCode::Refused, "{}", summary(&m));
}
