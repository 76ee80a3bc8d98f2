//! The byte layout of a name's entry in the snapshot, and views over it. An entry is a small
//! header (zone, flags, number of RRsets, and the number of record sets below the name when
//! there are any: most names are leaves) followed by its RRsets, each a header
//! and its records in wire format without owner (`TYPE CLASS TTL RDLENGTH RDATA`), so an answer
//! copies them straight into the response.

use std::collections::HashSet;
use std::net::IpAddr;

use foldhash::fast::RandomState;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, PTR, SRV, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};

use crate::records::RecordData;

/// The name holds a record set (a znode), not only names below it.
pub const FLAG_SET: u8 = 1;
/// The record set has data of its own (counted as a name in metrics).
pub const FLAG_NAME: u8 = 2;
/// The header carries the count of record sets below the name (absent: none).
const FLAG_BELOW: u8 = 4;
/// Zone (2 bytes), flags, number of RRsets; then the count below (4 bytes) with `FLAG_BELOW`.
const NODE_HEADER: usize = 4;
const RRSET_HEADER: usize = 8;
/// `TYPE CLASS TTL RDLENGTH` before each RDATA.
pub const RR_FIXED: usize = 10;

fn u16_le(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_le(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// One RRset of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RrSetRef<'a> {
    pub rtype: RecordType,
    pub count: usize,
    /// The records, back to back.
    pub records: &'a [u8],
}

impl<'a> RrSetRef<'a> {
    /// Reads an RRset (header and records) at the start of `b`; returns it and its length.
    pub fn parse(b: &'a [u8]) -> (Self, usize) {
        let rtype = RecordType::from(u16_le(b, 0));
        let count = u16_le(b, 2) as usize;
        let len = u32_le(b, 4) as usize;
        let set = Self {
            rtype,
            count,
            records: &b[RRSET_HEADER..RRSET_HEADER + len],
        };
        (set, RRSET_HEADER + len)
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Each record, in order.
    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        let records = self.records;
        let mut at = 0;
        std::iter::from_fn(move || {
            if at >= records.len() {
                return None;
            }
            let rdlen = u16::from_be_bytes([records[at + 8], records[at + 9]]) as usize;
            let rec = &records[at..at + RR_FIXED + rdlen];
            at += rec.len();
            Some(rec)
        })
    }

    /// The first record (CNAME and SOA sets have exactly one).
    pub fn first(&self) -> &'a [u8] {
        self.iter().next().unwrap_or_default()
    }

    /// The names the records point at, in wire format: the target of CNAME and NS, the target
    /// of SRV, the exchange of MX. Stored lower-case and uncompressed, so usable as keys.
    pub fn targets(&self) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        let skip = match self.rtype {
            RecordType::CNAME | RecordType::NS => Some(0),
            RecordType::SRV => Some(6),
            RecordType::MX => Some(2),
            _ => None,
        };
        self.iter()
            .filter_map(move |rec| skip.map(|s| &rec[RR_FIXED + s..]))
    }
}

/// A name's entry.
#[derive(Debug, Clone, Copy)]
pub struct NodeRef<'a> {
    pub zone: u16,
    pub flags: u8,
    /// Record sets strictly below this name (an empty non-terminal has some).
    pub below: u32,
    nsets: u8,
    body: &'a [u8],
}

impl<'a> NodeRef<'a> {
    pub fn parse(b: &'a [u8]) -> Self {
        let flags = b[2];
        let (below, body) = if flags & FLAG_BELOW != 0 {
            (u32_le(b, NODE_HEADER), NODE_HEADER + 4)
        } else {
            (0, NODE_HEADER)
        };
        Self {
            zone: u16_le(b, 0),
            flags: flags & !FLAG_BELOW,
            below,
            nsets: b[3],
            body: &b[body..],
        }
    }

    pub fn is_set(&self) -> bool {
        self.flags & FLAG_SET != 0
    }

    pub fn rrsets(&self) -> impl Iterator<Item = RrSetRef<'a>> + use<'a> {
        let mut rest = self.body;
        let mut left = self.nsets;
        std::iter::from_fn(move || {
            if left == 0 {
                return None;
            }
            left -= 1;
            let (set, len) = RrSetRef::parse(rest);
            rest = &rest[len..];
            Some(set)
        })
    }

    pub fn has_rrsets(&self) -> bool {
        self.nsets > 0
    }

    pub fn get(&self, rtype: RecordType) -> Option<RrSetRef<'a>> {
        self.rrsets().find(|s| s.rtype == rtype)
    }

    pub fn cname(&self) -> Option<RrSetRef<'a>> {
        self.get(RecordType::CNAME)
    }

    /// Number of records across the RRsets.
    pub fn records(&self) -> usize {
        self.rrsets().map(|s| s.count).sum()
    }

    /// The A and AAAA addresses.
    pub fn addresses(&self) -> impl Iterator<Item = std::net::IpAddr> + use<'a> {
        self.rrsets()
            .filter(|s| matches!(s.rtype, RecordType::A | RecordType::AAAA))
            .flat_map(|s| s.iter())
            .filter_map(|rec| {
                let rdata = &rec[RR_FIXED..];
                if let Ok(b) = <[u8; 4]>::try_from(rdata) {
                    Some(std::net::IpAddr::from(b))
                } else {
                    <[u8; 16]>::try_from(rdata).ok().map(std::net::IpAddr::from)
                }
            })
    }
}

/// Whether an entry gives PTR records to its addresses: a record set does, a wildcard does
/// not (a wildcard is no name to point at), nor does an empty non-terminal.
pub fn gives_ptrs(node: &NodeRef<'_>, key: &[u8]) -> bool {
    node.is_set() && !key.starts_with(b"\x01*")
}

/// The TTL of the A or AAAA record that holds `addr` (4 or 16 octets), if the entry has one.
pub fn address_ttl(node: &NodeRef<'_>, addr: &[u8]) -> Option<u32> {
    let rtype = if addr.len() == 4 {
        RecordType::A
    } else {
        RecordType::AAAA
    };
    node.get(rtype)?
        .iter()
        .find(|rec| &rec[RR_FIXED..] == addr)
        .map(|rec| u32::from_be_bytes([rec[4], rec[5], rec[6], rec[7]]))
}

/// Longest PTR record: the fixed part and a name of at most 255 bytes.
pub const PTR_RECORD_MAX: usize = RR_FIXED + 255;

/// Writes a PTR record (without owner) pointing at `target`, a wire name, into `buf`.
pub fn ptr_record<'b>(target: &[u8], ttl: u32, buf: &'b mut [u8; PTR_RECORD_MAX]) -> &'b [u8] {
    buf[..2].copy_from_slice(&u16::from(RecordType::PTR).to_be_bytes());
    buf[2..4].copy_from_slice(&1u16.to_be_bytes());
    buf[4..8].copy_from_slice(&ttl.to_be_bytes());
    buf[8..10].copy_from_slice(&(target.len() as u16).to_be_bytes());
    buf[RR_FIXED..RR_FIXED + target.len()].copy_from_slice(target);
    &buf[..RR_FIXED + target.len()]
}

/// Encodes one record without owner: `TYPE CLASS TTL RDLENGTH RDATA`.
pub fn encode_record(rdata: &RData, ttl: u32, out: &mut Vec<u8>) {
    let record = Record::from_rdata(Name::root(), ttl, rdata.clone());
    let mut buf = Vec::with_capacity(32);
    let mut encoder = BinEncoder::new(&mut buf);
    encoder.set_canonical_form(true);
    record.emit(&mut encoder).expect("validated record encodes");
    out.extend_from_slice(&buf[1..]); // without the root owner name
}

/// Appends an RRset (header and records) of distinct `rdatas` to `out`; nothing when empty.
pub fn encode_rrset(rtype: RecordType, rdatas: &[RData], ttl: u32, out: &mut Vec<u8>) -> bool {
    let head = out.len();
    out.extend_from_slice(&u16::from(rtype).to_le_bytes());
    out.extend_from_slice(&[0; 6]);
    // one record per distinct value, first one kept: members may repeat an address; and no
    // more than the 16-bit count holds (far past what one message carries anyway). Addresses,
    // by far the most records (a set with thousands of members has thousands), are written
    // directly; the rest through hickory's encoder.
    let mut seen_addrs: HashSet<IpAddr, RandomState> = HashSet::default();
    let mut seen: HashSet<Vec<u8>, RandomState> = HashSet::default();
    let mut rec = Vec::with_capacity(64);
    let mut count = 0u16;
    for r in rdatas {
        if count == u16::MAX {
            break;
        }
        let fresh = match r {
            RData::A(a) => seen_addrs
                .insert(IpAddr::V4(a.0))
                .then(|| address_record(RecordType::A, ttl, &a.0.octets(), out)),
            RData::AAAA(a) => seen_addrs
                .insert(IpAddr::V6(a.0))
                .then(|| address_record(RecordType::AAAA, ttl, &a.0.octets(), out)),
            _ => {
                rec.clear();
                encode_record(r, ttl, &mut rec);
                let fresh = !seen.contains(&rec);
                if fresh {
                    out.extend_from_slice(&rec);
                    seen.insert(rec.clone());
                }
                fresh.then_some(())
            }
        };
        count += u16::from(fresh.is_some());
    }
    if count == 0 {
        out.truncate(head);
        return false;
    }
    let len = (out.len() - head - RRSET_HEADER) as u32;
    out[head..head + RRSET_HEADER].copy_from_slice(&rrset_header(rtype, count, len));
    true
}

/// Appends an A or AAAA record (without owner), as [`encode_record`] would write it.
fn address_record(rtype: RecordType, ttl: u32, octets: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&u16::from(rtype).to_be_bytes());
    out.extend_from_slice(&u16::from(DNSClass::IN).to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(&(octets.len() as u16).to_be_bytes());
    out.extend_from_slice(octets);
}

/// An RRset's header: type, number of records, and their length in bytes (what
/// [`RrSetRef::parse`] reads).
pub fn rrset_header(rtype: RecordType, count: u16, len: u32) -> [u8; RRSET_HEADER] {
    let mut h = [0u8; RRSET_HEADER];
    h[..2].copy_from_slice(&u16::from(rtype).to_le_bytes());
    h[2..4].copy_from_slice(&count.to_le_bytes());
    h[4..].copy_from_slice(&len.to_le_bytes());
    h
}

/// The RRsets of a record set's data. A CNAME excludes every other type (RFC 1034 §3.6.2).
pub fn rrsets_of(data: &RecordData) -> Vec<(RecordType, Vec<RData>)> {
    if let Some(target) = &data.cname {
        return vec![(RecordType::CNAME, vec![RData::CNAME(CNAME(target.clone()))])];
    }
    let sets: [(RecordType, Vec<RData>); 6] = [
        (
            RecordType::A,
            data.a.iter().map(|a| RData::A(A(*a))).collect(),
        ),
        (
            RecordType::AAAA,
            data.aaaa.iter().map(|a| RData::AAAA(AAAA(*a))).collect(),
        ),
        (
            RecordType::TXT,
            data.txt
                .iter()
                .map(|t| RData::TXT(TXT::from_bytes(t.iter().map(|s| &**s).collect())))
                .collect(),
        ),
        (
            RecordType::SRV,
            data.srv
                .iter()
                .map(|(p, w, port, t)| RData::SRV(SRV::new(*p, *w, *port, t.clone())))
                .collect(),
        ),
        (
            RecordType::MX,
            data.mx
                .iter()
                .map(|(p, e)| RData::MX(MX::new(*p, e.clone())))
                .collect(),
        ),
        (
            RecordType::PTR,
            data.ptr
                .iter()
                .map(|p| RData::PTR(PTR(p.clone())))
                .collect(),
        ),
    ];
    sets.into_iter().filter(|(_, v)| !v.is_empty()).collect()
}

/// Encodes a whole entry from its RRsets, each with its TTL.
pub fn encode_node<'r>(
    zone: u16,
    flags: u8,
    below: u32,
    rrsets: impl IntoIterator<Item = (RecordType, &'r [RData], u32)>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    node_header(zone, flags, below, &mut out);
    let mut n = 0u8;
    for (rtype, rdatas, ttl) in rrsets {
        if encode_rrset(rtype, rdatas, ttl, &mut out) {
            n += 1;
        }
    }
    out[3] = n;
    out
}

/// Writes an entry's header with no RRsets counted yet.
fn node_header(zone: u16, flags: u8, below: u32, out: &mut Vec<u8>) {
    out.extend_from_slice(&zone.to_le_bytes());
    if below == 0 {
        out.extend_from_slice(&[flags, 0]);
    } else {
        out.extend_from_slice(&[flags | FLAG_BELOW, 0]);
        out.extend_from_slice(&below.to_le_bytes());
    }
}

/// The same entry with a new count of record sets below it.
pub fn with_below(entry: &[u8], below: u32) -> Vec<u8> {
    let node = NodeRef::parse(entry);
    let mut out = Vec::with_capacity(NODE_HEADER + 4 + node.body.len());
    node_header(node.zone, node.flags, below, &mut out);
    out[3] = node.nsets;
    out.extend_from_slice(node.body);
    out
}

/// Reads an entry's records back into record-set data (for merging members into a set whose
/// own data is kept only in the snapshot). The TTL comes back explicit.
pub fn decode_data(node: &NodeRef<'_>) -> RecordData {
    let mut data = RecordData::default();
    let mut buf = Vec::with_capacity(64);
    for set in node.rrsets() {
        for rec in set.iter() {
            buf.clear();
            buf.push(0);
            buf.extend_from_slice(rec);
            let Ok(record) = Record::<RData>::read(&mut BinDecoder::new(&buf)) else {
                continue;
            };
            match record.data {
                RData::SOA(_) | RData::NS(_) => continue, // the apex's, not the set's
                _ => data.ttl = Some(record.ttl),
            }
            match record.data {
                RData::A(a) => data.a.push(a.0),
                RData::AAAA(a) => data.aaaa.push(a.0),
                RData::CNAME(c) => data.cname = Some(c.0),
                RData::TXT(t) => data.txt.push(t.txt_data.to_vec()),
                RData::SRV(s) => data.srv.push((s.priority, s.weight, s.port, s.target)),
                RData::MX(m) => data.mx.push((m.preference, m.exchange)),
                RData::PTR(p) => data.ptr.push(p.0),
                _ => {}
            }
        }
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_written_as_hickory_writes_them() {
        let rdatas = [
            RData::A(A("10.0.0.1".parse().unwrap())),
            RData::AAAA(AAAA("fd00::1".parse().unwrap())),
            RData::A(A("10.0.0.1".parse().unwrap())),
            RData::A(A("10.0.0.2".parse().unwrap())),
        ];
        let mut fast = Vec::new();
        assert!(encode_rrset(RecordType::A, &rdatas, 77, &mut fast));
        let mut want = Vec::new();
        for r in [&rdatas[0], &rdatas[1], &rdatas[3]] {
            encode_record(r, 77, &mut want);
        }
        let (set, len) = RrSetRef::parse(&fast);
        assert_eq!(
            (set.count, len),
            (3, fast.len()),
            "the repeated address once"
        );
        assert_eq!(set.records, &want[..]);
    }

    #[test]
    fn entries_round_trip() {
        let data = RecordData {
            ttl: Some(30),
            a: vec![
                "10.0.0.1".parse().unwrap(),
                "10.0.0.2".parse().unwrap(),
                "10.0.0.1".parse().unwrap(),
            ],
            txt: vec![vec![b"a".to_vec().into(), b"b".to_vec().into()]],
            srv: vec![(0, 5, 80, Name::from_ascii("web.c.l.").unwrap())],
            ..Default::default()
        };
        let sets = rrsets_of(&data);
        let entry = encode_node(3, FLAG_SET, 7, sets.iter().map(|(t, r)| (*t, &r[..], 30)));
        let node = NodeRef::parse(&entry);
        assert_eq!((node.zone, node.below, node.is_set()), (3, 7, true));
        let a = node.get(RecordType::A).unwrap();
        assert_eq!(a.count, 2, "duplicates dropped");
        assert_eq!(a.first(), &[0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 10, 0, 0, 1]);
        assert_eq!(node.records(), 4);
        let srv = node.get(RecordType::SRV).unwrap();
        assert_eq!(srv.targets().next().unwrap(), b"\x03web\x01c\x01l\x00");
        assert_eq!(node.addresses().count(), 2);
        let mut back = decode_data(&node);
        back.a.dedup();
        let mut want = data.clone();
        want.a.truncate(2);
        assert_eq!(back, want);
        let moved = with_below(&entry, 9);
        assert_eq!(NodeRef::parse(&moved).below, 9);
        let leaf = with_below(&moved, 0);
        assert_eq!(
            leaf.len() + 4,
            moved.len(),
            "a leaf's header has no count below"
        );
        for (entry, below) in [(&moved, 9), (&leaf, 0)] {
            let node = NodeRef::parse(entry);
            assert_eq!((node.zone, node.flags, node.below), (3, FLAG_SET, below));
            assert_eq!(node.records(), 4);
            assert_eq!(decode_data(&node).srv, data.srv);
        }
    }
}
