//! Applying what ZooKeeper holds to the snapshot builder: each node's current state goes
//! through [`Tree::apply`], which classifies the path, validates names and payloads (a bad node
//! is skipped with one warning per bad version), merges registered members into their record
//! set, and tells the sync task whether anything changed. Applying the same state twice, or
//! late, is harmless. Only sets that have members keep decoded data here; everything else
//! lives in the snapshot alone.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use tracing::warn;

use crate::names::{RelName, ZoneName};
use crate::records::{RecordData, ZoneSettings, decode_record_set, decode_zone};
use crate::store::{Builder, Snapshot, unix_now};
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

impl NodeState {
    /// A node's data and stat as a read returns them.
    pub fn read(data: Vec<u8>, stat: &zookeeper_client::Stat) -> Self {
        Self {
            data,
            mzxid: stat.mzxid,
            mtime: stat.mtime,
        }
    }
}

/// What applying a node did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Unchanged,
    Changed,
    /// The change cannot be made in place: read the whole tree again.
    Resync,
}

impl Applied {
    fn from_changed(changed: bool) -> Self {
        if changed {
            Applied::Changed
        } else {
            Applied::Unchanged
        }
    }
}

/// A record set with registered members: its own data and each member's.
#[derive(Debug, Clone, Default)]
struct Merge {
    own: RecordData,
    members: BTreeMap<String, RecordData>,
}

impl Merge {
    fn merged(&self) -> RecordData {
        let mut data = self.own.clone();
        for member in self.members.values() {
            data.merge(member);
        }
        data
    }
}

/// The decoded view of the zones subtree, writing into a [`Builder`].
#[derive(Debug, Clone, Default)]
pub struct Tree {
    /// Zones to serve; `None` serves every zone under the root.
    filter: Option<BTreeSet<ZoneName>>,
    zones: BTreeMap<ZoneName, ZoneSettings>,
    merges: HashMap<(ZoneName, RelName), Merge>,
    /// Paths of bad nodes currently skipped, with the zxid of the payload reported.
    warned: HashMap<String, i64>,
    /// What the tree this one replaces had reported: not logged again if still bad, and
    /// forgotten if gone (a full read only carries over what it sees again).
    earlier: HashMap<String, i64>,
    /// Sets whose members changed since the last [`Tree::flush`]: encoded once per batch,
    /// so a set with thousands of members costs one encoding per batch, not per member.
    dirty: BTreeMap<(ZoneName, RelName), u32>,
    builder: Builder,
}

fn unix_secs(ms: i64) -> u32 {
    u32::try_from(ms.max(0) / 1000).unwrap_or(u32::MAX)
}

impl Tree {
    pub fn new(filter: Option<BTreeSet<ZoneName>>) -> Self {
        Self {
            filter,
            ..Self::default()
        }
    }

    /// A tree for the zones `--zone` names; none named: every zone under the root.
    pub fn for_zones(zones: &[ZoneName]) -> Self {
        Self::new((!zones.is_empty()).then(|| zones.iter().cloned().collect()))
    }

    /// An empty tree with the same filter, and the memory of what was already reported.
    pub fn fresh(&self) -> Self {
        Self {
            filter: self.filter.clone(),
            earlier: self.warned.clone(),
            ..Self::default()
        }
    }

    /// Gives back spare capacity after a full read.
    pub fn shrink_to_fit(&mut self) {
        self.builder.shrink_to_fit();
    }

    /// The snapshot of everything applied so far.
    pub fn snapshot(&mut self) -> Snapshot {
        self.flush();
        self.builder.snapshot()
    }

    /// Encodes the sets whose members changed. Returns whether the snapshot changed.
    pub fn flush(&mut self) -> bool {
        let mut changed = false;
        for ((z, n), when) in std::mem::take(&mut self.dirty) {
            let Some(merge) = self.merges.get(&(z.clone(), n.clone())) else {
                continue; // the set went, or its last member: already written
            };
            if self.builder.put_set(&z, &n, &merge.merged()) {
                self.builder.touch_zone(&z, when);
                changed = true;
            }
        }
        changed
    }

    /// Number of zones served.
    pub fn zone_count(&self) -> usize {
        self.zones.len()
    }

    /// Number of nodes currently skipped as bad.
    pub fn bad_nodes(&self) -> usize {
        self.warned.len()
    }

    /// Whether the zone filter (`--zone`) lets `z` in.
    fn admits(&self, z: &ZoneName) -> bool {
        self.filter.as_ref().is_none_or(|f| f.contains(z))
    }

    /// Whether this zone is one the filter admits; a zone name that is not valid is wanted, so
    /// that applying it reports it.
    pub fn wants_zone(&self, zone: &str) -> bool {
        match ZoneName::from_znode(zone) {
            Ok(z) => self.admits(&z),
            Err(_) => true, // reported when applied
        }
    }

    /// The znode names of the zones held.
    pub fn zone_names(&self) -> Vec<String> {
        self.zones.keys().map(|z| z.as_str().to_string()).collect()
    }

    /// The znode names of a zone's record sets (see [`Builder::set_names`]).
    pub fn set_names(&self, zone: &str) -> Vec<String> {
        ZoneName::from_znode(zone).map_or_else(|_| Vec::new(), |z| self.builder.set_names(&z))
    }

    /// (zone, name) of every record set that has members.
    pub fn sets_with_members(&self) -> Vec<(String, String)> {
        self.merges
            .keys()
            .map(|(z, n)| (z.as_str().to_string(), n.as_str().to_string()))
            .collect()
    }

    /// The members a record set has (none for a set without).
    pub fn members_of(&self, zone: &str, name: &str) -> Vec<String> {
        let (Ok(z), Ok(n)) = (
            ZoneName::from_znode(zone),
            ZoneName::from_znode(zone).and_then(|z| RelName::from_znode(name, &z)),
        ) else {
            return Vec::new();
        };
        self.merges
            .get(&(z, n))
            .map(|m| m.members.keys().cloned().collect())
            .unwrap_or_default()
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
        self.builder.has_set(&z, &n)
    }

    fn report(&mut self, path: &str, mzxid: i64, reason: &dyn std::fmt::Display) {
        if self.warned.get(path) == Some(&mzxid) {
            return;
        }
        if self.earlier.get(path) != Some(&mzxid) {
            warn!(path, %reason, "skipping bad znode");
        }
        self.warned.insert(path.to_string(), mzxid);
    }

    /// Clears reports of `path` and everything below it.
    fn clear_reports_under(&mut self, path: &str) {
        if self.warned.is_empty() {
            return;
        }
        let prefix = format!("{path}/");
        self.warned
            .retain(|p, _| p != path && !p.starts_with(prefix.as_str()));
    }

    /// Applies the current state of the node at `path` (`None`: it does not exist).
    pub fn apply(&mut self, layout: &Layout, path: &str, state: Option<&NodeState>) -> Applied {
        match layout.classify(path) {
            NodePath::Zone(z) => self.apply_zone(path, z, state),
            NodePath::Set(z, n) => self.apply_set(path, z, n, state),
            NodePath::Member(z, n, m) => self.apply_member(path, z, n, m, state),
            NodePath::Zones if state.is_none() && !self.zones.is_empty() => Applied::Resync,
            NodePath::Zones | NodePath::Other => Applied::Unchanged,
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

    fn apply_zone(&mut self, path: &str, zone: &str, state: Option<&NodeState>) -> Applied {
        let Some(z) = self.zone_name(path, zone, state) else {
            return Applied::Unchanged;
        };
        if !self.admits(&z) {
            return Applied::Unchanged;
        }
        let Some(state) = state else {
            self.clear_reports_under(path);
            if self.zones.remove(&z).is_none() {
                return Applied::Unchanged;
            }
            self.merges.retain(|(mz, _), _| *mz != z);
            return match self.builder.remove_zone(&z) {
                Ok(()) => Applied::Changed,
                Err(_) => Applied::Resync,
            };
        };
        let settings = match decode_zone(&state.data, &z) {
            Ok(s) => {
                self.warned.remove(path);
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
        if self.zones.get(&z) == Some(&settings) {
            return Applied::Unchanged;
        }
        self.zones.insert(z.clone(), settings.clone());
        match self
            .builder
            .update_zone(&z, &settings, unix_secs(state.mtime))
        {
            Ok(()) => Applied::Changed,
            Err(_) => Applied::Resync,
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

    fn decode(
        &mut self,
        path: &str,
        state: &NodeState,
        zone: &ZoneName,
        apex: bool,
    ) -> Option<RecordData> {
        match decode_record_set(&state.data, zone) {
            Ok(d) if apex && d.cname.is_some() => {
                self.report(path, state.mzxid, &"a CNAME cannot sit at the zone apex");
                None
            }
            Ok(d) => {
                self.warned.remove(path);
                Some(d)
            }
            Err(e) => {
                self.report(path, state.mzxid, &e);
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
    ) -> Applied {
        let Some((z, n)) = self.set_name(path, zone, name, state) else {
            return Applied::Unchanged;
        };
        let Some(state) = state else {
            self.clear_reports_under(path);
            self.merges.remove(&(z.clone(), n.clone()));
            let changed = self.builder.remove_set(&z, &n);
            if changed {
                self.builder.touch_zone(&z, unix_now());
            }
            return Applied::from_changed(changed);
        };
        // a set with bad data still exists: it answers NODATA
        let own = self
            .decode(path, state, &z, n.is_apex())
            .unwrap_or_default();
        let key = (z.clone(), n.clone());
        let data = match self.merges.get_mut(&key) {
            Some(merge) => {
                merge.own = own;
                merge.merged()
            }
            None => own,
        };
        let changed = self.builder.put_set(&z, &n, &data);
        if changed {
            self.builder.touch_zone(&z, unix_secs(state.mtime));
        }
        Applied::from_changed(changed)
    }

    fn apply_member(
        &mut self,
        path: &str,
        zone: &str,
        name: &str,
        member: &str,
        state: Option<&NodeState>,
    ) -> Applied {
        let Some((z, n)) = self.set_name(path, zone, name, None) else {
            return Applied::Unchanged;
        };
        if !self.builder.has_set(&z, &n) {
            // the record set is gone (or not read yet; its own event brings the members back)
            return Applied::Unchanged;
        }
        let decoded = match state {
            Some(s) => self.decode(path, s, &z, n.is_apex()),
            None => {
                self.warned.remove(path);
                None
            }
        };
        let key = (z.clone(), n.clone());
        if !self.merges.contains_key(&key) {
            if decoded.is_none() {
                return Applied::Unchanged; // no members, and this one is not (or no longer) one
            }
            let own = self.builder.set_data(&z, &n).unwrap_or_default();
            self.merges.insert(
                key.clone(),
                Merge {
                    own,
                    members: BTreeMap::new(),
                },
            );
        }
        let merge = self.merges.get_mut(&key).expect("inserted above");
        let membership_changed = match decoded {
            Some(d) => merge.members.insert(member.to_string(), d.clone()) != Some(d),
            None => merge.members.remove(member).is_some(),
        };
        if !membership_changed {
            return Applied::Unchanged;
        }
        let hidden = merge.own.cname.is_some() && merge.members.contains_key(member);
        let last_gone = merge.members.is_empty();
        if hidden {
            let mzxid = state.map_or(0, |s| s.mzxid);
            self.report(
                path,
                mzxid,
                &"its record set is a CNAME: the member's records are not served",
            );
        }
        let when = state.map_or_else(unix_now, |s| unix_secs(s.mtime));
        if last_gone {
            // the last member went: the set is its own data again
            let own = self.merges.remove(&key).expect("present").own;
            self.dirty.remove(&key);
            let changed = self.builder.put_set(&z, &n, &own);
            if changed {
                self.builder.touch_zone(&z, when);
            }
            return Applied::from_changed(changed);
        }
        let stamp = self.dirty.entry(key).or_default();
        *stamp = (*stamp).max(when);
        Applied::Changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::wire_key_str;
    use crate::store::Lookup;

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

    fn addresses(t: &mut Tree, name: &str) -> usize {
        let mut scratch = [0u8; 257];
        match t.snapshot().lookup(&wire_key_str(name), &mut scratch) {
            Lookup::Found { node, .. } => node.addresses().count(),
            _ => 0,
        }
    }

    #[test]
    fn builds_zones_sets_and_members() {
        let l = layout();
        let mut t = Tree::new(None);
        assert_eq!(
            t.apply(&l, "/zkdns/zones/c.l", Some(&node(""))),
            Applied::Changed
        );
        assert_eq!(
            t.apply(
                &l,
                "/zkdns/zones/c.l/web",
                Some(&node(r#"{"A":["10.0.0.1"]}"#))
            ),
            Applied::Changed
        );
        let m1 = node(r#"{"A":["10.0.0.2"]}"#);
        assert_eq!(
            t.apply(&l, "/zkdns/zones/c.l/web/m1", Some(&m1)),
            Applied::Changed
        );
        assert_eq!(addresses(&mut t, "web.c.l"), 2);
        // the same state again changes nothing
        assert_eq!(
            t.apply(&l, "/zkdns/zones/c.l/web/m1", Some(&m1)),
            Applied::Unchanged
        );
        // the set's own data changes under its member
        t.apply(
            &l,
            "/zkdns/zones/c.l/web",
            Some(&node(r#"{"A":["10.0.0.9"]}"#)),
        );
        assert_eq!(addresses(&mut t, "web.c.l"), 2);
        assert_eq!(
            t.apply(&l, "/zkdns/zones/c.l/web/m1", None),
            Applied::Changed
        );
        assert_eq!(addresses(&mut t, "web.c.l"), 1);
        assert_eq!(t.apply(&l, "/zkdns/zones/c.l/web", None), Applied::Changed);
        assert_eq!(t.apply(&l, "/zkdns/zones/c.l", None), Applied::Changed);
        assert_eq!(t.zone_count(), 0);
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
        t.apply(&l, "/zkdns/zones/c.l/@", Some(&node(r#"{"CNAME":"x."}"#)));
        assert_eq!(t.bad_nodes(), 3);
        assert!(t.has_set("c.l", "bad")); // exists with no records; "Bad Name" does not
        assert!(!t.has_set("c.l", "Bad Name"));
        t.apply(
            &l,
            "/zkdns/zones/c.l/bad",
            Some(&node(r#"{"A":["10.0.0.9"]}"#)),
        );
        t.apply(&l, "/zkdns/zones/c.l/Bad Name", None);
        t.apply(&l, "/zkdns/zones/c.l/@", None);
        assert_eq!(t.bad_nodes(), 0);
    }

    #[test]
    fn filter_and_orphans() {
        let l = layout();
        let only = ZoneName::parse("a.l").unwrap();
        let mut t = Tree::new(Some([only].into()));
        assert_eq!(
            t.apply(&l, "/zkdns/zones/b.l", Some(&node(""))),
            Applied::Unchanged
        );
        assert!(!t.wants_zone("b.l"));
        assert_eq!(
            t.apply(&l, "/zkdns/zones/a.l", Some(&node(""))),
            Applied::Changed
        );
        // a member whose set is unknown is ignored until the set is read
        let m = node(r#"{"A":["10.0.0.2"]}"#);
        assert_eq!(
            t.apply(&l, "/zkdns/zones/a.l/web/m1", Some(&m)),
            Applied::Unchanged
        );
        assert!(!t.has_set("a.l", "web"));
    }
}
