//! `zkdns register NAME`: checks the arguments before ZooKeeper is asked anything, finds the
//! zone, then hands the members to the [`Registrar`], which holds them until SIGTERM/SIGINT
//! (with the health checks, when given, deciding whether they are published).

use std::net::IpAddr;

use anyhow::anyhow;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use zookeeper_client::Client;

use crate::cli::{GlobalArgs, RegisterArgs};
use crate::config::ZkTarget;
use crate::error::{Failure, ResultExt};
use crate::names::ZoneName;
use crate::records::{RecordSetJson, Srv};
use crate::register::{self, Check, Health, Member, Registrar};
use crate::zk::{Layout, acl, write, zone};

/// The member `id` of `fqdn`, holding `json`; bad data is bad input.
fn member(
    layout: &Layout,
    zone: &ZoneName,
    fqdn: &str,
    id: &str,
    json: RecordSetJson,
) -> Result<Member, Failure> {
    Member::new(layout, zone, fqdn, id, json).map_err(|e| Failure::input(anyhow!(e)))
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
    let (zone, exists) = zone::find_zone(client, layout, fqdn, explicit)
        .await
        .map_err(super::zone_failure)?;
    if !exists {
        write::make_node(client, &layout.zone_of(&zone))
            .await
            .or_runtime()?;
    }
    Ok(zone)
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
        let ip = register::primary_address().ok_or_else(|| {
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

/// Runs `zkdns register` until SIGTERM/SIGINT.
pub async fn run(
    global: &GlobalArgs,
    args: RegisterArgs,
    cancel: CancellationToken,
) -> Result<(), Failure> {
    let target = ZkTarget::from_global(global)?;
    let plan = plan(&args)?;
    // ZooKeeper must be there at the start (the zone is looked up there); later outages are
    // ridden out
    let client = super::connect(&target).await?;
    let members = match members(&client, &target.layout, &plan, &args).await {
        Ok(m) => m,
        Err(e) => {
            crate::zk::close(client).await;
            return Err(e);
        }
    };
    info!(session = %client.session_id(), "ZooKeeper session established");
    let (wanted_tx, wanted) = watch::channel(plan.check.is_none());
    let checks = plan.check.clone().map(|check| {
        tokio::spawn(register::health::run(
            check,
            Health::new(args.check_rise, args.check_fall),
            plan.fqdn.clone(),
            wanted_tx.clone(),
            cancel.clone(),
        ))
    });
    if target.zk.auth.is_some() {
        warn_if_open(&client, &members).await;
    }
    let held = Registrar::new(target.zk, members)
        .hold(client, wanted, cancel.clone())
        .await;
    if let Some(task) = checks {
        task.abort();
        let _ = task.await;
    }
    drop(wanted_tx);
    held.map_err(|e| {
        Failure::runtime(anyhow!(
            "{e}; an admin grants a name with `zkdns grant NAME --registrar ID` \
             (`zkdns acl id` with these credentials prints ID)"
        ))
    })
}

/// With credentials, says so when a name registered under is open to anyone: whoever
/// reaches ZooKeeper may change it, so the credentials protect nothing there.
async fn warn_if_open(client: &Client, members: &[Member]) {
    for m in members {
        if let Ok((acl, _)) = client.get_acl(m.set_path()).await
            && acl::anyone_writes(&acl)
        {
            warn!(
                "{} is open: anyone may change it or register under it; an admin locks it with \
                 `zkdns grant {} --registrar ID` (see docs/security.md)",
                m.set_path(),
                m.fqdn()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
