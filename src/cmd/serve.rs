//! `zkdns serve`: binds the listeners, builds the query handler, starts the ZooKeeper sync
//! task (and the snapshot file and HTTP endpoints when asked for), and answers until
//! SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::cli::{GlobalArgs, ServeArgs};
use crate::config::{ZkTarget, cache_config, pick_upstreams};
use crate::dns::cache::Cache;
use crate::dns::forward::Forwarder;
use crate::dns::handler::{Acl, Handler, StalePolicy};
use crate::dns::ratelimit::RateLimiter;
use crate::dns::server;
use crate::dns::tcp::TcpLimits;
use crate::error::{Failure, ResultExt};
use crate::metrics::Metrics;
use crate::snapfile::{self, Identity};
use crate::store::Store;
use crate::telemetry::exposition::Sources;
use crate::zk::sync::Pacing;

/// Runs the stub until `cancel` fires.
pub async fn run(
    global: &GlobalArgs,
    args: ServeArgs,
    cancel: CancellationToken,
) -> Result<(), Failure> {
    let target = ZkTarget::from_global(global)?;
    let workers = args.udp_workers.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        usize::from,
    );
    let sockets = server::bind(&args.listen, workers).await.or_runtime()?;
    let bound: Vec<SocketAddr> = sockets.iter().map(|l| l.udp.local).collect();
    let upstreams = pick_upstreams(&args, &bound)?;
    info!(?upstreams, "forwarding names outside the zones");
    let cache = cache_config(&args).map(|c| Arc::new(Cache::new(c)));
    let store = Store::new();
    let metrics = Arc::new(Metrics::new(workers * args.listen.len()));
    let handler = Arc::new(
        Handler::new(
            store.clone(),
            metrics.clone(),
            Forwarder::new(upstreams, args.upstream_timeout, cache.clone()),
            Acl::new(args.allow.clone()),
            &args.zones,
        )
        .with_stale_policy(StalePolicy {
            ttl: u32::try_from(args.stale_ttl.as_secs()).unwrap_or(u32::MAX),
            max_age: args.max_stale,
        })
        .with_rate_limit(RateLimiter::new(args.max_qps_per_client)),
    );
    let sources = Sources {
        metrics: metrics.clone(),
        store: store.clone(),
        upstreams: Some(handler.forwarder.health()),
        cache,
    };
    let http_task = super::start_endpoints(args.metrics, sources, cancel.clone()).await?;
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
    let sync_task = super::follow_zookeeper(
        target,
        &args.zones,
        store,
        metrics,
        Pacing {
            jitter: args.resync_jitter,
            full_read_every: args.full_read_every,
        },
        cancel.clone(),
    );
    let tcp_limits = TcpLimits {
        per_client: usize::from(args.max_tcp_per_client),
        ..TcpLimits::default()
    };
    server::serve(sockets, handler, tcp_limits, cancel).await;
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
