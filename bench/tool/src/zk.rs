//! ZooKeeper helpers for the drivers: sessions, record-set payloads, idempotent puts, and a
//! recorder of persistent-watch events (ZooKeeper's own delivery time, the floor under any
//! propagation figure).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use zookeeper_client::{Acls, AddWatchMode, Client, CreateMode, CreateOptions, EventType};

pub async fn connect(zk: &str) -> Result<Client> {
    Client::connector()
        .with_session_timeout(Duration::from_secs(6))
        .connect(zk)
        .await
        .with_context(|| format!("cannot connect to ZooKeeper at {zk}"))
}

pub fn persistent() -> CreateOptions<'static> {
    CreateMode::Persistent.with_acls(Acls::anyone_all())
}

pub fn ephemeral() -> CreateOptions<'static> {
    CreateMode::Ephemeral.with_acls(Acls::anyone_all())
}

/// A record set holding one A record.
pub fn a_record(ip: Ipv4Addr) -> Vec<u8> {
    format!("{{\"A\": [\"{ip}\"]}}").into_bytes()
}

/// Creates `path` with `data`, or sets its data when it exists.
pub async fn put(client: &Client, path: &str, data: &[u8]) -> Result<()> {
    match client.create(path, data, &persistent()).await {
        Ok(_) => Ok(()),
        Err(zookeeper_client::Error::NodeExists) => {
            client.set_data(path, data, None).await?;
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("create {path}")),
    }
}

/// Deletes `path` and its children, if there.
pub async fn remove_tree(client: &Client, path: &str) -> Result<()> {
    match client.list_children(path).await {
        Ok(children) => {
            for c in children {
                let _ = client.delete(&format!("{path}/{c}"), None).await;
            }
        }
        Err(zookeeper_client::Error::NoNode) => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    match client.delete(path, None).await {
        Ok(()) | Err(zookeeper_client::Error::NoNode) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Hands out addresses that no earlier change used, so each change is told apart from the last.
pub struct Addresses(u32);

impl Addresses {
    pub fn new(base: Ipv4Addr) -> Self {
        Self(u32::from(base))
    }

    pub fn next(&mut self) -> Ipv4Addr {
        self.0 += 1;
        Ipv4Addr::from(self.0)
    }
}

type Events = Arc<Mutex<HashMap<String, Vec<(EventType, Instant)>>>>;

/// Every event of a persistent recursive watch on a subtree, on a session of its own, with
/// the time it arrived here.
pub struct EventLog {
    events: Events,
    _client: Client,
}

impl EventLog {
    pub async fn start(zk: &str, path: &str) -> Result<Self> {
        let client = connect(zk).await?;
        let mut watcher = client
            .watch(path, AddWatchMode::PersistentRecursive)
            .await
            .with_context(|| format!("watch {path}"))?;
        let events: Events = Arc::default();
        let log = events.clone();
        tokio::spawn(async move {
            loop {
                let ev = watcher.changed().await;
                let at = Instant::now();
                if ev.event_type == EventType::Session {
                    if ev.session_state.is_terminated() {
                        break;
                    }
                    continue;
                }
                log.lock()
                    .unwrap()
                    .entry(ev.path)
                    .or_default()
                    .push((ev.event_type, at));
            }
        });
        Ok(Self {
            events,
            _client: client,
        })
    }

    /// When the first `kind` event on `path` at or after `since` arrived; waits up to
    /// `patience` for it.
    pub async fn find(
        &self,
        path: &str,
        kind: EventType,
        since: Instant,
        patience: Duration,
    ) -> Option<Instant> {
        let deadline = Instant::now() + patience;
        loop {
            let found = self.events.lock().unwrap().get(path).and_then(|v| {
                v.iter()
                    .find(|(t, at)| *t == kind && *at >= since)
                    .map(|(_, at)| *at)
            });
            if found.is_some() || Instant::now() >= deadline {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}
