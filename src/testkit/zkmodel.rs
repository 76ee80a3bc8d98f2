//! A model of ZooKeeper's tree for the catch-up property test: nodes with the stats that
//! catching up reads (`mzxid`, `pzxid`, children) kept by ZooKeeper's rules (one zxid per
//! transaction; a create or delete moves the parent's `pzxid`), and the writes of zkdns's
//! tools and of plain clients as [`crate::zk::marks`] describes them.

use std::collections::BTreeMap;

use crate::zk::ZkError;
use crate::zk::catchup::{NodeStat, Source};
use crate::zk::layout::Layout;
use crate::zk::tree::NodeState;

#[derive(Debug, Clone)]
struct Node {
    data: String,
    czxid: i64,
    mzxid: i64,
    pzxid: i64,
}

/// The tree, by absolute path.
#[derive(Debug, Clone)]
pub struct ZkModel {
    nodes: BTreeMap<String, Node>,
    zxid: i64,
    pub layout: Layout,
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(p, _)| p)
}

impl ZkModel {
    /// An empty tree with `<root>/zones` and `<root>/marks` made.
    pub fn new(root: &str) -> Self {
        let layout = Layout::new(root).expect("root");
        let mut m = ZkModel {
            nodes: BTreeMap::new(),
            zxid: 1,
            layout,
        };
        let (zones, marks) = (m.layout.zones(), m.layout.marks());
        m.mkdir(&zones);
        m.mkdir(&marks);
        m
    }

    /// The zxid of the last transaction.
    pub fn zxid(&self) -> i64 {
        self.zxid
    }

    pub fn exists(&self, path: &str) -> bool {
        self.nodes.contains_key(path)
    }

    pub fn children(&self, path: &str) -> Vec<String> {
        let prefix = format!("{path}/");
        self.nodes
            .range(prefix.clone()..)
            .take_while(|(p, _)| p.starts_with(&prefix))
            .filter(|(p, _)| !p[prefix.len()..].contains('/'))
            .map(|(p, _)| p[prefix.len()..].to_string())
            .collect()
    }

    /// One transaction: every step gets the same zxid.
    fn txn(&mut self, steps: &[(&str, Option<&str>, bool)]) {
        self.zxid += 1;
        let z = self.zxid;
        for (path, data, create_or_set) in steps {
            match (data, create_or_set) {
                (Some(d), _) if self.nodes.contains_key(*path) => {
                    self.nodes.get_mut(*path).expect("present").data = d.to_string();
                    self.nodes.get_mut(*path).expect("present").mzxid = z;
                }
                (Some(d), _) => {
                    assert!(
                        parent(path).is_empty() || self.nodes.contains_key(parent(path)),
                        "{path}: no parent"
                    );
                    self.nodes.insert(
                        path.to_string(),
                        Node {
                            data: d.to_string(),
                            czxid: z,
                            mzxid: z,
                            pzxid: z,
                        },
                    );
                    if let Some(p) = self.nodes.get_mut(parent(path)) {
                        p.pzxid = z;
                    }
                }
                (None, _) => {
                    assert!(self.children(path).is_empty(), "{path}: has children");
                    if self.nodes.remove(*path).is_some()
                        && let Some(p) = self.nodes.get_mut(parent(path))
                    {
                        p.pzxid = z;
                    }
                }
            }
        }
    }

    /// Makes `path` and its missing parents, one transaction each.
    pub fn mkdir(&mut self, path: &str) {
        let mut at = 0;
        while let Some(i) = path[at + 1..].find('/').map(|i| i + at + 1) {
            if !self.exists(&path[..i]) {
                self.txn(&[(&path[..i], Some(""), true)]);
            }
            at = i;
        }
        if !self.exists(path) {
            self.txn(&[(path, Some(""), true)]);
        }
    }

    /// A plain client's create, set or delete (of a node without children).
    pub fn plain(&mut self, path: &str, data: Option<&str>) {
        if data.is_none() && !self.exists(path) {
            return;
        }
        self.txn(&[(path, data, true)]);
    }

    /// A tool's transaction: `steps`, and the entry for `name` in its zone's mark (the mark
    /// made if missing, as `zk::write::commit` does).
    fn tool_txn(&mut self, zone: &str, name: &str, mut steps: Vec<(String, Option<String>)>) {
        let mark = self.layout.mark(zone);
        let names = [name.to_string()];
        let ring = match self.nodes.get(&mark) {
            Some(n) => crate::zk::marks::appended(n.data.as_bytes(), n.mzxid, &names),
            None => crate::zk::marks::appended(b"", 0, &names),
        };
        steps.push((mark, Some(String::from_utf8(ring).expect("JSON"))));
        let steps: Vec<(&str, Option<&str>, bool)> = steps
            .iter()
            .map(|(p, d)| (p.as_str(), d.as_deref(), true))
            .collect();
        self.txn(&steps);
    }

    /// `zkdns set`/`import` writing a record set, made or changed.
    pub fn tool_set(&mut self, zone: &str, name: &str, data: &str) {
        let path = self.layout.set(zone, name);
        self.tool_txn(zone, name, vec![(path, Some(data.to_string()))]);
    }

    /// `zkdns rm NAME --force`: the members and the set in one transaction, then the name's
    /// listing.
    pub fn tool_rm(&mut self, zone: &str, name: &str) {
        let path = self.layout.set(zone, name);
        if !self.exists(&path) {
            return;
        }
        let mut steps: Vec<(String, Option<String>)> = self
            .children(&path)
            .into_iter()
            .map(|m| (format!("{path}/{m}"), None))
            .collect();
        steps.push((path, None));
        self.tool_txn(zone, name, steps);
        let listed = self.layout.mark_name(zone, name);
        if self.exists(&listed) {
            self.txn(&[(&listed, None, false)]);
        }
    }

    /// `zkdns register`: the name listed, the set made (empty) if missing, the member made.
    pub fn register(&mut self, zone: &str, name: &str, member: &str, data: &str) {
        let listed = self.layout.mark_name(zone, name);
        self.mkdir(&listed);
        let path = self.layout.set(zone, name);
        if !self.exists(&path) {
            self.txn(&[(&path, Some(""), true)]);
        }
        let m = self.layout.member(zone, name, member);
        if !self.exists(&m) {
            self.txn(&[(&m, Some(data), true)]);
        }
    }

    /// What a full read of the zones sees: (path below `<root>/zones`, data), parents first.
    pub fn zones_subtree(&self) -> Vec<(String, String)> {
        let prefix = format!("{}/", self.layout.zones());
        self.nodes
            .iter()
            .filter_map(|(p, n)| Some((p.strip_prefix(&prefix)?.to_string(), n.data.clone())))
            .collect()
    }
}

impl Source for ZkModel {
    async fn stats(&self, paths: &[String]) -> Result<Vec<Option<NodeStat>>, ZkError> {
        Ok(paths
            .iter()
            .map(|p| {
                self.nodes.get(p).map(|n| NodeStat {
                    czxid: n.czxid,
                    mzxid: n.mzxid,
                    pzxid: n.pzxid,
                    num_children: self.children(p).len() as i32,
                })
            })
            .collect())
    }

    async fn listings(&self, paths: &[String]) -> Result<Vec<Option<Vec<String>>>, ZkError> {
        Ok(paths
            .iter()
            .map(|p| self.exists(p).then(|| self.children(p)))
            .collect())
    }

    async fn data(&self, paths: &[String]) -> Result<Vec<Option<NodeState>>, ZkError> {
        Ok(paths
            .iter()
            .map(|p| {
                self.nodes.get(p).map(|n| NodeState {
                    data: n.data.as_bytes().to_vec(),
                    mzxid: n.mzxid,
                    mtime: 1_700_000_000_000,
                })
            })
            .collect())
    }
}
