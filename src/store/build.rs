//! Building snapshots, in full or by change. The [`Builder`] lives in the sync task: it keeps a
//! working [`Snapshot`] plus what it needs to change it in place (which names have record sets,
//! how many sets lie below each name, which owners each address has), so that one changed
//! record set costs a few map writes, not a rebuild of every name.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use foldhash::fast::RandomState;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, RecordType};

use super::{Node, RrSet, Snapshot, ZoneSnap};
use crate::names::{RelName, ZoneName, label_offsets, wire_key, wire_key_str};
use crate::records::RecordData;
use crate::zk::tree::{Change, Tree, ZoneEntry};

type Map<V> = HashMap<Box<[u8]>, V, RandomState>;

/// What one record set put into the snapshot, so a change can take it out again.
#[derive(Debug, Clone)]
struct SetInfo {
    has_data: bool,
    records: usize,
    /// Addresses with the owner and TTL their PTR records carry.
    addrs: Vec<IpAddr>,
    owner: Name,
    ttl: u32,
}

/// Maintains a snapshot across changes; see the module docs.
#[derive(Debug, Clone, Default)]
pub struct Builder {
    snap: Snapshot,
    /// Record sets present, by key.
    sets: Map<SetInfo>,
    /// How many record sets lie strictly below each non-apex name.
    below: Map<u32>,
    /// Owners (with TTL) of each reverse name.
    ptr: Map<Vec<(Name, u32)>>,
}

fn unix_now() -> u32 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

/// The RRsets of one merged record set. A CNAME excludes every other type (RFC 1034 §3.6.2).
fn rrsets_of(data: &RecordData, ttl: u32) -> Vec<RrSet> {
    let mut out = Vec::new();
    if let Some(target) = &data.cname {
        out.push(RrSet::new(
            RecordType::CNAME,
            &[RData::CNAME(CNAME(target.clone()))],
            ttl,
        ));
        return out;
    }
    let mut add = |rtype, mut rdatas: Vec<RData>| {
        // members may repeat a value: one record per distinct value, first one kept
        let mut seen: Vec<RData> = Vec::with_capacity(rdatas.len());
        rdatas.retain(|r| {
            let new = !seen.contains(r);
            if new {
                seen.push(r.clone());
            }
            new
        });
        if !rdatas.is_empty() {
            out.push(RrSet::new(rtype, &rdatas, ttl));
        }
    };
    add(
        RecordType::A,
        data.a.iter().map(|a| RData::A(A(*a))).collect(),
    );
    add(
        RecordType::AAAA,
        data.aaaa.iter().map(|a| RData::AAAA(AAAA(*a))).collect(),
    );
    add(
        RecordType::TXT,
        data.txt
            .iter()
            .map(|t| RData::TXT(TXT::from_bytes(t.iter().map(|s| &**s).collect())))
            .collect(),
    );
    add(
        RecordType::SRV,
        data.srv
            .iter()
            .map(|(p, w, port, t)| RData::SRV(SRV::new(*p, *w, *port, t.clone())))
            .collect(),
    );
    add(
        RecordType::MX,
        data.mx
            .iter()
            .map(|(p, e)| RData::MX(MX::new(*p, e.clone())))
            .collect(),
    );
    add(
        RecordType::PTR,
        data.ptr
            .iter()
            .map(|p| RData::PTR(PTR(p.clone())))
            .collect(),
    );
    out
}

fn zone_snap(zone: &ZoneName, entry: &ZoneEntry) -> ZoneSnap {
    let s = &entry.settings;
    let serial = s.serial.unwrap_or(if entry.changed == 0 {
        unix_now()
    } else {
        entry.changed
    });
    let soa = RData::SOA(SOA::new(
        s.mname.clone(),
        s.rname.clone(),
        serial,
        s.refresh as i32,
        s.retry as i32,
        s.expire as i32,
        s.minimum,
    ));
    ZoneSnap {
        name: zone.clone(),
        apex: wire_key_str(zone.as_str()),
        soa: RrSet::new(RecordType::SOA, std::slice::from_ref(&soa), s.ttl),
        soa_negative: RrSet::new(RecordType::SOA, &[soa], s.ttl.min(s.minimum)),
        serial,
        ttl: s.ttl,
    }
}

impl Builder {
    /// Builds everything in `tree`.
    pub fn new(tree: &Tree) -> Self {
        let mut b = Builder::default();
        let mut zones = Vec::new();
        let mut index = Map::default();
        for (i, (zone, entry)) in tree.zones().iter().enumerate() {
            let snap = zone_snap(zone, entry);
            index.insert(snap.apex.clone(), i as u16);
            zones.push(snap);
        }
        b.snap.zones = Arc::new(zones);
        b.snap.zone_index = Arc::new(index);
        for (zone, entry) in tree.zones() {
            b.refresh_apex(tree, zone);
            for name in entry.sets.keys() {
                if !name.is_apex() {
                    b.update_set(tree, zone, name);
                }
            }
        }
        b
    }

    /// The current snapshot; shares all unchanged data with the builder.
    pub fn snapshot(&self) -> Snapshot {
        self.snap.clone()
    }

    /// Brings the snapshot up to date with one change of `tree`.
    pub fn apply(&mut self, tree: &Tree, change: &Change) {
        match change {
            Change::Zones => *self = Builder::new(tree),
            Change::Zone(zone) => {
                let ttl_changed = self.zone_index(zone).is_some_and(|i| {
                    tree.zones()
                        .get(zone)
                        .is_some_and(|e| e.settings.ttl != self.snap.zones[i as usize].ttl)
                });
                if ttl_changed {
                    // every set without its own TTL changes: rare enough to rebuild
                    *self = Builder::new(tree);
                } else {
                    self.refresh_apex(tree, zone);
                }
            }
            Change::Set(zone, name) => {
                if name.is_apex() {
                    self.refresh_apex(tree, zone);
                } else {
                    self.update_set(tree, zone, name);
                    self.refresh_serial(tree, zone);
                }
            }
        }
    }

    fn zone_index(&self, zone: &ZoneName) -> Option<u16> {
        self.snap
            .zone_index
            .get(&*wire_key_str(zone.as_str()))
            .copied()
    }

    /// The default SOA serial follows the zone's last change.
    fn refresh_serial(&mut self, tree: &Tree, zone: &ZoneName) {
        let (Some(idx), Some(entry)) = (self.zone_index(zone), tree.zones().get(zone)) else {
            return;
        };
        if entry.settings.serial.is_none() && self.snap.zones[idx as usize].serial != entry.changed
        {
            self.refresh_apex(tree, zone);
        }
    }

    /// Rebuilds a zone's SOA and its apex node (SOA, NS and the `@` record set).
    fn refresh_apex(&mut self, tree: &Tree, zone: &ZoneName) {
        let (Some(idx), Some(entry)) = (self.zone_index(zone), tree.zones().get(zone)) else {
            return;
        };
        let snap = zone_snap(zone, entry);
        let ns: Vec<RData> = entry
            .settings
            .ns
            .iter()
            .map(|n| RData::NS(NS(n.clone())))
            .collect();
        let mut rrsets = vec![snap.soa.clone(), RrSet::new(RecordType::NS, &ns, snap.ttl)];
        let apex = snap.apex.clone();
        let old = self.sets.remove(&apex);
        let new = entry.sets.get(&RelName::apex()).map(|s| s.merged());
        if let Some(data) = &new {
            let ttl = data.ttl.unwrap_or(snap.ttl);
            let mut own = rrsets_of(data, ttl);
            // a CNAME cannot live at the apex beside SOA and NS
            own.retain(|r| r.rtype != RecordType::CNAME);
            let info = self.set_info(zone.to_name(), data, ttl, &own);
            rrsets.extend(own);
            self.account(old.as_ref(), Some(&info), &apex);
            self.sets.insert(apex.clone(), info);
        } else {
            self.account(old.as_ref(), None, &apex);
        }
        Arc::make_mut(&mut self.snap.zones)[idx as usize] = snap;
        self.snap.nodes.insert(
            &apex,
            Node {
                zone: idx,
                rrsets: rrsets.into(),
            },
        );
    }

    fn set_info(&self, owner: Name, data: &RecordData, ttl: u32, rrsets: &[RrSet]) -> SetInfo {
        let wildcard = owner.is_wildcard();
        SetInfo {
            has_data: !rrsets.is_empty(),
            records: rrsets.iter().map(RrSet::len).sum(),
            addrs: if wildcard {
                Vec::new()
            } else {
                data.a
                    .iter()
                    .map(|a| IpAddr::V4(*a))
                    .chain(data.aaaa.iter().map(|a| IpAddr::V6(*a)))
                    .collect()
            },
            owner,
            ttl,
        }
    }

    /// Moves the counters and PTR records from what a set contributed before to after.
    fn account(&mut self, old: Option<&SetInfo>, new: Option<&SetInfo>, _key: &[u8]) {
        if let Some(o) = old {
            self.snap.names -= usize::from(o.has_data);
            self.snap.records -= o.records;
            for ip in &o.addrs {
                self.ptr_change(*ip, &o.owner, None);
            }
        }
        if let Some(n) = new {
            self.snap.names += usize::from(n.has_data);
            self.snap.records += n.records;
            for ip in &n.addrs {
                self.ptr_change(*ip, &n.owner, Some(n.ttl));
            }
        }
    }

    /// Adds (`ttl` given) or removes `owner` as a PTR target of `ip`.
    fn ptr_change(&mut self, ip: IpAddr, owner: &Name, ttl: Option<u32>) {
        let key = wire_key(&Name::from(ip));
        let owners = self.ptr.entry(key.clone()).or_default();
        match ttl {
            Some(ttl) => {
                if !owners.iter().any(|(o, _)| o == owner) {
                    owners.push((owner.clone(), ttl));
                }
            }
            None => owners.retain(|(o, _)| o != owner),
        }
        if owners.is_empty() {
            self.ptr.remove(&key);
            self.snap.reverse.remove(&key);
        } else {
            let ttl = owners.iter().map(|(_, t)| *t).min().unwrap_or(0);
            let rdatas: Vec<RData> = owners
                .iter()
                .map(|(o, _)| RData::PTR(PTR(o.clone())))
                .collect();
            self.snap
                .reverse
                .insert(&key, RrSet::new(RecordType::PTR, &rdatas, ttl));
        }
    }

    /// Re-reads one (non-apex) record set from the tree into the snapshot.
    fn update_set(&mut self, tree: &Tree, zone: &ZoneName, name: &RelName) {
        let Some(idx) = self.zone_index(zone) else {
            return;
        };
        let key = wire_key_str(&name.fqdn(zone));
        if self.snap.find_zone(&key).map(|(z, _)| z) != Some(idx) {
            return; // below a nested zone's apex: that zone answers for it
        }
        let entry = &tree.zones()[zone];
        let new = entry.sets.get(name).map(|s| s.merged());
        let old = self.sets.remove(&key);
        match new {
            Some(data) => {
                let ttl = data.ttl.unwrap_or(entry.settings.ttl);
                let rrsets = rrsets_of(&data, ttl);
                let info = self.set_info(name.to_name(zone), &data, ttl, &rrsets);
                self.account(old.as_ref(), Some(&info), &key);
                self.snap.nodes.insert(
                    &key,
                    Node {
                        zone: idx,
                        rrsets: rrsets.into(),
                    },
                );
                if old.is_none() {
                    self.add_ancestors(&key, idx);
                }
                self.sets.insert(key, info);
            }
            None => {
                let Some(old) = old else {
                    return;
                };
                self.account(Some(&old), None, &key);
                if self.below.contains_key(&key) {
                    // still has names below it: an empty non-terminal now
                    self.snap.nodes.insert(
                        &key,
                        Node {
                            zone: idx,
                            rrsets: Box::new([]),
                        },
                    );
                } else {
                    self.snap.nodes.remove(&key);
                }
                self.remove_ancestors(&key, idx);
            }
        }
    }

    /// Proper ancestors of `key` below its zone's apex.
    fn ancestors(&self, key: &[u8], zone: u16) -> Vec<Box<[u8]>> {
        let apex_len = self.snap.zones[zone as usize].apex.len();
        label_offsets(key)
            .skip(1)
            .map(|at| &key[at..])
            .take_while(|s| s.len() > apex_len)
            .map(Box::from)
            .collect()
    }

    fn add_ancestors(&mut self, key: &[u8], zone: u16) {
        for anc in self.ancestors(key, zone) {
            *self.below.entry(anc.clone()).or_default() += 1;
            if !self.snap.nodes.contains_key(&anc) {
                self.snap.nodes.insert(
                    &anc,
                    Node {
                        zone,
                        rrsets: Box::new([]),
                    },
                );
            }
        }
    }

    fn remove_ancestors(&mut self, key: &[u8], zone: u16) {
        for anc in self.ancestors(key, zone) {
            let gone = match self.below.get_mut(&anc) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                _ => {
                    self.below.remove(&anc);
                    true
                }
            };
            if gone && !self.sets.contains_key(&anc) {
                self.snap.nodes.remove(&anc);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Lookup;
    use crate::zk::Layout;
    use crate::zk::tree::NodeState;

    fn put(t: &mut Tree, path: &str, data: Option<&str>) -> Option<Change> {
        let l = Layout::new("/z").unwrap();
        let state = data.map(|d| NodeState {
            data: d.as_bytes().to_vec(),
            mzxid: 1,
            mtime: 1_000_000,
        });
        t.apply(&l, &format!("/z/zones/{path}"), state.as_ref())
    }

    /// Everything a lookup can observe, for comparing snapshots.
    fn observe(s: &Snapshot, names: &[&str]) -> Vec<String> {
        let mut scratch = [0u8; 257];
        let mut out: Vec<String> = names
            .iter()
            .map(|n| {
                let key = wire_key_str(n);
                match s.lookup(&key, &mut scratch) {
                    Lookup::NotOurs => format!("{n}: not ours"),
                    Lookup::NxDomain { zone } => format!("{n}: nx {}", zone.name),
                    Lookup::Found {
                        zone,
                        node,
                        wildcard,
                    } => format!(
                        "{n}: {} {wildcard} {:?}",
                        zone.name,
                        node.rrsets
                            .iter()
                            .map(|r| (
                                r.rtype,
                                (0..r.len())
                                    .map(|i| r.record(i).to_vec())
                                    .collect::<Vec<_>>()
                            ))
                            .collect::<Vec<_>>()
                    ),
                }
            })
            .collect();
        out.push(format!("names {} records {}", s.names, s.records));
        let mut rev: Vec<String> = s
            .reverse
            .iter()
            .map(|(k, v)| format!("{k:?} {}", v.len()))
            .collect();
        rev.sort();
        out.extend(rev);
        out
    }

    #[test]
    fn incremental_changes_equal_a_full_build() {
        let names = [
            "c.l",
            "web.c.l",
            "a.b.c.l",
            "b.c.l",
            "x.b.c.l",
            "y.a.b.c.l",
            "w.c.l",
            "q.w.c.l",
            "sub.c.l",
            "s.sub.c.l",
            "n.sub.c.l",
            "example.com",
        ];
        let steps: Vec<(&str, Option<&str>)> = vec![
            ("c.l", Some("")),
            ("c.l/web", Some(r#"{"A":["10.0.0.1"]}"#)),
            ("c.l/a.b", Some(r#"{"A":["10.0.0.2"]}"#)),
            ("c.l/web/m1", Some(r#"{"A":["10.0.0.3"]}"#)),
            ("c.l/*.w", Some(r#"{"TXT":["w"]}"#)),
            ("c.l/b", Some(r#"{"AAAA":["fd00::1"]}"#)),
            ("c.l/a.b", None),
            ("c.l/web/m1", None),
            ("c.l/@", Some(r#"{"A":["10.0.0.9"]}"#)),
            ("c.l/b", None),
            ("sub.c.l", Some("")),
            ("c.l/n.sub", Some(r#"{"A":["10.0.0.5"]}"#)),
            ("sub.c.l/s", Some(r#"{"A":["10.0.0.6"]}"#)),
            ("c.l", Some(r#"{"soa":{"serial":9}}"#)),
            ("c.l/x.b", Some(r#"{"A":["10.0.0.1"]}"#)),
            ("c.l/x.b", Some(r#"{"A":["10.0.0.7"]}"#)),
            ("sub.c.l/s", None),
            ("c.l", Some(r#"{"ttl": 60}"#)),
        ];
        let mut tree = Tree::new(None);
        let mut builder = Builder::new(&tree);
        for (path, data) in steps {
            if let Some(change) = put(&mut tree, path, data) {
                builder.apply(&tree, &change);
            }
            let full = Builder::new(&tree).snapshot();
            assert_eq!(
                observe(&builder.snapshot(), &names),
                observe(&full, &names),
                "after {path} = {data:?}"
            );
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
        /// Any sequence of node changes, applied one by one, gives the same map as a build
        /// from the final tree.
        #[test]
        fn any_change_sequence_equals_a_full_build(
            ops in proptest::collection::vec((0usize..3, 0usize..8, 0usize..3, 0usize..7), 1..40)
        ) {
            let zones = ["a.t", "s.a.t", "b.t"];
            let sets = ["web", "x.y", "y", "*", "*.y", "@", "m.s", "deep.x.y"];
            let members = [None, Some("m1"), Some("m2")];
            let data = [
                None,
                Some(""),
                Some(r#"{"A":["10.0.0.1"]}"#),
                Some(r#"{"A":["10.0.0.2"],"AAAA":["fd00::2"]}"#),
                Some(r#"{"CNAME":"web"}"#),
                Some(r#"{"TXT":["t"],"ttl":9}"#),
                Some("{bad"),
            ];
            let names: Vec<String> = zones
                .iter()
                .flat_map(|z| {
                    sets.iter()
                        .map(move |n| if *n == "@" { z.to_string() } else { format!("{n}.{z}").replace('*', "w") })
                        .chain([format!("other.{z}"), z.to_string()])
                })
                .collect();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let mut tree = Tree::new(None);
            let mut builder = Builder::new(&tree);
            for (z, n, m, d) in ops {
                let path = match (n, members[m]) {
                    (7, _) if d == 0 => zones[z].to_string(), // delete/re-create whole zones sometimes
                    (_, None) => format!("{}/{}", zones[z], sets[n]),
                    (_, Some(member)) => format!("{}/{}/{member}", zones[z], sets[n]),
                };
                let value = if path == zones[z] { None } else { data[d] };
                if !path.contains('/') {
                    put(&mut tree, &path, None);
                    builder = Builder::new(&tree);
                    put(&mut tree, &path, Some(""));
                    builder.apply(&tree, &Change::Zones);
                    continue;
                }
                if !tree.has_zone(zones[z]) {
                    if let Some(change) = put(&mut tree, zones[z], Some("")) {
                        builder.apply(&tree, &change);
                    }
                }
                if let Some(change) = put(&mut tree, &path, value) {
                    builder.apply(&tree, &change);
                }
                let full = Builder::new(&tree).snapshot();
                proptest::prop_assert_eq!(observe(&builder.snapshot(), &names), observe(&full, &names), "after {} = {:?}", path, value);
            }
        }
    }
}
