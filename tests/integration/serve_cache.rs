//! The cache of forwarded answers, against real upstreams on loopback that count what reaches
//! them (Knot behind a [`CountingRelay`], and a [`ScriptedUpstream`] for slow and bad
//! replies): a repeated question reaches the upstream once and its TTL counts down, negative
//! answers are kept with their SOA, identical questions in flight share one exchange, stale
//! answers (EDE 3) while the upstream is dead and fresh ones once it is back, the size bound
//! under a flood of new names, and bad upstream replies never kept, counted, logged once.

use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

use crate::support::*;

const UPSTREAM_TIMEOUT: &str = "500ms";

/// `cache.test`: `www` (TTL 60), `short` (TTL 1), a wildcard for the flood, NXDOMAIN with a
/// SOA whose MINIMUM is 30.
const ZONE: &str = "\
$ORIGIN cache.test.
$TTL 60
@        IN SOA ns.cache.test. hostmaster.cache.test. 1 3600 600 86400 30
@        IN NS  ns
ns       IN A   192.0.2.53
www      IN A   192.0.2.80
short  1 IN A   192.0.2.81
*.flood  IN A   192.0.2.99
";

/// A root with a zone of its own (so that the stub is ready), on the shared ZooKeeper.
async fn root() -> String {
    let zk = ZooKeeper::shared();
    let root = unique_root();
    let c = zk.client().await;
    put_zone(&c, &root, "mine.test", "").await;
    close_session(c).await;
    root
}

/// A stub forwarding to `upstream`, with metrics, and `extra` flags.
fn stub(root: &str, upstream: std::net::SocketAddr, extra: &[&str]) -> Zkdns {
    let upstream = upstream.to_string();
    let mut args = vec![
        "--upstream",
        &upstream,
        "--upstream-timeout",
        UPSTREAM_TIMEOUT,
        "--metrics",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    Zkdns::serve_ready(ZooKeeper::shared(), root, &args)
}

fn udp(edns: Option<u16>) -> QueryOptions {
    QueryOptions {
        edns,
        ..QueryOptions::default()
    }
}

fn ask(stub: &Zkdns, name: &str, rtype: RecordType) -> Message {
    query_with(stub.addr(), name, rtype, QueryOptions::default())
}

/// How many queries for `question` ("name. TYPE") reached the relay.
fn reached(relay: &CountingRelay, question: &str) -> usize {
    relay
        .seen()
        .iter()
        .filter(|r| r.question == question)
        .count()
}

fn metric(stub: &Zkdns, name: &str) -> f64 {
    family_total(&scrape_metrics(metrics_address(stub)), name)
}

/// Whether the reply carries Extended DNS Error `code` in its OPT record.
fn has_ede(m: &Message, code: u16) -> bool {
    let Some(edns) = &m.edns else {
        return false;
    };
    let options = format!("{:?}", edns.options());
    // EDE is option 15; its INFO-CODE is the first two bytes of the option's data
    options.contains("15") && options.contains(&format!("{code}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_question_reaches_the_upstream_once_and_its_ttl_counts_down() {
    let knot = Knot::start(&[("cache.test", ZONE)]);
    let relay = CountingRelay::start(knot.addr());
    let root = root().await;
    let stub = stub(&root, relay.addr(), &[]);

    // the letter case of each question comes back as asked (0x20)
    let names = ["www.cache.test", "WWW.cache.TEST", "wWw.CaChE.tEsT"];
    let mut first_ttl = 0;
    for (i, name) in names.iter().cycle().take(9).enumerate() {
        let tcp = i % 3 == 2;
        let opts = QueryOptions {
            tcp,
            ..QueryOptions::default()
        };
        let packet = build_query(name, RecordType::A, opts).to_vec().unwrap();
        let reply = if tcp {
            exchange_tcp(stub.addr(), &packet, Duration::from_secs(5))
        } else {
            exchange_udp(stub.addr(), &packet, Duration::from_secs(5))
        }
        .expect("a reply");
        let qlen = name.len() + 2 + 4;
        assert_eq!(
            reply[12..12 + qlen],
            packet[12..12 + qlen],
            "the question as asked"
        );
        let m = decode(&reply);
        assert_eq!(rcode(&m), ResponseCode::NoError, "{}", summary(&m));
        assert_eq!(addresses(&m), vec!["192.0.2.80"]);
        // a recursive forwarder's flags, not the authoritative upstream's
        assert!(m.metadata.recursion_available, "RA: {}", summary(&m));
        assert!(!m.metadata.authoritative, "AA: {}", summary(&m));
        if i == 0 {
            first_ttl = m.answers[0].ttl;
        }
    }
    assert!((55..=60).contains(&first_ttl), "first TTL {first_ttl}");
    assert_eq!(
        reached(&relay, "www.cache.test. A"),
        1,
        "{:?}",
        relay.seen()
    );
    assert!(metric(&stub, "zkdns_cache_hits_total") >= 8.0);
    assert_eq!(metric(&stub, "zkdns_cache_misses_total"), 1.0);
    assert!(metric(&stub, "zkdns_cache_entries") >= 1.0);

    // time in the cache comes off the TTL (RFC 2181 §8)
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let m = ask(&stub, "www.cache.test", RecordType::A);
    let ttl = m.answers[0].ttl;
    assert!(
        ttl <= first_ttl - 2 && ttl >= first_ttl - 20,
        "TTL {ttl} after 2.5 s (was {first_ttl})"
    );
    assert_eq!(reached(&relay, "www.cache.test. A"), 1);

    // --no-cache: every question goes upstream
    let plain = self::stub(&root, relay.addr(), &["--no-cache"]);
    relay.clear();
    for _ in 0..3 {
        let m = ask(&plain, "www.cache.test", RecordType::A);
        assert_eq!(addresses(&m), vec!["192.0.2.80"]);
        assert!(m.metadata.recursion_available && !m.metadata.authoritative);
    }
    assert_eq!(reached(&relay, "www.cache.test. A"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nxdomain_and_nodata_are_kept_with_their_soa() {
    let knot = Knot::start(&[("cache.test", ZONE)]);
    let relay = CountingRelay::start(knot.addr());
    let root = root().await;
    let stub = stub(&root, relay.addr(), &[]);
    for (name, rtype, code) in [
        ("nope.cache.test", RecordType::A, ResponseCode::NXDomain),
        ("www.cache.test", RecordType::AAAA, ResponseCode::NoError),
    ] {
        for _ in 0..4 {
            let m = ask(&stub, name, rtype);
            assert_eq!(rcode(&m), code, "{}", summary(&m));
            assert!(m.answers.is_empty());
            let soa = authority_soa(&m);
            assert_eq!(soa.len(), 1, "{}", summary(&m));
            assert!(soa[0].starts_with("cache.test. "), "{soa:?}");
            // the SOA's MINIMUM (30) bounds the time the answer is kept, and its TTL
            let ttl: u32 = soa[0].split(' ').nth(1).unwrap().parse().unwrap();
            assert!(ttl <= 30, "{soa:?}");
        }
        let question = format!("{name}. {rtype}");
        assert_eq!(reached(&relay, &question), 1, "{:?}", relay.seen());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_questions_in_flight_share_one_upstream_exchange() {
    let upstream = ScriptedUpstream::start();
    let root = root().await;
    let stub = stub(&root, upstream.addr(), &[]);
    let addr = stub.addr();
    // 40 clients at once, while the upstream takes 400 ms to answer
    let clients: Vec<_> = (0..40)
        .map(|_| {
            std::thread::spawn(move || {
                query_with(addr, "slow.burst.test", RecordType::A, udp(None))
            })
        })
        .collect();
    for c in clients {
        let m = c.join().unwrap();
        assert_eq!(addresses(&m), vec![SCRIPTED_ADDR], "{}", summary(&m));
    }
    assert_eq!(upstream.count("slow.burst.test."), 1);
    assert!(metric(&stub, "zkdns_forwards_coalesced_total") >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_answers_while_the_upstream_is_dead_and_fresh_ones_once_it_is_back() {
    let knot = Knot::start(&[("cache.test", ZONE)]);
    let relay = CountingRelay::start(knot.addr());
    let root = root().await;
    // the stale TTL is also how long the upstream is left alone after a failed refresh
    let stub = stub(&root, relay.addr(), &["--stale-ttl", "3s"]);
    let m = ask(&stub, "short.cache.test", RecordType::A);
    assert_eq!(addresses(&m), vec!["192.0.2.81"]);
    assert!(!has_ede(&m, 3));

    relay.set_silent(true);
    // past its TTL of 1 s: expired, but within the stale limit
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let m = ask(&stub, "short.cache.test", RecordType::A);
    assert_eq!(rcode(&m), ResponseCode::NoError, "{}", summary(&m));
    assert_eq!(addresses(&m), vec!["192.0.2.81"]);
    assert_eq!(m.answers[0].ttl, 3, "the stale TTL: {}", summary(&m));
    assert!(has_ede(&m, 3), "EDE 3 Stale Answer: {:?}", m.edns);
    // while the upstream stays down, the stale answer comes at once, without asking it
    let asked = reached(&relay, "short.cache.test. A");
    for _ in 0..5 {
        let m = ask(&stub, "short.cache.test", RecordType::A);
        assert!(has_ede(&m, 3));
    }
    assert_eq!(reached(&relay, "short.cache.test. A"), asked);
    // a name never seen gets SERVFAIL, and for a few seconds without asking again
    let m = ask(&stub, "www.cache.test", RecordType::A);
    assert_eq!(rcode(&m), ResponseCode::ServFail);
    let m = ask(&stub, "www.cache.test", RecordType::A);
    assert_eq!(rcode(&m), ResponseCode::ServFail);
    assert_eq!(reached(&relay, "www.cache.test. A"), 1);
    assert!(metric(&stub, "zkdns_cache_stale_answers_total") >= 6.0);

    relay.set_silent(false);
    // after the recheck time the upstream is asked again, and the answer is fresh
    eventually_eq(
        "a fresh answer once the upstream is back",
        Duration::from_secs(30),
        true,
        || {
            let m = ask(&stub, "short.cache.test", RecordType::A);
            !has_ede(&m, 3) && addresses(&m) == vec!["192.0.2.81"]
        },
    );
    eventually_eq(
        "www once the upstream is back",
        Duration::from_secs(30),
        vec!["192.0.2.80".to_string()],
        || addresses(&ask(&stub, "www.cache.test", RecordType::A)),
    );
}

/// VmRSS of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_new_names_stays_within_the_cache_size() {
    let knot = Knot::start(&[("cache.test", ZONE)]);
    let root = root().await;
    let stub = stub(&root, knot.addr(), &["--cache-size", "256KiB"]);
    let addr = stub.addr();
    let flood = |from: usize, to: usize| {
        let senders: Vec<_> = (0..4)
            .map(|t| {
                std::thread::spawn(move || {
                    for i in (from + t..to).step_by(4) {
                        let m = query_with(
                            addr,
                            &format!("n{i}.flood.cache.test"),
                            RecordType::A,
                            udp(None),
                        );
                        assert_eq!(addresses(&m), vec!["192.0.2.99"]);
                    }
                })
            })
            .collect();
        for s in senders {
            s.join().unwrap();
        }
    };
    flood(0, 4_000);
    let size = metric(&stub, "zkdns_cache_size_bytes");
    assert!(size <= 256.0 * 1024.0, "{size} bytes");
    let rss = rss_kib(stub.pid());
    flood(4_000, 16_000);
    let size = metric(&stub, "zkdns_cache_size_bytes");
    assert!(
        size <= 256.0 * 1024.0 && size > 128.0 * 1024.0,
        "{size} bytes"
    );
    assert!(metric(&stub, "zkdns_cache_evictions_total") >= 10_000.0);
    let grown = rss_kib(stub.pid()).saturating_sub(rss);
    assert!(grown < 2_048, "RSS grew {grown} KiB over 12,000 more names");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_upstream_replies_are_never_kept_and_are_counted_and_logged_once() {
    let upstream = ScriptedUpstream::start();
    let root = root().await;
    let stub = stub(&root, upstream.addr(), &[]);
    // a reply with another ID or question is ignored, and the real one taken (and kept)
    for name in ["wrongid.bad.test", "wrongq.bad.test"] {
        for _ in 0..2 {
            let m = ask(&stub, name, RecordType::A);
            assert_eq!(
                addresses(&m),
                vec![SCRIPTED_ADDR],
                "{name}: {}",
                summary(&m)
            );
        }
        assert_eq!(upstream.count(&format!("{name}.")), 1, "{name}");
    }
    // a malformed or oversized reply is refused: SERVFAIL (the only upstream), not kept
    for name in ["malformed.bad.test", "huge.bad.test"] {
        let m = ask(&stub, name, RecordType::A);
        assert_eq!(rcode(&m), ResponseCode::ServFail, "{name}: {}", summary(&m));
    }
    // a TTL with its top bit set: relayed as 0, never kept
    for _ in 0..2 {
        let m = ask(&stub, "ttltop.bad.test", RecordType::A);
        assert_eq!(addresses(&m), vec![SCRIPTED_ADDR]);
        assert_eq!(m.answers[0].ttl, 0);
    }
    assert_eq!(upstream.count("ttltop.bad.test."), 2);
    let samples = scrape_metrics(metrics_address(&stub));
    for reason in ["mismatch", "malformed", "oversized", "ttl_top_bit"] {
        let series = format!("zkdns_upstream_bad_replies_total{{reason=\"{reason}\"}}");
        assert!(
            samples.get(&series).copied().unwrap_or(0.0) >= 1.0,
            "{series}: {samples:?}"
        );
    }
    for kind in ["Mismatch", "Malformed", "Oversized", "TtlTopBit"] {
        assert_eq!(
            stub.count_lines(&["sent a", &format!("kind={kind}")]),
            1,
            "{kind}:\n{}",
            stub.logs()
        );
    }
}
