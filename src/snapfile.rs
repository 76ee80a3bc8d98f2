//! `serve --snapshot PATH`: the last good map, kept on disk so that a restart while ZooKeeper
//! is down still answers (stale). Written atomically (temp file, fsync, rename, fsync of the
//! directory) once changes settle, only from a map that follows ZooKeeper. Read back through
//! the same validation as znodes; a file that is corrupt (checksum), of another format version,
//! or for another root, chroot or zone filter is ignored with a warning, never trusted.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::names::{ZoneName, wire_to_string};
use crate::records::{RecordSetJson, ZoneJson};
use crate::store::node::decode_data;
use crate::store::{Snapshot, Store, unix_ms};
use crate::zk::Layout;
use crate::zk::tree::{NodeState, Tree};

const FORMAT: &str = "zkdns-snapshot";
const VERSION: u32 = 1;
/// A burst of changes is saved once it has been quiet this long…
const QUIET: Duration = Duration::from_secs(1);
/// …but no later than this after its first change.
const MAX_DELAY: Duration = Duration::from_secs(10);

/// What a snapshot belongs to; a file made for anything else is foreign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The chroot of the connect string (`""` for none).
    pub chroot: String,
    pub root: String,
    /// The `--zone` filter, sorted (empty: every zone).
    pub zones: Vec<String>,
}

impl Identity {
    pub fn new(connect: &str, root: &str, zones: &[ZoneName]) -> Self {
        let chroot = connect.find('/').map_or("", |i| &connect[i..]);
        let mut zones: Vec<String> = zones.iter().map(|z| z.to_string()).collect();
        zones.sort();
        Self {
            chroot: chroot.trim_end_matches('/').to_string(),
            root: root.trim_end_matches('/').to_string(),
            zones,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ZoneFile {
    settings: ZoneJson,
    /// Record sets by name relative to the zone (`@` the apex), members merged in.
    sets: BTreeMap<String, RecordSetJson>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    format: String,
    version: u32,
    identity: Identity,
    /// Unix milliseconds when the map last matched ZooKeeper.
    saved_at_ms: u64,
    zones: BTreeMap<String, ZoneFile>,
}

#[derive(Debug, Error)]
pub enum LoadError {
    #[error("cannot read it: {0}")]
    Read(#[from] std::io::Error),
    #[error("its checksum does not match (truncated or corrupt)")]
    Checksum,
    #[error("not a zkdns snapshot: {0}")]
    Format(String),
    #[error("it was made for {found:?}, this stub is {expected:?}")]
    Foreign {
        found: Box<Identity>,
        expected: Box<Identity>,
    },
    #[error("it holds bad data ({0} znodes would be skipped)")]
    BadData(usize),
}

/// The file's bytes: JSON, then a line with the CRC-32 of the JSON.
fn encode(snap: &Snapshot, identity: &Identity, saved_at_ms: u64) -> Vec<u8> {
    let mut zones = BTreeMap::new();
    for zone in snap.zones() {
        let Some(idx) = snap.zone_index(&zone.apex) else {
            continue;
        };
        let suffix = format!(".{}.", zone.name);
        let sets = snap
            .sets(idx)
            .map(|(key, node)| {
                let fqdn = wire_to_string(key);
                let rel = fqdn
                    .strip_suffix(suffix.as_str())
                    .map_or_else(|| "@".to_string(), str::to_string);
                (rel, RecordSetJson::from(&decode_data(&node)))
            })
            .collect();
        zones.insert(
            zone.name.to_string(),
            ZoneFile {
                settings: ZoneJson::from(&zone.settings),
                sets,
            },
        );
    }
    let file = File {
        format: FORMAT.to_string(),
        version: VERSION,
        identity: identity.clone(),
        saved_at_ms,
        zones,
    };
    let mut out = serde_json::to_vec(&file).expect("snapshot serialises");
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(format!("\n{crc:08x}\n").as_bytes());
    out
}

/// Parses and checks a file; returns the map it holds and when it last matched ZooKeeper.
fn decode(bytes: &[u8], expected: &Identity) -> Result<(Snapshot, u64), LoadError> {
    let text = bytes.strip_suffix(b"\n").ok_or(LoadError::Checksum)?;
    let split = text
        .iter()
        .rposition(|&b| b == b'\n')
        .ok_or(LoadError::Checksum)?;
    let (json, crc) = (&text[..split], &text[split + 1..]);
    let crc = std::str::from_utf8(crc)
        .ok()
        .and_then(|c| u32::from_str_radix(c, 16).ok())
        .ok_or(LoadError::Checksum)?;
    if crc32fast::hash(json) != crc {
        return Err(LoadError::Checksum);
    }
    let file: File = serde_json::from_slice(json).map_err(|e| LoadError::Format(e.to_string()))?;
    if file.format != FORMAT || file.version != VERSION {
        return Err(LoadError::Format(format!(
            "{} version {}",
            file.format, file.version
        )));
    }
    if file.identity != *expected {
        return Err(LoadError::Foreign {
            found: Box::new(file.identity),
            expected: Box::new(expected.clone()),
        });
    }
    // through the same validation as znodes
    let layout = Layout::new("/s").expect("literal root");
    let filter = (!expected.zones.is_empty()).then(|| {
        expected
            .zones
            .iter()
            .filter_map(|z| ZoneName::parse(z).ok())
            .collect()
    });
    let mut tree = Tree::new(filter);
    let node = |data: Vec<u8>| NodeState {
        data,
        mzxid: 0,
        mtime: file.saved_at_ms as i64,
    };
    for (zone, z) in &file.zones {
        let payload = serde_json::to_vec(&z.settings).expect("settings serialise");
        tree.apply(&layout, &layout.zone(zone), Some(&node(payload)));
        for (name, set) in &z.sets {
            tree.apply(
                &layout,
                &layout.set(zone, name),
                Some(&node(set.to_payload())),
            );
        }
    }
    if tree.bad_nodes() > 0 {
        return Err(LoadError::BadData(tree.bad_nodes()));
    }
    tree.shrink_to_fit();
    Ok((tree.snapshot(), file.saved_at_ms))
}

/// Writes `bytes` to `path` atomically and durably.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Reads a snapshot into `store` (stale: ZooKeeper has not confirmed it). Anything wrong with
/// the file is logged and the file ignored.
pub fn restore(path: &Path, identity: &Identity, store: &Store) -> bool {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return false,
        Err(e) => {
            warn!(path = %path.display(), "ignoring the snapshot: {}", LoadError::Read(e));
            return false;
        }
    };
    match decode(&bytes, identity) {
        Ok((snap, saved_at_ms)) => {
            let names = snap.names;
            let age = Duration::from_millis(unix_ms().saturating_sub(saved_at_ms));
            store.restore(snap, saved_at_ms);
            info!(
                path = %path.display(),
                names,
                "restored {names} names saved {}s ago; serving them stale until ZooKeeper answers",
                age.as_secs()
            );
            true
        }
        Err(e) => {
            warn!(path = %path.display(), "ignoring the snapshot: {e}");
            false
        }
    }
}

/// Saves the map to `path` whenever it changes and settles, as long as it follows ZooKeeper.
pub async fn keep(path: PathBuf, identity: Identity, store: Store, cancel: CancellationToken) {
    let mut changes = store.subscribe();
    loop {
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            () = cancel.cancelled() => return,
        }
        // coalesce a burst: quiet for QUIET, or MAX_DELAY after the first change
        let deadline = tokio::time::Instant::now() + MAX_DELAY;
        loop {
            let quiet = tokio::time::Instant::now() + QUIET;
            tokio::select! {
                r = changes.changed() => if r.is_err() { return },
                () = tokio::time::sleep_until(quiet.min(deadline)) => break,
                () = cancel.cancelled() => return,
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
        }
        if !store.is_ready() || store.is_stale() {
            continue; // only a map that follows ZooKeeper is worth keeping
        }
        let snap = store.load_full();
        let path2 = path.clone();
        let identity2 = identity.clone();
        let result = tokio::task::spawn_blocking(move || {
            write_atomically(&path2, &encode(&snap, &identity2, unix_ms()))
        })
        .await;
        match result {
            Ok(Ok(())) => debug!(path = %path.display(), "snapshot saved"),
            Ok(Err(e)) => warn!(path = %path.display(), error = %e, "cannot save the snapshot"),
            Err(e) => warn!(error = %e, "snapshot writer failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::wire_key_str;
    use crate::store::Lookup;

    fn tree() -> Tree {
        let l = Layout::new("/z").unwrap();
        let mut t = Tree::new(None);
        let n = |d: &str| NodeState {
            data: d.as_bytes().to_vec(),
            mzxid: 1,
            mtime: 0,
        };
        for (path, data) in [
            (
                "c.l",
                r#"{"ttl": 9, "soa": {"serial": 4}, "ns": ["ns1.c.l."]}"#,
            ),
            ("c.l/@", r#"{"A": ["10.0.0.9"], "TXT": [["a", "b"]]}"#),
            ("c.l/web", r#"{"A": ["10.0.0.1"]}"#),
            ("c.l/web/m1", r#"{"A": ["10.0.0.2"]}"#),
            ("c.l/api.prod", r#"{"CNAME": "web"}"#),
            (
                "c.l/*.w",
                r#"{"SRV": [{"port": 80, "target": "web"}], "ttl": 3}"#,
            ),
            ("c.l/empty", ""),
        ] {
            t.apply(&l, &format!("/z/zones/{path}"), Some(&n(data)));
        }
        t
    }

    fn id() -> Identity {
        Identity::new("127.0.0.1:2181/chroot", "/zkdns", &[])
    }

    fn observe(s: &Snapshot) -> Vec<String> {
        let mut scratch = [0u8; 257];
        [
            "c.l",
            "web.c.l",
            "api.prod.c.l",
            "prod.c.l",
            "x.w.c.l",
            "empty.c.l",
            "no.c.l",
        ]
        .iter()
        .map(|n| match s.lookup(&wire_key_str(n), &mut scratch) {
            Lookup::Found { node, .. } => format!(
                "{n} {:?}",
                node.rrsets()
                    .map(|r| r.iter().map(<[u8]>::to_vec).collect::<Vec<_>>())
                    .collect::<Vec<_>>()
            ),
            other => format!("{n} {other:?}"),
        })
        .chain([format!("{} {}", s.names, s.records)])
        .collect()
    }

    #[test]
    fn round_trips_the_map() {
        let snap = tree().snapshot();
        let bytes = encode(&snap, &id(), 1234);
        let (back, at) = decode(&bytes, &id()).unwrap();
        assert_eq!(at, 1234);
        assert_eq!(observe(&back), observe(&snap));
    }

    #[test]
    fn corrupt_or_foreign_files_are_refused() {
        let bytes = encode(&tree().snapshot(), &id(), 1);
        let mut flipped = bytes.clone();
        flipped[20] ^= 1;
        assert!(matches!(decode(&flipped, &id()), Err(LoadError::Checksum)));
        assert!(matches!(
            decode(&bytes[..bytes.len() - 5], &id()),
            Err(LoadError::Checksum)
        ));
        let other = Identity::new("127.0.0.1:2181", "/zkdns", &[]);
        assert!(matches!(
            decode(&bytes, &other),
            Err(LoadError::Foreign { .. })
        ));
        assert!(matches!(
            decode(b"{}\n0\n", &id()),
            Err(LoadError::Checksum)
        ));
        // a valid checksum over bad data is still not trusted
        let json = br#"{"format":"zkdns-snapshot","version":1,"identity":{"chroot":"/chroot","root":"/zkdns","zones":[]},"saved_at_ms":1,"zones":{"c.l":{"settings":{},"sets":{"bad":{"A":["10.0.0.1"],"CNAME":"x."}}}}}"#;
        let mut forged = json.to_vec();
        forged.extend_from_slice(format!("\n{:08x}\n", crc32fast::hash(json)).as_bytes());
        assert!(matches!(decode(&forged, &id()), Err(LoadError::BadData(1))));
    }

    #[test]
    fn writes_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snap");
        write_atomically(&path, b"one").unwrap();
        write_atomically(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
