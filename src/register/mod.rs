//! `zkdns register NAME`: publishes this instance under NAME as an EPHEMERAL member
//! `<root>/zones/<zone>/<name>/<id>` and holds its ZooKeeper session: the member is checked
//! after every reconnect, made again with a new session after an expiry, withdrawn while a
//! health check fails, and deleted (the session closed) on SIGTERM/SIGINT. A record set it has
//! to create is a CONTAINER node, which ZooKeeper removes once its last member is gone.
//!
//! `register` never writes a record set's own data. Data that someone else put on a container
//! set (with `set` or `import`) would go with the container; so when the last member leaves
//! cleanly and the set holds data, the member's delete and a re-creation of the set as a
//! persistent node happen in one transaction.

mod address;
mod health;

use std::net::IpAddr;
use std::time::Duration;

use anyhow::anyhow;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use thiserror::Error;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use zookeeper_client::{Client, CreateMode, CreateOptions, SessionState, WatchedEvent};

pub use address::primary as primary_address;
pub use health::{Check, Health, Transition};

use crate::admin::pick_zone;
use crate::cli::{GlobalArgs, RegisterArgs};
use crate::error::{Failure, ResultExt};
use crate::names::ZoneName;
use crate::records::{RecordSetJson, Srv, validate};
use crate::zk::auth::persistent;
use crate::zk::{BACKOFF_MAX, BACKOFF_MIN, Layout, ZkConfig, connect_retrying, sleep_until};

/// Times a member create is retried while its container set vanishes and reappears.
const RACE_ATTEMPTS: usize = 10;
/// How long the members' deletes may take at shutdown before the session is simply closed
/// (which deletes them too).
const LEAVE_TIMEOUT: Duration = Duration::from_secs(3);

/// One ephemeral node this instance keeps.
#[derive(Debug, Clone)]
struct Member {
    /// The name it publishes, for messages.
    fqdn: String,
    zone_path: String,
    set_path: String,
    path: String,
    payload: Vec<u8>,
}

#[derive(Debug, Error)]
enum RegisterError {
    #[error("the zone node {0} is gone; waiting for it to come back")]
    ZoneGone(String),
    #[error("{0} keeps appearing and disappearing")]
    Churn(String),
    // `error` is part of the message, not a `source`: on the way out, the error chain would
    // print it a second time
    #[error("ZooKeeper request on {path} failed: {error}")]
    Zk {
        path: String,
        error: zookeeper_client::Error,
    },
}

fn zk_error(path: &str) -> impl FnOnce(zookeeper_client::Error) -> RegisterError + '_ {
    move |error| RegisterError::Zk {
        path: path.to_string(),
        error,
    }
}

// nodes get owner-only writes when zkdns has credentials, else stay open (see zk::auth)
fn ephemeral() -> CreateOptions<'static> {
    crate::zk::auth::create_options(CreateMode::Ephemeral)
}

fn container() -> CreateOptions<'static> {
    crate::zk::auth::create_options(CreateMode::Container)
}

/// NAME as typed → lower-case, no trailing dot; never a wildcard.
fn parse_name(text: &str) -> Result<String, Failure> {
    let fqdn = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
    ZoneName::parse(&fqdn)
        .map_err(|e| Failure::input(anyhow!("NAME {text:?} is not a valid name: {e}")))?;
    Ok(fqdn)
}

/// `--srv _service._proto` → lower-case labels.
fn parse_srv(text: &str) -> Result<String, Failure> {
    let srv = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
    let labels: Vec<&str> = srv.split('.').collect();
    let shaped = labels.len() == 2 && labels.iter().all(|l| l.len() > 1 && l.starts_with('_'));
    if !shaped || ZoneName::parse(&srv).is_err() {
        return Err(Failure::input(anyhow!(
            "--srv {text:?} must be _SERVICE._PROTO, e.g. _http._tcp"
        )));
    }
    Ok(srv)
}

fn id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '@')
}

/// The member id: `--id`, else `HOSTNAME-PID` (unique per running instance, and the same
/// for the whole life of the process, so a re-registration reuses it).
fn member_id(explicit: Option<&str>) -> Result<String, Failure> {
    if let Some(id) = explicit {
        let ok =
            !id.is_empty() && id.len() <= 128 && id.chars().all(id_char) && id != "." && id != "..";
        if !ok {
            return Err(Failure::input(anyhow!(
                "--id {id:?} must be 1 to 128 letters, digits, '.', '_', '-', ':' or '@'"
            )));
        }
        return Ok(id.to_string());
    }
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    let host: String = host
        .chars()
        .map(|c| if id_char(c) { c } else { '_' })
        .take(64)
        .collect();
    let host = if host.is_empty() || host.chars().all(|c| c == '.') {
        "host".to_string()
    } else {
        host
    };
    Ok(format!("{host}-{}", std::process::id()))
}

/// The zone NAME goes in: `explicit` (created if missing, like `zkdns set`) or the longest
/// zone under the root that NAME ends with.
async fn find_zone(
    client: &Client,
    layout: &Layout,
    fqdn: &str,
    explicit: Option<&ZoneName>,
) -> Result<ZoneName, Failure> {
    let zones_path = layout.zones();
    let zones = match client.list_children(&zones_path).await {
        Ok(z) => z,
        Err(zookeeper_client::Error::NoNode) => Vec::new(),
        Err(e) => return Err(Failure::runtime(zk_error(&zones_path)(e))),
    };
    let names: Vec<&str> = zones.iter().map(String::as_str).collect();
    let zone = pick_zone(&names, &zones_path, fqdn, explicit)?;
    if explicit.is_some() && !names.contains(&zone.as_str()) {
        let path = layout.zone_of(&zone);
        client
            .mkdir(&path, &persistent())
            .await
            .map_err(zk_error(&path))
            .or_runtime()?;
    }
    Ok(zone)
}

/// The member of `fqdn` with `json`, validated as the stub will read it.
fn member(
    layout: &Layout,
    zone: &ZoneName,
    fqdn: &str,
    id: &str,
    mut json: RecordSetJson,
) -> Result<Member, Failure> {
    let name = zone.relative(fqdn).ok_or_else(|| {
        Failure::input(anyhow!("{fqdn} is not a valid record-set name in {zone}"))
    })?;
    json.normalise();
    validate(&json, zone).map_err(|e| Failure::input(anyhow!("{fqdn}: {e}")))?;
    Ok(Member {
        fqdn: fqdn.to_string(),
        zone_path: layout.zone_of(zone),
        set_path: layout.set_of(zone, &name),
        path: layout.member(zone.as_str(), name.as_str(), id),
        payload: json.to_payload(),
    })
}

/// Validated arguments of `register`, ready before ZooKeeper is asked anything.
struct Plan {
    fqdn: String,
    srv: Option<String>,
    addrs: Vec<IpAddr>,
    id: String,
    check: Option<Check>,
}

fn plan(args: &RegisterArgs) -> Result<Plan, Failure> {
    let fqdn = parse_name(&args.name)?;
    let srv = args.srv.as_deref().map(parse_srv).transpose()?;
    let id = member_id(args.id.as_deref())?;
    if let Some(target) = &args.check_tcp {
        let valid = target
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !valid {
            return Err(Failure::input(anyhow!(
                "--check-tcp {target:?} must be HOST:PORT"
            )));
        }
    }
    let check = (args.check_cmd.is_some() || args.check_tcp.is_some()).then(|| Check {
        cmd: args.check_cmd.clone(),
        tcp: args.check_tcp.clone(),
        interval: args.check_interval,
        timeout: args.check_timeout.unwrap_or(args.check_interval),
    });
    let addrs = if args.addrs.is_empty() {
        let ip = address::primary().ok_or_else(|| {
            Failure::input(anyhow!(
                "this host has no non-loopback address to register; pass --addr"
            ))
        })?;
        info!("registering this host's primary address {ip}");
        vec![ip]
    } else {
        args.addrs.clone()
    };
    Ok(Plan {
        fqdn,
        srv,
        addrs,
        id,
        check,
    })
}

/// The members of a plan: NAME with the addresses (and the SRV record when `--port` is given
/// without `--srv`), and with `--srv` a second one at `_service._proto.NAME` with the SRV.
async fn members(
    client: &Client,
    layout: &Layout,
    plan: &Plan,
    args: &RegisterArgs,
) -> Result<Vec<Member>, Failure> {
    let zone = find_zone(client, layout, &plan.fqdn, args.zone.as_ref()).await?;
    let srv_record = args.port.map(|port| Srv {
        priority: 0,
        weight: 0,
        port,
        target: format!("{}.", plan.fqdn),
    });
    let mut own = RecordSetJson::default();
    for ip in &plan.addrs {
        match ip {
            IpAddr::V4(v4) => own.a.push(*v4),
            IpAddr::V6(v6) => own.aaaa.push(*v6),
        }
    }
    let mut out = Vec::new();
    match (&plan.srv, srv_record) {
        (Some(labels), Some(srv)) => {
            out.push(member(layout, &zone, &plan.fqdn, &plan.id, own)?);
            let json = RecordSetJson {
                srv: vec![srv],
                ..RecordSetJson::default()
            };
            let srv_name = format!("{labels}.{}", plan.fqdn);
            out.push(member(layout, &zone, &srv_name, &plan.id, json)?);
        }
        (_, srv) => {
            own.srv.extend(srv);
            out.push(member(layout, &zone, &plan.fqdn, &plan.id, own)?);
        }
    }
    Ok(out)
}

/// Who holds a member's node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holder {
    Us,
    /// Another session: an earlier one of ours not expired yet, or another instance with the
    /// same id. 0 for a node that is not ephemeral at all.
    Other(i64),
}

/// Makes sure the member exists: creates it (and its record set, as a container, when that
/// is missing) or finds it. Returns who holds it, whether this call created it, and a watch
/// that fires when it changes or goes.
async fn ensure(
    client: &Client,
    m: &Member,
) -> Result<(Holder, bool, zookeeper_client::OneshotWatcher), RegisterError> {
    let mut created = false;
    for _ in 0..RACE_ATTEMPTS {
        match client.create(&m.path, &m.payload, &ephemeral()).await {
            Ok(_) => created = true,
            Err(zookeeper_client::Error::NodeExists) => {}
            Err(zookeeper_client::Error::NoNode) => {
                match client.create(&m.set_path, &[], &container()).await {
                    Ok(_) | Err(zookeeper_client::Error::NodeExists) => {}
                    Err(zookeeper_client::Error::NoNode) => {
                        return Err(RegisterError::ZoneGone(m.zone_path.clone()));
                    }
                    Err(e) => return Err(zk_error(&m.set_path)(e)),
                }
                // the (container) set may be removed again before the member is made
                continue;
            }
            Err(e) => return Err(zk_error(&m.path)(e)),
        }
        let (stat, watcher) = client
            .check_and_watch_stat(&m.path)
            .await
            .map_err(zk_error(&m.path))?;
        match stat {
            Some(s) if s.ephemeral_owner == client.session_id().0 => {
                return Ok((Holder::Us, created, watcher));
            }
            Some(s) => return Ok((Holder::Other(s.ephemeral_owner), created, watcher)),
            None => continue, // deleted in between
        }
    }
    Err(RegisterError::Churn(m.path.clone()))
}

/// Deletes the member if this session holds it; `true` if it did. When it is the last member
/// of a set that holds data of its own, the set is re-created as a persistent node in the same
/// transaction, so that the data does not go with a container.
async fn withdraw(client: &Client, m: &Member) -> Result<bool, RegisterError> {
    let stat = match client.check_stat(&m.path).await {
        Ok(Some(stat)) => stat,
        Ok(None) => return Ok(false),
        Err(e) => return Err(zk_error(&m.path)(e)),
    };
    if stat.ephemeral_owner != client.session_id().0 {
        return Ok(false);
    }
    if let Ok((data, set)) = client.get_data(&m.set_path).await {
        if set.num_children == 1 && !data.trim_ascii().is_empty() {
            let mut writer = client.new_multi_writer();
            let added = writer
                .add_delete(&m.path, Some(stat.version))
                .and_then(|()| writer.add_delete(&m.set_path, Some(set.version)))
                .and_then(|()| writer.add_create(&m.set_path, &data, &persistent()));
            if added.is_ok() && writer.commit().await.is_ok() {
                info!(
                    "{} kept its data as a persistent record set after its last member left",
                    m.set_path
                );
                return Ok(true);
            }
            // someone joined or wrote meanwhile: just leave
        }
    }
    match client.delete(&m.path, Some(stat.version)).await {
        Ok(()) => Ok(true),
        Err(zookeeper_client::Error::NoNode) => Ok(false),
        Err(e) => Err(zk_error(&m.path)(e)),
    }
}

/// How a session ended.
enum End {
    Cancelled,
    /// Expired, closed or auth failed: a new client is needed.
    Terminal(SessionState),
}

/// Holds the members across sessions.
struct Registrar {
    config: ZkConfig,
    members: Vec<Member>,
    /// Whether each member's node is ours right now.
    held: Vec<bool>,
    /// The other session last reported as holding each member's node.
    reported_other: Vec<Option<i64>>,
    /// The last error reported, so that a repeating one is logged once.
    reported_error: Option<String>,
}

/// The next member event, or never when no member is watched.
async fn next_event(
    watches: &mut FuturesUnordered<BoxFuture<'static, WatchedEvent>>,
) -> WatchedEvent {
    match watches.next().await {
        Some(ev) => ev,
        None => std::future::pending().await,
    }
}

impl Registrar {
    fn new(config: ZkConfig, members: Vec<Member>) -> Self {
        let n = members.len();
        Self {
            config,
            members,
            held: vec![false; n],
            reported_other: vec![None; n],
            reported_error: None,
        }
    }

    /// Runs until cancelled; then deletes the members and closes the session.
    async fn hold(
        mut self,
        mut client: Client,
        mut wanted: watch::Receiver<bool>,
        cancel: CancellationToken,
    ) {
        loop {
            match self.session(&client, &mut wanted, &cancel).await {
                End::Cancelled => {
                    let _ = tokio::time::timeout(LEAVE_TIMEOUT, self.leave(&client)).await;
                    crate::zk::close(client).await;
                    info!("ZooKeeper session closed");
                    return;
                }
                End::Terminal(state) => {
                    warn!(
                        ?state,
                        "ZooKeeper session ended, and the registration with it; registering again with a new session"
                    );
                    self.held.fill(false);
                    match connect_retrying(&self.config, &cancel, "ZooKeeper unreachable; retrying")
                        .await
                    {
                        Some(c) => client = c,
                        None => return,
                    }
                }
            }
        }
    }

    /// Follows one session: brings the members to what `wanted` says, again after every
    /// reconnect and whenever a member's node changes, until the session ends.
    async fn session(
        &mut self,
        client: &Client,
        wanted: &mut watch::Receiver<bool>,
        cancel: &CancellationToken,
    ) -> End {
        let mut state = client.state_watcher();
        let mut watches: FuturesUnordered<BoxFuture<'static, WatchedEvent>> =
            FuturesUnordered::new();
        let mut dirty = true;
        let mut retry_at: Option<Instant> = None;
        let mut backoff = BACKOFF_MIN;
        let mut wanted_open = true;
        loop {
            if dirty && retry_at.is_none() {
                let want = *wanted.borrow_and_update();
                match self.apply(client, want).await {
                    Ok(new) => {
                        watches = new.into_iter().map(|w| w.changed().boxed()).collect();
                        dirty = false;
                        backoff = BACKOFF_MIN;
                        self.reported_error = None;
                    }
                    Err(e) => {
                        if client.state().is_terminated() {
                            return End::Terminal(client.state());
                        }
                        let text = e.to_string();
                        if self.reported_error.as_deref() != Some(text.as_str()) {
                            warn!("{text}; retrying");
                            self.reported_error = Some(text);
                        }
                        retry_at = Some(Instant::now() + backoff);
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                    }
                }
            }
            tokio::select! {
                r = wanted.changed(), if wanted_open => match r {
                    Ok(()) => dirty = true,
                    Err(_) => wanted_open = false,
                },
                s = state.changed() => match s {
                    SessionState::Disconnected => {
                        warn!("ZooKeeper connection lost; the registration lasts as long as the session");
                    }
                    SessionState::SyncConnected | SessionState::ConnectedReadOnly => {
                        info!("ZooKeeper connection back; checking the registration");
                        dirty = true;
                        retry_at = None;
                    }
                    s if s.is_terminated() => return End::Terminal(s),
                    _ => {}
                },
                ev = next_event(&mut watches) => {
                    debug!(path = %ev.path, event = ?ev.event_type, state = ?ev.session_state, "member node changed");
                    if ev.session_state.is_terminated() {
                        return End::Terminal(ev.session_state);
                    }
                    dirty = true;
                }
                () = sleep_until(retry_at) => retry_at = None,
                () = cancel.cancelled() => return End::Cancelled,
            }
        }
    }

    /// Creates (or checks) every member when `want`, deletes ours otherwise. Returns the
    /// watches on the members' nodes.
    async fn apply(
        &mut self,
        client: &Client,
        want: bool,
    ) -> Result<Vec<zookeeper_client::OneshotWatcher>, RegisterError> {
        let mut watches = Vec::new();
        for (i, m) in self.members.iter().enumerate() {
            if !want {
                if withdraw(client, m).await? {
                    info!("withdrew {} ({})", m.fqdn, m.path);
                }
                self.held[i] = false;
                continue;
            }
            let (holder, created, watch) = ensure(client, m).await?;
            watches.push(watch);
            match holder {
                Holder::Us => {
                    if created && self.held[i] {
                        info!(
                            "registered {} as {} again: someone had deleted it",
                            m.fqdn, m.path
                        );
                    } else if created {
                        info!("registered {} as {}", m.fqdn, m.path);
                    } else {
                        debug!("{} is still registered", m.path);
                    }
                    self.held[i] = true;
                    self.reported_other[i] = None;
                }
                Holder::Other(owner) => {
                    if self.reported_other[i] != Some(owner) {
                        if owner == 0 {
                            warn!(
                                "{} exists and is not a registration (not ephemeral); registering once it is deleted",
                                m.path
                            );
                        } else {
                            warn!(
                                "{} belongs to another ZooKeeper session (0x{owner:x}: an earlier session of this instance, or another instance with the same --id); registering once it is gone",
                                m.path
                            );
                        }
                        self.reported_other[i] = Some(owner);
                    }
                    self.held[i] = false;
                }
            }
        }
        Ok(watches)
    }

    /// Deletes the members this session holds (SIGTERM/SIGINT).
    async fn leave(&mut self, client: &Client) {
        for (i, m) in self.members.iter().enumerate() {
            match withdraw(client, m).await {
                Ok(true) => info!("deregistered {} ({})", m.fqdn, m.path),
                Ok(false) => {}
                Err(e) => warn!("{e}; closing the session removes it"),
            }
            self.held[i] = false;
        }
    }
}

/// Runs `zkdns register` until SIGTERM/SIGINT.
pub async fn run(
    global: &GlobalArgs,
    args: RegisterArgs,
    cancel: CancellationToken,
) -> Result<(), Failure> {
    let layout = Layout::new(&global.root).or_input()?;
    let plan = plan(&args)?;
    let config = ZkConfig::from_global(global)?;
    // ZooKeeper must be there at the start (the zone is looked up there); later outages are
    // ridden out
    let client = crate::zk::connect(&config).await.or_runtime()?;
    let members = match members(&client, &layout, &plan, &args).await {
        Ok(m) => m,
        Err(e) => {
            crate::zk::close(client).await;
            return Err(e);
        }
    };
    info!(session = %client.session_id(), "ZooKeeper session established");
    let (wanted_tx, wanted) = watch::channel(plan.check.is_none());
    let checks = plan.check.clone().map(|check| {
        tokio::spawn(health::run(
            check,
            Health::new(args.check_rise, args.check_fall),
            plan.fqdn.clone(),
            wanted_tx.clone(),
            cancel.clone(),
        ))
    });
    Registrar::new(config, members)
        .hold(client, wanted, cancel.clone())
        .await;
    if let Some(task) = checks {
        task.abort();
        let _ = task.await;
    }
    drop(wanted_tx);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zookeeper_failure_names_its_cause_once() {
        let failure = Failure::runtime(zk_error("/zkdns/zones")(zookeeper_client::Error::NoAuth));
        let text = failure.to_string();
        let cause = zookeeper_client::Error::NoAuth.to_string();
        assert!(text.contains("/zkdns/zones"), "{text}");
        assert_eq!(text.matches(&cause).count(), 1, "{text}");
    }

    #[test]
    fn names_and_services_are_checked() {
        assert_eq!(parse_name("Web.Cluster.Test.").unwrap(), "web.cluster.test");
        assert!(parse_name("*.cluster.test").is_err());
        assert!(parse_name("a b.test").is_err());
        assert_eq!(parse_srv("_HTTP._tcp").unwrap(), "_http._tcp");
        for bad in ["http._tcp", "_http", "_http._tcp.x", "_._tcp", "_a b._tcp"] {
            assert!(parse_srv(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn member_ids() {
        let id = member_id(None).unwrap();
        assert!(id.ends_with(&format!("-{}", std::process::id())), "{id}");
        assert!(id.chars().all(id_char), "{id}");
        assert_eq!(member_id(Some("web-1")).unwrap(), "web-1");
        for bad in ["", "a/b", "..", "a b", &"x".repeat(129)] {
            assert!(member_id(Some(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn members_carry_addresses_and_srv() {
        let layout = Layout::new("/zkdns").unwrap();
        let zone = ZoneName::parse("c.test").unwrap();
        let json = RecordSetJson {
            a: vec!["10.0.0.5".parse().unwrap()],
            srv: vec![Srv {
                priority: 0,
                weight: 0,
                port: 8080,
                target: "web.c.test.".into(),
            }],
            ..RecordSetJson::default()
        };
        let m = member(&layout, &zone, "web.c.test", "h-1", json).unwrap();
        assert_eq!(m.set_path, "/zkdns/zones/c.test/web");
        assert_eq!(m.path, "/zkdns/zones/c.test/web/h-1");
        assert_eq!(
            String::from_utf8(m.payload).unwrap(),
            r#"{"A":["10.0.0.5"],"SRV":[{"priority":0,"weight":0,"port":8080,"target":"web.c.test."}]}"#
        );
        let apex = member(&layout, &zone, "c.test", "h-1", RecordSetJson::default()).unwrap();
        assert_eq!(apex.path, "/zkdns/zones/c.test/@/h-1");
        let srv = member(
            &layout,
            &zone,
            "_http._tcp.web.c.test",
            "h-1",
            RecordSetJson::default(),
        )
        .unwrap();
        assert_eq!(srv.set_path, "/zkdns/zones/c.test/_http._tcp.web");
    }
}
