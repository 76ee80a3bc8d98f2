//! Changing a snapshot in place. The [`Builder`] lives in the sync task and holds the working
//! [`Snapshot`]; the snapshot itself is its state (each entry knows whether it is a record set
//! and how many sets lie below it, and a set's old addresses are read back from its entry), so
//! a changed record set costs a few arena writes and nothing is kept twice.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use foldhash::fast::RandomState;
use hickory_proto::rr::rdata::{NS, SOA};
use hickory_proto::rr::{RData, RecordType};

use super::node::{
    FLAG_NAME, FLAG_SET, NodeRef, decode_data, encode_node, encode_rrset, gives_ptrs, rrsets_of,
    with_below,
};
use super::{Snapshot, ZoneSnap, unix_now};
use crate::names::{AddrKey, RelName, ZoneName, label_offsets, wire_key_str, wire_to_string};
use crate::records::{RecordData, ZoneSettings};

/// The change cannot be made in place (a zone nested in another appeared or went, or a zone's
/// default TTL changed): read everything again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resync;

/// What the builder keeps per zone besides the snapshot's [`ZoneSnap`].
#[derive(Debug, Clone)]
struct ZoneBuild {
    settings: ZoneSettings,
    /// Unix seconds of the zone's last change: the default SOA serial.
    changed: u32,
    /// The merged data of the apex record set (`@`), which shares its entry with SOA and NS.
    apex: Option<RecordData>,
}

/// Maintains a snapshot across changes; see the module docs.
#[derive(Debug, Clone, Default)]
pub struct Builder {
    snap: Snapshot,
    zones: HashMap<u16, ZoneBuild>,
    /// Record sets in the snapshot (apexes not counted), to know when zones may nest freely.
    sets: usize,
}

fn encoded_rrset(rtype: RecordType, rdata: RData, ttl: u32) -> Box<[u8]> {
    let mut out = Vec::new();
    encode_rrset(rtype, &[rdata], ttl, &mut out);
    out.into()
}

/// The SOA serial a zone has now: its settings', else the time of its last change.
fn zone_serial(z: &ZoneBuild) -> u32 {
    z.settings.serial.unwrap_or(if z.changed == 0 {
        unix_now()
    } else {
        z.changed
    })
}

fn soa_rdata(s: &ZoneSettings, serial: u32) -> RData {
    RData::SOA(SOA::new(
        s.mname.clone(),
        s.rname.clone(),
        serial,
        s.refresh as i32,
        s.retry as i32,
        s.expire as i32,
        s.minimum,
    ))
}

fn zone_snap(zone: &ZoneName, z: &ZoneBuild, soa: RData) -> ZoneSnap {
    let s = &z.settings;
    ZoneSnap {
        name: zone.clone(),
        apex: wire_key_str(zone.as_str()),
        soa_negative: encoded_rrset(RecordType::SOA, soa, s.ttl.min(s.minimum)),
        settings: s.clone(),
    }
}

/// Whether one zone is the other or below it.
fn nested(a: &str, b: &str) -> bool {
    let below = |x: &str, y: &str| x == y || x.ends_with(&format!(".{y}"));
    below(a, b) || below(b, a)
}

/// The addresses an entry gives PTR records to.
fn ptr_addresses(node: &NodeRef<'_>, key: &[u8]) -> Vec<IpAddr> {
    if !gives_ptrs(node, key) {
        return Vec::new();
    }
    node.addresses().collect()
}

impl Builder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Gives back spare capacity after a full build.
    pub fn shrink_to_fit(&mut self) {
        let reverse = self.snap.reverse.unload();
        self.snap.nodes.pack();
        self.snap.reverse.reload(reverse);
    }

    /// The current snapshot; shares all unchanged data with the builder.
    pub fn snapshot(&self) -> Snapshot {
        self.snap.clone()
    }

    pub fn zone_index(&self, zone: &ZoneName) -> Option<u16> {
        self.snap.zone_index(&wire_key_str(zone.as_str()))
    }

    /// Adds a zone (its apex: SOA and NS).
    pub fn add_zone(
        &mut self,
        zone: &ZoneName,
        settings: &ZoneSettings,
        changed: u32,
    ) -> Result<(), Resync> {
        if self.zone_index(zone).is_some() {
            return self.update_zone(zone, settings, changed);
        }
        if self.sets > 0
            && self
                .snap
                .zones()
                .any(|z| nested(z.name.as_str(), zone.as_str()))
        {
            return Err(Resync); // names of the outer zone move between zones
        }
        let idx = self.snap.zones.len() as u16;
        let build = ZoneBuild {
            settings: settings.clone(),
            changed,
            apex: None,
        };
        let snap = zone_snap(zone, &build, soa_rdata(settings, zone_serial(&build)));
        Arc::make_mut(&mut self.snap.zone_index).insert(snap.apex.clone(), idx);
        Arc::make_mut(&mut self.snap.zones).push(Some(snap));
        self.zones.insert(idx, build);
        self.write_apex(idx);
        Ok(())
    }

    /// Removes a zone and everything in it.
    pub fn remove_zone(&mut self, zone: &ZoneName) -> Result<(), Resync> {
        let Some(idx) = self.zone_index(zone) else {
            return Ok(());
        };
        if self
            .snap
            .zones()
            .any(|z| z.name != *zone && nested(z.name.as_str(), zone.as_str()))
        {
            return Err(Resync);
        }
        let apex = wire_key_str(zone.as_str());
        let mut gone_sets = 0;
        let keys: Vec<Box<[u8]>> = self
            .snap
            .nodes
            .iter()
            .filter(|(k, v)| {
                let node = NodeRef::parse(v);
                // the apex's own set is not counted in `sets`
                gone_sets += usize::from(node.zone == idx && node.is_set() && *k != &apex[..]);
                node.zone == idx
            })
            .map(|(k, _)| Box::from(k))
            .collect();
        for key in keys {
            self.forget(&key);
            self.snap.nodes.remove(&key);
        }
        self.sets -= gone_sets;
        Arc::make_mut(&mut self.snap.zone_index).remove(&apex);
        Arc::make_mut(&mut self.snap.zones)[idx as usize] = None;
        self.zones.remove(&idx);
        Ok(())
    }

    /// New settings for a known zone. A new default TTL changes every set that has none of
    /// its own, which only a full read can redo.
    pub fn update_zone(
        &mut self,
        zone: &ZoneName,
        settings: &ZoneSettings,
        changed: u32,
    ) -> Result<(), Resync> {
        let Some(idx) = self.zone_index(zone) else {
            return self.add_zone(zone, settings, changed);
        };
        let z = self
            .zones
            .get_mut(&idx)
            .expect("zone state of a known zone");
        if z.settings.ttl != settings.ttl {
            return Err(Resync);
        }
        z.settings = settings.clone();
        z.changed = z.changed.max(changed);
        self.write_apex(idx);
        Ok(())
    }

    /// The zone changed at `when`: its default serial follows.
    pub fn touch_zone(&mut self, zone: &ZoneName, when: u32) {
        let Some(idx) = self.zone_index(zone) else {
            return;
        };
        let z = self
            .zones
            .get_mut(&idx)
            .expect("zone state of a known zone");
        if when > z.changed {
            z.changed = when;
            if z.settings.serial.is_none() {
                self.write_apex(idx);
            }
        }
    }

    /// Rewrites a zone's SOA and its apex entry (SOA, NS and the `@` record set).
    fn write_apex(&mut self, idx: u16) {
        let z = &self.zones[&idx];
        let name = self.snap.zones[idx as usize]
            .as_ref()
            .expect("known zone")
            .name
            .clone();
        let soa = soa_rdata(&z.settings, zone_serial(z));
        let snap = zone_snap(&name, z, soa.clone());
        let ns: Vec<RData> = z
            .settings
            .ns
            .iter()
            .map(|n| RData::NS(NS(n.clone())))
            .collect();
        let ttl = z.settings.ttl;
        let own_ttl = z.apex.as_ref().and_then(|d| d.ttl).unwrap_or(ttl);
        let own = z.apex.as_ref().map(rrsets_of).unwrap_or_default();
        let mut sets: Vec<(RecordType, &[RData], u32)> = vec![
            (RecordType::SOA, std::slice::from_ref(&soa), ttl),
            (RecordType::NS, &ns, ttl),
        ];
        // a CNAME cannot live at the apex beside SOA and NS
        sets.extend(
            own.iter()
                .filter(|(t, _)| *t != RecordType::CNAME)
                .map(|(t, r)| (*t, &r[..], own_ttl)),
        );
        let apex = snap.apex.clone();
        let below = self.snap.node(&apex).map_or(0, |n| n.below);
        let flags = match &z.apex {
            Some(d) if !d.is_empty() => FLAG_SET | FLAG_NAME,
            Some(_) => FLAG_SET,
            None => 0,
        };
        let entry = encode_node(idx, flags, below, sets);
        Arc::make_mut(&mut self.snap.zones)[idx as usize] = Some(snap);
        self.replace(&apex, &entry);
    }

    /// Writes `entry` at `key`, moving counters and synthesised PTRs from the old entry.
    fn replace(&mut self, key: &[u8], entry: &[u8]) -> bool {
        if self.snap.nodes.get(key) == Some(entry) {
            return false;
        }
        let old_addrs = self.uncount(key);
        let node = NodeRef::parse(entry);
        self.snap.names += usize::from(node.flags & FLAG_NAME != 0);
        self.snap.records += node.records();
        let new_addrs = ptr_addresses(&node, key);
        // only the addresses that came or went change (a set with thousands of members
        // changes one address per event); TTLs are read from the entry when answering
        let old_set: HashSet<IpAddr, RandomState> = old_addrs.iter().copied().collect();
        let new_set: HashSet<IpAddr, RandomState> = new_addrs.iter().copied().collect();
        for ip in old_addrs.iter().filter(|ip| !new_set.contains(ip)) {
            self.ptr_change(*ip, key, false);
        }
        for ip in new_addrs.iter().filter(|ip| !old_set.contains(ip)) {
            self.ptr_change(*ip, key, true);
        }
        self.snap.nodes.insert(key, entry);
        true
    }

    /// Takes an entry's counters out of the totals; returns the addresses it gave PTRs to.
    fn uncount(&mut self, key: &[u8]) -> Vec<IpAddr> {
        let Some(old) = self.snap.node(key) else {
            return Vec::new();
        };
        let (name, records) = (old.flags & FLAG_NAME != 0, old.records());
        let addrs = ptr_addresses(&old, key);
        self.snap.names -= usize::from(name);
        self.snap.records -= records;
        addrs
    }

    /// Takes an entry's counters and PTRs out (before it is replaced or removed).
    fn forget(&mut self, key: &[u8]) {
        for ip in self.uncount(key) {
            self.ptr_change(ip, key, false);
        }
    }

    /// Adds or removes `owner` (a key in `nodes`) as a holder of `ip`: its key's hash, one
    /// copy per holder, so that two names with the same hash (as unlikely as that is) each
    /// count.
    fn ptr_change(&mut self, ip: IpAddr, owner: &[u8], add: bool) {
        let key = AddrKey::from(ip);
        let hash = self.snap.nodes.hash_of(owner);
        if add {
            self.snap.reverse.add(key, hash);
        } else {
            self.snap.reverse.remove(key, hash);
        }
    }

    /// The znode names of a zone's record sets (`@` for the apex), in no particular order.
    /// Walks the whole table: for the rare catch-up that finds a zone's names changed.
    pub fn set_names(&self, zone: &ZoneName) -> Vec<String> {
        let Some(idx) = self.zone_index(zone) else {
            return Vec::new();
        };
        let apex_key = wire_key_str(zone.as_str());
        let suffix = format!(".{zone}.");
        let mut names: Vec<String> = self
            .snap
            .sets(idx)
            .filter(|(key, _)| **key != *apex_key)
            .filter_map(|(key, _)| {
                wire_to_string(key)
                    .strip_suffix(suffix.as_str())
                    .map(str::to_string)
            })
            .collect();
        if self.zones[&idx].apex.is_some() {
            names.push("@".to_string());
        }
        names
    }

    /// Whether a record set exists at `name`.
    pub fn has_set(&self, zone: &ZoneName, name: &RelName) -> bool {
        let Some(idx) = self.zone_index(zone) else {
            return false;
        };
        if name.is_apex() {
            return self.zones[&idx].apex.is_some();
        }
        self.snap
            .node(&wire_key_str(&name.fqdn(zone)))
            .is_some_and(|n| n.zone == idx && n.is_set())
    }

    /// The merged data a record set has now (read back from its entry).
    pub fn set_data(&self, zone: &ZoneName, name: &RelName) -> Option<RecordData> {
        let idx = self.zone_index(zone)?;
        if name.is_apex() {
            return self.zones[&idx].apex.clone();
        }
        let node = self.snap.node(&wire_key_str(&name.fqdn(zone)))?;
        (node.zone == idx && node.is_set()).then(|| decode_data(&node))
    }

    /// Puts a record set's (merged) data in place. Returns whether the snapshot changed.
    pub fn put_set(&mut self, zone: &ZoneName, name: &RelName, data: &RecordData) -> bool {
        let Some(idx) = self.zone_index(zone) else {
            return false;
        };
        if name.is_apex() {
            let z = self.zones.get_mut(&idx).expect("known zone");
            if z.apex.as_ref() == Some(data) {
                return false;
            }
            z.apex = Some(data.clone());
            self.write_apex(idx);
            return true;
        }
        let key = wire_key_str(&name.fqdn(zone));
        if self.snap.find_zone(&key).map(|(z, _)| z) != Some(idx) {
            return false; // below a nested zone's apex: that zone answers for it
        }
        let old = self.snap.node(&key).map(|n| (n.is_set(), n.below));
        let ttl = data.ttl.unwrap_or(self.zones[&idx].settings.ttl);
        let sets = rrsets_of(data);
        let flags = if data.is_empty() {
            FLAG_SET
        } else {
            FLAG_SET | FLAG_NAME
        };
        let below = old.map_or(0, |o| o.1);
        let entry = encode_node(
            idx,
            flags,
            below,
            sets.iter().map(|(t, r)| (*t, &r[..], ttl)),
        );
        if !self.replace(&key, &entry) {
            return false;
        }
        if !old.is_some_and(|o| o.0) {
            self.sets += 1;
            self.add_below(&key, idx);
        }
        true
    }

    /// Removes a record set. Returns whether the snapshot changed.
    pub fn remove_set(&mut self, zone: &ZoneName, name: &RelName) -> bool {
        let Some(idx) = self.zone_index(zone) else {
            return false;
        };
        if name.is_apex() {
            let z = self.zones.get_mut(&idx).expect("known zone");
            if z.apex.take().is_none() {
                return false;
            }
            self.write_apex(idx);
            return true;
        }
        let key = wire_key_str(&name.fqdn(zone));
        let Some(below) = self
            .snap
            .node(&key)
            .filter(|n| n.zone == idx && n.is_set())
            .map(|n| n.below)
        else {
            return false;
        };
        self.forget(&key);
        if below > 0 {
            // still has names below it: an empty non-terminal now
            let ent = encode_node(idx, 0, below, []);
            self.snap.nodes.insert(&key, &ent);
        } else {
            self.snap.nodes.remove(&key);
        }
        self.sets -= 1;
        self.remove_below(&key, idx);
        true
    }

    /// Proper ancestors of `key` below its zone's apex.
    fn ancestors(&self, key: &[u8], zone: u16) -> Vec<Box<[u8]>> {
        let apex_len = self.snap.zones[zone as usize]
            .as_ref()
            .map_or(usize::MAX, |z| z.apex.len());
        label_offsets(key)
            .skip(1)
            .map(|at| &key[at..])
            .take_while(|s| s.len() > apex_len)
            .map(Box::from)
            .collect()
    }

    /// One more record set below each ancestor; ancestors that did not exist become empty
    /// non-terminals (RFC 8020).
    fn add_below(&mut self, key: &[u8], zone: u16) {
        for anc in self.ancestors(key, zone) {
            let entry = match self.snap.nodes.get(&anc) {
                Some(old) => with_below(old, NodeRef::parse(old).below + 1),
                None => encode_node(zone, 0, 1, []),
            };
            self.snap.nodes.insert(&anc, &entry);
        }
    }

    /// One record set fewer below each ancestor; empty non-terminals left with none go.
    fn remove_below(&mut self, key: &[u8], zone: u16) {
        for anc in self.ancestors(key, zone) {
            let Some(old) = self.snap.nodes.get(&anc) else {
                continue;
            };
            let node = NodeRef::parse(old);
            let below = node.below.saturating_sub(1);
            if below == 0 && !node.is_set() {
                self.snap.nodes.remove(&anc);
            } else {
                let entry = with_below(old, below);
                self.snap.nodes.insert(&anc, &entry);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(s: &str) -> ZoneName {
        ZoneName::parse(s).unwrap()
    }

    fn add(b: &mut Builder, z: &str) -> Result<(), Resync> {
        b.add_zone(&zone(z), &ZoneSettings::defaults(&zone(z)), 1)
    }

    #[test]
    fn removed_zones_leave_no_sets_counted() {
        let mut b = Builder::new();
        add(&mut b, "c.l").unwrap();
        add(&mut b, "d.l").unwrap();
        let data = RecordData {
            a: vec!["10.0.0.1".parse().unwrap()],
            ..Default::default()
        };
        let rel = |name: &str, z: &str| RelName::from_znode(name, &zone(z)).unwrap();
        for name in ["web", "api.prod"] {
            assert!(b.put_set(&zone("c.l"), &rel(name, "c.l"), &data));
        }
        assert!(b.put_set(&zone("c.l"), &RelName::apex(), &data));
        assert_eq!(b.sets, 2, "the apex's set is not counted");
        b.remove_zone(&zone("c.l")).unwrap();
        assert_eq!(b.sets, 0);
        // with no record set left anywhere, a zone may nest in another without a full read
        assert_eq!(add(&mut b, "sub.d.l"), Ok(()));
        assert!(b.put_set(&zone("d.l"), &rel("www", "d.l"), &data));
        assert_eq!(add(&mut b, "deeper.sub.d.l"), Err(Resync));
    }

    #[test]
    fn ptrs_follow_the_holders_of_an_address() {
        let mut b = Builder::new();
        add(&mut b, "c.l").unwrap();
        let c = zone("c.l");
        let rel = |name: &str| RelName::from_znode(name, &c).unwrap();
        let at = |ttl: Option<u32>, ips: &[&str]| RecordData {
            ttl,
            a: ips.iter().map(|ip| ip.parse().unwrap()).collect(),
            ..Default::default()
        };
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let ptrs = |b: &Builder| {
            let snap = b.snapshot();
            let mut v: Vec<(String, u32)> = snap
                .holders(AddrKey::from(ip))
                .map(|h| {
                    h.iter(0)
                        .map(|(name, ttl)| (crate::names::wire_to_string(name), ttl))
                        .collect()
                })
                .unwrap_or_default();
            v.sort();
            v
        };
        b.put_set(&c, &rel("web"), &at(None, &["10.0.0.1"]));
        b.put_set(&c, &rel("api"), &at(Some(60), &["10.0.0.2", "10.0.0.1"]));
        b.put_set(&c, &rel("*.w"), &at(None, &["10.0.0.1"]));
        let (api, web) = ("api.c.l.".to_string(), "web.c.l.".to_string());
        assert_eq!(
            ptrs(&b),
            [(api.clone(), 60), (web.clone(), 5)],
            "not the wildcard"
        );
        // a new TTL shows without the reverse entry being rewritten
        b.put_set(&c, &rel("api"), &at(Some(90), &["10.0.0.2", "10.0.0.1"]));
        assert_eq!(ptrs(&b), [(api.clone(), 90), (web, 5)]);
        assert!(b.remove_set(&c, &rel("web")));
        assert_eq!(ptrs(&b), [(api, 90)]);
        b.put_set(&c, &rel("api"), &at(Some(90), &["10.0.0.2"]));
        assert_eq!(ptrs(&b), []);
        assert_eq!(b.snapshot().reverse.len(), 1, "10.0.0.2 only");
    }

    #[test]
    fn holders_rotate_without_losing_any() {
        let mut b = Builder::new();
        add(&mut b, "c.l").unwrap();
        let c = zone("c.l");
        let data = RecordData {
            a: vec!["10.0.0.9".parse().unwrap()],
            ..Default::default()
        };
        for name in ["a", "b", "c", "d"] {
            b.put_set(&c, &RelName::from_znode(name, &c).unwrap(), &data);
        }
        let snap = b.snapshot();
        let holders = snap.holders(AddrKey::from(IpAddr::V4(data.a[0]))).unwrap();
        assert_eq!(holders.len(), 4);
        let names =
            |start| -> Vec<Vec<u8>> { holders.iter(start).map(|(n, _)| n.to_vec()).collect() };
        let first = names(0);
        for start in 1..6 {
            let mut want = first.clone();
            want.rotate_left(start % 4);
            assert_eq!(names(start), want, "from {start}");
        }
    }
}
