//! Catching up after a reconnect within a live session: what changed since the connection was
//! lost, found from ZooKeeper's stats and the zones' change marks ([`crate::zk::marks`]) and
//! read alone, instead of the whole tree.
//!
//! The client knows the zxid up to which the lost connection delivered every notification
//! (`Client::zxids`, patch 5 of vendor/zookeeper-client); a node whose stat is at or below it
//! is as the map has it. For each zone held this reads the stats of the zone, of its mark and
//! of the names listed there or holding members, then only what moved: the record sets a
//! mark's ring names, a zone whose names changed (listed, and the new names read), a name
//! whose data or members changed. When nothing changed that is a few small requests per zone
//! plus one per name with members. What neither tells (zones made or deleted, a zone without a
//! mark, a ring that no longer reaches back) sends the caller to a full read, which is right
//! for anything.

use std::collections::{HashMap, HashSet};

use futures_util::future::join_all;
use zookeeper_client::{Client, Stat};

use crate::zk::ZkError;
use crate::zk::layout::Layout;
use crate::zk::marks::{self, Since};
use crate::zk::tree::{Applied, NodeState, Tree};

/// Requests in flight at once: pipelined on the one connection, bounded so that a tree with
/// many names with members does not queue them all at once.
const IN_FLIGHT: usize = 256;

/// What catching up did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The map is current: these many nodes changed.
    Done { changed: usize },
    /// Only a full read can tell: why.
    Full(String),
}

/// What a catch-up cost.
#[derive(Debug, Default, Clone, Copy)]
pub struct Cost {
    pub requests: u64,
    /// Zones, record sets and members whose data was read.
    pub data_reads: u64,
}

/// The names a zone's mark lists, as of the mark's `pzxid`.
#[derive(Debug, Default, Clone)]
pub struct Listed {
    pzxid: i64,
    names: Vec<String>,
}

/// What catching up needs of a node's stat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeStat {
    /// Zxid of the node's creation.
    pub czxid: i64,
    /// Zxid of the last change to the node's data.
    pub mzxid: i64,
    /// Zxid of the last child made or deleted.
    pub pzxid: i64,
    pub num_children: i32,
}

/// Where catching up reads: ZooKeeper, or a model of it in the tests. Each answers every path
/// in order; a node that does not exist is `None`.
pub trait Source {
    fn stats(
        &self,
        paths: &[String],
    ) -> impl Future<Output = Result<Vec<Option<NodeStat>>, ZkError>> + Send;
    fn listings(
        &self,
        paths: &[String],
    ) -> impl Future<Output = Result<Vec<Option<Vec<String>>>, ZkError>> + Send;
    fn data(
        &self,
        paths: &[String],
    ) -> impl Future<Output = Result<Vec<Option<NodeState>>, ZkError>> + Send;
}

/// Sends `request` for every path, `IN_FLIGHT` at a time (a request goes out when the
/// client's method is called, so a chunk is pipelined on the one connection), and keeps each
/// reply as `keep` makes it; a node that does not exist is `None`.
async fn pipelined<'a, R, T, F>(
    paths: &'a [String],
    request: impl Fn(&'a str) -> F,
    keep: impl Fn(R) -> Option<T>,
) -> Result<Vec<Option<T>>, ZkError>
where
    F: Future<Output = Result<R, zookeeper_client::Error>>,
{
    let mut out = Vec::with_capacity(paths.len());
    for chunk in paths.chunks(IN_FLIGHT) {
        let replies = join_all(chunk.iter().map(|p| request(p))).await;
        for (p, reply) in chunk.iter().zip(replies) {
            out.push(match reply {
                Ok(v) => keep(v),
                Err(zookeeper_client::Error::NoNode) => None,
                Err(e) => return Err(ZkError::request(p)(e)),
            });
        }
    }
    Ok(out)
}

impl Source for Client {
    async fn stats(&self, paths: &[String]) -> Result<Vec<Option<NodeStat>>, ZkError> {
        pipelined(
            paths,
            |p| self.check_stat(p),
            |s: Option<Stat>| {
                s.map(|s| NodeStat {
                    czxid: s.czxid,
                    mzxid: s.mzxid,
                    pzxid: s.pzxid,
                    num_children: s.num_children,
                })
            },
        )
        .await
    }

    async fn listings(&self, paths: &[String]) -> Result<Vec<Option<Vec<String>>>, ZkError> {
        pipelined(paths, |p| self.list_children(p), Some).await
    }

    async fn data(&self, paths: &[String]) -> Result<Vec<Option<NodeState>>, ZkError> {
        pipelined(
            paths,
            |p| self.get_data(p),
            |(data, stat)| Some(NodeState::read(data, &stat)),
        )
        .await
    }
}

async fn stats(
    source: &impl Source,
    paths: &[String],
    cost: &mut Cost,
) -> Result<Vec<Option<NodeStat>>, ZkError> {
    cost.requests += paths.len() as u64;
    source.stats(paths).await
}

async fn listings(
    source: &impl Source,
    paths: &[String],
    cost: &mut Cost,
) -> Result<Vec<Option<Vec<String>>>, ZkError> {
    cost.requests += paths.len() as u64;
    source.listings(paths).await
}

async fn data(
    source: &impl Source,
    paths: &[String],
    cost: &mut Cost,
) -> Result<Vec<Option<NodeState>>, ZkError> {
    cost.requests += paths.len() as u64;
    cost.data_reads += paths.len() as u64;
    source.data(paths).await
}

/// Brings `tree` to what ZooKeeper holds, given that everything up to zxid `lost` is in it
/// already. `listed` keeps the names each zone's mark lists between catch-ups. A [`Outcome::Full`]
/// or an error may leave the tree partly caught up: the full read that follows replaces it.
pub async fn catch_up(
    client: &(impl Source + Sync),
    layout: &Layout,
    tree: &mut Tree,
    lost: i64,
    listed: &mut HashMap<String, Listed>,
    cost: &mut Cost,
) -> Result<Outcome, ZkError> {
    let zones = tree.zone_names();
    let mut paths = vec![layout.zones()];
    for z in &zones {
        paths.push(layout.zone(z));
        paths.push(layout.mark(z));
    }
    let found = stats(client, &paths, cost).await?;
    match &found[0] {
        Some(top) if top.pzxid <= lost => {}
        Some(_) => return Ok(Outcome::Full("zones were made or deleted".into())),
        None => return Ok(Outcome::Full(format!("{} is gone", paths[0]))),
    }
    let mut zone_reads = Vec::new();
    let mut zone_lists = Vec::new();
    let mut relist = Vec::new();
    let mut mark_reads: Vec<(String, i64)> = Vec::new();
    for (i, z) in zones.iter().enumerate() {
        let Some(zone) = &found[1 + 2 * i] else {
            return Ok(Outcome::Full(format!("the zone {z} is gone")));
        };
        let Some(mark) = &found[2 + 2 * i] else {
            return Ok(Outcome::Full(format!(
                "the zone {z} has no change mark ({}): written only by plain ZooKeeper \
                 clients or an older zkdns",
                layout.mark(z)
            )));
        };
        if mark.czxid > lost {
            return Ok(Outcome::Full(format!(
                "the zone {z}'s change mark is newer than the connection's loss"
            )));
        }
        if mark.mzxid > lost {
            mark_reads.push((z.clone(), mark.mzxid));
        }
        if zone.mzxid > lost {
            zone_reads.push(layout.zone(z));
        }
        if zone.pzxid > lost {
            zone_lists.push(z.clone());
        }
        match listed.get(z) {
            Some(l) if l.pzxid == mark.pzxid => {}
            _ if mark.num_children == 0 => {
                listed.insert(
                    z.clone(),
                    Listed {
                        pzxid: mark.pzxid,
                        names: Vec::new(),
                    },
                );
            }
            _ => relist.push((z.clone(), mark.pzxid)),
        }
    }

    // the marks whose lists changed, and the zones whose names changed
    let mut paths: Vec<String> = relist.iter().map(|(z, _)| layout.mark(z)).collect();
    paths.extend(zone_lists.iter().map(|z| layout.zone(z)));
    let lists = listings(client, &paths, cost).await?;
    for ((z, pzxid), names) in relist.iter().zip(&lists) {
        let names = names.clone().unwrap_or_default();
        listed.insert(
            z.clone(),
            Listed {
                pzxid: *pzxid,
                names,
            },
        );
    }
    // (zone, name) of the record sets to read whole: data, members and their data
    let mut whole: Vec<(String, String)> = Vec::new();
    // the record sets the tools wrote, from the marks that moved
    let paths: Vec<String> = mark_reads.iter().map(|(z, _)| layout.mark(z)).collect();
    let rings = data(client, &paths, cost).await?;
    for ((z, mzxid), ring) in mark_reads.iter().zip(rings) {
        let Some(ring) = ring else {
            return Ok(Outcome::Full(format!("the zone {z}'s change mark is gone")));
        };
        match marks::since(&ring.data, *mzxid, lost) {
            Since::Names(names) => {
                whole.extend(names.into_iter().map(|n| (z.clone(), n)));
            }
            Since::Unknown => {
                return Ok(Outcome::Full(format!(
                    "the zone {z}'s change mark does not tell all that changed"
                )));
            }
        }
    }
    // paths of nodes gone, children before parents
    let mut gone: Vec<String> = Vec::new();
    for (z, names) in zone_lists.iter().zip(&lists[relist.len()..]) {
        let Some(names) = names else {
            return Ok(Outcome::Full(format!("the zone {z} is gone")));
        };
        let now: HashSet<&str> = names.iter().map(String::as_str).collect();
        let held: HashSet<String> = tree.set_names(z).into_iter().collect();
        for name in names.iter().filter(|n| !held.contains(*n)) {
            if !whole.iter().any(|(wz, wn)| wz == z && wn == name) {
                whole.push((z.clone(), name.clone()));
            }
        }
        for name in held.iter().filter(|n| {
            !now.contains(n.as_str()) && !whole.iter().any(|(wz, wn)| wz == z && wn == *n)
        }) {
            for m in tree.members_of(z, name) {
                gone.push(layout.member(z, name, &m));
            }
            gone.push(layout.set(z, name));
        }
    }

    // the names to check: those with members, and those listed as getting some
    let mut checked: Vec<(String, String)> = tree.sets_with_members();
    let mut seen: HashSet<(String, String)> = checked.iter().cloned().collect();
    seen.extend(whole.iter().cloned());
    for z in &zones {
        for name in listed
            .get(z)
            .map(|l| l.names.as_slice())
            .unwrap_or_default()
        {
            if tree.has_set(z, name) && seen.insert((z.clone(), name.clone())) {
                checked.push((z.clone(), name.clone()));
            }
        }
    }
    let paths: Vec<String> = checked.iter().map(|(z, n)| layout.set(z, n)).collect();
    let found = stats(client, &paths, cost).await?;
    let mut set_reads: Vec<String> = Vec::new();
    let mut member_lists: Vec<(String, String)> = Vec::new();
    for ((z, n), stat) in checked.iter().zip(found) {
        match stat {
            // its zone's listing shows it gone, or it went after the listing: its event follows
            None => {}
            Some(s) => {
                if s.mzxid > lost {
                    set_reads.push(layout.set(z, n));
                }
                if s.pzxid > lost {
                    member_lists.push((z.clone(), n.clone()));
                }
            }
        }
    }
    for (z, n) in &whole {
        set_reads.push(layout.set(z, n));
        member_lists.push((z.clone(), n.clone()));
    }

    // zone settings, record-set data, and the members of the names whose members changed
    let mut paths = zone_reads.clone();
    paths.extend(set_reads.iter().cloned());
    let states = data(client, &paths, cost).await?;
    let list_paths: Vec<String> = member_lists.iter().map(|(z, n)| layout.set(z, n)).collect();
    let lists = listings(client, &list_paths, cost).await?;
    let mut member_reads: Vec<String> = Vec::new();
    let mut members_gone: Vec<String> = Vec::new();
    for ((z, n), now) in member_lists.iter().zip(&lists) {
        let now = now.clone().unwrap_or_default();
        let held = tree.members_of(z, n);
        for m in &held {
            if !now.contains(m) {
                members_gone.push(layout.member(z, n, m));
            }
        }
        // a new name's members are all new; a known one's may have been made again
        // (a member re-registered under the same id): read them all
        member_reads.extend(now.iter().map(|m| layout.member(z, n, m)));
    }
    let members = data(client, &member_reads, cost).await?;

    // applied parents first, and deletions children first
    let mut changed = 0;
    let mut apply = |tree: &mut Tree, path: &str, state: Option<&NodeState>| match tree
        .apply(layout, path, state)
    {
        Applied::Unchanged => Ok(()),
        Applied::Changed => {
            changed += 1;
            Ok(())
        }
        Applied::Resync => Err(()),
    };
    let layout_changed = || Ok(Outcome::Full("a change needs the map rebuilt".into()));
    for (path, state) in paths.iter().zip(&states) {
        if apply(tree, path, state.as_ref()).is_err() {
            return layout_changed();
        }
    }
    for path in members_gone.iter().chain(&gone) {
        if apply(tree, path, None).is_err() {
            return layout_changed();
        }
    }
    for (path, state) in member_reads.iter().zip(&members) {
        if apply(tree, path, state.as_ref()).is_err() {
            return layout_changed();
        }
    }
    tree.flush();
    Ok(Outcome::Done { changed })
}
