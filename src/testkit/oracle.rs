//! What every reply must be: hand-built queries, and [`check_reply`], the rules a reply keeps
//! whatever the packet (checked by the fuzzers and the flood tests).

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;

use super::*;
use crate::dns::wire::{self, EDNS_UDP, HEADER_LEN, MIN_UDP, Reject, TYPE_OPT, rcode};
use crate::store::Snapshot;

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
