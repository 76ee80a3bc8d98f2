//! The authoritative answer for names in the served zones, written from a snapshot straight
//! into the response buffer: exact names, wildcards (RFC 4592), empty non-terminals as NODATA
//! (RFC 8020), CNAME chains across the zones with loops cut, negative answers with the zone's
//! SOA (RFC 2308), PTR synthesised from the zones' addresses, rotation of multi-record
//! answers, additional addresses for SRV/MX/NS targets, EDNS(0) and truncation.

use std::cell::Cell;

use hickory_proto::rr::RecordType;

use crate::dns::wire::{
    EDE_NO_AUTHORITY, EDE_STALE, HEADER_LEN, OPCODE_QUERY, OPT_LEN, Owner, Query, Reject, Response,
    rcode,
};
use crate::names::{label_offsets, reverse_addr};
use crate::store::node::{PTR_RECORD_MAX, ptr_record};
use crate::store::{Holders, Lookup, RrSetRef, Snapshot, ZoneSnap};

/// Longest CNAME chain followed before the answer is cut (as resolvers do).
pub const MAX_CNAME_CHAIN: usize = 12;

const CLASS_IN: u16 = 1;
const CLASS_ANY: u16 = 255;
const TYPE_ANY: u16 = 255;
const TYPE_PTR: u16 = 12;
const TYPE_AXFR: u16 = 252;
const TYPE_IXFR: u16 = 251;

/// What the server should do with a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The response is in the buffer.
    Reply,
    /// The name is not ours: forward it.
    Forward,
}

/// How current the map is (RFC 8767 serve-stale).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Freshness {
    /// The map follows ZooKeeper.
    #[default]
    Fresh,
    /// ZooKeeper is away: answers come from the last map with TTLs capped at `ttl` and, for
    /// EDNS clients, Extended DNS Error 3 "Stale Answer" (RFC 8914).
    Stale { ttl: u32 },
    /// ZooKeeper has been away longer than the stale data may be served: SERVFAIL, with
    /// Extended DNS Error 22 "No Reachable Authority".
    TooOld,
}

/// Options that apply to every answer.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnswerOptions {
    /// Set RA: true when the stub forwards other names, so it offers recursion.
    pub recursion_available: bool,
    pub freshness: Freshness,
}

thread_local! {
    static ROTATION: Cell<usize> = const { Cell::new(0) };
}

/// Where the rotation of a multi-record answer starts; a per-thread counter, so no shared
/// cache line is written per query.
fn rotation(n: usize) -> usize {
    if n < 2 {
        return 0;
    }
    ROTATION.with(|c| {
        let v = c.get();
        c.set(v.wrapping_add(1));
        v % n
    })
}

fn push_rrset(
    r: &mut Response<'_>,
    section: usize,
    owner: Owner<'_>,
    set: RrSetRef<'_>,
    rotate: bool,
) {
    let start = if rotate { rotation(set.count) } else { 0 };
    // records from `start` to the end, then the ones before it
    for rec in set.iter().skip(start) {
        r.push(section, owner, rec);
    }
    for rec in set.iter().take(start) {
        r.push(section, owner, rec);
    }
}

/// PTR records, one per name holding an address, rotated like an RRset, until the message
/// is full (an address that thousands of names hold costs no more than a full message).
/// Returns whether any was written.
fn push_ptrs(r: &mut Response<'_>, owner: Owner<'_>, holders: Holders<'_>) -> bool {
    let mut buf = [0u8; PTR_RECORD_MAX];
    let mut any = false;
    for (target, ttl) in holders.iter(rotation(holders.len())) {
        if r.is_full() {
            break;
        }
        r.push(1, owner, ptr_record(target, ttl, &mut buf));
        any = true;
    }
    any
}

/// The names holding the address that reverse name `key` names, if any does.
fn holders_of<'s>(snap: &'s Snapshot, key: &[u8]) -> Option<Holders<'s>> {
    snap.holders(reverse_addr(key)?)
}

/// The owner of a zone's apex in this message: a pointer into the question when the question
/// name ends in it (it does for every in-zone question), else the name in full.
fn apex_owner<'a>(qkey: &[u8], zone: &'a ZoneSnap) -> Owner<'a> {
    if qkey.len() >= zone.apex.len() {
        let at = qkey.len() - zone.apex.len();
        if qkey[at..] == *zone.apex && label_offsets(qkey).any(|o| o == at) {
            return Owner::Pointer((HEADER_LEN + at) as u16);
        }
    }
    Owner::Name(&zone.apex)
}

/// Writes a header-only reply for a packet that could not be parsed. Returns `false` when
/// the packet deserves no reply at all.
pub fn reject(reason: Reject, out: &mut Vec<u8>) -> bool {
    let (id, opcode, rd, code) = match reason {
        Reject::Drop => return false,
        Reject::FormErr { id, opcode, rd } => (id, opcode, rd, rcode::FORMERR),
        Reject::NotImp { id, opcode, rd } => (id, opcode, rd, rcode::NOTIMP),
    };
    let mut r = Response::header_only(out, id, opcode, rd);
    r.set_rcode(code);
    r.finish();
    true
}

/// Writes a reply with just the question and `code` (REFUSED, SERVFAIL).
pub fn error_reply(packet: &[u8], q: &Query<'_>, code: u16, out: &mut Vec<u8>) {
    error_reply_with(packet, q, code, &[], out);
}

/// The same, with EDNS options for EDNS clients.
fn error_reply_with(packet: &[u8], q: &Query<'_>, code: u16, options: &[u8], out: &mut Vec<u8>) {
    let mut r = Response::start(out, packet, q);
    r.set_rcode(code);
    if let Some(e) = q.edns {
        r.push_opt(code, e.dnssec_ok, options);
    }
    r.finish();
}

/// Starts an authoritative answer, or says (with a SERVFAIL written) that the map is too old.
fn start_answer<'b>(
    out: &'b mut Vec<u8>,
    packet: &[u8],
    q: &Query<'_>,
    opts: AnswerOptions,
) -> Option<Response<'b>> {
    if opts.freshness == Freshness::TooOld {
        error_reply_with(packet, q, rcode::SERVFAIL, &EDE_NO_AUTHORITY, out);
        return None;
    }
    let mut r = Response::start(out, packet, q);
    r.set_aa(true);
    if opts.recursion_available {
        r.set_ra();
    }
    if let Freshness::Stale { ttl } = opts.freshness {
        r.cap_ttl(ttl);
    }
    Some(r)
}

/// Answers `q` from `snap` into `out` if the name is in a served zone (or is a reverse name of
/// one of their addresses); otherwise says to forward it. `limit` is the largest message the
/// transport takes.
pub fn answer(
    snap: &Snapshot,
    packet: &[u8],
    q: &Query<'_>,
    limit: usize,
    opts: AnswerOptions,
    out: &mut Vec<u8>,
) -> Outcome {
    // the EDNS version first: BADVERS is a MUST (RFC 6891 §6.1.3), NOTIMP a SHOULD, and
    // Knot answers an unknown opcode with an unknown version BADVERS too
    if q.edns.is_some_and(|e| e.version > 0) {
        // BADVERS, with our version (0) in the OPT record
        error_reply(packet, q, rcode::BADVERS, out);
        return Outcome::Reply;
    }
    if q.opcode != OPCODE_QUERY {
        error_reply(packet, q, rcode::NOTIMP, out); // RFC 8906 §3.1.3
        return Outcome::Reply;
    }
    if q.qtype == TYPE_AXFR || q.qtype == TYPE_IXFR {
        error_reply(packet, q, rcode::REFUSED, out);
        return Outcome::Reply;
    }
    let mut keybuf = [0u8; 257];
    let key = q.key(&mut keybuf);
    let mut scratch = [0u8; 257];
    let first = snap.lookup(key, &mut scratch);
    if let Lookup::NotOurs = first {
        let holders = (q.qtype == TYPE_PTR && q.qclass == CLASS_IN)
            .then(|| holders_of(snap, key))
            .flatten();
        if let Some(holders) = holders {
            if let Some(mut r) = start_answer(out, packet, q, opts) {
                push_ptrs(&mut r, Owner::Pointer(HEADER_LEN as u16), holders);
                finish(r, q, rcode::NOERROR, limit, 0, opts);
            }
            return Outcome::Reply;
        }
        return Outcome::Forward;
    }
    if q.qclass != CLASS_IN && q.qclass != CLASS_ANY {
        error_reply(packet, q, rcode::REFUSED, out);
        return Outcome::Reply;
    }
    let qtype = RecordType::from(q.qtype);
    let Some(mut r) = start_answer(out, packet, q, opts) else {
        return Outcome::Reply;
    };

    let mut lookup = first;
    let mut owner = Owner::Pointer(HEADER_LEN as u16);
    // names already answered for, the question first: a CNAME back to any of them is a loop
    let mut visited: [&[u8]; MAX_CNAME_CHAIN + 1] = [&[]; MAX_CNAME_CHAIN + 1];
    visited[0] = key;
    let mut chain = 0;
    // CNAME records written at the front of the answer, which truncation keeps whole
    let mut cnames = 0u16;
    let mut additional: Option<RrSetRef<'_>> = None;
    let code = loop {
        match lookup {
            Lookup::NotOurs => break rcode::NOERROR, // the chain left our zones
            Lookup::NxDomain { zone } => {
                if qtype == RecordType::PTR
                    && chain == 0
                    && holders_of(snap, key).is_some_and(|h| push_ptrs(&mut r, owner, h))
                {
                    break rcode::NOERROR;
                }
                r.push(2, apex_owner(key, zone), zone.soa_negative().first());
                break rcode::NXDOMAIN;
            }
            Lookup::Found { zone, node, .. } => {
                if let Some(cname) = node.cname().filter(|_| qtype != RecordType::CNAME) {
                    r.push(1, owner, cname.first());
                    cnames += 1;
                    let Some(target) = cname.targets().next() else {
                        break rcode::NOERROR;
                    };
                    if chain == MAX_CNAME_CHAIN || visited[..=chain].contains(&target) {
                        break rcode::NOERROR; // loop or too long: answer what we have
                    }
                    chain += 1;
                    visited[chain] = target;
                    owner = Owner::Name(target);
                    lookup = snap.lookup(target, &mut scratch);
                    continue;
                }
                let mut any = false;
                if q.qtype == TYPE_ANY {
                    for set in node.rrsets() {
                        push_rrset(&mut r, 1, owner, set, true);
                        any = true;
                    }
                } else if let Some(set) = node.get(qtype) {
                    push_rrset(&mut r, 1, owner, set, true);
                    if matches!(qtype, RecordType::SRV | RecordType::MX | RecordType::NS) {
                        additional = Some(set);
                    }
                    any = true;
                } else if qtype == RecordType::PTR && chain == 0 {
                    any = holders_of(snap, key).is_some_and(|h| push_ptrs(&mut r, owner, h));
                }
                if !any {
                    // NODATA (RFC 2308 §2.2)
                    r.push(2, apex_owner(key, zone), zone.soa_negative().first());
                }
                break rcode::NOERROR;
            }
        }
    };
    if let Some(set) = additional {
        push_additional(
            &mut r,
            snap,
            set,
            limit.saturating_sub(if q.edns.is_some() {
                OPT_LEN + EDE_STALE.len()
            } else {
                0
            }),
        );
    }
    finish(r, q, code, limit, cnames, opts);
    Outcome::Reply
}

/// Addresses of SRV/MX/NS targets in the served zones, as long as they fit; never TC for them.
fn push_additional(r: &mut Response<'_>, snap: &Snapshot, set: RrSetRef<'_>, limit: usize) {
    let mark = r.mark();
    for target in set.targets() {
        let Some(node) = snap.node(target) else {
            continue;
        };
        for rtype in [RecordType::A, RecordType::AAAA] {
            if let Some(addrs) = node.get(rtype) {
                push_rrset(r, 3, Owner::Name(target), addrs, false);
            }
        }
    }
    if r.len() > limit {
        r.rollback(mark);
    }
}

/// Sets the RCODE, adds OPT (with EDE 3 for a stale answer), and when the answer does not fit
/// in `limit` cuts it to the whole records that do, with TC (see `Response::truncate_to`):
/// over UDP at the client's size, over TCP at one message. The records were written from the
/// rotation point, so the records kept spread over the set from one answer to the next, and
/// the `chain` CNAMEs at the front are kept whole or not at all. OPT is counted within the
/// limit. A negative answer (the question and the SOA) fits in 512 bytes unless its names are
/// near the 255-byte limit, so in practice only a long CNAME chain in front of it is cut.
fn finish(
    mut r: Response<'_>,
    q: &Query<'_>,
    code: u16,
    limit: usize,
    chain: u16,
    opts: AnswerOptions,
) {
    r.set_rcode(code);
    let options: &[u8] = match opts.freshness {
        Freshness::Stale { .. } => &EDE_STALE,
        _ => &[],
    };
    let opt = if q.edns.is_some() {
        OPT_LEN + options.len()
    } else {
        0
    };
    if r.len() + opt > limit {
        r.truncate_to(q.question_end, limit - opt, chain);
    }
    if let Some(e) = q.edns {
        r.push_opt(code, e.dnssec_ok, options);
    }
    r.finish();
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::dns::wire::{EDNS_UDP, MIN_UDP, parse_query};
    use crate::zk::Layout;
    use crate::zk::tree::{NodeState, Tree};
    use hickory_proto::op::{Edns, Message, Query as HQuery};
    use hickory_proto::rr::{Name, RData};

    const TCP: usize = u16::MAX as usize;

    /// A snapshot of `nodes` (paths below `<root>/zones`, and their data), parents first.
    fn snapshot(nodes: &[(&str, String)]) -> Snapshot {
        let layout = Layout::new("/z").unwrap();
        let mut tree = Tree::new(None);
        for depth in 0..3 {
            for (path, data) in nodes
                .iter()
                .filter(|(p, _)| p.matches('/').count() == depth)
            {
                let state = NodeState {
                    data: data.as_bytes().to_vec(),
                    mzxid: 1,
                    mtime: 0,
                };
                tree.apply(&layout, &format!("/z/zones/{path}"), Some(&state));
            }
        }
        tree.snapshot()
    }

    fn addrs(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("10.0.0.{i}")).collect()
    }

    /// The test zone: `big` with 40 addresses (640 bytes of A records), `alias` → `big`,
    /// an SRV set of 20 targets with an address each, and one of 3 targets with 30 each.
    fn test_snapshot() -> Snapshot {
        let mut nodes = vec![
            ("c.test", String::new()),
            ("c.test/big", format!(r#"{{"A": {:?}}}"#, addrs(40))),
            ("c.test/alias", r#"{"CNAME": "big"}"#.to_string()),
        ];
        let srv = |n: usize, prefix: &str| {
            let records: Vec<String> = (0..n)
                .map(|i| format!(r#"{{"port": 80, "target": "{prefix}{i}"}}"#))
                .collect();
            format!(r#"{{"SRV": [{}]}}"#, records.join(","))
        };
        nodes.push(("c.test/_many._tcp", srv(20, "t")));
        nodes.push(("c.test/_few._tcp", srv(3, "u")));
        for i in 0..20 {
            let data = format!(r#"{{"A": ["10.1.0.{i}"]}}"#);
            nodes.push((Box::leak(format!("c.test/t{i}").into_boxed_str()), data));
        }
        for i in 0..3 {
            let data = format!(r#"{{"A": {:?}}}"#, addrs(30));
            nodes.push((Box::leak(format!("c.test/u{i}").into_boxed_str()), data));
        }
        snapshot(&nodes)
    }

    /// A query for `name` with RD, and EDNS of `edns` bytes when given (ID 0x4242).
    pub(crate) fn query(name: &str, qtype: RecordType, edns: Option<u16>) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.id = 0x4242;
        m.metadata.recursion_desired = true;
        m.add_query(HQuery::query(Name::from_ascii(name).unwrap(), qtype));
        if let Some(size) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size);
            m.set_edns(e);
        }
        m.to_vec().unwrap()
    }

    /// Asks `name` at `limit` (the client's UDP size when `None`); the raw reply, decoded.
    fn ask(
        snap: &Snapshot,
        name: &str,
        qtype: RecordType,
        edns: Option<u16>,
        limit: Option<usize>,
    ) -> (Vec<u8>, Message) {
        let packet = query(name, qtype, edns);
        let q = parse_query(&packet).unwrap();
        let limit = limit.unwrap_or_else(|| q.udp_limit());
        let mut out = Vec::new();
        let outcome = answer(snap, &packet, &q, limit, AnswerOptions::default(), &mut out);
        assert_eq!(outcome, Outcome::Reply);
        assert!(
            out.len() <= limit,
            "{} bytes for a limit of {limit}",
            out.len()
        );
        let m = Message::from_vec(&out).unwrap();
        (out, m)
    }

    fn a_records(m: &Message) -> Vec<String> {
        m.answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(a.to_string()),
                _ => None,
            })
            .collect()
    }

    /// Whether `got` is a run of the set `all` from some start, wrapping around; the start.
    fn rotation_of(got: &[String], all: &[String]) -> Option<usize> {
        let start = all.iter().position(|a| *a == got[0])?;
        (0..got.len())
            .all(|i| got[i] == all[(start + i) % all.len()])
            .then_some(start)
    }

    #[test]
    fn udp_keeps_the_whole_records_that_fit_from_the_rotation_point() {
        let snap = test_snapshot();
        let all = addrs(40);
        // 512 bytes without EDNS: header 12, question 16, then 16 bytes an A record
        let mut starts = std::collections::BTreeSet::new();
        for _ in 0..3 {
            let (out, m) = ask(&snap, "big.c.test", RecordType::A, None, None);
            assert!(m.metadata.truncation);
            assert_eq!(m.metadata.response_code.low(), rcode::NOERROR as u8);
            assert!(m.metadata.authoritative);
            let got = a_records(&m);
            assert_eq!(got.len(), (MIN_UDP - 12 - 16) / 16, "{got:?}");
            assert_eq!(out.len(), 12 + 16 + 16 * got.len());
            assert!(m.additionals.is_empty() && m.edns.is_none());
            starts.insert(rotation_of(&got, &all).expect("a run of the set"));
        }
        assert_eq!(starts.len(), 3, "each answer starts where the rotation is");
        // EDNS at 512: OPT counts within the size; at 1232 all 40 fit
        let (_, m) = ask(&snap, "big.c.test", RecordType::A, Some(512), None);
        assert!(m.metadata.truncation && m.edns.is_some());
        assert_eq!(a_records(&m).len(), (512 - 12 - 16 - 11) / 16);
        let (_, m) = ask(&snap, "big.c.test", RecordType::A, Some(EDNS_UDP), None);
        assert!(!m.metadata.truncation);
        assert_eq!(a_records(&m).len(), 40);
        // TCP: everything, without TC
        let (_, m) = ask(&snap, "big.c.test", RecordType::A, None, Some(TCP));
        assert!(!m.metadata.truncation);
        assert_eq!(a_records(&m).len(), 40);
    }

    #[test]
    fn a_cut_answer_keeps_its_cname_first_and_no_additional_section() {
        let snap = test_snapshot();
        // the CNAME (24 bytes), then A records owned by the target's name in full (26 each)
        let (_, m) = ask(&snap, "alias.c.test", RecordType::A, None, None);
        assert!(m.metadata.truncation);
        assert_eq!(m.answers[0].record_type(), RecordType::CNAME);
        let got = a_records(&m);
        assert_eq!(got.len(), (512 - 12 - 18 - 24) / 26, "{got:?}");
        assert_eq!(got.len() + 1, m.answers.len());
        assert!(rotation_of(&got, &addrs(40)).is_some());
        // room for the CNAME and not one address: the CNAME alone, with TC
        let (_, m) = ask(
            &snap,
            "alias.c.test",
            RecordType::A,
            None,
            Some(12 + 18 + 24 + 25),
        );
        assert!(m.metadata.truncation);
        assert_eq!(m.answers.len(), 1);
        assert_eq!(m.answers[0].record_type(), RecordType::CNAME);
        // SRV records that do not all fit: the ones that do, and none of their addresses
        let (_, m) = ask(&snap, "_many._tcp.c.test", RecordType::SRV, None, None);
        assert!(m.metadata.truncation);
        assert!(!m.answers.is_empty() && m.answers.len() < 20);
        assert!(m.additionals.is_empty(), "{:?}", m.additionals);
        let (_, m) = ask(&snap, "_many._tcp.c.test", RecordType::SRV, Some(512), None);
        assert!(m.metadata.truncation && m.edns.is_some());
        assert!(m.additionals.is_empty());
        // SRV records that fit, with addresses that do not: the addresses go, without TC
        let (_, m) = ask(&snap, "_few._tcp.c.test", RecordType::SRV, None, None);
        assert!(!m.metadata.truncation);
        assert_eq!(m.answers.len(), 3);
        assert!(m.additionals.is_empty());
        // over TCP both fit
        let (_, m) = ask(&snap, "_many._tcp.c.test", RecordType::SRV, None, Some(TCP));
        assert!(!m.metadata.truncation);
        assert_eq!((m.answers.len(), m.additionals.len()), (20, 20));
    }

    #[test]
    fn a_cname_chain_that_does_not_fit_is_not_cut() {
        // four CNAMEs between names of 70 bytes: about 550 bytes of chain before the address
        let long = |i: usize| format!("{}{i}", "l".repeat(60));
        let mut nodes = vec![("c.test", String::new())];
        for i in 0..4 {
            let data = format!(r#"{{"CNAME": "{}"}}"#, long(i + 1));
            nodes.push((
                Box::leak(format!("c.test/{}", long(i)).into_boxed_str()),
                data,
            ));
        }
        let last = format!("c.test/{}", long(4));
        nodes.push((&last, r#"{"A": ["10.0.0.1"]}"#.to_string()));
        let snap = snapshot(&nodes);
        let start = format!("{}.c.test", long(0));
        // without EDNS: TC and the question alone, no part of the chain
        let (out, m) = ask(&snap, &start, RecordType::A, None, None);
        assert!(m.metadata.truncation);
        assert!(m.answers.is_empty() && m.authorities.is_empty(), "{m:?}");
        assert_eq!(out.len(), 12 + start.len() + 2 + 4);
        // with room for it: the whole chain and the address
        let (_, m) = ask(&snap, &start, RecordType::A, Some(1232), None);
        assert!(!m.metadata.truncation);
        assert_eq!(m.answers.len(), 5);
        assert_eq!(a_records(&m), ["10.0.0.1"]);
    }

    #[test]
    fn negative_answers_fit_without_tc() {
        let snap = test_snapshot();
        for (name, code) in [
            ("nope.c.test", rcode::NXDOMAIN),
            ("big.c.test", rcode::NOERROR),
        ] {
            let (_, m) = ask(&snap, name, RecordType::TXT, None, None);
            assert!(!m.metadata.truncation, "{name}");
            assert_eq!(m.metadata.response_code.low(), code as u8, "{name}");
            assert!(m.answers.is_empty());
            assert_eq!(m.authorities.len(), 1);
            assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
        }
    }
}
