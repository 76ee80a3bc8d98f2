//! The bad-input table of docs/data.md ("Bad input"), row by row, through the real binary and a
//! real ZooKeeper: each bad znode is skipped with one warning that names its path and the
//! reason, never reaches an answer or the hosts file, and every good name keeps answering.
//! Then the limits: data over the size limit, and 10,000 addresses under one name (UDP: TC;
//! TCP: as many as one 64 KiB message holds, with TC).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use zkdns::testkit::build_query;
use zookeeper_client::{Acls, CreateMode};

use crate::support::*;

const ZONE: &str = "bad.test";
const WARNING: &str = "skipping bad znode";

/// What a bad node answers: its name does not exist, or exists without records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shows {
    NxDomain,
    NoData,
    /// A label over 63 bytes or a name over 255: no query can ask for it (FORMERR)
    Unaskable,
}

/// One row: the record-set znode name, its data, a piece of the logged reason, and what the
/// name answers. Bad addresses are all in 10.7.1.0/24, so none may appear anywhere.
fn rows() -> Vec<(String, String, &'static str, Shows)> {
    use Shows::*;
    let long_label = "l".repeat(64);
    let long_name = vec!["n".repeat(60); 5].join(".");
    // with ".bad.test", 4 + 4 * 62 + 8 = 260 bytes of text: 262 in wire format
    let over_255 = vec!["o".repeat(62); 4].join(".");
    let txt_record = vec![format!("\"{}\"", "x".repeat(255)); 300].join(",");
    let rows: Vec<(&str, String, &str, Shows)> = vec![
        // names: the znode's own, and names in the data
        (
            "a b",
            r#"{"A": ["10.7.1.1"]}"#.into(),
            r#"bad record-set name: label "a b" has a character"#,
            NxDomain,
        ),
        (
            "w$b",
            r#"{"A": ["10.7.1.2"]}"#.into(),
            "bad record-set name",
            NxDomain,
        ),
        (
            "wéb",
            r#"{"A": ["10.7.1.3"]}"#.into(),
            "bad record-set name",
            NxDomain,
        ),
        (
            "Upper",
            r#"{"A": ["10.7.1.4"]}"#.into(),
            "has upper-case letters",
            NxDomain,
        ),
        (
            &long_label,
            r#"{"A": ["10.7.1.5"]}"#.into(),
            "is longer than 63 bytes",
            Unaskable,
        ),
        (
            &over_255,
            r#"{"A": ["10.7.1.24"]}"#.into(),
            "is longer than 255 bytes",
            Unaskable,
        ),
        (
            "space-in-data",
            r#"{"CNAME": "a b.example."}"#.into(),
            r#"CNAME: label "a b" has a character"#,
            NoData,
        ),
        (
            "control-in-data",
            r#"{"CNAME": "a\u0001b.example."}"#.into(),
            r#"CNAME: label "a\u{1}b" has a character"#,
            NoData,
        ),
        (
            "non-ldh-in-data",
            r#"{"PTR": ["a$b.example."], "A": ["10.7.1.6"]}"#.into(),
            r#"PTR: label "a$b" has a character"#,
            NoData,
        ),
        (
            "label-in-data",
            format!(
                r#"{{"A": ["10.7.1.7"], "MX": [{{"preference": 1, "exchange": "{long_label}"}}]}}"#
            ),
            "MX exchange: label",
            NoData,
        ),
        (
            "long-name-in-data",
            format!(r#"{{"CNAME": "{long_name}."}}"#),
            "is longer than 255 bytes",
            NoData,
        ),
        // addresses with trailing garbage, and other bad addresses
        (
            "addr-garbage",
            r#"{"A": ["10.7.1.8x"]}"#.into(),
            "invalid IPv4 address syntax",
            NoData,
        ),
        (
            "addr-space",
            r#"{"A": ["10.7.1.9 "]}"#.into(),
            "invalid IPv4 address syntax",
            NoData,
        ),
        (
            "addr-prefix",
            r#"{"A": ["10.7.1.10/24"]}"#.into(),
            "invalid IPv4 address syntax",
            NoData,
        ),
        (
            "addr-octal",
            r#"{"A": ["010.7.1.11"]}"#.into(),
            "invalid IPv4 address syntax",
            NoData,
        ),
        (
            "addr-scope",
            r#"{"AAAA": ["fd00::7:1:12%eth0"]}"#.into(),
            "invalid IPv6 address syntax",
            NoData,
        ),
        // TXT: a string over 255 bytes, a record over 65535, a record of no strings
        (
            "txt-256",
            format!(r#"{{"A": ["10.7.1.13"], "TXT": ["{}"]}}"#, "t".repeat(256)),
            "TXT string of 256 bytes is longer than 255",
            NoData,
        ),
        (
            "txt-record",
            format!(r#"{{"A": ["10.7.1.14"], "TXT": [[{txt_record}]]}}"#),
            "TXT record of 76800 bytes is longer than 65535",
            NoData,
        ),
        (
            "txt-empty",
            r#"{"A": ["10.7.1.15"], "TXT": [[]]}"#.into(),
            "TXT record without a string",
            NoData,
        ),
        // unknown keys (of any type), known keys of the wrong type or range
        (
            "unknown-key",
            r#"{"AAA": ["10.7.1.16"]}"#.into(),
            "unknown field `AAA`",
            NoData,
        ),
        (
            "unknown-key-number",
            r#"{"A": ["10.7.1.17"], "weight": 5}"#.into(),
            "unknown field `weight`",
            NoData,
        ),
        (
            "a-not-a-list",
            r#"{"A": "10.7.1.18"}"#.into(),
            "invalid type: string \"10.7.1.18\", expected a sequence",
            NoData,
        ),
        (
            "ttl-string",
            r#"{"A": ["10.7.1.19"], "ttl": "5"}"#.into(),
            "invalid type: string \"5\", expected u32",
            NoData,
        ),
        (
            "ttl-negative",
            r#"{"A": ["10.7.1.20"], "ttl": -1}"#.into(),
            "invalid value: integer `-1`, expected u32",
            NoData,
        ),
        (
            "srv-port",
            r#"{"A": ["10.7.1.21"], "SRV": [{"port": 70000, "target": "web"}]}"#.into(),
            "invalid value: integer `70000`, expected u16",
            NoData,
        ),
        (
            "not-json",
            "{\"A\": [\"10.7.1.22\"]".into(),
            "not valid JSON for this node: EOF while parsing",
            NoData,
        ),
        // CNAME rules
        (
            "cname-and-a",
            r#"{"CNAME": "web", "A": ["10.7.1.23"]}"#.into(),
            "CNAME cannot sit beside other records",
            NoData,
        ),
        (
            "@",
            r#"{"CNAME": "web.bad.test."}"#.into(),
            "a CNAME cannot sit at the zone apex",
            NoData,
        ),
    ];
    rows.into_iter()
        .map(|(n, d, r, s)| (n.to_string(), d, r, s))
        .collect()
}

/// The name a row's znode stands for (sent as raw bytes: hickory will not build a name with a
/// space or a `$`).
fn query_name(set: &str) -> String {
    if set == "@" {
        ZONE.to_string()
    } else {
        format!("{set}.{ZONE}")
    }
}

/// Sends a hand-built query (any bytes in the name) over UDP and decodes the reply.
fn ask_raw(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let packet = build_query(rand::random(), name, u16::from(qtype), 1, Some(1232));
    let reply = exchange_udp(server, &packet, Duration::from_secs(3))
        .or_else(|| exchange_udp(server, &packet, Duration::from_secs(3)))
        .unwrap_or_else(|| panic!("no reply for {name:?} {qtype}"));
    decode(&reply)
}

/// Addresses that must never be served: every bad row's are in 10.7.1.0/24.
fn assert_no_bad_address(what: &str, text: &str) {
    assert!(
        !text.contains("10.7.1."),
        "a bad node's address reached {what}:\n{text}"
    );
}

/// Every row of the table: one warning with the path and the reason, the name answers
/// NXDOMAIN or NODATA and never a bad record, the good names answer, and the hosts file
/// holds the good names only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_znode_is_skipped_logged_once_and_never_served() {
    let zk = ZooKeeper::shared();
    let root = unique_root();
    let c = zk.client().await;
    put_zone(&c, &root, ZONE, "").await;
    put_set(&c, &root, ZONE, "web", r#"{"A": ["10.7.0.1"]}"#).await;
    put_set(&c, &root, ZONE, "loop1", r#"{"CNAME": "loop2"}"#).await;
    put_set(&c, &root, ZONE, "loop2", r#"{"CNAME": "loop1"}"#).await;
    put_set(&c, &root, ZONE, "self", r#"{"CNAME": "self"}"#).await;
    // a member with bad data beside a good one: the set answers the good one
    put_set(&c, &root, ZONE, "svc", "").await;
    add_member(&c, &root, ZONE, "svc", "good", r#"{"A": ["10.7.0.2"]}"#).await;
    add_member(
        &c,
        &root,
        ZONE,
        "svc",
        "bad",
        r#"{"A": ["10.7.1.99"], "CNAME": "x"}"#,
    )
    .await;
    // zone settings of the wrong type: the zone is served with its defaults
    put_zone(&c, &root, "settings.test", r#"{"ttl": "60"}"#).await;
    put_set(&c, &root, "settings.test", "web", r#"{"A": ["10.7.0.3"]}"#).await;
    let rows = rows();
    for (name, data, _, _) in &rows {
        put_set(&c, &root, ZONE, name, data).await;
    }
    // ZooKeeper itself refuses control characters in node names
    let ctl = set_path(&root, ZONE, "a\u{1}b");
    let refused = c
        .create(
            &ctl,
            b"{}",
            &CreateMode::Persistent.with_acls(Acls::anyone_all()),
        )
        .await;
    assert!(refused.is_err(), "ZooKeeper took {ctl:?}");

    let stub = Zkdns::serve_ready(zk, &root, &[]);
    let logs = stub.logs();
    // the good names
    let m = query_blocking(stub.addr(), "web.bad.test", RecordType::A);
    assert_eq!(addresses(&m), ["10.7.0.1"], "{}", summary(&m));
    let m = query_blocking(stub.addr(), "svc.bad.test", RecordType::A);
    assert_eq!(addresses(&m), ["10.7.0.2"], "{}", summary(&m));
    let m = query_blocking(stub.addr(), "web.settings.test", RecordType::A);
    assert_eq!(addresses(&m), ["10.7.0.3"], "{}", summary(&m));
    assert_eq!(m.answers[0].ttl, 5, "default TTL after bad zone settings");
    // CNAME loops are valid data: answered up to where the chain repeats, no warning
    for (name, chain) in [("loop1.bad.test", 2), ("self.bad.test", 1)] {
        let m = query_blocking(stub.addr(), name, RecordType::A);
        assert_eq!(rcode(&m), ResponseCode::NoError, "{}", summary(&m));
        assert_eq!(m.answers.len(), chain, "{name}: {}", summary(&m));
    }

    let mut table = Vec::new();
    let mut check = |path: String, reason: &str| {
        let lines: Vec<&str> = logs
            .lines()
            .filter(|l| l.contains(WARNING) && l.contains(&format!("path=\"{path}\"")))
            .collect();
        assert_eq!(lines.len(), 1, "one warning for {path}:\n{logs}");
        assert!(
            lines[0].contains(reason),
            "reason {reason:?} for {path}:\n{}",
            lines[0]
        );
        table.push(
            lines[0]
                .split("WARN ")
                .nth(1)
                .unwrap_or(lines[0])
                .to_string(),
        );
    };
    for (name, _, reason, shows) in &rows {
        check(set_path(&root, ZONE, name), reason);
        let qname = query_name(name);
        for qtype in [
            RecordType::A,
            RecordType::AAAA,
            RecordType::TXT,
            RecordType::ANY,
        ] {
            let m = ask_raw(stub.addr(), &qname, qtype);
            let want = match shows {
                Shows::NxDomain => ResponseCode::NXDomain,
                Shows::NoData => ResponseCode::NoError,
                Shows::Unaskable => ResponseCode::FormErr,
            };
            assert_eq!(rcode(&m), want, "{qname:?} {qtype}: {}", summary(&m));
            // the apex answers its SOA and NS for ANY; nothing else may be there
            let records: Vec<_> = m
                .answers
                .iter()
                .filter(|r| !matches!(r.record_type(), RecordType::SOA | RecordType::NS))
                .collect();
            assert!(records.is_empty(), "{qname:?} {qtype}: {}", summary(&m));
        }
    }
    check(
        format!("{}/bad", set_path(&root, ZONE, "svc")),
        "CNAME cannot sit beside",
    );
    check(
        zone_path(&root, "settings.test"),
        "using default zone settings",
    );
    assert_eq!(
        stub.count_lines(&[WARNING]),
        rows.len() + 2,
        "warnings for the bad nodes only:\n{logs}"
    );
    eprintln!("the warnings:\n{}", table.join("\n"));

    // the hosts file gets the good names and nothing else
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hosts");
    std::fs::write(&file, "127.0.0.1\tlocalhost\n").unwrap();
    let (code, stderr) = hosts_once(&zk.connect_string(), &root, &file, &[]);
    assert_eq!(code, 0, "{stderr}");
    let hosts = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        hosts,
        "127.0.0.1\tlocalhost\n# BEGIN zkdns\n10.7.0.2\tsvc.bad.test\n10.7.0.1\tweb.bad.test\n\
         10.7.0.3\tweb.settings.test\n# END zkdns\n"
    );
    assert_no_bad_address("the hosts file", &hosts);
    close_session(c).await;
}

/// Over the size limit. ZooKeeper caps a znode at jute.maxbuffer (1 MiB less one byte by
/// default): a bigger write fails and zkdns never sees it. A server configured for more can
/// hold a bigger node: zkdns refuses it at its own limit (1 MiB) and keeps serving the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_over_the_size_limit_never_reaches_the_map() {
    let payload = {
        let mut p = br#"{"A": ["10.7.1.30"]}"#.to_vec();
        p.resize(1_200_000, b' '); // JSON allows the trailing blanks
        p
    };
    // the default server refuses the write
    let zk = ZooKeeper::shared();
    let root = unique_root();
    let c = zk.client().await;
    put_zone(&c, &root, ZONE, "").await;
    let path = set_path(&root, ZONE, "big");
    let write = c
        .create(
            &path,
            &payload,
            &CreateMode::Persistent.with_acls(Acls::anyone_all()),
        )
        .await;
    assert!(write.is_err(), "ZooKeeper took {} bytes", payload.len());
    drop(c);

    // a server that takes 4 MiB: zkdns skips the node
    let zk = ZooKeeper::start_with_jvm_flags("-Djute.maxbuffer=4194304");
    let c = zk.client().await;
    put_zone(&c, &root, ZONE, "").await;
    put_set(&c, &root, ZONE, "web", r#"{"A": ["10.7.0.1"]}"#).await;
    put_set(
        &c,
        &root,
        ZONE,
        "big",
        std::str::from_utf8(&payload).unwrap(),
    )
    .await;
    let stub = Zkdns::serve_ready(&zk, &root, &[]);
    let m = query_blocking(stub.addr(), "web.bad.test", RecordType::A);
    assert_eq!(addresses(&m), ["10.7.0.1"]);
    let m = query_blocking(stub.addr(), "big.bad.test", RecordType::A);
    assert_eq!(
        (rcode(&m), m.answers.len()),
        (ResponseCode::NoError, 0),
        "{}",
        summary(&m)
    );
    assert_eq!(
        stub.count_lines(&[
            WARNING,
            &format!("path=\"{path}\""),
            "payload of 1200000 bytes is over the 1048576 byte limit"
        ]),
        1,
        "{}",
        stub.logs()
    );
    close_session(c).await;
}

/// A records of one name that fit one TCP message with EDNS: what the header, the question
/// and OPT leave of 65,535 bytes, 16 bytes per A record (compressed owner).
fn a_records_in_one_message(qname: &str) -> usize {
    a_records_within(qname, 65535, true)
}

/// A records of one name that fit `size` bytes, with OPT when `edns`.
fn a_records_within(qname: &str, size: usize, edns: bool) -> usize {
    let question = qname.len() + 2 + 4;
    (size - 12 - question - if edns { 11 } else { 0 }) / 16
}

/// 10,000 addresses under one name. UDP: as many whole records as the client's size holds
/// (30 without EDNS, 74 at 1232), with TC so that clients retry over TCP, and for those that
/// never do. TCP: as many whole records as one message holds (4,093 here). Both rotate
/// between queries and set TC because the RRset is not complete (RFC 2181 §9). glibc takes
/// the TCP answer; the hosts file gets every address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_addresses_under_one_name() {
    const N: usize = 10_000;
    let all: Vec<String> = (0..N)
        .map(|i| format!("10.8.{}.{}", i / 250, i % 250 + 1))
        .collect();
    let zk = ZooKeeper::shared();
    let root = unique_root();
    let c = zk.client().await;
    put_zone(&c, &root, ZONE, "").await;
    let json = format!(r#"{{"A": ["{}"]}}"#, all.join("\",\""));
    put_set(&c, &root, ZONE, "many", &json).await;
    let stub = Zkdns::serve_ready(zk, &root, &[]);
    let all: BTreeSet<String> = all.into_iter().collect();

    for (edns, size) in [(Some(1232), 1232), (None, 512)] {
        let opts = QueryOptions {
            edns,
            ..QueryOptions::default()
        };
        let m = query_with(stub.addr(), "many.bad.test", RecordType::A, opts);
        let got = addresses(&m);
        assert!(m.metadata.truncation, "UDP, EDNS {edns:?}: {}", summary(&m));
        assert_eq!(
            got.len(),
            a_records_within("many.bad.test", size, edns.is_some()),
            "UDP, EDNS {edns:?}: {}",
            summary(&m)
        );
        assert!(got.iter().all(|a| all.contains(a)), "{}", summary(&m));
    }
    let tcp = QueryOptions {
        tcp: true,
        ..QueryOptions::default()
    };
    let mut firsts = BTreeSet::new();
    for _ in 0..5 {
        let m = query_with(stub.addr(), "many.bad.test", RecordType::A, tcp);
        assert!(
            m.metadata.truncation,
            "TC over TCP: the RRset is not complete"
        );
        let got = addresses(&m);
        assert_eq!(got.len(), a_records_in_one_message("many.bad.test"));
        assert_eq!(
            got.iter().collect::<BTreeSet<_>>().len(),
            got.len(),
            "duplicates"
        );
        assert!(
            got.iter().all(|a| all.contains(a)),
            "an address not in the set"
        );
        firsts.insert(m.answers[0].data.to_string());
    }
    // the rotation counter is per thread: five queries share a thread at least twice
    assert!(
        firsts.len() >= 2,
        "the answer rotates between queries: {firsts:?}"
    );
    // dig: retries over TCP after the TC over UDP, and shows what one message holds
    let out = dig(stub.addr(), &["many.bad.test", "A"]);
    assert!(out.contains("Truncated, retrying in TCP mode"), "{out}");
    let answers = format!("ANSWER: {},", a_records_in_one_message("many.bad.test"));
    assert!(out.contains(&answers), "{out}");

    // glibc: the TC over UDP sends it to TCP, where it takes what the message holds
    if !is_root() {
        eprintln!("skipped getent: needs root for port 53 and a mount namespace");
    } else if let Some(listen) = free_port_53() {
        let system = Zkdns::serve_ready(zk, &root, &["--listen", &listen.to_string()]);
        let SocketAddr::V4(v4) = listen else {
            unreachable!("an IPv4 loopback address")
        };
        let dir = tempfile::tempdir().unwrap();
        let (code, out) = getent(dir.path(), *v4.ip(), "ahostsv4 many.bad.test");
        assert_eq!(code, 0, "getent ahostsv4 many.bad.test: {out}");
        let got: BTreeSet<&str> = out
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert!(
            !got.is_empty() && got.iter().all(|a| all.contains(*a)),
            "{out}"
        );
        drop(system);
    }

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hosts");
    let (code, stderr) = hosts_once(&zk.connect_string(), &root, &file, &[]);
    assert_eq!(code, 0, "{stderr}");
    let hosts = std::fs::read_to_string(&file).unwrap();
    assert_eq!(hosts.matches("\tmany.bad.test\n").count(), N);
    close_session(c).await;
}

/// 10,000 registered members under one name, as 10,000 containers of one service would make.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_members_under_one_name() {
    const N: usize = 10_000;
    let zk = ZooKeeper::shared();
    let root = unique_root();
    let c = zk.client().await;
    put_zone(&c, &root, ZONE, "").await;
    put_set(&c, &root, ZONE, "svc", "").await;
    let stub = Zkdns::serve_ready(zk, &root, &[]);
    let started = Instant::now();
    let path = set_path(&root, ZONE, "svc");
    let creates: Vec<_> = (0..N)
        .map(|i| {
            let data = format!(r#"{{"A": ["10.9.{}.{}"]}}"#, i / 250, i % 250 + 1);
            let member = format!("{path}/m{i}");
            let c = &c;
            async move {
                c.create(
                    &member,
                    data.as_bytes(),
                    &CreateMode::Ephemeral.with_acls(Acls::anyone_all()),
                )
                .await
                .unwrap_or_else(|e| panic!("create {member}: {e}"))
            }
        })
        .collect();
    futures_util::future::join_all(creates).await;
    let written = started.elapsed();
    let tcp = QueryOptions {
        tcp: true,
        ..QueryOptions::default()
    };
    eventually_eq(
        "every member in the answer",
        Duration::from_secs(3600),
        a_records_in_one_message("svc.bad.test"),
        || addresses(&query_with(stub.addr(), "svc.bad.test", RecordType::A, tcp)).len(),
    );
    eprintln!(
        "{N} members written in {written:?}, answered after {:?}",
        started.elapsed()
    );
    close_session(c).await;
}
