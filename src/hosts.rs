//! `zkdns hosts`: keeps the block between `# BEGIN zkdns` and `# END zkdns` of a hosts file
//! equal to the A/AAAA names of the map, fed by the same watch and resync as `serve` ([`Sync`]
//! into a [`Store`]). [`render`] (pure) rewrites only that block; [`replace_file`] swaps the
//! file in with a rename, or rewrites it in place where it is a bind mount (Docker's
//! /etc/hosts), where a rename cannot work.

use std::collections::HashSet;
use std::io::{self, Write as _};
use std::net::IpAddr;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use thiserror::Error;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::cli::{GlobalArgs, HostsArgs};
use crate::error::{Failure, ResultExt};
use crate::exposition::Sources;
use crate::http::{self, Endpoints};
use crate::metrics::{Counters, Metrics};
use crate::store::{Snapshot, Store};
use crate::zk::sync::Sync;
use crate::zk::tree::Tree;
use crate::zk::{Layout, ZkConfig, sleep_until};

/// The line that opens the managed block.
pub const BEGIN: &str = "# BEGIN zkdns";
/// The line that closes it.
pub const END: &str = "# END zkdns";
/// A burst of changes is written once it has been quiet this long…
const QUIET: Duration = Duration::from_millis(50);
/// …or this long after its first change, whichever comes first.
const MAX_DELAY: Duration = Duration::from_millis(500);
/// How often the file is compared with the map even without changes: something else (Docker,
/// an editor) may have rewritten it.
const RECHECK: Duration = Duration::from_secs(10);
/// Longest host name a hosts line may carry (a DNS name without its root label).
const MAX_NAME: usize = 253;

/// Why the markers of a file do not delimit one block; nothing is written then.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MarkerError {
    #[error("line {line}: \"# BEGIN zkdns\" has no \"# END zkdns\" after it")]
    Unclosed { line: usize },
    #[error("line {line}: \"# END zkdns\" has no \"# BEGIN zkdns\" before it")]
    Unopened { line: usize },
    #[error("line {line}: a second \"# BEGIN zkdns\" before the block of line {first} ended")]
    Nested { first: usize, line: usize },
    #[error("line {line}: a second zkdns block (the first one begins on line {first})")]
    Second { first: usize, line: usize },
}

/// The new text of a hosts file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub text: Vec<u8>,
    /// Lines in the block.
    pub lines: usize,
    /// Names left out because they are not plain host names.
    pub rejected: Vec<String>,
}

/// One line of a text: `start..end` is its content (without `\n` or `\r\n`), `next` where the
/// next line starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Line {
    start: usize,
    end: usize,
    next: usize,
}

fn lines(text: &[u8]) -> impl Iterator<Item = Line> + '_ {
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= text.len() {
            return None;
        }
        let next = text[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(text.len(), |i| start + i + 1);
        let mut end = next;
        if end > start && text[end - 1] == b'\n' {
            end -= 1;
        }
        if end > start && text[end - 1] == b'\r' {
            end -= 1;
        }
        let line = Line { start, end, next };
        start = next;
        Some(line)
    })
}

fn is_marker(content: &[u8], marker: &str) -> bool {
    content.trim_ascii() == marker.as_bytes()
}

/// The managed block's BEGIN and END lines, if the file has one; an error if its markers are
/// not exactly one BEGIN followed by one END.
fn find_block(text: &[u8]) -> Result<Option<(Line, Line)>, MarkerError> {
    let mut open: Option<(usize, Line)> = None;
    let mut block: Option<(usize, Line, Line)> = None;
    for (i, line) in lines(text).enumerate() {
        let number = i + 1;
        let content = &text[line.start..line.end];
        if is_marker(content, BEGIN) {
            if let Some((first, _)) = open {
                return Err(MarkerError::Nested {
                    first,
                    line: number,
                });
            }
            if let Some((first, _, _)) = block {
                return Err(MarkerError::Second {
                    first,
                    line: number,
                });
            }
            open = Some((number, line));
        } else if is_marker(content, END) {
            match open.take() {
                Some((first, begin)) => block = Some((first, begin, line)),
                None => return Err(MarkerError::Unopened { line: number }),
            }
        }
    }
    if let Some((line, _)) = open {
        return Err(MarkerError::Unclosed { line });
    }
    Ok(block.map(|(_, begin, end)| (begin, end)))
}

/// Whether `name` can go on a hosts line as is: dot-separated labels of letters, digits,
/// `-` and `_`, no empty label, no label starting or ending with `-`. Nothing else (no
/// whitespace, no `#`, no control character) can then reach the file.
pub fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Rewrites the managed block of `existing` to hold one `IP<TAB>name` line per address of
/// `entries`, sorted by name then address. Every byte outside the block stays as it was; a
/// file without a block gets one appended. The block's lines end like the file's (`\r\n` when
/// the file uses it). Names that are not plain host names are left out and listed.
pub fn render(existing: &[u8], entries: &[(String, Vec<IpAddr>)]) -> Result<Rendered, MarkerError> {
    let block = find_block(existing)?;
    let eol: &[u8] = match block {
        Some((begin, _)) => &existing[begin.end..begin.next],
        None => lines(existing)
            .next()
            .map(|l| &existing[l.end..l.next])
            .filter(|t| !t.is_empty() && *t != b"\r")
            .unwrap_or(b"\n"),
    };
    let mut pairs: Vec<(&str, IpAddr)> = Vec::new();
    let mut rejected = Vec::new();
    for (name, addrs) in entries {
        if is_host_name(name) {
            pairs.extend(addrs.iter().map(|a| (name.as_str(), *a)));
        } else {
            rejected.push(name.clone());
        }
    }
    pairs.sort();
    pairs.dedup();

    let mut body = Vec::with_capacity(pairs.len() * 32 + 32);
    body.extend_from_slice(BEGIN.as_bytes());
    body.extend_from_slice(eol);
    for (name, addr) in &pairs {
        body.extend_from_slice(addr.to_string().as_bytes());
        body.push(b'\t');
        body.extend_from_slice(name.as_bytes());
        body.extend_from_slice(eol);
    }
    body.extend_from_slice(END.as_bytes());

    let mut text = Vec::with_capacity(existing.len() + body.len() + 2);
    match block {
        Some((begin, end)) => {
            text.extend_from_slice(&existing[..begin.start]);
            text.extend_from_slice(&body);
            text.extend_from_slice(&existing[end.end..]);
        }
        None => {
            text.extend_from_slice(existing);
            if !existing.is_empty() && !existing.ends_with(b"\n") {
                text.extend_from_slice(eol);
            }
            text.extend_from_slice(&body);
            text.extend_from_slice(eol);
        }
    }
    Ok(Rendered {
        text,
        lines: pairs.len(),
        rejected,
    })
}

/// How [`replace_file`] put the new contents in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// A temp file in the same directory, renamed over the file: readers see the old or the
    /// new file, never a mix.
    Renamed,
    /// Rewritten in place, because the file could not be replaced (a bind mount).
    InPlace,
}

impl std::fmt::Display for WriteMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WriteMode::Renamed => "renamed into place",
            WriteMode::InPlace => "rewritten in place",
        })
    }
}

/// A failed attempt at the rename path: either it cannot work for this file and the in-place
/// write should be used, or it failed for real.
enum RenameError {
    Fallback(io::Error),
    Fatal(io::Error),
}

fn fallback_on(kinds: &[io::ErrorKind]) -> impl Fn(io::Error) -> RenameError + '_ {
    move |e| {
        if kinds.contains(&e.kind()) {
            RenameError::Fallback(e)
        } else {
            RenameError::Fatal(e)
        }
    }
}

/// Replaces the contents of `path`: written to a temp file in the same directory (with the
/// file's mode and owner), fsynced and renamed over it. Where the rename cannot work (a bind
/// mount: EBUSY or EXDEV; a directory we cannot write; an owner we cannot give the temp file)
/// the file is rewritten in place instead: written from the start without truncating, cut to
/// length, fsynced. A symlink is followed, so the link stays a link.
pub fn replace_file(path: &Path, contents: &[u8]) -> io::Result<WriteMode> {
    let target = match std::fs::canonicalize(path) {
        Ok(p) => p,
        Err(e) if e.kind() == io::ErrorKind::NotFound => path.to_path_buf(),
        Err(e) => return Err(e),
    };
    let meta = match std::fs::metadata(&target) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    match write_renamed(&target, meta.as_ref(), contents) {
        Ok(()) => Ok(WriteMode::Renamed),
        Err(RenameError::Fallback(e)) if meta.is_some() => {
            debug!(path = %target.display(), error = %e, "cannot replace the file; rewriting it in place");
            write_in_place(&target, contents)?;
            Ok(WriteMode::InPlace)
        }
        Err(RenameError::Fallback(e) | RenameError::Fatal(e)) => Err(e),
    }
}

fn write_renamed(
    target: &Path,
    meta: Option<&std::fs::Metadata>,
    contents: &[u8],
) -> Result<(), RenameError> {
    use io::ErrorKind::{CrossesDevices, PermissionDenied, ReadOnlyFilesystem, ResourceBusy};
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{file_name}.zkdns-{}.tmp", std::process::id()));
    let mode = meta.map_or(0o644, |m| m.mode() & 0o7777);
    // a temp file of ours left by a crash of a process with our pid
    let _ = std::fs::remove_file(&temp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&temp)
        .map_err(fallback_on(&[PermissionDenied, ReadOnlyFilesystem]))?;
    let result = (|| {
        // the umask may have cleared bits of the mode
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(RenameError::Fatal)?;
        if let Some(m) = meta {
            let own = file.metadata().map_err(RenameError::Fatal)?;
            if (own.uid(), own.gid()) != (m.uid(), m.gid()) {
                std::os::unix::fs::fchown(&file, Some(m.uid()), Some(m.gid()))
                    .map_err(fallback_on(&[PermissionDenied]))?;
            }
        }
        file.write_all(contents).map_err(RenameError::Fatal)?;
        file.sync_all().map_err(RenameError::Fatal)
    })()
    .and_then(|()| {
        // closed before the rename: a watcher of the target sees one close-after-write
        drop(file);
        std::fs::rename(&temp, target).map_err(fallback_on(&[ResourceBusy, CrossesDevices]))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
        return result;
    }
    // the rename itself is durable once the directory is
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn write_in_place(target: &Path, contents: &[u8]) -> io::Result<()> {
    // no O_TRUNC: a reader never sees an empty file, only (briefly) the new text followed by
    // the tail of the old one
    let mut file = std::fs::OpenOptions::new().write(true).open(target)?;
    file.write_all(contents)?;
    file.set_len(contents.len() as u64)?;
    file.sync_all()
}

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
    fn into_failure(self) -> Failure {
        match self {
            UpdateError::Markers { .. } => Failure::input(self),
            _ => Failure::runtime(self),
        }
    }
}

/// The hosts file being kept, and the names already reported as not writable.
struct HostsFile {
    path: PathBuf,
    warned: HashSet<String>,
    metrics: Arc<Metrics>,
}

impl HostsFile {
    fn new(path: PathBuf, metrics: Arc<Metrics>) -> Self {
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
    fn check(&self) -> Result<(), UpdateError> {
        let text = self.read()?;
        find_block(&text).map_err(|problem| self.markers(problem))?;
        Ok(())
    }

    fn markers(&self, problem: MarkerError) -> UpdateError {
        UpdateError::Markers {
            path: self.shown(),
            problem,
        }
    }

    /// Renders the snapshot into the file as it is now, and writes it if that changes it.
    fn update(&mut self, snapshot: &Snapshot) -> Result<(), UpdateError> {
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
async fn first_sync(
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
async fn follow(
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

/// Runs `zkdns hosts`.
pub async fn run(
    global: &GlobalArgs,
    args: HostsArgs,
    cancel: CancellationToken,
) -> Result<(), Failure> {
    let layout = Layout::new(&global.root).or_input()?;
    let zk = ZkConfig::from_global(global)?;
    let metrics = Arc::new(Metrics::new(0));
    let mut file = HostsFile::new(args.file.clone(), metrics.clone());
    file.check().map_err(UpdateError::into_failure)?;
    if args.once {
        // a one-shot must fail when ZooKeeper cannot be reached; the sync task below would
        // keep retrying quietly
        let probe = crate::zk::connect(&zk).await.or_runtime()?;
        crate::zk::close(probe).await;
    }
    let store = Store::new();
    let http_task = match args.metrics {
        Some(addr) => {
            let listener = http::bind(addr).await.or_runtime()?;
            let endpoints = Endpoints::new(Sources {
                metrics: metrics.clone(),
                store: store.clone(),
                upstreams: None,
            });
            Some(tokio::spawn(http::serve(
                listener,
                Arc::new(endpoints),
                cancel.clone(),
            )))
        }
        None => None,
    };
    let stop_sync = cancel.child_token();
    let session_timeout = zk.session_timeout;
    let sync = tokio::spawn(
        Sync::new(zk, layout, Tree::for_zones(&args.zones), store.clone())
            .with_metrics(metrics)
            .run(stop_sync.clone()),
    );
    let result = if args.once {
        let mut changes = store.subscribe();
        // the probe just connected: this only bounds a read that never completes
        let wait = session_timeout * 2 + Duration::from_secs(30);
        if first_sync(&store, &mut changes, &cancel, Some(Instant::now() + wait)).await {
            file.update(&store.load())
                .map_err(UpdateError::into_failure)
        } else if cancel.is_cancelled() {
            Ok(())
        } else {
            Err(Failure::runtime(anyhow!(
                "no complete read of ZooKeeper at {} within {wait:?}",
                global.zk
            )))
        }
    } else {
        follow(&mut file, &store, &cancel).await
    };
    stop_sync.cancel();
    let _ = sync.await;
    if let Some(task) = http_task {
        cancel.cancel();
        let _ = task.await;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn entries(list: &[(&str, &[&str])]) -> Vec<(String, Vec<IpAddr>)> {
        list.iter()
            .map(|(n, a)| (n.to_string(), a.iter().map(|s| ip(s)).collect()))
            .collect()
    }

    fn text(r: Result<Rendered, MarkerError>) -> String {
        String::from_utf8(r.unwrap().text).unwrap()
    }

    #[test]
    fn appends_a_block_to_a_file_without_one() {
        let e = entries(&[
            ("web.c.test", &["10.0.0.6", "10.0.0.5"]),
            ("api.c.test", &["fd00::1"]),
        ]);
        assert_eq!(
            text(render(b"127.0.0.1\tlocalhost\n", &e)),
            "127.0.0.1\tlocalhost\n# BEGIN zkdns\nfd00::1\tapi.c.test\n10.0.0.5\tweb.c.test\n\
             10.0.0.6\tweb.c.test\n# END zkdns\n"
        );
        // no newline at the end: one is added before the block, the user's line is untouched
        assert_eq!(
            text(render(b"127.0.0.1 localhost", &[])),
            "127.0.0.1 localhost\n# BEGIN zkdns\n# END zkdns\n"
        );
        assert_eq!(text(render(b"", &[])), "# BEGIN zkdns\n# END zkdns\n");
    }

    #[test]
    fn replaces_only_the_block() {
        let before = "a\n# BEGIN zkdns\n1.1.1.1\told\n# END zkdns\nb\n";
        let e = entries(&[("new.t", &["10.0.0.1"])]);
        assert_eq!(
            text(render(before.as_bytes(), &e)),
            "a\n# BEGIN zkdns\n10.0.0.1\tnew.t\n# END zkdns\nb\n"
        );
        // the END line's lack of a newline is outside the block and kept
        let before = "a\n  # BEGIN zkdns \n# END zkdns";
        assert_eq!(
            text(render(before.as_bytes(), &e)),
            "a\n# BEGIN zkdns\n10.0.0.1\tnew.t\n# END zkdns"
        );
    }

    #[test]
    fn crlf_files_keep_crlf() {
        let before = "127.0.0.1 localhost\r\n# BEGIN zkdns\r\n# END zkdns\r\nx\r\n";
        let e = entries(&[("w.t", &["10.0.0.1"])]);
        assert_eq!(
            text(render(before.as_bytes(), &e)),
            "127.0.0.1 localhost\r\n# BEGIN zkdns\r\n10.0.0.1\tw.t\r\n# END zkdns\r\nx\r\n"
        );
        assert_eq!(
            text(render(b"127.0.0.1 localhost\r\n", &e)),
            "127.0.0.1 localhost\r\n# BEGIN zkdns\r\n10.0.0.1\tw.t\r\n# END zkdns\r\n"
        );
    }

    #[test]
    fn malformed_markers_are_refused() {
        let cases: &[(&str, MarkerError)] = &[
            ("a\n# BEGIN zkdns\nb\n", MarkerError::Unclosed { line: 2 }),
            ("# END zkdns\n", MarkerError::Unopened { line: 1 }),
            (
                "# BEGIN zkdns\n# BEGIN zkdns\n# END zkdns\n",
                MarkerError::Nested { first: 1, line: 2 },
            ),
            (
                "# BEGIN zkdns\n# END zkdns\n# BEGIN zkdns\n# END zkdns\n",
                MarkerError::Second { first: 1, line: 3 },
            ),
            (
                "# BEGIN zkdns\n# END zkdns\n# END zkdns\n",
                MarkerError::Unopened { line: 3 },
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                render(input.as_bytes(), &[]).unwrap_err(),
                *want,
                "{input:?}"
            );
        }
        // a marker inside other text is just text
        assert!(render(b"# BEGIN zkdns please\n", &[]).is_ok());
    }

    #[test]
    fn crafted_names_never_reach_the_file() {
        let e = entries(&[
            ("evil\n10.6.6.6 bank.example", &["10.0.0.1"]),
            ("# END zkdns", &["10.0.0.2"]),
            ("a b", &["10.0.0.3"]),
            ("tab\tname", &["10.0.0.4"]),
            ("-bad.t", &["10.0.0.5"]),
            ("a..b", &["10.0.0.6"]),
            ("ok_1.srv-x.t", &["10.0.0.7"]),
        ]);
        let r = render(b"", &e).unwrap();
        assert_eq!(
            String::from_utf8(r.text).unwrap(),
            "# BEGIN zkdns\n10.0.0.7\tok_1.srv-x.t\n# END zkdns\n"
        );
        assert_eq!(r.rejected.len(), 6);
        assert!(!is_host_name(&"a".repeat(64)));
        assert!(!is_host_name(&format!("{}.t", "a.".repeat(130))));
    }

    /// Lines of user text: anything but the markers, including `\r`, tabs, non-UTF-8 bytes.
    fn user_text() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            prop_oneof![
                Just(b"\n".to_vec()),
                Just(b"\r\n".to_vec()),
                Just(b"127.0.0.1 localhost".to_vec()),
                Just(b"# BEGIN zkdn".to_vec()),
                Just(b"# comment".to_vec()),
                Just(b"\t \xff\x00".to_vec()),
                proptest::collection::vec(any::<u8>(), 0..8),
            ],
            0..12,
        )
        .prop_map(|parts| parts.concat())
        .prop_filter("no markers", |t| find_block(t) == Ok(None))
    }

    fn any_entries() -> impl Strategy<Value = Vec<(String, Vec<IpAddr>)>> {
        proptest::collection::vec(
            (
                "[a-z0-9_ \\-\\.\n#]{1,12}",
                proptest::collection::vec(any::<IpAddr>(), 0..3),
            ),
            0..6,
        )
    }

    proptest! {
        /// Bytes before and after the block are kept exactly; the result renders to itself.
        #[test]
        fn outside_bytes_kept_and_idempotent(
            pre in user_text(),
            post in user_text(),
            old in any_entries(),
            new in any_entries(),
        ) {
            // a file with a block (made by a first render) between `pre` and `post`
            let mut prefix = pre.clone();
            if !prefix.is_empty() && !prefix.ends_with(b"\n") {
                prefix.push(b'\n');
            }
            let block = render(b"", &old).unwrap().text;
            let block = &block[..block.len() - 1]; // without its newline
            // the END line ends where `post` begins: with a line break, or at the end
            let mut post = post;
            if !post.is_empty() && !post.starts_with(b"\n") && !post.starts_with(b"\r\n") {
                post.insert(0, b'\n');
            }
            let file = [prefix.as_slice(), block, post.as_slice()].concat();
            let once = render(&file, &new).unwrap();
            prop_assert!(once.text.starts_with(&prefix));
            prop_assert!(once.text.ends_with(&post));
            let twice = render(&once.text, &new).unwrap();
            prop_assert_eq!(&twice.text, &once.text);
            // every line in the block is `IP<TAB>valid name`
            let rendered = String::from_utf8_lossy(&once.text[prefix.len()..once.text.len() - post.len()]).into_owned();
            for line in rendered.lines().filter(|l| !l.starts_with('#')) {
                let (addr, name) = line.split_once('\t').unwrap();
                prop_assert!(addr.parse::<IpAddr>().is_ok(), "{:?}", line);
                prop_assert!(is_host_name(name), "{:?}", line);
            }

            // without a block: the file is kept as its prefix, and the second render agrees
            let appended = render(&pre, &new).unwrap();
            prop_assert!(appended.text.starts_with(&pre));
            prop_assert_eq!(render(&appended.text, &new).unwrap().text, appended.text.clone());
        }
    }

    #[test]
    fn replace_file_renames_and_keeps_mode_and_owner() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let before = std::fs::metadata(&path).unwrap();
        assert_eq!(replace_file(&path, b"new").unwrap(), WriteMode::Renamed);
        let after = std::fs::metadata(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(after.mode() & 0o7777, 0o640);
        assert_eq!((after.uid(), after.gid()), (before.uid(), before.gid()));
        assert_ne!(after.ino(), before.ino(), "a rename gives a new inode");
        // nothing left behind
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn replace_file_follows_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        let link = dir.path().join("link");
        std::fs::write(&real, "old").unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        replace_file(&link, b"new").unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read(&real).unwrap(), b"new");
    }

    #[test]
    fn in_place_write_shrinks_and_keeps_the_inode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts");
        std::fs::write(&path, "a much longer old text\n").unwrap();
        let ino = std::fs::metadata(&path).unwrap().ino();
        write_in_place(&path, b"short\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"short\n");
        assert_eq!(std::fs::metadata(&path).unwrap().ino(), ino);
    }
}
