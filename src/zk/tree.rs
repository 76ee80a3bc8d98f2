//! The watcher's own copy of the zones subtree, decoded: zones, their record sets and each set's
//! registered members. Only the sync task writes it; every change goes through [`Tree::apply`]
//! with the node's current state, so replaying an event twice or late is harmless. Bad nodes are
//! skipped here, with one warning per bad version of a node.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::warn;

use crate::names::{RelName, ZoneName};
use crate::records::{RecordData, ZoneSettings, decode_record_set, decode_zone};
use crate::zk::layout::{Layout, NodePath};

/// A node as read from ZooKeeper.
#[derive(Debug, Clone)]
pub struct NodeState {
    pub data: Vec<u8>,
    /// Zxid of the last change to the node's data, so a bad payload is reported once.
    pub mzxid: i64,
    /// Milliseconds since the epoch of the last change, for the zone's default SOA serial.
    pub mtime: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneEntry {
    pub settings: ZoneSettings,
    pub sets: BTreeMap<RelName, SetEntry>,
    /// Unix seconds of the last change seen in the zone; the default SOA serial.
    pub changed: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetEntry {
    /// The record set's own data (empty when the node holds none or bad data).
    pub data: RecordData,
    /// Registered members by znode name.
    pub members: BTreeMap<String, RecordData>,
}

impl SetEntry {
    /// The set's records with every member's merged in.
    pub fn merged(&self) -> RecordData {
        let mut data = self.data.clone();
        for member in self.members.values() {
            data.merge(member);
        }
        data
    }
}

/// What an applied node changed, for updating the snapshot without rebuilding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Zones appeared or went: rebuild everything.
    Zones,
    /// A zone's settings changed.
    Zone(ZoneName),
    /// The merged records of one name changed, or the name appeared or went.
    Set(ZoneName, RelName),
}

/// The decoded zones subtree.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    /// Zones to serve; `None` serves every zone under the root.
    filter: Option<BTreeSet<ZoneName>>,
    zones: BTreeMap<ZoneName, ZoneEntry>,
    /// Paths of bad nodes already reported, with the zxid of the payload reported.
    warned: HashMap<String, i64>,
}

fn unix_secs(ms: i64) -> u32 {
    u32::try_from(ms.max(0) / 1000).unwrap_or(u32::MAX)
}

fn now_secs() -> u32 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u32::try_from(now.as_secs()).unwrap_or(u32::MAX)
}

impl Tree {
    pub fn new(filter: Option<BTreeSet<ZoneName>>) -> Self {
        Self {
            filter,
            ..Self::default()
        }
    }

    /// An empty tree with the same filter, and the memory of what was already reported.
    pub fn fresh(&self) -> Self {
        Self {
            filter: self.filter.clone(),
            zones: BTreeMap::new(),
            warned: self.warned.clone(),
        }
    }

    pub fn zones(&self) -> &BTreeMap<ZoneName, ZoneEntry> {
        &self.zones
    }

    /// Number of nodes currently skipped as bad.
    pub fn bad_nodes(&self) -> usize {
        self.warned.len()
    }

    /// Whether this zone is one the filter admits (a zone name that is not valid never is).
    pub fn wants_zone(&self, zone: &str) -> bool {
        match ZoneName::from_znode(zone) {
            Ok(z) => self.filter.as_ref().is_none_or(|f| f.contains(&z)),
            Err(_) => true, // reported when applied
        }
    }

    pub fn has_zone(&self, zone: &str) -> bool {
        ZoneName::from_znode(zone).is_ok_and(|z| self.zones.contains_key(&z))
    }

    pub fn has_set(&self, zone: &str, name: &str) -> bool {
        let Ok(z) = ZoneName::from_znode(zone) else {
            return false;
        };
        let Ok(n) = RelName::from_znode(name, &z) else {
            return false;
        };
        self.zones.get(&z).is_some_and(|e| e.sets.contains_key(&n))
    }

    fn report(&mut self, path: &str, mzxid: i64, reason: &dyn std::fmt::Display) {
        if self.warned.get(path) != Some(&mzxid) {
            warn!(path, %reason, "skipping bad znode");
            self.warned.insert(path.to_string(), mzxid);
        }
    }

    fn clear_report(&mut self, path: &str) {
        self.warned.remove(path);
    }

    /// Clears reports of `path` and everything below it.
    fn clear_reports_under(&mut self, path: &str) {
        let prefix = format!("{path}/");
        self.warned
            .retain(|p, _| p != path && !p.starts_with(prefix.as_str()));
    }

    /// Applies the current state of the node at `path` (`None`: it does not exist). Returns
    /// what changed in the served data, if anything.
    pub fn apply(
        &mut self,
        layout: &Layout,
        path: &str,
        state: Option<&NodeState>,
    ) -> Option<Change> {
        match layout.classify(path) {
            NodePath::Zone(z) => self.apply_zone(path, z, state),
            NodePath::Set(z, n) => self.apply_set(path, z, n, state),
            NodePath::Member(z, n, m) => self.apply_member(path, z, n, m, state),
            NodePath::Zones => {
                if state.is_none() && !self.zones.is_empty() {
                    self.zones.clear();
                    self.warned.clear();
                    return Some(Change::Zones);
                }
                None
            }
            NodePath::Other => None,
        }
    }

    fn zone_name(&mut self, path: &str, zone: &str, state: Option<&NodeState>) -> Option<ZoneName> {
        match ZoneName::from_znode(zone) {
            Ok(z) => Some(z),
            Err(e) => {
                match state {
                    Some(s) => self.report(path, s.mzxid, &format!("bad zone name: {e}")),
                    None => self.clear_reports_under(path),
                }
                None
            }
        }
    }

    fn apply_zone(&mut self, path: &str, zone: &str, state: Option<&NodeState>) -> Option<Change> {
        let z = self.zone_name(path, zone, state)?;
        if !self.filter.as_ref().is_none_or(|f| f.contains(&z)) {
            return None;
        }
        let Some(state) = state else {
            self.clear_reports_under(path);
            return self.zones.remove(&z).map(|_| Change::Zones);
        };
        let settings = match decode_zone(&state.data, &z) {
            Ok(s) => {
                self.clear_report(path);
                s
            }
            Err(e) => {
                self.report(
                    path,
                    state.mzxid,
                    &format!("{e}; using default zone settings"),
                );
                ZoneSettings::defaults(&z)
            }
        };
        let changed = unix_secs(state.mtime);
        match self.zones.get_mut(&z) {
            Some(entry) => {
                entry.changed = entry.changed.max(changed);
                if entry.settings == settings {
                    return None;
                }
                entry.settings = settings;
                Some(Change::Zone(z))
            }
            None => {
                self.zones.insert(
                    z,
                    ZoneEntry {
                        settings,
                        sets: BTreeMap::new(),
                        changed,
                    },
                );
                Some(Change::Zones)
            }
        }
    }

    fn set_name(
        &mut self,
        path: &str,
        zone: &str,
        name: &str,
        state: Option<&NodeState>,
    ) -> Option<(ZoneName, RelName)> {
        let z = ZoneName::from_znode(zone).ok()?;
        if !self.zones.contains_key(&z) {
            return None;
        }
        match RelName::from_znode(name, &z) {
            Ok(n) => Some((z, n)),
            Err(e) => {
                match state {
                    Some(s) => self.report(path, s.mzxid, &format!("bad record-set name: {e}")),
                    None => self.clear_reports_under(path),
                }
                None
            }
        }
    }

    fn apply_set(
        &mut self,
        path: &str,
        zone: &str,
        name: &str,
        state: Option<&NodeState>,
    ) -> Option<Change> {
        let (z, n) = self.set_name(path, zone, name, state)?;
        let decoded = state.map(|s| match decode_record_set(&s.data, &z) {
            Ok(d) => {
                self.clear_report(path);
                d
            }
            Err(e) => {
                self.report(path, s.mzxid, &e);
                RecordData::default()
            }
        });
        let Some(data) = decoded else {
            self.clear_reports_under(path);
            let entry = self.zones.get_mut(&z).expect("zone checked above");
            entry.sets.remove(&n)?;
            entry.changed = entry.changed.max(now_secs());
            return Some(Change::Set(z, n));
        };
        let entry = self.zones.get_mut(&z).expect("zone checked above");
        entry.changed = entry.changed.max(unix_secs(state.map_or(0, |s| s.mtime)));
        let is_new = !entry.sets.contains_key(&n);
        let set = entry.sets.entry(n.clone()).or_default();
        let changed = is_new || set.data != data;
        set.data = data;
        changed.then_some(Change::Set(z, n))
    }

    fn apply_member(
        &mut self,
        path: &str,
        zone: &str,
        name: &str,
        member: &str,
        state: Option<&NodeState>,
    ) -> Option<Change> {
        let (z, n) = self.set_name(path, zone, name, None)?;
        if !self.zones[&z].sets.contains_key(&n) {
            // the record set is gone (or not read yet; its own event brings the members back)
            return None;
        }
        let decoded = match state {
            None => None,
            Some(s) => match decode_record_set(&s.data, &z) {
                Ok(d) => {
                    self.clear_report(path);
                    Some(d)
                }
                Err(e) => {
                    self.report(path, s.mzxid, &e);
                    None
                }
            },
        };
        if state.is_none() {
            self.clear_report(path);
        }
        let stamp = state.map_or_else(now_secs, |s| unix_secs(s.mtime));
        let entry = self.zones.get_mut(&z).expect("zone checked above");
        let set = entry.sets.get_mut(&n).expect("set checked above");
        let changed = match decoded {
            Some(d) => set.members.insert(member.to_string(), d.clone()) != Some(d),
            None => set.members.remove(member).is_some(),
        };
        if !changed {
            return None;
        }
        entry.changed = entry.changed.max(stamp);
        Some(Change::Set(z, n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(data: &str) -> NodeState {
        NodeState {
            data: data.as_bytes().to_vec(),
            mzxid: 1,
            mtime: 1_700_000_000_000,
        }
    }

    fn layout() -> Layout {
        Layout::new("/zkdns").unwrap()
    }

    #[test]
    fn builds_zones_sets_and_members() {
        let l = layout();
        let mut t = Tree::new(None);
        assert!(t.apply(&l, "/zkdns/zones/c.l", Some(&node(""))).is_some());
        assert!(
            t.apply(
                &l,
                "/zkdns/zones/c.l/web",
                Some(&node(r#"{"A":["10.0.0.1"]}"#))
            )
            .is_some()
        );
        assert!(
            t.apply(
                &l,
                "/zkdns/zones/c.l/web/m1",
                Some(&node(r#"{"A":["10.0.0.2"]}"#))
            )
            .is_some()
        );
        let z = &t.zones()[&ZoneName::parse("c.l").unwrap()];
        let set = &z.sets[&RelName::from_znode("web", &ZoneName::parse("c.l").unwrap()).unwrap()];
        assert_eq!(set.merged().a.len(), 2);
        // the same state again changes nothing
        assert!(
            t.apply(
                &l,
                "/zkdns/zones/c.l/web/m1",
                Some(&node(r#"{"A":["10.0.0.2"]}"#))
            )
            .is_none()
        );
        assert!(t.apply(&l, "/zkdns/zones/c.l/web/m1", None).is_some());
        assert!(t.apply(&l, "/zkdns/zones/c.l/web", None).is_some());
        assert!(t.apply(&l, "/zkdns/zones/c.l", None).is_some());
        assert!(t.zones().is_empty());
    }

    #[test]
    fn bad_nodes_are_skipped_and_counted_once() {
        let l = layout();
        let mut t = Tree::new(None);
        t.apply(&l, "/zkdns/zones/c.l", Some(&node("")));
        t.apply(&l, "/zkdns/zones/c.l/bad", Some(&node("{not json")));
        t.apply(&l, "/zkdns/zones/c.l/bad", Some(&node("{not json")));
        t.apply(&l, "/zkdns/zones/c.l/Bad Name", Some(&node("")));
        t.apply(
            &l,
            "/zkdns/zones/c.l/ok",
            Some(&node(r#"{"A":["10.0.0.1"]}"#)),
        );
        assert_eq!(t.bad_nodes(), 2);
        let z = &t.zones()[&ZoneName::parse("c.l").unwrap()];
        assert_eq!(z.sets.len(), 2); // "bad" exists with no records; "Bad Name" does not
        t.apply(
            &l,
            "/zkdns/zones/c.l/bad",
            Some(&node(r#"{"A":["10.0.0.9"]}"#)),
        );
        t.apply(&l, "/zkdns/zones/c.l/Bad Name", None);
        assert_eq!(t.bad_nodes(), 0);
    }

    #[test]
    fn filter_and_orphans() {
        let l = layout();
        let only = ZoneName::parse("a.l").unwrap();
        let mut t = Tree::new(Some([only].into()));
        assert!(t.apply(&l, "/zkdns/zones/b.l", Some(&node(""))).is_none());
        assert!(!t.wants_zone("b.l"));
        assert!(t.apply(&l, "/zkdns/zones/a.l", Some(&node(""))).is_some());
        // a member whose set is unknown is ignored until the set is read
        assert!(
            t.apply(
                &l,
                "/zkdns/zones/a.l/web/m1",
                Some(&node(r#"{"A":["10.0.0.2"]}"#))
            )
            .is_none()
        );
        assert!(!t.has_set("a.l", "web"));
    }
}
