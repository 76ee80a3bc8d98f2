//! A real three-node ZooKeeper ensemble from the Debian package, on loopback: each node has its
//! own client, quorum and election ports and its own data directory (with `myid`), and 4lw
//! commands enabled so a test can ask who leads (`srvr`) and who holds a session (`cons`).
//! Nodes can be killed and restarted one by one or all together; every node is killed on Drop,
//! and by a watchdog if the test process dies first.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::process::{Cleanup, Guarded, free_tcp_port};
use super::zookeeper::{ZK_SERVER, four_letter_at};

/// How long the ensemble may take to elect a leader (three JVMs starting on two busy cores).
const QUORUM_TIMEOUT: Duration = Duration::from_secs(90);
const NODES: usize = 3;
/// Sessions up to a minute: a test client can then ride out a whole-ensemble restart (the
/// default cap is 20 ticks, 4 s with our 200 ms tick).
pub const MAX_SESSION_TIMEOUT: Duration = Duration::from_secs(60);

/// What `srvr` says a node is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Leader,
    Follower,
    /// Up, but not serving (no quorum yet, or electing).
    NotServing,
    /// No answer: killed, or not listening yet.
    Down,
}

struct Node {
    client_port: u16,
    quorum_port: u16,
    election_port: u16,
    process: Option<Guarded>,
}

pub struct Ensemble {
    dir: TempDir,
    nodes: Vec<Node>,
    /// Kills every node (by the process groups in `<dir>/nN/pgid`) and removes the data if the
    /// test process dies before Drop.
    _cleanup: Cleanup,
}

impl Ensemble {
    /// Starts three nodes and waits until one leads and the other two follow.
    pub fn start() -> Ensemble {
        assert!(
            Path::new(ZK_SERVER).exists(),
            "{ZK_SERVER} is missing: apt-get install zookeeper"
        );
        let dir = tempfile::Builder::new()
            .prefix("zkdns-test-ensemble-")
            .tempdir()
            .expect("temp dir for the ensemble");
        let d = dir.path().display();
        let cleanup = Cleanup::new(&format!(
            "for f in {d}/n*/pgid; do kill -9 -$(cat $f 2>/dev/null) 2>/dev/null; done; rm -rf {d}"
        ));
        let mut ensemble = Ensemble {
            dir,
            nodes: Vec::new(),
            _cleanup: cleanup,
        };
        // the ports were free when picked; if a node cannot bind one, start over with others
        for attempt in 1..=3 {
            ensemble.nodes = pick_ports();
            ensemble.write_configs();
            for i in 0..NODES {
                ensemble.launch(i);
            }
            match ensemble.wait_serving(QUORUM_TIMEOUT) {
                Ok(_) => return ensemble,
                Err(e) if attempt < 3 => {
                    eprintln!("ZooKeeper ensemble did not form ({e}); retrying with other ports");
                    ensemble.kill_all();
                    for i in 0..NODES {
                        let _ = std::fs::remove_dir_all(ensemble.node_dir(i));
                    }
                }
                Err(e) => panic!(
                    "ZooKeeper ensemble did not form: {e}\n{}",
                    ensemble.log_tails()
                ),
            }
        }
        unreachable!()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// The client address of node `i` (0-based).
    pub fn addr(&self, i: usize) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.nodes[i].client_port))
    }

    /// `127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3`.
    pub fn connect_string(&self) -> String {
        (0..self.len())
            .map(|i| self.addr(i).to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Whether node `i`'s process is running (it may not be serving yet).
    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].process.is_some()
    }

    /// SIGKILL to node `i`; its ports and data stay for [`Ensemble::restart`].
    pub fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.nodes[i].process.take() {
            p.kill();
            let _ = std::fs::remove_file(self.node_dir(i).join("pgid"));
        }
    }

    /// Kills every node.
    pub fn kill_all(&mut self) {
        for i in 0..self.len() {
            self.kill(i);
        }
    }

    /// Starts a killed node again on its ports and data. Does not wait: with the whole
    /// ensemble down no single node can serve; see [`Ensemble::wait_serving`].
    pub fn restart(&mut self, i: usize) {
        assert!(!self.is_running(i), "node {i} is still running");
        self.launch(i);
    }

    /// Starts every killed node.
    pub fn restart_all(&mut self) {
        for i in 0..self.len() {
            if !self.is_running(i) {
                self.launch(i);
            }
        }
    }

    /// What `srvr` on node `i` says.
    pub fn mode(&self, i: usize) -> Mode {
        let reply = self.four_letter(i, "srvr");
        if reply.contains("Mode: leader") {
            Mode::Leader
        } else if reply.contains("Mode: follower") {
            Mode::Follower
        } else if reply.is_empty() {
            Mode::Down
        } else {
            Mode::NotServing
        }
    }

    /// The node that leads now, if any.
    pub fn leader(&self) -> Option<usize> {
        (0..self.len()).find(|&i| self.is_running(i) && self.mode(i) == Mode::Leader)
    }

    /// Waits until one running node leads and every other running node follows; returns how
    /// long that took.
    pub fn wait_serving(&mut self, timeout: Duration) -> Result<Duration, String> {
        let started = Instant::now();
        loop {
            for (i, node) in self.nodes.iter_mut().enumerate() {
                if let Some(status) = node.process.as_mut().and_then(Guarded::try_wait) {
                    node.process = None;
                    return Err(format!("node {} exited with {status}", i + 1));
                }
            }
            let modes: Vec<Mode> = (0..self.len())
                .map(|i| {
                    if self.is_running(i) {
                        self.mode(i)
                    } else {
                        Mode::Down
                    }
                })
                .collect();
            let running = (0..self.len()).filter(|&i| self.is_running(i)).count();
            let leaders = modes.iter().filter(|m| **m == Mode::Leader).count();
            let followers = modes.iter().filter(|m| **m == Mode::Follower).count();
            if leaders == 1 && leaders + followers == running {
                return Ok(started.elapsed());
            }
            if started.elapsed() > timeout {
                return Err(format!(
                    "no leader with all running nodes following within {timeout:?}; modes {modes:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The node holding a client connection of `session` (as zookeeper-client prints it,
    /// `0x…`), from each node's `cons` list.
    pub fn node_of_session(&self, session: &str) -> Option<usize> {
        let needle = format!("sid={session},");
        (0..self.len())
            .find(|&i| self.is_running(i) && self.four_letter(i, "cons").contains(&needle))
    }

    /// Sends a four-letter command to node `i` and returns the reply (empty if none).
    pub fn four_letter(&self, i: usize, cmd: &str) -> String {
        four_letter_at(self.addr(i), cmd)
    }

    /// A connected client of the whole ensemble, with the given session timeout.
    pub async fn client(&self, session_timeout: Duration) -> zookeeper_client::Client {
        connect_client(&self.connect_string(), session_timeout).await
    }

    /// The last lines of every node's log, for failure messages.
    pub fn log_tails(&self) -> String {
        (0..self.len())
            .map(|i| {
                let text = std::fs::read_to_string(self.node_dir(i).join("zookeeper.out"))
                    .unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                format!(
                    "----- ZooKeeper node {} -----\n{}",
                    i + 1,
                    lines[lines.len().saturating_sub(25)..].join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn node_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("n{}", i + 1))
    }

    fn write_configs(&self) {
        let servers: String = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                format!(
                    "server.{}=127.0.0.1:{}:{}\n",
                    i + 1,
                    n.quorum_port,
                    n.election_port
                )
            })
            .collect();
        for (i, node) in self.nodes.iter().enumerate() {
            let dir = self.node_dir(i);
            let data = dir.join("data");
            std::fs::create_dir_all(&data).expect("ZooKeeper data dir");
            std::fs::write(data.join("myid"), format!("{}\n", i + 1)).expect("write myid");
            // tickTime 200 ms as in the single-node fixture; initLimit/syncLimit generous so
            // that a busy machine does not make followers drop out by themselves. forceSync=no
            // is safe here: the tests kill processes, never the machine, and the log is
            // flushed to the kernel on every commit.
            let cfg = format!(
                "tickTime=200\n\
                 initLimit=50\n\
                 syncLimit=15\n\
                 dataDir={}\n\
                 clientPort={}\n\
                 clientPortAddress=127.0.0.1\n\
                 maxClientCnxns=0\n\
                 maxSessionTimeout={}\n\
                 admin.enableServer=false\n\
                 4lw.commands.whitelist=*\n\
                 autopurge.purgeInterval=0\n\
                 forceSync=no\n\
                 {servers}",
                data.display(),
                node.client_port,
                MAX_SESSION_TIMEOUT.as_millis(),
            );
            std::fs::write(dir.join("zoo.cfg"), cfg).expect("write zoo.cfg");
        }
    }

    fn launch(&mut self, i: usize) {
        let dir = self.node_dir(i);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("zookeeper.out"))
            .expect("ZooKeeper log file");
        let mut cmd = Command::new(ZK_SERVER);
        cmd.arg("start-foreground")
            .arg(dir.join("zoo.cfg"))
            .env("JMXDISABLE", "true")
            .env("ZOO_LOG_DIR", &dir)
            .env(
                "JVMFLAGS",
                "-Xmx192m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Dzookeeper.root.logger=INFO,CONSOLE",
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log);
        let process = Guarded::spawn(&format!("zookeeper-{}", i + 1), cmd);
        std::fs::write(dir.join("pgid"), process.id().to_string()).expect("write pgid file");
        self.nodes[i].process = Some(process);
    }
}

impl Drop for Ensemble {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// Nine distinct free loopback ports: client, quorum and election for each node.
fn pick_ports() -> Vec<Node> {
    let mut ports = BTreeSet::new();
    let mut order = Vec::new();
    while order.len() < NODES * 3 {
        let p = free_tcp_port();
        if ports.insert(p) {
            order.push(p);
        }
    }
    order
        .chunks(3)
        .map(|c| Node {
            client_port: c[0],
            quorum_port: c[1],
            election_port: c[2],
            process: None,
        })
        .collect()
}

/// Connects a client to `connect` (any connect string), retrying for up to 30 s.
pub async fn connect_client(connect: &str, session_timeout: Duration) -> zookeeper_client::Client {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let attempt = zookeeper_client::Client::connector()
            .with_session_timeout(session_timeout)
            .connect(connect)
            .await;
        match attempt {
            Ok(client) => return client,
            Err(e) if Instant::now() < deadline => {
                eprintln!("ZooKeeper client connect to {connect} failed ({e}); retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("cannot connect to ZooKeeper at {connect}: {e}"),
        }
    }
}
