//! `zkdns acl show|id|lock`: who may do what to the names, in words; the identity that a
//! grant names for the credentials given; and locking what anyone may change, the step that
//! ends an open deployment.

use anyhow::anyhow;
use zookeeper_client::{Acl, Client};

use crate::cli::{AclCommand, AclLockArgs, AclShowArgs, GlobalArgs};
use crate::config::{ZkTarget, zk_config};
use crate::error::{Failure, ResultExt};
use crate::tooling::edit::ATTEMPTS;
use crate::zk::acl::{self, Kind, NodeAcl, Scope};
use crate::zk::zone::zone_names;
use crate::zk::{Access, Layout, ZkError};

/// Runs `zkdns acl …`.
pub async fn run(global: &GlobalArgs, command: AclCommand) -> Result<(), Failure> {
    match command {
        AclCommand::Show(args) => show(global, args).await,
        AclCommand::Id => id(global),
        AclCommand::Lock(args) => lock(global, args).await,
    }
}

fn id(global: &GlobalArgs) -> Result<(), Failure> {
    let Some(auth) = zk_config(global)?.auth else {
        return Err(Failure::input(anyhow!(
            "no credentials to print the ID of: give them with --zk-auth-file or ZKDNS_ZK_AUTH"
        )));
    };
    // the id is what ZooKeeper stores in ACLs (a hash, not the password)
    println!("digest:{}", auth.digest_id());
    Ok(())
}

async fn show(global: &GlobalArgs, args: AclShowArgs) -> Result<(), Failure> {
    super::with_session(global, async |client, layout| {
        let scope = scope_of(client, layout, args.target.as_deref()).await?;
        let nodes = acl::walk(client, layout, &scope).await.or_runtime()?;
        if nodes.is_empty() {
            let what = args.target.as_deref().unwrap_or(layout.root());
            return Err(Failure::input(anyhow!(
                "there is nothing at {what} to show"
            )));
        }
        for node in &nodes {
            print!("{}", describe(node));
        }
        let open = acl::audit(&nodes).open.len();
        if open > 0 {
            println!(
                "{open} node(s) anyone may change: `zkdns acl lock` (as the admin) leaves \
                 anyone read only"
            );
        }
        Ok(())
    })
    .await
}

/// What `target` names: nothing (everything), a zone, or a name in one.
async fn scope_of(
    client: &Client,
    layout: &Layout,
    target: Option<&str>,
) -> Result<Scope, Failure> {
    let Some(target) = target else {
        return Ok(Scope::All);
    };
    let fqdn = super::name_arg(target)?;
    let zones = zone_names(client, layout).await.or_runtime()?;
    if let Some(zone) = zones.iter().find(|z| **z == fqdn) {
        let zone = crate::names::ZoneName::from_znode(zone).or_input()?;
        return Ok(Scope::Zone(zone));
    }
    let (zone, name, _) = super::set_of_name(client, layout, &fqdn, None).await?;
    Ok(Scope::Name {
        zone,
        name: name.as_str().to_string(),
    })
}

/// A node and its ACL's entries, one per line, in words.
fn describe(node: &NodeAcl) -> String {
    let (indent, what) = match node.kind {
        Kind::Root => ("", "the root".to_string()),
        Kind::Zones => ("", "the zones".to_string()),
        Kind::Zone => ("", format!("zone {}", node.label)),
        Kind::Name => ("", format!("name {}", node.label)),
        Kind::Member => ("  ", format!("member {}", node.label)),
        Kind::Mark if node.label.is_empty() => ("", "the change marks".to_string()),
        Kind::Mark if node.label.contains(' ') => ("  ", format!("name {}", node.label)),
        Kind::Mark => ("", format!("change mark of zone {}", node.label)),
    };
    let registrars = acl::registrars(&node.acl);
    let mut out = format!("{indent}{} ({what})\n", node.path);
    for entry in &node.acl {
        let role = if node.kind == Kind::Name && registrars.contains(&entry.auth_id()) {
            " [registrar]"
        } else {
            ""
        };
        out.push_str(&format!(
            "{indent}  {} ({}){role}: {}\n",
            acl::who(entry.auth_id()),
            acl::letters(entry.permission()),
            acl::rights_in_words(node.kind, entry.permission())
        ));
    }
    out
}

async fn lock(global: &GlobalArgs, args: AclLockArgs) -> Result<(), Failure> {
    let target = ZkTarget::from_global(global)?;
    let admin = super::admin_identity(&target, "acl lock")?;
    let scope = args.zone.map_or(Scope::All, Scope::Zone);
    super::with_session(global, async |client, layout| {
        let nodes = acl::walk(client, layout, &scope).await.or_runtime()?;
        let (mut locked, mut failed) = (0, 0);
        for node in nodes.iter().filter(|n| acl::anyone_writes(&n.acl)) {
            let from = acl::letters(acl::anyone_may(&node.acl));
            if args.dry_run {
                println!(
                    "would lock {}: anyone {from} → r, the admin cdrwa",
                    node.path
                );
                locked += 1;
                continue;
            }
            match lock_one(client, &node.path, &admin).await {
                Ok(()) => {
                    println!("locked {}: anyone {from} → r, the admin cdrwa", node.path);
                    locked += 1;
                }
                Err(e) => {
                    eprintln!("zkdns: {e:#}");
                    failed += 1;
                }
            }
        }
        let verb = if args.dry_run {
            "would be locked"
        } else {
            "locked"
        };
        match (locked, failed) {
            (0, 0) => println!("nothing is open: no node lets anyone change it"),
            (n, 0) => println!("{n} node(s) {verb}"),
            (n, f) => {
                return Err(Failure::runtime(anyhow!(
                    "{n} node(s) locked, {f} could not be (see above)"
                )));
            }
        }
        Ok(())
    })
    .await
}

/// Locks one node, against the ACL version read (re-read if it changed).
async fn lock_one(
    client: &Client,
    path: &str,
    admin: &zookeeper_client::AuthId,
) -> anyhow::Result<()> {
    for _ in 0..ATTEMPTS {
        let (current, stat) = match client.get_acl(path).await {
            Ok(found) => found,
            Err(zookeeper_client::Error::NoNode) => return Ok(()),
            Err(e) => return Err(ZkError::access(Access::Read, path)(e).into()),
        };
        if !acl::anyone_writes(&current) {
            return Ok(());
        }
        if acl::hides_hashes(&current) {
            return Err(ZkError::Denied {
                access: Access::SetAcl,
                path: path.to_string(),
            }
            .into());
        }
        let new: Vec<Acl> = acl::locked(&current, admin);
        match client.set_acl(path, &new, Some(stat.aversion)).await {
            Ok(_) => return Ok(()),
            Err(zookeeper_client::Error::BadVersion) => continue,
            Err(zookeeper_client::Error::NoNode) => return Ok(()),
            Err(e) => return Err(ZkError::access(Access::SetAcl, path)(e).into()),
        }
    }
    Err(anyhow!("{path} kept changing; try again"))
}
