//! Authoritative answers of `zkdns serve` for every record type and every kind of negative
//! answer, plus EDNS, letter case, rotation, zone transfers, ANY and truncation, checked
//! against the real binary with hand-built queries and with `dig`.

use std::collections::BTreeSet;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

use crate::support::*;

const ZONE: &str = "cluster.local";
const WILD: &str = "wild.test";

/// Zone settings with every SOA field explicit; negative TTL = min(ttl 30, minimum 10) = 10.
const SETTINGS: &str = r#"{"ttl": 30,
    "soa": {"mname": "ns1.cluster.local.", "rname": "hostmaster.cluster.local.",
            "serial": 2024010101, "refresh": 3600, "retry": 600, "expire": 86400, "minimum": 10},
    "ns": ["ns1.cluster.local.", "ns2.cluster.local."]}"#;
const SOA_TEXT: &str = "ns1.cluster.local. hostmaster.cluster.local. 2024010101 3600 600 86400 10";

/// The zones every test here starts from: `cluster.local` (no apex wildcard, so NXDOMAIN is
/// reachable) and `wild.test` (wildcards at the apex and below `prod`).
async fn standard_zones(zk: &ZooKeeper, root: &str) {
    let c = zk.client().await;
    put_zone(&c, root, ZONE, SETTINGS).await;
    for (name, json) in [
        ("@", r#"{"MX": [{"preference": 10, "exchange": "mail"}]}"#),
        ("ns1", r#"{"A": ["10.0.0.53"]}"#),
        ("ns2", r#"{"A": ["10.0.0.54"]}"#),
        ("mail", r#"{"A": ["10.0.0.25"]}"#),
        (
            "web",
            r#"{"A": ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"], "AAAA": ["fd00::1"]}"#,
        ),
        ("www", r#"{"CNAME": "web"}"#),
        ("alias", r#"{"CNAME": "www.cluster.local."}"#),
        ("cross", r#"{"CNAME": "web.wild.test."}"#),
        ("loop-a", r#"{"CNAME": "loop-b"}"#),
        ("loop-b", r#"{"CNAME": "loop-a"}"#),
        ("txt", r#"{"TXT": ["v=spf1 -all", ["first", "second"]]}"#),
        (
            "_http._tcp.web",
            r#"{"SRV": [{"priority": 10, "weight": 5, "port": 8080, "target": "web"}]}"#,
        ),
        ("api.stage", r#"{"A": ["10.0.0.7"]}"#),
        ("empty", ""),
    ] {
        put_set(&c, root, ZONE, name, json).await;
    }
    put_zone(&c, root, WILD, "").await;
    for (name, json) in [
        ("*", r#"{"A": ["10.9.0.1"]}"#),
        ("*.prod", r#"{"A": ["10.9.0.2"], "TXT": ["wild prod"]}"#),
        ("api.prod", r#"{"A": ["10.9.0.3"]}"#),
        ("web", r#"{"A": ["10.9.0.4"]}"#),
    ] {
        put_set(&c, root, WILD, name, json).await;
    }
    close_session(c).await;
}

async fn start() -> Zkdns {
    let zk = ZooKeeper::shared();
    let root = unique_root();
    standard_zones(zk, &root).await;
    Zkdns::serve_ready(zk, &root, &[])
}

fn assert_authoritative(m: &Message, code: ResponseCode) {
    assert_eq!(rcode(m), code, "{}", summary(m));
    assert!(m.metadata.authoritative, "AA not set: {}", summary(m));
    assert!(!m.metadata.truncation, "TC set: {}", summary(m));
}

/// A negative answer: no answers, exactly the zone's SOA in AUTHORITY with the negative TTL.
fn assert_negative(m: &Message, code: ResponseCode, zone: &str, soa: &str, ttl: u32) {
    assert_authoritative(m, code);
    assert!(
        m.answers.is_empty(),
        "answers in a negative reply: {}",
        summary(m)
    );
    assert_eq!(
        authority_soa(m),
        vec![format!("{zone}. {ttl} IN SOA {soa}")],
        "{}",
        summary(m)
    );
}

fn additional_addresses(m: &Message) -> BTreeSet<String> {
    m.additionals
        .iter()
        .filter(|r| matches!(r.record_type(), RecordType::A | RecordType::AAAA))
        .map(|r| format!("{} {}", r.name, r.data))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_and_aaaa_answers() {
    let stub = start().await;
    let m = query(stub.addr(), "web.cluster.local", RecordType::A).await;
    assert_authoritative(&m, ResponseCode::NoError);
    assert_eq!(
        canonical(&m.answers),
        (1..=4)
            .map(|i| format!("web.cluster.local. 30 IN A 10.0.0.{i}"))
            .collect::<Vec<_>>()
    );
    let m = query(stub.addr(), "web.cluster.local", RecordType::AAAA).await;
    assert_authoritative(&m, ResponseCode::NoError);
    assert_eq!(
        canonical(&m.answers),
        vec!["web.cluster.local. 30 IN AAAA fd00::1"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cname_chain_inside_the_zone_is_followed() {
    let stub = start().await;
    let m = query(stub.addr(), "alias.cluster.local", RecordType::A).await;
    assert_authoritative(&m, ResponseCode::NoError);
    let mut want = vec![
        "alias.cluster.local. 30 IN CNAME www.cluster.local.".to_string(),
        "www.cluster.local. 30 IN CNAME web.cluster.local.".to_string(),
    ];
    want.extend((1..=4).map(|i| format!("web.cluster.local. 30 IN A 10.0.0.{i}")));
    want.sort();
    assert_eq!(canonical(&m.answers), want);
    // the chain comes in order: each CNAME's target owns the next record
    assert_eq!(m.answers[0].name.to_string(), "alias.cluster.local.");
    assert_eq!(m.answers[1].name.to_string(), "www.cluster.local.");
    // asking for the CNAME itself gives just that record
    let m = query(stub.addr(), "www.cluster.local", RecordType::CNAME).await;
    assert_eq!(
        canonical(&m.answers),
        vec!["www.cluster.local. 30 IN CNAME web.cluster.local."]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cname_into_another_served_zone_is_followed() {
    // Knot would stop at the CNAME (another zone); zkdns serves both zones, so it goes on
    let stub = start().await;
    let m = query(stub.addr(), "cross.cluster.local", RecordType::A).await;
    assert_authoritative(&m, ResponseCode::NoError);
    assert_eq!(
        canonical(&m.answers),
        vec![
            "cross.cluster.local. 30 IN CNAME web.wild.test.",
            "web.wild.test. 5 IN A 10.9.0.4",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_zones_named_with_zone_are_served() {
    let zk = ZooKeeper::shared();
    let root = unique_root();
    standard_zones(zk, &root).await;
    let stub = Zkdns::serve_ready(zk, &root, &["--zone", "Wild.Test."]);
    let m = query(stub.addr(), "web.wild.test", RecordType::A).await;
    assert_authoritative(&m, ResponseCode::NoError);
    assert_eq!(addresses(&m), vec!["10.9.0.4"]);
    // cluster.local is in ZooKeeper but not served: not ours, and no upstream
    let m = query(stub.addr(), "web.cluster.local", RecordType::A).await;
    assert_eq!(rcode(&m), ResponseCode::Refused, "{}", summary(&m));
    // nor are reverse names synthesised from its addresses
    let m = query(stub.addr(), "1.0.0.10.in-addr.arpa", RecordType::PTR).await;
    assert_eq!(
        rcode(&m),
        ResponseCode::Refused,
        "PTR of an unserved zone: {}",
        summary(&m)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cname_loop_is_cut() {
    let stub = start().await;
    let m = query(stub.addr(), "loop-a.cluster.local", RecordType::A).await;
    assert_authoritative(&m, ResponseCode::NoError);
    // each CNAME once (RFC 2181 §5: no duplicate records), then the chain stops
    assert_eq!(
        canonical(&m.answers),
        vec![
            "loop-a.cluster.local. 30 IN CNAME loop-b.cluster.local.",
            "loop-b.cluster.local. 30 IN CNAME loop-a.cluster.local.",
        ]
    );
    // a resolver's view: dig gets the answer, not a timeout or SERVFAIL
    let out = dig(stub.addr(), &["loop-a.cluster.local"]);
    assert_eq!(dig_status(&out).as_deref(), Some("NOERROR"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txt_with_several_strings() {
    let stub = start().await;
    let m = query(stub.addr(), "txt.cluster.local", RecordType::TXT).await;
    assert_authoritative(&m, ResponseCode::NoError);
    let mut strings: Vec<Vec<String>> = m
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::TXT(t) => t
                .txt_data
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect(),
            other => panic!("not TXT: {other:?}"),
        })
        .collect();
    strings.sort();
    assert_eq!(
        strings,
        vec![vec!["first", "second"], vec!["v=spf1 -all"]],
        "one TXT record per entry, the list one with two character-strings"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_with_target_addresses_in_additional() {
    let stub = start().await;
    let m = query(stub.addr(), "_http._tcp.web.cluster.local", RecordType::SRV).await;
    assert_authoritative(&m, ResponseCode::NoError);
    assert_eq!(
        canonical(&m.answers),
        vec!["_http._tcp.web.cluster.local. 30 IN SRV 10 5 8080 web.cluster.local."]
    );
    let mut want: BTreeSet<String> = (1..=4)
        .map(|i| format!("web.cluster.local. 10.0.0.{i}"))
        .collect();
    want.insert("web.cluster.local. fd00::1".to_string());
    assert_eq!(additional_addresses(&m), want, "{}", summary(&m));
    // _tcp.web exists only as the parent of a record set: NODATA
    let m = query(stub.addr(), "_tcp.web.cluster.local", RecordType::SRV).await;
    assert_negative(&m, ResponseCode::NoError, ZONE, SOA_TEXT, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mx_with_exchange_address_in_additional() {
    let stub = start().await;
    let m = query(stub.addr(), "cluster.local", RecordType::MX).await;
    assert_authoritative(&m, ResponseCode::NoError);
    assert_eq!(
        canonical(&m.answers),
        vec!["cluster.local. 30 IN MX 10 mail.cluster.local."]
    );
    assert_eq!(
        additional_addresses(&m),
        BTreeSet::from(["mail.cluster.local. 10.0.0.25".to_string()])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apex_soa_and_ns() {
    let stub = start().await;
    let m = query(stub.addr(), "cluster.local", RecordType::SOA).await;
    assert_authoritative(&m, ResponseCode::NoError);
    assert_eq!(
        canonical(&m.answers),
        vec![format!("cluster.local. 30 IN SOA {SOA_TEXT}")]
    );
    let m = query(stub.addr(), "cluster.local", RecordType::NS).await;
    assert_authoritative(&m, ResponseCode::NoError);
    assert_eq!(
        canonical(&m.answers),
        vec![
            "cluster.local. 30 IN NS ns1.cluster.local.",
            "cluster.local. 30 IN NS ns2.cluster.local."
        ]
    );
    assert_eq!(
        additional_addresses(&m),
        BTreeSet::from([
            "ns1.cluster.local. 10.0.0.53".to_string(),
            "ns2.cluster.local. 10.0.0.54".to_string()
        ])
    );
    // the apex has no A: NODATA with the SOA
    let m = query(stub.addr(), "cluster.local", RecordType::A).await;
    assert_negative(&m, ResponseCode::NoError, ZONE, SOA_TEXT, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ptr_is_synthesised_from_addresses() {
    let stub = start().await;
    let ptr_lines = |out: &str| -> Vec<String> {
        out.lines()
            .filter(|l| l.contains("PTR"))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    };
    let out = dig(stub.addr(), &["-x", "10.0.0.25", "+noall", "+answer"]);
    assert_eq!(
        ptr_lines(&out),
        vec!["25.0.0.10.in-addr.arpa. 30 IN PTR mail.cluster.local."],
        "dig -x 10.0.0.25:\n{out}"
    );
    let out = dig(stub.addr(), &["-x", "fd00::1", "+noall", "+answer"]);
    let rev = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.";
    assert_eq!(
        ptr_lines(&out),
        vec![format!("{rev} 30 IN PTR web.cluster.local.")],
        "dig -x fd00::1:\n{out}"
    );
    let m = query(stub.addr(), "1.0.0.10.in-addr.arpa", RecordType::PTR).await;
    assert_authoritative(&m, ResponseCode::NoError);
    assert_eq!(answers_of(&m, RecordType::PTR), vec!["web.cluster.local."]);
    // the table is keyed by address: any letter case finds it, a non-canonical name does not
    let m = query(stub.addr(), "1.0.0.10.IN-ADDR.Arpa", RecordType::PTR).await;
    assert_eq!(answers_of(&m, RecordType::PTR), vec!["web.cluster.local."]);
    let m = query(stub.addr(), "01.0.0.10.in-addr.arpa", RecordType::PTR).await;
    assert!(
        answers_of(&m, RecordType::PTR).is_empty(),
        "01.0.0.10.in-addr.arpa is not the reverse name of 10.0.0.1: {m:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcards_match_only_where_no_name_exists() {
    let stub = start().await;
    let a = |name: &str| query_blocking(stub.addr(), name, RecordType::A);
    // the apex wildcard, one and two labels down; the owner is the name asked
    for name in ["anything.wild.test", "a.b.wild.test"] {
        let m = a(name);
        assert_authoritative(&m, ResponseCode::NoError);
        assert_eq!(
            canonical(&m.answers),
            vec![format!("{name}. 5 IN A 10.9.0.1")],
            "{name}"
        );
    }
    // the wildcard below prod
    let m = a("x.prod.wild.test");
    assert_eq!(
        canonical(&m.answers),
        vec!["x.prod.wild.test. 5 IN A 10.9.0.2"]
    );
    let m = a("a.b.prod.wild.test");
    assert_eq!(
        canonical(&m.answers),
        vec!["a.b.prod.wild.test. 5 IN A 10.9.0.2"]
    );
    // an existing name wins over the wildcard
    let m = a("api.prod.wild.test");
    assert_eq!(
        canonical(&m.answers),
        vec!["api.prod.wild.test. 5 IN A 10.9.0.3"]
    );
    // below an existing name the apex wildcard does not apply (closest encloser is web)
    let m = a("x.web.wild.test");
    let soa = "ns.wild.test. hostmaster.wild.test.";
    assert_authoritative(&m, ResponseCode::NXDomain);
    assert!(m.answers.is_empty(), "{}", summary(&m));
    assert!(
        authority_soa(&m)
            .first()
            .is_some_and(|s| s.starts_with(&format!("wild.test. 5 IN SOA {soa}"))),
        "{}",
        summary(&m)
    );
    // prod itself exists (as the parent of api.prod and *.prod): NODATA, not the wildcard
    let m = a("prod.wild.test");
    assert_authoritative(&m, ResponseCode::NoError);
    assert!(m.answers.is_empty(), "{}", summary(&m));
    assert_eq!(authority_soa(&m).len(), 1, "{}", summary(&m));
    // a wildcard match without the type: NODATA
    let m = query_blocking(stub.addr(), "anything.wild.test", RecordType::AAAA);
    assert_authoritative(&m, ResponseCode::NoError);
    assert!(m.answers.is_empty(), "{}", summary(&m));
    assert_eq!(authority_soa(&m).len(), 1, "{}", summary(&m));
    // other types at a wildcard
    let m = query_blocking(stub.addr(), "q.prod.wild.test", RecordType::TXT);
    assert_eq!(
        canonical(&m.answers),
        vec!["q.prod.wild.test. 5 IN TXT \"wild prod\""]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_non_terminal_is_nodata() {
    let stub = start().await;
    let m = query(stub.addr(), "stage.cluster.local", RecordType::A).await;
    assert_negative(&m, ResponseCode::NoError, ZONE, SOA_TEXT, 10);
    // a record set with no records (and no members) also exists
    let m = query(stub.addr(), "empty.cluster.local", RecordType::A).await;
    assert_negative(&m, ResponseCode::NoError, ZONE, SOA_TEXT, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nxdomain_and_nodata_carry_the_zone_soa() {
    let stub = start().await;
    for name in [
        "nope.cluster.local",
        "x.web.cluster.local",
        "a.b.c.cluster.local",
    ] {
        let m = query(stub.addr(), name, RecordType::A).await;
        assert_negative(&m, ResponseCode::NXDomain, ZONE, SOA_TEXT, 10);
    }
    let m = query(stub.addr(), "web.cluster.local", RecordType::TXT).await;
    assert_negative(&m, ResponseCode::NoError, ZONE, SOA_TEXT, 10);
    let m = query(stub.addr(), "web.cluster.local", RecordType::MX).await;
    assert_negative(&m, ResponseCode::NoError, ZONE, SOA_TEXT, 10);
    // and through dig
    let out = dig(stub.addr(), &["nope.cluster.local"]);
    assert_eq!(dig_status(&out).as_deref(), Some("NXDOMAIN"), "{out}");
    assert!(out.contains("flags: qr aa"), "{out}");
    assert!(
        out.contains("cluster.local.\t\t10\tIN\tSOA\tns1.cluster.local."),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edns_is_answered_with_opt() {
    let stub = start().await;
    let with = query_with(
        stub.addr(),
        "web.cluster.local",
        RecordType::A,
        QueryOptions {
            edns: Some(4096),
            ..QueryOptions::default()
        },
    );
    let edns = with
        .edns
        .as_ref()
        .expect("OPT in the reply to an EDNS query");
    assert_eq!(edns.version(), 0);
    assert!(edns.max_payload() >= 512, "{edns:?}");
    let without = query_with(
        stub.addr(),
        "web.cluster.local",
        RecordType::A,
        QueryOptions {
            edns: None,
            ..QueryOptions::default()
        },
    );
    assert!(without.edns.is_none(), "OPT in the reply to a plain query");
    // negative answers too
    let m = query(stub.addr(), "nope.cluster.local", RecordType::A).await;
    assert!(m.edns.is_some(), "{}", summary(&m));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn question_is_echoed_in_the_clients_letter_case() {
    let stub = start().await;
    let msg = build_query("WeB.Cluster.LOCAL", RecordType::A, QueryOptions::default());
    let packet = msg.to_vec().unwrap();
    let reply =
        exchange_udp(stub.addr(), &packet, std::time::Duration::from_secs(3)).expect("reply");
    let qlen = "WeB.Cluster.LOCAL".len() + 2 + 4;
    assert_eq!(
        &reply[12..12 + qlen],
        &packet[12..12 + qlen],
        "question section differs from the query's"
    );
    let m = decode(&reply);
    assert_authoritative(&m, ResponseCode::NoError);
    assert_eq!(addresses(&m).len(), 4, "{}", summary(&m));
    // dig prints the question section as it came back
    let out = dig(stub.addr(), &["WeB.Cluster.LOCAL"]);
    assert!(out.contains(";WeB.Cluster.LOCAL.\t"), "{out}");
    assert!(!out.contains("WARNING: query name case"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_address_answers_rotate() {
    let stub = start().await;
    let mut firsts = BTreeSet::new();
    let mut sets = BTreeSet::new();
    for _ in 0..20 {
        let m = query_blocking(stub.addr(), "web.cluster.local", RecordType::A);
        firsts.insert(m.answers[0].data.to_string());
        sets.insert(addresses(&m));
    }
    assert!(
        firsts.len() > 1,
        "20 answers all started with the same address: {firsts:?}"
    );
    assert_eq!(
        sets.len(),
        1,
        "the set of addresses must not change: {sets:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tcp_connection_carries_several_queries() {
    // RFC 7766: pipelined queries on one connection are all answered
    let stub = start().await;
    let mut tcp = std::net::TcpStream::connect(stub.addr()).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(3)))
        .unwrap();
    let names = [
        "web.cluster.local",
        "mail.cluster.local",
        "nope.cluster.local",
    ];
    let mut frames = Vec::new();
    let mut ids = Vec::new();
    for name in names {
        let q = build_query(name, RecordType::A, QueryOptions::default());
        ids.push(q.metadata.id);
        let p = q.to_vec().unwrap();
        frames.extend_from_slice(&(p.len() as u16).to_be_bytes());
        frames.extend_from_slice(&p);
    }
    std::io::Write::write_all(&mut tcp, &frames).unwrap();
    let mut got = Vec::new();
    for _ in names {
        let mut len = [0u8; 2];
        std::io::Read::read_exact(&mut tcp, &mut len).expect("a reply per query");
        let mut reply = vec![0u8; u16::from_be_bytes(len) as usize];
        std::io::Read::read_exact(&mut tcp, &mut reply).unwrap();
        let m = decode(&reply);
        got.push((m.metadata.id, format!("{:?}", rcode(&m)), addresses(&m)));
    }
    got.sort();
    let mut want = vec![
        (
            ids[0],
            "NoError".to_string(),
            (1..=4).map(|i| format!("10.0.0.{i}")).collect(),
        ),
        (ids[1], "NoError".to_string(), vec!["10.0.0.25".to_string()]),
        (ids[2], "NXDomain".to_string(), vec![]),
    ];
    want.sort();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zone_transfers_are_refused() {
    let stub = start().await;
    let tcp = QueryOptions {
        tcp: true,
        ..QueryOptions::default()
    };
    let m = query_with(stub.addr(), "cluster.local", RecordType::AXFR, tcp);
    assert_eq!(rcode(&m), ResponseCode::Refused, "AXFR: {}", summary(&m));
    assert!(m.answers.is_empty());
    let m = query_with(stub.addr(), "cluster.local", RecordType::IXFR, tcp);
    assert_eq!(
        rcode(&m),
        ResponseCode::Refused,
        "IXFR/TCP: {}",
        summary(&m)
    );
    let m = query(stub.addr(), "cluster.local", RecordType::IXFR).await;
    assert_eq!(
        rcode(&m),
        ResponseCode::Refused,
        "IXFR/UDP: {}",
        summary(&m)
    );
    let out = dig(stub.addr(), &["AXFR", "cluster.local"]);
    assert!(out.contains("Transfer failed"), "dig AXFR:\n{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qtype_any_returns_the_names_records() {
    let stub = start().await;
    let m = query(stub.addr(), "web.cluster.local", RecordType::ANY).await;
    assert_authoritative(&m, ResponseCode::NoError);
    assert!(!m.answers.is_empty(), "{}", summary(&m));
    let web: BTreeSet<String> = (1..=4)
        .map(|i| format!("web.cluster.local. 30 IN A 10.0.0.{i}"))
        .chain(["web.cluster.local. 30 IN AAAA fd00::1".to_string()])
        .collect();
    for a in canonical(&m.answers) {
        assert!(
            web.contains(&a),
            "{a} is not a record of web: {}",
            summary(&m)
        );
    }
    // ANY at a name without records: NODATA
    let m = query(stub.addr(), "stage.cluster.local", RecordType::ANY).await;
    assert_negative(&m, ResponseCode::NoError, ZONE, SOA_TEXT, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_answers_truncate_over_udp_and_complete_over_tcp() {
    let zk = ZooKeeper::shared();
    let root = unique_root();
    let c = zk.client().await;
    put_zone(&c, &root, ZONE, SETTINGS).await;
    let addrs: Vec<String> = (1..=60).map(|i| format!("\"10.1.0.{i}\"")).collect();
    put_set(
        &c,
        &root,
        ZONE,
        "big",
        &format!(r#"{{"A": [{}]}}"#, addrs.join(",")),
    )
    .await;
    close_session(c).await;
    let stub = Zkdns::serve_ready(zk, &root, &[]);

    // no EDNS over UDP: at most 512 bytes, with TC
    let plain = QueryOptions {
        edns: None,
        ..QueryOptions::default()
    };
    let reply = query_raw(stub.addr(), "big.cluster.local", RecordType::A, plain).expect("reply");
    assert!(
        reply.len() <= 512,
        "{} bytes over UDP without EDNS",
        reply.len()
    );
    let m = decode(&reply);
    assert!(m.metadata.truncation, "TC not set: {}", summary(&m));
    assert_eq!(rcode(&m), ResponseCode::NoError);
    assert_eq!(
        m.queries.len(),
        1,
        "the question stays in a truncated reply"
    );

    // TCP: all 60
    let tcp = QueryOptions {
        tcp: true,
        edns: None,
        ..QueryOptions::default()
    };
    let m = query_with(stub.addr(), "big.cluster.local", RecordType::A, tcp);
    assert!(!m.metadata.truncation);
    assert_eq!(addresses(&m).len(), 60, "{}", summary(&m));
    let out = dig(stub.addr(), &["+tcp", "+noedns", "big.cluster.local", "A"]);
    assert!(out.contains("ANSWER: 60,"), "dig +tcp:\n{out}");
    // dig over UDP sees TC, and without +ignore retries over TCP by itself
    let out = dig(stub.addr(), &["+noedns", "+ignore", "big.cluster.local"]);
    assert!(out.contains(" tc"), "dig +ignore shows no tc flag:\n{out}");
    let out = dig(stub.addr(), &["+noedns", "big.cluster.local"]);
    assert!(out.contains("ANSWER: 60,"), "dig retry over TCP:\n{out}");

    // EDNS with 1232 bytes: ~1000 bytes fit, no truncation
    let m = query_blocking(stub.addr(), "big.cluster.local", RecordType::A);
    assert!(!m.metadata.truncation, "{}", summary(&m));
    assert_eq!(addresses(&m).len(), 60);
}
