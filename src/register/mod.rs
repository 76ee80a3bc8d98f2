//! Registration: keeps this instance published under a name as an EPHEMERAL member
//! `<root>/zones/<zone>/<name>/<id>` and holds its ZooKeeper session: the member is checked
//! after every reconnect, made again with a new session after an expiry, withdrawn while a
//! health check fails, and deleted (the session closed) on SIGTERM/SIGINT. A record set it has
//! to create is a CONTAINER node, which ZooKeeper removes once its last member is gone.
//!
//! Before its first member under a name it lists the name under the zone's change mark
//! ([`crate::zk::marks`]), so that stubs catching up after a reconnect check it.
//!
//! `register` never writes a record set's own data. Data that someone else put on a container
//! set (with `set` or `import`) would go with the container; so when the last member leaves
//! cleanly and the set holds data, the member's delete and a re-creation of the set as a
//! persistent node happen in one transaction.

pub mod address;
pub mod health;

use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use thiserror::Error;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use zookeeper_client::{Acls, Client, CreateMode, CreateOptions, SessionState, WatchedEvent};

pub use address::primary as primary_address;
pub use health::{Check, Health, Transition};

use crate::names::ZoneName;
use crate::records::{RecordSetJson, validate};
use crate::zk::acl::hides_hashes;
use crate::zk::{
    Access, BACKOFF_MAX, BACKOFF_MIN, Layout, ZkConfig, ZkError, connect_retrying, sleep_until,
};

/// Times a member create is retried while its container set vanishes and reappears.
const RACE_ATTEMPTS: usize = 10;
/// How long the members' deletes may take at shutdown before the session is simply closed
/// (which deletes them too).
const LEAVE_TIMEOUT: Duration = Duration::from_secs(3);

/// One ephemeral node this instance keeps.
#[derive(Debug, Clone)]
pub struct Member {
    /// The name it publishes, for messages.
    fqdn: String,
    zone_path: String,
    set_path: String,
    path: String,
    payload: Vec<u8>,
    /// The node that lists its name among those with members ([`crate::zk::marks`]).
    listed: String,
}

impl Member {
    /// The member `id` of `fqdn` in `zone`, holding `json`, validated as the stub will read it.
    pub fn new(
        layout: &Layout,
        zone: &ZoneName,
        fqdn: &str,
        id: &str,
        mut json: RecordSetJson,
    ) -> Result<Self, String> {
        let name = zone
            .relative(fqdn)
            .ok_or_else(|| format!("{fqdn} is not a valid record-set name in {zone}"))?;
        json.normalise();
        validate(&json, zone).map_err(|e| format!("{fqdn}: {e}"))?;
        Ok(Self {
            fqdn: fqdn.to_string(),
            zone_path: layout.zone_of(zone),
            set_path: layout.set_of(zone, &name),
            path: layout.member(zone.as_str(), name.as_str(), id),
            payload: json.to_payload(),
            listed: layout.mark_name(zone.as_str(), name.as_str()),
        })
    }

    /// The name it publishes.
    pub fn fqdn(&self) -> &str {
        &self.fqdn
    }

    /// The name's node, the member's parent.
    pub fn set_path(&self) -> &str {
        &self.set_path
    }
}

#[derive(Debug, Error)]
pub enum RegisterError {
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
    /// This identity may not register there: not retried, the registration ends.
    #[error(transparent)]
    Denied(ZkError),
}

pub fn zk_error(path: &str) -> impl FnOnce(zookeeper_client::Error) -> RegisterError + '_ {
    move |error| RegisterError::Zk {
        path: path.to_string(),
        error,
    }
}

/// Creating `path` failed: a refusal (no `create` right on its parent) is [`RegisterError::Denied`].
fn create_error(path: &str) -> impl FnOnce(zookeeper_client::Error) -> RegisterError + '_ {
    move |error| match error {
        zookeeper_client::Error::NoAuth => {
            RegisterError::Denied(ZkError::access(Access::Create, path)(error))
        }
        error => zk_error(path)(error),
    }
}

// nodes get owner-only writes when zkdns has credentials, else stay open (see zk::auth)
fn ephemeral() -> CreateOptions<'static> {
    crate::zk::auth::member_options()
}

fn container() -> CreateOptions<'static> {
    crate::zk::auth::create_options(CreateMode::Container)
}

/// Creates the member, its name listed first among the names with members of its zone's
/// change mark, so that a stub that was disconnected meanwhile checks the name for new members
/// ([`crate::zk::marks`]). A registrar may not list a name: `grant` listed its names.
async fn create_member(client: &Client, m: &Member) -> Result<(), zookeeper_client::Error> {
    use zookeeper_client::Error;
    match client
        .mkdir(&m.listed, &crate::zk::auth::persistent())
        .await
    {
        Ok(()) | Err(Error::NodeExists) => {}
        Err(Error::NoAuth) => {
            if let Ok(None) = client.check_stat(&m.listed).await {
                warn!(
                    "{}: this identity may not list the name at {} and `zkdns grant` did \
                     not: a stub that is disconnected when the member is made finds it only \
                     at its next full read",
                    m.fqdn, m.listed
                );
            }
        }
        Err(e) => return Err(e),
    }
    client
        .create(&m.path, &m.payload, &ephemeral())
        .await
        .map(|_| ())
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
        match create_member(client, m).await {
            Ok(()) => created = true,
            Err(zookeeper_client::Error::NodeExists) => {}
            Err(zookeeper_client::Error::NoNode) => {
                match client.create(&m.set_path, &[], &container()).await {
                    Ok(_) | Err(zookeeper_client::Error::NodeExists) => {}
                    Err(zookeeper_client::Error::NoNode) => {
                        return Err(RegisterError::ZoneGone(m.zone_path.clone()));
                    }
                    Err(e) => return Err(create_error(&m.set_path)(e)),
                }
                // the (container) set may be removed again before the member is made
                continue;
            }
            Err(e) => return Err(create_error(&m.path)(e)),
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
    if let Ok((data, set)) = client.get_data(&m.set_path).await
        && set.num_children == 1
        && !data.trim_ascii().is_empty()
    {
        // the set is re-created with the ACL it has (a grant must survive), which only an
        // identity with `admin` on it sees in full; anyone else just leaves
        if let Ok((acl, _)) = client.get_acl(&m.set_path).await
            && !hides_hashes(&acl)
        {
            let options = CreateMode::Persistent.with_acls(Acls::new(&acl));
            let mut writer = client.new_multi_writer();
            let added = writer
                .add_delete(&m.path, Some(stat.version))
                .and_then(|()| writer.add_delete(&m.set_path, Some(set.version)))
                .and_then(|()| writer.add_create(&m.set_path, &data, &options));
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
    /// ZooKeeper refused a member to this identity.
    Denied(RegisterError),
}

/// Holds the members across sessions.
pub struct Registrar {
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
    pub fn new(config: ZkConfig, members: Vec<Member>) -> Self {
        let n = members.len();
        Self {
            config,
            members,
            held: vec![false; n],
            reported_other: vec![None; n],
            reported_error: None,
        }
    }

    /// Runs until cancelled; then deletes the members and closes the session. Ends early,
    /// with [`RegisterError::Denied`], when ZooKeeper refuses a member to this identity (never
    /// granted the name, or the grant revoked): retrying would not change that, and the exit
    /// status tells the operator.
    pub async fn hold(
        mut self,
        mut client: Client,
        mut wanted: watch::Receiver<bool>,
        cancel: CancellationToken,
    ) -> Result<(), RegisterError> {
        loop {
            match self.session(&client, &mut wanted, &cancel).await {
                End::Cancelled => {
                    let _ = tokio::time::timeout(LEAVE_TIMEOUT, self.leave(&client)).await;
                    crate::zk::close(client).await;
                    info!("ZooKeeper session closed");
                    return Ok(());
                }
                End::Denied(e) => {
                    let _ = tokio::time::timeout(LEAVE_TIMEOUT, self.leave(&client)).await;
                    crate::zk::close(client).await;
                    return Err(e);
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
                        None => return Ok(()),
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
                    Err(e @ RegisterError::Denied(_)) => return End::Denied(e),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Failure;
    use crate::records::Srv;

    #[test]
    fn a_zookeeper_failure_names_its_cause_once() {
        let failure = Failure::runtime(zk_error("/zkdns/zones")(zookeeper_client::Error::NoAuth));
        let text = failure.to_string();
        let cause = zookeeper_client::Error::NoAuth.to_string();
        assert!(text.contains("/zkdns/zones"), "{text}");
        assert_eq!(text.matches(&cause).count(), 1, "{text}");
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
        let m = Member::new(&layout, &zone, "web.c.test", "h-1", json).unwrap();
        assert_eq!(m.set_path, "/zkdns/zones/c.test/web");
        assert_eq!(m.path, "/zkdns/zones/c.test/web/h-1");
        assert_eq!(
            String::from_utf8(m.payload).unwrap(),
            r#"{"A":["10.0.0.5"],"SRV":[{"priority":0,"weight":0,"port":8080,"target":"web.c.test."}]}"#
        );
        let apex = Member::new(&layout, &zone, "c.test", "h-1", RecordSetJson::default()).unwrap();
        assert_eq!(apex.path, "/zkdns/zones/c.test/@/h-1");
        let srv = Member::new(
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
