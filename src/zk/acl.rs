//! Who may do what to zkdns's nodes. ZooKeeper checks an ACL on every request; this module
//! decides what the ACLs say and reads them back in words. The *admin* (the identity that runs
//! `import`, `set`, `rm` and `grant`) holds every right on the nodes it owns; a *registrar* is
//! granted `create` and `delete` on one name's node, which lets it add and remove members
//! there and nothing else; anyone may read unless a zone is made secret. `grant`, `revoke`
//! and `acl lock` write ACLs (always against the ACL version read, never widening what anyone
//! else may do); `acl show` and `check` read them through [`walk`].

use futures_util::stream::{self, StreamExt, TryStreamExt};
use zookeeper_client::{Acl, AuthId, Client, Permission, Stat};

use crate::names::ZoneName;
use crate::zk::zone::{self, zone_names};
use crate::zk::{Layout, ZkError};

/// The rights a grant gives a registrar on a name's node: add members, remove members.
pub fn registrar_rights() -> Permission {
    Permission::CREATE | Permission::DELETE
}

/// Requests in flight while walking a tree's ACLs.
const IN_FLIGHT: usize = 64;

/// The five rights, in the order `cdrwa` lists them, with their letter.
const RIGHTS: [(Permission, char); 5] = [
    (Permission::CREATE, 'c'),
    (Permission::DELETE, 'd'),
    (Permission::READ, 'r'),
    (Permission::WRITE, 'w'),
    (Permission::ADMIN, 'a'),
];

/// `cdrwa`-style letters of `perm` (`-` for none).
pub fn letters(perm: Permission) -> String {
    let s: String = RIGHTS
        .iter()
        .filter(|(p, _)| perm.has(*p))
        .map(|(_, c)| *c)
        .collect();
    if s.is_empty() { "-".to_string() } else { s }
}

/// `a` without `b` (zookeeper-client keeps the bits private).
fn without(a: Permission, b: Permission) -> Permission {
    RIGHTS
        .iter()
        .filter(|(p, _)| a.has(*p) && !b.has(*p))
        .fold(Permission::NONE, |acc, (p, _)| acc | *p)
}

/// Parses `--registrar`: `digest:USER:HASH` or `USER:HASH`, HASH being what `zkdns acl id`
/// prints for the registrar's credentials (base64 of a SHA-1). Nothing that names everyone
/// (`world:anyone`, `auth:`) is a registrar.
pub fn parse_registrar(text: &str) -> Result<AuthId, String> {
    let id = text.strip_prefix("digest:").unwrap_or(text);
    let hint = "run `zkdns acl id` with the registrar's credentials to get it";
    let Some((user, hash)) = id.split_once(':') else {
        return Err(format!(
            "--registrar {text:?} must be digest:USER:HASH (a user alone is not an identity; {hint})"
        ));
    };
    let hash_ok = data_encoding::BASE64
        .decode(hash.as_bytes())
        .is_ok_and(|h| h.len() == 20);
    if user.is_empty() || user.contains(char::is_whitespace) || !hash_ok {
        return Err(format!(
            "--registrar {text:?} must be digest:USER:HASH with a 28-character base64 HASH ({hint})"
        ));
    }
    Ok(AuthId::new("digest", id))
}

/// The digest identity of `auth`, as an ACL names it.
pub fn identity(auth: &crate::zk::ZkAuth) -> AuthId {
    AuthId::new("digest", &auth.digest_id())
}

/// Whether ZooKeeper hid a digest hash from us (it shows `USER:x` to clients without the
/// admin right on the node): such an ACL cannot be written back.
pub fn hides_hashes(acl: &[Acl]) -> bool {
    acl.iter()
        .any(|a| a.scheme() == "digest" && a.id().split_once(':').is_none_or(|(_, h)| h.len() < 20))
}

fn is_anyone(id: &AuthId) -> bool {
    id.scheme() == "world" && id.id() == "anyone"
}

/// What anyone may do on a node.
pub fn anyone_may(acl: &[Acl]) -> Permission {
    acl.iter()
        .filter(|a| is_anyone(a.auth_id()))
        .fold(Permission::NONE, |acc, a| acc | a.permission())
}

/// Whether anyone (no credentials at all) may change the node or what is below it.
pub fn anyone_writes(acl: &[Acl]) -> bool {
    without(anyone_may(acl), Permission::READ) != Permission::NONE
}

/// `acl` with `id` holding at least `perm` (merged into its entry, or a new one).
fn with_right(acl: &[Acl], id: &AuthId, perm: Permission) -> Vec<Acl> {
    let mut out = Vec::with_capacity(acl.len() + 1);
    let mut found = false;
    for a in acl {
        if a.auth_id() == id {
            found = true;
            out.push(Acl::new(a.permission() | perm, id.clone()));
        } else {
            out.push(a.clone());
        }
    }
    if !found {
        out.push(Acl::new(perm, id.clone()));
    }
    out
}

/// `acl` with anyone cut down to read (and dropped if that leaves nothing), the admin
/// holding every right: what `grant` and `acl lock` make of an open node.
pub fn locked(acl: &[Acl], admin: &AuthId) -> Vec<Acl> {
    let mut out: Vec<Acl> = acl
        .iter()
        .filter_map(|a| {
            if !is_anyone(a.auth_id()) {
                return Some(a.clone());
            }
            let read = a.permission() & Permission::READ;
            (read != Permission::NONE).then(|| Acl::new(read, a.auth_id().clone()))
        })
        .collect();
    out = with_right(&out, admin, Permission::ALL);
    out
}

/// The ACL of a name's node after granting `registrar` on it: [`locked`], plus the
/// registrar's [`registrar_rights`]. `world_read`: whether anyone may read a node made new.
pub fn granted(
    existing: Option<&[Acl]>,
    admin: &AuthId,
    registrar: &AuthId,
    world_read: bool,
) -> Vec<Acl> {
    let base = match existing {
        Some(acl) => locked(acl, admin),
        None => {
            let mut acl = vec![Acl::new(Permission::ALL, admin.clone())];
            if world_read {
                acl.push(Acl::new(Permission::READ, AuthId::anyone()));
            }
            acl
        }
    };
    // a secret zone's registrar must also read the name it registers under
    let rights = if anyone_may(&base).has(Permission::READ) {
        registrar_rights()
    } else {
        registrar_rights() | Permission::READ
    };
    with_right(&base, registrar, rights)
}

/// The ACL without `registrar`'s entry; `None` when it had none.
pub fn revoked(acl: &[Acl], registrar: &AuthId) -> Option<Vec<Acl>> {
    let out: Vec<Acl> = acl
        .iter()
        .filter(|a| a.auth_id() != registrar)
        .cloned()
        .collect();
    (out.len() != acl.len()).then_some(out)
}

/// The registrars an ACL grants: entries that may add members but not change the node.
pub fn registrars(acl: &[Acl]) -> Vec<&AuthId> {
    acl.iter()
        .filter(|a| {
            let p = a.permission();
            !is_anyone(a.auth_id())
                && p.has(Permission::CREATE)
                && !p.has(Permission::WRITE)
                && !p.has(Permission::ADMIN)
        })
        .map(Acl::auth_id)
        .collect()
}

/// The user of a digest identity (`USER:HASH` → `USER`), else the whole id.
pub fn user_of(id: &AuthId) -> &str {
    match id.scheme() {
        "digest" => id.id().split_once(':').map_or(id.id(), |(u, _)| u),
        _ => id.id(),
    }
}

/// An identity in words.
pub fn who(id: &AuthId) -> String {
    match id.scheme() {
        "world" if id.id() == "anyone" => "anyone".to_string(),
        "auth" => "any authenticated client".to_string(),
        "digest" => format!("digest user {}", user_of(id)),
        "ip" => format!("clients at {}", id.id()),
        "x509" => format!("TLS certificate {}", id.id()),
        scheme => format!("{scheme}:{}", id.id()),
    }
}

/// What a node is, for saying what its rights mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Root,
    Zones,
    Zone,
    Name,
    Member,
    /// `<root>/marks`, a zone's change mark, or a name listed in one ([`crate::zk::marks`]).
    Mark,
}

/// `perm` on a node of `kind`, in words.
pub fn rights_in_words(kind: Kind, perm: Permission) -> String {
    let word = |p: Permission| -> &'static str {
        match (kind, p) {
            (_, Permission::READ) => "read",
            (Kind::Root | Kind::Zones, Permission::WRITE) => "change its data",
            (Kind::Zone, Permission::WRITE) => "change the zone's settings",
            (Kind::Name, Permission::WRITE) => "change the record set",
            (Kind::Member, Permission::WRITE) => "change the member",
            (Kind::Root, Permission::CREATE) => "create the zones node",
            (Kind::Zones, Permission::CREATE) => "add zones",
            (Kind::Zone, Permission::CREATE) => "add names",
            (Kind::Name, Permission::CREATE) => "register members",
            (Kind::Root, Permission::DELETE) => "delete the zones node",
            (Kind::Zones, Permission::DELETE) => "delete zones",
            (Kind::Zone, Permission::DELETE) => "delete names",
            (Kind::Name, Permission::DELETE) => "remove members",
            (Kind::Member, Permission::CREATE | Permission::DELETE) => "",
            (Kind::Mark, Permission::WRITE) => "record writes (what reconnecting stubs re-read)",
            (Kind::Mark, Permission::CREATE) => "list names (checked by reconnecting stubs)",
            (Kind::Mark, Permission::DELETE) => "unlist names",
            (_, _) => "change the ACL",
        }
    };
    let words: Vec<&str> = [
        Permission::READ,
        Permission::WRITE,
        Permission::CREATE,
        Permission::DELETE,
        Permission::ADMIN,
    ]
    .into_iter()
    .filter(|p| perm.has(*p))
    .map(word)
    .filter(|w| !w.is_empty())
    .collect();
    if words.is_empty() {
        "nothing".to_string()
    } else {
        words.join(", ")
    }
}

/// One node's ACL, as [`walk`] reads it.
#[derive(Debug, Clone)]
pub struct NodeAcl {
    pub path: String,
    pub kind: Kind,
    /// The name it stands for: the zone, `name.zone`, or the member id; empty for the root.
    pub label: String,
    pub acl: Vec<Acl>,
    pub stat: Stat,
}

/// What to walk: the root and zones nodes, one zone and its names, or one name.
#[derive(Debug, Clone)]
pub enum Scope {
    All,
    Zone(ZoneName),
    Name { zone: ZoneName, name: String },
}

/// The ACLs of the nodes in `scope`, parents before children: for [`Scope::All`] the root,
/// the zones node and every zone with its names and members, then the marks; for a zone, its
/// node, names, members and mark; for a name, its node and members. Requests are pipelined.
pub async fn walk(
    client: &Client,
    layout: &Layout,
    scope: &Scope,
) -> Result<Vec<NodeAcl>, ZkError> {
    let mut nodes: Vec<(String, Kind, String)> = Vec::new();
    let zones: Vec<ZoneName> = match scope {
        Scope::All => {
            nodes.push((layout.root().to_string(), Kind::Root, String::new()));
            nodes.push((layout.zones(), Kind::Zones, String::new()));
            zone_names(client, layout)
                .await?
                .iter()
                .filter_map(|z| ZoneName::from_znode(z).ok())
                .collect()
        }
        Scope::Zone(zone) | Scope::Name { zone, .. } => vec![zone.clone()],
    };
    for zone in &zones {
        let Some(found) = zone::read_zone(client, layout, zone, true).await? else {
            continue;
        };
        let only = match scope {
            Scope::Name { name, .. } => Some(name.as_str()),
            _ => None,
        };
        if only.is_none() {
            nodes.push((layout.zone(zone.as_str()), Kind::Zone, zone.to_string()));
        }
        for (name, set) in found.apex_first() {
            if only.is_some_and(|n| n != name) {
                continue;
            }
            let fqdn = if name == "@" {
                zone.to_string()
            } else {
                format!("{name}.{zone}")
            };
            nodes.push((layout.set(zone.as_str(), name), Kind::Name, fqdn));
            for member in set.members.keys() {
                let path = layout.member(zone.as_str(), name, member);
                nodes.push((path, Kind::Member, member.clone()));
            }
        }
    }
    // the change marks: writing one decides what reconnecting stubs re-read
    if !matches!(scope, Scope::Name { .. }) {
        if matches!(scope, Scope::All) {
            nodes.push((layout.marks(), Kind::Mark, String::new()));
        }
        for zone in &zones {
            let mark = layout.mark(zone.as_str());
            let listed = match client.list_children(&mark).await {
                Ok(names) => names,
                Err(zookeeper_client::Error::NoNode) => continue,
                Err(e) => return Err(ZkError::request(&mark)(e)),
            };
            nodes.push((mark, Kind::Mark, zone.to_string()));
            for name in listed {
                let path = layout.mark_name(zone.as_str(), &name);
                nodes.push((path, Kind::Mark, format!("{name} listed in {zone}")));
            }
        }
    }
    stream::iter(nodes)
        .map(|(path, kind, label)| async move {
            match client.get_acl(&path).await {
                Ok((acl, stat)) => Ok(Some(NodeAcl {
                    path,
                    kind,
                    label,
                    acl,
                    stat,
                })),
                // gone since it was listed
                Err(zookeeper_client::Error::NoNode) => Ok(None),
                Err(e) => Err(ZkError::request(&path)(e)),
            }
        })
        .buffered(IN_FLIGHT)
        .try_filter_map(|n| async move { Ok(n) })
        .try_collect()
        .await
}

/// What `check` warns about: nodes anyone may change, and grants no member uses.
#[derive(Debug, Default)]
pub struct Audit {
    pub open: Vec<String>,
    /// `(name, registrar)` pairs: granted, nothing registered.
    pub idle_grants: Vec<(String, String)>,
}

/// Audits walked ACLs: see [`Audit`]. A member belongs to the digest users that may change it.
pub fn audit(nodes: &[NodeAcl]) -> Audit {
    let mut out = Audit::default();
    for (i, node) in nodes.iter().enumerate() {
        if anyone_writes(&node.acl) {
            out.open.push(node.path.clone());
        }
        if node.kind != Kind::Name {
            continue;
        }
        let prefix = format!("{}/", node.path);
        let owners: Vec<&str> = nodes[i + 1..]
            .iter()
            .take_while(|m| m.kind == Kind::Member && m.path.starts_with(&prefix))
            .flat_map(|m| {
                m.acl
                    .iter()
                    .filter(|a| a.permission().has(Permission::WRITE))
                    .map(|a| user_of(a.auth_id()))
            })
            .collect();
        for registrar in registrars(&node.acl) {
            if !owners.contains(&user_of(registrar)) {
                out.idle_grants.push((node.label.clone(), who(registrar)));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin() -> AuthId {
        AuthId::new("digest", "admin:lK75jTNcA+U9vtVEw5vB51mj/w4=")
    }

    fn web() -> AuthId {
        AuthId::new("digest", "web:AAAAAAAAAAAAAAAAAAAAAAAAAAA=")
    }

    #[test]
    fn registrar_ids_are_digest_identities() {
        assert_eq!(
            parse_registrar("digest:web:lK75jTNcA+U9vtVEw5vB51mj/w4=").unwrap(),
            AuthId::new("digest", "web:lK75jTNcA+U9vtVEw5vB51mj/w4=")
        );
        assert!(parse_registrar("web:lK75jTNcA+U9vtVEw5vB51mj/w4=").is_ok());
        for bad in [
            "web",
            "world:anyone",
            "web:x",
            "digest:web:",
            ":lK75jTNcA+U9vtVEw5vB51mj/w4=",
        ] {
            let e = parse_registrar(bad).unwrap_err();
            assert!(e.contains("zkdns acl id"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_grant_locks_an_open_node_and_adds_only_create_and_delete() {
        let open = vec![Acl::new(Permission::ALL, AuthId::anyone())];
        let acl = granted(Some(&open), &admin(), &web(), true);
        assert_eq!(
            acl,
            vec![
                Acl::new(Permission::READ, AuthId::anyone()),
                Acl::new(Permission::ALL, admin()),
                Acl::new(Permission::CREATE | Permission::DELETE, web()),
            ]
        );
        assert!(!anyone_writes(&acl));
        assert_eq!(registrars(&acl), vec![&web()]);
        // granting again changes nothing
        assert_eq!(granted(Some(&acl), &admin(), &web(), true), acl);
        // a new node of a secret zone: no one else reads, the registrar does
        let secret = granted(None, &admin(), &web(), false);
        assert_eq!(anyone_may(&secret), Permission::NONE);
        assert_eq!(
            secret[1],
            Acl::new(
                Permission::CREATE | Permission::DELETE | Permission::READ,
                web()
            )
        );
        assert_eq!(revoked(&acl, &web()).unwrap().len(), 2);
        assert!(revoked(&open, &web()).is_none());
    }

    #[test]
    fn hidden_hashes_are_noticed() {
        assert!(hides_hashes(&[Acl::new(
            Permission::ALL,
            AuthId::new("digest", "admin:x")
        )]));
        assert!(!hides_hashes(&[Acl::new(Permission::ALL, admin())]));
    }

    #[test]
    fn rights_read_as_words() {
        assert_eq!(
            rights_in_words(Kind::Name, registrar_rights()),
            "register members, remove members"
        );
        assert_eq!(rights_in_words(Kind::Zone, Permission::READ), "read");
        assert_eq!(letters(Permission::ALL), "cdrwa");
        assert_eq!(letters(Permission::NONE), "-");
        assert_eq!(who(&web()), "digest user web");
        assert_eq!(who(&AuthId::anyone()), "anyone");
    }

    #[test]
    fn the_audit_finds_open_nodes_and_idle_grants() {
        let stat = Stat {
            czxid: 0,
            mzxid: 0,
            pzxid: 0,
            ctime: 0,
            mtime: 0,
            version: 0,
            cversion: 0,
            aversion: 0,
            ephemeral_owner: 0,
            data_length: 0,
            num_children: 0,
        };
        let node = |path: &str, kind, label: &str, acl| NodeAcl {
            path: path.into(),
            kind,
            label: label.into(),
            acl,
            stat,
        };
        let grant = granted(None, &admin(), &web(), true);
        let nodes = vec![
            node("/z/zones/t/web", Kind::Name, "web.t", grant.clone()),
            node(
                "/z/zones/t/web/w1",
                Kind::Member,
                "w1",
                vec![Acl::new(Permission::READ | Permission::WRITE, web())],
            ),
            node("/z/zones/t/api", Kind::Name, "api.t", grant),
            node(
                "/z/zones/t/db",
                Kind::Name,
                "db.t",
                vec![Acl::new(Permission::ALL, AuthId::anyone())],
            ),
        ];
        let audit = audit(&nodes);
        assert_eq!(audit.open, vec!["/z/zones/t/db"]);
        assert_eq!(
            audit.idle_grants,
            vec![("api.t".to_string(), "digest user web".to_string())]
        );
    }
}
