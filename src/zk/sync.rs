//! The only writer of the map, in three steps per ZooKeeper session, as a watch with resync
//! is written: [`MapSync::watch_and_read`] sets one persistent recursive watch on
//! `<root>/zones` and then reads the whole subtree (the watch first, so that no change falls
//! between the two), retrying until both succeed; [`MapSync::follow_events`] then re-reads just
//! the nodes that events name. Events are lost while the client reconnects (ZOOKEEPER-4698), so
//! a reconnect goes back to the first step, where the watch is set again and the map caught up
//! with what changed since the connection was lost ([`crate::zk::catchup`]): a few small
//! requests when nothing did; only what the stats cannot tell needs a full read. Either waits a
//! random part of `--resync-jitter`, the watch already set and its events applied, so that a
//! fleet of stubs moved by one server's failure spreads its requests. An expired session gets
//! a new client and a full read. A full read every `--full-read-every` (jittered)
//! picks up what plain ZooKeeper clients changed, unmarked, while a stub was away. The last good
//! map keeps serving throughout (stale until caught up).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::join_all;
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use zookeeper_client::{AddWatchMode, Client, EventType, PersistentWatcher, SessionState};

use crate::metrics::{Counters, Metrics};
use crate::store::Store;
use crate::zk::catchup::{self, Cost, Listed, Outcome};
use crate::zk::layout::{Layout, NodePath};
use crate::zk::tree::{Applied, NodeState, Tree};
use crate::zk::{BACKOFF_MIN, ZkConfig, ZkError, close, connect_retrying, zone};

/// How a session ended.
enum End {
    Cancelled,
    /// Expired, closed or auth failed: a new client is needed.
    Terminal(SessionState),
}

/// Where following the events of a session led.
enum Followed {
    /// The map may have missed changes (a reconnect, a failed re-read): watch and read again.
    Reread,
    /// The time given ran out (the wait before a full read).
    Due,
    Ended(End),
}

/// Why re-reading the nodes that events named did not work; a full read repairs either.
#[derive(Debug, Error)]
enum RefreshError {
    #[error(transparent)]
    Read(#[from] ZkError),
    #[error("{0} changed the zone layout")]
    Layout(String),
}

/// How full reads are paced.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pacing {
    /// The longest wait before catching up (or a full read) after a reconnect or a new
    /// session, but the first read: the stubs a server's failure moves (or a leader election,
    /// or a rolling restart) spread their requests over it instead of sending them at once.
    /// Changes that happen meanwhile are applied as they come, the watch being set first; only
    /// those made while disconnected wait.
    pub jitter: Duration,
    /// A full read every this long (each interval a random 75–125 % of it; zero: never),
    /// besides those after an expiry or a reconnect the stats cannot explain: what a plain
    /// ZooKeeper client changed, unmarked, while this stub was disconnected shows at the
    /// latest then.
    pub full_read_every: Duration,
}

/// Keeps a [`Store`] equal to the zones subtree in ZooKeeper.
pub struct MapSync {
    config: ZkConfig,
    layout: Layout,
    store: Store,
    tree: Tree,
    metrics: Arc<Metrics>,
    /// The longest wait before the full read that follows a reconnect.
    jitter: Duration,
    /// Whether the map may miss changes: from a lost connection until caught up.
    behind: bool,
    /// The zxid up to which the map held everything when the connection was first lost since
    /// it was last caught up, and whether it still does (false once a catch-up found that only
    /// a full read will do, until one is done).
    lost_at: Option<i64>,
    complete: bool,
    /// Nodes that events named but that were not read before the connection went.
    pending: BTreeMap<String, bool>,
    /// The names each zone's mark lists, between catch-ups.
    listed: HashMap<String, Listed>,
    /// How often a full read runs anyway (zero: never), and when the next one is due.
    full_read_every: Duration,
    next_full_read: Option<tokio::time::Instant>,
}

impl MapSync {
    pub fn new(config: ZkConfig, layout: Layout, tree: Tree, store: Store) -> Self {
        Self {
            config,
            layout,
            store,
            tree,
            metrics: Arc::default(),
            jitter: Duration::ZERO,
            behind: true,
            lost_at: None,
            complete: false,
            pending: BTreeMap::new(),
            listed: HashMap::new(),
            full_read_every: Duration::ZERO,
            next_full_read: None,
        }
    }

    /// How full reads are paced (see [`Pacing`]).
    pub fn with_pacing(mut self, pacing: Pacing) -> Self {
        self.jitter = pacing.jitter;
        self.full_read_every = pacing.full_read_every;
        self
    }

    /// The wait before the next full read: none before the map was ever read (there is
    /// nothing to serve meanwhile), else a uniformly random part of the jitter.
    fn resync_delay(&self) -> Duration {
        if !self.store.is_ready() || self.jitter.is_zero() {
            return Duration::ZERO;
        }
        self.jitter.mul_f64(rand::random::<f64>())
    }

    /// Counts sessions, reconnects, resyncs and bad znodes into `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Runs until `cancel` fires, then closes the session.
    pub async fn run(mut self, cancel: CancellationToken) {
        loop {
            let Some(client) = connect_retrying(
                &self.config,
                &cancel,
                "ZooKeeper unreachable; serving the last map and retrying",
            )
            .await
            else {
                return;
            };
            Counters::add(&self.metrics.counters.zk_sessions, 1);
            Counters::set(&self.metrics.counters.zk_connected, 1);
            match self.session(&client, &cancel).await {
                End::Cancelled => {
                    let session = client.session_id();
                    close(client).await;
                    Counters::set(&self.metrics.counters.zk_connected, 0);
                    info!(%session, "ZooKeeper session closed");
                    return;
                }
                End::Terminal(state) => {
                    self.behind = true;
                    self.store.set_connected(false);
                    Counters::set(&self.metrics.counters.zk_connected, 0);
                    Counters::add(&self.metrics.counters.zk_expirations, 1);
                    warn!(
                        ?state,
                        "ZooKeeper session ended; serving the last map while a new session starts"
                    );
                }
            }
        }
    }

    /// Follows one session: watch and full read, then events, and again after each reconnect.
    async fn session(&mut self, client: &Client, cancel: &CancellationToken) -> End {
        // the watcher being replaced stays until its successor exists (see `watch_and_read`)
        let mut _previous: Option<PersistentWatcher> = None;
        loop {
            let mut watcher = match self.watch_and_read(client, cancel).await {
                Ok(watcher) => watcher,
                Err(end) => return end,
            };
            loop {
                let due = self.next_full_read;
                match self.follow_events(client, &mut watcher, cancel, due).await {
                    Followed::Due => {
                        // the watch stays: what changes during the read follows as events
                        if let Err(e) = self.resync(client).await {
                            debug!(error = %chain(&e), "periodic full read failed; again after a reconnect");
                            self.next_full_read = None;
                            break;
                        }
                    }
                    Followed::Reread => break,
                    Followed::Ended(end) => return end,
                }
            }
            _previous = Some(watcher);
        }
    }

    /// Steps one and two: sets the watch, then reads everything into a new map, retrying (with
    /// a pause, or at once when the connection comes back) until both have succeeded.
    ///
    /// The watch is added again on every (re)connect. zookeeper-client 0.11.2 does not restore
    /// persistent watches after a reconnect (`resend_watches` in src/session/watch.rs computes
    /// `index.max(index)`, so the SetWatches2 it sends leaves the persistent list out), and the
    /// server forgets a connection's watches with it. The watcher it replaces is dropped only
    /// once the new one exists: with a new one on the same path, the client does not ask the
    /// server to remove the watch.
    async fn watch_and_read(
        &mut self,
        client: &Client,
        cancel: &CancellationToken,
    ) -> Result<PersistentWatcher, End> {
        let zones = self.layout.zones();
        // a read that fails while connected (e.g. an ACL) keeps failing: say so once
        let mut failure_logged = false;
        let due = tokio::time::Instant::now() + self.resync_delay();
        // the watcher being replaced stays until its successor exists (see above)
        let mut _previous: Option<PersistentWatcher> = None;
        loop {
            let pause = match client
                .watch(&zones, AddWatchMode::PersistentRecursive)
                .await
            {
                Ok(mut watcher) => {
                    // events flow again from here: what may be missing is what changed since
                    // the first loss
                    if let Some(z) = client.zxids().take_lost() {
                        self.lost_at.get_or_insert(z);
                    }
                    let wait = due.saturating_duration_since(tokio::time::Instant::now());
                    if !wait.is_zero() {
                        info!(
                            wait_ms = wait.as_millis() as u64,
                            "re-reading what changed in {} ms (--resync-jitter); applying \
                             changes meanwhile",
                            wait.as_millis()
                        );
                        match self
                            .follow_events(client, &mut watcher, cancel, Some(due))
                            .await
                        {
                            Followed::Due => {}
                            // connected again: the watch is to be set again
                            Followed::Reread => {
                                _previous = Some(watcher);
                                continue;
                            }
                            Followed::Ended(end) => return Err(end),
                        }
                    }
                    match self.try_catch_up(client).await {
                        Ok(true) => return Ok(watcher),
                        Ok(false) => {}
                        Err(e) if client.state() == SessionState::SyncConnected => {
                            // not the connection: a full read is what is left
                            warn!(error = %chain(&e), "cannot catch up with ZooKeeper; reading the zones in full");
                            self.complete = false;
                        }
                        Err(e) => {
                            debug!(error = %chain(&e), "catching up failed; retrying");
                            self.pause(client, BACKOFF_MIN, cancel).await?;
                            _previous = Some(watcher);
                            continue;
                        }
                    }
                    match self.resync(client).await {
                        Ok(()) => return Ok(watcher),
                        Err(e) => {
                            if client.state() == SessionState::SyncConnected && !failure_logged {
                                failure_logged = true;
                                warn!(error = %chain(&e), "cannot read the zones from ZooKeeper; retrying");
                            } else {
                                debug!(error = %chain(&e), "full read failed; retrying");
                            }
                            BACKOFF_MIN * 5
                        }
                    }
                }
                Err(zookeeper_client::Error::SessionExpired) => {
                    return Err(End::Terminal(SessionState::Expired));
                }
                Err(e) => {
                    debug!(error = %e, "cannot set the watch yet");
                    BACKOFF_MIN
                }
            };
            self.pause(client, pause, cancel).await?;
        }
    }

    /// Catches the map up after a reconnect if it can (see [`catchup`]): `Ok(false)` when a
    /// full read is needed (no map yet, a new session, or a change only a full read tells).
    async fn try_catch_up(&mut self, client: &Client) -> Result<bool, RefreshError> {
        let Some(lost) = self.lost_at else {
            return Ok(false);
        };
        if !self.complete || !self.store.is_ready() {
            return Ok(false);
        }
        let started = Instant::now();
        let mut cost = Cost::default();
        let outcome = catchup::catch_up(
            client,
            &self.layout,
            &mut self.tree,
            lost,
            &mut self.listed,
            &mut cost,
        )
        .await;
        let metrics = self.metrics.clone();
        let c = &metrics.counters;
        Counters::add(&c.zk_catchup_requests, cost.requests);
        Counters::add(&c.zk_catchup_data_reads, cost.data_reads);
        let changed = match outcome? {
            Outcome::Done { changed } => changed,
            Outcome::Full(why) => {
                info!(reason = %why, "a full read is needed to catch up: {why}");
                self.complete = false;
                return Ok(false);
            }
        };
        // what events named before the connection went, and was not read
        let pending = std::mem::take(&mut self.pending);
        if !pending.is_empty() {
            let kept = pending.clone();
            if let Err(e) = self.refresh(client, pending).await {
                self.pending = kept;
                return Err(e);
            }
        }
        self.lost_at = None;
        self.behind = false;
        let snapshot = self.tree.snapshot();
        self.store.publish(snapshot);
        Counters::add(&c.zk_catchups, 1);
        Counters::set(&c.bad_znodes, self.tree.bad_nodes() as u64);
        info!(
            requests = cost.requests,
            data_reads = cost.data_reads,
            changed,
            "caught up with ZooKeeper in {} ms: {changed} node(s) changed while disconnected, \
             {} request(s), {} node(s) read",
            started.elapsed().as_millis(),
            cost.requests,
            cost.data_reads
        );
        Ok(true)
    }

    /// Waits `pause` before the next attempt, or less if the connection comes back meanwhile;
    /// a session that ends or a cancellation ends the wait and the session.
    async fn pause(
        &mut self,
        client: &Client,
        pause: std::time::Duration,
        cancel: &CancellationToken,
    ) -> Result<(), End> {
        let mut states = client.state_watcher();
        let deadline = tokio::time::Instant::now() + pause;
        loop {
            if client.state().is_terminated() {
                return Err(End::Terminal(client.state()));
            }
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => return Ok(()),
                state = states.changed() => match state {
                    SessionState::Disconnected => self.connection_lost(),
                    SessionState::SyncConnected | SessionState::ConnectedReadOnly => {
                        self.connection_back();
                        return Ok(());
                    }
                    _ => {}
                },
                () = cancel.cancelled() => return Err(End::Cancelled),
            }
        }
    }

    /// Step three: applies the events of `watcher` (a burst at once, each node re-read once)
    /// until the session ends, or something may have been missed and the map is read again.
    async fn follow_events(
        &mut self,
        client: &Client,
        watcher: &mut PersistentWatcher,
        cancel: &CancellationToken,
        until: Option<tokio::time::Instant>,
    ) -> Followed {
        let never = std::future::pending::<()>();
        tokio::pin!(never);
        loop {
            let due = async {
                match until {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => (&mut never).await,
                }
            };
            let first = tokio::select! {
                ev = watcher.changed() => ev,
                () = due => return Followed::Due,
                () = cancel.cancelled() => return Followed::Ended(End::Cancelled),
            };
            // path → whether its last event was a deletion
            let mut paths = BTreeMap::new();
            let mut event = Some(first);
            while let Some(ev) = event.take() {
                if ev.event_type == EventType::Session {
                    match ev.session_state {
                        SessionState::Disconnected => self.connection_lost(),
                        SessionState::SyncConnected | SessionState::ConnectedReadOnly => {
                            // what happened while away is caught up; what was named before
                            // is read with it
                            self.connection_back();
                            self.pending.extend(paths);
                            return Followed::Reread;
                        }
                        state if state.is_terminated() => {
                            return Followed::Ended(End::Terminal(state));
                        }
                        _ => {}
                    }
                } else {
                    let deleted = ev.event_type == EventType::NodeDeleted;
                    paths.insert(ev.path, deleted);
                }
                // take whatever else is already queued, without waiting
                event = watcher.changed().now_or_never();
            }
            if paths.is_empty() {
                continue;
            }
            let kept = paths.clone();
            if let Err(e) = self.refresh(client, paths).await {
                self.pending.extend(kept);
                if client.state().is_terminated() {
                    return Followed::Ended(End::Terminal(client.state()));
                }
                debug!(error = %chain(&e), "re-reading changed nodes failed; catching up");
                return Followed::Reread;
            }
        }
    }

    fn connection_lost(&mut self) {
        self.behind = true;
        self.store.set_connected(false);
        Counters::set(&self.metrics.counters.zk_connected, 0);
        warn!("ZooKeeper connection lost; serving the last map (stale)");
    }

    fn connection_back(&self) {
        info!("ZooKeeper connection back; catching up");
        Counters::add(&self.metrics.counters.zk_reconnects, 1);
        Counters::set(&self.metrics.counters.zk_connected, 1);
    }

    /// Reads the whole subtree (the zones this stub serves) and replaces the map with it.
    async fn resync(&mut self, client: &Client) -> Result<(), ZkError> {
        let started = Instant::now();
        // keeps the filter, and the memory of bad nodes already reported
        let mut tree = self.tree.fresh();
        let zones: Vec<String> = zone::zone_names(client, &self.layout)
            .await?
            .into_iter()
            .filter(|z| tree.wants_zone(z))
            .collect();
        let layout = &self.layout;
        zone::read_subtree(client, layout, &zones, true, |found| {
            tree.apply(
                layout,
                found.path,
                Some(&NodeState::read(found.data, &found.stat)),
            );
        })
        .await?;
        tree.shrink_to_fit();
        self.tree = tree;
        self.behind = false;
        self.complete = true;
        self.lost_at = None;
        self.pending.clear();
        self.next_full_read = (!self.full_read_every.is_zero()).then(|| {
            tokio::time::Instant::now()
                + self
                    .full_read_every
                    .mul_f64(0.75 + rand::random::<f64>() / 2.0)
        });
        // hundreds of ms at 100k names: off the runtime's one worker, so TCP and forwarded
        // queries keep being answered meanwhile
        let snapshot = off_the_worker(|| self.tree.snapshot());
        let (names, map_bytes) = (snapshot.names, snapshot.heap_bytes());
        self.store.publish(snapshot);
        crate::sys::release_free_memory();
        let c = &self.metrics.counters;
        Counters::add(&c.zk_resyncs, 1);
        Counters::set(&c.zk_last_resync_ms, started.elapsed().as_millis() as u64);
        Counters::set(&c.bad_znodes, self.tree.bad_nodes() as u64);
        info!(
            zones = self.tree.zone_count(),
            names,
            bad = self.tree.bad_nodes(),
            map_bytes,
            "resynced {names} names in {} ms",
            started.elapsed().as_millis()
        );
        Ok(())
    }

    /// Applies one node's state to the tree: whether the map changed, or an error when the
    /// change needs a full read.
    fn apply(&mut self, path: &str, state: Option<&NodeState>) -> Result<bool, RefreshError> {
        match self.tree.apply(&self.layout, path, state) {
            Applied::Unchanged => Ok(false),
            Applied::Changed => Ok(true),
            Applied::Resync => Err(RefreshError::Layout(path.to_string())),
        }
    }

    /// Re-reads the nodes that events named (and any ancestor not known yet), applies them,
    /// and publishes a new snapshot if anything changed.
    async fn refresh(
        &mut self,
        client: &Client,
        paths: BTreeMap<String, bool>,
    ) -> Result<(), RefreshError> {
        // a node whose last event deleted it is gone: nothing to read (the round trip saved
        // is most of what a delete takes to reach DNS); children before parents
        let mut changed = false;
        let mut deleted: Vec<&String> = paths.iter().filter(|(_, d)| **d).map(|(p, _)| p).collect();
        deleted.sort_by_key(|p| std::cmp::Reverse(p.matches('/').count()));
        for path in deleted {
            changed |= self.apply(path, None)?;
        }
        let mut wanted: BTreeSet<(usize, String)> = BTreeSet::new();
        for path in paths.into_iter().filter(|(_, d)| !d).map(|(p, _)| p) {
            match self.layout.classify(&path) {
                NodePath::Zones => {
                    wanted.insert((0, path));
                }
                NodePath::Zone(z) => {
                    if self.tree.wants_zone(z) {
                        wanted.insert((1, path));
                    }
                }
                NodePath::Set(z, _) => {
                    if !self.tree.wants_zone(z) {
                        continue;
                    }
                    if !self.tree.has_zone(z) {
                        wanted.insert((1, self.layout.zone(z)));
                    }
                    wanted.insert((2, path));
                }
                NodePath::Member(z, n, _) => {
                    if !self.tree.wants_zone(z) {
                        continue;
                    }
                    if !self.tree.has_zone(z) {
                        wanted.insert((1, self.layout.zone(z)));
                    }
                    if !self.tree.has_set(z, n) {
                        wanted.insert((2, self.layout.set(z, n)));
                    }
                    wanted.insert((3, path));
                }
                NodePath::Other => {}
            }
        }
        // requests are sent in call order and pipelined on the one connection
        let reads: Vec<_> = wanted.iter().map(|(_, p)| client.get_data(p)).collect();
        let results = join_all(reads).await;
        for ((_, path), result) in wanted.iter().zip(results) {
            let state = match result {
                Ok((data, stat)) => Some(NodeState::read(data, &stat)),
                Err(zookeeper_client::Error::NoNode) => None,
                Err(e) => return Err(ZkError::request(path)(e).into()),
            };
            changed |= self.apply(path, state.as_ref())?;
        }
        if changed {
            let snapshot = self.tree.snapshot();
            if self.behind {
                self.store.publish_behind(snapshot);
            } else {
                self.store.publish(snapshot);
            }
            Counters::set(
                &self.metrics.counters.bad_znodes,
                self.tree.bad_nodes() as u64,
            );
        } else if !self.behind {
            self.store.set_connected(true);
        }
        Ok(())
    }
}

/// An error with its causes, for a log line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Runs `f` in `block_in_place` where the runtime allows it (multi-threaded), else in place.
fn off_the_worker<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}
