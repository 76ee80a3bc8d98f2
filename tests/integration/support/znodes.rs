//! Writing the zkdns layout (DESIGN.md) straight into ZooKeeper, the way an operator or
//! `zkdns register` would: `<root>/zones/<zone>` with optional settings JSON,
//! `<root>/zones/<zone>/<name>` record sets, ephemeral members below them.

use zookeeper_client::{Acls, Client, CreateMode, CreateOptions, Error};

fn persistent() -> CreateOptions<'static> {
    CreateMode::Persistent.with_acls(Acls::anyone_all())
}

pub fn zone_path(root: &str, zone: &str) -> String {
    format!("{root}/zones/{zone}")
}

pub fn set_path(root: &str, zone: &str, name: &str) -> String {
    format!("{root}/zones/{zone}/{name}")
}

/// Creates `path` (and missing parents) with `data`, or replaces the data if it exists.
pub async fn put_node(client: &Client, path: &str, data: &[u8]) {
    if let Some((parent, _)) = path.rsplit_once('/') {
        if !parent.is_empty() {
            client
                .mkdir(parent, &persistent())
                .await
                .unwrap_or_else(|e| panic!("mkdir {parent}: {e}"));
        }
    }
    match client.create(path, data, &persistent()).await {
        Ok(_) => {}
        Err(Error::NodeExists) => {
            client
                .set_data(path, data, None)
                .await
                .unwrap_or_else(|e| panic!("set {path}: {e}"));
        }
        Err(e) => panic!("create {path}: {e}"),
    }
}

/// Creates `<root>/zones` (an empty root: no zones yet).
pub async fn put_root(client: &Client, root: &str) {
    client
        .mkdir(&format!("{root}/zones"), &persistent())
        .await
        .unwrap_or_else(|e| panic!("mkdir {root}/zones: {e}"));
}

/// Creates or updates a zone node; `settings` is its JSON (`""` for the defaults).
pub async fn put_zone(client: &Client, root: &str, zone: &str, settings: &str) {
    put_node(client, &zone_path(root, zone), settings.as_bytes()).await;
}

/// Creates or updates the record set `name` of `zone` (the zone node is created, with default
/// settings, if missing). `json` is the record-set JSON, e.g. `{"A": ["10.0.0.5"]}`.
pub async fn put_set(client: &Client, root: &str, zone: &str, name: &str, json: &str) {
    put_node(client, &set_path(root, zone, name), json.as_bytes()).await;
}

/// Registers an ephemeral member under a record set, in `client`'s session: it disappears when
/// that session closes or expires.
pub async fn add_member(
    client: &Client,
    root: &str,
    zone: &str,
    name: &str,
    member: &str,
    json: &str,
) {
    let path = format!("{}/{member}", set_path(root, zone, name));
    client
        .create(
            &path,
            json.as_bytes(),
            &CreateMode::Ephemeral.with_acls(Acls::anyone_all()),
        )
        .await
        .unwrap_or_else(|e| panic!("create ephemeral {path}: {e}"));
}

/// Deletes `path` and everything below it; a missing node is fine.
pub async fn delete(client: &Client, path: &str) {
    let mut stack = vec![(path.to_string(), false)];
    while let Some((p, expanded)) = stack.pop() {
        if !expanded {
            match client.list_children(&p).await {
                Ok(children) => {
                    stack.push((p.clone(), true));
                    stack.extend(children.into_iter().map(|c| (format!("{p}/{c}"), false)));
                }
                Err(Error::NoNode) => {}
                Err(e) => panic!("list {p}: {e}"),
            }
            continue;
        }
        match client.delete(&p, None).await {
            Ok(()) | Err(Error::NoNode) => {}
            Err(e) => panic!("delete {p}: {e}"),
        }
    }
}

/// Closes a client's session (its ephemeral nodes go at once) and waits until the session is
/// over.
pub async fn close_session(client: Client) {
    let mut state = client.state_watcher();
    drop(client);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while !state.changed().await.is_terminated() {}
    })
    .await;
}
