//! `zkdns check`: validates the configuration `serve` would run with (same flags, same
//! `ZKDNS_*` variables), then whether ZooKeeper answers and holds the zones, and whether each
//! upstream answers a real query, and what the ACLs leave open. One line per check (`WARN`
//! lines do not fail it); exit 0 all good, 1 something did not answer, 2 bad configuration.

use std::fmt::Display;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use futures_util::future::join_all;
use zookeeper_client::Client;

use crate::cli::{CheckArgs, GlobalArgs};
use crate::config::{pick_upstreams, zk_config};
use crate::dns::forward;
use crate::error::Failure;
use crate::metrics::RCODES;
use crate::names::{ZoneName, list};
use crate::zk::acl::{self, Scope};
use crate::zk::{Layout, ZkConfig, ZkError, close, connect};

/// The outcome of the checks, printed as they are made.
#[derive(Debug, Default)]
struct Report {
    checks: usize,
    failed: usize,
}

impl Report {
    fn ok(&mut self, what: impl Display, detail: impl Display) {
        self.checks += 1;
        println!("OK   {what}: {detail}");
    }

    /// Worth an operator's attention, but serving works: not a failure.
    fn warn(&mut self, what: impl Display, reason: impl Display) {
        self.checks += 1;
        println!("WARN {what}: {reason}");
    }

    fn fail(&mut self, what: impl Display, reason: impl Display) {
        self.checks += 1;
        self.failed += 1;
        println!("FAIL {what}: {reason}");
    }
}

fn rcode_name(rcode: u16) -> String {
    RCODES
        .get(usize::from(rcode))
        .map_or_else(|| format!("RCODE {rcode}"), |n| n.to_string())
}

fn ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

/// Runs every check; `Err` carries exit 2 (configuration) or 1 (something unreachable).
pub async fn run(global: &GlobalArgs, args: CheckArgs) -> Result<(), Failure> {
    let args = args.serve;
    let mut report = Report::default();

    let config = Layout::new(&global.root)
        .map_err(|e| anyhow!("--root {}: {e}", global.root))
        .and_then(|layout| {
            let upstreams = pick_upstreams(&args, &args.listen).map_err(|failure| failure.error)?;
            Ok((layout, upstreams))
        });
    let (layout, upstreams) = match config {
        Ok(c) => c,
        Err(e) => {
            report.fail("configuration", format!("{e:#}"));
            return Err(Failure::input(e));
        }
    };
    let zones = if args.zones.is_empty() {
        "every zone under the root".to_string()
    } else {
        list(&args.zones)
    };
    report.ok(
        "configuration",
        format!(
            "zk {}, root {}, zones: {zones}, listen {}, upstreams {}",
            global.zk,
            global.root,
            list(&args.listen),
            list(&upstreams)
        ),
    );

    let zk = zk_config(global)?;
    check_zookeeper(&mut report, &zk, &layout, &args.zones).await?;
    check_upstreams(
        &mut report,
        &upstreams,
        args.no_upstream,
        args.upstream_timeout,
    )
    .await;

    match report.failed {
        0 => Ok(()),
        n => Err(Failure::runtime(anyhow!(
            "{n} of {} checks failed",
            report.checks
        ))),
    }
}

/// Connects (within the session timeout), then looks for `<root>/zones` and the `--zone`
/// zones. `Err` only for a connect string that cannot be parsed (bad configuration).
async fn check_zookeeper(
    report: &mut Report,
    zk: &ZkConfig,
    layout: &Layout,
    wanted: &[ZoneName],
) -> Result<(), Failure> {
    let what = format!("zookeeper {}", zk.connect);
    let started = Instant::now();
    // a little past the session timeout: the client gives up on its own by then
    let limit = zk.session_timeout + Duration::from_secs(1);
    let client = match tokio::time::timeout(limit, connect(zk)).await {
        Ok(Ok(client)) => client,
        Ok(Err(ZkError::Connect {
            source: zookeeper_client::Error::BadArguments(reason),
            ..
        })) => {
            let e = anyhow!("--zk {:?}: {reason}", zk.connect);
            report.fail("configuration", format!("{e:#}"));
            return Err(Failure::input(e));
        }
        Ok(Err(e)) => {
            report.fail(&what, format!("{:#}", anyhow::Error::from(e)));
            report.fail("zones", "not checked: no ZooKeeper session");
            return Ok(());
        }
        Err(_) => {
            report.fail(&what, format!("no session within {limit:?}"));
            report.fail("zones", "not checked: no ZooKeeper session");
            return Ok(());
        }
    };
    report.ok(
        &what,
        format!(
            "session {} established in {}",
            client.session_id(),
            ms(started.elapsed())
        ),
    );
    check_zones(report, &client, layout, wanted).await;
    check_acls(report, &client, layout).await;
    close(client).await;
    Ok(())
}

async fn check_zones(report: &mut Report, client: &Client, layout: &Layout, wanted: &[ZoneName]) {
    let zones_path = layout.zones();
    let mut zones = match client.list_children(&zones_path).await {
        Ok(z) => z,
        Err(zookeeper_client::Error::NoNode) => {
            report.fail(
                "zones",
                format!("{zones_path} does not exist (nothing to serve; `zkdns import` or `zkdns set` creates it)"),
            );
            return;
        }
        Err(e) => {
            report.fail("zones", format!("cannot list {zones_path}: {e}"));
            return;
        }
    };
    zones.sort();
    const SHOWN: usize = 10;
    let more = zones.len().saturating_sub(SHOWN);
    let mut shown = list(&zones[..zones.len().min(SHOWN)]);
    if more > 0 {
        shown.push_str(&format!(" and {more} more"));
    }
    report.ok(
        "zones",
        format!("{zones_path} has {} zones ({shown})", zones.len()),
    );
    for zone in wanted {
        let path = layout.zone(zone.as_str());
        match client.check_stat(&path).await {
            Ok(Some(stat)) => report.ok(
                format!("zone {zone}"),
                format!("{} record sets", stat.num_children),
            ),
            Ok(None) => report.fail(format!("zone {zone}"), format!("{path} does not exist")),
            Err(e) => report.fail(format!("zone {zone}"), format!("cannot read {path}: {e}")),
        }
    }
}

/// Warns about nodes anyone may change (credentials protect nothing there) and grants
/// whose registrar has no member (left over, or a registrar that is not running).
async fn check_acls(report: &mut Report, client: &Client, layout: &Layout) {
    const SHOWN: usize = 10;
    let nodes = match acl::walk(client, layout, &Scope::All).await {
        Ok(nodes) => nodes,
        Err(e) => {
            report.warn("acls", format!("not checked: {:#}", anyhow::Error::from(e)));
            return;
        }
    };
    let audit = acl::audit(&nodes);
    if audit.open.is_empty() {
        report.ok(
            "acls",
            format!("no node of {} lets anyone change it", nodes.len()),
        );
    } else {
        let more = audit.open.len().saturating_sub(SHOWN);
        let mut shown = list(&audit.open[..audit.open.len().min(SHOWN)]);
        if more > 0 {
            shown.push_str(&format!(" and {more} more"));
        }
        report.warn(
            "acls",
            format!(
                "{} node(s) anyone may change: {shown}; `zkdns acl lock` (as the admin) leaves \
                 anyone read only",
                audit.open.len()
            ),
        );
    }
    for (name, registrar) in &audit.idle_grants {
        report.warn(
            format!("grant {name}"),
            format!(
                "{registrar} has no member registered (`zkdns revoke` if it is no longer used)"
            ),
        );
    }
}

/// Sends `. NS` with RD to every upstream at once and expects a reply of any RCODE.
async fn check_upstreams(
    report: &mut Report,
    upstreams: &[SocketAddr],
    no_upstream: bool,
    timeout: Duration,
) {
    if upstreams.is_empty() {
        let why = if no_upstream {
            "none (--no-upstream)"
        } else {
            "none found (names outside the zones get REFUSED)"
        };
        report.ok("upstreams", why);
        return;
    }
    let probes = upstreams.iter().map(|up| forward::probe(*up, timeout));
    for (up, result) in upstreams.iter().zip(join_all(probes).await) {
        let what = format!("upstream {up}");
        match result {
            Ok(reply) => report.ok(
                what,
                format!(
                    "answered '. NS' with {} in {}",
                    rcode_name(reply.rcode),
                    ms(reply.elapsed)
                ),
            ),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                report.fail(what, format!("no reply to '. NS' within {timeout:?}"))
            }
            Err(e) => report.fail(what, format!("'. NS' failed: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rcode_names() {
        assert_eq!(rcode_name(0), "NOERROR");
        assert_eq!(rcode_name(5), "REFUSED");
        assert_eq!(rcode_name(9), "RCODE 9");
    }

    #[test]
    fn lists() {
        assert_eq!(list::<String>(&[]), "none");
        assert_eq!(list(&["a", "b"]), "a, b");
    }
}
