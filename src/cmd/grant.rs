//! `zkdns grant NAME… --registrar ID` and `zkdns revoke`: the admin lets one registrar
//! identity add and remove members under names (and takes that away). Each change is written
//! against the ACL version read, so a concurrent change is read again, never overwritten.

use anyhow::anyhow;
use zookeeper_client::{Acls, AuthId, Client, CreateMode};

use crate::cli::{GlobalArgs, GrantArgs};
use crate::config::ZkTarget;
use crate::error::{Failure, ResultExt};
use crate::names::ZoneName;
use crate::tooling::edit::ATTEMPTS;
use crate::zk::acl::{self, Kind};
use crate::zk::zone::{self, may_be_reaped};
use crate::zk::{Access, Layout, ZkError, marks, write};

/// Runs `zkdns grant` (`revoke` false) or `zkdns revoke`.
pub async fn run(global: &GlobalArgs, args: GrantArgs, revoke: bool) -> Result<(), Failure> {
    let target = ZkTarget::from_global(global)?;
    let command = if revoke { "revoke" } else { "grant" };
    let admin = super::admin_identity(&target, command)?;
    let registrar =
        acl::parse_registrar(&args.registrar).map_err(|e| Failure::input(anyhow!(e)))?;
    if registrar == admin {
        return Err(Failure::input(anyhow!(
            "--registrar is the admin's own identity ({}), which already holds every right",
            acl::who(&admin)
        )));
    }
    let client = super::connect(&target).await?;
    let result = async {
        let layout = &target.layout;
        let mut names = Vec::new();
        for arg in &args.names {
            names.extend(resolve(&client, layout, arg, args.zone.as_ref()).await?);
        }
        let mut warned = Vec::new();
        for name in &names {
            if !revoke && !warned.contains(&name.zone) {
                warn_if_zone_open(&client, layout, &name.zone).await;
                warned.push(name.zone.clone());
            }
            let line = if revoke {
                // the name stays listed in its mark: its members stay, and another may be granted
                revoke_one(&client, name, &registrar).await?
            } else {
                let world_read = zone_is_world_readable(&client, layout, &name.zone).await?;
                let line = grant_one(&client, name, &admin, &registrar, world_read).await?;
                // a stub that reconnects checks the name's members from then on
                marks::set_listed(&client, layout, &name.path, true)
                    .await
                    .or_runtime()?;
                line
            };
            println!("{line}");
        }
        Ok(())
    }
    .await;
    crate::zk::close(client).await;
    result
}

/// A name's node to grant or revoke on.
#[derive(Debug)]
struct Granted {
    fqdn: String,
    zone: ZoneName,
    path: String,
}

/// The names `arg` stands for: one name, or the existing names that a pattern (a first label
/// holding `*`, other than the wildcard label `*` itself) matches.
async fn resolve(
    client: &Client,
    layout: &Layout,
    arg: &str,
    explicit: Option<&ZoneName>,
) -> Result<Vec<Granted>, Failure> {
    let text = arg.strip_suffix('.').unwrap_or(arg).to_ascii_lowercase();
    let (first, rest) = text.split_once('.').unwrap_or((&text, ""));
    if !first.contains('*') || first == "*" {
        let fqdn = super::name_arg(arg)?;
        let (zone, name, exists) = super::set_of_name(client, layout, &fqdn, explicit).await?;
        if !exists {
            return Err(no_zone(layout, &zone));
        }
        let path = layout.set_of(&zone, &name);
        return Ok(vec![Granted { fqdn, zone, path }]);
    }
    let suffix = super::name_arg(rest).map_err(|_| {
        Failure::input(anyhow!(
            "NAME {arg:?}: after its first label, {rest:?} is not a name"
        ))
    })?;
    let (zone, exists) = zone::find_zone(client, layout, &suffix, explicit)
        .await
        .map_err(super::zone_failure)?;
    if !exists {
        return Err(no_zone(layout, &zone));
    }
    let zone_path = layout.zone_of(&zone);
    let children = client
        .list_children(&zone_path)
        .await
        .map_err(ZkError::access(Access::Read, &zone_path))
        .or_runtime()?;
    let mut out: Vec<Granted> = children
        .iter()
        .filter_map(|child| {
            let fqdn = if child == "@" {
                zone.to_string()
            } else {
                format!("{child}.{zone}")
            };
            let (label, tail) = fqdn.split_once('.')?;
            (tail == suffix && glob(first, label)).then(|| Granted {
                path: layout.set(zone.as_str(), child),
                fqdn,
                zone: zone.clone(),
            })
        })
        .collect();
    if out.is_empty() {
        return Err(Failure::input(anyhow!(
            "no name in the zone {zone} matches {arg:?} (a pattern grants names that exist; \
             give a new name in full to make it)"
        )));
    }
    out.sort_by(|a, b| a.fqdn.cmp(&b.fqdn));
    Ok(out)
}

fn no_zone(layout: &Layout, zone: &ZoneName) -> Failure {
    Failure::input(anyhow!(
        "there is no zone {zone} under {}: an admin makes it with `zkdns import` or `zkdns set --zone`",
        layout.zones()
    ))
}

/// Whether `label` matches `pattern`, where `*` stands for any run of characters.
fn glob(pattern: &str, label: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (head, tail) = (parts[0], parts[parts.len() - 1]);
    if label.len() < head.len() + tail.len() || !label.starts_with(head) || !label.ends_with(tail) {
        return false;
    }
    let mut rest = &label[head.len()..label.len() - tail.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// Whether anyone may read the zone, and so a name made in it.
async fn zone_is_world_readable(
    client: &Client,
    layout: &Layout,
    zone: &ZoneName,
) -> Result<bool, Failure> {
    let path = layout.zone_of(zone);
    let (acl, _) = client
        .get_acl(&path)
        .await
        .map_err(ZkError::access(Access::Read, &path))
        .or_runtime()?;
    Ok(acl::anyone_may(&acl).has(zookeeper_client::Permission::READ))
}

/// A grant protects nothing while anyone may add names to the zone (or replace the zone):
/// says so, and how to end it.
async fn warn_if_zone_open(client: &Client, layout: &Layout, zone: &ZoneName) {
    let zone_path = layout.zone_of(zone);
    for path in [layout.zones(), zone_path] {
        if let Ok((acl, _)) = client.get_acl(&path).await
            && acl::anyone_writes(&acl)
        {
            eprintln!(
                "zkdns: warning: {path} is open: anyone may {} there; `zkdns acl lock` gives \
                 it to the admin",
                acl::rights_in_words(
                    if path == layout.zones() {
                        Kind::Zones
                    } else {
                        Kind::Zone
                    },
                    acl::anyone_may(&acl)
                )
            );
        }
    }
}

/// An ACL whose hashes ZooKeeper hid cannot be written back: this identity lacks `admin`
/// there, which is what ZooKeeper would refuse the write for.
fn may_rewrite(current: &[zookeeper_client::Acl], path: &str) -> Result<(), Failure> {
    if acl::hides_hashes(current) {
        return Err(Failure::runtime(ZkError::Denied {
            access: Access::SetAcl,
            path: path.to_string(),
        }));
    }
    Ok(())
}

/// Grants `registrar` on one name's node, making the node (persistent, no records) if there
/// is none. Returns the line to print.
async fn grant_one(
    client: &Client,
    name: &Granted,
    admin: &AuthId,
    registrar: &AuthId,
    world_read: bool,
) -> Result<String, Failure> {
    let (fqdn, path) = (&name.fqdn, &name.path);
    let who = acl::who(registrar);
    for _ in 0..ATTEMPTS {
        let (current, stat) = match client.get_acl(path).await {
            Ok(found) => found,
            Err(zookeeper_client::Error::NoNode) => {
                let new = acl::granted(None, admin, registrar, world_read);
                let options = CreateMode::Persistent.with_acls(Acls::new(&new));
                match client.create(path, &[], &options).await {
                    Ok(_) => {
                        return Ok(format!(
                            "{fqdn}: made (no records of its own: it answers NODATA until a \
                             member registers) and granted to {who}"
                        ));
                    }
                    Err(e) if write::is_conflict(&e) => continue,
                    Err(e) => {
                        return Err(Failure::runtime(ZkError::access(Access::Create, path)(e)));
                    }
                }
            }
            Err(e) => return Err(Failure::runtime(ZkError::access(Access::Read, path)(e))),
        };
        may_rewrite(&current, path)?;
        let new = acl::granted(Some(&current), admin, registrar, world_read);
        if new == current {
            return Ok(format!("{fqdn}: already granted to {who} (unchanged)"));
        }
        let done = if may_be_reaped(&stat) {
            // possibly a container that ZooKeeper is about to remove with its ACL: re-create
            // it as persistent, data kept (it has no children to lose)
            let Some((data, data_stat)) = write::get(client, path).await.or_runtime()? else {
                continue;
            };
            let options = CreateMode::Persistent.with_acls(Acls::new(&new));
            let mut writer = client.new_multi_writer();
            writer
                .add_delete(path, Some(data_stat.version))
                .and_then(|()| writer.add_create(path, &data, &options))
                .map_err(ZkError::request(path))
                .or_runtime()?;
            writer.commit().await.map(|_| ()).map_err(Into::into)
        } else {
            client
                .set_acl(path, &new, Some(stat.aversion))
                .await
                .map(|_| ())
        };
        match done {
            Ok(()) => {}
            Err(e) if write::is_conflict(&e) => continue,
            Err(e) => return Err(Failure::runtime(ZkError::access(Access::SetAcl, path)(e))),
        }
        let mut line = format!("{fqdn}: granted to {who} (register members, remove members)");
        if acl::anyone_writes(&current) {
            line.push_str("; it was open to anyone, who may now only read it");
        }
        if stat.num_children > 0 && stat.data_length == 0 {
            eprintln!(
                "zkdns: warning: {fqdn} has {} live member(s) and no records of its own: if \
                 `zkdns register` made it, ZooKeeper deletes it (grant and all) once its last \
                 member leaves; grant it again then (docs/security.md, \"Migrating\")",
                stat.num_children
            );
        }
        return Ok(line);
    }
    Err(Failure::runtime(anyhow!("{path} kept changing; try again")))
}

/// Takes `registrar`'s entry off one name's node. Its live members stay.
async fn revoke_one(
    client: &Client,
    name: &Granted,
    registrar: &AuthId,
) -> Result<String, Failure> {
    let (fqdn, path) = (&name.fqdn, &name.path);
    let who = acl::who(registrar);
    for _ in 0..ATTEMPTS {
        let (current, stat) = match client.get_acl(path).await {
            Ok(found) => found,
            Err(zookeeper_client::Error::NoNode) => {
                return Err(Failure::input(anyhow!("there is no name {fqdn} ({path})")));
            }
            Err(e) => return Err(Failure::runtime(ZkError::access(Access::Read, path)(e))),
        };
        may_rewrite(&current, path)?;
        let Some(new) = acl::revoked(&current, registrar) else {
            let granted: Vec<String> = acl::registrars(&current)
                .into_iter()
                .map(acl::who)
                .collect();
            let granted = if granted.is_empty() {
                "no registrar".to_string()
            } else {
                granted.join(", ")
            };
            return Err(Failure::input(anyhow!(
                "{fqdn} is not granted to {who} (it is granted to {granted})"
            )));
        };
        match client.set_acl(path, &new, Some(stat.aversion)).await {
            Ok(_) => {}
            Err(e) if write::is_conflict(&e) => continue,
            Err(e) => return Err(Failure::runtime(ZkError::access(Access::SetAcl, path)(e))),
        }
        let stay = match stat.num_children {
            0 => String::new(),
            n => format!(
                "; its {n} live member(s) stay until their session ends (`zkdns rm {fqdn} \
                 --force` deletes them now)"
            ),
        };
        return Ok(format!("{fqdn}: revoked from {who}{stay}"));
    }
    Err(Failure::runtime(anyhow!("{path} kept changing; try again")))
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn patterns_match_within_a_label() {
        assert!(glob("web-*", "web-1"));
        assert!(glob("web-*", "web-"));
        assert!(glob("*-api", "users-api"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxc"));
        assert!(!glob("web-*", "db-1"));
        assert!(!glob("ab*ba", "aba"));
    }
}
