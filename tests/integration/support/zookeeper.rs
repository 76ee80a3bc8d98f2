//! A real ZooKeeper server from the Debian package, standalone, on its own loopback port with
//! its own data directory. A short tickTime (200 ms) lets sessions be as short as 400 ms, so
//! expiry tests take seconds; the negotiated maximum is 4 s (20 ticks).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::process::{Cleanup, Guarded, free_tcp_port};

pub(super) const ZK_SERVER: &str = "/usr/share/zookeeper/bin/zkServer.sh";
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Session timeout of the test clients; the server caps it at 20 ticks (4 s) anyway.
const CLIENT_SESSION: Duration = Duration::from_secs(4);

pub struct ZooKeeper {
    process: Option<Guarded>,
    dir: TempDir,
    port: u16,
    /// Java system properties added to the server's command line (`-Dkey=value …`).
    extra_jvm_flags: String,
    /// Lines added to zoo.cfg, `{secure_port}` replaced by [`ZooKeeper::secure_port`].
    extra_config: String,
    /// A second free port, for a `secureClientPort` in `extra_config`.
    secure_port: u16,
    /// Removes the data dir if the test process dies (the shared server is never dropped);
    /// kills the server first, by the process group in `<dir>/pgid`.
    _cleanup: Cleanup,
}

impl ZooKeeper {
    /// Starts a fresh server and waits until it answers `ruok`.
    pub fn start() -> ZooKeeper {
        Self::start_with_jvm_flags("")
    }

    /// [`ZooKeeper::start`] with more JVM flags, e.g. `-Dznode.container.checkIntervalMs=200`
    /// so that container nodes are reaped within a test's patience (the default is 60 s).
    pub fn start_with_jvm_flags(extra_jvm_flags: &str) -> ZooKeeper {
        Self::start_with(extra_jvm_flags, "")
    }

    /// [`ZooKeeper::start_with_jvm_flags`] with lines added to zoo.cfg; `{secure_port}` in
    /// them stands for a second free port ([`ZooKeeper::secure_port`]), e.g. for TLS.
    pub fn start_with(extra_jvm_flags: &str, extra_config: &str) -> ZooKeeper {
        assert!(
            Path::new(ZK_SERVER).exists(),
            "{ZK_SERVER} is missing: apt-get install zookeeper"
        );
        let dir = tempfile::Builder::new()
            .prefix("zkdns-test-zk-")
            .tempdir()
            .expect("temp dir for ZooKeeper");
        let d = dir.path().display();
        let cleanup = Cleanup::new(&format!(
            "kill -9 -$(cat {d}/pgid 2>/dev/null) 2>/dev/null; rm -rf {d}"
        ));
        let mut zk = ZooKeeper {
            process: None,
            dir,
            port: 0,
            extra_jvm_flags: extra_jvm_flags.to_string(),
            extra_config: extra_config.to_string(),
            secure_port: 0,
            _cleanup: cleanup,
        };
        // the port was free when picked; if the server cannot bind it, pick another
        for attempt in 1..=3 {
            zk.port = free_tcp_port();
            zk.secure_port = free_tcp_port();
            while zk.secure_port == zk.port {
                zk.secure_port = free_tcp_port();
            }
            zk.write_config();
            match zk.launch() {
                Ok(()) => return zk,
                Err(e) if attempt < 3 => eprintln!("ZooKeeper start failed ({e}); retrying"),
                Err(e) => panic!("ZooKeeper did not start: {e}\n{}", zk.log_tail()),
            }
        }
        unreachable!()
    }

    /// One server for every test that never stops it, started on first use. A watchdog kills
    /// it when the test process exits (statics are never dropped).
    pub fn shared() -> &'static ZooKeeper {
        static SHARED: OnceLock<ZooKeeper> = OnceLock::new();
        SHARED.get_or_init(ZooKeeper::start)
    }

    pub fn connect_string(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port picked for `{secure_port}` in the extra config.
    pub fn secure_port(&self) -> u16 {
        self.secure_port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Kills the server with SIGKILL; the data directory and port stay for `start_again`.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
            let _ = std::fs::remove_file(self.dir.path().join("pgid"));
        }
    }

    /// Restarts a stopped server on the same port and data; waits for `ruok`.
    pub fn start_again(&mut self) {
        assert!(self.process.is_none(), "ZooKeeper is still running");
        // the old listening socket may linger for a moment; launch retries until it binds
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.launch() {
                Ok(()) => return,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("ZooKeeper restart failed ({e}); retrying");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("ZooKeeper did not restart: {e}\n{}", self.log_tail()),
            }
        }
    }

    /// A connected client (session in the caller's tokio runtime) for writing znodes.
    pub async fn client(&self) -> zookeeper_client::Client {
        super::ensemble::connect_client(&self.connect_string(), CLIENT_SESSION).await
    }

    /// Sends a four-letter command and returns the reply (empty if none).
    pub fn four_letter(&self, cmd: &str) -> String {
        four_letter_at(self.addr(), cmd)
    }

    fn write_config(&self) {
        let data = self.data_dir();
        std::fs::create_dir_all(&data).expect("ZooKeeper data dir");
        let cfg = format!(
            "tickTime=200\n\
             initLimit=10\n\
             syncLimit=5\n\
             dataDir={}\n\
             clientPort={}\n\
             clientPortAddress=127.0.0.1\n\
             maxClientCnxns=0\n\
             admin.enableServer=false\n\
             4lw.commands.whitelist=*\n\
             autopurge.purgeInterval=0\n",
            data.display(),
            self.port
        ) + &self
            .extra_config
            .replace("{secure_port}", &self.secure_port.to_string());
        std::fs::write(self.dir.path().join("zoo.cfg"), cfg).expect("write zoo.cfg");
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("zookeeper.out")
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Starts the process and waits for `ruok`; on failure the process is killed.
    fn launch(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("ZooKeeper log file");
        let mut cmd = Command::new(ZK_SERVER);
        cmd.arg("start-foreground")
            .arg(self.dir.path().join("zoo.cfg"))
            .env("JMXDISABLE", "true")
            .env("ZOO_LOG_DIR", self.dir.path())
            // a small, quick-starting JVM: the tests keep only a few znodes
            .env(
                "JVMFLAGS",
                format!(
                    "-Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Dzookeeper.root.logger=INFO,CONSOLE {}",
                    self.extra_jvm_flags
                ),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log);
        let mut process = Guarded::spawn("zookeeper", cmd);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = process.try_wait() {
                return Err(format!("ZooKeeper exited early with {status}"));
            }
            if self.four_letter("ruok") == "imok" {
                std::fs::write(self.dir.path().join("pgid"), process.id().to_string())
                    .expect("write pgid file");
                self.process = Some(process);
                return Ok(());
            }
            if Instant::now() > deadline {
                process.kill();
                return Err(format!(
                    "no imok from {} within {START_TIMEOUT:?}",
                    self.addr()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A root that no other test uses: `/t-<pid>-<counter>`.
pub fn unique_root() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "/t-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Sends a four-letter command to a ZooKeeper server and returns the reply (empty if none).
pub(super) fn four_letter_at(addr: SocketAddr, cmd: &str) -> String {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.write_all(cmd.as_bytes());
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}
