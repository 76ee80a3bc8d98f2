//! Resync: zkdns talks to ZooKeeper through a proxy that is cut and later restored; a change
//! made during the cut has no event, so only zkdns's re-read after the reconnect (short cut)
//! or after the session expired (cut longer than the session timeout) can show it. Measured:
//! from the restore to the first answer with the change; and whether the old answer was
//! served meanwhile (serve-stale).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::child::Child;
use crate::dns::{Expect, Prober};
use crate::proxy::Proxy;
use crate::stats::{append, ms};
use crate::zk::{Addresses, a_record, connect, put};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// ZooKeeper (one server, host:port): the proxy forwards to it
    #[arg(long)]
    zk: SocketAddr,
    #[arg(long)]
    root: String,
    #[arg(long)]
    zone: String,
    /// Where zkdns answers
    #[arg(long)]
    dns: SocketAddr,
    /// zkdns's --zk-session-timeout, ms (the expiry cut lasts twice this plus 2 s)
    #[arg(long)]
    session_timeout_ms: u64,
    /// Length of the short cut, ms
    #[arg(long, default_value_t = 1000)]
    cut_ms: u64,
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// TSV to append: scenario run restore_to_answer_ms stale_answered(0/1)
    #[arg(long)]
    out: PathBuf,
    #[arg(long)]
    log: PathBuf,
    /// zkdns's command line; `{zk}` is replaced with the proxy's address
    #[arg(last = true, required = true)]
    cmd: Vec<String>,
}

pub async fn run(args: Args) -> Result<()> {
    let proxy = Proxy::start(args.zk).await?;
    let client = connect(&args.zk.to_string()).await?;
    let zone_path = format!("{}/zones/{}", args.root, args.zone);
    let path = format!("{zone_path}/resync-probe");
    let name = format!("resync-probe.{}", args.zone);
    let mut ips = Addresses::new(Ipv4Addr::new(10, 210, 0, 0));
    let mut ip = ips.next();
    put(&client, &path, &a_record(ip)).await?;

    let cmd: Vec<String> = args
        .cmd
        .iter()
        .map(|a| a.replace("{zk}", &proxy.addr.to_string()))
        .collect();
    let _zkdns = Child::spawn(&cmd, &args.log)?;
    let prober = Prober::start(args.dns)?;
    if prober
        .probe(&name, Expect::Has(ip), Duration::from_secs(120))
        .await
        .ok()
        .flatten()
        .is_none()
    {
        bail!("zkdns never answered {name} with {ip}");
    }
    let expiry_cut = Duration::from_millis(args.session_timeout_ms * 2 + 2000);
    let mut rows = Vec::new();
    for run in 1..=args.runs {
        for (scenario, cut) in [
            ("reconnect", Duration::from_millis(args.cut_ms)),
            ("expiry", expiry_cut),
        ] {
            let old = ip;
            proxy.cut();
            tokio::time::sleep(Duration::from_millis(100)).await;
            ip = ips.next();
            put(&client, &path, &a_record(ip)).await?;
            tokio::time::sleep(cut.saturating_sub(Duration::from_millis(200))).await;
            // the old answer must still be served while ZooKeeper is away
            let stale = prober
                .probe(&name, Expect::Has(old), Duration::from_millis(100))
                .await
                .ok()
                .flatten()
                .is_some();
            let seen = prober.probe(&name, Expect::Has(ip), Duration::from_secs(60));
            tokio::time::sleep(Duration::from_millis(100)).await;
            let t0 = Instant::now();
            proxy.restore();
            let Some(at) = seen.await.ok().flatten() else {
                bail!("{scenario}: the change made during the cut never showed");
            };
            let took = at.saturating_duration_since(t0);
            println!(
                "resync [{scenario}] run {run}: cut {:.1} s; old answer served during the cut: {}; change answered {:.0} ms after the restore",
                cut.as_secs_f64(),
                if stale { "yes" } else { "NO" },
                ms(took)
            );
            rows.push(vec![
                scenario.to_string(),
                run.to_string(),
                format!("{:.1}", ms(took)),
                u8::from(stale).to_string(),
            ]);
            // let the session settle before the next cut
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    append(&args.out, &rows)
}
