//! `zkdns serve`: binds the listeners, starts the ZooKeeper sync task, and answers until
//! SIGTERM/SIGINT, with the metrics and health endpoints on `--metrics`. Also picks the
//! default upstreams from resolv.conf, never the stub itself.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::cli::{GlobalArgs, ServeArgs};
use crate::dns::forward::Forwarder;
use crate::dns::ratelimit::RateLimiter;
use crate::dns::server::{self, Acl, Handler, StalePolicy};
use crate::error::{Failure, ResultExt};
use crate::exposition::Sources;
use crate::http::{self, Endpoints};
use crate::metrics::Metrics;
use crate::snapfile::{self, Identity};
use crate::store::Store;
use crate::zk::sync::Sync;
use crate::zk::tree::Tree;
use crate::zk::{Layout, ZkConfig};

/// Nameservers of a resolv.conf, port 53, minus any address the stub itself answers on.
pub fn upstreams_from_resolv_conf(text: &[u8], listen: &[SocketAddr]) -> Vec<SocketAddr> {
    let (config, _errors) = resolv_conf::Config::parse_with_errors(text);
    config
        .nameservers
        .iter()
        .map(|ns| SocketAddr::new(IpAddr::from(ns.clone()), 53))
        .filter(|up| !is_self(*up, listen))
        .collect()
}

/// Whether sending to `upstream` would reach this stub.
fn is_self(upstream: SocketAddr, listen: &[SocketAddr]) -> bool {
    listen.iter().any(|l| {
        l.port() == upstream.port()
            && (l.ip() == upstream.ip()
                || (l.ip().is_unspecified()
                    && (upstream.ip().is_loopback() || upstream.ip().is_unspecified())))
    })
}

/// The upstreams `serve` forwards to: `--upstream`, or else the nameservers of
/// `--resolv-conf`; none with `--no-upstream`. An upstream that is the stub itself is bad input.
pub fn pick_upstreams(args: &ServeArgs, listen: &[SocketAddr]) -> Result<Vec<SocketAddr>, Failure> {
    if args.no_upstream {
        if !args.upstreams.is_empty() {
            return Err(Failure::input(anyhow::anyhow!(
                "--no-upstream and --upstream exclude each other"
            )));
        }
        return Ok(Vec::new());
    }
    if !args.upstreams.is_empty() {
        if let Some(up) = args.upstreams.iter().find(|u| is_self(**u, listen)) {
            return Err(Failure::input(anyhow::anyhow!(
                "--upstream {up} is this stub's own address"
            )));
        }
        return Ok(args.upstreams.clone());
    }
    let ups = match std::fs::read(&args.resolv_conf) {
        Ok(text) => upstreams_from_resolv_conf(&text, listen),
        Err(e) => {
            warn!(path = %args.resolv_conf.display(), error = %e, "cannot read resolv.conf; names outside the zones get REFUSED");
            Vec::new()
        }
    };
    if ups.is_empty() {
        warn!("no upstream resolvers; names outside the zones get REFUSED");
    }
    Ok(ups)
}

/// Runs the stub until `cancel` fires.
pub async fn run(
    global: &GlobalArgs,
    args: ServeArgs,
    cancel: CancellationToken,
) -> Result<(), Failure> {
    let layout = Layout::new(&global.root).or_input()?;
    let zk = ZkConfig::from_global(global)?;
    let workers = args.udp_workers.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        usize::from,
    );
    let sockets = server::bind(&args.listen, workers).await.or_runtime()?;
    let http_listener = match args.metrics {
        Some(addr) => Some(http::bind(addr).await.or_runtime()?),
        None => None,
    };
    let bound: Vec<SocketAddr> = sockets.iter().map(|l| l.udp.local).collect();
    let upstreams = pick_upstreams(&args, &bound)?;
    info!(?upstreams, "forwarding names outside the zones");
    let store = Store::new();
    let metrics = Arc::new(Metrics::new(workers * args.listen.len()));
    let handler = Arc::new(
        Handler::new(
            store.clone(),
            metrics.clone(),
            Forwarder::new(upstreams, args.upstream_timeout),
            Acl::new(args.allow.clone()),
            &args.zones,
        )
        .with_stale_policy(StalePolicy {
            ttl: u32::try_from(args.stale_ttl.as_secs()).unwrap_or(u32::MAX),
            max_age: args.max_stale,
        })
        .with_rate_limit(RateLimiter::new(args.max_qps_per_client)),
    );
    let http_task = http_listener.map(|listener| {
        let endpoints = Endpoints::new(Sources {
            metrics: metrics.clone(),
            store: store.clone(),
            upstreams: Some(handler.forwarder.health()),
        });
        tokio::spawn(http::serve(listener, Arc::new(endpoints), cancel.clone()))
    });
    let snapshot_task = args.snapshot.clone().map(|path| {
        let identity = Identity::new(&global.zk, &global.root, &args.zones);
        snapfile::restore(&path, &identity, &store);
        tokio::spawn(snapfile::keep(
            path,
            identity,
            store.clone(),
            cancel.clone(),
        ))
    });
    let sync = Sync::new(zk, layout, Tree::for_zones(&args.zones), store).with_metrics(metrics);
    let sync_task = tokio::spawn(sync.run(cancel.clone()));
    server::serve(sockets, handler, cancel).await;
    sync_task.await.context("sync task failed").or_runtime()?;
    if let Some(task) = snapshot_task {
        task.await.context("snapshot writer failed").or_runtime()?;
    }
    if let Some(task) = http_task {
        task.await.context("metrics server failed").or_runtime()?;
    }
    info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_upstreams_skip_ourselves() {
        let text = b"nameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch x\n";
        let listen: Vec<SocketAddr> = vec!["127.0.0.53:53".parse().unwrap()];
        assert_eq!(
            upstreams_from_resolv_conf(text, &listen),
            vec!["10.0.0.2:53".parse::<SocketAddr>().unwrap()]
        );
        let any: Vec<SocketAddr> = vec!["0.0.0.0:53".parse().unwrap()];
        assert_eq!(upstreams_from_resolv_conf(text, &any).len(), 1);
        let other_port: Vec<SocketAddr> = vec!["127.0.0.53:5353".parse().unwrap()];
        assert_eq!(upstreams_from_resolv_conf(text, &other_port).len(), 2);
    }
}
