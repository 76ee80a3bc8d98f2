//! Generated queries: well-formed ones for the test tree's names, mutated and random
//! packets, and the malformed cases of RFC 9267.

use rand::Rng;

use super::*;
use crate::dns::wire::{HEADER_LEN, Reject, TYPE_OPT};

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

pub(crate) fn pick<'a, T, R: Rng + ?Sized>(rng: &mut R, items: &'a [T]) -> &'a T {
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
