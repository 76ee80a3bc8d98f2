//! Keeping a hosts file's block equal to the map: written after the first full read of
//! ZooKeeper, again whenever the map changes (a burst written once), and compared every
//! [`RECHECK`] in case something else rewrote the file. While ZooKeeper is away the block
//! stays as it is.

use std::collections::HashSet;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use thiserror::Error;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::error::Failure;
use crate::hosts::file::replace_file;
use crate::hosts::render::{MarkerError, check_markers, render};
use crate::metrics::{Counters, Metrics};
use crate::store::{Snapshot, Store};
use crate::zk::sleep_until;

/// A burst of changes is written once it has been quiet this long…
const QUIET: Duration = Duration::from_millis(50);
/// …or this long after its first change, whichever comes first.
const MAX_DELAY: Duration = Duration::from_millis(500);
/// How often the file is compared with the map even without changes: something else (Docker,
/// an editor) may have rewritten it.
const RECHECK: Duration = Duration::from_secs(10);

/// Why an update of the file did not happen.
#[derive(Debug, Error)]
pub enum UpdateError {
    // the problem is part of this message, not a `source` (which the error chain would
    // print a second time)
    #[error("{path}: {problem}; fix or remove the zkdns markers (nothing was written)")]
    Markers { path: String, problem: MarkerError },
    #[error("cannot read {path}")]
    Read {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: String,
        #[source]
        source: io::Error,
    },
}

impl UpdateError {
    pub fn into_failure(self) -> Failure {
        match self {
            UpdateError::Markers { .. } => Failure::input(self),
            _ => Failure::runtime(self),
        }
    }
}

/// The hosts file being kept, and the names already reported as not writable.
pub struct HostsFile {
    path: PathBuf,
    warned: HashSet<String>,
    metrics: Arc<Metrics>,
}

impl HostsFile {
    pub fn new(path: PathBuf, metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            path,
            warned: HashSet::new(),
        }
    }

    fn shown(&self) -> String {
        self.path.display().to_string()
    }

    fn read(&self) -> Result<Vec<u8>, UpdateError> {
        match std::fs::read(&self.path) {
            Ok(text) => Ok(text),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(source) => Err(UpdateError::Read {
                path: self.shown(),
                source,
            }),
        }
    }

    /// Checks that the file can be read and has well-formed markers, before any ZooKeeper work.
    pub fn check(&self) -> Result<(), UpdateError> {
        let text = self.read()?;
        check_markers(&text).map_err(|problem| self.markers(problem))?;
        Ok(())
    }

    fn markers(&self, problem: MarkerError) -> UpdateError {
        UpdateError::Markers {
            path: self.shown(),
            problem,
        }
    }

    /// Renders the snapshot into the file as it is now, and writes it if that changes it.
    pub fn update(&mut self, snapshot: &Snapshot) -> Result<(), UpdateError> {
        let existing = self.read()?;
        let rendered =
            render(&existing, &snapshot.addresses()).map_err(|problem| self.markers(problem))?;
        for name in rendered.rejected {
            if self.warned.insert(name.clone()) {
                warn!(name = ?name, "left out of the hosts file: not a plain host name");
            }
        }
        if rendered.text == existing {
            debug!(path = %self.path.display(), "hosts file already current");
            return Ok(());
        }
        let mode =
            replace_file(&self.path, &rendered.text).map_err(|source| UpdateError::Write {
                path: self.shown(),
                source,
            })?;
        Counters::add(&self.metrics.counters.hosts_writes, 1);
        info!(
            lines = rendered.lines,
            "wrote {} addresses to {} ({mode})",
            rendered.lines,
            self.path.display()
        );
        Ok(())
    }
}

/// Waits until the store holds a full read of ZooKeeper. `false` if cancelled or `deadline`
/// passed first.
pub async fn first_sync(
    store: &Store,
    changes: &mut watch::Receiver<u64>,
    cancel: &CancellationToken,
    deadline: Option<Instant>,
) -> bool {
    loop {
        if store.is_ready() {
            return true;
        }
        tokio::select! {
            r = changes.changed() => {
                if r.is_err() {
                    return store.is_ready();
                }
            }
            () = sleep_until(deadline) => return false,
            () = cancel.cancelled() => return false,
        }
    }
}

/// After a change: waits until no change came for [`QUIET`], or [`MAX_DELAY`] after the first,
/// so that a burst is written once. Returns early (true) when cancelled.
async fn settle(changes: &mut watch::Receiver<u64>, cancel: &CancellationToken) -> bool {
    let limit = Instant::now() + MAX_DELAY;
    loop {
        tokio::select! {
            r = changes.changed() => {
                if r.is_err() {
                    return false;
                }
            }
            () = tokio::time::sleep(QUIET) => return false,
            () = tokio::time::sleep_until(limit) => return false,
            () = cancel.cancelled() => return true,
        }
    }
}

/// Writes the file whenever the map changes, until cancelled.
pub async fn follow(
    file: &mut HostsFile,
    store: &Store,
    cancel: &CancellationToken,
) -> Result<(), Failure> {
    let mut changes = store.subscribe();
    // before the first full read the map says nothing about ZooKeeper: leave the file alone
    if !first_sync(store, &mut changes, cancel, None).await {
        return Ok(());
    }
    changes.borrow_and_update();
    // a file that is wrong from the start is a configuration error: say so and stop
    file.update(&store.load())
        .map_err(UpdateError::into_failure)?;
    let mut recheck = tokio::time::interval_at(Instant::now() + RECHECK, RECHECK);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_error: Option<String> = None;
    loop {
        let cancelled = tokio::select! {
            r = changes.changed() => {
                if r.is_err() {
                    return Ok(());
                }
                settle(&mut changes, cancel).await
            }
            _ = recheck.tick() => false,
            () = cancel.cancelled() => return Ok(()),
        };
        // the map is never emptied by a disconnect (the store keeps the last one), so writing
        // whatever it holds keeps the last block while ZooKeeper is away
        match file.update(&store.load()) {
            Ok(()) => last_error = None,
            Err(e) => {
                let text = format!("{:#}", anyhow!(e));
                if last_error.as_deref() != Some(text.as_str()) {
                    error!("{text}; trying again at the next change");
                    last_error = Some(text);
                }
            }
        }
        if cancelled {
            return Ok(());
        }
    }
}
