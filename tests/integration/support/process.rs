//! Child processes that never outlive the test run, and free loopback ports for them.
//!
//! Every fixture process runs in its own process group, so a kill reaches whatever it forks.
//! Beside it runs a watchdog: `sh` blocked reading a pipe whose only writer is this test
//! process. Dropping the fixture closes the pipe; so does the test process dying in any way
//! (panic, abort, SIGKILL from a CI timeout). Either way the watchdog kills the group, which is
//! what makes `ZooKeeper::shared()`, a static that is never dropped, go away with the tests.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::Duration;

/// A child process in its own process group, killed with SIGKILL (the whole group) on Drop.
pub struct Guarded {
    name: String,
    child: Child,
    watchdog: Option<(Child, ChildStdin)>,
}

impl Guarded {
    /// Spawns `cmd` in a new process group, guarded by a watchdog that kills the group once
    /// this process can no longer hold the watchdog's pipe open.
    pub fn spawn(name: &str, mut cmd: Command) -> Guarded {
        cmd.process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        let script = format!(
            "trap '' INT TERM HUP; cat >/dev/null; kill -9 -{} 2>/dev/null",
            child.id()
        );
        let mut watchdog = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the watchdog for {name}: {e}"));
        let pipe = watchdog.stdin.take().expect("watchdog stdin is piped");
        Guarded {
            name: name.to_string(),
            child,
            watchdog: Some((watchdog, pipe)),
        }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The child's stderr, if it was piped and not taken yet.
    pub fn take_stderr(&mut self) -> Option<std::process::ChildStderr> {
        self.child.stderr.take()
    }

    /// `Some(status)` once the child has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .try_wait()
            .unwrap_or_else(|e| panic!("cannot poll {}: {e}", self.name))
    }

    /// Whether the child is still running.
    pub fn is_running(&mut self) -> bool {
        self.try_wait().is_none()
    }

    /// SIGKILL to the whole process group; waits for the child and retires the watchdog.
    pub fn kill(&mut self) {
        let Some((mut watchdog, pipe)) = self.watchdog.take() else {
            return;
        };
        // SAFETY: kill(2) with a negative pid signals the process group we created in spawn.
        unsafe {
            libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL);
        }
        let _ = self.child.wait();
        // closing the pipe lets the watchdog finish (its kill now finds no group)
        drop(pipe);
        let _ = watchdog.wait();
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback TCP port that was free a moment ago (the small race with other processes is
/// accepted; fixtures retry with another port when their server cannot bind).
pub fn free_tcp_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// A loopback port free for both UDP and TCP, for DNS servers.
pub fn free_dns_port() -> u16 {
    for _ in 0..50 {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0/udp");
        let port = udp.local_addr().expect("local addr").port();
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    panic!("no loopback port free for both UDP and TCP after 50 tries");
}

/// An address on 127.0.0.1 where nothing listens (UDP and TCP), for dead upstreams.
pub fn dead_addr() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, free_dns_port()))
}

/// Runs a shell `script` when dropped, or when the test process dies before that: the script
/// waits behind a pipe only this process holds. For cleanups outside the process tree, such
/// as network namespaces.
pub struct Cleanup {
    watchdog: Option<(Child, ChildStdin)>,
}

impl Cleanup {
    pub fn new(script: &str) -> Cleanup {
        let mut watchdog = Command::new("sh")
            .args([
                "-c",
                &format!("trap '' INT TERM HUP; cat >/dev/null; {script}"),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start a cleanup watchdog: {e}"));
        let pipe = watchdog.stdin.take().expect("watchdog stdin is piped");
        Cleanup {
            watchdog: Some((watchdog, pipe)),
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some((mut watchdog, pipe)) = self.watchdog.take() {
            drop(pipe);
            let _ = watchdog.wait();
        }
    }
}
