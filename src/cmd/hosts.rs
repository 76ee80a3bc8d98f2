//! `zkdns hosts --file PATH`: checks the file, starts the ZooKeeper sync task (and the HTTP
//! endpoints when asked for), then writes the block once (`--once`) or follows the map until
//! SIGTERM/SIGINT.

use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cli::{GlobalArgs, HostsArgs};
use crate::config::ZkTarget;
use crate::error::Failure;
use crate::hosts::{HostsFile, UpdateError, first_sync, follow};
use crate::metrics::Metrics;
use crate::store::Store;
use crate::telemetry::exposition::Sources;
use crate::zk::sync::Pacing;

/// Runs `zkdns hosts`.
pub async fn run(
    global: &GlobalArgs,
    args: HostsArgs,
    cancel: CancellationToken,
) -> Result<(), Failure> {
    let target = ZkTarget::from_global(global)?;
    let metrics = Arc::new(Metrics::new(0));
    let mut file = HostsFile::new(args.file.clone(), metrics.clone());
    file.check().map_err(UpdateError::into_failure)?;
    if args.once {
        // a one-shot must fail when ZooKeeper cannot be reached; the sync task below would
        // keep retrying quietly
        crate::zk::close(super::connect(&target).await?).await;
    }
    let store = Store::new();
    let sources = Sources {
        metrics: metrics.clone(),
        store: store.clone(),
        upstreams: None,
        cache: None,
    };
    let http_task = super::start_endpoints(args.metrics, sources, cancel.clone()).await?;
    let stop_sync = cancel.child_token();
    let session_timeout = target.zk.session_timeout;
    let sync = super::follow_zookeeper(
        target,
        &args.zones,
        store.clone(),
        metrics,
        Pacing {
            jitter: args.resync_jitter,
            full_read_every: args.full_read_every,
        },
        stop_sync.clone(),
    );
    let result = if args.once {
        let mut changes = store.subscribe();
        // the probe just connected: this only bounds a read that never completes
        let wait = session_timeout * 2 + Duration::from_secs(30);
        if first_sync(&store, &mut changes, &cancel, Some(Instant::now() + wait)).await {
            file.update(&store.load())
                .map_err(UpdateError::into_failure)
        } else if cancel.is_cancelled() {
            Ok(())
        } else {
            Err(Failure::runtime(anyhow!(
                "no complete read of ZooKeeper at {} within {wait:?}",
                global.zk
            )))
        }
    } else {
        follow(&mut file, &store, &cancel).await
    };
    stop_sync.cancel();
    let _ = sync.await;
    if let Some(task) = http_task {
        cancel.cancel();
        let _ = task.await;
    }
    result
}
