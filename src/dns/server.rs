//! The listeners: UDP ([`crate::dns::udp`]) and TCP on every `--listen` address, each
//! packet handed to the [`Handler`] and never allowed to take the server down. Every loop stops
//! when the cancellation token fires; the answers already under way are finished within a
//! grace period (see [`serve`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::dns::handler::{Handler, Verdict};
use crate::dns::udp::UdpGroup;

/// Idle time after which a TCP connection is closed (RFC 7766 suggests seconds).
const TCP_IDLE: Duration = Duration::from_secs(10);
/// TCP connections served at once; more wait in the kernel's backlog.
const MAX_TCP_CONNECTIONS: usize = 512;

#[derive(Debug, Error)]
pub enum ServerError {
    #[error("failed to bind to UDP socket address {addr}")]
    BindUdp {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to bind to TCP socket address {addr}")]
    BindTcp {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The sockets of one `--listen` address.
pub struct Listener {
    pub udp: UdpGroup,
    pub tcp: TcpListener,
}

/// Binds every listener (UDP with `udp_workers` sockets each); fails if any address cannot be
/// bound.
pub async fn bind(listen: &[SocketAddr], udp_workers: usize) -> Result<Vec<Listener>, ServerError> {
    let mut out = Vec::new();
    for &addr in listen {
        // port 0: the port the kernel gives UDP may be taken for TCP; then ask again
        let attempts = if addr.port() == 0 { 50 } else { 1 };
        let mut attempt = 0;
        let listener = loop {
            attempt += 1;
            let udp = UdpGroup::bind(addr, udp_workers)
                .map_err(|source| ServerError::BindUdp { addr, source })?;
            let tcp_addr = udp.local;
            match tcp_listener(tcp_addr) {
                Ok(tcp) => break Listener { udp, tcp },
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && attempt < attempts => {}
                Err(source) => {
                    return Err(ServerError::BindTcp {
                        addr: tcp_addr,
                        source,
                    });
                }
            }
        };
        out.push(listener);
    }
    Ok(out)
}

/// A TCP listener on `addr`; on `[::]` for IPv6 only, so that `0.0.0.0` on the same port can
/// be listened on too (as for UDP).
fn tcp_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// Serves on the bound sockets until `cancel` fires. Then it stops taking queries, lets the
/// UDP workers send the replies of the batch in hand, gives TCP connections and forwarded
/// queries the grace period ([`SHUTDOWN_GRACE`], or the upstream timeout if longer) to finish,
/// and abandons what is left.
pub async fn serve(listeners: Vec<Listener>, handler: Arc<Handler>, cancel: CancellationToken) {
    let stop = Arc::new(AtomicBool::new(false));
    let runtime = tokio::runtime::Handle::current();
    let mut threads = Vec::new();
    let mut tasks = JoinSet::new();
    let mut groups = Vec::new();
    for Listener { udp, tcp } in listeners {
        info!("listening for UDP on {}", udp.local);
        if let Ok(addr) = tcp.local_addr() {
            info!("listening for TCP on {addr}");
        }
        match udp.spawn(
            handler.clone(),
            runtime.clone(),
            stop.clone(),
            threads.len() + 1,
        ) {
            Ok(t) => threads.extend(t),
            Err(e) => warn!(error = %e, "cannot start UDP workers"),
        }
        groups.push(udp);
        tasks.spawn(serve_tcp(tcp, handler.clone(), cancel.clone()));
    }
    cancel.cancelled().await;
    let deadline = tokio::time::Instant::now() + handler.shutdown_grace();
    info!("stopped taking queries; finishing the answers under way");
    stop.store(true, Ordering::Relaxed);
    for group in &groups {
        group.wake();
    }
    let _ = tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ = t.join();
        }
    })
    .await;
    drop(groups);
    while tasks.join_next().await.is_some() {}
    let abandoned = handler.drain_forwards(deadline).await;
    if abandoned > 0 {
        warn!("abandoned {abandoned} forwarded queries still waiting for an upstream");
    }
}

async fn serve_tcp(listener: TcpListener, handler: Arc<Handler>, cancel: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    let mut conns = JoinSet::new();
    // accept errors (e.g. out of file descriptors) repeat until the cause goes: log the change
    let mut accept_failing = false;
    loop {
        let (stream, client) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => {
                    if std::mem::take(&mut accept_failing) {
                        info!("TCP accept works again");
                    }
                    x
                }
                Err(e) => {
                    if !std::mem::replace(&mut accept_failing, true) {
                        warn!(error = %e, "TCP accept failing; retrying");
                    } else {
                        debug!(error = %e, "TCP accept still failing");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            () = cancel.cancelled() => break,
        };
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = cancel.cancelled() => break,
        };
        let handler = handler.clone();
        let cancel = cancel.clone();
        conns.spawn(async move {
            let _permit = permit;
            if let Err(e) = serve_tcp_conn(stream, client, &handler, &cancel).await {
                debug!(%client, error = %e, "TCP connection ended");
            }
        });
    }
    // stop accepting at once; connections still answering get the grace period
    let local = listener.local_addr().ok();
    drop(listener);
    let grace = handler.shutdown_grace();
    let drained =
        tokio::time::timeout(grace, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        warn!(
            listen = ?local,
            "closing {} TCP connections still answering after {grace:?}",
            conns.len()
        );
    }
    conns.shutdown().await;
}

/// Answers the queries of one TCP connection until the client closes it, it idles, or
/// `cancel` fires while it waits for the next query (a query already read is answered).
async fn serve_tcp_conn(
    mut stream: TcpStream,
    client: SocketAddr,
    handler: &Handler,
    cancel: &CancellationToken,
) -> std::io::Result<()> {
    // buffers kept across the connection's queries
    let mut out = Vec::with_capacity(4096);
    let mut packet = Vec::new();
    let mut framed = Vec::new();
    loop {
        let mut len = [0u8; 2];
        let read = tokio::select! {
            r = tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut len)) => r,
            () = cancel.cancelled() => return Ok(()),
        };
        match read {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(()), // idle
        }
        packet.clear();
        packet.resize(u16::from_be_bytes(len) as usize, 0);
        tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut packet))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "read timed out"))??;
        let started = std::time::Instant::now();
        let shard = handler.metrics.shard(0);
        let answered = {
            let snap = handler.store.load();
            handler.answer_now(&snap, &packet, client.ip(), true, &mut out, shard)
        };
        let reply = match answered {
            Verdict::Reply => std::mem::take(&mut out),
            Verdict::Forward => match handler.forward(&packet, true).await {
                Some(reply) => reply,
                None => continue,
            },
            Verdict::Silent => return Ok(()),
        };
        framed.clear();
        framed.extend_from_slice(&(reply.len() as u16).to_be_bytes());
        framed.extend_from_slice(&reply);
        stream.write_all(&framed).await?;
        shard.latency(started.elapsed(), 1);
        out = reply;
    }
}
