//! The process under test, started by a driver: it gets SIGTERM if the driver dies (so a
//! Ctrl-C never leaves one behind), and can be read for memory and CPU time from /proc.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

pub struct Child {
    inner: std::process::Child,
}

impl Child {
    /// Starts `argv`, its stdout and stderr appended to `log`.
    pub fn spawn(argv: &[String], log: &Path) -> Result<Self> {
        let Some((program, args)) = argv.split_first() else {
            bail!("no command to run");
        };
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("open {}", log.display()))?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)
            });
        }
        let inner = cmd.spawn().with_context(|| format!("start {program}"))?;
        Ok(Self { inner })
    }

    pub fn pid(&self) -> u32 {
        self.inner.id()
    }

    fn status_field(&self, field: &str) -> Option<u64> {
        let text = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
    }

    /// Resident memory, kB.
    pub fn rss_kb(&self) -> u64 {
        self.status_field("VmRSS:").unwrap_or(0)
    }

    /// CPU time of every thread so far: (utime + stime in clock ticks, run time in ns from
    /// schedstat, context switches).
    pub fn cpu(&self) -> (u64, u64, u64) {
        let pid = self.pid();
        let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                let rest = &s[s.rfind(')')? + 2..];
                let f: Vec<&str> = rest.split_whitespace().collect();
                // fields 14 and 15 of stat; `rest` starts at field 3
                Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
            })
            .unwrap_or(0);
        let mut ns = 0;
        let mut switches = 0;
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for t in tasks.flatten() {
                let p = t.path();
                if let Ok(s) = std::fs::read_to_string(p.join("schedstat")) {
                    ns += s
                        .split_whitespace()
                        .next()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                }
                if let Ok(s) = std::fs::read_to_string(p.join("status")) {
                    for l in s.lines() {
                        if let Some(v) = l
                            .strip_prefix("voluntary_ctxt_switches:")
                            .or_else(|| l.strip_prefix("nonvoluntary_ctxt_switches:"))
                        {
                            switches += v.trim().parse::<u64>().unwrap_or(0);
                        }
                    }
                }
            }
        }
        (ticks, ns, switches)
    }

    /// Per thread: (thread id, name, context switches, run time in ns).
    pub fn threads(&self) -> Vec<(u32, String, u64, u64)> {
        let mut out = Vec::new();
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid())) else {
            return out;
        };
        for t in tasks.flatten() {
            let p = t.path();
            let tid = t.file_name().to_string_lossy().parse().unwrap_or(0);
            let name = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
            let ns = std::fs::read_to_string(p.join("schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse().ok())
                .unwrap_or(0);
            let switches = std::fs::read_to_string(p.join("status"))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| {
                    l.strip_prefix("voluntary_ctxt_switches:")
                        .or_else(|| l.strip_prefix("nonvoluntary_ctxt_switches:"))
                })
                .map(|v| v.trim().parse::<u64>().unwrap_or(0))
                .sum();
            out.push((tid, name.trim().to_string(), switches, ns));
        }
        out
    }

    /// SIGTERM, then SIGKILL after 5 s; returns how long it took to exit.
    pub fn stop(&mut self) -> Duration {
        let started = Instant::now();
        if let Ok(None) = self.inner.try_wait() {
            let _ = kill(Pid::from_raw(self.pid() as i32), Signal::SIGTERM);
            while started.elapsed() < Duration::from_secs(5) {
                if let Ok(Some(_)) = self.inner.try_wait() {
                    return started.elapsed();
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = self.inner.kill();
        }
        let _ = self.inner.wait();
        started.elapsed()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.stop();
    }
}
