//! The bare loop: a reference server with next to no DNS work, measured beside the peers to
//! show how much of a query's CPU is the kernel's share that every UDP server pays. One thread,
//! one socket, blocked in `recvmmsg` (32 at a time, returning as soon as one is there), each
//! query answered from a hash map of ready answers keyed by its question, one `sendmmsg` a
//! batch. No EDNS, no TC, no case handling beyond lower-casing the key: not a DNS server, the
//! floor under one.

use std::collections::HashMap;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use anyhow::{Context, Result};
use nix::libc;

const BATCH: usize = 32;
const BUF: usize = 512;

#[derive(clap::Args)]
pub struct Args {
    /// Address to answer on
    #[arg(long)]
    listen: SocketAddr,
    /// NAME<TAB>IP lines (bench/gen.py's names.tsv): the A records to answer
    #[arg(long)]
    names: PathBuf,
}

/// The wire form of a name, lower-cased: the key of the question section.
fn wire_name(name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + 2);
    for label in name.trim_end_matches('.').split('.') {
        out.push(label.len() as u8);
        out.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
    }
    out.push(0);
    out
}

/// The length of the name at the start of `b` (uncompressed, as questions are), with its
/// terminating zero.
pub(crate) fn name_len(b: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let len = *b.get(at)? as usize;
        if len == 0 {
            return Some(at + 1);
        }
        if len > 63 {
            return None;
        }
        at += 1 + len;
    }
}

/// Writes the reply to `query` into `out`: the question echoed, then the address (NXDOMAIN
/// for a name not in `answers`). Returns its length, or `None` to stay silent.
fn reply(
    query: &[u8],
    answers: &HashMap<Vec<u8>, Ipv4Addr>,
    key: &mut Vec<u8>,
    out: &mut [u8],
) -> Option<usize> {
    if query.len() < 12 || query[2] & 0x80 != 0 {
        return None;
    }
    let qname = &query[12..];
    let nlen = name_len(qname)?;
    let qend = 12 + nlen + 4;
    if query.len() < qend || qend + 16 > out.len() {
        return None;
    }
    key.clear();
    key.extend(qname[..nlen].iter().map(|b| b.to_ascii_lowercase()));
    let qtype = u16::from_be_bytes([query[12 + nlen], query[13 + nlen]]);
    out[..qend].copy_from_slice(&query[..qend]);
    out[2] = 0x84 | (query[2] & 0x01); // QR, AA, RD as asked
    out[3] = 0;
    out[4..12].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    match answers.get(key.as_slice()) {
        None => {
            out[3] = 3;
            Some(qend)
        }
        Some(_) if qtype != 1 => Some(qend),
        Some(ip) => {
            out[7] = 1;
            let rr = &mut out[qend..qend + 16];
            rr[..2].copy_from_slice(&[0xC0, 12]);
            rr[2..10].copy_from_slice(&[0, 1, 0, 1, 0, 0, 1, 44]); // A IN TTL 300
            rr[10..12].copy_from_slice(&[0, 4]);
            rr[12..].copy_from_slice(&ip.octets());
            Some(qend + 16)
        }
    }
}

pub fn run(a: Args) -> Result<()> {
    let text =
        fs::read_to_string(&a.names).with_context(|| format!("reading {}", a.names.display()))?;
    let mut answers = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let (name, ip) = line
            .split_once('\t')
            .with_context(|| format!("{} line {}: not NAME<TAB>IP", a.names.display(), n + 1))?;
        let ip: Ipv4Addr = ip
            .parse()
            .with_context(|| format!("{} line {}: bad address", a.names.display(), n + 1))?;
        answers.insert(wire_name(name), ip);
    }
    let socket = UdpSocket::bind(a.listen).with_context(|| format!("binding {}", a.listen))?;
    let fd = socket.as_raw_fd();
    let mut bufs = vec![[0u8; BUF]; BATCH];
    let mut outs = vec![[0u8; BUF]; BATCH];
    let mut lens = [0usize; BATCH];
    let mut namelens = [0u32; BATCH];
    // SAFETY: sockaddr_storage, iovec and mmsghdr are plain C structs for which all-zero
    // bytes are a valid value (null pointers, zero lengths), as the kernel's ABI defines them.
    let mut addrs: [libc::sockaddr_storage; BATCH] = unsafe { std::mem::zeroed() };
    let mut key = Vec::with_capacity(256);
    loop {
        // SAFETY: all-zero C structs, as above
        let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        // SAFETY: as above
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for i in 0..BATCH {
            iov[i] = libc::iovec {
                iov_base: bufs[i].as_mut_ptr().cast(),
                iov_len: BUF,
            };
            msgs[i].msg_hdr.msg_name = (&raw mut addrs[i]).cast();
            msgs[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as u32;
            msgs[i].msg_hdr.msg_iov = &raw mut iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every pointer handed to the kernel points into the buffers above, which
        // outlive the call, with their true lengths.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                msgs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n <= 0 {
            continue;
        }
        let mut k = 0;
        for i in 0..n as usize {
            let len = msgs[i].msg_len as usize;
            if let Some(out_len) = reply(&bufs[i][..len], &answers, &mut key, &mut outs[k]) {
                lens[k] = out_len;
                namelens[k] = msgs[i].msg_hdr.msg_namelen;
                if k != i {
                    addrs[k] = addrs[i];
                }
                k += 1;
            }
        }
        let mut sent = 0;
        while sent < k {
            // SAFETY: all-zero C structs, as above
            let mut siov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
            // SAFETY: as above
            let mut smsgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
            for j in sent..k {
                siov[j] = libc::iovec {
                    iov_base: outs[j].as_mut_ptr().cast(),
                    iov_len: lens[j],
                };
                smsgs[j].msg_hdr.msg_name = (&raw mut addrs[j]).cast();
                smsgs[j].msg_hdr.msg_namelen = namelens[j];
                smsgs[j].msg_hdr.msg_iov = &raw mut siov[j];
                smsgs[j].msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: the pointers point into `outs`, `addrs` and `siov`, which outlive the
            // call, with their true lengths.
            let r = unsafe { libc::sendmmsg(fd, smsgs[sent..].as_mut_ptr(), (k - sent) as u32, 0) };
            sent += if r > 0 { r as usize } else { 1 };
        }
    }
}
