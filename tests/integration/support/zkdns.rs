//! The real `zkdns` binary as a fixture: `Zkdns::serve` starts `zkdns serve`, reads the bound
//! address from its "listening for UDP on ADDR" log line, and collects its stderr. It is killed
//! on Drop; when the test is failing, its log is printed so the failure explains itself.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::process::{Guarded, StderrLog};
use super::zookeeper::ZooKeeper;

/// How long `serve` waits for the listening line.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `serve_ready` waits for the first full read of ZooKeeper.
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// `zkdns` with `--zk` and `--root` set, logs plain text (no colours) at info level unless
/// the test run sets `RUST_LOG`.
pub fn zkdns_cmd(zk: &ZooKeeper, root: &str) -> Command {
    zkdns_cmd_at(&zk.connect_string(), root)
}

/// `zkdns [EXTRA…] hosts --file FILE`.
pub fn hosts_cmd(connect: &str, root: &str, file: &Path, extra: &[&str]) -> Command {
    let mut cmd = zkdns_cmd_at(connect, root);
    cmd.args(extra).arg("hosts").arg("--file").arg(file);
    cmd
}

/// `zkdns hosts --once`: exit code and stderr.
pub fn hosts_once(connect: &str, root: &str, file: &Path, extra: &[&str]) -> (i32, String) {
    let out = hosts_cmd(connect, root, file, extra)
        .arg("--once")
        .stdin(Stdio::null())
        .output()
        .expect("run zkdns hosts");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// [`zkdns_cmd`] with any connect string (several hosts, a chroot, a proxy).
pub fn zkdns_cmd_at(connect: &str, root: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zkdns"));
    cmd.arg("--zk")
        .arg(connect)
        .arg("--root")
        .arg(root)
        .env("NO_COLOR", "1")
        // a reconnect re-reads at once, as the fault tests' deadlines expect; the tests of the
        // jitter give the flag, which wins over the variable
        .env("ZKDNS_RESYNC_JITTER", "0s")
        .env("ZKDNS_HOSTS_RESYNC_JITTER", "0s")
        .env_remove("ZKDNS_ZK")
        .env_remove("ZKDNS_ROOT");
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "info");
    }
    cmd
}

fn has_flag(args: &[&str], flag: &str) -> bool {
    args.iter()
        .any(|a| *a == flag || a.starts_with(&format!("{flag}=")))
}

/// `cmd` plus `serve`, the default `--listen 127.0.0.1:0` and `--no-upstream` unless
/// `extra_args` choose otherwise, and `extra_args`.
pub fn serve_command(mut cmd: Command, extra_args: &[&str]) -> Command {
    cmd.arg("serve");
    if !has_flag(extra_args, "--listen") {
        cmd.args(["--listen", "127.0.0.1:0"]);
    }
    if !has_flag(extra_args, "--upstream") && !has_flag(extra_args, "--no-upstream") {
        cmd.arg("--no-upstream");
    }
    cmd.args(extra_args);
    cmd
}

/// A running `zkdns serve`.
pub struct Zkdns {
    process: Guarded,
    log: StderrLog,
    addr: SocketAddr,
}

impl Zkdns {
    /// Starts `zkdns serve` against `zk` under `root`. Adds `--listen 127.0.0.1:0` unless
    /// `extra_args` has `--listen`, and `--no-upstream` unless it has `--upstream` or
    /// `--no-upstream`. Returns once the UDP listener is bound (not necessarily synced).
    pub fn serve(zk: &ZooKeeper, root: &str, extra_args: &[&str]) -> Zkdns {
        Self::serve_at(&zk.connect_string(), root, extra_args)
    }

    /// [`Zkdns::serve`], then waits until the first full read of ZooKeeper is published, so
    /// the data written before the start is being served.
    pub fn serve_ready(zk: &ZooKeeper, root: &str, extra_args: &[&str]) -> Zkdns {
        let stub = Self::serve(zk, root, extra_args);
        stub.wait_synced();
        stub
    }

    /// [`Zkdns::serve`] with any connect string (several hosts, a chroot, a proxy).
    pub fn serve_at(connect: &str, root: &str, extra_args: &[&str]) -> Zkdns {
        // retry only where the kernel picks the port: our default, or a `:0` the test gave
        let picks_port = !has_flag(extra_args, "--listen")
            || extra_args
                .iter()
                .flat_map(|a| a.split(','))
                .any(|a| a.ends_with(":0"));
        let mut failures = Vec::new();
        for _ in 0..5 {
            match Self::try_start(serve_command(zkdns_cmd_at(connect, root), extra_args)) {
                Ok(stub) => return stub,
                // With port 0, zkdns binds TCP to the port the kernel gave UDP and exits if
                // that port is taken for TCP (see serve_listen.rs). Another start gets
                // another port; a failure with an address the test chose is final.
                Err(log) if picks_port && log.contains("failed to bind to TCP") => {
                    failures.push(log);
                }
                Err(log) => panic!("zkdns did not start:\n{log}"),
            }
        }
        panic!("zkdns did not start in 5 tries:\n{}", failures.join("\n"));
    }

    /// Spawns a prepared command (`serve` and its flags included) and waits for the
    /// "listening for UDP on ADDR" line. `Err` holds the log if zkdns exits or stays silent.
    pub fn try_start(cmd: Command) -> Result<Zkdns, String> {
        let (process, log) = StderrLog::spawn("zkdns", cmd);
        let mut stub = Zkdns {
            process,
            log,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        };
        let Some(line) = stub.wait_line("listening for UDP on ", START_TIMEOUT) else {
            let log = stub.logs();
            // not a failing test (yet): no need for Drop to print the log again
            stub.process.kill();
            return Err(format!(
                "no \"listening for UDP on\" line within {START_TIMEOUT:?}:\n{log}"
            ));
        };
        stub.addr = line
            .split("listening for UDP on ")
            .nth(1)
            // text logs end the address with a space, JSON logs with a quote
            .and_then(|rest| rest.split(|c: char| c.is_whitespace() || c == '"').next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("cannot read the address in {line:?}"));
        Ok(stub)
    }

    /// The first address zkdns listens on (UDP and TCP share it).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Everything zkdns wrote to stderr so far.
    pub fn logs(&self) -> String {
        self.log.text()
    }

    /// Waits until the log contains `needle`; `false` after `timeout` or if zkdns exited.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        self.wait_count(needle, 1, timeout)
    }

    /// Waits until the log contains `needle` at least `count` times.
    pub fn wait_count(&self, needle: &str, count: usize, timeout: Duration) -> bool {
        self.log
            .wait_until(timeout, |text| text.matches(needle).count() >= count)
    }

    /// How many log lines contain every one of `needles`.
    pub fn count_lines(&self, needles: &[&str]) -> usize {
        self.logs()
            .lines()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .count()
    }

    /// Waits for the first line containing `needle` and returns it.
    fn wait_line(&self, needle: &str, timeout: Duration) -> Option<String> {
        if !self.wait_log(needle, timeout) {
            return None;
        }
        self.logs()
            .lines()
            .find(|l| l.contains(needle))
            .map(str::to_string)
    }

    /// The A addresses it answers for `name`, sorted.
    pub async fn a_of(&self, name: &str) -> Vec<String> {
        let msg = super::dns::query(self.addr, name, hickory_proto::rr::RecordType::A).await;
        let mut got = super::dns::addresses(&msg);
        got.sort();
        got
    }

    /// Waits up to `within` until it answers `name` with exactly the addresses `want` (sorted);
    /// fails with its log if it does not.
    pub async fn until_answers(&self, name: &str, want: &[&str], within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let got = self.a_of(name).await;
            if got == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name} answers {got:?}, not {want:?}:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until zkdns has published a full read of ZooKeeper (its "resynced" line).
    pub fn wait_synced(&self) {
        assert!(
            self.wait_log("resynced", SYNC_TIMEOUT),
            "zkdns did not finish its first full read within {SYNC_TIMEOUT:?}:\n{}",
            self.logs()
        );
    }

    /// The process ID, for sending signals.
    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// Waits up to `timeout` for the process to exit; `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.process.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// Asserts the process is still running (it must survive whatever the test threw at it).
    pub fn assert_running(&mut self) {
        if let Some(status) = self.process.try_wait() {
            panic!("zkdns exited with {status}:\n{}", self.logs());
        }
    }
}

impl Drop for Zkdns {
    fn drop(&mut self) {
        self.process.kill();
        if std::thread::panicking() {
            eprintln!(
                "----- zkdns log ({}) -----\n{}----- end of zkdns log -----",
                self.addr,
                self.logs()
            );
        }
    }
}
