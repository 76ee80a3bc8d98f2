//! The hand tools on a zone's record sets: `zkdns ls`, `set`, `rm` and `export`, and the
//! reading of one zone's nodes (with versions and members) that they and `import` share.
//! Edits are version-checked, so a concurrent change is re-read instead of overwritten.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::anyhow;
use futures_util::future::join_all;
use hickory_proto::serialize::txt::parse_ttl;
use serde_json::{Value, json};
use zookeeper_client::{Client, MultiReadResult, Stat};

use crate::cli::{ExportArgs, GlobalArgs, LsArgs, RecordKind, RmArgs, SetArgs};
use crate::error::{Failure, ResultExt};
use crate::names::{RelName, ZoneName, parse_target};
use crate::records::{
    DataError, MAX_PAYLOAD, Mx, RecordSetJson, Srv, Txt, ZoneSettings, decode_zone, validate,
};
use crate::zk::auth::persistent;
use crate::zk::{Layout, ZkConfig, ZkError, is_conflict};
use crate::zonefile::{self, ExportSet};

/// Reads per multiRead request: well below jute.maxbuffer for the replies.
const READ_BATCH: usize = 1000;
/// Times an edit re-reads and retries when the node changed under it.
const ATTEMPTS: usize = 10;

/// A record-set node as read, with its members when asked for.
#[derive(Debug, Clone)]
pub struct SetNode {
    pub data: Vec<u8>,
    pub stat: Stat,
    /// Member name → payload (only when read with members).
    pub members: BTreeMap<String, Vec<u8>>,
}

impl SetNode {
    /// Whether the node may be a container about to be removed: see [`may_be_reaped`].
    pub fn may_be_reaped(&self) -> bool {
        may_be_reaped(&self.stat)
    }
}

/// `register` creates missing record sets as CONTAINER nodes, which ZooKeeper removes (data
/// and all) within a minute once their last member is gone. Clients cannot tell a container
/// from a persistent node (ZooKeeper reports ephemeralOwner 0 for both), but a node without
/// members that once had some may be one: writes re-create it as a persistent node instead.
/// A re-created persistent node loses nothing (it has no children).
pub fn may_be_reaped(stat: &Stat) -> bool {
    stat.num_children == 0 && stat.cversion > 0
}

/// A zone node and its record sets, by znode name.
#[derive(Debug, Clone)]
pub struct ZoneNodes {
    pub data: Vec<u8>,
    pub stat: Stat,
    pub sets: BTreeMap<String, SetNode>,
}

/// Opens a ZooKeeper session for a one-shot command (exit 1 when unreachable).
pub async fn connect(global: &GlobalArgs) -> Result<Client, Failure> {
    let config = ZkConfig::from_global(global)?;
    crate::zk::connect(&config).await.or_runtime()
}

enum Read<'a> {
    Data(&'a str),
    Children(&'a str),
}

/// Runs reads in multiRead batches, all batches in flight at once.
async fn multi_read(client: &Client, reads: &[Read<'_>]) -> Result<Vec<MultiReadResult>, ZkError> {
    let mut batches = Vec::new();
    for chunk in reads.chunks(READ_BATCH) {
        let mut reader = client.new_multi_reader();
        for read in chunk {
            let (added, path) = match read {
                Read::Data(p) => (reader.add_get_data(p), p),
                Read::Children(p) => (reader.add_get_children(p), p),
            };
            added.map_err(ZkError::request(path))?;
        }
        let first = match chunk[0] {
            Read::Data(p) | Read::Children(p) => p,
        };
        batches.push(async move { reader.commit().await.map_err(ZkError::request(first)) });
    }
    let mut out = Vec::with_capacity(reads.len());
    for result in join_all(batches).await {
        out.extend(result?);
    }
    Ok(out)
}

/// Reads a zone's node and record sets (and their members' data if `members`); `None` when
/// the zone node does not exist. Nodes that vanish while reading are left out.
pub async fn read_zone(
    client: &Client,
    layout: &Layout,
    zone: &ZoneName,
    members: bool,
) -> Result<Option<ZoneNodes>, ZkError> {
    let path = layout.zone_of(zone);
    let mut results = multi_read(client, &[Read::Data(&path), Read::Children(&path)])
        .await?
        .into_iter();
    let (data, stat) = match results.next() {
        Some(MultiReadResult::Data { data, stat }) => (data, stat),
        Some(MultiReadResult::Error {
            err: zookeeper_client::Error::NoNode,
        }) => return Ok(None),
        Some(MultiReadResult::Error { err }) => return Err(ZkError::request(&path)(err)),
        _ => return Err(ZkError::request(&path)(unexpected())),
    };
    let children = match results.next() {
        Some(MultiReadResult::Children { children }) => children,
        _ => return Ok(None), // deleted between the two reads of one multiRead: cannot happen
    };
    let paths: Vec<String> = children.iter().map(|c| format!("{path}/{c}")).collect();
    let reads: Vec<Read> = paths.iter().map(|p| Read::Data(p)).collect();
    let mut sets = BTreeMap::new();
    for (name, result) in children.into_iter().zip(multi_read(client, &reads).await?) {
        if let MultiReadResult::Data { data, stat } = result {
            let node = SetNode {
                data,
                stat,
                members: BTreeMap::new(),
            };
            sets.insert(name, node);
        }
    }
    if members {
        read_members(client, &path, &mut sets).await?;
    }
    Ok(Some(ZoneNodes { data, stat, sets }))
}

fn unexpected() -> zookeeper_client::Error {
    zookeeper_client::Error::UnexpectedError("unexpected multiRead reply".to_string())
}

async fn read_members(
    client: &Client,
    zone_path: &str,
    sets: &mut BTreeMap<String, SetNode>,
) -> Result<(), ZkError> {
    let with: Vec<String> = sets
        .iter()
        .filter(|(_, s)| s.stat.num_children > 0)
        .map(|(n, _)| n.clone())
        .collect();
    let paths: Vec<String> = with.iter().map(|n| format!("{zone_path}/{n}")).collect();
    let reads: Vec<Read> = paths.iter().map(|p| Read::Children(p)).collect();
    let mut member_paths = Vec::new();
    for (set, result) in with.iter().zip(multi_read(client, &reads).await?) {
        if let MultiReadResult::Children { children } = result {
            for member in children {
                member_paths.push((set.clone(), member));
            }
        }
    }
    let paths: Vec<String> = member_paths
        .iter()
        .map(|(s, m)| format!("{zone_path}/{s}/{m}"))
        .collect();
    let reads: Vec<Read> = paths.iter().map(|p| Read::Data(p)).collect();
    for ((set, member), result) in member_paths
        .into_iter()
        .zip(multi_read(client, &reads).await?)
    {
        if let (MultiReadResult::Data { data, .. }, Some(node)) = (result, sets.get_mut(&set)) {
            node.members.insert(member, data);
        }
    }
    Ok(())
}

/// The zones under the root with their number of record sets.
async fn list_zones(client: &Client, layout: &Layout) -> Result<Vec<(String, usize)>, ZkError> {
    let zones_path = layout.zones();
    let zones = match client.list_children(&zones_path).await {
        Ok(z) => z,
        Err(zookeeper_client::Error::NoNode) => return Ok(Vec::new()),
        Err(e) => return Err(ZkError::request(&zones_path)(e)),
    };
    let paths: Vec<String> = zones.iter().map(|z| layout.zone(z)).collect();
    let reads: Vec<Read> = paths.iter().map(|p| Read::Data(p)).collect();
    let mut out = Vec::new();
    for (zone, result) in zones.into_iter().zip(multi_read(client, &reads).await?) {
        if let MultiReadResult::Data { stat, .. } = result {
            out.push((zone, usize::try_from(stat.num_children).unwrap_or(0)));
        }
    }
    out.sort();
    Ok(out)
}

/// Record sets in the order they are shown: the apex first, then by name.
fn apex_first<T>(sets: &BTreeMap<String, T>) -> Vec<(&String, &T)> {
    let mut out: Vec<_> = sets.iter().collect();
    out.sort_by_key(|(name, _)| (name.as_str() != "@", *name));
    out
}

/// A record set's JSON as stored (an empty payload is an empty set).
pub fn decode_set(payload: &[u8]) -> Result<RecordSetJson, serde_json::Error> {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(RecordSetJson::default());
    }
    serde_json::from_slice(payload)
}

/// A name as typed (any case, trailing dot optional) → lower-case, no trailing dot.
fn fqdn_arg(name: &str) -> Result<String, Failure> {
    let fqdn = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    // checked like a zone name, allowing a leading wildcard label
    let plain = fqdn.strip_prefix("*.").unwrap_or(&fqdn);
    ZoneName::parse(plain)
        .map_err(|e| Failure::input(anyhow!("NAME {name:?} is not a valid name: {e}")))?;
    Ok(fqdn)
}

/// The zone `fqdn` goes in, of the zone nodes `zones` under `zones_path`: `explicit` (which
/// must contain it) or the longest one that `fqdn` ends with.
pub(crate) fn pick_zone(
    zones: &[&str],
    zones_path: &str,
    fqdn: &str,
    explicit: Option<&ZoneName>,
) -> Result<ZoneName, Failure> {
    if let Some(z) = explicit {
        if !z.contains(fqdn) {
            return Err(Failure::input(anyhow!("{fqdn} is not in the zone {z}")));
        }
        return Ok(z.clone());
    }
    zones
        .iter()
        .filter_map(|z| ZoneName::from_znode(z).ok())
        .filter(|z| z.contains(fqdn))
        .max_by_key(|z| z.as_str().len())
        .ok_or_else(|| {
            Failure::input(anyhow!(
                "no zone under {zones_path} contains {fqdn} (zones: {}); pass --zone",
                crate::check::list(zones)
            ))
        })
}

/// The zone that `fqdn` belongs to: `explicit` (which must contain it) or the longest zone
/// under the root that it ends with. Also returns whether the zone node exists.
async fn zone_for(
    client: &Client,
    layout: &Layout,
    fqdn: &str,
    explicit: Option<&ZoneName>,
) -> Result<(ZoneName, RelName, bool), Failure> {
    let zones = list_zones(client, layout).await.or_runtime()?;
    let names: Vec<&str> = zones.iter().map(|(z, _)| z.as_str()).collect();
    let zone = pick_zone(&names, &layout.zones(), fqdn, explicit)?;
    let exists = names.contains(&zone.as_str());
    let name = zone.relative(fqdn).ok_or_else(|| {
        let rel = &fqdn[..fqdn.len() - zone.as_str().len() - 1];
        let why = RelName::from_znode(rel, &zone)
            .err()
            .map_or_else(String::new, |e| format!(": {e}"));
        Failure::input(anyhow!("{fqdn} is not a valid record-set name{why}"))
    })?;
    Ok((zone, name, exists))
}

/// Replaces the records of `kind` in `set` with `values` (see `zkdns set --help` for the
/// formats), then validates the result; on error `set` is left as it was. Targets are stored
/// absolute.
pub fn set_records(
    set: &mut RecordSetJson,
    kind: RecordKind,
    values: &[String],
    zone: &ZoneName,
) -> Result<(), String> {
    let mut next = set.clone();
    replace_records(&mut next, kind, values, zone)?;
    next.normalise();
    check(&next, zone)?;
    *set = next;
    Ok(())
}

fn replace_records(
    set: &mut RecordSetJson,
    kind: RecordKind,
    values: &[String],
    zone: &ZoneName,
) -> Result<(), String> {
    let target = |v: &str| {
        parse_target(v, zone)
            .map(|n| n.to_ascii())
            .map_err(|e| format!("{v:?}: {e}"))
    };
    let number = |v: &str, what: &str| {
        v.parse::<u16>()
            .map_err(|_| format!("{v:?} is not a {what} (0-65535)"))
    };
    let one = |what: &str| {
        if values.len() == 1 {
            Ok(values[0].as_str())
        } else {
            Err(format!(
                "{what} takes exactly one value, not {}",
                values.len()
            ))
        }
    };
    match kind {
        RecordKind::A => {
            set.a = values
                .iter()
                .map(|v| {
                    v.parse::<Ipv4Addr>()
                        .map_err(|_| format!("{v:?} is not an IPv4 address"))
                })
                .collect::<Result<_, _>>()?;
        }
        RecordKind::Aaaa => {
            set.aaaa = values
                .iter()
                .map(|v| {
                    v.parse::<Ipv6Addr>()
                        .map_err(|_| format!("{v:?} is not an IPv6 address"))
                })
                .collect::<Result<_, _>>()?;
        }
        RecordKind::Cname => set.cname = Some(target(one("CNAME")?)?),
        RecordKind::Txt => set.txt = values.iter().map(|v| Txt::One(v.clone())).collect(),
        RecordKind::Ptr => set.ptr = values.iter().map(|v| target(v)).collect::<Result<_, _>>()?,
        RecordKind::Mx => {
            set.mx = values
                .iter()
                .map(|v| match v.split_whitespace().collect::<Vec<_>>()[..] {
                    [pref, exchange] => Ok(Mx {
                        preference: number(pref, "preference")?,
                        exchange: target(exchange)?,
                    }),
                    _ => Err(format!(
                        "MX {v:?} is not \"PREFERENCE EXCHANGE\" (one quoted argument per record)"
                    )),
                })
                .collect::<Result<_, _>>()?;
        }
        RecordKind::Srv => {
            set.srv = values
                .iter()
                .map(|v| match v.split_whitespace().collect::<Vec<_>>()[..] {
                    [priority, weight, port, t] => Ok(Srv {
                        priority: number(priority, "priority")?,
                        weight: number(weight, "weight")?,
                        port: number(port, "port")?,
                        target: target(t)?,
                    }),
                    _ => Err(format!(
                        "SRV {v:?} is not \"PRIORITY WEIGHT PORT TARGET\" (one quoted argument per record)"
                    )),
                })
                .collect::<Result<_, _>>()?;
        }
        RecordKind::Ttl => {
            let v = one("TTL")?;
            set.ttl =
                Some(parse_ttl(v).map_err(|_| format!("TTL {v:?} is not a number of seconds"))?);
        }
    }
    Ok(())
}

/// Removes the records of `kind` from `set`; false when it had none.
pub fn remove_records(set: &mut RecordSetJson, kind: RecordKind) -> bool {
    fn clear<T>(v: &mut Vec<T>) -> bool {
        let had = !v.is_empty();
        v.clear();
        had
    }
    match kind {
        RecordKind::A => clear(&mut set.a),
        RecordKind::Aaaa => clear(&mut set.aaaa),
        RecordKind::Cname => set.cname.take().is_some(),
        RecordKind::Txt => clear(&mut set.txt),
        RecordKind::Srv => clear(&mut set.srv),
        RecordKind::Mx => clear(&mut set.mx),
        RecordKind::Ptr => clear(&mut set.ptr),
        RecordKind::Ttl => set.ttl.take().is_some(),
    }
}

fn check(set: &RecordSetJson, zone: &ZoneName) -> Result<(), String> {
    validate(set, zone).map_err(|e: DataError| e.to_string())?;
    let size = set.to_payload().len();
    if size > MAX_PAYLOAD {
        return Err(format!(
            "the record set would take {size} bytes, over ZooKeeper's {MAX_PAYLOAD} byte limit"
        ));
    }
    Ok(())
}

/// Runs `body` with a session, closing it afterwards whatever the outcome.
pub(crate) async fn with_session<T>(
    global: &GlobalArgs,
    body: impl AsyncFnOnce(&Client, &Layout) -> Result<T, Failure>,
) -> Result<T, Failure> {
    let layout = Layout::new(&global.root).or_input()?;
    let client = connect(global).await?;
    let result = body(&client, &layout).await;
    crate::zk::close(client).await;
    result
}

/// Writes a record set's new payload: creates the node, or sets its data if still at
/// `version`, or re-creates it as persistent if it [`may_be_reaped`]. `Ok(false)`: the
/// node changed in between; read again.
async fn write_set(
    client: &Client,
    path: &str,
    current: Option<&Stat>,
    payload: &[u8],
) -> Result<bool, Failure> {
    let result = match current {
        None => client
            .create(path, payload, &persistent())
            .await
            .map(|_| ()),
        Some(stat) if may_be_reaped(stat) => {
            let mut writer = client.new_multi_writer();
            writer
                .add_delete(path, Some(stat.version))
                .and_then(|()| writer.add_create(path, payload, &persistent()))
                .map_err(ZkError::request(path))
                .or_runtime()?;
            writer.commit().await.map(|_| ()).map_err(Into::into)
        }
        Some(stat) => client
            .set_data(path, payload, Some(stat.version))
            .await
            .map(|_| ()),
    };
    match result {
        Ok(()) => Ok(true),
        Err(e) if is_conflict(&e) => Ok(false),
        Err(e) => Err(Failure::runtime(ZkError::request(path)(e))),
    }
}

/// Reads a node's data and stat; `None` when it does not exist.
async fn get(client: &Client, path: &str) -> Result<Option<(Vec<u8>, Stat)>, Failure> {
    match client.get_data(path).await {
        Ok(found) => Ok(Some(found)),
        Err(zookeeper_client::Error::NoNode) => Ok(None),
        Err(e) => Err(Failure::runtime(ZkError::request(path)(e))),
    }
}

fn bad_data(fqdn: &str, e: impl std::fmt::Display) -> Failure {
    Failure::input(anyhow!(
        "the record set {fqdn} holds data that is not valid ({e}); fix it or `zkdns rm` it first"
    ))
}

/// Runs `zkdns set`.
pub async fn set(global: &GlobalArgs, args: SetArgs) -> Result<(), Failure> {
    let fqdn = fqdn_arg(&args.name)?;
    with_session(global, async |client, layout| {
        let (zone, name, zone_exists) = zone_for(client, layout, &fqdn, args.zone.as_ref()).await?;
        if !zone_exists {
            client
                .mkdir(&layout.zone_of(&zone), &persistent())
                .await
                .map_err(ZkError::request(&layout.zone_of(&zone)))
                .or_runtime()?;
        }
        if args.kind == RecordKind::Cname && name.is_apex() {
            return Err(Failure::input(anyhow!(
                "{fqdn}: a CNAME cannot be at the zone apex, which has SOA and NS records"
            )));
        }
        let path = layout.set_of(&zone, &name);
        for _ in 0..ATTEMPTS {
            let current = get(client, &path).await?;
            let mut set = match &current {
                Some((data, _)) => decode_set(data).map_err(|e| bad_data(&fqdn, e))?,
                None => RecordSetJson::default(),
            };
            let before = set.clone();
            set_records(&mut set, args.kind, &args.values, &zone)
                .map_err(|e| Failure::input(anyhow!("{fqdn}: {e}")))?;
            if current.is_some() && set == before {
                println!("{fqdn}: {} (unchanged)", set.to_text());
                return Ok(());
            }
            if write_set(
                client,
                &path,
                current.as_ref().map(|(_, s)| s),
                &set.to_payload(),
            )
            .await?
            {
                println!("{fqdn}: {}", set.to_text());
                return Ok(());
            }
        }
        Err(Failure::runtime(anyhow!("{path} kept changing; try again")))
    })
    .await
}

/// Runs `zkdns rm`.
pub async fn rm(global: &GlobalArgs, args: RmArgs) -> Result<(), Failure> {
    let fqdn = fqdn_arg(&args.name)?;
    with_session(global, async |client, layout| {
        let (zone, name, zone_exists) = zone_for(client, layout, &fqdn, args.zone.as_ref()).await?;
        let missing =
            || Failure::input(anyhow!("there is no record set {fqdn} in the zone {zone}"));
        if !zone_exists {
            return Err(missing());
        }
        let path = layout.set_of(&zone, &name);
        for _ in 0..ATTEMPTS {
            let Some((data, stat)) = get(client, &path).await? else {
                return Err(missing());
            };
            if let Some(kind) = args.kind {
                let mut set = decode_set(&data).map_err(|e| bad_data(&fqdn, e))?;
                if !remove_records(&mut set, kind) {
                    return Err(Failure::input(anyhow!("{fqdn} has no {kind} to remove")));
                }
                if write_set(client, &path, Some(&stat), &set.to_payload()).await? {
                    let empty = if set.is_empty() {
                        " (no records left: the name answers NODATA; `zkdns rm NAME` deletes it)"
                    } else {
                        ""
                    };
                    println!("{fqdn}: {}{empty}", set.to_text());
                    return Ok(());
                }
                continue;
            }
            let members = match client.list_children(&path).await {
                Ok(m) => m,
                Err(zookeeper_client::Error::NoNode) => continue,
                Err(e) => return Err(Failure::runtime(ZkError::request(&path)(e))),
            };
            if !members.is_empty() && !args.force {
                return Err(Failure::input(anyhow!(
                    "{fqdn} has {} live member(s) registered ({}); --force deletes them too",
                    members.len(),
                    members.join(", ")
                )));
            }
            let mut writer = client.new_multi_writer();
            for member in &members {
                writer
                    .add_delete(&format!("{path}/{member}"), None)
                    .map_err(ZkError::request(&path))
                    .or_runtime()?;
            }
            writer
                .add_delete(&path, Some(stat.version))
                .map_err(ZkError::request(&path))
                .or_runtime()?;
            match writer.commit().await {
                Ok(_) => {
                    let also = if members.is_empty() {
                        String::new()
                    } else {
                        format!(" with {} member(s)", members.len())
                    };
                    println!("{fqdn}: deleted{also}");
                    return Ok(());
                }
                Err(zookeeper_client::MultiWriteError::OperationFailed { .. }) => continue,
                Err(e) => {
                    return Err(Failure::runtime(ZkError::request(&path)(e.into())));
                }
            }
        }
        Err(Failure::runtime(anyhow!("{path} kept changing; try again")))
    })
    .await
}

/// A zone's settings as served, defaults filled in (bad settings: defaults, with a warning).
fn settings_of(zone: &ZoneName, nodes: &ZoneNodes) -> ZoneSettings {
    decode_zone(&nodes.data, zone).unwrap_or_else(|e| {
        eprintln!(
            "zkdns: warning: the settings of zone {zone} are not valid ({e}); using defaults"
        );
        ZoneSettings::defaults(zone)
    })
}

/// A set's or member's payload, decoded and validated.
fn valid_set(payload: &[u8], zone: &ZoneName) -> Result<RecordSetJson, String> {
    let set = decode_set(payload).map_err(|e| e.to_string())?;
    validate(&set, zone).map_err(|e| e.to_string())?;
    Ok(set)
}

async fn read_existing_zone(
    client: &Client,
    layout: &Layout,
    zone: &ZoneName,
) -> Result<ZoneNodes, Failure> {
    read_zone(client, layout, zone, true)
        .await
        .or_runtime()?
        .ok_or_else(|| Failure::input(anyhow!("there is no zone {zone} under {}", layout.zones())))
}

/// Runs `zkdns export`.
pub async fn export(global: &GlobalArgs, args: ExportArgs) -> Result<(), Failure> {
    with_session(global, async |client, layout| {
        let zone = args.zone();
        let nodes = read_existing_zone(client, layout, zone).await?;
        let settings = settings_of(zone, &nodes);
        let mut header = vec![format!(
            "zone {zone} exported by zkdns from {}",
            layout.zone_of(zone)
        )];
        let mut sets = Vec::new();
        for (raw, node) in apex_first(&nodes.sets) {
            let checked = RelName::from_znode(raw, zone)
                .map_err(|e| e.to_string())
                .and_then(|name| Ok((name, valid_set(&node.data, zone)?)));
            let (name, mut data) = match checked {
                Ok(ok) => ok,
                Err(e) => {
                    eprintln!("zkdns: warning: skipping {raw}: {e}");
                    header.push(format!("skipped {raw}: {e}"));
                    continue;
                }
            };
            data.normalise();
            let comments = node
                .members
                .iter()
                .map(|(member, payload)| {
                    let records = match valid_set(payload, zone) {
                        Ok(m) => zonefile::rdata_lines(&m, zone)
                            .into_iter()
                            .map(|(t, v)| format!("{t} {v}"))
                            .collect::<Vec<_>>()
                            .join(", "),
                        Err(e) => format!("invalid data: {e}"),
                    };
                    format!("live member {member} of {name} (not exported): {records}")
                })
                .collect();
            sets.push(ExportSet {
                name,
                data,
                comments,
            });
        }
        print!("{}", zonefile::render(zone, &settings, &sets, &header));
        Ok(())
    })
    .await
}

/// One row of `zkdns ls ZONE`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    name: String,
    rtype: String,
    ttl: String,
    value: String,
    member: String,
}

fn rows_of(zone: &ZoneName, settings: &ZoneSettings, nodes: &ZoneNodes) -> Vec<Row> {
    let row = |name: &str, rtype: &str, ttl: String, value: String, member: &str| Row {
        name: name.to_string(),
        rtype: rtype.to_string(),
        ttl,
        value,
        member: member.to_string(),
    };
    let zone_ttl = settings.ttl.to_string();
    let soa = format!(
        "{} {} {} {} {} {} {}",
        settings.mname,
        settings.rname,
        settings
            .serial
            .map_or_else(|| "(auto)".to_string(), |s| s.to_string()),
        settings.refresh,
        settings.retry,
        settings.expire,
        settings.minimum
    );
    let mut rows = vec![row("@", "SOA", zone_ttl.clone(), soa, "")];
    for ns in &settings.ns {
        rows.push(row("@", "NS", zone_ttl.clone(), ns.to_ascii(), ""));
    }
    for (name, node) in apex_first(&nodes.sets) {
        let own = valid_set(&node.data, zone);
        let ttl = own
            .as_ref()
            .ok()
            .and_then(|s| s.ttl)
            .unwrap_or(settings.ttl)
            .to_string();
        let mut add = |payload: Result<RecordSetJson, String>, member: &str| match payload {
            Ok(set) => {
                for (rtype, value) in zonefile::rdata_lines(&set, zone) {
                    rows.push(row(name, rtype, ttl.clone(), value, member));
                }
            }
            Err(e) => rows.push(row(name, "?", "-".into(), format!("invalid: {e}"), member)),
        };
        add(own.clone(), "");
        for (member, payload) in &node.members {
            add(valid_set(payload, zone), member);
        }
    }
    rows
}

fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

fn json_of(payload: &[u8], zone: &ZoneName) -> Value {
    match valid_set(payload, zone) {
        Ok(set) => serde_json::to_value(&set).unwrap_or(Value::Null),
        Err(e) => json!({ "error": e, "raw": String::from_utf8_lossy(payload) }),
    }
}

/// Runs `zkdns ls`.
pub async fn ls(global: &GlobalArgs, args: LsArgs) -> Result<(), Failure> {
    with_session(global, async |client, layout| {
        let Some(zone) = &args.zone else {
            let zones = list_zones(client, layout).await.or_runtime()?;
            if args.json {
                let list: Vec<Value> = zones
                    .iter()
                    .map(|(z, n)| json!({ "zone": z, "sets": n }))
                    .collect();
                println!("{}", Value::Array(list));
            } else {
                let rows: Vec<Vec<String>> = zones
                    .iter()
                    .map(|(z, n)| vec![z.clone(), n.to_string()])
                    .collect();
                print!("{}", table(&["ZONE", "SETS"], &rows));
            }
            return Ok(());
        };
        let nodes = read_existing_zone(client, layout, zone).await?;
        let settings = settings_of(zone, &nodes);
        if args.json {
            let sets: Vec<Value> = apex_first(&nodes.sets)
                .into_iter()
                .map(|(name, node)| {
                    let members: Vec<Value> = node
                        .members
                        .iter()
                        .map(|(id, payload)| json!({ "id": id, "data": json_of(payload, zone) }))
                        .collect();
                    json!({
                        "name": name,
                        "data": json_of(&node.data, zone),
                        "members": members,
                    })
                })
                .collect();
            let zone_json: Value = if nodes.data.iter().all(u8::is_ascii_whitespace) {
                json!({})
            } else {
                serde_json::from_slice(&nodes.data)
                    .unwrap_or_else(|_| json!({ "raw": String::from_utf8_lossy(&nodes.data) }))
            };
            let out = json!({ "zone": zone.as_str(), "settings": zone_json, "sets": sets });
            println!("{out}");
        } else {
            let rows: Vec<Vec<String>> = rows_of(zone, &settings, &nodes)
                .into_iter()
                .map(|r| vec![r.name, r.rtype, r.ttl, r.value, r.member])
                .collect();
            print!(
                "{}",
                table(&["NAME", "TYPE", "TTL", "VALUE", "MEMBER"], &rows)
            );
        }
        Ok(())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone() -> ZoneName {
        ZoneName::parse("cluster.test").unwrap()
    }

    fn values(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn set_replaces_one_type() {
        let z = zone();
        let mut set = RecordSetJson::default();
        set_records(
            &mut set,
            RecordKind::A,
            &values(&["10.0.0.2", "10.0.0.1"]),
            &z,
        )
        .unwrap();
        set_records(&mut set, RecordKind::Txt, &values(&["-all", "a b"]), &z).unwrap();
        set_records(&mut set, RecordKind::A, &values(&["10.0.0.3"]), &z).unwrap();
        assert_eq!(set.a, vec![Ipv4Addr::new(10, 0, 0, 3)]);
        assert_eq!(set.txt.len(), 2);
        set_records(&mut set, RecordKind::Srv, &values(&["0 5 8080 web"]), &z).unwrap();
        assert_eq!(set.srv[0].target, "web.cluster.test.");
        set_records(&mut set, RecordKind::Mx, &values(&["10 mx.example."]), &z).unwrap();
        assert_eq!(set.mx[0].exchange, "mx.example.");
        set_records(&mut set, RecordKind::Ttl, &values(&["1m"]), &z).unwrap();
        assert_eq!(set.ttl, Some(60));
        assert!(remove_records(&mut set, RecordKind::Ttl));
        assert!(!remove_records(&mut set, RecordKind::Ttl));
        assert!(remove_records(&mut set, RecordKind::A));
        assert!(set.a.is_empty());
    }

    #[test]
    fn set_rejects_bad_values() {
        let z = zone();
        let mut set = RecordSetJson::default();
        for (kind, v) in [
            (RecordKind::A, vec!["10.0.0.300"]),
            (RecordKind::Aaaa, vec!["10.0.0.1"]),
            (RecordKind::Cname, vec!["a", "b"]),
            (RecordKind::Cname, vec!["bad name"]),
            (RecordKind::Srv, vec!["0 5 web"]),
            (RecordKind::Srv, vec!["0 5 70000 web"]),
            (RecordKind::Mx, vec!["ten mx"]),
            (RecordKind::Ttl, vec!["soon"]),
        ] {
            assert!(
                set_records(&mut set, kind, &values(&v), &z).is_err(),
                "{kind:?} {v:?}"
            );
        }
        let long = "x".repeat(256);
        assert!(set_records(&mut set, RecordKind::Txt, &values(&[&long]), &z).is_err());
        // a CNAME beside other data is refused by validation
        set_records(&mut set, RecordKind::A, &values(&["10.0.0.1"]), &z).unwrap();
        let e = set_records(&mut set, RecordKind::Cname, &values(&["web"]), &z).unwrap_err();
        assert!(e.contains("CNAME"), "{e}");
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(fqdn_arg("Web.Cluster.Test.").unwrap(), "web.cluster.test");
        assert_eq!(
            fqdn_arg("*.dev.cluster.test").unwrap(),
            "*.dev.cluster.test"
        );
        assert!(fqdn_arg("bad name.cluster.test").is_err());
    }

    #[test]
    fn tables_align() {
        let t = table(
            &["A", "BB"],
            &[vec!["xyz".into(), "1".into()], vec!["".into(), "".into()]],
        );
        assert_eq!(t, "A    BB\nxyz  1\n\n");
    }
}
