//! The znode layout under the root: `<root>/zones/<zone>/<name>/<member>`, and beside it the
//! change marks `<root>/marks/<zone>[/<name>]` (see [`crate::zk::marks`]). Builds paths and
//! classifies the paths that watch events name.

use thiserror::Error;

use crate::names::{RelName, ZoneName};

#[derive(Debug, Error, PartialEq, Eq)]
#[error("root {0:?} must be an absolute ZooKeeper path such as /zkdns")]
pub struct BadRoot(pub String);

/// Where zkdns keeps its data, relative to the client's chroot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    root: String,
}

/// What a path under the zones node is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodePath<'a> {
    /// `<root>/zones` itself.
    Zones,
    Zone(&'a str),
    Set(&'a str, &'a str),
    Member(&'a str, &'a str, &'a str),
    /// Deeper than a member, or outside `<root>/zones`: not ours.
    Other,
}

impl Layout {
    pub fn new(root: &str) -> Result<Self, BadRoot> {
        let trimmed = root.trim_end_matches('/');
        let valid = root.starts_with('/')
            && !trimmed.contains("//")
            && !trimmed.split('/').any(|c| c == "." || c == "..");
        if !valid {
            return Err(BadRoot(root.to_string()));
        }
        Ok(Self {
            root: trimmed.to_string(),
        })
    }

    /// The root itself (`""` when it is the chroot's top).
    pub fn root(&self) -> &str {
        if self.root.is_empty() {
            "/"
        } else {
            &self.root
        }
    }

    pub fn zones(&self) -> String {
        format!("{}/zones", self.root)
    }

    pub fn zone(&self, zone: &str) -> String {
        format!("{}/zones/{zone}", self.root)
    }

    pub fn zone_of(&self, zone: &ZoneName) -> String {
        self.zone(zone.as_str())
    }

    pub fn set(&self, zone: &str, name: &str) -> String {
        format!("{}/zones/{zone}/{name}", self.root)
    }

    pub fn set_of(&self, zone: &ZoneName, name: &RelName) -> String {
        self.set(zone.as_str(), name.as_str())
    }

    /// `<root>/marks`: outside the watched zones subtree, so that touching a mark sends no
    /// event to every stub.
    pub fn marks(&self) -> String {
        format!("{}/marks", self.root)
    }

    /// A zone's change mark.
    pub fn mark(&self, zone: &str) -> String {
        format!("{}/marks/{zone}", self.root)
    }

    /// The mark of a name granted to a registrar.
    pub fn mark_name(&self, zone: &str, name: &str) -> String {
        format!("{}/marks/{zone}/{name}", self.root)
    }

    pub fn member(&self, zone: &str, name: &str, member: &str) -> String {
        format!("{}/zones/{zone}/{name}/{member}", self.root)
    }

    /// Classifies a path that a watch event or a listing names.
    pub fn classify<'a>(&self, path: &'a str) -> NodePath<'a> {
        let zones = self.zones();
        let Some(rest) = path.strip_prefix(zones.as_str()) else {
            return NodePath::Other;
        };
        if rest.is_empty() {
            return NodePath::Zones;
        }
        let Some(rest) = rest.strip_prefix('/') else {
            return NodePath::Other;
        };
        let parts: Vec<&str> = rest.split('/').collect();
        match parts[..] {
            [z] => NodePath::Zone(z),
            [z, n] => NodePath::Set(z, n),
            [z, n, m] => NodePath::Member(z, n, m),
            _ => NodePath::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_classifies_paths() {
        let l = Layout::new("/zkdns/").unwrap();
        assert_eq!(l.zones(), "/zkdns/zones");
        assert_eq!(l.classify("/zkdns/zones"), NodePath::Zones);
        assert_eq!(l.classify("/zkdns/zones/c.l"), NodePath::Zone("c.l"));
        assert_eq!(
            l.classify("/zkdns/zones/c.l/web"),
            NodePath::Set("c.l", "web")
        );
        assert_eq!(
            l.classify("/zkdns/zones/c.l/web/m1"),
            NodePath::Member("c.l", "web", "m1")
        );
        assert_eq!(l.classify("/zkdns/zones/c.l/web/m1/x"), NodePath::Other);
        assert_eq!(l.classify("/zkdns/zonesx"), NodePath::Other);
        assert_eq!(l.mark("c.l"), "/zkdns/marks/c.l");
        assert_eq!(l.classify(&l.mark_name("c.l", "web")), NodePath::Other);
        assert_eq!(l.classify("/other"), NodePath::Other);
        let top = Layout::new("/").unwrap();
        assert_eq!(top.zones(), "/zones");
        assert_eq!(top.classify("/zones/a"), NodePath::Zone("a"));
        assert!(Layout::new("zkdns").is_err());
        assert!(Layout::new("/a//b").is_err());
    }
}
