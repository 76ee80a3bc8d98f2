//! Change marks: what lets a stub that lost its connection find what changed meanwhile without
//! reading every node. ZooKeeper's stats show most of it: a zone's `pzxid` moves when a name is
//! made or deleted, a name's when a member joins or leaves (an expiry too). They do not show a
//! record set's data changing, nor a member joining a name that the stub does not check:
//!
//! - each tool write that changes a record set's data also touches the zone's mark
//!   `<root>/marks/<zone>` (sets its data, at any version: writers never conflict on it) in the
//!   same transaction, so a stub whose connection was lost at zxid Z reads the zone in full when
//!   its mark moved past Z;
//! - the names that get members are listed as `<root>/marks/<zone>/<name>`, by `register` before
//!   it makes its first member there, or by `grant` (a registrar may not list a name itself), and
//!   the stub checks those names' stats.
//!
//! Marks live outside the watched zones subtree, so touching one sends no event to the stubs.
//! A zone without a mark (written only by an older zkdns or by plain ZooKeeper clients) is read
//! in full after a reconnect, as it was before marks.

use zookeeper_client::Client;

use crate::zk::auth::persistent;
use crate::zk::layout::{Layout, NodePath};
use crate::zk::write::Op;
use crate::zk::{Access, ZkError};

/// The operation that touches `zone`'s mark.
pub fn touch(layout: &Layout, zone: &str) -> Op {
    Op::SetData {
        path: layout.mark(zone),
        data: Vec::new(),
        version: -1,
    }
}

/// The zones whose marks `ops` must touch: those where a record set's data changes (set, or
/// deleted and made again). Names made or deleted, members and zone settings show in the
/// stats.
pub fn zones_to_touch(layout: &Layout, ops: &[Op]) -> Vec<String> {
    let mut zones: Vec<String> = Vec::new();
    for op in ops {
        let zone = match (op, layout.classify(op.path())) {
            (Op::SetData { .. }, NodePath::Set(z, _)) => Some(z),
            (Op::Create { path, .. }, NodePath::Set(z, _))
                if ops
                    .iter()
                    .any(|o| matches!(o, Op::Delete { path: gone, .. } if gone == path)) =>
            {
                Some(z)
            }
            _ => None,
        };
        if let Some(z) = zone
            && !zones.iter().any(|known| known == z)
        {
            zones.push(z.to_string());
        }
    }
    zones
}

/// Makes `zone`'s mark (and `<root>/marks`) if missing.
pub async fn make(client: &Client, layout: &Layout, zone: &str) -> Result<(), ZkError> {
    let path = layout.mark(zone);
    match client.mkdir(&path, &persistent()).await {
        Ok(()) | Err(zookeeper_client::Error::NodeExists) => Ok(()),
        Err(e) => Err(ZkError::access(Access::Create, &path)(e)),
    }
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

    fn set_data(path: &str) -> Op {
        Op::SetData {
            path: path.into(),
            data: Vec::new(),
            version: 1,
        }
    }

    #[test]
    fn only_changes_the_stats_miss_are_marked() {
        let l = Layout::new("/zkdns").unwrap();
        let create = |p: &str| Op::Create {
            path: p.into(),
            data: Vec::new(),
        };
        let delete = |p: &str| Op::Delete {
            path: p.into(),
            version: -1,
        };
        // new names, deleted names and zone settings show in the stats
        let plain = [
            create("/zkdns/zones/a.l/web"),
            delete("/zkdns/zones/a.l/db"),
            set_data("/zkdns/zones/a.l"),
        ];
        assert!(zones_to_touch(&l, &plain).is_empty());
        let ops = [
            set_data("/zkdns/zones/a.l/web"),
            set_data("/zkdns/zones/a.l/db"),
            delete("/zkdns/zones/b.l/x"),
            create("/zkdns/zones/b.l/x"),
            create("/zkdns/zones/c.l/web/m1"),
        ];
        assert_eq!(zones_to_touch(&l, &ops), ["a.l", "b.l"]);
        assert_eq!(touch(&l, "a.l").path(), "/zkdns/marks/a.l");
    }
}
