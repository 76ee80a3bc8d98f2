//! The UDP query path, kept off the async runtime: per listen address, one socket per worker
//! thread (SO_REUSEPORT, so the kernel spreads clients over them), each thread blocked in
//! `recvmmsg` and answering every packet of a batch before one `sendmmsg`. Answers come from
//! the snapshot without a lock or an allocation; only queries to forward go to the runtime.
//! On a wildcard address (`0.0.0.0`, `::`) each query's destination comes with it
//! (IP_PKTINFO, IPV6_PKTINFO) and its reply leaves from that address, as a client checks.

use std::io;
use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use nix::cmsg_space;
use nix::errno::Errno;
use nix::libc;
use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, MultiHeaders, Shutdown, SockaddrStorage,
    recvmmsg, sendmmsg, sendmsg, setsockopt, shutdown, sockopt,
};
use socket2::{Domain, Protocol, Socket, Type};
use tracing::debug;

use crate::dns::handler::{Handler, Verdict};
use crate::dns::wire::EDNS_UDP;

/// Packets taken per `recvmmsg`.
const BATCH: usize = 32;
/// Largest query read; a longer datagram is cut and then fails to parse (FORMERR).
const MAX_QUERY: usize = 4096;

/// The sockets of one listen address.
pub struct UdpGroup {
    pub local: SocketAddr,
    sockets: Vec<Arc<UdpSocket>>,
}

fn reuseport_socket(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_port(true)?;
    if addr.ip().is_unspecified() {
        if addr.is_ipv6() {
            setsockopt(&socket, sockopt::Ipv6RecvPacketInfo, &true)?;
        } else {
            setsockopt(&socket, sockopt::Ipv4PacketInfo, &true)?;
        }
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// The address a query on a wildcard socket came to, which its reply leaves from (with the
/// interface, which an IPv6 link-local address needs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Local {
    V4(std::net::Ipv4Addr),
    V6(std::net::Ipv6Addr, u32),
}

impl Local {
    fn of(cmsg: ControlMessageOwned) -> Option<Self> {
        match cmsg {
            // the local address the kernel routed the packet to (for a broadcast, the
            // interface's), not the header's destination
            ControlMessageOwned::Ipv4PacketInfo(info) => {
                Some(Local::V4(u32::from_be(info.ipi_spec_dst.s_addr).into()))
            }
            ControlMessageOwned::Ipv6PacketInfo(info) => {
                Some(Local::V6(info.ipi6_addr.s6_addr.into(), info.ipi6_ifindex))
            }
            _ => None,
        }
    }
}

/// The control message that sends from `local`, built in `space`.
fn source_cmsg(local: Local, space: &mut Pktinfo) -> ControlMessage<'_> {
    match local {
        Local::V4(addr) => {
            space.v4 = libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: libc::in_addr {
                    s_addr: u32::from(addr).to_be(),
                },
                ipi_addr: libc::in_addr { s_addr: 0 },
            };
            ControlMessage::Ipv4PacketInfo(&space.v4)
        }
        Local::V6(addr, ifindex) => {
            space.v6 = libc::in6_pktinfo {
                ipi6_addr: libc::in6_addr {
                    s6_addr: addr.octets(),
                },
                ipi6_ifindex: ifindex,
            };
            ControlMessage::Ipv6PacketInfo(&space.v6)
        }
    }
}

/// Room for the source of one reply.
struct Pktinfo {
    v4: libc::in_pktinfo,
    v6: libc::in6_pktinfo,
}

impl Default for Pktinfo {
    fn default() -> Self {
        Self {
            v4: libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: libc::in_addr { s_addr: 0 },
                ipi_addr: libc::in_addr { s_addr: 0 },
            },
            v6: libc::in6_pktinfo {
                ipi6_addr: libc::in6_addr { s6_addr: [0; 16] },
                ipi6_ifindex: 0,
            },
        }
    }
}

/// Sends one reply (a forwarded query's) from `local`, or from the kernel's choice.
fn send_one(socket: &UdpSocket, reply: &[u8], client: SocketAddr, local: Option<Local>) {
    let result = match local {
        None => socket.send_to(reply, client).map(drop),
        Some(local) => {
            let mut space = Pktinfo::default();
            let cmsg = [source_cmsg(local, &mut space)];
            sendmsg(
                socket.as_raw_fd(),
                &[IoSlice::new(reply)],
                &cmsg,
                MsgFlags::empty(),
                Some(&SockaddrStorage::from(client)),
            )
            .map(drop)
            .map_err(io::Error::from)
        }
    };
    if let Err(e) = result {
        debug!(?client, error = %e, "UDP send failed");
    }
}

impl UdpGroup {
    /// Binds `workers` sockets to `addr` (port 0: one port the kernel picks, shared by all).
    /// A plain bind first makes a port that anyone else holds fail as "in use", as SO_REUSEPORT
    /// alone would quietly share it.
    pub fn bind(addr: SocketAddr, workers: usize) -> io::Result<Self> {
        let probe = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        if addr.is_ipv6() {
            // as the sockets proper: `[::]` beside `0.0.0.0` on the same port
            probe.set_only_v6(true)?;
        }
        probe.bind(&addr.into())?;
        let local = probe
            .local_addr()?
            .as_socket()
            .expect("an IP socket has an IP address");
        drop(probe);
        let sockets = (0..workers.max(1))
            .map(|_| reuseport_socket(local).map(Arc::new))
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Self { local, sockets })
    }

    /// Starts one thread per socket, counting into metric shards `first_shard..`. They stop
    /// when `stop` is set and [`UdpGroup::wake`] is called.
    pub fn spawn(
        &self,
        handler: Arc<Handler>,
        runtime: tokio::runtime::Handle,
        stop: Arc<AtomicBool>,
        first_shard: usize,
    ) -> io::Result<Vec<JoinHandle<()>>> {
        self.sockets
            .iter()
            .enumerate()
            .map(|(i, socket)| {
                let socket = socket.clone();
                let handler = handler.clone();
                let runtime = runtime.clone();
                let stop = stop.clone();
                std::thread::Builder::new()
                    .name(format!("zkdns-udp-{i}"))
                    .spawn(move || worker(&socket, &handler, &runtime, &stop, first_shard + i))
            })
            .collect()
    }

    /// Wakes every worker blocked in `recvmmsg` so that it sees the stop flag.
    pub fn wake(&self) {
        for socket in &self.sockets {
            let _ = shutdown(socket.as_raw_fd(), Shutdown::Read);
        }
    }
}

fn to_socket_addr(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::from(*v4));
    }
    addr.as_sockaddr_in6().map(|v6| SocketAddr::from(*v6))
}

fn worker(
    socket: &Arc<UdpSocket>,
    handler: &Arc<Handler>,
    runtime: &tokio::runtime::Handle,
    stop: &AtomicBool,
    shard: usize,
) {
    let fd = socket.as_raw_fd();
    let shard = handler.metrics.shard(shard);
    let local_addr = socket.local_addr().ok();
    let wildcard = local_addr.is_some_and(|a| a.ip().is_unspecified());
    // room for one packet-info message a packet: received on a wildcard socket, and sent
    // (exactly this one message, so exactly its size)
    let (recv_cmsg, send_cmsg) = match local_addr {
        Some(a) if wildcard && a.is_ipv6() => (
            Some(cmsg_space!(libc::in6_pktinfo)),
            Some(cmsg_space!(libc::in6_pktinfo)),
        ),
        Some(_) if wildcard => (
            Some(cmsg_space!(libc::in6_pktinfo)),
            Some(cmsg_space!(libc::in_pktinfo)),
        ),
        _ => (None, None),
    };
    let mut bufs: Vec<Vec<u8>> = (0..BATCH).map(|_| vec![0u8; MAX_QUERY]).collect();
    let mut outs: Vec<Vec<u8>> = (0..BATCH)
        .map(|_| Vec::with_capacity(EDNS_UDP as usize))
        .collect();
    let mut recv_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, recv_cmsg.clone());
    let mut outbox = Outbox::new(wildcard, send_cmsg);
    let mut got: [(usize, Option<SockaddrStorage>, Option<Local>); BATCH] =
        [(0, None, None); BATCH];
    let mut replies: [Reply; BATCH] = [(0, None, None); BATCH];
    while !stop.load(Ordering::Relaxed) {
        let mut lost_cmsg = false;
        let n = {
            let mut it = bufs.iter_mut();
            let mut iovs: [[IoSliceMut<'_>; 1]; BATCH] =
                std::array::from_fn(|_| [IoSliceMut::new(it.next().expect("BATCH buffers"))]);
            match recvmmsg(
                fd,
                &mut recv_headers,
                iovs.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            ) {
                Ok(results) => {
                    let mut n = 0;
                    for (slot, msg) in got.iter_mut().zip(results) {
                        let local = if wildcard {
                            let local = msg.cmsgs().ok().and_then(|mut c| c.find_map(Local::of));
                            lost_cmsg |= local.is_none();
                            local
                        } else {
                            None
                        };
                        *slot = (msg.bytes, msg.address, local);
                        n += 1;
                    }
                    n
                }
                Err(Errno::EINTR | Errno::EAGAIN) => continue,
                Err(e) => {
                    debug!(error = %e, "UDP receive error");
                    continue;
                }
            }
        };
        if lost_cmsg {
            // the kernel shrinks a header's control length to what it wrote: start afresh
            // (those replies leave from the kernel's choice of address)
            recv_headers = MultiHeaders::preallocate(BATCH, recv_cmsg.clone());
        }
        if n == 0 {
            continue; // woken by shutdown
        }
        let started = Instant::now();
        let snap = handler.store.load();
        let mut k = 0;
        for i in 0..n {
            let (len, Some(addr), local) = got[i] else {
                continue;
            };
            let Some(client) = to_socket_addr(&addr) else {
                continue;
            };
            let packet = &bufs[i][..len.min(MAX_QUERY)];
            match handler.answer_now(&snap, packet, client.ip(), false, &mut outs[i], shard) {
                Verdict::Reply => {
                    replies[k] = (i, Some(addr), local);
                    k += 1;
                }
                Verdict::Forward => {
                    let packet = packet.to_vec();
                    let handler = handler.clone();
                    let socket = socket.clone();
                    runtime.spawn(async move {
                        if let Some(reply) = handler.forward(&packet, false).await {
                            send_one(&socket, &reply, client, local);
                        }
                    });
                }
                Verdict::Silent => {}
            }
        }
        drop(snap);
        outbox.send(socket, &outs, &mut replies[..k]);
        if k > 0 {
            shard.latency(started.elapsed(), k as u64);
        }
    }
}

/// One reply of a batch: its buffer (an index into the worker's `outs`), the client, and the
/// address it leaves from (on a wildcard socket).
type Reply = (usize, Option<SockaddrStorage>, Option<Local>);

/// What sends a batch's replies, with its headers and scratch kept from batch to batch.
struct Outbox {
    wildcard: bool,
    headers: MultiHeaders<SockaddrStorage>,
    idx: [usize; BATCH],
    addrs: [Option<SockaddrStorage>; BATCH],
}

impl Outbox {
    /// `cmsg`: room for the one packet-info message every message carries on a wildcard
    /// socket (exactly its size).
    fn new(wildcard: bool, cmsg: Option<Vec<u8>>) -> Self {
        Self {
            wildcard,
            headers: MultiHeaders::preallocate(BATCH, cmsg),
            idx: [0; BATCH],
            addrs: [None; BATCH],
        }
    }

    /// Sends `replies`: in one `sendmmsg`, or on a wildcard socket one per source address
    /// (a call's control messages go with each of its messages).
    fn send(&mut self, socket: &UdpSocket, outs: &[Vec<u8>], replies: &mut [Reply]) {
        if self.wildcard {
            replies.sort_unstable_by_key(|r| local_key(r.2));
        }
        for group in replies.chunk_by(|a, b| a.2 == b.2) {
            for (j, r) in group.iter().enumerate() {
                self.idx[j] = r.0;
                self.addrs[j] = r.1;
            }
            let (idx, addrs) = (&self.idx[..group.len()], &self.addrs[..group.len()]);
            let fd = socket.as_raw_fd();
            match group[0].2 {
                Some(local) => {
                    let mut space = Pktinfo::default();
                    let cmsg = [source_cmsg(local, &mut space)];
                    send_all(fd, &mut self.headers, outs, idx, addrs, &cmsg);
                }
                // no destination came with these (the headers expect a packet-info
                // message): one by one, from the kernel's choice of address
                None if self.wildcard => {
                    for &(i, addr, _) in group {
                        if let Some(client) = addr.as_ref().and_then(to_socket_addr) {
                            send_one(socket, &outs[i], client, None);
                        }
                    }
                }
                None => send_all(fd, &mut self.headers, outs, idx, addrs, &[]),
            }
        }
    }
}

/// Orders replies by the address they leave from.
fn local_key(local: Option<Local>) -> (u8, [u8; 16], u32) {
    match local {
        None => (0, [0; 16], 0),
        Some(Local::V4(a)) => (1, a.to_ipv6_mapped().octets(), 0),
        Some(Local::V6(a, ifindex)) => (2, a.octets(), ifindex),
    }
}

/// Sends the replies of one batch, skipping any single message the kernel refuses.
fn send_all(
    fd: i32,
    headers: &mut MultiHeaders<SockaddrStorage>,
    outs: &[Vec<u8>],
    idx: &[usize],
    addrs: &[Option<SockaddrStorage>],
    cmsgs: &[ControlMessage<'_>],
) {
    let mut start = 0;
    while start < idx.len() {
        let iovs: [[IoSlice<'_>; 1]; BATCH] = std::array::from_fn(|j| {
            let src = idx.get(start + j).map_or(&[][..], |&i| outs[i].as_slice());
            [IoSlice::new(src)]
        });
        let count = idx.len() - start;
        match sendmmsg(
            fd,
            headers,
            iovs[..count].iter(),
            &addrs[start..],
            cmsgs,
            MsgFlags::empty(),
        ) {
            Ok(results) => {
                let sent = results.count();
                start += sent.max(1);
            }
            Err(Errno::EINTR) => {}
            Err(e) => {
                let client = addrs[start].as_ref().and_then(to_socket_addr);
                debug!(?client, error = %e, "UDP send failed");
                start += 1;
            }
        }
    }
}
