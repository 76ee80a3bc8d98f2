//! The listeners: UDP ([`crate::dns::udp`]) and TCP ([`crate::dns::tcp`]) on every `--listen`
//! address, each packet handed to the [`Handler`] and never allowed to take the server down.
//! Every loop stops when the cancellation token fires; the answers already under way are
//! finished within a grace period (see [`serve`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use thiserror::Error;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::dns::handler::Handler;
use crate::dns::tcp::{self, TcpLimits};
use crate::dns::udp::UdpGroup;

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
pub async fn serve(
    listeners: Vec<Listener>,
    handler: Arc<Handler>,
    tcp_limits: TcpLimits,
    cancel: CancellationToken,
) {
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
        tasks.spawn(tcp::serve(tcp, handler.clone(), tcp_limits, cancel.clone()));
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
