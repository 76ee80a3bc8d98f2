//! Child processes that never outlive the test run, and free loopback ports for them.
//!
//! Every fixture process runs in its own process group, so a kill reaches whatever it forks.
//! Beside it runs a watchdog: `sh` blocked reading a pipe whose only writer is this test
//! process. Dropping the fixture closes the pipe; so does the test process dying in any way
//! (panic, abort, SIGKILL from a CI timeout). Either way the watchdog kills the group, which is
//! what makes `ZooKeeper::shared()`, a static that is never dropped, go away with the tests.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

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

/// A child's stderr, collected by a reader thread; waiters are woken on every line.
#[derive(Clone, Default)]
pub struct StderrLog(Arc<(Mutex<LogState>, Condvar)>);

#[derive(Default)]
struct LogState {
    text: String,
    closed: bool,
}

impl StderrLog {
    /// Spawns `cmd` (stdin and stdout null) with its stderr collected.
    pub fn spawn(name: &str, mut cmd: Command) -> (Guarded, StderrLog) {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut process = Guarded::spawn(name, cmd);
        let stderr = process.take_stderr().expect("stderr is piped");
        let log = StderrLog::default();
        let sink = log.clone();
        std::thread::spawn(move || {
            let (state, changed) = &*sink.0;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut s = state.lock().unwrap();
                s.text.push_str(&line);
                s.text.push('\n');
                changed.notify_all();
            }
            state.lock().unwrap().closed = true;
            changed.notify_all();
        });
        (process, log)
    }

    /// Everything collected so far.
    pub fn text(&self) -> String {
        self.0.0.lock().unwrap().text.clone()
    }

    /// Waits until `done` holds for the text; `false` after `timeout` or once the process
    /// has closed its stderr without it.
    pub fn wait_until(&self, timeout: Duration, done: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let (state, changed) = &*self.0;
        let mut s = state.lock().unwrap();
        loop {
            if done(&s.text) {
                return true;
            }
            let now = Instant::now();
            if s.closed || now >= deadline {
                return false;
            }
            s = changed.wait_timeout(s, deadline - now).unwrap().0;
        }
    }

    /// Waits (at most `timeout`) until the reader has taken every line: stderr closed.
    pub fn wait_closed(&self, timeout: Duration) {
        let (state, changed) = &*self.0;
        let s = state.lock().unwrap();
        let _ = changed
            .wait_timeout_while(s, timeout, |s| !s.closed)
            .unwrap();
    }
}
