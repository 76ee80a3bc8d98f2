//! DNS messages at the byte level, for the query path: a strict parser for incoming queries
//! (one question, EDNS(0) OPT, RFC 9267 checks on every name) and a writer that assembles a
//! response from pre-encoded records into a reused buffer, with truncation.

use crate::names::MAX_WIRE_NAME;

pub const HEADER_LEN: usize = 12;
/// Largest UDP answer without EDNS (RFC 1035 §4.2.1).
pub const MIN_UDP: usize = 512;
/// What we advertise and use as our own EDNS UDP limit (DNS flag day 2020).
pub const EDNS_UDP: u16 = 1232;

pub const TYPE_OPT: u16 = 41;
pub const OPCODE_QUERY: u8 = 0;
/// Bytes of an OPT record without options.
pub const OPT_LEN: usize = 11;

/// An EDNS option: Extended DNS Error (code 15, RFC 8914) with this INFO-CODE and no text.
const fn ede(info: u16) -> [u8; 6] {
    let i = info.to_be_bytes();
    [0, 15, 0, 2, i[0], i[1]]
}
/// Extended DNS Error 3, "Stale Answer" (RFC 8767).
pub const EDE_STALE: [u8; 6] = ede(3);
/// Extended DNS Error 22, "No Reachable Authority".
pub const EDE_NO_AUTHORITY: [u8; 6] = ede(22);

pub mod rcode {
    pub const NOERROR: u16 = 0;
    pub const FORMERR: u16 = 1;
    pub const SERVFAIL: u16 = 2;
    pub const NXDOMAIN: u16 = 3;
    pub const NOTIMP: u16 = 4;
    pub const REFUSED: u16 = 5;
    /// Extended RCODE 16: the OPT version is not supported (RFC 6891 §6.1.3).
    pub const BADVERS: u16 = 16;
}

/// The EDNS(0) part of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    pub payload: u16,
    pub version: u8,
    pub dnssec_ok: bool,
}

/// A parsed query, borrowing the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query<'a> {
    pub id: u16,
    pub opcode: u8,
    pub rd: bool,
    pub cd: bool,
    /// The question name in wire format, in the client's letter case.
    pub qname: &'a [u8],
    pub qtype: u16,
    pub qclass: u16,
    /// Offset just past the question.
    pub question_end: usize,
    pub edns: Option<Edns>,
}

impl Query<'_> {
    /// The largest UDP answer this client takes.
    pub fn udp_limit(&self) -> usize {
        match self.edns {
            Some(e) => (e.payload as usize).clamp(MIN_UDP, EDNS_UDP as usize),
            None => MIN_UDP,
        }
    }

    /// Lower-cases the question name into `buf`, returning the key to look it up by.
    pub fn key<'b>(&self, buf: &'b mut [u8; 257]) -> &'b [u8] {
        let n = self.qname.len();
        for (d, s) in buf[..n].iter_mut().zip(self.qname) {
            *d = s.to_ascii_lowercase();
        }
        &buf[..n]
    }
}

/// Why a packet is not a query we can answer normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Not worth an answer: shorter than a header, or itself a response.
    Drop,
    /// Malformed: answer FORMERR with this header.
    FormErr { id: u16, opcode: u8, rd: bool },
    /// An opcode we do not implement, in a message that does not parse as a query either:
    /// answer a bare NOTIMP (RFC 8906 §3.1.3).
    NotImp { id: u16, opcode: u8, rd: bool },
}

fn u16_at(p: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*p.get(at)?, *p.get(at + 1)?]))
}

/// Reads an uncompressed name at `at`; returns its end. The question may not use
/// compression: the only earlier bytes are the header (RFC 9267 §2).
fn read_plain_name(p: &[u8], mut at: usize) -> Option<usize> {
    let start = at;
    loop {
        let len = *p.get(at)? as usize;
        if len == 0 {
            at += 1;
            break;
        }
        if len > 63 {
            return None; // a pointer or a reserved label type
        }
        at += 1 + len;
        if at - start > MAX_WIRE_NAME {
            return None;
        }
    }
    (at - start <= MAX_WIRE_NAME && at <= p.len()).then_some(at)
}

/// Skips a possibly compressed name at `at`; returns the offset after it in the message.
/// Pointers must point backwards, and the expanded name must fit in 255 bytes.
pub fn skip_name(p: &[u8], at: usize) -> Option<usize> {
    let mut pos = at;
    let mut end = None;
    let mut total = 0usize;
    let mut hops = 0;
    loop {
        let len = *p.get(pos)? as usize;
        match len & 0xC0 {
            0x00 => {
                total += len + 1;
                if total > MAX_WIRE_NAME {
                    return None;
                }
                if len == 0 {
                    return Some(end.unwrap_or(pos + 1));
                }
                pos += 1 + len;
            }
            0xC0 => {
                let target = (u16_at(p, pos)? & 0x3FFF) as usize;
                if target >= pos || hops > 127 {
                    return None; // forward pointer or loop
                }
                hops += 1;
                end.get_or_insert(pos + 2);
                pos = target;
            }
            _ => return None,
        }
    }
}

/// The end of a record this module wrote at `at`: its owner (a pointer, or a name in full),
/// the fixed fields and the RDATA.
fn record_end(p: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *p.get(at)? as usize;
        if len & 0xC0 == 0xC0 {
            at += 2;
            break;
        }
        at += 1 + len;
        if len == 0 {
            break;
        }
    }
    let end = at + 10 + u16_at(p, at + 8)? as usize;
    (end <= p.len()).then_some(end)
}

/// Parses a query. Anything malformed is rejected with the reason the answer needs.
pub fn parse_query(p: &[u8]) -> Result<Query<'_>, Reject> {
    if p.len() < HEADER_LEN {
        return Err(Reject::Drop);
    }
    let id = u16::from_be_bytes([p[0], p[1]]);
    let flags = u16::from_be_bytes([p[2], p[3]]);
    if flags & 0x8000 != 0 {
        return Err(Reject::Drop); // a response: never answer those (reflection loops)
    }
    let opcode = ((flags >> 11) & 0xF) as u8;
    let rd = flags & 0x0100 != 0;
    let cd = flags & 0x0010 != 0;
    // an opcode we do not implement still gets its question and OPT echoed when they parse
    let formerr = if opcode == OPCODE_QUERY {
        Reject::FormErr { id, opcode, rd }
    } else {
        Reject::NotImp { id, opcode, rd }
    };
    let qd = u16::from_be_bytes([p[4], p[5]]);
    let an = u16::from_be_bytes([p[6], p[7]]);
    let ns = u16::from_be_bytes([p[8], p[9]]);
    let ar = u16::from_be_bytes([p[10], p[11]]);
    if qd != 1 {
        return Err(formerr);
    }
    let name_end = read_plain_name(p, HEADER_LEN).ok_or(formerr)?;
    let qtype = u16_at(p, name_end).ok_or(formerr)?;
    let qclass = u16_at(p, name_end + 2).ok_or(formerr)?;
    let question_end = name_end + 4;
    let mut at = question_end;
    let mut edns = None;
    for i in 0..(an as usize + ns as usize + ar as usize) {
        let owner = at;
        at = skip_name(p, at).ok_or(formerr)?;
        let rtype = u16_at(p, at).ok_or(formerr)?;
        let class = u16_at(p, at + 2).ok_or(formerr)?;
        let ttl_hi = u16_at(p, at + 4).ok_or(formerr)?;
        let rdlen = u16_at(p, at + 8).ok_or(formerr)? as usize;
        let rdata_end = at + 10 + rdlen;
        if rdata_end > p.len() {
            return Err(formerr);
        }
        if rtype == TYPE_OPT {
            // only in the additional section, once, owned by the root (RFC 6891 §6.1.1)
            if i < an as usize + ns as usize || edns.is_some() || p[owner] != 0 {
                return Err(formerr);
            }
            edns = Some(Edns {
                payload: class,
                version: (ttl_hi & 0xFF) as u8,
                dnssec_ok: u16_at(p, at + 6).ok_or(formerr)? & 0x8000 != 0,
            });
        }
        at = rdata_end;
    }
    Ok(Query {
        id,
        opcode,
        rd,
        cd,
        qname: &p[HEADER_LEN..name_end],
        qtype,
        qclass,
        question_end,
        edns,
    })
}

/// Where an owner name comes from when writing a record.
#[derive(Debug, Clone, Copy)]
pub enum Owner<'a> {
    /// A pointer into the message (e.g. to the question name, or a suffix of it).
    Pointer(u16),
    /// A name written out in full (wire format).
    Name(&'a [u8]),
}

/// Builds one response in a reused buffer. Sections must be written in order.
pub struct Response<'b> {
    buf: &'b mut Vec<u8>,
    counts: [u16; 4],
    ttl_cap: Option<u32>,
}

impl<'b> Response<'b> {
    /// Starts a response echoing the query's header and question (in the client's case).
    pub fn start(buf: &'b mut Vec<u8>, packet: &[u8], q: &Query<'_>) -> Self {
        buf.clear();
        buf.extend_from_slice(&packet[..q.question_end]);
        // QR, opcode, AA=0, TC=0, RD copied, RA=0, Z=0, AD=0, CD copied, RCODE=0
        let flags = 0x8000
            | ((q.opcode as u16) << 11)
            | if q.rd { 0x0100 } else { 0 }
            | if q.cd { 0x0010 } else { 0 };
        buf[2..4].copy_from_slice(&flags.to_be_bytes());
        buf[4..12].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        Self {
            buf,
            counts: [1, 0, 0, 0],
            ttl_cap: None,
        }
    }

    /// Starts an answer to a packet we could not parse: header only.
    pub fn header_only(buf: &'b mut Vec<u8>, id: u16, opcode: u8, rd: bool) -> Self {
        buf.clear();
        buf.extend_from_slice(&id.to_be_bytes());
        let flags = 0x8000 | ((opcode as u16 & 0xF) << 11) | if rd { 0x0100 } else { 0 };
        buf.extend_from_slice(&flags.to_be_bytes());
        buf.extend_from_slice(&[0; 8]);
        Self {
            buf,
            counts: [0; 4],
            ttl_cap: None,
        }
    }

    pub fn set_aa(&mut self, aa: bool) {
        if aa {
            self.buf[2] |= 0x04;
        } else {
            self.buf[2] &= !0x04;
        }
    }

    pub fn set_ra(&mut self) {
        self.buf[3] |= 0x80;
    }

    /// Sets the low four bits of the RCODE (the rest goes in the OPT record).
    pub fn set_rcode(&mut self, rcode: u16) {
        self.buf[3] = (self.buf[3] & 0xF0) | (rcode & 0x0F) as u8;
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// From now on, no record leaves with a TTL above `cap` (serve-stale, RFC 8767 §4).
    pub fn cap_ttl(&mut self, cap: u32) {
        self.ttl_cap = Some(cap);
    }

    /// Writes one record (`TYPE CLASS TTL RDLENGTH RDATA`, owner given apart) in `section`
    /// (1 answer, 2 authority, 3 additional).
    pub fn push(&mut self, section: usize, owner: Owner<'_>, record: &[u8]) {
        // Past the largest message any transport takes, more records only cost time (a name
        // with 100k members) and would overflow the 16-bit counts; finish() cuts it anyway.
        if self.is_full() {
            return;
        }
        match owner {
            Owner::Pointer(at) => self.buf.extend_from_slice(&(0xC000 | at).to_be_bytes()),
            Owner::Name(name) => self.buf.extend_from_slice(name),
        }
        let at = self.buf.len() + 4;
        self.buf.extend_from_slice(record);
        if let Some(cap) = self.ttl_cap {
            if let Some(ttl) = self.buf.get_mut(at..at + 4) {
                let old = u32::from_be_bytes([ttl[0], ttl[1], ttl[2], ttl[3]]);
                ttl.copy_from_slice(&old.min(cap).to_be_bytes());
            }
        }
        self.counts[section] += 1;
    }

    /// Past the largest message any transport takes: further records are not written.
    pub fn is_full(&self) -> bool {
        self.buf.len() > u16::MAX as usize
    }

    /// A mark to roll back to, e.g. when the additional section does not fit.
    pub fn mark(&self) -> (usize, [u16; 4]) {
        (self.buf.len(), self.counts)
    }

    pub fn rollback(&mut self, mark: (usize, [u16; 4])) {
        self.buf.truncate(mark.0);
        self.counts = mark.1;
    }

    /// Cuts an answer that is over `max` bytes and sets TC (RFC 2181 §9). It keeps the
    /// answer and authority records that end within `max`, in the order written, and none of
    /// the additional section: those addresses are only a hint, and a client that gets TC
    /// and asks again over TCP gets them there. Some resolvers (musl before 1.2.4) never ask
    /// again and use whatever the TC answer holds, so the records that fit are kept rather
    /// than dropped (RFC 2181 §9 lets a partial RRset stay in a TC answer); over TCP, where no
    /// larger message exists, the same cut sends an RRset too large for one message in part.
    ///
    /// `whole` is how many answer records at the front must stay together: the CNAME chain.
    /// If fewer than that fit, no record is kept at all, since a chain cut short names no
    /// address and a client would take its last alias for the end of the chain; the question
    /// alone with TC sends a client over TCP, and one that never goes there fails as it would
    /// with no answer.
    pub fn truncate_to(&mut self, question_end: usize, max: usize, whole: u16) {
        let mut at = question_end;
        let mut kept = [self.counts[0], 0, 0, 0];
        'sections: for (kept, &count) in kept.iter_mut().zip(&self.counts).skip(1).take(2) {
            for _ in 0..count {
                let Some(end) = record_end(self.buf, at).filter(|&end| end <= max) else {
                    break 'sections;
                };
                at = end;
                *kept += 1;
            }
        }
        if kept[1] < whole.min(self.counts[1]) {
            at = question_end;
            kept = [self.counts[0], 0, 0, 0];
        }
        self.buf.truncate(at);
        self.counts = kept;
        self.buf[2] |= 0x02;
    }

    /// Appends the OPT record of our answer to an EDNS query.
    pub fn push_opt(&mut self, rcode: u16, dnssec_ok: bool, options: &[u8]) {
        self.buf.push(0); // root owner
        self.buf.extend_from_slice(&TYPE_OPT.to_be_bytes());
        self.buf.extend_from_slice(&EDNS_UDP.to_be_bytes());
        self.buf.push((rcode >> 4) as u8); // extended RCODE
        self.buf.push(0); // version 0
        self.buf
            .extend_from_slice(&(if dnssec_ok { 0x8000u16 } else { 0 }).to_be_bytes());
        self.buf
            .extend_from_slice(&(options.len() as u16).to_be_bytes());
        self.buf.extend_from_slice(options);
        self.counts[3] += 1;
    }

    /// Writes the section counts; the message is complete.
    pub fn finish(self) {
        for (i, c) in self.counts.iter().enumerate() {
            self.buf[4 + 2 * i..6 + 2 * i].copy_from_slice(&c.to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Edns as HEdns, Message, Query as HQuery};
    use hickory_proto::rr::{Name, RecordType};

    fn query(name: &str, edns: bool) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.id = 0x1234;
        m.metadata.recursion_desired = true;
        m.add_query(HQuery::query(
            Name::from_ascii(name).unwrap(),
            RecordType::A,
        ));
        if edns {
            let mut e = HEdns::new();
            e.set_max_payload(4096);
            e.set_dnssec_ok(true);
            m.set_edns(e);
        }
        m.to_vec().unwrap()
    }

    #[test]
    fn parses_a_query() {
        let p = query("Web.Example.", true);
        let q = parse_query(&p).unwrap();
        assert_eq!(q.id, 0x1234);
        assert!(q.rd);
        assert_eq!(q.qname, b"\x03Web\x07Example\x00");
        assert_eq!(q.qtype, 1);
        assert_eq!(q.qclass, 1);
        assert_eq!(
            q.edns,
            Some(Edns {
                payload: 4096,
                version: 0,
                dnssec_ok: true
            })
        );
        assert_eq!(q.udp_limit(), EDNS_UDP as usize);
        let mut buf = [0u8; 257];
        assert_eq!(q.key(&mut buf), b"\x03web\x07example\x00");
        let plain = query("a.", false);
        assert_eq!(parse_query(&plain).unwrap().udp_limit(), 512);
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(parse_query(&[0; 5]), Err(Reject::Drop));
        let mut p = query("a.b.", false);
        p[2] |= 0x80;
        assert_eq!(parse_query(&p), Err(Reject::Drop));
        let mut p = query("a.b.", false);
        p[2] |= 0x28; // opcode 5: parsed, for a NOTIMP that echoes the question
        assert_eq!(parse_query(&p).unwrap().opcode, 5);
        p[5] = 0; // and without a question: a bare NOTIMP
        assert!(matches!(
            parse_query(&p),
            Err(Reject::NotImp { opcode: 5, .. })
        ));
        // a compression pointer in the question
        let mut p = query("a.b.", false);
        p[12] = 0xC0;
        p[13] = 0x0C;
        assert!(matches!(parse_query(&p), Err(Reject::FormErr { .. })));
        // label longer than 63 / reserved label types
        let mut p = query("a.b.", false);
        p[12] = 0x40;
        assert!(matches!(parse_query(&p), Err(Reject::FormErr { .. })));
        // counts past the end
        let mut p = query("a.b.", false);
        p[11] = 3;
        assert!(matches!(parse_query(&p), Err(Reject::FormErr { .. })));
        // truncated question
        let p = query("a.b.", false);
        assert!(matches!(
            parse_query(&p[..p.len() - 1]),
            Err(Reject::FormErr { .. })
        ));
        // no question
        let mut p = query("a.b.", false);
        p[5] = 0;
        assert!(matches!(parse_query(&p), Err(Reject::FormErr { .. })));
        // name over 255 bytes
        let mut p = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for _ in 0..5 {
            p.push(63);
            p.extend([b'a'; 63]);
        }
        p.extend([0, 0, 1, 0, 1]);
        assert!(matches!(parse_query(&p), Err(Reject::FormErr { .. })));
    }

    #[test]
    fn skip_name_rejects_loops_and_forward_pointers() {
        let p = [0xC0, 0x00];
        assert_eq!(skip_name(&p, 0), None);
        let p = [0x01, b'a', 0xC0, 0x05, 0x00, 0x00];
        assert_eq!(skip_name(&p, 0), None);
        let p = [0x01, b'a', 0x00, 0xC0, 0x00];
        assert_eq!(skip_name(&p, 3), Some(5));
    }

    #[test]
    fn writes_a_response_hickory_can_read() {
        let p = query("Web.Example.", true);
        let q = parse_query(&p).unwrap();
        let mut buf = Vec::new();
        let mut r = Response::start(&mut buf, &p, &q);
        r.set_aa(true);
        r.push(
            1,
            Owner::Pointer(12),
            &[0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 10, 0, 0, 1],
        );
        r.push_opt(0, true, &[]);
        r.finish();
        let m = Message::from_vec(&buf).unwrap();
        assert_eq!(m.metadata.id, 0x1234);
        assert!(m.metadata.authoritative);
        assert_eq!(m.answers.len(), 1);
        assert_eq!(m.answers[0].name.to_ascii(), "Web.Example.");
        assert_eq!(m.answers[0].ttl, 30);
        assert!(m.edns.is_some());
    }

    /// A response to `a.b. A` with `n[s]` A records in section `s`, cut at `max` bytes
    /// keeping `whole`: the message and its counts.
    fn cut(n: [u16; 4], max: usize, whole: u16) -> (Vec<u8>, [u16; 4]) {
        let p = query("a.b.", false);
        let q = parse_query(&p).unwrap();
        let mut buf = Vec::new();
        let mut r = Response::start(&mut buf, &p, &q);
        for (section, &count) in n.iter().enumerate().skip(1) {
            for i in 0..count {
                let rec = [0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 10, 0, section as u8, i as u8];
                r.push(section, Owner::Pointer(12), &rec);
            }
        }
        r.truncate_to(q.question_end, max, whole);
        r.finish();
        let counts = std::array::from_fn(|i| u16::from_be_bytes([buf[4 + 2 * i], buf[5 + 2 * i]]));
        (buf, counts)
    }

    #[test]
    fn truncate_to_keeps_whole_records_and_no_additional() {
        let question_end = 12 + 5 + 4;
        // an A record with a compressed owner is 16 bytes; the fourth would end past `max`
        let (buf, counts) = cut([1, 5, 0, 2], question_end + 3 * 16 + 15, 0);
        assert_eq!(counts, [1, 3, 0, 0]);
        assert_eq!(buf.len(), question_end + 3 * 16);
        assert_ne!(buf[2] & 0x02, 0, "TC");
        let m = Message::from_vec(&buf).unwrap();
        assert!(m.metadata.truncation);
        assert_eq!(
            m.answers[2].data.to_string(),
            "10.0.1.2",
            "the first three, in order"
        );
        // the answer fits and the additional section would in part: it goes all the same
        let (_, counts) = cut([1, 5, 0, 2], question_end + 6 * 16, 0);
        assert_eq!(counts, [1, 5, 0, 0]);
        // a negative answer's SOA in AUTHORITY stays when it fits
        let (_, counts) = cut([1, 0, 1, 1], question_end + 16, 0);
        assert_eq!(counts, [1, 0, 1, 0]);
        // the first four must stay together (a CNAME chain): three fit, so none is kept
        let (buf, counts) = cut([1, 6, 0, 0], question_end + 3 * 16, 4);
        assert_eq!(counts, [1, 0, 0, 0]);
        assert_eq!(buf.len(), question_end);
        assert_ne!(buf[2] & 0x02, 0, "TC");
        let (_, counts) = cut([1, 6, 0, 0], question_end + 4 * 16, 4);
        assert_eq!(counts, [1, 4, 0, 0]);
    }
}
