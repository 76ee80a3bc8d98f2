//! `zkdns import FILE…`: reads and checks every input before ZooKeeper is asked anything,
//! then brings each zone to it: the plan against what ZooKeeper holds, written in batched
//! multi-transactions (a progress bar for large imports), read again and re-planned when
//! someone else changed a node meanwhile. `--dry-run` prints the plan instead.

use std::io::IsTerminal as _;

use anyhow::anyhow;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use zookeeper_client::Client;

use crate::cli::{GlobalArgs, ImportArgs, ImportFormat};
use crate::error::{Failure, ResultExt};
use crate::names::ZoneName;
use crate::tooling::import::{
    BATCH_BYTES, BATCH_OPS, Batch, Counts, Source, batches, map_zone, plan, read_sources,
};
use crate::tooling::zonefile::ZoneContent;
use crate::zk::write::{self, CommitError};
use crate::zk::{Layout, ZkError, zone};

/// Times an import re-reads and retries after someone else changed a node it was writing.
const ATTEMPTS: usize = 3;

/// Imports with more writes than this show a progress bar (when stderr is a terminal).
const PROGRESS_MIN_OPS: usize = 1000;

/// Reads the input of `--from-znode`: a znode's data as text.
async fn read_znode(client: &Client, path: &str) -> Result<Source, Failure> {
    let name = format!("znode {path}");
    let data = match client.get_data(path).await {
        Ok((data, _)) => data,
        Err(zookeeper_client::Error::NoNode) => {
            return Err(Failure::input(anyhow!(
                "--from-znode {path}: there is no such znode"
            )));
        }
        Err(zookeeper_client::Error::BadArguments(why)) => {
            return Err(Failure::input(anyhow!(
                "--from-znode {path:?} is not a ZooKeeper path ({why})"
            )));
        }
        Err(e) => return Err(Failure::runtime(ZkError::request(path)(e))),
    };
    let text = String::from_utf8(data)
        .map_err(|_| Failure::input(anyhow!("{name}: its data is not UTF-8 text")))?;
    Ok(Source::new(name, text, None))
}

/// A progress bar on stderr for imports of more than [`PROGRESS_MIN_OPS`] writes, drawn only
/// when stderr is a terminal (hidden otherwise, so logs and pipes stay clean).
fn progress_bar(zone: &ZoneName, batches: &[Batch]) -> ProgressBar {
    let ops: usize = batches.iter().map(|b| b.ops.len()).sum();
    if ops <= PROGRESS_MIN_OPS || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template("{prefix}: [{bar:40}] {pos}/{len} writes, {eta} left")
        .expect("valid template")
        .progress_chars("=> ");
    ProgressBar::with_draw_target(Some(ops as u64), ProgressDrawTarget::stderr())
        .with_style(style)
        .with_prefix(zone.to_string())
}

/// Brings one zone in ZooKeeper to `content`; returns what changed.
async fn import_zone(
    client: &Client,
    layout: &Layout,
    content: &ZoneContent,
    args: &ImportArgs,
) -> Result<Counts, Failure> {
    let mut total = Counts::default();
    for attempt in 1..=ATTEMPTS {
        let parents = write::missing_parents(client, layout).await.or_runtime()?;
        let existing = zone::read_zone(client, layout, &content.zone, false)
            .await
            .or_runtime()?;
        let plan = plan(content, existing.as_ref(), parents, args.prune);
        for note in &plan.notes {
            eprintln!("zkdns: note: {note}");
        }
        if args.dry_run {
            print!("{}", plan.diff());
            return Ok(plan.counts());
        }
        let batches = batches(plan.units(layout), BATCH_OPS, BATCH_BYTES);
        let progress = progress_bar(&content.zone, &batches);
        let mut conflict = None;
        for batch in batches {
            match write::commit(client, layout, &batch.ops).await {
                Ok(()) => {
                    total.add(batch.counts);
                    progress.inc(batch.ops.len() as u64);
                }
                Err(CommitError::Other(e)) => {
                    progress.finish_and_clear();
                    return Err(Failure::runtime(e));
                }
                Err(CommitError::Conflict { path, source }) => {
                    conflict = Some((path, source));
                    break;
                }
            }
        }
        progress.finish_and_clear();
        let Some((path, e)) = conflict else {
            return Ok(total);
        };
        if attempt == ATTEMPTS {
            return Err(Failure::runtime(anyhow!(
                "{path} kept changing while importing ({e}); run the import again"
            )));
        }
        eprintln!("zkdns: note: {path} changed while importing ({e}); reading it again");
    }
    unreachable!("the last attempt returns")
}

/// Runs `zkdns import`.
pub async fn run(global: &GlobalArgs, args: ImportArgs) -> Result<(), Failure> {
    // a bad --root is reported before the files are read
    Layout::new(&global.root).or_input()?;
    let format = args.format.unwrap_or(match args.from_znode {
        Some(_) => ImportFormat::JsonMap,
        None => ImportFormat::Zone,
    });
    if format != ImportFormat::Zone {
        map_zone(format, args.zone.as_ref())?;
    }
    // files are read and checked before ZooKeeper is asked anything
    let from_files = match &args.from_znode {
        Some(_) => None,
        None => {
            let sources = args
                .files
                .iter()
                .map(|f| Source::file(f))
                .collect::<Result<Vec<_>, _>>()?;
            Some(read_sources(&sources, format, args.zone.as_ref())?)
        }
    };
    super::with_session(global, async |client, layout| {
        let zones = match (from_files, &args.from_znode) {
            (Some(zones), _) => zones,
            (None, Some(path)) => {
                let source = read_znode(client, path).await?;
                read_sources(&[source], format, args.zone.as_ref())?
            }
            (None, None) => unreachable!("files or --from-znode"),
        };
        for zone in &zones {
            for warning in &zone.warnings {
                eprintln!("zkdns: warning: {warning}");
            }
        }
        for content in &zones {
            let counts = import_zone(client, layout, content, &args).await?;
            let note = match (args.dry_run, counts.is_zero()) {
                (true, _) => " (dry run: nothing written)",
                (false, true) => " (unchanged)",
                (false, false) => "",
            };
            println!(
                "{}: {} created, {} updated, {} deleted{note}",
                content.zone, counts.created, counts.updated, counts.deleted
            );
        }
        Ok(())
    })
    .await
}
