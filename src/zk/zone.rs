//! Reading zones out of ZooKeeper: the one multiRead batcher, the one reader of a zones
//! subtree (zone nodes, their record sets, the members of the sets that have any) that the
//! sync task's full read and the tools (`ls`, `export`, `import`) share, the list of zones,
//! and which zone a name belongs to.

use std::collections::BTreeMap;

use futures_util::StreamExt;
use thiserror::Error;
use zookeeper_client::{Client, MultiReadResult, Stat};

use crate::names::{ZoneName, list};
use crate::zk::{Layout, ZkError};

/// Operations per multiRead request: well below jute.maxbuffer for the replies.
const READ_BATCH: usize = 1000;
/// multiRead requests in flight at once, so that a large read neither waits on one round trip
/// per batch nor puts every batch on the connection at once.
const READS_IN_FLIGHT: usize = 8;

/// One read of a multiRead.
#[derive(Debug, Clone, Copy)]
pub enum Read<'a> {
    Data(&'a str),
    Children(&'a str),
}

impl<'a> Read<'a> {
    fn path(&self) -> &'a str {
        match self {
            Read::Data(p) | Read::Children(p) => p,
        }
    }
}

/// Runs `reads` in multiRead batches, a few batches in flight at once, handing each result
/// (with the index of its read) to `each` as its batch completes: 100k results are never all
/// held at once. A result may be an error of its own (a node gone since it was listed).
pub async fn multi_read(
    client: &Client,
    reads: &[Read<'_>],
    mut each: impl FnMut(usize, MultiReadResult),
) -> Result<(), ZkError> {
    let mut batches = Vec::new();
    for chunk in reads.chunks(READ_BATCH) {
        let mut reader = client.new_multi_reader();
        for read in chunk {
            match read {
                Read::Data(p) => reader.add_get_data(p),
                Read::Children(p) => reader.add_get_children(p),
            }
            .map_err(ZkError::request(read.path()))?;
        }
        let first = chunk[0].path();
        // lazy: the request goes out when the stream below polls it
        batches.push(async move { reader.commit().await.map_err(ZkError::request(first)) });
    }
    let mut results = futures_util::stream::iter(batches).buffered(READS_IN_FLIGHT);
    let mut index = 0;
    while let Some(batch) = results.next().await {
        for result in batch? {
            each(index, result);
            index += 1;
        }
    }
    Ok(())
}

/// Where a node read by [`read_subtree`] sits in the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place<'a> {
    Zone {
        zone: &'a str,
    },
    Set {
        zone: &'a str,
        name: &'a str,
    },
    Member {
        zone: &'a str,
        name: &'a str,
        member: &'a str,
    },
}

/// One node of a zones subtree, as read.
#[derive(Debug)]
pub struct Found<'a> {
    pub path: &'a str,
    pub place: Place<'a>,
    pub data: Vec<u8>,
    pub stat: Stat,
}

/// Reads the zone nodes `zones` (znode names under `<root>/zones`), their record sets, and with
/// `members` the members of every set that has children, handing each node to `visit`: all the
/// zones first, then all the sets, then all the members, so that a node's parent always comes
/// before it. Nodes that vanish while reading are left out (with their children); their watch
/// events follow.
pub async fn read_subtree(
    client: &Client,
    layout: &Layout,
    zones: &[String],
    members: bool,
    mut visit: impl FnMut(Found<'_>),
) -> Result<(), ZkError> {
    let zone_paths: Vec<String> = zones.iter().map(|z| layout.zone(z)).collect();
    let reads: Vec<Read> = zone_paths
        .iter()
        .flat_map(|p| [Read::Data(p), Read::Children(p)])
        .collect();
    // (zone index, set name) of every set listed
    let mut sets: Vec<(usize, String)> = Vec::new();
    let mut zone_node = None;
    multi_read(client, &reads, |i, result| match result {
        MultiReadResult::Data { data, stat } => zone_node = Some((data, stat)),
        MultiReadResult::Children { children } => {
            if let Some((data, stat)) = zone_node.take() {
                let z = i / 2;
                visit(Found {
                    path: &zone_paths[z],
                    place: Place::Zone { zone: &zones[z] },
                    data,
                    stat,
                });
                sets.extend(children.into_iter().map(|c| (z, c)));
            }
        }
        // gone since the listing (or a reply of another kind, which a read cannot get)
        _ => zone_node = None,
    })
    .await?;

    let set_paths: Vec<String> = sets
        .iter()
        .map(|(z, name)| format!("{}/{name}", zone_paths[*z]))
        .collect();
    let reads: Vec<Read> = set_paths.iter().map(|p| Read::Data(p)).collect();
    let mut with_members = Vec::new();
    multi_read(client, &reads, |i, result| {
        if let MultiReadResult::Data { data, stat } = result {
            if members && stat.num_children > 0 {
                with_members.push(i);
            }
            let (z, name) = &sets[i];
            visit(Found {
                path: &set_paths[i],
                place: Place::Set {
                    zone: &zones[*z],
                    name,
                },
                data,
                stat,
            });
        }
    })
    .await?;
    if with_members.is_empty() {
        return Ok(());
    }

    let reads: Vec<Read> = with_members
        .iter()
        .map(|&i| Read::Children(&set_paths[i]))
        .collect();
    // (set index, member name) of every member listed
    let mut listed: Vec<(usize, String)> = Vec::new();
    multi_read(client, &reads, |i, result| {
        if let MultiReadResult::Children { children } = result {
            listed.extend(children.into_iter().map(|m| (with_members[i], m)));
        }
    })
    .await?;
    let member_paths: Vec<String> = listed
        .iter()
        .map(|(s, m)| format!("{}/{m}", set_paths[*s]))
        .collect();
    let reads: Vec<Read> = member_paths.iter().map(|p| Read::Data(p)).collect();
    multi_read(client, &reads, |i, result| {
        if let MultiReadResult::Data { data, stat } = result {
            let (s, member) = &listed[i];
            let (z, name) = &sets[*s];
            visit(Found {
                path: &member_paths[i],
                place: Place::Member {
                    zone: &zones[*z],
                    name,
                    member,
                },
                data,
                stat,
            });
        }
    })
    .await
}

/// The znode names of the zones under `<root>/zones` (none when it does not exist).
pub async fn zone_names(client: &Client, layout: &Layout) -> Result<Vec<String>, ZkError> {
    let path = layout.zones();
    match client.list_children(&path).await {
        Ok(zones) => Ok(zones),
        Err(zookeeper_client::Error::NoNode) => Ok(Vec::new()),
        Err(e) => Err(ZkError::request(&path)(e)),
    }
}

/// The zones under the root with their number of record sets, by name.
pub async fn list_zones(client: &Client, layout: &Layout) -> Result<Vec<(String, usize)>, ZkError> {
    let zones = zone_names(client, layout).await?;
    let paths: Vec<String> = zones.iter().map(|z| layout.zone(z)).collect();
    let reads: Vec<Read> = paths.iter().map(|p| Read::Data(p)).collect();
    let mut out = Vec::new();
    multi_read(client, &reads, |i, result| {
        if let MultiReadResult::Data { stat, .. } = result {
            out.push((
                zones[i].clone(),
                usize::try_from(stat.num_children).unwrap_or(0),
            ));
        }
    })
    .await?;
    out.sort();
    Ok(out)
}

/// A record-set node as read, with its members when asked for.
#[derive(Debug, Clone)]
pub struct SetNode {
    pub data: Vec<u8>,
    pub stat: Stat,
    /// Member name → payload (only when read with members).
    pub members: BTreeMap<String, Vec<u8>>,
}

impl SetNode {
    /// Whether the node may be a container about to be removed: see [`may_be_reaped`].
    pub fn may_be_reaped(&self) -> bool {
        may_be_reaped(&self.stat)
    }
}

/// `register` creates missing record sets as CONTAINER nodes, which ZooKeeper removes (data
/// and all) within a minute once their last member is gone. Clients cannot tell a container
/// from a persistent node (ZooKeeper reports ephemeralOwner 0 for both), but a node without
/// members that once had some may be one: writes re-create it as a persistent node instead.
/// A re-created persistent node loses nothing (it has no children).
pub fn may_be_reaped(stat: &Stat) -> bool {
    stat.num_children == 0 && stat.cversion > 0
}

/// A zone node and its record sets, by znode name.
#[derive(Debug, Clone)]
pub struct ZoneNodes {
    pub data: Vec<u8>,
    pub stat: Stat,
    pub sets: BTreeMap<String, SetNode>,
}

impl ZoneNodes {
    /// The record sets in the order they are shown: the apex first, then by name.
    pub fn apex_first(&self) -> Vec<(&String, &SetNode)> {
        let mut out: Vec<_> = self.sets.iter().collect();
        out.sort_by_key(|(name, _)| (name.as_str() != "@", *name));
        out
    }
}

/// Reads a zone's node and record sets (and their members' data if `members`); `None` when
/// the zone node does not exist.
pub async fn read_zone(
    client: &Client,
    layout: &Layout,
    zone: &ZoneName,
    members: bool,
) -> Result<Option<ZoneNodes>, ZkError> {
    let mut nodes: Option<ZoneNodes> = None;
    let zones = [zone.as_str().to_string()];
    read_subtree(client, layout, &zones, members, |found| {
        match (found.place, nodes.as_mut()) {
            (Place::Zone { .. }, _) => {
                nodes = Some(ZoneNodes {
                    data: found.data,
                    stat: found.stat,
                    sets: BTreeMap::new(),
                });
            }
            (Place::Set { name, .. }, Some(z)) => {
                let node = SetNode {
                    data: found.data,
                    stat: found.stat,
                    members: BTreeMap::new(),
                };
                z.sets.insert(name.to_string(), node);
            }
            (Place::Member { name, member, .. }, Some(z)) => {
                if let Some(set) = z.sets.get_mut(name) {
                    set.members.insert(member.to_string(), found.data);
                }
            }
            _ => {}
        }
    })
    .await?;
    Ok(nodes)
}

/// The zone `fqdn` goes in, of the zone nodes `zones` under `zones_path`: `explicit` (which
/// must contain it) or the longest one that `fqdn` ends with. `Err` says why there is none.
pub fn pick_zone(
    zones: &[&str],
    zones_path: &str,
    fqdn: &str,
    explicit: Option<&ZoneName>,
) -> Result<ZoneName, String> {
    if let Some(z) = explicit {
        if !z.contains(fqdn) {
            return Err(format!("{fqdn} is not in the zone {z}"));
        }
        return Ok(z.clone());
    }
    zones
        .iter()
        .filter_map(|z| ZoneName::from_znode(z).ok())
        .filter(|z| z.contains(fqdn))
        .max_by_key(|z| z.as_str().len())
        .ok_or_else(|| {
            format!(
                "no zone under {zones_path} contains {fqdn} (zones: {}); pass --zone",
                list(zones)
            )
        })
}

/// Why no zone was found for a name.
#[derive(Debug, Error)]
pub enum FindZoneError {
    /// No zone under the root holds the name, or not the one given: bad input.
    #[error("{0}")]
    NoZone(String),
    #[error(transparent)]
    Zk(#[from] ZkError),
}

/// The zone `fqdn` belongs to: `explicit` (which must contain it) or the longest zone under
/// the root that it ends with; and whether that zone's node exists (an explicit zone may not).
pub async fn find_zone(
    client: &Client,
    layout: &Layout,
    fqdn: &str,
    explicit: Option<&ZoneName>,
) -> Result<(ZoneName, bool), FindZoneError> {
    let zones = zone_names(client, layout).await?;
    let names: Vec<&str> = zones.iter().map(String::as_str).collect();
    let zone = pick_zone(&names, &layout.zones(), fqdn, explicit).map_err(FindZoneError::NoZone)?;
    let exists = names.contains(&zone.as_str());
    Ok((zone, exists))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_zone_a_name_ends_with_is_picked() {
        let zones = ["cluster.test", "prod.cluster.test", "other.test"];
        let pick = |fqdn, explicit: Option<&ZoneName>| pick_zone(&zones, "/z", fqdn, explicit);
        assert_eq!(
            pick("web.prod.cluster.test", None).unwrap().as_str(),
            "prod.cluster.test"
        );
        assert_eq!(
            pick("web.cluster.test", None).unwrap().as_str(),
            "cluster.test"
        );
        let e = pick("web.example", None).unwrap_err();
        assert!(e.contains("no zone under /z contains web.example"), "{e}");
        let explicit = ZoneName::parse("cluster.test").unwrap();
        assert_eq!(
            pick("web.prod.cluster.test", Some(&explicit)).unwrap(),
            explicit
        );
        assert!(pick("web.example", Some(&explicit)).is_err());
    }
}
