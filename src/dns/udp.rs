//! The UDP query path, kept off the async runtime: per listen address, one socket per worker
//! thread (SO_REUSEPORT, so the kernel spreads clients over them), each thread blocked in
//! `recvmmsg` and answering every packet of a batch before one `sendmmsg`. Answers come from
//! the snapshot without a lock or an allocation; only queries to forward go to the runtime.

use std::io;
use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use nix::errno::Errno;
use nix::sys::socket::{
    MsgFlags, MultiHeaders, Shutdown, SockaddrStorage, recvmmsg, sendmmsg, shutdown,
};
use socket2::{Domain, Protocol, Socket, Type};
use tracing::debug;

use crate::dns::server::Handler;
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
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

impl UdpGroup {
    /// Binds `workers` sockets to `addr` (port 0: one port the kernel picks, shared by all).
    /// A plain bind first makes a port that anyone else holds fail as "in use", as SO_REUSEPORT
    /// alone would quietly share it.
    pub fn bind(addr: SocketAddr, workers: usize) -> io::Result<Self> {
        let probe = UdpSocket::bind(addr)?;
        let local = probe.local_addr()?;
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
    let mut bufs: Vec<Vec<u8>> = (0..BATCH).map(|_| vec![0u8; MAX_QUERY]).collect();
    let mut outs: Vec<Vec<u8>> = (0..BATCH)
        .map(|_| Vec::with_capacity(EDNS_UDP as usize))
        .collect();
    let mut recv_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut send_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut got: [(usize, Option<SockaddrStorage>); BATCH] = [(0, None); BATCH];
    // (index into outs, client address) of the replies of one batch
    let mut replies: [Option<SockaddrStorage>; BATCH] = [None; BATCH];
    let mut reply_idx = [0usize; BATCH];
    while !stop.load(Ordering::Relaxed) {
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
                        *slot = (msg.bytes, msg.address);
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
        if n == 0 {
            continue; // woken by shutdown
        }
        let started = Instant::now();
        let snap = handler.store.load();
        let mut k = 0;
        for i in 0..n {
            let (len, Some(addr)) = got[i] else {
                continue;
            };
            let Some(client) = to_socket_addr(&addr) else {
                continue;
            };
            let packet = &bufs[i][..len.min(MAX_QUERY)];
            match handler.answer_now(&snap, packet, client.ip(), false, &mut outs[i], shard) {
                Some(true) => {
                    replies[k] = Some(addr);
                    reply_idx[k] = i;
                    k += 1;
                }
                Some(false) => {
                    let packet = packet.to_vec();
                    let handler = handler.clone();
                    let socket = socket.clone();
                    runtime.spawn(async move {
                        if let Some(reply) = handler.forward(&packet, false).await {
                            let _ = socket.send_to(&reply, client);
                        }
                    });
                }
                None => {}
            }
        }
        drop(snap);
        send_all(fd, &mut send_headers, &outs, &reply_idx[..k], &replies[..k]);
        if k > 0 {
            shard.latency(started.elapsed(), k as u64);
        }
    }
}

/// Sends the replies of one batch, skipping any single message the kernel refuses.
fn send_all(
    fd: i32,
    headers: &mut MultiHeaders<SockaddrStorage>,
    outs: &[Vec<u8>],
    idx: &[usize],
    addrs: &[Option<SockaddrStorage>],
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
            [],
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
