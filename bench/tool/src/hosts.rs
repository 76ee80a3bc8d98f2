//! Hosts mode: `zkdns hosts --file PATH` under changes. Measured: the time from a ZooKeeper
//! write to the file holding it (inotify on the file's directory, then a read), and how many
//! times the file is written for a burst of changes made within about a second.

use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::sync::oneshot;

use crate::child::Child;
use crate::stats::{append, ms, summary};
use crate::zk::{Addresses, a_record, connect, put};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long)]
    zk: String,
    #[arg(long)]
    root: String,
    #[arg(long)]
    zone: String,
    /// The hosts file `zkdns hosts` keeps
    #[arg(long)]
    file: PathBuf,
    /// Single changes, each waited for
    #[arg(long, default_value_t = 100)]
    changes: usize,
    /// Bursts of --burst-size changes
    #[arg(long, default_value_t = 3)]
    bursts: usize,
    #[arg(long, default_value_t = 1000)]
    burst_size: usize,
    /// TSV to append: change k ms writes | burst k writes span_ms last_ms
    #[arg(long)]
    out: PathBuf,
    #[arg(long)]
    log: PathBuf,
    /// The `zkdns hosts` command line
    #[arg(last = true, required = true)]
    cmd: Vec<String>,
}

struct Expectation {
    needle: String,
    timeout: Duration,
    reply: oneshot::Sender<Option<Instant>>,
}

/// Counts the writes of one file and answers "when did it first contain this line".
struct FileWatch {
    tx: mpsc::Sender<Expectation>,
    writes: Arc<AtomicU64>,
}

impl FileWatch {
    fn start(file: &Path) -> Result<Self> {
        let dir = file
            .parent()
            .context("file has no directory")?
            .to_path_buf();
        let name = file.file_name().context("no file name")?.to_os_string();
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        // a rename onto the file, or an in-place rewrite of it
        inotify.add_watch(
            &dir,
            AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_CLOSE_WRITE,
        )?;
        let writes = Arc::new(AtomicU64::new(0));
        let counter = writes.clone();
        let file = file.to_path_buf();
        let (tx, rx) = mpsc::channel::<Expectation>();
        std::thread::spawn(move || {
            let mut pending: Option<(Expectation, Instant)> = None;
            let mut after_move = false;
            let contains = |needle: &str| {
                std::fs::read_to_string(&file).is_ok_and(|text| text.contains(needle))
            };
            loop {
                if pending.is_none() {
                    match rx.try_recv() {
                        Ok(e) => {
                            if contains(&e.needle) {
                                let _ = e.reply.send(Some(Instant::now()));
                            } else {
                                pending = Some((e, Instant::now()));
                            }
                        }
                        Err(mpsc::TryRecvError::Disconnected) => return,
                        Err(mpsc::TryRecvError::Empty) => {}
                    }
                }
                let mut fds = [PollFd::new(inotify.as_fd(), PollFlags::POLLIN)];
                let _ = poll(&mut fds, PollTimeout::from(2u8));
                let mut wrote = false;
                if let Ok(events) = inotify.read_events() {
                    for ev in events {
                        if ev.name.as_deref() != Some(name.as_os_str()) {
                            continue;
                        }
                        // a rename onto the file counts once: the temp file's descriptor,
                        // closed after the rename, reports IN_CLOSE_WRITE under the new name
                        let moved = ev.mask.contains(AddWatchFlags::IN_MOVED_TO);
                        if moved || !after_move {
                            counter.fetch_add(1, Ordering::AcqRel);
                        }
                        after_move = moved;
                        wrote = true;
                    }
                }
                let now = Instant::now();
                if let Some((e, since)) = pending.take() {
                    if wrote && contains(&e.needle) {
                        let _ = e.reply.send(Some(now));
                    } else if now - since > e.timeout {
                        let _ = e.reply.send(None);
                    } else {
                        pending = Some((e, since));
                    }
                }
            }
        });
        Ok(Self { tx, writes })
    }

    fn expect(&self, needle: String, timeout: Duration) -> oneshot::Receiver<Option<Instant>> {
        let (reply, rx) = oneshot::channel();
        let _ = self.tx.send(Expectation {
            needle,
            timeout,
            reply,
        });
        rx
    }

    fn writes(&self) -> u64 {
        self.writes.load(Ordering::Acquire)
    }
}

fn line(ip: Ipv4Addr, name: &str) -> String {
    format!("\n{ip}\t{name}\n")
}

pub async fn run(args: Args) -> Result<()> {
    let client = connect(&args.zk).await?;
    let zone_path = format!("{}/zones/{}", args.root, args.zone);
    let mut ips = Addresses::new(Ipv4Addr::new(10, 220, 0, 0));
    // names for single changes, and one name per change of a burst; all there before the start
    let single = |j: usize| format!("hs{j}");
    let burst = |k: usize| format!("hb{k}");
    let mut last = (Ipv4Addr::UNSPECIFIED, String::new());
    for rel in (0..20).map(single).chain((0..args.burst_size).map(burst)) {
        let ip = ips.next();
        put(&client, &format!("{zone_path}/{rel}"), &a_record(ip)).await?;
        last = (ip, format!("{rel}.{}", args.zone));
    }
    let watch = FileWatch::start(&args.file)?;
    let first = watch.expect(line(last.0, &last.1), Duration::from_secs(120));
    let t0 = Instant::now();
    let _writer = Child::spawn(&args.cmd, &args.log)?;
    let Some(at) = first.await.ok().flatten() else {
        bail!("{} never held {} {}", args.file.display(), last.0, last.1);
    };
    println!(
        "hosts: first block written {:.0} ms after start",
        ms(at - t0)
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut rows = Vec::new();
    let mut latencies = Vec::new();
    let mut writes_per_change = Vec::new();
    for k in 0..args.changes {
        let rel = single(k % 20);
        let name = format!("{rel}.{}", args.zone);
        let ip = ips.next();
        let before = watch.writes();
        let seen = watch.expect(line(ip, &name), Duration::from_secs(10));
        let t0 = Instant::now();
        client
            .set_data(&format!("{zone_path}/{rel}"), &a_record(ip), None)
            .await?;
        let Some(at) = seen.await.ok().flatten() else {
            bail!("change {k} ({name} {ip}) never reached the file");
        };
        latencies.push(ms(at - t0));
        writes_per_change.push((watch.writes() - before) as f64);
        rows.push(vec![
            "change".into(),
            k.to_string(),
            format!("{:.3}", ms(at - t0)),
            (watch.writes() - before).to_string(),
        ]);
    }
    println!("hosts: change → file rewritten: {}", summary(&latencies));

    for b in 1..=args.bursts {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before = watch.writes();
        let n = args.burst_size;
        let new: Vec<Ipv4Addr> = (0..n).map(|_| ips.next()).collect();
        let last_line = line(new[n - 1], &format!("{}.{}", burst(n - 1), args.zone));
        let seen = watch.expect(last_line, Duration::from_secs(30));
        let t0 = Instant::now();
        // one change every millisecond, not waiting for each (requests pipeline)
        let mut acks = Vec::with_capacity(n);
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        for (k, ip) in new.iter().enumerate() {
            tick.tick().await;
            acks.push(client.set_data(&format!("{zone_path}/{}", burst(k)), &a_record(*ip), None));
        }
        let issued = t0.elapsed();
        let last_sent = Instant::now();
        for a in acks {
            a.await?;
        }
        let Some(at) = seen.await.ok().flatten() else {
            bail!("burst {b}: its last change never reached the file");
        };
        // writes still under way count too: wait for a quiet second
        let mut count = watch.writes();
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = watch.writes();
            if now == count {
                break;
            }
            count = now;
        }
        let writes = count - before;
        println!(
            "hosts: burst {b}: {n} changes over {:.0} ms → {writes} file writes; last change in the file {:.0} ms after it was sent",
            ms(issued),
            ms(at.saturating_duration_since(last_sent))
        );
        rows.push(vec![
            "burst".into(),
            b.to_string(),
            writes.to_string(),
            format!("{:.1}", ms(issued)),
            format!("{:.1}", ms(at.saturating_duration_since(last_sent))),
        ]);
    }
    append(&args.out, &rows)
}
