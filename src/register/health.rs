//! Health checks of `register`, as users of Nerve and Consul know them: a command (`sh -c`,
//! exit status 0 is healthy) and/or a TCP connect, every interval, each bounded by a timeout.
//! [`Health`] (pure) turns the results into decisions: the first pass publishes the name,
//! `fall` failures in a row withdraw it, `rise` passes in a row restore it.

use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// What to check, how often, and how long one check may take.
#[derive(Debug, Clone)]
pub struct Check {
    pub cmd: Option<String>,
    /// `HOST:PORT`, resolved at every check.
    pub tcp: Option<String>,
    pub interval: Duration,
    pub timeout: Duration,
}

impl Check {
    /// Runs every configured check once; `Err` says why the first failing one failed.
    pub async fn run(&self) -> Result<(), String> {
        if let Some(cmd) = &self.cmd {
            run_cmd(cmd, self.timeout).await?;
        }
        if let Some(target) = &self.tcp {
            run_tcp(target, self.timeout).await?;
        }
        Ok(())
    }
}

async fn run_cmd(cmd: &str, timeout: Duration) -> Result<(), String> {
    // its own process group, so that a timeout kills whatever the command started
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        // the check command is not ours to trust with ZooKeeper's credentials
        .env_remove(crate::zk::auth::AUTH_ENV)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run sh -c {cmd:?}: {e}"))?;
    let group = child.id().and_then(|id| i32::try_from(id).ok());
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(format!("check command {status}")),
        Ok(Err(e)) => Err(format!("cannot wait for the check command: {e}")),
        Err(_) => {
            if let Some(group) = group {
                let _ = killpg(Pid::from_raw(group), Signal::SIGKILL);
            }
            let _ = child.wait().await;
            Err(format!(
                "check command still running after {timeout:?}; killed"
            ))
        }
    }
}

async fn run_tcp(target: &str, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(target)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("cannot connect to {target}: {e}")),
        Err(_) => Err(format!("no connection to {target} within {timeout:?}")),
    }
}

/// A change of the published state, each logged once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The first pass: the name is published for the first time.
    Publish,
    /// `fall` failures in a row.
    Withdraw,
    /// `rise` passes in a row after a withdrawal.
    Restore,
}

/// The health state machine. Down until the first pass (an instance that never becomes
/// healthy never gets traffic); then up until `fall` failures in a row, and down until `rise`
/// passes in a row.
#[derive(Debug, Clone)]
pub struct Health {
    rise: u32,
    fall: u32,
    up: bool,
    ever_up: bool,
    passes: u32,
    failures: u32,
}

impl Health {
    pub fn new(rise: u32, fall: u32) -> Self {
        Self {
            rise: rise.max(1),
            fall: fall.max(1),
            up: false,
            ever_up: false,
            passes: 0,
            failures: 0,
        }
    }

    /// Whether the name should be published now.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Failures in a row so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Takes one check result.
    pub fn observe(&mut self, passed: bool) -> Option<Transition> {
        if passed {
            self.failures = 0;
            self.passes = self.passes.saturating_add(1);
            if !self.up && (!self.ever_up || self.passes >= self.rise) {
                self.up = true;
                let first = !self.ever_up;
                self.ever_up = true;
                return Some(if first {
                    Transition::Publish
                } else {
                    Transition::Restore
                });
            }
        } else {
            self.passes = 0;
            self.failures = self.failures.saturating_add(1);
            if self.up && self.failures >= self.fall {
                self.up = false;
                return Some(Transition::Withdraw);
            }
        }
        None
    }
}

/// Runs the checks until cancelled, telling `wanted` whether the name should be published.
pub async fn run(
    check: Check,
    mut health: Health,
    name: String,
    wanted: watch::Sender<bool>,
    cancel: CancellationToken,
) {
    let mut ticks = tokio::time::interval(check.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (rise, fall) = (health.rise, health.fall);
    let mut reported_down = false;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = cancel.cancelled() => return,
        }
        let result = tokio::select! {
            r = check.run() => r,
            () = cancel.cancelled() => return,
        };
        match (health.observe(result.is_ok()), &result) {
            (Some(Transition::Publish), _) => {
                info!("health check passing: publishing {name}");
            }
            (Some(Transition::Withdraw), Err(why)) => {
                warn!("health check failed {fall} times in a row ({why}): withdrawing {name}");
            }
            (Some(Transition::Restore), _) => {
                info!("health check passed {rise} times in a row: restoring {name}");
            }
            (None, Err(why)) if !health.ever_up && !reported_down => {
                warn!("health check failing ({why}): {name} is published once it passes");
                reported_down = true;
            }
            (_, Err(why)) => debug!(failures = health.failures(), "health check failed: {why}"),
            (_, Ok(())) => debug!("health check passed"),
        }
        wanted.send_if_modified(|w| {
            let changed = *w != health.is_up();
            *w = health.is_up();
            changed
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Transition::*;

    fn feed(h: &mut Health, results: &str) -> Vec<Option<Transition>> {
        results.chars().map(|c| h.observe(c == '+')).collect()
    }

    #[test]
    fn first_pass_publishes_then_fall_and_rise_apply() {
        let mut h = Health::new(2, 3);
        assert!(!h.is_up());
        assert_eq!(feed(&mut h, "--"), [None, None]);
        assert!(!h.is_up(), "down until the first pass");
        assert_eq!(feed(&mut h, "+"), [Some(Publish)]);
        // fewer than `fall` failures in a row do nothing
        assert_eq!(feed(&mut h, "--+--+"), [None; 6]);
        assert!(h.is_up());
        assert_eq!(feed(&mut h, "---"), [None, None, Some(Withdraw)]);
        assert!(!h.is_up());
        // one pass is not `rise`; a failure restarts the count
        assert_eq!(feed(&mut h, "+-+"), [None, None, None]);
        assert_eq!(feed(&mut h, "+"), [Some(Restore)]);
        assert!(h.is_up());
        assert_eq!(feed(&mut h, "++++"), [None; 4]);
    }

    #[test]
    fn thresholds_of_one() {
        let mut h = Health::new(1, 1);
        assert_eq!(
            feed(&mut h, "+-+-"),
            [Some(Publish), Some(Withdraw), Some(Restore), Some(Withdraw)]
        );
    }

    #[tokio::test]
    async fn commands_and_tcp_checks() {
        let check = |cmd: &str| Check {
            cmd: Some(cmd.to_string()),
            tcp: None,
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
        };
        assert_eq!(check("true").run().await, Ok(()));
        assert!(check("exit 3").run().await.unwrap_err().contains("3"));
        let slow = check("sleep 30").run().await.unwrap_err();
        assert!(slow.contains("killed"), "{slow}");

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open = listener.local_addr().unwrap().to_string();
        let tcp = |target: String| Check {
            cmd: None,
            tcp: Some(target),
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
        };
        assert_eq!(tcp(open).run().await, Ok(()));
        drop(listener);
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = closed.local_addr().unwrap().to_string();
        drop(closed);
        assert!(tcp(target).run().await.is_err());
    }
}
