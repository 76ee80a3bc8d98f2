//! Propagation: the time from a ZooKeeper write to the first DNS answer that reflects it.
//! Each round makes five changes, one of each kind, so drift hits every kind alike:
//! set (new data on a record set), create (a new record set), delete (that set again),
//! member (an ephemeral member on a fresh session) and close (that session closed, so its
//! member goes). The clock starts right before the write request is issued and stops when
//! the prober, already asking back to back, gets the first answer showing the change. Beside
//! it: when the write was acknowledged, and when ZooKeeper delivered the watch event to a
//! session of our own (what any watcher could do at best).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use zookeeper_client::EventType;

use crate::dns::{Expect, Prober};
use crate::stats::{append, ms, summary};
use crate::zk::{Addresses, EventLog, a_record, connect, ephemeral, persistent, put, remove_tree};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// ZooKeeper connect string
    #[arg(long)]
    zk: String,
    /// zkdns root (e.g. /b10k)
    #[arg(long)]
    root: String,
    /// Zone the names go in (must exist and be served)
    #[arg(long)]
    zone: String,
    /// The zkdns under test
    #[arg(long)]
    dns: SocketAddr,
    /// Rounds of five changes each
    #[arg(long, default_value_t = 200)]
    rounds: usize,
    /// Label of this run in the output (e.g. idle, load)
    #[arg(long)]
    label: String,
    /// TSV to append: label kind round answer_ms ack_ms event_ms
    #[arg(long)]
    out: PathBuf,
    /// Longest wait for one change to show, in seconds
    #[arg(long, default_value_t = 10)]
    timeout: u64,
}

/// Record sets per kind of change, reused round after round.
const SETS: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Set,
    Create,
    Delete,
    Member,
    Close,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::Set,
        Kind::Create,
        Kind::Delete,
        Kind::Member,
        Kind::Close,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Set => "set",
            Kind::Create => "create",
            Kind::Delete => "delete",
            Kind::Member => "member",
            Kind::Close => "close",
        }
    }

    fn event(self) -> EventType {
        match self {
            Kind::Set => EventType::NodeDataChanged,
            Kind::Create | Kind::Member => EventType::NodeCreated,
            Kind::Delete | Kind::Close => EventType::NodeDeleted,
        }
    }
}

struct Sample {
    kind: Kind,
    round: usize,
    answer: Option<Duration>,
    ack: Duration,
    event: Option<Duration>,
}

struct Bench<'a> {
    args: &'a Args,
    prober: Prober,
    events: EventLog,
    samples: Vec<Sample>,
}

impl Bench<'_> {
    /// Runs one change: the probe first, then the clock, then the write.
    async fn measure<F>(
        &mut self,
        kind: Kind,
        round: usize,
        path: &str,
        name: &str,
        expect: Expect,
        write: F,
    ) -> Result<()>
    where
        F: Future<Output = Result<()>>,
    {
        let answered = self
            .prober
            .probe(name, expect, Duration::from_secs(self.args.timeout));
        let t0 = Instant::now();
        write
            .await
            .with_context(|| format!("{} {path}", kind.name()))?;
        let ack = t0.elapsed();
        let answer = answered.await.ok().flatten().map(|at| at - t0);
        let event = self
            .events
            .find(path, kind.event(), t0, Duration::from_millis(500))
            .await
            .map(|at| at - t0);
        if answer.is_none() {
            eprintln!(
                "zkdns-bench: {} of {name} not answered within {} s",
                kind.name(),
                self.args.timeout
            );
        }
        self.samples.push(Sample {
            kind,
            round,
            answer,
            ack,
            event,
        });
        Ok(())
    }
}

pub async fn run(args: Args) -> Result<()> {
    let zone_path = format!("{}/zones/{}", args.root, args.zone);
    let client = connect(&args.zk).await?;
    if client.check_stat(&zone_path).await?.is_none() {
        bail!("{zone_path} does not exist: load the zone first");
    }
    let label = &args.label;
    let set_path = |j: usize| format!("{zone_path}/{label}-s{j}");
    let set_name = |j: usize| format!("{label}-s{j}.{}", args.zone);
    let new_path = |k: usize| format!("{zone_path}/{label}-c{k}");
    let new_name = |k: usize| format!("{label}-c{k}.{}", args.zone);
    let group_path = |j: usize| format!("{zone_path}/{label}-m{j}");
    let group_name = |j: usize| format!("{label}-m{j}.{}", args.zone);

    // the sets that rounds change, each with a first address; the member groups empty (NODATA)
    let mut ips = Addresses::new(Ipv4Addr::new(10, 200, 0, 0));
    let mut first = Vec::new();
    for j in 0..SETS {
        let ip = ips.next();
        put(&client, &set_path(j), &a_record(ip)).await?;
        remove_tree(&client, &group_path(j)).await?;
        client.create(&group_path(j), b"", &persistent()).await?;
        first.push(ip);
    }
    let prober = Prober::start(args.dns)?;
    for (j, ip) in first.iter().enumerate() {
        let seen = prober.probe(&set_name(j), Expect::Has(*ip), Duration::from_secs(30));
        if seen.await.ok().flatten().is_none() {
            bail!(
                "zkdns at {} does not answer {} with {ip}",
                args.dns,
                set_name(j)
            );
        }
    }
    let events = EventLog::start(&args.zk, &zone_path).await?;
    let mut bench = Bench {
        args: &args,
        prober,
        events,
        samples: Vec::new(),
    };
    let started = Instant::now();
    for k in 0..args.rounds {
        let j = k % SETS;
        let ip = ips.next();
        let path = set_path(j);
        bench
            .measure(Kind::Set, k, &path, &set_name(j), Expect::Has(ip), async {
                client.set_data(&path, &a_record(ip), None).await?;
                Ok(())
            })
            .await?;

        let ip = ips.next();
        let path = new_path(k);
        let name = new_name(k);
        bench
            .measure(Kind::Create, k, &path, &name, Expect::Has(ip), async {
                client.create(&path, &a_record(ip), &persistent()).await?;
                Ok(())
            })
            .await?;
        bench
            .measure(Kind::Delete, k, &path, &name, Expect::NxDomain, async {
                client.delete(&path, None).await?;
                Ok(())
            })
            .await?;

        // a member on a session of its own, as `zkdns register` makes it
        let session = connect(&args.zk).await?;
        let ip = ips.next();
        let path = format!("{}/n{k}", group_path(j));
        let name = group_name(j);
        bench
            .measure(Kind::Member, k, &path, &name, Expect::Has(ip), async {
                session.create(&path, &a_record(ip), &ephemeral()).await?;
                Ok(())
            })
            .await?;
        bench
            .measure(
                Kind::Close,
                k,
                &path,
                &name,
                Expect::Lacks(ip),
                async move {
                    // dropping the last handle sends CloseSession
                    drop(session);
                    Ok(())
                },
            )
            .await?;
    }
    let elapsed = started.elapsed();

    let rows: Vec<Vec<String>> = bench
        .samples
        .iter()
        .map(|s| {
            let opt = |d: Option<Duration>| d.map_or("-1".to_string(), |d| format!("{:.3}", ms(d)));
            vec![
                label.clone(),
                s.kind.name().to_string(),
                s.round.to_string(),
                opt(s.answer),
                format!("{:.3}", ms(s.ack)),
                opt(s.event),
            ]
        })
        .collect();
    append(&args.out, &rows)?;

    println!(
        "propagation [{label}]: {} changes in {:.1} s (write → first answer showing it)",
        bench.samples.len(),
        elapsed.as_secs_f64()
    );
    let mut all = Vec::new();
    let mut all_events = Vec::new();
    for kind in Kind::ALL {
        let of = |f: fn(&Sample) -> Option<Duration>| -> Vec<f64> {
            bench
                .samples
                .iter()
                .filter(|s| s.kind == kind)
                .filter_map(|s| f(s).map(ms))
                .collect()
        };
        let answers = of(|s| s.answer);
        let events = of(|s| s.event);
        let missed = bench
            .samples
            .iter()
            .filter(|s| s.kind == kind && s.answer.is_none())
            .count();
        println!(
            "  {:<7} answer {}  | ZooKeeper event p50={:.2} ms{}",
            kind.name(),
            summary(&answers),
            crate::stats::percentile(&events, 0.5),
            if missed > 0 {
                format!("  ({missed} never answered)")
            } else {
                String::new()
            }
        );
        all.extend(answers);
        all_events.extend(events);
    }
    println!("  all     answer {}", summary(&all));
    println!("  all     event  {}", summary(&all_events));
    Ok(())
}
