//! The authoritative answer for names in the served zones, written from a snapshot straight
//! into the response buffer: exact names, wildcards (RFC 4592), empty non-terminals as NODATA
//! (RFC 8020), CNAME chains across the zones with loops cut, negative answers with the zone's
//! SOA (RFC 2308), PTR synthesised from the zones' addresses, rotation of multi-record
//! answers, additional addresses for SRV/MX/NS targets, EDNS(0) and truncation.

use std::cell::Cell;

use hickory_proto::rr::RecordType;

use crate::dns::wire::{HEADER_LEN, OPCODE_QUERY, Owner, Query, Reject, Response, rcode};
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
const OPT_LEN: usize = 11;

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

/// An EDNS option: Extended DNS Error (code 15) with this INFO-CODE and no text.
const fn ede(info: u16) -> [u8; 6] {
    let i = info.to_be_bytes();
    [0, 15, 0, 2, i[0], i[1]]
}
const EDE_STALE: [u8; 6] = ede(3);
const EDE_NO_AUTHORITY: [u8; 6] = ede(22);

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
                finish(r, q, rcode::NOERROR, limit, opts);
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
    finish(r, q, code, limit, opts);
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

/// Sets the RCODE, adds OPT (with EDE 3 for a stale answer), and truncates with TC when the
/// answer does not fit in `limit`.
fn finish(mut r: Response<'_>, q: &Query<'_>, code: u16, limit: usize, opts: AnswerOptions) {
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
        if limit >= u16::MAX as usize {
            // TCP: as many records as one message holds (see `Response::truncate_to`)
            r.truncate_to(q.question_end, limit - opt);
        } else {
            r.truncate(q.question_end);
        }
    }
    if let Some(e) = q.edns {
        r.push_opt(code, e.dnssec_ok, options);
    }
    r.finish();
}
