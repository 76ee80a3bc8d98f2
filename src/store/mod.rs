//! The record map the DNS path answers from: an immutable [`Snapshot`] of every served zone,
//! records already in wire format in compact arenas ([`table`]), published through `arc-swap`
//! so that a lookup is a pointer load and a hash probe, never a lock shared with the ZooKeeper
//! task. [`Builder`] changes a snapshot in place as ZooKeeper changes; the [`Store`] also
//! carries the sync status (ready, connected, last sync) that health and serve-stale read.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::{ArcSwap, Guard};
use foldhash::fast::RandomState;

use crate::names::{AddrKey, ZoneName, label_offsets, wire_to_string};
use crate::records::ZoneSettings;

mod build;
pub mod node;
mod reverse;
mod table;

pub use build::{Builder, Resync};
pub use node::{NodeRef, RrSetRef};
use reverse::Reverse;
use table::Table;

/// What the DNS path needs of a zone beyond its names.
#[derive(Debug, Clone)]
pub struct ZoneSnap {
    pub name: ZoneName,
    pub apex: Box<[u8]>,
    /// The SOA RRset for negative answers: TTL min(SOA TTL, MINIMUM) (RFC 2308). (The
    /// answer to an SOA query is the apex entry's SOA RRset.)
    soa_negative: Box<[u8]>,
    /// The settings this zone was built from.
    pub settings: ZoneSettings,
}

impl ZoneSnap {
    pub fn soa_negative(&self) -> RrSetRef<'_> {
        RrSetRef::parse(&self.soa_negative).0
    }
}

/// Result of looking a name up.
#[derive(Debug)]
pub enum Lookup<'a> {
    /// Not inside any served zone.
    NotOurs,
    /// The name exists; `wildcard` when it was synthesised from `*` (RFC 4592).
    Found {
        zone: &'a ZoneSnap,
        node: NodeRef<'a>,
        wildcard: bool,
    },
    /// Inside a zone, and nothing at or matching the name.
    NxDomain { zone: &'a ZoneSnap },
}

/// An immutable view of every served zone. Cloning it is cheap (arena shards are shared),
/// which is how [`Builder`] publishes a new version after a small change.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// By zone index; `None` where a zone was removed.
    zones: Arc<Vec<Option<ZoneSnap>>>,
    zone_index: Arc<HashMap<Box<[u8]>, u16, RandomState>>,
    /// Every name of every zone (record sets, empty non-terminals, apexes), by wire key.
    nodes: Table,
    /// Who holds each address, for PTR answers: by address (4 or 16 octets, where the
    /// reverse name in wire format takes 22 to 30 or 74 bytes), the sorted hashes of the
    /// holders' keys in `nodes` (see [`Snapshot::holders`]).
    reverse: Reverse,
    /// Names with records (record sets with data, not empty non-terminals).
    pub names: usize,
    /// Records across every RRset, SOA and NS included.
    pub records: usize,
}

impl Snapshot {
    pub fn zones(&self) -> impl Iterator<Item = &ZoneSnap> {
        self.zones.iter().flatten()
    }

    pub fn zone(&self, idx: u16) -> Option<&ZoneSnap> {
        self.zones.get(idx as usize).and_then(Option::as_ref)
    }

    /// The deepest served zone containing `key` (a lower-case wire name), with the offset in
    /// `key` where its apex starts.
    pub fn find_zone(&self, key: &[u8]) -> Option<(u16, usize)> {
        if self.zone_index.is_empty() {
            return None;
        }
        label_offsets(key).find_map(|at| self.zone_index.get(&key[at..]).map(|&z| (z, at)))
    }

    /// The entry at exactly `key`, whatever zone it belongs to.
    pub fn node(&self, key: &[u8]) -> Option<NodeRef<'_>> {
        self.nodes.get(key).map(NodeRef::parse)
    }

    /// Looks a lower-case wire name up: exact match, else wildcard at the closest encloser
    /// (RFC 4592), else NXDOMAIN. `scratch` holds the wildcard key so no allocation is needed.
    pub fn lookup<'a>(&'a self, key: &[u8], scratch: &mut [u8; 257]) -> Lookup<'a> {
        let Some((zidx, apex_at)) = self.find_zone(key) else {
            return Lookup::NotOurs;
        };
        let Some(zone) = self.zone(zidx) else {
            return Lookup::NotOurs;
        };
        let in_zone = |k: &[u8]| self.node(k).filter(|n| n.zone == zidx);
        if let Some(node) = in_zone(key) {
            return Lookup::Found {
                zone,
                node,
                wildcard: false,
            };
        }
        // closest encloser: the longest existing ancestor (the apex always exists)
        for at in label_offsets(key).skip(1) {
            if at > apex_at {
                break;
            }
            let suffix = &key[at..];
            if in_zone(suffix).is_some() {
                scratch[0] = 1;
                scratch[1] = b'*';
                scratch[2..2 + suffix.len()].copy_from_slice(suffix);
                return match in_zone(&scratch[..2 + suffix.len()]) {
                    Some(node) => Lookup::Found {
                        zone,
                        node,
                        wildcard: true,
                    },
                    None => Lookup::NxDomain { zone },
                };
            }
        }
        Lookup::NxDomain { zone }
    }

    /// The names that hold the address `addr` (what a PTR answer for it gives); `None` when
    /// no name does.
    pub fn holders(&self, addr: AddrKey) -> Option<Holders<'_>> {
        let hashes = self.reverse.get(addr);
        (!hashes.is_empty()).then_some(Holders {
            nodes: &self.nodes,
            hashes,
            addr,
        })
    }

    /// Every name with A or AAAA records and its addresses, sorted by name (wildcards left
    /// out: they are not names a hosts file can hold). For the hosts-file writer.
    pub fn addresses(&self) -> Vec<(String, Vec<IpAddr>)> {
        let mut out: Vec<(String, Vec<IpAddr>)> = self
            .nodes
            .iter()
            .filter(|(key, _)| !key.starts_with(b"\x01*"))
            .filter_map(|(key, value)| {
                let addrs: Vec<IpAddr> = NodeRef::parse(value).addresses().collect();
                let name = wire_to_string(key);
                (!addrs.is_empty()).then(|| (name.trim_end_matches('.').to_string(), addrs))
            })
            .collect();
        out.sort();
        out
    }

    /// The record sets of a zone (index `zone`): (key, entry), apex included when it holds a
    /// set. In no particular order.
    pub fn sets(&self, zone: u16) -> impl Iterator<Item = (&[u8], NodeRef<'_>)> {
        self.nodes
            .iter()
            .map(|(k, v)| (k, NodeRef::parse(v)))
            .filter(move |(_, n)| n.zone == zone && n.is_set())
    }

    /// Index of a zone in this snapshot.
    pub fn zone_index(&self, apex: &[u8]) -> Option<u16> {
        self.zone_index.get(apex).copied()
    }

    /// Bytes held by the name and reverse tables.
    pub fn heap_bytes(&self) -> usize {
        self.nodes.heap_bytes() + self.reverse.heap_bytes()
    }
}

/// The names holding one address. The reverse table keeps, per address, the sorted hashes of
/// their keys (see `Table::hash_of`), 8 bytes a name where a copy of the name would take 30
/// or more; the names themselves are read from their entries.
pub struct Holders<'a> {
    nodes: &'a Table,
    hashes: &'a [u64],
    addr: AddrKey,
}

impl<'a> Holders<'a> {
    /// How many names (each once, unless two share a hash).
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    fn hash(&self, i: usize) -> u64 {
        self.hashes[i]
    }

    /// The names, each with the TTL of its address record, from the `start`-th on and then
    /// around (a rotation costs nothing: the skipped names are not looked up).
    pub fn iter(&self, start: usize) -> impl Iterator<Item = (&'a [u8], u32)> + '_ {
        let n = self.len();
        let start = if n == 0 { 0 } else { start % n };
        (start..n)
            .chain(0..start)
            // one copy per name: names that share a hash are all found by its first copy
            .filter(move |&i| i == 0 || self.hash(i - 1) != self.hash(i))
            .flat_map(move |i| self.nodes.with_hash(self.hash(i)))
            .filter_map(move |(key, value)| {
                let node = NodeRef::parse(value);
                if !node::gives_ptrs(&node, key) {
                    return None;
                }
                Some((key, node::address_ttl(&node, self.addr.as_bytes())?))
            })
    }
}

/// The shared handle: the current snapshot plus the sync status. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<StoreInner>,
}

#[derive(Debug)]
struct StoreInner {
    snapshot: ArcSwap<Snapshot>,
    /// Set once the first full read has been published.
    ready: AtomicBool,
    /// Whether the ZooKeeper session is connected and the map follows it.
    connected: AtomicBool,
    /// Unix milliseconds of the last full sync or applied change while connected.
    last_sync_ms: AtomicU64,
    /// Bumped on every publish, for consumers that act on changes (the hosts-file writer).
    published: tokio::sync::watch::Sender<u64>,
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// Seconds since the Unix epoch, now (a default SOA serial).
pub(crate) fn unix_now() -> u32 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

impl Store {
    pub fn new() -> Self {
        Self {
            inner: Arc::new(StoreInner {
                snapshot: ArcSwap::from_pointee(Snapshot::default()),
                ready: AtomicBool::new(false),
                connected: AtomicBool::new(false),
                // before the first sync, the map's age counts from the store's creation
                last_sync_ms: AtomicU64::new(unix_ms()),
                published: tokio::sync::watch::Sender::new(0),
            }),
        }
    }

    /// The current snapshot; lock-free.
    pub fn load(&self) -> Guard<Arc<Snapshot>> {
        self.inner.snapshot.load()
    }

    /// Publishes a new snapshot built from a complete, current view of ZooKeeper.
    pub fn publish(&self, snapshot: Snapshot) {
        self.inner.snapshot.store(Arc::new(snapshot));
        self.inner.ready.store(true, Ordering::Release);
        self.inner.connected.store(true, Ordering::Release);
        self.inner.last_sync_ms.store(unix_ms(), Ordering::Release);
        self.inner.published.send_modify(|n| *n += 1);
    }

    /// Publishes a snapshot that may still miss changes (events applied to a map that a
    /// reconnect left behind, before its full read): served, and the map stays stale.
    pub fn publish_behind(&self, snapshot: Snapshot) {
        self.inner.snapshot.store(Arc::new(snapshot));
        self.inner.published.send_modify(|n| *n += 1);
    }

    /// A receiver that sees every publish (coalesced: it holds only the latest generation).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.published.subscribe()
    }

    /// The current snapshot as an owned handle (for work that outlives a query).
    pub fn load_full(&self) -> Arc<Snapshot> {
        self.inner.snapshot.load_full()
    }

    /// Installs a map read back from a snapshot file: served, but stale (not confirmed by
    /// ZooKeeper) and aged from `saved_at_ms`, until the first full read replaces it.
    pub fn restore(&self, snapshot: Snapshot, saved_at_ms: u64) {
        self.inner.snapshot.store(Arc::new(snapshot));
        self.inner.connected.store(false, Ordering::Release);
        self.inner
            .last_sync_ms
            .store(saved_at_ms, Ordering::Release);
    }

    /// Records that the session is (dis)connected. The map is kept either way.
    pub fn set_connected(&self, connected: bool) {
        self.inner.connected.store(connected, Ordering::Release);
        if connected {
            self.inner.last_sync_ms.store(unix_ms(), Ordering::Release);
        }
    }

    /// True once the first full read has been published.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Acquire)
    }

    /// True while answers come from a map that may be behind ZooKeeper.
    pub fn is_stale(&self) -> bool {
        !self.inner.connected.load(Ordering::Acquire)
    }

    /// Time since the map was last known to match ZooKeeper.
    pub fn since_sync(&self) -> Duration {
        let last = self.inner.last_sync_ms.load(Ordering::Acquire);
        if self.is_ready() && !self.is_stale() {
            return Duration::ZERO;
        }
        Duration::from_millis(unix_ms().saturating_sub(last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::wire_key_str;
    use crate::zk::Layout;
    use crate::zk::tree::{NodeState, Tree};
    use hickory_proto::rr::RecordType;

    fn tree(nodes: &[(&str, &str)]) -> Tree {
        let l = Layout::new("/z").unwrap();
        let mut t = Tree::new(None);
        for (path, data) in nodes {
            let state = NodeState {
                data: data.as_bytes().to_vec(),
                mzxid: 1,
                mtime: 0,
            };
            t.apply(&l, &format!("/z/zones/{path}"), Some(&state));
        }
        t
    }

    fn key(s: &str) -> Box<[u8]> {
        wire_key_str(s)
    }

    #[test]
    fn lookups() {
        let mut t = tree(&[
            ("c.l", ""),
            ("c.l/web", r#"{"A": ["10.0.0.1", "10.0.0.2"]}"#),
            ("c.l/api.prod", r#"{"A": ["10.0.0.3"]}"#),
            ("c.l/*.wild", r#"{"A": ["10.0.0.4"]}"#),
            ("c.l/empty", ""),
        ]);
        let s = t.snapshot();
        let mut scratch = [0u8; 257];
        assert_eq!(s.names, 3);
        assert!(matches!(
            s.lookup(&key("web.c.l"), &mut scratch),
            Lookup::Found { wildcard: false, node, .. } if node.get(RecordType::A).unwrap().len() == 2
        ));
        // empty non-terminal
        assert!(matches!(
            s.lookup(&key("prod.c.l"), &mut scratch),
            Lookup::Found { node, .. } if !node.has_rrsets()
        ));
        assert!(matches!(
            s.lookup(&key("empty.c.l"), &mut scratch),
            Lookup::Found { node, .. } if !node.has_rrsets()
        ));
        assert!(matches!(
            s.lookup(&key("x.y.wild.c.l"), &mut scratch),
            Lookup::Found { wildcard: true, .. }
        ));
        assert!(matches!(
            s.lookup(&key("nope.c.l"), &mut scratch),
            Lookup::NxDomain { .. }
        ));
        // below an existing name: no wildcard there
        assert!(matches!(
            s.lookup(&key("x.web.c.l"), &mut scratch),
            Lookup::NxDomain { .. }
        ));
        assert!(matches!(
            s.lookup(&key("example.com"), &mut scratch),
            Lookup::NotOurs
        ));
        let apex = s.lookup(&key("c.l"), &mut scratch);
        assert!(
            matches!(apex, Lookup::Found { node, .. } if node.get(RecordType::SOA).is_some() && node.get(RecordType::NS).is_some())
        );
        let hosts = s.addresses();
        assert_eq!(hosts.len(), 2, "{hosts:?}"); // web and api.prod; not the wildcard
        assert_eq!(hosts[1].0, "web.c.l");
        assert_eq!(hosts[1].1.len(), 2);
        let holders = s.holders(AddrKey::from("10.0.0.3".parse::<IpAddr>().unwrap()));
        let ptrs: Vec<_> = holders.unwrap().iter(0).collect();
        assert_eq!(ptrs, [(&key("api.prod.c.l")[..], 5)]); // the default TTL
    }

    #[test]
    fn nested_zones_take_their_names() {
        let mut t = tree(&[
            ("c.l", ""),
            ("sub.c.l", ""),
            ("c.l/a.sub", r#"{"A": ["10.0.0.1"]}"#),
            ("sub.c.l/b", r#"{"A": ["10.0.0.2"]}"#),
        ]);
        let s = t.snapshot();
        let mut scratch = [0u8; 257];
        assert!(matches!(
            s.lookup(&key("b.sub.c.l"), &mut scratch),
            Lookup::Found { .. }
        ));
        // occluded by the cut: a.sub.c.l belongs to sub.c.l, which does not have it
        assert!(matches!(
            s.lookup(&key("a.sub.c.l"), &mut scratch),
            Lookup::NxDomain { zone } if zone.name.as_str() == "sub.c.l"
        ));
    }
}
