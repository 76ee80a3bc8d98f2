//! The commands: one module per `zkdns` subcommand, each wiring the library's parts together
//! for one user task; only [`crate::run`] calls into them. What several of them share is here
//! once: a one-shot ZooKeeper session, the sync task that keeps a daemon's map current, and
//! the HTTP endpoints of the daemons.

pub mod acl;
pub mod check;
pub mod export;
pub mod grant;
pub mod hosts;
pub mod import;
pub mod ls;
pub mod register;
pub mod rm;
pub mod serve;
pub mod set;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::anyhow;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use zookeeper_client::{AuthId, Client};

use crate::cli::GlobalArgs;
use crate::config::ZkTarget;
use crate::error::{Failure, ResultExt};
use crate::metrics::Metrics;
use crate::names::{RelName, ZoneName};
use crate::records::{ZoneSettings, decode_zone};
use crate::store::Store;
use crate::telemetry::exposition::Sources;
use crate::telemetry::http::{self, Endpoints};
use crate::zk::Layout;
use crate::zk::sync::{MapSync, Pacing};
use crate::zk::tree::Tree;
use crate::zk::zone::{self, FindZoneError, ZoneNodes};

/// Opens a session for a command, failing at once (exit 1) when ZooKeeper is unreachable.
async fn connect(target: &ZkTarget) -> Result<Client, Failure> {
    crate::zk::connect(&target.zk).await.or_runtime()
}

/// Runs `body` with a session, closing it afterwards whatever the outcome: the one-shot
/// commands (`ls`, `set`, `rm`, `export`, `import`).
async fn with_session<T>(
    global: &GlobalArgs,
    body: impl AsyncFnOnce(&Client, &Layout) -> Result<T, Failure>,
) -> Result<T, Failure> {
    let target = ZkTarget::from_global(global)?;
    let client = connect(&target).await?;
    let result = body(&client, &target.layout).await;
    crate::zk::close(client).await;
    result
}

/// Keeps `store` equal to the zones under the root (`zones`: those only), in a task of its
/// own, until `cancel` fires: the map that `serve` answers from and `hosts` writes out.
/// `pacing` spreads and repeats the full reads (see [`Pacing`]).
fn follow_zookeeper(
    target: ZkTarget,
    zones: &[ZoneName],
    store: Store,
    metrics: Arc<Metrics>,
    pacing: Pacing,
    cancel: CancellationToken,
) -> JoinHandle<()> {
    let sync = MapSync::new(
        target.zk.spreading_reconnects(),
        target.layout,
        Tree::for_zones(zones),
        store,
    )
    .with_metrics(metrics)
    .with_pacing(pacing);
    tokio::spawn(sync.run(cancel))
}

/// Binds `--metrics` (when given) and serves `/metrics`, `/healthz` and `/livez` from
/// `sources` until `cancel` fires.
async fn start_endpoints(
    addr: Option<SocketAddr>,
    sources: Sources,
    cancel: CancellationToken,
) -> Result<Option<JoinHandle<()>>, Failure> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let listener = http::bind(addr).await.or_runtime()?;
    let endpoints = Arc::new(Endpoints::new(sources));
    Ok(Some(tokio::spawn(http::serve(listener, endpoints, cancel))))
}

/// The identity the command runs with, which must be the admin's: anonymous clients may
/// change no ACL that zkdns wrote.
fn admin_identity(target: &ZkTarget, command: &str) -> Result<AuthId, Failure> {
    match &target.zk.auth {
        Some(auth) => Ok(crate::zk::acl::identity(auth)),
        None => Err(Failure::input(anyhow!(
            "`zkdns {command}` runs as the admin: give its credentials with --zk-auth-file or \
             ZKDNS_ZK_AUTH"
        ))),
    }
}

/// The failure of a zone lookup: no such zone is the user's to fix (exit 2).
fn zone_failure(e: FindZoneError) -> Failure {
    match e {
        FindZoneError::NoZone(why) => Failure::input(anyhow!(why)),
        FindZoneError::Zk(e) => Failure::runtime(e),
    }
}

/// A zone's nodes and members, for showing it; a missing zone is bad input.
async fn read_existing_zone(
    client: &Client,
    layout: &Layout,
    zone: &ZoneName,
) -> Result<ZoneNodes, Failure> {
    zone::read_zone(client, layout, zone, true)
        .await
        .or_runtime()?
        .ok_or_else(|| Failure::input(anyhow!("there is no zone {zone} under {}", layout.zones())))
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

/// A name as typed for `set` and `rm` (any case, trailing dot optional) → lower-case, no
/// trailing dot; a leading wildcard label allowed.
fn name_arg(name: &str) -> Result<String, Failure> {
    let fqdn = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    let plain = fqdn.strip_prefix("*.").unwrap_or(&fqdn);
    ZoneName::parse(plain)
        .map_err(|e| Failure::input(anyhow!("NAME {name:?} is not a valid name: {e}")))?;
    Ok(fqdn)
}

/// The zone and record-set name that `fqdn` is edited at by `set` and `rm`: `explicit`, or the
/// longest zone under the root that it ends with; and whether the zone node exists.
async fn set_of_name(
    client: &Client,
    layout: &Layout,
    fqdn: &str,
    explicit: Option<&ZoneName>,
) -> Result<(ZoneName, RelName, bool), Failure> {
    let (zone, exists) = zone::find_zone(client, layout, fqdn, explicit)
        .await
        .map_err(zone_failure)?;
    let name = zone.relative(fqdn).ok_or_else(|| {
        let rel = &fqdn[..fqdn.len() - zone.as_str().len() - 1];
        let why = RelName::from_znode(rel, &zone)
            .err()
            .map_or_else(String::new, |e| format!(": {e}"));
        Failure::input(anyhow!("{fqdn} is not a valid record-set name{why}"))
    })?;
    Ok((zone, name, exists))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert_eq!(name_arg("Web.Cluster.Test.").unwrap(), "web.cluster.test");
        assert_eq!(
            name_arg("*.dev.cluster.test").unwrap(),
            "*.dev.cluster.test"
        );
        assert!(name_arg("bad name.cluster.test").is_err());
    }
}
