//! Change marks: what lets a stub that lost its connection find what changed meanwhile without
//! reading every node. ZooKeeper's stats show most of it: a zone's `pzxid` moves when a name is
//! made or deleted, a name's when a member joins or leaves (an expiry too), a node's `mzxid`
//! when its data changes. Checking every name's stats would cost as much as reading it, so the
//! stub checks the zones, and the names with members or listed below; what it would miss
//! elsewhere, a record set's data changing or a member joining, the marks cover:
//!
//! - each tool write that makes, changes or deletes record sets also appends their names to the
//!   zone's mark `<root>/marks/<zone>` in the same transaction (against the version it read, so
//!   two writers never lose each other's entries): a ring of the last [`KEEP`] writes, each
//!   with the zxid it was made at. A stub whose connection was lost at zxid Z re-reads the names
//!   of the entries after Z, or reads the tree in full when the ring no longer reaches back to
//!   Z (a name deleted and made again lists the same, so the stats alone would miss it);
//! - the names that get members are listed as `<root>/marks/<zone>/<name>`, by `register` before
//!   it makes its first member there, or by `grant` (a registrar may not list a name itself), and
//!   the stub checks those names' stats.
//!
//! Marks live outside the watched zones subtree, so touching one sends no event to the stubs.
//! A zone without a mark (written only by an older zkdns or by plain ZooKeeper clients) is read
//! in full after a reconnect, as it was before marks.

use serde::{Deserialize, Serialize};
use zookeeper_client::Client;

use crate::zk::auth::persistent;
use crate::zk::layout::{Layout, NodePath};
use crate::zk::{Access, ZkError};

/// Writes a mark remembers.
pub const KEEP: usize = 64;
/// Names one entry lists; a write of more is recorded as one of the whole zone.
const NAMES_PER_WRITE: usize = 32;
/// Names all entries list together: older entries go first.
const NAMES_KEPT: usize = 256;

/// A mark's data.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct Ring {
    /// The newest zxid among entries dropped (or not recorded): a stub lost before it cannot
    /// rely on the ring.
    #[serde(default)]
    floor: i64,
    #[serde(default)]
    writes: Vec<Write>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct Write {
    /// The zxid of the write, filled in by the next writer; 0 for the newest, whose zxid is
    /// the mark's `mzxid`.
    #[serde(default)]
    z: i64,
    #[serde(default)]
    names: Vec<String>,
    /// A write of more names than an entry lists: the whole zone.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    all: bool,
}

/// The mark's data after a write of `names`, given its data and `mzxid` before (a mark with no
/// ring, or a bad one, starts one that reaches back to `mzxid` only).
pub fn appended(data: &[u8], mzxid: i64, names: &[String]) -> Vec<u8> {
    let mut ring: Ring = serde_json::from_slice(data).unwrap_or(Ring {
        floor: mzxid,
        writes: Vec::new(),
    });
    for w in ring.writes.iter_mut().filter(|w| w.z == 0) {
        w.z = mzxid;
    }
    let all = names.len() > NAMES_PER_WRITE;
    let names = if all { Vec::new() } else { names.to_vec() };
    ring.writes.push(Write { z: 0, names, all });
    let mut total: usize = ring.writes.iter().map(|w| w.names.len()).sum();
    while ring.writes.len() > KEEP || (total > NAMES_KEPT && ring.writes.len() > 1) {
        let old = ring.writes.remove(0);
        total -= old.names.len();
        ring.floor = ring.floor.max(old.z);
    }
    serde_json::to_vec(&ring).expect("a ring serializes")
}

/// What a mark says changed after zxid `lost`.
#[derive(Debug, PartialEq, Eq)]
pub enum Since {
    /// The record sets written since (by znode name).
    Names(Vec<String>),
    /// The ring does not reach back that far, lists a whole zone, or is not valid.
    Unknown,
}

/// Reads a mark's data (its `mzxid` is the newest entry's zxid) for what changed after `lost`.
pub fn since(data: &[u8], mzxid: i64, lost: i64) -> Since {
    let Ok(ring) = serde_json::from_slice::<Ring>(data) else {
        return Since::Unknown;
    };
    if ring.floor > lost {
        return Since::Unknown;
    }
    let mut names: Vec<String> = Vec::new();
    for w in &ring.writes {
        let z = if w.z == 0 { mzxid } else { w.z };
        if z <= lost {
            continue;
        }
        if w.all {
            return Since::Unknown;
        }
        for n in &w.names {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
    }
    Since::Names(names)
}

/// The zones whose marks a transaction writing `paths` must touch, with the record sets
/// written in each: those made, changed or deleted. Members, and zone settings, show in the
/// stats.
pub fn zones_to_touch<'a>(
    layout: &Layout,
    paths: impl IntoIterator<Item = &'a str>,
) -> Vec<(String, Vec<String>)> {
    let mut zones: Vec<(String, Vec<String>)> = Vec::new();
    for path in paths {
        if let NodePath::Set(z, n) = layout.classify(path) {
            let at = match zones.iter().position(|(known, _)| known == z) {
                Some(at) => at,
                None => {
                    zones.push((z.to_string(), Vec::new()));
                    zones.len() - 1
                }
            };
            if !zones[at].1.iter().any(|known| known == n) {
                zones[at].1.push(n.to_string());
            }
        }
    }
    zones
}

/// Lists (`listed`) or unlists the name at `set_path` among its zone's names with members.
pub async fn set_listed(
    client: &Client,
    layout: &Layout,
    set_path: &str,
    listed: bool,
) -> Result<(), ZkError> {
    let NodePath::Set(zone, name) = layout.classify(set_path) else {
        return Ok(());
    };
    let path = layout.mark_name(zone, name);
    let done = if listed {
        match client.mkdir(&path, &persistent()).await {
            Err(zookeeper_client::Error::NodeExists) => Ok(()),
            other => other,
        }
    } else {
        match client.delete(&path, None).await {
            Err(zookeeper_client::Error::NoNode) => Ok(()),
            other => other,
        }
    };
    let access = if listed {
        Access::Create
    } else {
        Access::Delete
    };
    done.map_err(ZkError::access(access, &path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zk::write::Op;

    fn set_data(path: &str) -> Op {
        Op::SetData {
            path: path.into(),
            data: Vec::new(),
            version: 1,
        }
    }

    #[test]
    fn record_set_writes_are_marked() {
        let l = Layout::new("/zkdns").unwrap();
        let create = |p: &str| Op::Create {
            path: p.into(),
            data: Vec::new(),
        };
        let delete = |p: &str| Op::Delete {
            path: p.into(),
            version: -1,
        };
        // members and zone settings show in the stats
        let plain = [
            delete("/zkdns/zones/a.l/web/m1"),
            set_data("/zkdns/zones/a.l"),
        ];
        assert!(zones_to_touch(&l, plain.iter().map(Op::path)).is_empty());
        let ops = [
            set_data("/zkdns/zones/a.l/web"),
            set_data("/zkdns/zones/a.l/db"),
            delete("/zkdns/zones/b.l/x"),
            create("/zkdns/zones/b.l/x"),
            create("/zkdns/zones/c.l/new"),
            create("/zkdns/zones/d.l/web/m1"),
        ];
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            zones_to_touch(&l, ops.iter().map(Op::path)),
            [
                ("a.l".to_string(), names(&["web", "db"])),
                ("b.l".to_string(), names(&["x"])),
                ("c.l".to_string(), names(&["new"])),
            ]
        );
    }

    #[test]
    fn the_ring_names_what_changed_since_a_zxid() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // made at zxid 10 with web; db at 20; the wildcard `*` and db again at 30
        let d = appended(b"", 0, &names(&["web"]));
        let d = appended(&d, 10, &names(&["db"]));
        let d = appended(&d, 20, &names(&["*", "db"]));
        assert_eq!(since(&d, 30, 5), Since::Names(names(&["web", "db", "*"])));
        assert_eq!(since(&d, 30, 10), Since::Names(names(&["db", "*"])));
        assert_eq!(since(&d, 30, 25), Since::Names(names(&["*", "db"])));
        assert_eq!(since(&d, 30, 30), Since::Names(vec![]));
        // a mark that held no ring reaches back to its last write only
        let d = appended(b"", 40, &names(&["web"]));
        assert_eq!(since(&d, 50, 39), Since::Unknown);
        assert_eq!(since(&d, 50, 40), Since::Names(names(&["web"])));
        // a write of many names is the whole zone
        let many: Vec<String> = (0..40).map(|i| format!("n{i}")).collect();
        let d = appended(&d, 50, &many);
        assert_eq!(since(&d, 60, 45), Since::Unknown);
        assert_eq!(since(&d, 60, 50), Since::Unknown);
        assert_eq!(since(&d, 60, 60), Since::Names(vec![]));
        // the oldest writes go, and the floor says from when the ring is whole
        let mut d = appended(b"", 0, &names(&["a"]));
        for z in 1..=(KEEP as i64 + 5) {
            d = appended(&d, z * 10, &names(&["b"]));
        }
        assert_eq!(since(&d, 1000, 10), Since::Unknown);
        assert!(matches!(since(&d, 1000, 600), Since::Names(_)));
        assert!(d.len() < 4096, "{}", d.len());
        // not a ring
        assert_eq!(since(b"{bad", 10, 0), Since::Unknown);
        assert_eq!(since(br#"{"x":1}"#, 10, 0), Since::Unknown);
    }
}
