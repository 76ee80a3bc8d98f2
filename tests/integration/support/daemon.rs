//! [`Daemon`]: a long-running `zkdns` command other than `serve` (`register`, `hosts`).

use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use super::{Guarded, StderrLog};

/// How long a daemon gets to log what a test waits for, or to exit.
const DAEMON_DEADLINE: Duration = Duration::from_secs(30);

/// A long-running `zkdns` command (`register`, `hosts`) with its stderr collected. Killed on
/// Drop, its log printed if the test is failing.
pub struct Daemon {
    process: Guarded,
    log: StderrLog,
}

impl Daemon {
    pub fn spawn(name: &str, cmd: Command) -> Daemon {
        let (process, log) = StderrLog::spawn(name, cmd);
        Daemon { process, log }
    }

    pub fn logs(&self) -> String {
        self.log.text()
    }

    /// Lines containing `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.logs().lines().filter(|l| l.contains(needle)).count()
    }

    /// Waits until at least `n` lines contain `needle`; `false` after `timeout` or once the
    /// process has closed its stderr without it.
    pub fn wait_count(&self, needle: &str, n: usize, timeout: Duration) -> bool {
        self.log.wait_until(timeout, |text| {
            text.lines().filter(|l| l.contains(needle)).count() >= n
        })
    }

    /// Waits for a line containing `needle`, panicking with the log if none comes.
    pub fn expect_log(&self, needle: &str) {
        assert!(
            self.wait_count(needle, 1, DAEMON_DEADLINE),
            "no log line with {needle:?} within {DAEMON_DEADLINE:?}:\n{}",
            self.logs()
        );
    }

    /// Sends SIGTERM and asserts a clean exit (status 0) within [`DAEMON_DEADLINE`].
    pub fn terminate(&mut self) {
        self.signal(libc::SIGTERM);
        let status = self.wait_exit(DAEMON_DEADLINE);
        assert!(
            status.success(),
            "{} exited with {status}:\n{}",
            self.process.name(),
            self.logs()
        );
    }

    pub fn pid(&self) -> i32 {
        self.process.id() as i32
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on the pid of a child we have not reaped yet
        unsafe {
            libc::kill(self.pid(), signal);
        }
    }

    /// Waits for the process to exit; panics after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.process.try_wait() {
                self.log.wait_closed(Duration::from_secs(2));
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} still running {timeout:?} later:\n{}",
                self.process.name(),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn assert_running(&mut self) {
        if let Some(status) = self.process.try_wait() {
            panic!(
                "{} exited with {status}:\n{}",
                self.process.name(),
                self.logs()
            );
        }
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        self.process.kill();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.process.kill();
        if std::thread::panicking() {
            eprintln!(
                "----- {} log -----\n{}----- end of log -----",
                self.process.name(),
                self.logs()
            );
        }
    }
}
