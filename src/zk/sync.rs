//! The only writer of the map. One persistent recursive watch on `<root>/zones`, set before the
//! full read; each event re-reads just the node it names. Events can be lost while the client
//! reconnects (ZOOKEEPER-4698), so every reconnect is followed by a full re-read, and an expired
//! session by a new client and the same. The last good map keeps serving throughout (stale).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use futures_util::future::join_all;
use futures_util::{FutureExt, StreamExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use zookeeper_client::{
    AddWatchMode, Client, EventType, MultiReadResult, PersistentWatcher, SessionState,
};

use crate::metrics::{Counters, Metrics};
use crate::store::Store;
use crate::zk::layout::{Layout, NodePath};
use crate::zk::tree::{Applied, NodeState, Tree};
use crate::zk::{BACKOFF_MIN, ZkConfig, close, connect_retrying, sleep_until};

/// Operations per multiRead request in a full read: well below jute.maxbuffer for replies.
const READ_BATCH: usize = 1000;
/// multiRead requests of a full read in flight at once.
const READS_IN_FLIGHT: usize = 8;

/// How a session ended.
enum End {
    Cancelled,
    /// Expired, closed or auth failed: a new client is needed.
    Terminal(SessionState),
}

/// A read failed in a way that a later full read repairs.
#[derive(Debug)]
struct ReadError(zookeeper_client::Error);

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

fn node_state(data: Vec<u8>, stat: &zookeeper_client::Stat) -> NodeState {
    NodeState {
        data,
        mzxid: stat.mzxid,
        mtime: stat.mtime,
    }
}

/// Keeps a [`Store`] equal to the zones subtree in ZooKeeper.
pub struct Sync {
    config: ZkConfig,
    layout: Layout,
    store: Store,
    tree: Tree,
    metrics: Arc<Metrics>,
}

impl Sync {
    pub fn new(config: ZkConfig, layout: Layout, tree: Tree, store: Store) -> Self {
        Self {
            config,
            layout,
            store,
            tree,
            metrics: Arc::default(),
        }
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

    /// Follows one session: watch, full read, then events until the session ends.
    async fn session(&mut self, client: &Client, cancel: &CancellationToken) -> End {
        let zones = self.layout.zones();
        let mut watcher: Option<PersistentWatcher> = None;
        // The watch is (re-)added on every (re)connect, before the full read. zookeeper-client
        // 0.11.2 does not restore persistent watches after a reconnect (`resend_watches` in
        // src/session/watch.rs computes `index.max(index)`, so the SetWatches2 it sends leaves
        // the persistent list out), and the server forgets a connection's watches with it.
        let mut need_watch = true;
        let mut need_resync = true;
        let mut retry_at: Option<tokio::time::Instant> = None;
        // a read that fails while connected (e.g. an ACL) keeps failing: say so once
        let mut read_failure_logged = false;
        loop {
            if need_watch && retry_at.is_none() {
                match client
                    .watch(&zones, AddWatchMode::PersistentRecursive)
                    .await
                {
                    Ok(w) => {
                        // the old watcher goes only now: with a new one on the same path, the
                        // client does not ask the server to remove the watch
                        watcher = Some(w);
                        need_watch = false;
                    }
                    Err(zookeeper_client::Error::SessionExpired) => {
                        return End::Terminal(SessionState::Expired);
                    }
                    Err(e) => {
                        if is_terminal(client) {
                            return End::Terminal(client.state());
                        }
                        debug!(error = %e, "cannot set the watch yet");
                        retry_at = Some(tokio::time::Instant::now() + BACKOFF_MIN);
                    }
                }
            }
            if !need_watch && need_resync && retry_at.is_none() {
                match self.resync(client).await {
                    Ok(()) => need_resync = false,
                    Err(e) => {
                        if is_terminal(client) {
                            return End::Terminal(client.state());
                        }
                        if client.state() == SessionState::SyncConnected && !read_failure_logged {
                            read_failure_logged = true;
                            warn!(error = %e, "cannot read the zones from ZooKeeper; retrying");
                        } else {
                            debug!(error = %e, "full read failed; retrying");
                        }
                        retry_at = Some(tokio::time::Instant::now() + BACKOFF_MIN * 5);
                    }
                }
            }
            let Some(w) = watcher.as_mut() else {
                // no watch yet: nothing to listen to but the retry timer
                tokio::select! {
                    () = sleep_until(retry_at) => retry_at = None,
                    () = cancel.cancelled() => return End::Cancelled,
                }
                continue;
            };
            let first = tokio::select! {
                ev = w.changed() => ev,
                () = sleep_until(retry_at) => {
                    retry_at = None;
                    continue;
                }
                () = cancel.cancelled() => return End::Cancelled,
            };
            // path → whether its last event was a deletion
            let mut paths = BTreeMap::new();
            let mut event = Some(first);
            while let Some(ev) = event.take() {
                if ev.event_type == EventType::Session {
                    match ev.session_state {
                        SessionState::Disconnected => {
                            self.store.set_connected(false);
                            Counters::set(&self.metrics.counters.zk_connected, 0);
                            warn!("ZooKeeper connection lost; serving the last map (stale)");
                        }
                        SessionState::SyncConnected | SessionState::ConnectedReadOnly => {
                            info!("ZooKeeper connection back; re-reading the zones");
                            Counters::add(&self.metrics.counters.zk_reconnects, 1);
                            Counters::set(&self.metrics.counters.zk_connected, 1);
                            need_watch = true;
                            need_resync = true;
                            retry_at = None;
                        }
                        state if state.is_terminated() => return End::Terminal(state),
                        _ => {}
                    }
                } else {
                    let deleted = ev.event_type == EventType::NodeDeleted;
                    paths.insert(ev.path, deleted);
                }
                // take whatever else is already queued, without waiting
                event = w.changed().now_or_never();
            }
            if need_watch || need_resync {
                continue; // the full read covers these paths
            }
            if !paths.is_empty() {
                if let Err(e) = self.refresh(client, paths).await {
                    debug!(error = %e, "re-reading changed nodes failed; doing a full read");
                    need_resync = true;
                    if is_terminal(client) {
                        return End::Terminal(client.state());
                    }
                }
            }
        }
    }

    /// Reads the whole subtree and replaces the map with it.
    async fn resync(&mut self, client: &Client) -> Result<(), ReadError> {
        let started = Instant::now();
        let mut tree = full_read(client, &self.layout, &self.tree).await?;
        tree.shrink_to_fit();
        self.tree = tree;
        // hundreds of ms at 100k names: off the runtime's one worker, so TCP and forwarded
        // queries keep being answered meanwhile
        let snapshot = off_the_worker(|| self.tree.snapshot());
        let (names, map_bytes) = (snapshot.names, snapshot.heap_bytes());
        self.store.publish(snapshot);
        release_free_memory();
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
    fn apply(&mut self, path: &str, state: Option<&NodeState>) -> Result<bool, ReadError> {
        match self.tree.apply(&self.layout, path, state) {
            Applied::Unchanged => Ok(false),
            Applied::Changed => Ok(true),
            Applied::Resync => Err(ReadError(zookeeper_client::Error::UnexpectedError(
                format!("{path} changed the zone layout; reading everything again"),
            ))),
        }
    }

    /// Re-reads the nodes that events named (and any ancestor not known yet), applies them,
    /// and publishes a new snapshot if anything changed.
    async fn refresh(
        &mut self,
        client: &Client,
        paths: BTreeMap<String, bool>,
    ) -> Result<(), ReadError> {
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
                Ok((data, stat)) => Some(node_state(data, &stat)),
                Err(zookeeper_client::Error::NoNode) => None,
                Err(e) => return Err(ReadError(e)),
            };
            changed |= self.apply(path, state.as_ref())?;
        }
        if changed {
            self.store.publish(self.tree.snapshot());
            Counters::set(
                &self.metrics.counters.bad_znodes,
                self.tree.bad_nodes() as u64,
            );
        } else {
            self.store.set_connected(true);
        }
        Ok(())
    }
}

/// Runs `f` in `block_in_place` where the runtime allows it (multi-threaded), else in place.
fn off_the_worker<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Hands the heap that a full read used and freed back to the system: glibc keeps it
/// otherwise, and the stub would sit at its peak RSS (the old map, the new one and the reads).
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator's own arenas.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

fn is_terminal(client: &Client) -> bool {
    client.state().is_terminated()
}

enum Op<'a> {
    Data(&'a str),
    Children(&'a str),
}

/// Runs read operations in multiRead batches, a few batches in flight at once, handing each
/// result (with the index of its operation) to `each` as its batch completes: 100k results
/// are never all held at once.
async fn multi_read(
    client: &Client,
    ops: &[Op<'_>],
    mut each: impl FnMut(usize, MultiReadResult),
) -> Result<(), ReadError> {
    let mut batches = Vec::new();
    for chunk in ops.chunks(READ_BATCH) {
        let mut reader = client.new_multi_reader();
        for op in chunk {
            match op {
                Op::Data(p) => reader.add_get_data(p),
                Op::Children(p) => reader.add_get_children(p),
            }
            .map_err(ReadError)?;
        }
        // lazy: the request goes out when the stream below polls it
        batches.push(async move { reader.commit().await });
    }
    let mut results = futures_util::stream::iter(batches).buffered(READS_IN_FLIGHT);
    let mut index = 0;
    while let Some(batch) = results.next().await {
        for result in batch.map_err(ReadError)? {
            each(index, result);
            index += 1;
        }
    }
    Ok(())
}

/// Reads the whole zones subtree into a fresh tree (keeping `base`'s filter and the memory of
/// bad nodes already reported). Nodes that vanish mid-read are skipped; their events follow.
async fn full_read(client: &Client, layout: &Layout, base: &Tree) -> Result<Tree, ReadError> {
    let mut tree = base.fresh();
    let zones = match client.list_children(&layout.zones()).await {
        Ok(z) => z,
        Err(zookeeper_client::Error::NoNode) => Vec::new(),
        Err(e) => return Err(ReadError(e)),
    };
    let zone_paths: Vec<String> = zones
        .iter()
        .filter(|z| tree.wants_zone(z))
        .map(|z| layout.zone(z))
        .collect();
    let ops: Vec<Op> = zone_paths
        .iter()
        .flat_map(|p| [Op::Data(p), Op::Children(p)])
        .collect();
    let mut set_paths = Vec::new();
    let mut zone_data = None;
    multi_read(client, &ops, |i, result| match result {
        MultiReadResult::Data { data, stat } => zone_data = Some(node_state(data, &stat)),
        MultiReadResult::Children { children } => {
            let path = &zone_paths[i / 2];
            if let Some(state) = zone_data.take() {
                tree.apply(layout, path, Some(&state));
                set_paths.extend(children.iter().map(|c| format!("{path}/{c}")));
            }
        }
        MultiReadResult::Error { .. } => zone_data = None, // gone since the listing
        _ => {}
    })
    .await?;

    let ops: Vec<Op> = set_paths.iter().map(|p| Op::Data(p)).collect();
    let mut with_members = Vec::new();
    multi_read(client, &ops, |i, result| {
        if let MultiReadResult::Data { data, stat } = result {
            tree.apply(layout, &set_paths[i], Some(&node_state(data, &stat)));
            if stat.num_children > 0 {
                with_members.push(i);
            }
        }
    })
    .await?;

    let ops: Vec<Op> = with_members
        .iter()
        .map(|&i| Op::Children(&set_paths[i]))
        .collect();
    let mut member_paths = Vec::new();
    multi_read(client, &ops, |i, result| {
        if let MultiReadResult::Children { children } = result {
            let path = &set_paths[with_members[i]];
            member_paths.extend(children.iter().map(|c| format!("{path}/{c}")));
        }
    })
    .await?;
    let ops: Vec<Op> = member_paths.iter().map(|p| Op::Data(p)).collect();
    multi_read(client, &ops, |i, result| {
        if let MultiReadResult::Data { data, stat } = result {
            tree.apply(layout, &member_paths[i], Some(&node_state(data, &stat)));
        }
    })
    .await?;
    Ok(tree)
}
