//! What `zkdns import` writes: the input (zone files via [`super::zonefile`], hosts files and
//! the old JSON map via [`super::hostmap`], from files or one znode) becomes the record sets of
//! a zone ([`read_sources`]), is compared with what ZooKeeper holds ([`plan`]), and the
//! difference is cut into multi-transactions well below jute.maxbuffer ([`batches`]). All of it
//! is pure; the command (`cmd::import`) reads ZooKeeper and commits the batches.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::anyhow;

use crate::cli::ImportFormat;
use crate::error::Failure;
use crate::names::{RelName, ZoneName};
use crate::records::{RecordSetJson, ZoneJson, decode_set};
use crate::tooling::hostmap::HostMap;
use crate::tooling::zonefile::{ZoneBuilder, ZoneContent, ZoneFileError, detect_zone};
use crate::zk::Layout;
use crate::zk::write::Op;
use crate::zk::zone::{SetNode, ZoneNodes};

/// Most operations in one multi-transaction.
pub const BATCH_OPS: usize = 500;
/// Most bytes (data and paths) in one multi-transaction: half of jute.maxbuffer.
pub const BATCH_BYTES: usize = 512 * 1024;
/// Operations that must share a transaction, and what they count as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    pub ops: Vec<Op>,
    pub counts: Counts,
}

/// One multi-transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    pub ops: Vec<Op>,
    pub counts: Counts,
}

/// One change to a zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The zone node is missing: create it with these settings (`None`: empty).
    CreateZone {
        settings: Option<ZoneJson>,
    },
    UpdateZone {
        old: Vec<u8>,
        new: ZoneJson,
        version: i32,
    },
    Create {
        name: RelName,
        new: RecordSetJson,
    },
    Update {
        name: RelName,
        old: Vec<u8>,
        new: RecordSetJson,
        version: i32,
        /// Re-create the node as a persistent one: it may be a container about to be removed
        /// ([`crate::zk::zone::may_be_reaped`]).
        recreate: bool,
    },
    Delete {
        name: String,
        version: i32,
    },
}

/// What an import changes in one zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub zone: ZoneName,
    /// Nodes above the zone to create first (`<root>`, `<root>/zones`).
    pub parents: Vec<String>,
    pub changes: Vec<Change>,
    /// Things to tell the user (sets kept despite --prune, …).
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub created: usize,
    pub updated: usize,
    pub deleted: usize,
}

impl Counts {
    pub fn add(&mut self, other: Counts) {
        self.created += other.created;
        self.updated += other.updated;
        self.deleted += other.deleted;
    }

    pub fn is_zero(&self) -> bool {
        *self == Counts::default()
    }
}

fn show(payload: &[u8]) -> String {
    let text = String::from_utf8_lossy(payload);
    let text = text.trim();
    if text.is_empty() {
        "{}".to_string()
    } else {
        text.to_string()
    }
}

impl Change {
    fn counts(&self) -> Counts {
        let mut c = Counts::default();
        match self {
            Change::CreateZone { .. } | Change::Create { .. } => c.created = 1,
            Change::UpdateZone { .. } | Change::Update { .. } => c.updated = 1,
            Change::Delete { .. } => c.deleted = 1,
        }
        c
    }
}

impl Plan {
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for change in &self.changes {
            c.add(change.counts());
        }
        c
    }

    /// The changes as `+ name JSON`, `~ name old -> new` and `- name` lines.
    pub fn diff(&self) -> String {
        const ZONE: &str = "[zone settings]";
        let mut out = String::new();
        for change in &self.changes {
            let _ = match change {
                Change::CreateZone { settings } => writeln!(
                    out,
                    "+ {ZONE} {}",
                    show(&settings.clone().unwrap_or_default().to_payload())
                ),
                Change::UpdateZone { old, new, .. } => {
                    writeln!(out, "~ {ZONE} {} -> {}", show(old), show(&new.to_payload()))
                }
                Change::Create { name, new } => writeln!(out, "+ {name} {}", new.to_text()),
                Change::Update {
                    name,
                    old,
                    new,
                    recreate,
                    ..
                } => {
                    let note = if *recreate {
                        " (re-created as a persistent node: it had members, so it may be a container)"
                    } else {
                        ""
                    };
                    writeln!(out, "~ {name} {} -> {}{note}", show(old), new.to_text())
                }
                Change::Delete { name, .. } => writeln!(out, "- {name}"),
            };
        }
        out
    }

    /// The writes, in units that must share a transaction, parents first.
    pub fn units(&self, layout: &Layout) -> Vec<Unit> {
        let mut units: Vec<Unit> = self
            .parents
            .iter()
            .map(|p| Unit {
                ops: vec![Op::Create {
                    path: p.clone(),
                    data: Vec::new(),
                }],
                counts: Counts::default(),
            })
            .collect();
        let zone = self.zone.as_str();
        for change in &self.changes {
            let unit = match change {
                Change::CreateZone { settings } => vec![Op::Create {
                    path: layout.zone(zone),
                    data: settings
                        .as_ref()
                        .map(ZoneJson::to_payload)
                        .unwrap_or_default(),
                }],
                Change::UpdateZone { new, version, .. } => vec![Op::SetData {
                    path: layout.zone(zone),
                    data: new.to_payload(),
                    version: *version,
                }],
                Change::Create { name, new } => vec![Op::Create {
                    path: layout.set_of(&self.zone, name),
                    data: new.to_payload(),
                }],
                Change::Update {
                    name,
                    new,
                    version,
                    recreate,
                    ..
                } => {
                    let path = layout.set_of(&self.zone, name);
                    if *recreate {
                        vec![
                            Op::Delete {
                                path: path.clone(),
                                version: *version,
                            },
                            Op::Create {
                                path,
                                data: new.to_payload(),
                            },
                        ]
                    } else {
                        vec![Op::SetData {
                            path,
                            data: new.to_payload(),
                            version: *version,
                        }]
                    }
                }
                Change::Delete { name, version } => vec![Op::Delete {
                    path: layout.set(zone, name),
                    version: *version,
                }],
            };
            units.push(Unit {
                ops: unit,
                counts: change.counts(),
            });
        }
        units
    }
}

/// Compares a zone's content from files with its nodes in ZooKeeper (`None`: no zone node).
/// Sets compare by normalised JSON, so order and duplicates never make an update. Members are
/// never touched; with `prune`, sets the files lack are deleted unless they have members.
pub fn plan(
    content: &ZoneContent,
    existing: Option<&ZoneNodes>,
    parents: Vec<String>,
    prune: bool,
) -> Plan {
    let mut changes = Vec::new();
    let mut notes = Vec::new();
    let empty = BTreeMap::new();
    let current: &BTreeMap<String, SetNode> = existing.map_or(&empty, |z| &z.sets);
    let settings = match existing {
        None => {
            let settings = content.settings(&ZoneJson::default());
            changes.push(Change::CreateZone {
                settings: Some(settings.clone()),
            });
            settings
        }
        Some(zone) => {
            let old: Option<ZoneJson> = if zone.data.iter().all(u8::is_ascii_whitespace) {
                Some(ZoneJson::default())
            } else {
                serde_json::from_slice(&zone.data).ok()
            };
            let new = content.settings(old.as_ref().unwrap_or(&ZoneJson::default()));
            // settings that are not valid JSON are replaced only by files that have some
            if old.as_ref() != Some(&new) && (old.is_some() || content.has_settings()) {
                changes.push(Change::UpdateZone {
                    old: zone.data.clone(),
                    new: new.clone(),
                    version: zone.stat.version,
                });
            }
            new
        }
    };
    let sets = content.sets_for(&settings);
    for (name, new) in &sets {
        match current.get(name.as_str()) {
            None => changes.push(Change::Create {
                name: name.clone(),
                new: new.clone(),
            }),
            Some(node) => {
                let old = decode_set(&node.data).ok().map(|mut j| {
                    j.normalise();
                    j
                });
                let reaped_soon = node.may_be_reaped();
                if old.as_ref() != Some(new) || reaped_soon {
                    changes.push(Change::Update {
                        name: name.clone(),
                        old: node.data.clone(),
                        new: new.clone(),
                        version: node.stat.version,
                        recreate: reaped_soon,
                    });
                }
            }
        }
    }
    if prune {
        for (name, node) in current {
            let wanted =
                RelName::from_znode(name, &content.zone).is_ok_and(|n| sets.contains_key(&n));
            if wanted {
                continue;
            }
            if node.stat.num_children > 0 {
                notes.push(format!(
                    "{name}: not in the files but kept: {} live member(s)",
                    node.stat.num_children
                ));
            } else {
                changes.push(Change::Delete {
                    name: name.clone(),
                    version: node.stat.version,
                });
            }
        }
    }
    Plan {
        zone: content.zone.clone(),
        parents,
        changes,
        notes,
    }
}

/// Packs units of operations into transactions of at most `max_ops` operations and
/// `max_bytes` bytes, in order. A unit is never split; one larger than the limits goes alone.
pub fn batches(units: Vec<Unit>, max_ops: usize, max_bytes: usize) -> Vec<Batch> {
    let mut out = Vec::new();
    let mut current = Batch::default();
    let mut bytes = 0;
    for unit in units {
        let unit_bytes: usize = unit.ops.iter().map(Op::size).sum();
        if !current.ops.is_empty()
            && (current.ops.len() + unit.ops.len() > max_ops || bytes + unit_bytes > max_bytes)
        {
            out.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += unit_bytes;
        current.ops.extend(unit.ops);
        current.counts.add(unit.counts);
    }
    if !current.ops.is_empty() {
        out.push(current);
    }
    out
}

/// One input of an import: a file's or a znode's text.
#[derive(Debug, Clone)]
pub struct Source {
    /// How messages name it: the file's path, or `znode PATH`.
    pub name: String,
    pub text: String,
    /// The file, for zone files' `$INCLUDE`s.
    pub path: Option<PathBuf>,
}

impl Source {
    /// Reads a file (a leading byte-order mark dropped).
    pub fn file(path: &std::path::Path) -> Result<Self, Failure> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Failure::input(anyhow!("cannot read {name}: {e}")))?;
        Ok(Self::new(name, text, Some(path.to_path_buf())))
    }

    pub fn new(name: String, text: String, path: Option<PathBuf>) -> Self {
        let text = match text.strip_prefix('\u{feff}') {
            Some(rest) => rest.to_string(),
            None => text,
        };
        Self { name, text, path }
    }
}

/// The zone a hosts file or JSON map goes in: `--zone`, which those formats need.
pub fn map_zone(format: ImportFormat, zone: Option<&ZoneName>) -> Result<&ZoneName, Failure> {
    zone.ok_or_else(|| {
        Failure::input(anyhow!(
            "--format {format} needs --zone: the host names are relative to it"
        ))
    })
}

/// Reads every input and builds each zone's content; any problem is an input error naming
/// `SOURCE:LINE`. Zone files go to `zone`, else to the zone they name; hosts files and JSON
/// maps need `zone`.
pub fn read_sources(
    sources: &[Source],
    format: ImportFormat,
    zone: Option<&ZoneName>,
) -> Result<Vec<ZoneContent>, Failure> {
    if format != ImportFormat::Zone {
        let zone = map_zone(format, zone)?;
        let mut map = HostMap::new(zone.clone());
        for source in sources {
            let added = match format {
                ImportFormat::Hosts => map.add_hosts(&source.text),
                _ => map.add_json_map(&source.text),
            };
            added.map_err(|e| Failure::input(anyhow!(e.at(&source.name))))?;
        }
        return Ok(vec![map.finish()]);
    }
    let mut builders: BTreeMap<ZoneName, ZoneBuilder> = BTreeMap::new();
    for source in sources {
        let (text, path) = (source.text.as_str(), source.path.as_deref());
        let at = |e: ZoneFileError| {
            let hint = format_hint(&source.name);
            Failure::input(anyhow!("{}{hint}", e.at(&source.name)))
        };
        let zone = match zone {
            Some(z) => z.clone(),
            None => detect_zone(text, path).map_err(at)?,
        };
        builders
            .entry(zone.clone())
            .or_insert_with(|| ZoneBuilder::new(zone))
            .add_file(text, path)
            .map_err(at)?;
    }
    Ok(builders.into_values().map(ZoneBuilder::finish).collect())
}

/// A hint for a zone file that failed to read but whose name says it is another format.
fn format_hint(name: &str) -> &'static str {
    let base = name.rsplit('/').next().unwrap_or(name);
    if base.ends_with(".json") {
        " (a JSON map? pass --format json-map)"
    } else if base == "hosts" || base.ends_with(".hosts") {
        " (a hosts file? pass --format hosts)"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::fixtures::zone;
    use zookeeper_client::Stat;

    fn content(text: &str) -> ZoneContent {
        let mut b = ZoneBuilder::new(zone());
        b.add_file(text, None).unwrap();
        b.finish()
    }

    fn stat(version: i32, children: i32, owner: i64) -> Stat {
        Stat {
            czxid: 1,
            mzxid: 1,
            pzxid: 1,
            ctime: 0,
            mtime: 0,
            version,
            cversion: 0,
            aversion: 0,
            ephemeral_owner: owner,
            data_length: 0,
            num_children: children,
        }
    }

    fn node(data: &str, version: i32, children: i32) -> SetNode {
        SetNode {
            data: data.as_bytes().to_vec(),
            stat: stat(version, children, 0),
            members: BTreeMap::new(),
        }
    }

    fn zone_nodes(data: &str, sets: &[(&str, SetNode)]) -> ZoneNodes {
        ZoneNodes {
            data: data.as_bytes().to_vec(),
            stat: stat(3, sets.len() as i32, 0),
            sets: sets
                .iter()
                .map(|(n, s)| (n.to_string(), s.clone()))
                .collect(),
        }
    }

    const FILE: &str = "$ORIGIN cluster.test.\n$TTL 5\nweb IN A 10.0.0.2\nweb IN A 10.0.0.1\napi 60 IN CNAME web\n";

    #[test]
    fn a_new_zone_is_created_with_its_parents() {
        let p = plan(
            &content(FILE),
            None,
            vec!["/zkdns".into(), "/zkdns/zones".into()],
            false,
        );
        assert_eq!(
            p.counts(),
            Counts {
                created: 3,
                updated: 0,
                deleted: 0
            }
        );
        let layout = Layout::new("/zkdns").unwrap();
        let paths: Vec<String> = p
            .units(&layout)
            .into_iter()
            .flat_map(|u| u.ops)
            .map(|op| op.path().to_string())
            .collect();
        assert_eq!(
            paths,
            [
                "/zkdns",
                "/zkdns/zones",
                "/zkdns/zones/cluster.test",
                "/zkdns/zones/cluster.test/api",
                "/zkdns/zones/cluster.test/web"
            ]
        );
        assert_eq!(
            p.diff(),
            "+ [zone settings] {}\n+ api {\"ttl\":60,\"CNAME\":\"web.cluster.test.\"}\n+ web {\"A\":[\"10.0.0.1\",\"10.0.0.2\"]}\n"
        );
    }

    #[test]
    fn same_data_in_another_order_is_unchanged() {
        let existing = zone_nodes(
            "",
            &[
                (
                    "web",
                    node(r#"{"A":["10.0.0.2","10.0.0.1","10.0.0.1"]}"#, 4, 0),
                ),
                (
                    "api",
                    node(r#"{"CNAME":"web.cluster.test.","ttl":60}"#, 1, 0),
                ),
            ],
        );
        let p = plan(&content(FILE), Some(&existing), vec![], true);
        assert!(p.changes.is_empty(), "{}", p.diff());
        assert!(p.counts().is_zero());
    }

    #[test]
    fn updates_deletes_and_keeps_members() {
        let existing = zone_nodes(
            r#"{"ttl":5}"#,
            &[
                ("web", node(r#"{"A":["10.0.0.9"]}"#, 4, 0)),
                ("old", node(r#"{"A":["10.0.0.3"]}"#, 2, 0)),
                ("live", node("", 0, 2)),
                ("bad", node("{not json", 7, 0)),
            ],
        );
        let c = content(FILE);
        let p = plan(&c, Some(&existing), vec![], false);
        assert_eq!(p.counts().deleted, 0, "no deletes without --prune");
        let p = plan(&c, Some(&existing), vec![], true);
        assert_eq!(
            p.counts(),
            Counts {
                created: 1,
                updated: 1,
                deleted: 2
            }
        );
        let web = RelName::from_znode("web", &zone()).unwrap();
        let mut new = c.sets[&web].clone();
        new.ttl = None; // 5, the zone's TTL
        assert!(p.changes.contains(&Change::Update {
            name: web,
            old: br#"{"A":["10.0.0.9"]}"#.to_vec(),
            new,
            version: 4,
            recreate: false,
        }));
        assert!(p.changes.contains(&Change::Delete {
            name: "old".into(),
            version: 2
        }));
        assert!(p.changes.contains(&Change::Delete {
            name: "bad".into(),
            version: 7
        }));
        assert_eq!(p.notes.len(), 1);
        assert!(p.notes[0].contains("live"), "{:?}", p.notes);
        assert!(
            p.diff()
                .contains("~ web {\"A\":[\"10.0.0.9\"]} -> {\"A\":[\"10.0.0.1\",\"10.0.0.2\"]}\n")
        );
        assert!(p.diff().contains("- old\n"));
    }

    #[test]
    fn zone_settings_follow_the_files_soa() {
        let with_soa = format!("{FILE}@ 30 IN SOA ns hostmaster 5 3600 600 86400 5\n");
        let existing = zone_nodes(r#"{"ttl":5}"#, &[]);
        let p = plan(&content(&with_soa), Some(&existing), vec![], false);
        let Change::UpdateZone { new, version, .. } = &p.changes[0] else {
            panic!("{:?}", p.changes);
        };
        assert_eq!((new.ttl, *version), (Some(30), 3));
        // the zone's TTL is now 30: the set whose TTL is 5 keeps it, the one with 60 too
        assert!(p.diff().contains("+ web {\"ttl\":5,"), "{}", p.diff());
        // unreadable settings are left alone by files without SOA or NS
        let bad = zone_nodes("{oops", &[]);
        let p = plan(&content(FILE), Some(&bad), vec![], false);
        assert!(
            !p.changes
                .iter()
                .any(|c| matches!(c, Change::UpdateZone { .. }))
        );
    }

    #[test]
    fn sets_whose_members_left_are_recreated() {
        let mut container = node(r#"{"A":["10.0.0.1","10.0.0.2"]}"#, 0, 0);
        container.stat.cversion = 2;
        let existing = zone_nodes("", &[("web", container.clone())]);
        let p = plan(&content(FILE), Some(&existing), vec![], false);
        let layout = Layout::new("/zkdns").unwrap();
        let units = p.units(&layout);
        let web = units
            .iter()
            .find(|u| u.ops.iter().any(|o| o.path().ends_with("/web")))
            .unwrap();
        assert!(matches!(
            &web.ops[..],
            [Op::Delete { version: 0, .. }, Op::Create { .. }]
        ));
        assert!(
            p.diff().contains("~ web "),
            "same data, still re-created: {}",
            p.diff()
        );
        // with members it cannot be re-created, and is not removed either
        container.stat.num_children = 1;
        let existing = zone_nodes("", &[("web", container)]);
        let p = plan(&content(FILE), Some(&existing), vec![], false);
        assert!(!p.changes.iter().any(|c| matches!(c, Change::Update { .. })));
    }

    fn unit(n: usize, bytes: usize) -> Unit {
        Unit {
            ops: (0..n)
                .map(|i| Op::Create {
                    path: format!("/{i}"),
                    data: vec![b'x'; bytes],
                })
                .collect(),
            counts: Counts {
                created: n,
                ..Counts::default()
            },
        }
    }

    #[test]
    fn batches_respect_both_limits_and_keep_units_whole() {
        let b = batches((0..1200).map(|_| unit(1, 10)).collect(), 500, 1 << 20);
        let sizes: Vec<usize> = b.iter().map(|b| b.ops.len()).collect();
        assert_eq!(sizes, [500, 500, 200]);
        assert_eq!(b.iter().map(|b| b.counts.created).sum::<usize>(), 1200);
        // 100 KiB payloads: five fit under 512 KiB
        let b = batches(
            (0..12).map(|_| unit(1, 100 * 1024)).collect(),
            500,
            BATCH_BYTES,
        );
        let sizes: Vec<usize> = b.iter().map(|b| b.ops.len()).collect();
        assert_eq!(sizes, [5, 5, 2]);
        // a unit never splits; an oversized one goes alone
        let b = batches(
            vec![unit(1, 1), unit(2, 1), unit(1, 900 * 1024), unit(1, 1)],
            2,
            BATCH_BYTES,
        );
        let sizes: Vec<usize> = b.iter().map(|b| b.ops.len()).collect();
        assert_eq!(sizes, [1, 2, 1, 1]);
        assert!(batches(vec![], 500, BATCH_BYTES).is_empty());
    }
}
