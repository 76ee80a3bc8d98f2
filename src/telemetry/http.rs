//! The operator's HTTP endpoints on `--metrics ADDR`: `/metrics` (Prometheus text),
//! `/healthz` (ready: synced with ZooKeeper and not stale) and `/livez` (the process runs).
//! A small hyper server on the async runtime, stopped by the same cancellation token as the rest.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::telemetry::exposition::{self, Exposition, Sources};

/// How long a scrape under way may take to finish once shutdown starts.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);
/// Time for a client to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP connections served at once; an operator's scrapers and probes need a handful.
const MAX_CONNECTIONS: usize = 64;

#[derive(Debug, Error)]
#[error("failed to bind to metrics address {addr}")]
pub struct BindError {
    addr: SocketAddr,
    #[source]
    source: std::io::Error,
}

/// Binds the `--metrics` address (before anything else starts, so a taken port fails early).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| BindError { addr, source })
}

/// Binds `addr` and serves the endpoints from `sources` until `cancel` fires: all a daemon
/// needs for `--metrics ADDR`.
pub async fn start(
    addr: SocketAddr,
    sources: Sources,
    cancel: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, BindError> {
    let listener = bind(addr).await?;
    let endpoints = Arc::new(Endpoints::new(sources));
    Ok(tokio::spawn(serve(listener, endpoints, cancel)))
}

/// Why the stub is not ready, from its sync status; `None` when it is.
pub fn not_ready_reason(
    ready: bool,
    stale: bool,
    since_sync: Duration,
    session_connected: bool,
) -> Option<String> {
    if !ready {
        return Some("not synced yet".to_string());
    }
    if !stale {
        return None;
    }
    let secs = since_sync.as_secs();
    Some(if session_connected {
        format!("stale: catching up with ZooKeeper after a reconnect, last in sync {secs} s ago")
    } else {
        format!("stale: ZooKeeper disconnected for {secs} s")
    })
}

/// What the endpoints answer from.
#[derive(Debug)]
pub struct Endpoints {
    sources: Sources,
    exposition: Exposition,
}

impl Endpoints {
    pub fn new(sources: Sources) -> Self {
        Self {
            exposition: Exposition::new(sources.clone()),
            sources,
        }
    }

    fn health(&self) -> Option<String> {
        let store = &self.sources.store;
        let connected = self
            .sources
            .metrics
            .counters
            .zk_connected
            .load(Ordering::Relaxed)
            != 0;
        not_ready_reason(
            store.is_ready(),
            store.is_stale(),
            store.since_sync(),
            connected,
        )
    }

    fn respond<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n".into());
            r.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        match req.uri().path() {
            "/metrics" => {
                let mut r = text(StatusCode::OK, self.exposition.render());
                r.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static(exposition::CONTENT_TYPE),
                );
                r
            }
            "/healthz" => match self.health() {
                None => text(StatusCode::OK, "ok\n".into()),
                Some(reason) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
            },
            "/livez" => text(StatusCode::OK, "ok\n".into()),
            _ => text(
                StatusCode::NOT_FOUND,
                "not found; try /metrics, /healthz or /livez\n".into(),
            ),
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Serves the endpoints until `cancel` fires; then stops accepting and gives the requests
/// under way [`SHUTDOWN_GRACE`] to finish.
pub async fn serve(listener: TcpListener, endpoints: Arc<Endpoints>, cancel: CancellationToken) {
    if let Ok(addr) = listener.local_addr() {
        info!("serving metrics and health on http://{addr}/metrics");
    }
    let mut conns = JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    debug!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            () = cancel.cancelled() => break,
        };
        if conns.len() >= MAX_CONNECTIONS {
            debug!(%peer, "too many HTTP connections; closing this one");
            continue;
        }
        let endpoints = endpoints.clone();
        let cancel = cancel.clone();
        conns.spawn(async move {
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let response = endpoints.respond(&req);
                async move { Ok::<_, Infallible>(response) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                () = cancel.cancelled() => {
                    // finish the request under way, then close (no more keep-alive)
                    conn.as_mut().graceful_shutdown();
                    match tokio::time::timeout(SHUTDOWN_GRACE, conn).await {
                        Ok(r) => r,
                        Err(_) => Ok(()),
                    }
                }
            };
            if let Err(e) = result {
                debug!(%peer, error = %e, "HTTP connection ended");
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE * 2, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    conns.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::store::{Snapshot, Store};

    fn endpoints() -> Endpoints {
        Endpoints::new(Sources {
            metrics: Arc::new(Metrics::new(1)),
            store: Store::new(),
            upstreams: None,
            cache: None,
        })
    }

    fn get(e: &Endpoints, path: &str) -> (StatusCode, String) {
        let req = Request::get(path).body(()).unwrap();
        let r = e.respond(&req);
        let status = r.status();
        let body = r.into_body();
        let bytes = futures_util::FutureExt::now_or_never(http_body_util::BodyExt::collect(body))
            .expect("a full body is ready")
            .expect("infallible")
            .to_bytes();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[test]
    fn health_reasons() {
        let s = Duration::from_secs(7);
        assert_eq!(
            not_ready_reason(false, true, s, false).as_deref(),
            Some("not synced yet")
        );
        assert_eq!(not_ready_reason(true, false, Duration::ZERO, true), None);
        assert_eq!(
            not_ready_reason(true, true, s, false).as_deref(),
            Some("stale: ZooKeeper disconnected for 7 s")
        );
        assert!(
            not_ready_reason(true, true, s, true)
                .unwrap()
                .starts_with("stale: catching up")
        );
    }

    #[test]
    fn routes() {
        let e = endpoints();
        assert_eq!(
            get(&e, "/healthz"),
            (StatusCode::SERVICE_UNAVAILABLE, "not synced yet\n".into())
        );
        assert_eq!(get(&e, "/livez"), (StatusCode::OK, "ok\n".into()));
        let (status, body) = get(&e, "/metrics");
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("zkdns_ready 0"), "{body}");
        assert_eq!(get(&e, "/nope").0, StatusCode::NOT_FOUND);
        let post = Request::post("/metrics").body(()).unwrap();
        assert_eq!(e.respond(&post).status(), StatusCode::METHOD_NOT_ALLOWED);

        e.sources.store.publish(Snapshot::default());
        assert_eq!(get(&e, "/healthz"), (StatusCode::OK, "ok\n".into()));
        e.sources.store.set_connected(false);
        assert!(
            get(&e, "/healthz")
                .1
                .starts_with("stale: ZooKeeper disconnected for")
        );
    }
}
