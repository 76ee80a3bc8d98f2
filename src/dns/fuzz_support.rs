//! Entry points into the query path and the znode decoders for the cargo-fuzz targets
//! (`fuzz/`) and the bounded fuzzing runs of the test suite: a fixed test [`Snapshot`] built
//! through the same [`Tree`] the watcher fills, [`answer_packet`] (the listeners' own code,
//! minus the socket), [`check_reply`] (the rules every reply must keep), [`check_znode`]
//! (a payload applied as a watch event, then queried), and the generators of packets and
//! payloads. Not used by `serve`.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use rand::Rng;

use crate::dns::forward::Forwarder;
use crate::dns::server::{Acl, Handler, StalePolicy};
use crate::dns::wire::{self, EDNS_UDP, HEADER_LEN, MIN_UDP, Reject, TYPE_OPT, rcode};
use crate::metrics::Metrics;
use crate::names::ZoneName;
use crate::records::decode_record_set;
use crate::store::{Snapshot, Store};
use crate::zk::layout::Layout;
use crate::zk::tree::{Applied, NodeState, Tree};

/// What the server does with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The reply is in the buffer.
    Reply,
    /// The name is not in the zones: it goes to the upstreams.
    Forward,
    /// No reply at all (a response, or shorter than a header).
    Silent,
}

/// The client address the fuzzers use: loopback, always admitted.
pub const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// The root the test tree lives under.
pub const ROOT: &str = "/zkdns";

/// How current the map is, as the handler sees it: the three ways `serve` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapState {
    /// Synced and connected to ZooKeeper.
    Fresh,
    /// ZooKeeper away: TTLs capped at [`STALE_TTL`], EDE 3 (RFC 8767).
    Stale,
    /// ZooKeeper away for longer than stale data may be served: SERVFAIL.
    TooOld,
}

/// The TTL cap of stale answers in the harness (serve's default).
pub const STALE_TTL: u32 = 30;

/// A handler as `serve --no-upstream` builds it, with no zone waiting for its first read,
/// whose store is in `state`.
fn handler(state: MapState) -> &'static Handler {
    static HANDLERS: [OnceLock<Handler>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    HANDLERS[state as usize].get_or_init(|| {
        let store = Store::new();
        let max_age = match state {
            MapState::Fresh => {
                store.publish(Snapshot::default());
                Duration::from_secs(3600)
            }
            MapState::Stale => Duration::from_secs(3600),
            MapState::TooOld => {
                std::thread::sleep(Duration::from_millis(2));
                Duration::ZERO
            }
        };
        Handler::new(
            store,
            Arc::new(Metrics::new(1)),
            Forwarder::new(Vec::new(), Duration::from_secs(1)),
            Acl::default(),
            &[],
        )
        .with_stale_policy(StalePolicy {
            ttl: STALE_TTL,
            max_age,
        })
    })
}

/// Answers `packet` from `snap` exactly as a UDP worker or a TCP connection does, into `out`,
/// with the map fresh.
pub fn answer_packet(
    snap: &Snapshot,
    packet: &[u8],
    client: IpAddr,
    tcp: bool,
    out: &mut Vec<u8>,
) -> Verdict {
    answer_packet_in(MapState::Fresh, snap, packet, client, tcp, out)
}

/// [`answer_packet`] with the map in `state`.
pub fn answer_packet_in(
    state: MapState,
    snap: &Snapshot,
    packet: &[u8],
    client: IpAddr,
    tcp: bool,
    out: &mut Vec<u8>,
) -> Verdict {
    let h = handler(state);
    match h.answer_now(snap, packet, client, tcp, out, h.metrics.shard(0)) {
        Some(true) => Verdict::Reply,
        Some(false) => Verdict::Forward,
        None => Verdict::Silent,
    }
}

/// The nodes of the test tree: (path below `<root>/zones`, data). Every kind of record,
/// CNAME chains, loops and exits, wildcards, empty non-terminals, a nested zone, members,
/// bad nodes, and sets too large for UDP (`big`) and for one TCP message (`huge`).
pub fn test_nodes() -> &'static [(String, String)] {
    static NODES: OnceLock<Vec<(String, String)>> = OnceLock::new();
    NODES.get_or_init(build_test_nodes)
}

fn build_test_nodes() -> Vec<(String, String)> {
    let mut nodes: Vec<(String, String)> = [
        ("fz.test", r#"{"ttl": 30, "soa": {"minimum": 10}}"#),
        (
            "fz.test/@",
            r#"{"A": ["10.0.0.10"], "MX": [{"preference": 10, "exchange": "mail"}], "TXT": ["apex"]}"#,
        ),
        (
            "fz.test/web",
            r#"{"A": ["10.0.0.1", "10.0.0.2"], "AAAA": ["fd00::1"]}"#,
        ),
        ("fz.test/single", r#"{"A": ["10.0.0.3"], "ttl": 60}"#),
        ("fz.test/mail", r#"{"A": ["10.0.0.25"]}"#),
        ("fz.test/alias", r#"{"CNAME": "web"}"#),
        ("fz.test/loop1", r#"{"CNAME": "loop2"}"#),
        ("fz.test/loop2", r#"{"CNAME": "loop1"}"#),
        ("fz.test/self", r#"{"CNAME": "self"}"#),
        ("fz.test/out", r#"{"CNAME": "www.example.com."}"#),
        ("fz.test/into-sub", r#"{"CNAME": "x.sub.fz.test."}"#),
        ("fz.test/*.wild", r#"{"A": ["10.0.0.4"], "TXT": ["wild"]}"#),
        (
            "fz.test/_http._tcp.web",
            r#"{"SRV": [{"priority": 0, "weight": 5, "port": 80, "target": "web"},
                        {"port": 81, "target": "missing"}]}"#,
        ),
        ("fz.test/empty", ""),
        ("fz.test/deep.x.y", r#"{"A": ["10.0.0.5"]}"#),
        ("fz.test/ptr", r#"{"PTR": ["host.example."]}"#),
        ("fz.test/svc", ""),
        ("fz.test/svc/m1", r#"{"A": ["10.0.1.1"]}"#),
        (
            "fz.test/svc/m2",
            r#"{"A": ["10.0.1.2"], "SRV": [{"port": 8080, "target": "svc"}]}"#,
        ),
        ("fz.test/bad", "{not json"),
        ("fz.test/Bad Name", r#"{"A": ["10.0.0.99"]}"#),
        ("sub.fz.test", ""),
        ("sub.fz.test/x", r#"{"A": ["10.0.2.1"]}"#),
        ("other.test", r#"{"ns": ["ns1.other.test."]}"#),
        ("other.test/ns1", r#"{"A": ["10.0.3.53"]}"#),
    ]
    .iter()
    .map(|(p, d)| (p.to_string(), d.to_string()))
    .collect();
    let txt = format!(
        r#"{{"TXT": ["v=1", ["a", "b"], "{}", ""]}}"#,
        "x".repeat(255)
    );
    nodes.push(("fz.test/txt".into(), txt));
    // a chain longer than the answer follows
    for i in 0..14 {
        nodes.push((
            format!("fz.test/c{i}"),
            format!(r#"{{"CNAME": "c{}"}}"#, i + 1),
        ));
    }
    nodes.push(("fz.test/c14".into(), r#"{"A": ["10.0.0.14"]}"#.into()));
    let big: Vec<String> = (0..200).map(|i| format!("\"10.1.0.{i}\"")).collect();
    nodes.push((
        "fz.test/big".into(),
        format!(r#"{{"A": [{}]}}"#, big.join(",")),
    ));
    // 300 TXT records of 255 bytes: about 77 KB, more than one DNS message holds
    let huge: Vec<String> = (0..300)
        .map(|i| format!("\"{i:03}{}\"", "h".repeat(252)))
        .collect();
    nodes.push((
        "fz.test/huge".into(),
        format!(r#"{{"TXT": [{}]}}"#, huge.join(",")),
    ));
    nodes
}

fn state(data: &[u8]) -> NodeState {
    NodeState {
        data: data.to_vec(),
        mzxid: 1,
        mtime: 1_700_000_000_000,
    }
}

/// The test nodes without the two large sets, for the znode runs: rebuilding those after
/// every payload costs much and finds nothing the packet runs do not.
fn small_test_nodes() -> &'static [(String, String)] {
    static NODES: OnceLock<Vec<(String, String)>> = OnceLock::new();
    NODES.get_or_init(|| {
        test_nodes()
            .iter()
            .filter(|(p, _)| p != "fz.test/big" && p != "fz.test/huge")
            .cloned()
            .collect()
    })
}

/// The test tree, read parents first as a full read does.
pub fn test_tree() -> Tree {
    tree_of(test_nodes())
}

fn tree_of(nodes: &[(String, String)]) -> Tree {
    read_into(Tree::new(None), ROOT, as_bytes(nodes))
}

fn as_bytes(nodes: &[(String, String)]) -> impl Iterator<Item = (&str, &[u8])> + Clone {
    nodes.iter().map(|(p, d)| (p.as_str(), d.as_bytes()))
}

/// A full read of `nodes` (paths below `<root>/zones`, and their data) into `tree`, parents
/// first, as the watcher does.
fn read_into<'a>(
    mut tree: Tree,
    root: &str,
    nodes: impl Iterator<Item = (&'a str, &'a [u8])> + Clone,
) -> Tree {
    let layout = Layout::new(root).expect("valid root");
    for depth in 0..3 {
        for (path, data) in nodes
            .clone()
            .filter(|(p, _)| p.matches('/').count() == depth)
        {
            tree.apply(&layout, &format!("{root}/zones/{path}"), Some(&state(data)));
        }
    }
    tree
}

/// The snapshot the fuzzers answer from (built once).
pub fn test_snapshot() -> &'static Snapshot {
    static SNAP: OnceLock<Snapshot> = OnceLock::new();
    SNAP.get_or_init(|| test_tree().snapshot())
}

/// Applies one znode to a copy of the test tree, as a watch event would, and returns the
/// snapshot; where the tree asks for a full read (a zone appeared inside another), reads the
/// test nodes and this one again, as the watcher does. Never panics for any `path` and
/// `data`. `path` is below `<root>/zones`, e.g. `fz.test/web` or `fz.test/svc/m3`.
pub fn apply_znode(path: &str, data: &[u8]) -> Snapshot {
    static BASE: OnceLock<Tree> = OnceLock::new();
    let layout = Layout::new(ROOT).expect("valid root");
    let mut tree = BASE.get_or_init(|| tree_of(small_test_nodes())).clone();
    let full = format!("{ROOT}/zones/{path}");
    if tree.apply(&layout, &full, Some(&state(data))) == Applied::Resync {
        let others = as_bytes(small_test_nodes()).filter(|(p, _)| *p != path);
        tree = read_into(
            Tree::new(None),
            ROOT,
            others.chain(std::iter::once((path, data))),
        );
    }
    tree.snapshot()
}

/// Applies `data` at `path` ([`apply_znode`]) and checks what the stub then answers for the
/// name the node stands for: every reply passes [`check_reply`] over UDP and TCP for the
/// usual types; data that does not decode never reaches an answer (a record set answers
/// NODATA, a member adds nothing to its set), data that decodes answers exactly its
/// addresses; and `web.fz.test` still answers when the node is not about it. Returns whether
/// the payload decoded as a record set.
pub fn check_znode(path: &str, data: &[u8]) -> Result<bool, String> {
    let snap = apply_znode(path, data);
    let parts: Vec<&str> = path.split('/').collect();
    if !path.contains("web") {
        check_still_answers(&snap)?;
    }
    let name = match parts[..] {
        [zone] | [zone, "@"] | [zone, "@", _] => zone.to_string(),
        [zone, set] | [zone, set, _] => format!("{set}.{zone}"),
        _ => return Ok(false), // not a node of the layout: ignored
    };
    let zone = ZoneName::from_znode(parts[0]);
    let decoded = zone.as_ref().map(|z| decode_record_set(data, z));
    let valid_name = name.is_ascii() && name.len() < 250;
    let mut any = None;
    for qtype in [1u16, 28, 16, 33, 15, 12, 5, 255] {
        for tcp in [false, true] {
            if !valid_name {
                continue; // not a name a query can carry
            }
            let q = build_query(9, &name, qtype, 1, Some(1232));
            let mut out = Vec::new();
            let verdict = answer_packet(&snap, &q, CLIENT, tcp, &mut out);
            check_reply(MapState::Fresh, &snap, &q, tcp, verdict, &out)
                .map_err(|e| format!("{name} type {qtype} tcp={tcp}: {e}"))?;
            if verdict == Verdict::Reply && tcp && qtype == 255 {
                any = Message::from_vec(&out).ok();
            }
        }
    }
    let decoded_ok = matches!(decoded, Ok(Ok(_)));
    // the exact answer is known for a new set and a new member of `svc`
    let own = match path {
        "fz.test/zz" => Vec::new(),
        "fz.test/svc/m9" => vec!["10.0.1.1".to_string(), "10.0.1.2".to_string()],
        _ => return Ok(decoded_ok),
    };
    let Some(any) = any else {
        return Err(format!("no answer for {name} ANY"));
    };
    let mut want = own;
    match &decoded {
        // a CNAME is followed (and a member's CNAME takes its whole set over)
        Ok(Ok(d)) if d.cname.is_some() => return Ok(true),
        Ok(Ok(d)) => {
            want.extend(d.a.iter().map(|a| a.to_string()));
            want.extend(d.aaaa.iter().map(|a| a.to_string()));
        }
        _ => {}
    }
    want.sort();
    want.dedup();
    let mut have: Vec<String> = any
        .answers
        .iter()
        .filter(|r| matches!(r.record_type(), RecordType::A | RecordType::AAAA))
        .map(|r| r.data.to_string())
        .collect();
    have.sort();
    have.dedup();
    if path == "fz.test/zz" && !decoded_ok && !any.answers.is_empty() {
        return Err(format!(
            "data that does not decode answered {:?}",
            any.answers
        ));
    }
    if !any.metadata.truncation && have != want {
        return Err(format!("{name} answered {have:?}, want {want:?}"));
    }
    Ok(decoded_ok)
}

/// Builds a well-formed query by hand (hickory cannot build the malformed ones, and this
/// keeps the letter case of `name`): RD set, one question, an OPT record when `edns` is set.
pub fn build_query(id: u16, name: &str, qtype: u16, qclass: u16, edns: Option<u16>) -> Vec<u8> {
    let mut p = Vec::with_capacity(64);
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns.is_some())]);
    push_name(&mut p, name);
    p.extend_from_slice(&qtype.to_be_bytes());
    p.extend_from_slice(&qclass.to_be_bytes());
    if let Some(size) = edns {
        p.push(0);
        p.extend_from_slice(&TYPE_OPT.to_be_bytes());
        p.extend_from_slice(&size.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    }
    p
}

/// Appends `name` (dotted text, any case) in wire format, uncompressed.
pub fn push_name(p: &mut Vec<u8>, name: &str) {
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        p.push(label.len() as u8);
        p.extend_from_slice(label.as_bytes());
    }
    p.push(0);
}

/// The largest reply the transport takes for `packet`.
fn reply_limit(packet: &[u8], tcp: bool) -> usize {
    if tcp {
        return u16::MAX as usize;
    }
    wire::parse_query(packet).map_or(MIN_UDP, |q| q.udp_limit())
}

/// The rules every outcome must keep, whatever the packet: silence only for packets that are
/// not queries; a reply that hickory decodes, echoes the ID, opcode and question (in the
/// client's case), fits the transport, carries OPT exactly when the query did, and has the
/// RCODE RFC 8906 asks for; forwarding only for names outside the zones.
pub fn check_reply(
    state: MapState,
    snap: &Snapshot,
    packet: &[u8],
    tcp: bool,
    verdict: Verdict,
    reply: &[u8],
) -> Result<(), String> {
    let parsed = wire::parse_query(packet);
    match (&parsed, verdict) {
        (Err(Reject::Drop), Verdict::Silent) => return Ok(()),
        (Err(Reject::Drop), v) => return Err(format!("{v:?} for a packet to drop")),
        (_, Verdict::Silent) => return Err("no reply to a query".into()),
        (Err(_), Verdict::Forward) => return Err("forwarding a malformed packet".into()),
        (Ok(q), Verdict::Forward) => {
            if q.opcode != wire::OPCODE_QUERY || q.edns.is_some_and(|e| e.version > 0) {
                return Err("forwarding a query that needs NOTIMP or BADVERS".into());
            }
            let mut buf = [0u8; 257];
            if snap.find_zone(q.key(&mut buf)).is_some() {
                return Err("forwarding a name of the zones".into());
            }
            return Ok(());
        }
        _ => {}
    }
    let msg = Message::from_vec(reply).map_err(|e| format!("reply does not decode: {e}"))?;
    if reply.len() < HEADER_LEN || reply[..2] != packet[..2] {
        return Err("reply does not echo the ID".into());
    }
    if reply[2] & 0x80 == 0 {
        return Err("reply without QR".into());
    }
    if (reply[2] ^ packet[2]) & 0x78 != 0 {
        return Err("opcode not echoed".into());
    }
    let limit = reply_limit(packet, tcp);
    if reply.len() > limit {
        return Err(format!("{} bytes for a limit of {limit}", reply.len()));
    }
    let code =
        u16::from(reply[3] & 0x0F) | (msg.edns.as_ref().map_or(0, |e| e.rcode_high()) as u16) << 4;
    let q = match parsed {
        Err(Reject::FormErr { .. }) if code == rcode::FORMERR && reply.len() == HEADER_LEN => {
            return Ok(());
        }
        Err(Reject::NotImp { .. }) if code == rcode::NOTIMP && reply.len() == HEADER_LEN => {
            return Ok(());
        }
        Err(r) => {
            return Err(format!(
                "{r:?} answered with rcode {code}, {} bytes",
                reply.len()
            ));
        }
        Ok(q) => q,
    };
    if reply[4..6] != [0, 1]
        || reply[HEADER_LEN..q.question_end] != packet[HEADER_LEN..q.question_end]
    {
        return Err("question not echoed as asked".into());
    }
    match (q.edns, &msg.edns) {
        (None, None) => {}
        (Some(e), Some(ours)) => {
            if ours.version() != 0 || ours.max_payload() != EDNS_UDP {
                return Err("OPT not ours".into());
            }
            if ours.flags().dnssec_ok != e.dnssec_ok {
                return Err("DO not echoed".into());
            }
        }
        (Some(_), None) => return Err("no OPT in the reply to an EDNS query".into()),
        (None, Some(_)) => return Err("OPT in the reply to a query without EDNS".into()),
    }
    let want = if q.edns.is_some_and(|e| e.version > 0) {
        Some(rcode::BADVERS)
    } else if q.opcode != wire::OPCODE_QUERY {
        Some(rcode::NOTIMP)
    } else if matches!(q.qtype, 251 | 252) || !matches!(q.qclass, 1 | 255) {
        // zone transfers; and classes other than IN (and ANY), which the zones are not in
        Some(rcode::REFUSED)
    } else if state == MapState::TooOld {
        Some(rcode::SERVFAIL)
    } else {
        None
    };
    if let Some(want) = want {
        if code != want {
            return Err(format!("rcode {code}, want {want}"));
        }
    } else if !matches!(code, rcode::NOERROR | rcode::NXDOMAIN) {
        return Err(format!("rcode {code} for an answerable query"));
    }
    // a cut answer keeps the whole records that fit, but none of the ADDITIONAL section
    if msg.metadata.truncation
        && msg
            .additionals
            .iter()
            .any(|r| r.record_type() != RecordType::OPT)
    {
        return Err("TC with ADDITIONAL records left in".into());
    }
    if state == MapState::Stale {
        let records = msg
            .answers
            .iter()
            .chain(&msg.authorities)
            .chain(&msg.additionals);
        if let Some(r) = records
            .filter(|r| r.record_type() != RecordType::OPT)
            .find(|r| r.ttl > STALE_TTL)
        {
            return Err(format!("stale answer with TTL {}", r.ttl));
        }
    }
    Ok(())
}

/// Asks `web.fz.test A` and checks the answer is its two addresses: what the fuzzers run
/// after every input, to show the server still answers correctly.
pub fn check_still_answers(snap: &Snapshot) -> Result<(), String> {
    let q = build_query(0xBEEF, "Web.FZ.test", 1, 1, Some(1232));
    let mut out = Vec::new();
    let verdict = answer_packet(snap, &q, CLIENT, false, &mut out);
    if verdict != Verdict::Reply {
        return Err(format!("{verdict:?} for web.fz.test"));
    }
    check_reply(MapState::Fresh, snap, &q, false, verdict, &out)?;
    let msg = Message::from_vec(&out).map_err(|e| e.to_string())?;
    let mut addrs: Vec<String> = msg.answers.iter().map(|r| r.data.to_string()).collect();
    addrs.sort();
    if addrs != ["10.0.0.1", "10.0.0.2"] || !msg.metadata.authoritative {
        return Err(format!("web.fz.test answered {addrs:?}"));
    }
    Ok(())
}

/// Names the generated queries ask: every kind of name of the test tree, names outside it,
/// and reverse names of its addresses.
pub const QUERY_NAMES: &[&str] = &[
    "web.fz.test",
    "single.fz.test",
    "alias.fz.test",
    "loop1.fz.test",
    "self.fz.test",
    "c0.fz.test",
    "c9.fz.test",
    "out.fz.test",
    "into-sub.fz.test",
    "a.wild.fz.test",
    "x.y.wild.fz.test",
    "txt.fz.test",
    "_http._tcp.web.fz.test",
    "empty.fz.test",
    "x.y.fz.test",
    "deep.x.y.fz.test",
    "nope.fz.test",
    "a.b.nope.fz.test",
    "ptr.fz.test",
    "svc.fz.test",
    "bad.fz.test",
    "big.fz.test",
    "huge.fz.test",
    "fz.test",
    "sub.fz.test",
    "x.sub.fz.test",
    "other.test",
    "ns1.other.test",
    "www.example.com",
    "",
    "1.0.0.10.in-addr.arpa",
    "3.0.0.10.in-addr.arpa",
    "7.0.1.10.in-addr.arpa",
    "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa",
];

/// Query types the generated queries use, besides random ones: the usual, the meta types,
/// OPT and 0.
const QTYPES: &[u16] = &[
    1, 28, 5, 16, 33, 15, 12, 6, 2, 255, 252, 251, 41, 0, 65, 64, 99, 250, 249, 65535,
];

fn pick<'a, T, R: Rng + ?Sized>(rng: &mut R, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

/// A name for a generated query: one of [`QUERY_NAMES`] in random letter case, sometimes
/// under a random label (LDH or any bytes).
fn random_name<R: Rng + ?Sized>(rng: &mut R) -> Vec<u8> {
    let mut out = Vec::new();
    if rng.random_bool(0.15) {
        let len = rng.random_range(1..=63);
        out.push(len as u8);
        if rng.random_bool(0.5) {
            out.extend((0..len).map(|_| *pick(rng, b"abcdefghijklmnopqrstuvwxyz0123456789-_*")));
        } else {
            out.extend((0..len).map(|_| rng.random::<u8>()));
        }
    }
    let base: Vec<u8> = pick(rng, QUERY_NAMES)
        .bytes()
        .map(|b| {
            if rng.random_bool(0.3) {
                b.to_ascii_uppercase()
            } else {
                b
            }
        })
        .collect();
    let text = String::from_utf8(base).expect("ASCII");
    push_name(&mut out, &text);
    out
}

/// A query as a client might send it, with every field drawn at random: opcode, flags,
/// name, type, class, EDNS (version, payload size, DO, options), and now and then extra
/// records, compressed owners included.
pub fn random_query<R: Rng + ?Sized>(rng: &mut R) -> Vec<u8> {
    let mut p = Vec::with_capacity(128);
    p.extend_from_slice(&rng.random::<u16>().to_be_bytes());
    let opcode: u8 = if rng.random_bool(0.85) {
        0
    } else {
        rng.random_range(0..16)
    };
    let mut b2 = opcode << 3 | u8::from(rng.random_bool(0.7));
    let mut b3 = if rng.random_bool(0.2) { 0x10 } else { 0 };
    if rng.random_bool(0.1) {
        b2 |= rng.random::<u8>() & 0x06; // AA, TC
        b3 |= rng.random::<u8>(); // RA, Z, AD, CD, RCODE
    }
    if rng.random_bool(0.03) {
        b2 |= 0x80; // a response
    }
    p.extend_from_slice(&[b2, b3, 0, 1, 0, 0, 0, 0, 0, 0]);
    p.extend_from_slice(&random_name(rng));
    let qtype = if rng.random_bool(0.9) {
        *pick(rng, QTYPES)
    } else {
        rng.random()
    };
    let qclass = if rng.random_bool(0.75) {
        1
    } else if rng.random_bool(0.8) {
        *pick(rng, &[3u16, 4, 254, 255, 0, 2])
    } else {
        rng.random()
    };
    p.extend_from_slice(&qtype.to_be_bytes());
    p.extend_from_slice(&qclass.to_be_bytes());
    let mut counts = [0u16; 3];
    if rng.random_bool(0.1) {
        // records in the answer or authority section, as an UPDATE or a NOTIFY carries
        let section = rng.random_range(0..2);
        for _ in 0..rng.random_range(1..4) {
            push_random_record(rng, &mut p);
            counts[section] += 1;
        }
    }
    if rng.random_bool(0.65) {
        p.push(0);
        p.extend_from_slice(&TYPE_OPT.to_be_bytes());
        let any = rng.random();
        let size = *pick(rng, &[0u16, 1, 511, 512, 1232, 1400, 4096, 65535, any]);
        p.extend_from_slice(&size.to_be_bytes());
        p.push(0); // extended RCODE
        p.push(if rng.random_bool(0.9) {
            0
        } else {
            rng.random()
        });
        let flags: u16 = if rng.random_bool(0.5) { 0x8000 } else { 0 }
            | if rng.random_bool(0.1) {
                rng.random::<u16>() & 0x7FFF
            } else {
                0
            };
        p.extend_from_slice(&flags.to_be_bytes());
        let options: Vec<u8> = match rng.random_range(0..4) {
            0 | 1 => Vec::new(),
            // a client cookie (RFC 7873)
            2 => [&[0, 10, 0, 8][..], &rng.random::<[u8; 8]>()].concat(),
            _ => (0..rng.random_range(0..40)).map(|_| rng.random()).collect(),
        };
        p.extend_from_slice(&(options.len() as u16).to_be_bytes());
        p.extend_from_slice(&options);
        counts[2] += 1;
    }
    if rng.random_bool(0.05) {
        push_random_record(rng, &mut p);
        counts[2] += 1;
    }
    for (i, c) in counts.iter().enumerate() {
        p[6 + 2 * i..8 + 2 * i].copy_from_slice(&c.to_be_bytes());
    }
    p
}

/// Appends a record with an owner that is the root, a pointer to the question name (or into
/// it), or a name of its own, and random type and RDATA.
fn push_random_record<R: Rng + ?Sized>(rng: &mut R, p: &mut Vec<u8>) {
    match rng.random_range(0..3) {
        0 => p.push(0),
        1 => p.extend_from_slice(&[0xC0, rng.random_range(12..16)]),
        _ => p.extend_from_slice(&random_name(rng)),
    }
    let rtype: u16 = if rng.random_bool(0.8) {
        *pick(rng, &[1u16, 28, 5, 6, 16, 250])
    } else {
        rng.random()
    };
    p.extend_from_slice(&rtype.to_be_bytes());
    p.extend_from_slice(&pick(rng, &[1u16, 254, 255]).to_be_bytes());
    p.extend_from_slice(&rng.random::<u32>().to_be_bytes());
    let rdata: Vec<u8> = (0..rng.random_range(0..24)).map(|_| rng.random()).collect();
    p.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    p.extend_from_slice(&rdata);
}

/// Changes `p` in one to eight places: bit flips, bytes set to random or telling values
/// (0, 0x3F, 0x40, 0xC0, 0xFF), insertions, deletions, cuts, junk appended, slices repeated,
/// and header counts overwritten.
pub fn mutate<R: Rng + ?Sized>(rng: &mut R, p: &mut Vec<u8>) {
    for _ in 0..rng.random_range(1..=8) {
        let len = p.len();
        match rng.random_range(0..9) {
            0 if len > 0 => p[rng.random_range(0..len)] ^= 1 << rng.random_range(0..8),
            1 if len > 0 => p[rng.random_range(0..len)] = rng.random(),
            2 if len > 0 => {
                p[rng.random_range(0..len)] = *pick(rng, &[0u8, 1, 0x3F, 0x40, 0x7F, 0xC0, 0xFF]);
            }
            3 => p.insert(rng.random_range(0..=len), rng.random()),
            4 if len > 0 => {
                p.remove(rng.random_range(0..len));
            }
            5 => p.truncate(rng.random_range(0..=len)),
            6 => p.extend((0..rng.random_range(1..32)).map(|_| rng.random::<u8>())),
            7 if len > 1 => {
                let from = rng.random_range(0..len - 1);
                let to = rng.random_range(from + 1..=len.min(from + 64));
                let slice = p[from..to].to_vec();
                let at = rng.random_range(0..=len);
                p.splice(at..at, slice);
            }
            8 if len >= HEADER_LEN => {
                let at = 4 + 2 * rng.random_range(0..4);
                let any = rng.random();
                let v = *pick(rng, &[0u16, 1, 2, 3, 0x7FFF, 0xFFFF, any]);
                p[at..at + 2].copy_from_slice(&v.to_be_bytes());
            }
            _ => {}
        }
    }
}

/// A malformed message of the kinds RFC 9267 lists, built with random sizes and places:
/// headers cut short, labels over 63 bytes and reserved label types, names over 255 bytes
/// (written out, or assembled from compression pointers), labels and records running past the
/// end, counts past the end, compression loops and forward pointers, and misplaced OPT
/// records. Returns the packet and what the parser must say to it.
pub fn rfc9267_case<R: Rng + ?Sized>(rng: &mut R) -> (Vec<u8>, Reject) {
    let id: u16 = rng.random();
    let opcode: u8 = if rng.random_bool(0.9) {
        0
    } else {
        rng.random_range(1..16)
    };
    let header = |counts: [u16; 4]| {
        let mut h = id.to_be_bytes().to_vec();
        h.extend_from_slice(&[opcode << 3 | 1, 0]);
        for c in counts {
            h.extend_from_slice(&c.to_be_bytes());
        }
        h
    };
    let bad = if opcode == 0 {
        Reject::FormErr {
            id,
            opcode,
            rd: true,
        }
    } else {
        Reject::NotImp {
            id,
            opcode,
            rd: true,
        }
    };
    let question = |p: &mut Vec<u8>| {
        p.extend_from_slice(b"\x03web\x02fz\x04test\x00\x00\x01\x00\x01");
    };
    let mut p;
    match rng.random_range(0..11) {
        // a header cut short: not worth an answer
        0 => {
            let mut q = build_query(id, "web.fz.test", 1, 1, None);
            q.truncate(rng.random_range(0..HEADER_LEN));
            return (q, Reject::Drop);
        }
        // a label length of 64..=255 in the question: over 63, a reserved type, or a pointer
        1 => {
            p = header([1, 0, 0, 0]);
            p.extend_from_slice(b"\x03web");
            let len = rng.random_range(64..=255u8);
            p.push(len);
            p.extend((0..len.min(80)).map(|_| b'a'));
            p.extend_from_slice(&[0, 0, 1, 0, 1]);
        }
        // a question name over 255 bytes
        2 => {
            p = header([1, 0, 0, 0]);
            let mut total = 1;
            while total <= 255 {
                let len = rng.random_range(1..=63);
                p.push(len as u8);
                p.extend((0..len).map(|_| b'x'));
                total += len + 1;
            }
            p.extend_from_slice(&[0, 0, 1, 0, 1]);
        }
        // a question label, or the type and class, running past the end
        3 => {
            p = header([1, 0, 0, 0]);
            question(&mut p);
            let cut = rng.random_range(HEADER_LEN + 1..p.len());
            p.truncate(cut);
        }
        // counts past the end
        4 => {
            let mut counts = [1, 0, 0, 0];
            counts[rng.random_range(0..4)] = rng.random_range(2..=u16::MAX);
            p = header(counts);
            question(&mut p);
        }
        // a record owner that points at itself, or two pointers that point at each other
        5 => {
            p = header([1, 1, 0, 0]);
            question(&mut p);
            let at = p.len() as u16;
            if rng.random_bool(0.5) {
                p.extend_from_slice(&(0xC000 | at).to_be_bytes());
            } else {
                // a label, then a pointer back to that label: a loop through a backward pointer
                p.extend_from_slice(b"\x01a");
                p.extend_from_slice(&(0xC000 | at).to_be_bytes());
            }
            p.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 0, 0, 0]);
        }
        // a forward pointer (into the record's own RDATA)
        6 => {
            p = header([1, 1, 0, 0]);
            question(&mut p);
            let target = p.len() as u16 + 12 + rng.random_range(0..4);
            p.extend_from_slice(&(0xC000 | target).to_be_bytes());
            p.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0]);
        }
        // a name over 255 bytes once its pointers are followed: labels in one record's RDATA,
        // each followed by a pointer to the one before
        7 => {
            p = header([1, 2, 0, 0]);
            question(&mut p);
            p.extend_from_slice(&[0, 0xFF, 0x00, 0, 1, 0, 0, 0, 0]);
            let rdlen_at = p.len();
            p.extend_from_slice(&[0, 0]);
            let start = p.len();
            let mut prev = 12u16; // the question name ends the chain
            let mut total = 17; // web.fz.test
            while total <= 255 {
                let at = p.len() as u16;
                p.push(63);
                p.extend((0..63).map(|_| b'z'));
                p.extend_from_slice(&(0xC000 | prev).to_be_bytes());
                prev = at;
                total += 64;
            }
            let rdlen = (p.len() - start) as u16;
            p[rdlen_at..rdlen_at + 2].copy_from_slice(&rdlen.to_be_bytes());
            p.extend_from_slice(&(0xC000 | prev).to_be_bytes());
            p.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 0, 0, 0]);
        }
        // RDLENGTH past the end
        8 => {
            p = header([1, 0, 0, 1]);
            question(&mut p);
            p.extend_from_slice(&[0, 0, 16, 0, 1, 0, 0, 0, 0]);
            let rdlen = rng.random_range(1..=u16::MAX);
            p.extend_from_slice(&rdlen.to_be_bytes());
            p.extend((0..rdlen.min(8) - 1).map(|_| b't'));
        }
        // OPT twice, OPT outside the additional section, OPT owned by a name other than root
        9 => {
            let opt = |owner: &[u8]| [owner, &[0, 41, 4, 0xD0, 0, 0, 0, 0, 0, 0]].concat();
            match rng.random_range(0..3) {
                0 => {
                    p = header([1, 0, 0, 2]);
                    question(&mut p);
                    p.extend_from_slice(&opt(b"\x00"));
                    p.extend_from_slice(&opt(b"\x00"));
                }
                1 => {
                    p = header([1, 1, 0, 0]);
                    question(&mut p);
                    p.extend_from_slice(&opt(b"\x00"));
                }
                _ => {
                    p = header([1, 0, 0, 1]);
                    question(&mut p);
                    p.extend_from_slice(&opt(&[0xC0, 12]));
                }
            }
        }
        // no question, or several
        _ => {
            let qd = *pick(rng, &[0u16, 2, 3, u16::MAX]);
            p = header([qd, 0, 0, 0]);
            for _ in 0..qd.min(3) {
                question(&mut p);
            }
        }
    }
    if rng.random_bool(0.05) {
        p[2] |= 0x80; // the same, as a response: silence
        return (p, Reject::Drop);
    }
    (p, bad)
}

/// Any packet: random bytes, a generated query, a mutated one, or an RFC 9267 case.
pub fn random_packet<R: Rng + ?Sized>(rng: &mut R) -> Vec<u8> {
    match rng.random_range(0..20) {
        0..=2 => {
            let len = if rng.random_bool(0.2) {
                rng.random_range(0..HEADER_LEN)
            } else {
                rng.random_range(0..600)
            };
            let mut p = vec![0u8; len];
            rng.fill(&mut p[..]);
            if len > 2 && rng.random_bool(0.7) {
                // mostly queries with opcode QUERY, so the parser gets past the header
                p[2] &= 0x07;
            }
            p
        }
        3..=10 => random_query(rng),
        11..=17 => {
            let mut p = random_query(rng);
            mutate(rng, &mut p);
            p
        }
        _ => rfc9267_case(rng).0,
    }
}

/// Text a znode might hold where a name goes: good names, relative and absolute, and every
/// kind of bad one (spaces, control and non-LDH characters, labels over 63, names over 255,
/// misplaced wildcards and hyphens, empty labels).
fn random_name_text<R: Rng + ?Sized>(rng: &mut R) -> String {
    let long_label = "l".repeat(64);
    let long_name = vec!["n".repeat(60); 5].join(".");
    let bad = [
        "web",
        "web.fz.test.",
        "www.example.com.",
        "@",
        ".",
        "",
        "a b",
        "a\u{1}b",
        "tab\there",
        "new\nline",
        "ü.example.",
        "a$b",
        "a/b",
        "Web",
        "-web",
        "web-",
        "*",
        "*.x",
        "x.*",
        "a..b",
        "_srv._tcp",
        "0",
        &long_label,
        &long_name,
    ];
    if rng.random_bool(0.8) {
        return pick(rng, &bad).to_string();
    }
    let len = rng.random_range(0..80);
    (0..len)
        .map(|_| char::from(rng.random_range(0u8..128)))
        .collect()
}

/// A JSON value for `key` of a record set: usually the right type with good or bad contents,
/// sometimes the wrong type altogether.
fn random_value<R: Rng + ?Sized>(rng: &mut R, key: &str) -> serde_json::Value {
    use serde_json::{Value, json};
    let address = |rng: &mut R| -> Value {
        let v4 = format!(
            "10.{}.{}.{}",
            rng.random::<u8>(),
            rng.random::<u8>(),
            rng.random::<u8>()
        );
        let texts = [
            v4.as_str(),
            "fd00::1",
            "10.0.0.300",
            "10.0.0.1 ",
            " 10.0.0.1",
            "010.0.0.1",
            "10.0.0.1x",
            "10.0.0",
            "::ffff:10.0.0.1",
            "fd00::1%eth0",
            "",
            "localhost",
        ];
        if rng.random_bool(0.9) {
            json!(pick(rng, &texts))
        } else {
            json!(rng.random::<u32>())
        }
    };
    let txt_string = |rng: &mut R| -> Value {
        let any = rng.random_range(0..300);
        let len = *pick(rng, &[0usize, 1, 10, 255, 256, 1000, any]);
        let c = char::from(rng.random_range(0x20u8..0x7F));
        json!(c.to_string().repeat(len))
    };
    if rng.random_bool(0.1) {
        return pick(
            rng,
            &[
                json!(null),
                json!(true),
                json!(-1),
                json!(1.5),
                json!("x"),
                json!({}),
                json!([[]]),
                json!(4_294_967_296u64),
            ],
        )
        .clone();
    }
    let n = *pick(rng, &[0usize, 1, 2, 3, 20]);
    match key {
        "ttl" => json!(*pick(rng, &[0u64, 5, 300, 4_294_967_295, 4_294_967_296])),
        "A" | "AAAA" => Value::Array((0..n).map(|_| address(rng)).collect()),
        "CNAME" => json!(random_name_text(rng)),
        "PTR" => Value::Array((0..n).map(|_| json!(random_name_text(rng))).collect()),
        "TXT" => Value::Array(
            (0..n)
                .map(|_| {
                    if rng.random_bool(0.7) {
                        txt_string(rng)
                    } else {
                        // several strings in one record, sometimes more than RDLENGTH holds
                        let m = *pick(rng, &[0usize, 2, 5, 300]);
                        let c = char::from(rng.random_range(b'a'..=b'z'));
                        Value::Array((0..m).map(|_| json!(c.to_string().repeat(255))).collect())
                    }
                })
                .collect(),
        ),
        "SRV" | "MX" => Value::Array(
            (0..n)
                .map(|_| {
                    let number = |rng: &mut R| json!(*pick(rng, &[0i64, 1, 65535, 65536, -1]));
                    let mut o = serde_json::Map::new();
                    let fields: &[&str] = if key == "SRV" {
                        &["priority", "weight", "port", "target", "extra"]
                    } else {
                        &["preference", "exchange", "extra"]
                    };
                    for f in fields {
                        if rng.random_bool(0.8) {
                            let v = if matches!(*f, "target" | "exchange") {
                                json!(random_name_text(rng))
                            } else {
                                number(rng)
                            };
                            if *f != "extra" || rng.random_bool(0.2) {
                                o.insert(f.to_string(), v);
                            }
                        }
                    }
                    Value::Object(o)
                })
                .collect(),
        ),
        "ns" => Value::Array((0..n).map(|_| json!(random_name_text(rng))).collect()),
        "soa" => {
            let mut o = serde_json::Map::new();
            for f in [
                "mname", "rname", "serial", "refresh", "retry", "expire", "minimum", "extra",
            ] {
                if rng.random_bool(0.5) {
                    let v = if f.ends_with("name") {
                        json!(random_name_text(rng))
                    } else {
                        json!(*pick(rng, &[0i64, 60, 4_294_967_295, -1]))
                    };
                    o.insert(f.to_string(), v);
                }
            }
            Value::Object(o)
        }
        _ => json!(random_name_text(rng)),
    }
}

/// A payload for a record set (or member), or for a zone node when `zone`: random JSON with
/// known and unknown keys, good and bad values; a good payload mutated byte by byte; or
/// random bytes.
pub fn random_payload<R: Rng + ?Sized>(rng: &mut R, zone: bool) -> Vec<u8> {
    let keys: &[&str] = if zone {
        &["ttl", "soa", "ns", "TTL", "extra"]
    } else {
        &[
            "ttl", "A", "AAAA", "CNAME", "TXT", "SRV", "MX", "PTR", "AAA", "a", "txt", "hostname",
        ]
    };
    match rng.random_range(0..10) {
        0 => {
            let mut p = vec![0u8; rng.random_range(0..100)];
            rng.fill(&mut p[..]);
            p
        }
        1..=3 => {
            // the small ones: mutating the 77 KB of `huge` costs time and finds nothing new
            let small: Vec<&String> = test_nodes()
                .iter()
                .map(|(_, d)| d)
                .filter(|d| d.len() < 4096)
                .collect();
            let mut p = pick(rng, &small).as_bytes().to_vec();
            mutate(rng, &mut p);
            p
        }
        _ => {
            let mut o = serde_json::Map::new();
            for key in keys {
                let known = key.chars().any(|c| c.is_ascii_uppercase())
                    || matches!(*key, "ttl" | "soa" | "ns");
                if rng.random_bool(if known { 0.3 } else { 0.03 }) {
                    o.insert(key.to_string(), random_value(rng, key));
                }
            }
            serde_json::to_vec(&serde_json::Value::Object(o)).expect("JSON")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::ResponseCode;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    /// The seed of a random run: `ZKDNS_FUZZ_SEED` to replay one, else a fresh one (printed
    /// in every failure).
    fn seed() -> u64 {
        std::env::var("ZKDNS_FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(rand::random)
    }

    /// Answers and checks; returns the verdict and the reply.
    fn ask(snap: &Snapshot, packet: &[u8], tcp: bool) -> (Verdict, Vec<u8>) {
        let mut out = Vec::new();
        let verdict = answer_packet(snap, packet, CLIENT, tcp, &mut out);
        if let Err(e) = check_reply(MapState::Fresh, snap, packet, tcp, verdict, &out) {
            panic!("{e}\n  packet {packet:02x?}\n  reply {out:02x?}");
        }
        (verdict, out)
    }

    fn decoded(snap: &Snapshot, name: &str, qtype: RecordType, tcp: bool) -> Message {
        let q = build_query(7, name, u16::from(qtype), 1, Some(1232));
        let (verdict, out) = ask(snap, &q, tcp);
        assert_eq!(verdict, Verdict::Reply, "{name} {qtype}");
        Message::from_vec(&out).unwrap()
    }

    fn answer_types(m: &Message) -> Vec<RecordType> {
        m.answers.iter().map(|r| r.record_type()).collect()
    }

    #[test]
    fn the_test_snapshot_answers_as_built() {
        let s = test_snapshot();
        check_still_answers(s).unwrap();
        let m = decoded(s, "alias.fz.test", RecordType::A, false);
        assert_eq!(
            answer_types(&m),
            [RecordType::CNAME, RecordType::A, RecordType::A]
        );
        // a loop is cut after one turn; a long chain after MAX_CNAME_CHAIN
        let m = decoded(s, "loop1.fz.test", RecordType::A, false);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(answer_types(&m), [RecordType::CNAME; 2]);
        let m = decoded(s, "c0.fz.test", RecordType::A, false);
        assert_eq!(m.answers.len(), crate::dns::answer::MAX_CNAME_CHAIN + 1);
        let m = decoded(s, "nope.fz.test", RecordType::A, false);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(m.authorities.len(), 1);
        // bad data: the set exists without records; a bad name does not exist
        let m = decoded(s, "bad.fz.test", RecordType::ANY, false);
        assert_eq!(
            (m.metadata.response_code, m.answers.len()),
            (ResponseCode::NoError, 0)
        );
        let q = build_query(7, "bad name.fz.test", 1, 1, None);
        let (_, out) = ask(s, &q, false);
        assert_eq!(out[3] & 0x0F, 3, "NXDOMAIN for a name whose znode is bad");
        // members merged into their set
        let m = decoded(s, "svc.fz.test", RecordType::A, false);
        assert_eq!(m.answers.len(), 2);
        // 200 addresses: over UDP, TC and the 74 that fit in 1232 bytes beside the header,
        // the question (17 bytes) and OPT (11); all of them over TCP
        let m = decoded(s, "big.fz.test", RecordType::A, false);
        assert!(m.metadata.truncation);
        assert_eq!(m.answers.len(), (1232 - 12 - 17 - 11) / 16);
        let m = decoded(s, "big.fz.test", RecordType::A, true);
        assert!(!m.metadata.truncation);
        assert_eq!(m.answers.len(), 200);
        let m = decoded(s, "txt.fz.test", RecordType::TXT, false);
        assert_eq!(m.answers.len(), 4);
        // 300 TXT records of 268 bytes each: over TCP, as many as one message holds, with TC
        let q = build_query(7, "huge.fz.test", 16, 1, Some(1232));
        let (_, out) = ask(s, &q, true);
        let m = Message::from_vec(&out).unwrap();
        assert!(m.metadata.truncation);
        assert_eq!(m.answers.len(), (65535 - q.len() - 11) / (2 + 10 + 256));
        assert!(
            out.len() <= 65535 && out.len() > 65535 - 268,
            "{}",
            out.len()
        );
    }

    /// What a probe must get.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Want {
        Silent,
        /// RCODE (extended included), OPT in the reply, the question echoed, AA.
        Reply(u16, bool, bool, bool),
    }

    /// The extended RCODE of a reply, its OPT, question and AA, as a [`Want`].
    fn got(reply: &[u8]) -> Want {
        let m = Message::from_vec(reply).unwrap();
        let high = m.edns.as_ref().map_or(0, |e| u16::from(e.rcode_high()));
        Want::Reply(
            high << 4 | u16::from(reply[3] & 0x0F),
            m.edns.is_some(),
            m.queries.len() == 1,
            m.metadata.authoritative,
        )
    }

    fn opt_record(version: u8, flags: u16, options: &[u8]) -> Vec<u8> {
        let mut o = vec![0, 0, 41, 0x04, 0xD0, 0, version];
        o.extend_from_slice(&flags.to_be_bytes());
        o.extend_from_slice(&(options.len() as u16).to_be_bytes());
        o.extend_from_slice(options);
        o
    }

    /// A query for `name` A with `opt` appended as the only additional record.
    fn with_opt(name: &str, qclass: u16, opt: &[u8]) -> Vec<u8> {
        let mut p = build_query(0x4242, name, 1, qclass, None);
        p.extend_from_slice(opt);
        p[11] = 1;
        p
    }

    fn with_opcode(mut p: Vec<u8>, opcode: u8) -> Vec<u8> {
        p[2] = (p[2] & 0x87) | opcode << 3;
        p
    }

    /// RFC 8906 (and RFC 6891) behaviour, probe by probe. Knot 3.2 answers the same except
    /// where a comment says otherwise (checked with `knotd` and these bytes).
    #[test]
    fn rfc8906_probes() {
        use rcode::*;
        let edns = |name: &str| build_query(0x4242, name, 1, 1, Some(1232));
        let plain = |name: &str| build_query(0x4242, name, 1, 1, None);
        let v1 = opt_record(1, 0, &[]);
        let mut probes: Vec<(String, Vec<u8>, Want)> = vec![
            (
                "EDNS query".into(),
                edns("web.fz.test"),
                Want::Reply(NOERROR, true, true, true),
            ),
            (
                "plain query".into(),
                plain("web.fz.test"),
                Want::Reply(NOERROR, false, true, true),
            ),
            // EDNS version 1 and 255: BADVERS, with our OPT (version 0); outside the zones too
            (
                "EDNS version 1".into(),
                with_opt("web.fz.test", 1, &v1),
                Want::Reply(BADVERS, true, true, false),
            ),
            (
                "EDNS version 255".into(),
                with_opt("web.fz.test", 1, &opt_record(255, 0, &[])),
                Want::Reply(BADVERS, true, true, false),
            ),
            (
                "EDNS version 1, not ours".into(),
                with_opt("www.example.com", 1, &v1),
                Want::Reply(BADVERS, true, true, false),
            ),
            // unknown options and flags are ignored (and not echoed)
            (
                "unknown EDNS option".into(),
                with_opt(
                    "web.fz.test",
                    1,
                    &opt_record(0, 0, &[0xFD, 0xE9, 0, 2, 1, 2]),
                ),
                Want::Reply(NOERROR, true, true, true),
            ),
            (
                "unknown EDNS flags".into(),
                with_opt("web.fz.test", 1, &opt_record(0, 0x7FFF, &[])),
                Want::Reply(NOERROR, true, true, true),
            ),
            // classes other than IN (and ANY) in the zones: REFUSED
            (
                "class CH".into(),
                build_query(1, "web.fz.test", 1, 3, Some(1232)),
                Want::Reply(REFUSED, true, true, false),
            ),
            (
                "class HS".into(),
                build_query(1, "web.fz.test", 1, 4, Some(1232)),
                Want::Reply(REFUSED, true, true, false),
            ),
            (
                "class NONE".into(),
                build_query(1, "web.fz.test", 1, 254, Some(1232)),
                Want::Reply(REFUSED, true, true, false),
            ),
            (
                "class 1234".into(),
                build_query(1, "web.fz.test", 1, 1234, Some(1232)),
                Want::Reply(REFUSED, true, true, false),
            ),
            (
                "class 0".into(),
                build_query(1, "web.fz.test", 1, 0, Some(1232)),
                Want::Reply(REFUSED, true, true, false),
            ),
            (
                "class ANY".into(),
                build_query(1, "web.fz.test", 1, 255, Some(1232)),
                Want::Reply(NOERROR, true, true, true),
            ),
            // unknown types: NODATA. Knot: NOTIMP for type 0
            (
                "type 0".into(),
                build_query(1, "web.fz.test", 0, 1, Some(1232)),
                Want::Reply(NOERROR, true, true, true),
            ),
            (
                "type 1234".into(),
                build_query(1, "web.fz.test", 1234, 1, Some(1232)),
                Want::Reply(NOERROR, true, true, true),
            ),
            (
                "type OPT".into(),
                build_query(1, "web.fz.test", 41, 1, Some(1232)),
                Want::Reply(NOERROR, true, true, true),
            ),
            // zone transfers: REFUSED. Knot over UDP: NOTIMP (AXFR), NOTAUTH (IXFR)
            (
                "AXFR".into(),
                build_query(1, "fz.test", 252, 1, Some(1232)),
                Want::Reply(REFUSED, true, true, false),
            ),
            (
                "IXFR".into(),
                build_query(1, "fz.test", 251, 1, Some(1232)),
                Want::Reply(REFUSED, true, true, false),
            ),
            // a response is never answered
            (
                "QR=1".into(),
                {
                    let mut p = edns("web.fz.test");
                    p[2] |= 0x80;
                    p
                },
                Want::Silent,
            ),
            // malformed: a bare FORMERR header. Knot: FORMERR with the question (and, for no
            // question, the OPT); silence for two questions
            (
                "no question".into(),
                {
                    let mut p = edns("web.fz.test");
                    p[5] = 0;
                    p
                },
                Want::Reply(FORMERR, false, false, false),
            ),
            (
                "two questions".into(),
                {
                    let mut p = plain("web.fz.test");
                    p[5] = 2;
                    let qn = p[12..].to_vec();
                    p.extend(qn);
                    p
                },
                Want::Reply(FORMERR, false, false, false),
            ),
            (
                "two OPT".into(),
                {
                    let mut p = with_opt(
                        "web.fz.test",
                        1,
                        &[opt_record(0, 0, &[]), opt_record(0, 0, &[])].concat(),
                    );
                    p[11] = 2;
                    p
                },
                Want::Reply(FORMERR, false, false, false),
            ),
            (
                "OPT in the answer section".into(),
                {
                    let mut p = with_opt("web.fz.test", 1, &opt_record(0, 0, &[]));
                    p[7] = 1;
                    p[11] = 0;
                    p
                },
                Want::Reply(FORMERR, false, false, false),
            ),
            // Knot answers this one as if the owner were the root
            (
                "OPT not owned by the root".into(),
                {
                    let mut o = opt_record(0, 0, &[]);
                    o.splice(0..1, [1, b'a', 0]);
                    with_opt("web.fz.test", 1, &o)
                },
                Want::Reply(FORMERR, false, false, false),
            ),
        ];
        // unknown opcodes (every one but QUERY): NOTIMP, the question and OPT echoed
        for opcode in 1..16u8 {
            probes.push((
                format!("opcode {opcode}"),
                with_opcode(edns("web.fz.test"), opcode),
                Want::Reply(NOTIMP, true, true, false),
            ));
        }
        probes.push((
            "opcode 15 without EDNS".into(),
            with_opcode(plain("web.fz.test"), 15),
            Want::Reply(NOTIMP, false, true, false),
        ));
        // Knot: NOTIMP with OPT
        probes.push((
            "opcode 15 without a question".into(),
            {
                let mut p = with_opcode(edns("web.fz.test"), 15);
                p[5] = 0;
                p
            },
            Want::Reply(NOTIMP, false, false, false),
        ));
        // both unknown: BADVERS, as Knot (RFC 6891 makes BADVERS a MUST)
        probes.push((
            "opcode 15 and EDNS version 1".into(),
            with_opcode(with_opt("web.fz.test", 1, &v1), 15),
            Want::Reply(BADVERS, true, true, false),
        ));
        // header bits a query should not set are ignored, and cleared in the reply
        for (bit, flags) in [
            ("AA", 0x0400u16),
            ("TC", 0x0200),
            ("RA", 0x0080),
            ("Z", 0x0040),
            ("AD", 0x0020),
            ("CD", 0x0010),
            ("RCODE", 0x000F),
        ] {
            let mut p = edns("web.fz.test");
            let f = u16::from_be_bytes([p[2], p[3]]) | flags;
            p[2..4].copy_from_slice(&f.to_be_bytes());
            probes.push((
                format!("{bit} set in the query"),
                p,
                Want::Reply(NOERROR, true, true, true),
            ));
        }

        let snap = test_snapshot();
        let mut failures = Vec::new();
        for (label, packet, want) in &probes {
            let (verdict, reply) = ask(snap, packet, false);
            let have = if verdict == Verdict::Silent {
                Want::Silent
            } else {
                got(&reply)
            };
            if have != *want {
                failures.push(format!("{label}: got {have:?}, want {want:?}"));
            }
            if verdict == Verdict::Reply {
                // Z, AD and TC clear, RD and CD copied
                assert_eq!(reply[3] & 0x60, 0, "{label}: Z or AD set in the reply");
                assert_eq!(reply[2] & 0x02, 0, "{label}: TC");
                assert_eq!(reply[2] & 0x01, packet[2] & 0x01, "{label}: RD not copied");
                if let Some(e) = Message::from_vec(&reply).unwrap().edns {
                    let dnssec_ok = packet.len() > 4
                        && Message::from_vec(packet)
                            .is_ok_and(|q| q.edns.is_some_and(|e| e.flags().dnssec_ok));
                    assert_eq!(e.flags().dnssec_ok, dnssec_ok, "{label}: DO");
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    /// RFC 9267: every malformed case is rejected as it must be (and answered FORMERR, or
    /// NOTIMP under an unknown opcode, or not at all), over UDP and TCP.
    #[test]
    fn rfc9267_cases_are_rejected() {
        let seed = seed();
        let mut rng = SmallRng::seed_from_u64(seed);
        let snap = test_snapshot();
        for i in 0..20_000 {
            let (packet, want) = rfc9267_case(&mut rng);
            let parsed = wire::parse_query(&packet);
            assert_eq!(
                parsed.err(),
                Some(want),
                "case {i} (seed {seed}): {packet:02x?}"
            );
            let (verdict, reply) = ask(snap, &packet, i % 2 == 1);
            match want {
                Reject::Drop => assert_eq!(verdict, Verdict::Silent),
                _ => assert_eq!(reply.len(), HEADER_LEN, "case {i} (seed {seed})"),
            }
        }
        check_still_answers(snap).unwrap();
    }

    /// The bounded fuzzing run of the suite: 120,000 random, generated, mutated and RFC 9267
    /// packets through the packet path, over UDP and TCP and with the map fresh, stale and too
    /// old; every outcome checked by [`check_reply`], and a valid query answered correctly
    /// every 1,000 packets and at the end.
    #[test]
    fn flood_of_random_and_mutated_packets() {
        const PACKETS: usize = 120_000;
        let seed = seed();
        let mut rng = SmallRng::seed_from_u64(seed);
        let snap = test_snapshot();
        let started = std::time::Instant::now();
        let mut out = Vec::with_capacity(4096);
        let mut verdicts = [0usize; 3];
        let mut rcodes = [0usize; 17];
        let mut truncated = 0;
        for i in 0..PACKETS {
            let packet = random_packet(&mut rng);
            let tcp = rng.random_bool(0.3);
            let state = *pick(
                &mut rng,
                &[
                    MapState::Fresh,
                    MapState::Fresh,
                    MapState::Fresh,
                    MapState::Stale,
                    MapState::TooOld,
                ],
            );
            let verdict = answer_packet_in(state, snap, &packet, CLIENT, tcp, &mut out);
            if let Err(e) = check_reply(state, snap, &packet, tcp, verdict, &out) {
                panic!(
                    "packet {i} (seed {seed}, {state:?}, tcp={tcp}): {e}\n  packet {packet:02x?}\n  reply {out:02x?}"
                );
            }
            verdicts[verdict as usize] += 1;
            if verdict == Verdict::Reply {
                let high = Message::from_vec(&out)
                    .ok()
                    .and_then(|m| m.edns)
                    .map_or(0, |e| e.rcode_high());
                rcodes[(usize::from(high) << 4 | usize::from(out[3] & 0x0F)).min(16)] += 1;
                truncated += usize::from(out[2] & 0x02 != 0);
            }
            if i % 1000 == 999 {
                check_still_answers(snap)
                    .unwrap_or_else(|e| panic!("after packet {i} (seed {seed}): {e}"));
            }
        }
        check_still_answers(snap).unwrap();
        eprintln!(
            "{PACKETS} packets in {:?} (seed {seed}): replies {}, forwarded {}, silent {}; \
             NOERROR {} FORMERR {} SERVFAIL {} NXDOMAIN {} NOTIMP {} REFUSED {} BADVERS {}; TC {truncated}",
            started.elapsed(),
            verdicts[0],
            verdicts[1],
            verdicts[2],
            rcodes[0],
            rcodes[1],
            rcodes[2],
            rcodes[3],
            rcodes[4],
            rcodes[5],
            rcodes[16],
        );
        // the generators reach every outcome in numbers, not just the parser's first check
        for (what, n, min) in [
            ("replies", verdicts[0], PACKETS / 2),
            ("forwarded", verdicts[1], PACKETS / 100),
            ("silent", verdicts[2], PACKETS / 100),
            ("NOERROR", rcodes[0], PACKETS / 20),
            ("FORMERR", rcodes[1], PACKETS / 10),
            ("SERVFAIL", rcodes[2], PACKETS / 100),
            ("NXDOMAIN", rcodes[3], PACKETS / 100),
            ("NOTIMP", rcodes[4], PACKETS / 100),
            ("REFUSED", rcodes[5], PACKETS / 100),
            ("BADVERS", rcodes[16], PACKETS / 200),
            ("TC", truncated, PACKETS / 4000),
        ] {
            assert!(
                n >= min,
                "only {n} {what} in {PACKETS} packets (seed {seed})"
            );
        }
    }

    /// The bounded znode run: random, mutated and hand-picked bad payloads and names as a
    /// new record set, a new member, the apex, the zone node and other paths, each through
    /// [`check_znode`].
    #[test]
    fn znode_payloads_never_panic_or_reach_an_answer() {
        const PAYLOADS: usize = 2_000;
        let seed = seed();
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut decoded = 0;
        for i in 0..PAYLOADS {
            let path = match rng.random_range(0..6) {
                0 => "fz.test/zz".to_string(),
                1 => "fz.test/svc/m9".to_string(),
                2 => "fz.test/@".to_string(),
                3 => "fz.test".to_string(),
                4 => format!("{}/x", random_name_text(&mut rng).replace('/', "")),
                _ => format!("fz.test/{}", random_name_text(&mut rng).replace('/', "")),
            };
            let payload = random_payload(&mut rng, !path.contains('/'));
            match check_znode(&path, &payload) {
                Ok(ok) => decoded += usize::from(ok),
                Err(e) => panic!(
                    "payload {i} (seed {seed}) at {path}: {e}\n  {}",
                    String::from_utf8_lossy(&payload)
                ),
            }
        }
        assert!(
            decoded > PAYLOADS / 50,
            "only {decoded} payloads decoded (seed {seed})"
        );
    }

    /// Everything the DNS path and the hosts file can observe of a tree, for comparing two:
    /// the lookup of every name (RRsets in wire format; default SOA serials masked, as they
    /// come from the clock), the counts, and every address with its synthesised PTRs.
    fn observe(t: &mut Tree, names: &[String]) -> Vec<String> {
        use crate::names::wire_key_str;
        use crate::store::Lookup;
        let s = t.snapshot();
        let mut scratch = [0u8; 257];
        let mut out: Vec<String> = names
            .iter()
            .map(|n| match s.lookup(&wire_key_str(n), &mut scratch) {
                Lookup::NotOurs => format!("{n}: not ours"),
                Lookup::NxDomain { zone } => format!("{n}: nx {}", zone.name),
                Lookup::Found {
                    zone,
                    node,
                    wildcard,
                } => {
                    let sets: Vec<_> = node
                        .rrsets()
                        .map(|r| {
                            let recs: Vec<Vec<u8>> = r
                                .iter()
                                .map(|rec| {
                                    let mut rec = rec.to_vec();
                                    if r.rtype == RecordType::SOA {
                                        let at = rec.len() - 20;
                                        rec[at..at + 4].fill(0);
                                    }
                                    rec
                                })
                                .collect();
                            (r.rtype, recs)
                        })
                        .collect();
                    format!("{n}: {} {wildcard} {sets:?}", zone.name)
                }
            })
            .collect();
        // not `bad_nodes()`: see bad_node_count_forgets_nodes_gone_during_a_resync
        out.push(format!("names {} records {}", s.names, s.records));
        for (name, ips) in s.addresses() {
            for ip in ips {
                let mut owners: Vec<(Vec<u8>, u32)> = s
                    .holders(crate::names::AddrKey::from(ip))
                    .map(|h| h.iter(0).map(|(name, ttl)| (name.to_vec(), ttl)).collect())
                    .unwrap_or_default();
                owners.sort();
                out.push(format!("{name} {ip} {owners:?}"));
            }
        }
        out
    }

    /// A full read of `model` (paths below `<root>/zones`), parents first, into `base.fresh()`
    /// as the watcher does after a reconnect (or into a new tree).
    fn full_read(model: &std::collections::BTreeMap<String, String>, base: Option<&Tree>) -> Tree {
        let nodes = model.iter().map(|(p, d)| (p.as_str(), d.as_bytes()));
        read_into(
            base.map_or_else(|| Tree::new(None), Tree::fresh),
            "/z",
            nodes,
        )
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(150))]
        /// The map the watcher keeps equals a full read of ZooKeeper's final tree, whatever
        /// the changes: zone settings (TTL, SOA, NS, bad ones), record sets and members with
        /// their own TTLs, bad payloads and bad names turning good and back, nested zones,
        /// deletes of whole subtrees; delivered as the watcher gets them, in batches whose
        /// nodes are re-read after the batch (so a read may see a later state than its event)
        /// and applied parents first, with a full read into `fresh()` wherever the tree asks.
        /// Extends `zk::tree`'s `events_in_any_order_equal_a_full_read`, whose zone nodes
        /// hold no settings, whose names are all valid and whose events apply one by one.
        #[test]
        fn batched_events_equal_a_full_read(
            ops in proptest::collection::vec((0usize..4, 0usize..11, 0usize..3, 0usize..10, proptest::bool::ANY), 1..40)
        ) {
            use std::collections::{BTreeMap, BTreeSet};
            use crate::zk::layout::NodePath;
            let zones = ["a.t", "s.a.t", "b.t", "Bad Zone"];
            let sets = ["web", "x.y", "y", "*", "*.y", "@", "m.s", "deep.x.y", "-", "Bad Name", "UP"];
            let members = [None, Some("m1"), Some("m2")];
            let set_data = [
                None,
                Some(""),
                Some(r#"{"A":["10.0.0.1"]}"#),
                Some(r#"{"A":["10.0.0.2"],"AAAA":["fd00::2"]}"#),
                Some(r#"{"CNAME":"web"}"#),
                Some(r#"{"TXT":["t"],"ttl":9}"#),
                Some(r#"{"A":["10.0.0.1"],"ttl":7}"#),
                Some("{bad"),
                Some(r#"{"TXT":[[]]}"#),
                Some(r#"{"SRV":[{"port":80,"target":"web"}],"A":["10.0.0.3"],"ttl":3}"#),
            ];
            let zone_data = [
                None,
                Some(""),
                Some(r#"{"ttl":60}"#),
                Some(r#"{"soa":{"minimum":1,"serial":7}}"#),
                Some(r#"{"ns":["ns1.a.t."],"ttl":5}"#),
                Some(r#"{"ttl":"60"}"#),
                Some("{bad"),
                Some(r#"{"soa":{"mname":"m","rname":"r.example."}}"#),
                Some(""),
                None,
            ];
            let names: Vec<String> = zones[..3]
                .iter()
                .flat_map(|z| {
                    sets.iter()
                        .map(move |n| match *n {
                            "@" | "-" => z.to_string(),
                            n => format!("{n}.{z}").replace('*', "w").to_ascii_lowercase().replace(' ', ""),
                        })
                        .chain([format!("other.{z}"), format!("q.x.y.{z}"), format!("ns1.{z}")])
                })
                .collect();
            let layout = Layout::new("/z").unwrap();
            let mut model: BTreeMap<String, String> = BTreeMap::new();
            let mut tree = Tree::new(None);
            let mut touched: BTreeSet<String> = BTreeSet::new();
            let last = ops.len() - 1;
            for (i, (z, n, m, d, flush)) in ops.into_iter().enumerate() {
                let path = match (sets[n], members[m]) {
                    ("-", _) => zones[z].to_string(),
                    (set, None) => format!("{}/{set}", zones[z]),
                    (set, Some(member)) => format!("{}/{set}/{member}", zones[z]),
                };
                let value = if path.contains('/') { set_data[d] } else { zone_data[d] };
                // ZooKeeper's rules: parents exist before children, children go first
                let mut steps: Vec<(String, Option<&str>)> = Vec::new();
                if value.is_some() {
                    let mut p = path.as_str();
                    let mut parents = Vec::new();
                    while let Some((parent, _)) = p.rsplit_once('/') {
                        if !model.contains_key(parent) {
                            parents.push(parent.to_string());
                        }
                        p = parent;
                    }
                    steps.extend(parents.into_iter().rev().map(|p| (p, Some(""))));
                } else {
                    let mut children: Vec<String> = model
                        .keys()
                        .filter(|k| k.starts_with(&format!("{path}/")))
                        .cloned()
                        .collect();
                    children.sort_by_key(|c| std::cmp::Reverse(c.matches('/').count()));
                    steps.extend(children.into_iter().map(|c| (c, None)));
                }
                steps.push((path.clone(), value));
                for (step, value) in steps {
                    match value {
                        Some(v) => model.insert(step.clone(), v.to_string()),
                        None => model.remove(&step),
                    };
                    touched.insert(step);
                }
                if !flush && i != last {
                    continue;
                }
                // the batch: what refresh() reads, parents first, each node as it is now
                let mut wanted: BTreeSet<(usize, String)> = BTreeSet::new();
                for p in std::mem::take(&mut touched) {
                    let full = format!("/z/zones/{p}");
                    match layout.classify(&full) {
                        NodePath::Zone(_) => {
                            wanted.insert((1, p));
                        }
                        NodePath::Set(zone, _) => {
                            if !tree.has_zone(zone) {
                                wanted.insert((1, zone.to_string()));
                            }
                            wanted.insert((2, p));
                        }
                        NodePath::Member(zone, set, _) => {
                            if !tree.has_zone(zone) {
                                wanted.insert((1, zone.to_string()));
                            }
                            if !tree.has_set(zone, set) {
                                wanted.insert((2, format!("{zone}/{set}")));
                            }
                            wanted.insert((3, p));
                        }
                        _ => {}
                    }
                }
                let mut resync = false;
                for (_, p) in &wanted {
                    let st = model.get(p).map(|v| state(v.as_bytes()));
                    if tree.apply(&layout, &format!("/z/zones/{p}"), st.as_ref()) == Applied::Resync {
                        resync = true;
                        break;
                    }
                }
                if resync {
                    tree = full_read(&model, Some(&tree));
                }
                let mut full = full_read(&model, None);
                proptest::prop_assert_eq!(observe(&mut tree, &names), observe(&mut full, &names), "after op {} ({} = {:?})", i, path, value);
            }
        }
    }

    /// Regression, found by `batched_events_equal_a_full_read` comparing `bad_nodes()`: a bad
    /// node deleted while the watcher was away is not seen by the full read, and must not stay
    /// counted (the `zkdns_bad_znodes` gauge, and its alert, stuck above zero).
    #[test]
    fn bad_node_count_forgets_nodes_gone_during_a_resync() {
        let mut model = std::collections::BTreeMap::new();
        model.insert("a.t".to_string(), String::new());
        model.insert("a.t/web".to_string(), "{bad".to_string());
        let before = full_read(&model, None);
        assert_eq!(before.bad_nodes(), 1);
        model.remove("a.t/web");
        let after = full_read(&model, Some(&before));
        assert_eq!(after.bad_nodes(), 0, "a report of a node that is gone");
    }
}
