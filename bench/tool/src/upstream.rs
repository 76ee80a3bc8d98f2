//! The upstream of the forwarding part: an authoritative server for `fwd.test` on loopback
//! that counts the queries it gets, so that the forwarders in front of it can be compared by
//! how much of their clients' load they pass on. Every name whose first label starts with `h`
//! has an A and an AAAA record (derived from the name, TTL `--ttl`); every other name is
//! NXDOMAIN with the zone's SOA (TTL and MINIMUM `--ttl`), as an authoritative server answers,
//! AA set and RA clear. EDNS is answered with EDNS. The count of queries received goes to
//! `--count-file` every 50 ms.

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::floor::name_len;

#[derive(clap::Args)]
pub struct Args {
    /// Address to answer on
    #[arg(long)]
    listen: SocketAddr,
    /// TTL of every record, and the SOA's MINIMUM
    #[arg(long, default_value_t = 300)]
    ttl: u32,
    /// Where the number of queries received so far is written
    #[arg(long)]
    count_file: PathBuf,
}

const ZONE: &[u8] = b"\x03fwd\x04test\x00";
const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const TYPE_OPT: u16 = 41;

fn push_rr(out: &mut Vec<u8>, rtype: u16, ttl: u32, rdata: &[u8]) {
    out.extend_from_slice(&[0xC0, 12]);
    out.extend_from_slice(&rtype.to_be_bytes());
    out.extend_from_slice(&[0, 1]);
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    out.extend_from_slice(rdata);
}

/// The reply to `query` in `out`, or `None` for a packet that gets none.
fn reply(query: &[u8], ttl: u32, out: &mut Vec<u8>) -> Option<()> {
    if query.len() < 12 || query[2] & 0x80 != 0 || query[4..6] != [0, 1] {
        return None;
    }
    let nlen = name_len(&query[12..])?;
    let qend = 12 + nlen + 4;
    let qname = query.get(12..12 + nlen)?;
    let qtype = u16::from_be_bytes([*query.get(12 + nlen)?, *query.get(13 + nlen)?]);
    let edns = u16::from_be_bytes([query[10], query[11]]) > 0;
    out.clear();
    out.extend_from_slice(&query[..qend]);
    out[2] = 0x84 | (query[2] & 0x01); // QR, AA, RD as asked; no RA
    out[3] = 0;
    out[4..12].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    let positive = qname.len() > 1 && qname[1].eq_ignore_ascii_case(&b'h');
    if positive {
        let h = qname
            .iter()
            .fold(0u32, |h, b| h.wrapping_mul(31) ^ u32::from(b.to_ascii_lowercase()));
        let [a, b, c, d] = h.to_be_bytes();
        match qtype {
            TYPE_A => {
                out[7] = 1;
                push_rr(out, TYPE_A, ttl, &[10, b, c, d]);
            }
            TYPE_AAAA => {
                out[7] = 1;
                let mut v6 = [0u8; 16];
                v6[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
                v6[12..].copy_from_slice(&[a, b, c, d]);
                push_rr(out, TYPE_AAAA, ttl, &v6);
            }
            _ => {}
        }
    } else {
        out[3] = 3; // NXDOMAIN
    }
    if out[7] == 0 {
        // NXDOMAIN or NODATA: the SOA, whose TTL and MINIMUM bound the negative caching
        out[9] = 1;
        out.extend_from_slice(ZONE);
        out.extend_from_slice(&[0, 6, 0, 1]);
        out.extend_from_slice(&ttl.to_be_bytes());
        let mut soa = Vec::with_capacity(64);
        soa.extend_from_slice(b"\x02ns");
        soa.extend_from_slice(ZONE);
        soa.extend_from_slice(b"\x04host");
        soa.extend_from_slice(ZONE);
        for v in [1u32, 3600, 600, 86_400, ttl] {
            soa.extend_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(&(soa.len() as u16).to_be_bytes());
        out.extend_from_slice(&soa);
    }
    if edns {
        out[11] = 1;
        out.push(0);
        out.extend_from_slice(&TYPE_OPT.to_be_bytes());
        out.extend_from_slice(&1232u16.to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    }
    Some(())
}

pub fn run(a: Args) -> Result<()> {
    let socket = UdpSocket::bind(a.listen).with_context(|| format!("binding {}", a.listen))?;
    let count = Arc::new(AtomicU64::new(0));
    let (c, path) = (count.clone(), a.count_file.clone());
    std::thread::spawn(move || {
        let tmp = path.with_extension("tmp");
        let mut last = u64::MAX;
        loop {
            let n = c.load(Ordering::Relaxed);
            if n != last
                && std::fs::write(&tmp, format!("{n}\n")).is_ok()
                && std::fs::rename(&tmp, &path).is_ok()
            {
                last = n;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let mut buf = [0u8; 1500];
    let mut out = Vec::with_capacity(512);
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        count.fetch_add(1, Ordering::Relaxed);
        if reply(&buf[..n], a.ttl, &mut out).is_some() {
            let _ = socket.send_to(&out, from);
        }
    }
}
