//! Writing zones into ZooKeeper, for the tools: a record set's payload written against the
//! version it was read at, multi-transactions of creates, sets and deletes, and the parent
//! nodes above the zones. A write that finds the node changed under it reports a conflict, so
//! that the caller reads again instead of overwriting someone else's change. A transaction that
//! writes record sets also records their names in their zones' change marks
//! ([`crate::zk::marks`]), for the stubs that catch up after a reconnect.

use thiserror::Error;
use zookeeper_client::{Acls, Client, CreateMode, MultiWriteError, Stat};

use crate::zk::acl::hides_hashes;
use crate::zk::auth::persistent;
use crate::zk::marks;
use crate::zk::zone::may_be_reaped;
use crate::zk::{Access, Layout, ZkError};

/// Times a commit builds its marks' entries again when other writers' land first.
const MARK_ATTEMPTS: usize = 20;

/// Whether a write failed because the node changed under it (another writer got there
/// first): read again and retry, rather than give up.
pub fn is_conflict(e: &zookeeper_client::Error) -> bool {
    matches!(
        e,
        zookeeper_client::Error::BadVersion
            | zookeeper_client::Error::NodeExists
            | zookeeper_client::Error::NoNode
            | zookeeper_client::Error::NotEmpty
    )
}

/// Reads a node's data and stat; `None` when it does not exist.
pub async fn get(client: &Client, path: &str) -> Result<Option<(Vec<u8>, Stat)>, ZkError> {
    match client.get_data(path).await {
        Ok(found) => Ok(Some(found)),
        Err(zookeeper_client::Error::NoNode) => Ok(None),
        Err(e) => Err(ZkError::request(path)(e)),
    }
}

/// Writes a record set's new payload: creates the node, or sets its data if still at
/// `current`'s version, or re-creates it as persistent if it [`may_be_reaped`]. `Ok(false)`:
/// the node changed in between; read again.
pub async fn write_set(
    client: &Client,
    layout: &Layout,
    path: &str,
    current: Option<&Stat>,
    payload: &[u8],
) -> Result<bool, ZkError> {
    let ops = match current {
        None => vec![Op::Create {
            path: path.to_string(),
            data: payload.to_vec(),
        }],
        // re-made with the ACL it has, so that a grant on it survives (see `commit`)
        Some(stat) if may_be_reaped(stat) => vec![
            Op::Delete {
                path: path.to_string(),
                version: stat.version,
            },
            Op::Create {
                path: path.to_string(),
                data: payload.to_vec(),
            },
        ],
        Some(stat) => vec![Op::SetData {
            path: path.to_string(),
            data: payload.to_vec(),
            version: stat.version,
        }],
    };
    match commit(client, layout, &ops).await {
        Ok(()) => Ok(true),
        Err(CommitError::Conflict { .. }) => Ok(false),
        Err(CommitError::Other(e)) => Err(e),
    }
}

/// Creates a persistent node (and any missing parents), as `set` does for a new zone.
pub async fn make_node(client: &Client, path: &str) -> Result<(), ZkError> {
    client
        .mkdir(path, &persistent())
        .await
        .map_err(ZkError::access(Access::Create, path))
}

/// A write, as one operation of a multi-transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Creates a persistent node.
    Create {
        path: String,
        data: Vec<u8>,
    },
    SetData {
        path: String,
        data: Vec<u8>,
        version: i32,
    },
    Delete {
        path: String,
        version: i32,
    },
}

impl Op {
    /// What the operation adds to a request, roughly: its path, its data and framing.
    pub fn size(&self) -> usize {
        let (path, data) = match self {
            Op::Create { path, data } | Op::SetData { path, data, .. } => (path, data.len()),
            Op::Delete { path, .. } => (path, 0),
        };
        path.len() + data + 32
    }

    /// What the operation does, for naming the right a refusal lacked.
    pub fn access(&self) -> Access {
        match self {
            Op::Create { .. } => Access::Create,
            Op::SetData { .. } => Access::SetData,
            Op::Delete { .. } => Access::Delete,
        }
    }

    pub fn path(&self) -> &str {
        match self {
            Op::Create { path, .. } | Op::SetData { path, .. } | Op::Delete { path, .. } => path,
        }
    }
}

/// Why a multi-transaction failed.
#[derive(Debug, Error)]
pub enum CommitError {
    /// Someone changed a node between our read and our write: read again and retry.
    #[error("{path} changed while writing ({source})")]
    Conflict {
        path: String,
        source: zookeeper_client::Error,
    },
    #[error(transparent)]
    Other(#[from] ZkError),
}

/// The ACLs to re-create nodes with: a create right after a delete of the same path re-makes
/// a node (a record set that may be a container), and keeps its ACL so that a grant on it
/// survives; by the index of the create. An ACL we may not see in full is not written back.
async fn kept_acls(
    client: &Client,
    ops: &[Op],
) -> Result<Vec<(usize, Vec<zookeeper_client::Acl>)>, CommitError> {
    let mut out = Vec::new();
    for (i, pair) in ops.windows(2).enumerate() {
        if let [Op::Delete { path: gone, .. }, Op::Create { path, .. }] = pair
            && gone == path
        {
            match client.get_acl(path).await {
                Ok((acl, _)) if !hides_hashes(&acl) => out.push((i + 1, acl)),
                Ok(_) => {}
                Err(source) if is_conflict(&source) => {
                    return Err(CommitError::Conflict {
                        path: path.clone(),
                        source,
                    });
                }
                Err(e) => return Err(ZkError::access(Access::Read, path)(e).into()),
            }
        }
    }
    Ok(out)
}

/// Commits `ops` as one multi-transaction: all of them, or none, with the entries of the
/// record sets they write in their zones' change marks ([`marks`]). Another writer's entry
/// landing first is not a conflict of `ops`: the entries are built again.
pub async fn commit(client: &Client, layout: &Layout, ops: &[Op]) -> Result<(), CommitError> {
    let touched = marks::zones_to_touch(layout, ops.iter().map(Op::path));
    let mut attempts = 0;
    loop {
        let mut all = ops.to_vec();
        for (zone, names) in &touched {
            all.extend(mark_ops(client, layout, zone, names).await?);
        }
        match commit_ops(client, &all).await {
            Err(CommitError::Conflict { path, .. })
                if attempts < MARK_ATTEMPTS && path.starts_with(&layout.marks()) =>
            {
                attempts += 1;
            }
            done => return done,
        }
    }
}

/// The operations that record a write of `names` (znode names) in `zone`'s change mark: a
/// new ring entry against the mark's version, or the mark made (with `<root>/marks` if
/// missing). A conflict on the mark means another writer got there first: build them again.
async fn mark_ops(
    client: &Client,
    layout: &Layout,
    zone: &str,
    names: &[String],
) -> Result<Vec<Op>, ZkError> {
    let path = layout.mark(zone);
    if let Some((data, stat)) = get(client, &path).await? {
        return Ok(vec![Op::SetData {
            path,
            data: marks::appended(&data, stat.mzxid, names),
            version: stat.version,
        }]);
    }
    let mut ops = Vec::new();
    let marks = layout.marks();
    if client
        .check_stat(&marks)
        .await
        .map_err(ZkError::request(&marks))?
        .is_none()
    {
        ops.push(Op::Create {
            path: marks,
            data: Vec::new(),
        });
    }
    // a stub lost before the mark existed does not use it (its czxid says so)
    ops.push(Op::Create {
        path,
        data: marks::appended(b"", 0, names),
    });
    Ok(ops)
}

/// Commits `ops` as they are.
async fn commit_ops(client: &Client, ops: &[Op]) -> Result<(), CommitError> {
    // owner-only writes when zkdns has credentials, else open (see zk::auth)
    let options = persistent();
    let kept = kept_acls(client, ops).await?;
    let mut writer = client.new_multi_writer();
    for (i, op) in ops.iter().enumerate() {
        let added = match op {
            Op::Create { path, data } => match kept.iter().find(|(at, _)| *at == i) {
                Some((_, acl)) => {
                    let options = CreateMode::Persistent.with_acls(Acls::new(acl));
                    writer.add_create(path, data, &options)
                }
                None => writer.add_create(path, data, &options),
            },
            Op::SetData {
                path,
                data,
                version,
            } => writer.add_set_data(path, data, Some(*version)),
            Op::Delete { path, version } => writer.add_delete(path, Some(*version)),
        };
        added.map_err(ZkError::request(op.path()))?;
    }
    match writer.commit().await {
        Ok(_) => Ok(()),
        Err(MultiWriteError::OperationFailed { index, source }) => {
            let Some(op) = ops.get(index) else {
                return Err(ZkError::request("?")(source).into());
            };
            let path = op.path().to_string();
            if is_conflict(&source) {
                Err(CommitError::Conflict { path, source })
            } else {
                Err(ZkError::access(op.access(), &path)(source).into())
            }
        }
        Err(MultiWriteError::RequestFailed { source }) => {
            let path = ops.first().map_or("?", Op::path);
            Err(ZkError::request(path)(source).into())
        }
    }
}

/// Nodes from the top of the chroot down to `<root>/zones` that do not exist yet.
pub async fn missing_parents(client: &Client, layout: &Layout) -> Result<Vec<String>, ZkError> {
    let zones = layout.zones();
    let mut paths = Vec::new();
    for (i, c) in zones.char_indices().skip(1) {
        if c == '/' {
            paths.push(zones[..i].to_string());
        }
    }
    paths.push(zones);
    let mut missing = Vec::new();
    for path in paths {
        if client
            .check_stat(&path)
            .await
            .map_err(ZkError::request(&path))?
            .is_none()
        {
            missing.push(path);
        }
    }
    Ok(missing)
}
