//! A TCP proxy on loopback whose connections a test can cut: put between zkdns and ZooKeeper,
//! it drops zkdns's connection while ZooKeeper stays up and writable, which is how a test
//! makes changes that zkdns cannot see as events. It can also fall silent, as a hung server
//! does: connections stay open and nothing comes back.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct TcpProxy {
    addr: SocketAddr,
    state: Arc<ProxyState>,
}

struct ProxyState {
    /// While false, new connections are closed at once.
    open: AtomicBool,
    /// While true, bytes are swallowed in both directions.
    silent: AtomicBool,
    stopped: AtomicBool,
    streams: Mutex<Vec<TcpStream>>,
}

impl ProxyState {
    fn cut_all(&self) {
        for s in self.streams.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl TcpProxy {
    /// Starts forwarding 127.0.0.1:<free port> to `target`.
    pub fn start(target: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ProxyState {
            open: AtomicBool::new(true),
            silent: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            streams: Mutex::new(Vec::new()),
        });
        let shared = state.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if shared.stopped.load(Ordering::Acquire) {
                    break;
                }
                let Ok(client) = client else { continue };
                if !shared.open.load(Ordering::Acquire) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect_timeout(&target, Duration::from_secs(2)) else {
                    continue;
                };
                let mut streams = shared.streams.lock().unwrap();
                for s in [&client, &server] {
                    if let Ok(clone) = s.try_clone() {
                        streams.push(clone);
                    }
                }
                drop(streams);
                pipe(&client, &server, &shared);
                pipe(&server, &client, &shared);
            }
        });
        TcpProxy { addr, state }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn connect_string(&self) -> String {
        self.addr.to_string()
    }

    /// Cuts every connection and refuses new ones until [`TcpProxy::restore`].
    pub fn cut(&self) {
        self.state.open.store(false, Ordering::Release);
        self.state.cut_all();
    }

    /// Keeps every connection open and accepts new ones, but forwards nothing either way
    /// until [`TcpProxy::restore`]: a server that hangs.
    pub fn silence(&self) {
        self.state.silent.store(true, Ordering::Release);
    }

    /// Lets connections through again. Connections that were silenced are cut: what they
    /// swallowed is lost, so neither end could make sense of them any more.
    pub fn restore(&self) {
        if self.state.silent.swap(false, Ordering::AcqRel) {
            self.state.cut_all();
        }
        self.state.open.store(true, Ordering::Release);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.state.stopped.store(true, Ordering::Release);
        self.state.open.store(false, Ordering::Release);
        self.state.cut_all();
        // wake the accept loop so it sees `stopped`
        let _ = TcpStream::connect(self.addr);
    }
}

/// Copies `from` to `to` on a thread until either side closes (swallowing what it reads while
/// the proxy is silent).
fn pipe(from: &TcpStream, to: &TcpStream, state: &Arc<ProxyState>) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    let state = state.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) if state.silent.load(Ordering::Acquire) => {}
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}
