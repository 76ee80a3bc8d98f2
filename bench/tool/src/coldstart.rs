//! Cold start: from starting the server process to its first correct answer, with its
//! resident memory then and after a settling pause; optionally the CPU an idle server uses.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::child::Child;
use crate::dns::{Client, Expect};
use crate::stats::{append, ms};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where the server answers
    #[arg(long)]
    dns: SocketAddr,
    /// A name the loaded data has (the answer shows the data is in)
    #[arg(long)]
    name: String,
    /// Its address
    #[arg(long)]
    expect: Ipv4Addr,
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Pause before the second memory reading, ms
    #[arg(long, default_value_t = 1000)]
    settle_ms: u64,
    /// After the last run's settle: measure CPU over this many idle seconds
    #[arg(long, default_value_t = 0)]
    idle_secs: u64,
    /// Label of this run in the output
    #[arg(long)]
    label: String,
    /// TSV to append: label run ready_ms rss_kb rss_settled_kb stop_ms
    /// (and label idle secs ticks cpu_ms context_switches)
    #[arg(long)]
    out: PathBuf,
    /// The server's log
    #[arg(long)]
    log: PathBuf,
    /// The server's command line
    #[arg(last = true, required = true)]
    cmd: Vec<String>,
}

pub fn run(args: Args) -> Result<()> {
    let mut rows = Vec::new();
    for run in 0..args.runs {
        let mut client = Client::new(args.dns)?;
        let t0 = Instant::now();
        let mut child = Child::spawn(&args.cmd, &args.log)?;
        let Some(at) = client.wait_for(
            &args.name,
            Expect::Has(args.expect),
            Duration::from_secs(120),
        ) else {
            bail!(
                "{} never answered {} with {}",
                args.label,
                args.name,
                args.expect
            );
        };
        let ready = at - t0;
        let rss = child.rss_kb();
        std::thread::sleep(Duration::from_millis(args.settle_ms));
        let settled = child.rss_kb();
        println!(
            "cold start [{}] run {}: answering after {:.0} ms, RSS {:.1} MiB ({:.1} MiB after {} ms)",
            args.label,
            run + 1,
            ms(ready),
            rss as f64 / 1024.0,
            settled as f64 / 1024.0,
            args.settle_ms
        );
        if run + 1 == args.runs && args.idle_secs > 0 {
            let (t1, ns1, cs1) = child.cpu();
            let before = child.threads();
            std::thread::sleep(Duration::from_secs(args.idle_secs));
            let (t2, ns2, cs2) = child.cpu();
            // which threads woke up, and how often
            for (tid, name, switches, ns) in child.threads() {
                if let Some((_, _, s0, n0)) = before.iter().find(|b| b.0 == tid)
                    && switches > *s0
                {
                    println!(
                        "  thread {tid} {name}: {:.1} wakeups/s, {:.3} ms CPU",
                        (switches - s0) as f64 / args.idle_secs as f64,
                        (ns - n0) as f64 / 1e6
                    );
                }
            }
            let cpu_ms = (ns2 - ns1) as f64 / 1e6;
            println!(
                "idle [{}]: over {} s with no queries and no changes: {} ticks, {:.2} ms CPU, {:.1} wakeups/s",
                args.label,
                args.idle_secs,
                t2 - t1,
                cpu_ms,
                (cs2 - cs1) as f64 / args.idle_secs as f64
            );
            rows.push(vec![
                args.label.clone(),
                "idle".into(),
                args.idle_secs.to_string(),
                (t2 - t1).to_string(),
                format!("{cpu_ms:.3}"),
                (cs2 - cs1).to_string(),
            ]);
        }
        let stop = child.stop();
        rows.push(vec![
            args.label.clone(),
            (run + 1).to_string(),
            format!("{:.1}", ms(ready)),
            rss.to_string(),
            settled.to_string(),
            format!("{:.1}", ms(stop)),
        ]);
    }
    append(&args.out, &rows)
}

#[derive(Debug, clap::Args)]
pub struct WaitArgs {
    #[arg(long)]
    dns: SocketAddr,
    #[arg(long)]
    name: String,
    #[arg(long)]
    expect: Ipv4Addr,
    /// Seconds
    #[arg(long, default_value_t = 120)]
    timeout: u64,
}

/// Waits until a server answers `name` with `expect`; prints the milliseconds it took.
pub fn wait(args: WaitArgs) -> Result<()> {
    let t0 = Instant::now();
    let mut client = Client::new(args.dns)?;
    match client.wait_for(
        &args.name,
        Expect::Has(args.expect),
        Duration::from_secs(args.timeout),
    ) {
        Some(at) => {
            println!("{:.1}", ms(at - t0));
            Ok(())
        }
        None => bail!(
            "{} did not answer {} with {} in {} s",
            args.dns,
            args.name,
            args.expect,
            args.timeout
        ),
    }
}
