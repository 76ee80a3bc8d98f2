//! The record map the DNS path answers from: an immutable [`Snapshot`] built from the watcher's
//! tree, with every record set already in wire format, published through `arc-swap` so that a
//! lookup is a pointer load and a hash probe, never a lock shared with the ZooKeeper task. The
//! [`Store`] also carries the sync status (ready, connected, last sync) that health and
//! serve-stale read.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::{ArcSwap, Guard};
use foldhash::fast::RandomState;
use hickory_proto::rr::rdata::{CNAME, NS};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};

use crate::names::{ZoneName, label_offsets, wire_key, wire_to_string};

mod build;
mod shards;

pub use build::Builder;
use shards::ShardedMap;

type Map<V> = HashMap<Box<[u8]>, V, RandomState>;

/// One RRset in wire format, owner name left out: each record is
/// `TYPE CLASS TTL RDLENGTH RDATA`, ready to follow an owner name in an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RrSet {
    pub rtype: RecordType,
    blob: Box<[u8]>,
    ends: Box<[u32]>,
    /// For CNAME: the target's key. For SRV, MX and NS: the targets whose addresses go in the
    /// additional section.
    pub targets: Box<[Box<[u8]>]>,
}

impl RrSet {
    pub(crate) fn new(rtype: RecordType, records: &[RData], ttl: u32) -> Self {
        let mut blob = Vec::new();
        let mut ends = Vec::with_capacity(records.len());
        let mut targets = Vec::new();
        for rdata in records {
            let record = Record::from_rdata(Name::root(), ttl, rdata.clone());
            let mut buf = Vec::with_capacity(32);
            let mut encoder = BinEncoder::new(&mut buf);
            encoder.set_canonical_form(true);
            record.emit(&mut encoder).expect("validated record encodes");
            blob.extend_from_slice(&buf[1..]); // drop the root owner name
            ends.push(blob.len() as u32);
            match rdata {
                RData::CNAME(CNAME(t)) | RData::NS(NS(t)) => targets.push(wire_key(t)),
                RData::SRV(srv) => targets.push(wire_key(&srv.target)),
                RData::MX(mx) => targets.push(wire_key(&mx.exchange)),
                _ => {}
            }
        }
        targets.sort();
        targets.dedup();
        Self {
            rtype,
            blob: blob.into(),
            ends: ends.into(),
            targets: targets.into(),
        }
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Record `i` without its owner name.
    pub fn record(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.blob[start..self.ends[i] as usize]
    }
}

/// A name that exists in a zone: its RRsets (none for an empty non-terminal or a record set
/// without data, both of which answer NODATA).
#[derive(Debug, Clone)]
pub struct Node {
    pub zone: u16,
    pub rrsets: Box<[RrSet]>,
}

impl Node {
    pub fn get(&self, rtype: RecordType) -> Option<&RrSet> {
        self.rrsets.iter().find(|r| r.rtype == rtype)
    }

    pub fn cname(&self) -> Option<&RrSet> {
        self.get(RecordType::CNAME)
    }
}

/// What the DNS path needs of a zone beyond its names.
#[derive(Debug, Clone)]
pub struct ZoneSnap {
    pub name: ZoneName,
    pub apex: Box<[u8]>,
    /// The SOA as the answer to an SOA query.
    pub soa: RrSet,
    /// The SOA for the authority section of negative answers: TTL min(SOA TTL, MINIMUM).
    pub soa_negative: RrSet,
    pub serial: u32,
    /// Default TTL of the zone's records.
    pub ttl: u32,
}

/// Result of looking a name up.
#[derive(Debug)]
pub enum Lookup<'a> {
    /// Not inside any served zone.
    NotOurs,
    /// The name exists; `wildcard` when it was synthesised from `*` (RFC 4592).
    Found {
        zone: &'a ZoneSnap,
        node: &'a Node,
        wildcard: bool,
    },
    /// Inside a zone, and nothing at or matching the name.
    NxDomain { zone: &'a ZoneSnap },
}

/// An immutable view of every served zone. Cloning it is cheap (shards are shared), which is
/// how [`Builder`] publishes a new version after a small change.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    zones: Arc<Vec<ZoneSnap>>,
    zone_index: Arc<Map<u16>>,
    nodes: ShardedMap<Node>,
    /// PTR records synthesised from the zones' addresses, by reverse name.
    reverse: ShardedMap<RrSet>,
    /// Names with records (record sets, not empty non-terminals).
    pub names: usize,
    /// Records across every RRset, SOA and NS included.
    pub records: usize,
}

impl Snapshot {
    /// Builds the snapshot of everything in `tree` at once.
    pub fn build(tree: &crate::zk::tree::Tree) -> Snapshot {
        Builder::new(tree).snapshot()
    }

    pub fn zones(&self) -> &[ZoneSnap] {
        &self.zones
    }

    pub fn zone(&self, idx: u16) -> &ZoneSnap {
        &self.zones[idx as usize]
    }

    /// The deepest served zone containing `key` (a lower-case wire name), with the offset in
    /// `key` where its apex starts.
    pub fn find_zone(&self, key: &[u8]) -> Option<(u16, usize)> {
        if self.zones.is_empty() {
            return None;
        }
        label_offsets(key).find_map(|at| self.zone_index.get(&key[at..]).map(|&z| (z, at)))
    }

    /// Node at exactly `key`, if it belongs to the zone that serves it.
    pub fn node(&self, key: &[u8]) -> Option<&Node> {
        self.nodes.get(key)
    }

    /// Looks a lower-case wire name up: exact match, else wildcard at the closest encloser
    /// (RFC 4592), else NXDOMAIN. `scratch` holds the wildcard key so no allocation is needed.
    pub fn lookup<'a>(&'a self, key: &[u8], scratch: &mut [u8; 257]) -> Lookup<'a> {
        let Some((zidx, apex_at)) = self.find_zone(key) else {
            return Lookup::NotOurs;
        };
        let zone = &self.zones[zidx as usize];
        if let Some(node) = self.nodes.get(key).filter(|n| n.zone == zidx) {
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
            if self.nodes.get(suffix).is_some_and(|n| n.zone == zidx) {
                scratch[0] = 1;
                scratch[1] = b'*';
                scratch[2..2 + suffix.len()].copy_from_slice(suffix);
                let wild = &scratch[..2 + suffix.len()];
                return match self.nodes.get(wild).filter(|n| n.zone == zidx) {
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

    /// Every name with A or AAAA records and its addresses, sorted by name (wildcards left
    /// out: they are not names a hosts file can hold). For the hosts-file writer.
    pub fn addresses(&self) -> Vec<(String, Vec<IpAddr>)> {
        let mut out: Vec<(String, Vec<IpAddr>)> = self
            .nodes
            .iter()
            .filter(|(key, _)| key.first() != Some(&1) || key.get(1) != Some(&b'*'))
            .filter_map(|(key, node)| {
                let mut addrs = Vec::new();
                for set in node.rrsets.iter() {
                    for i in 0..set.len() {
                        let rdata = &set.record(i)[10..];
                        match set.rtype {
                            RecordType::A => {
                                let b: [u8; 4] = rdata.try_into().ok()?;
                                addrs.push(IpAddr::from(b));
                            }
                            RecordType::AAAA => {
                                let b: [u8; 16] = rdata.try_into().ok()?;
                                addrs.push(IpAddr::from(b));
                            }
                            _ => {}
                        }
                    }
                }
                let name = wire_to_string(key);
                (!addrs.is_empty()).then(|| (name.trim_end_matches('.').to_string(), addrs))
            })
            .collect();
        out.sort();
        out
    }

    /// Synthesised PTR records for a reverse name.
    pub fn reverse(&self, key: &[u8]) -> Option<&RrSet> {
        self.reverse.get(key)
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

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

impl Store {
    pub fn new() -> Self {
        Self {
            inner: Arc::new(StoreInner {
                snapshot: ArcSwap::from_pointee(Snapshot::default()),
                ready: AtomicBool::new(false),
                connected: AtomicBool::new(false),
                last_sync_ms: AtomicU64::new(0),
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

    /// A receiver that sees every publish (coalesced: it holds only the latest generation).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.published.subscribe()
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
    use hickory_proto::rr::rdata::A;

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
        let t = tree(&[
            ("c.l", ""),
            ("c.l/web", r#"{"A": ["10.0.0.1", "10.0.0.2"]}"#),
            ("c.l/api.prod", r#"{"A": ["10.0.0.3"]}"#),
            ("c.l/*.wild", r#"{"A": ["10.0.0.4"]}"#),
            ("c.l/empty", ""),
        ]);
        let s = Snapshot::build(&t);
        let mut scratch = [0u8; 257];
        assert_eq!(s.names, 3);
        assert!(matches!(
            s.lookup(&key("web.c.l"), &mut scratch),
            Lookup::Found { wildcard: false, node, .. } if node.get(RecordType::A).unwrap().len() == 2
        ));
        // empty non-terminal
        assert!(matches!(
            s.lookup(&key("prod.c.l"), &mut scratch),
            Lookup::Found { node, .. } if node.rrsets.is_empty()
        ));
        assert!(matches!(
            s.lookup(&key("empty.c.l"), &mut scratch),
            Lookup::Found { node, .. } if node.rrsets.is_empty()
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
        let rev = wire_key(&Name::from("10.0.0.3".parse::<std::net::IpAddr>().unwrap()));
        assert_eq!(s.reverse(&rev).unwrap().len(), 1);
    }

    #[test]
    fn nested_zones_take_their_names() {
        let t = tree(&[
            ("c.l", ""),
            ("c.l/a.sub", r#"{"A": ["10.0.0.1"]}"#),
            ("sub.c.l", ""),
            ("sub.c.l/b", r#"{"A": ["10.0.0.2"]}"#),
        ]);
        let s = Snapshot::build(&t);
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

    #[test]
    fn encodes_records_without_owner() {
        let set = RrSet::new(
            RecordType::A,
            &[RData::A(A("10.1.2.3".parse().unwrap()))],
            30,
        );
        assert_eq!(set.record(0), &[0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 10, 1, 2, 3]);
    }
}
