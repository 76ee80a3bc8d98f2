//! Everything that talks to ZooKeeper: connecting (multi-host connect string, chroot, session
//! timeout, credentials and TLS), the znode [`layout`] under the root, reading zones
//! ([`zone`]) and writing them ([`write`]) for the tools, and the [`sync`] task that keeps the
//! map current through a decoded [`tree`].

pub mod acl;
pub mod auth;
pub mod catchup;
pub mod layout;
pub mod marks;
pub mod sync;
pub mod tree;
pub mod write;
pub mod zone;

use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use zookeeper_client::Client;

pub use auth::{ZkAuth, ZkTls};
pub use layout::Layout;

/// How to reach ZooKeeper.
#[derive(Debug, Clone)]
pub struct ZkConfig {
    /// `host:port[,host:port…][/chroot]`, as the Java client takes it.
    pub connect: String,
    pub session_timeout: Duration,
    /// Digest credentials; `None` connects anonymously.
    pub auth: Option<Arc<ZkAuth>>,
    /// TLS to every host of `connect` (`tcp://host` opts one out); `None` is plain TCP.
    pub tls: Option<Arc<ZkTls>>,
    /// The longest random wait before reconnecting after a lost connection (zero: at once);
    /// see [`ZkConfig::spreading_reconnects`].
    pub reconnect_spread: Duration,
}

impl ZkConfig {
    /// An anonymous, plain-TCP configuration.
    pub fn new(connect: &str, session_timeout: Duration) -> Self {
        Self {
            connect: connect.to_string(),
            session_timeout,
            auth: None,
            tls: None,
            reconnect_spread: Duration::ZERO,
        }
    }

    /// Reconnects after a random wait of up to a fifth of the session timeout (at most 5 s),
    /// as `serve` and `hosts` do: the stubs one server's failure disconnects then reach the
    /// other servers spread over that time, not at once, and still well inside their session
    /// (a hung server is left after 3/5 of it). They serve their map meanwhile.
    pub fn spreading_reconnects(mut self) -> Self {
        self.reconnect_spread = (self.session_timeout / 5).min(Duration::from_secs(5));
        self
    }
}

#[derive(Debug, Error)]
pub enum ZkError {
    #[error("cannot reach ZooKeeper at {connect}")]
    Connect {
        connect: String,
        #[source]
        source: zookeeper_client::Error,
    },
    #[error("ZooKeeper request on {path} failed")]
    Request {
        path: String,
        #[source]
        source: zookeeper_client::Error,
    },
    #[error("ZooKeeper session expired")]
    Expired,
    /// ZooKeeper refused a request for want of a right (`NoAuth`), said in words.
    #[error(
        "not authorized to {} {path}: that takes the {} right on {}, which this client's \
         identity does not have",
        access.verb(), access.right(), access.node(path)
    )]
    Denied { access: Access, path: String },
}

/// What a request does to a node, for naming the right it takes when ZooKeeper refuses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    /// Creating the node: `create` on its parent.
    Create,
    /// Deleting the node: `delete` on its parent.
    Delete,
    SetData,
    SetAcl,
}

impl Access {
    fn verb(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Create => "create",
            Access::Delete => "delete",
            Access::SetData => "change",
            Access::SetAcl => "change the ACL of",
        }
    }

    fn right(self) -> &'static str {
        match self {
            Access::Read => "read (r)",
            Access::Create => "create (c)",
            Access::Delete => "delete (d)",
            Access::SetData => "write (w)",
            Access::SetAcl => "admin (a)",
        }
    }

    /// The node whose ACL decides: the parent for creates and deletes.
    fn node(self, path: &str) -> &str {
        match self {
            Access::Create | Access::Delete => match path.rsplit_once('/') {
                Some(("", _)) | None => "/",
                Some((parent, _)) => parent,
            },
            _ => path,
        }
    }
}

impl ZkError {
    pub fn request(path: &str) -> impl FnOnce(zookeeper_client::Error) -> ZkError + '_ {
        move |source| ZkError::Request {
            path: path.to_string(),
            source,
        }
    }

    /// [`ZkError::request`], with a refusal said as the right that `access` takes.
    pub fn access(
        access: Access,
        path: &str,
    ) -> impl FnOnce(zookeeper_client::Error) -> ZkError + '_ {
        move |source| match source {
            zookeeper_client::Error::NoAuth => ZkError::Denied {
                access,
                path: path.to_string(),
            },
            source => ZkError::request(path)(source),
        }
    }

    /// Whether ZooKeeper refused the request for want of a right.
    pub fn is_denied(&self) -> bool {
        matches!(
            self,
            ZkError::Denied { .. }
                | ZkError::Request {
                    source: zookeeper_client::Error::NoAuth,
                    ..
                }
        )
    }
}

/// How long a connection may go without a reply before the client moves to another host.
///
/// zookeeper-client derives its deadlines from this only while it is at most 3/5 of the
/// session timeout (it pings after 3/8 of it without sending, and gives up on the connection
/// after all of it); above 3/5 it falls back to 8/20 of the session timeout. 3/5 is the longest
/// that still leaves a reconnect to another server inside the session: with a 6 s session, a
/// server that stops answering is left after 3.6 s, and a quiet connection is pinged every
/// 1.35 s. (The patched client sleeps until those deadlines, so the value costs no wakeups.)
fn connection_timeout(session_timeout: Duration) -> Duration {
    (session_timeout * 3 / 5).min(Duration::from_secs(4))
}

/// Opens a session, trying every host of the connect string until the session timeout; with
/// credentials, they are sent first on every connection of the session.
pub async fn connect(config: &ZkConfig) -> Result<Client, ZkError> {
    let mut connector = Client::connector()
        .with_session_timeout(config.session_timeout)
        .with_connection_timeout(connection_timeout(config.session_timeout))
        .with_reconnect_spread(config.reconnect_spread);
    if let Some(auth) = &config.auth {
        connector = connector.with_auth("digest", &auth.credentials());
    }
    let connected = match &config.tls {
        Some(tls) => {
            connector
                .with_tls(tls.options())
                .secure_connect(&config.connect)
                .await
        }
        None => connector.connect(&config.connect).await,
    };
    connected.map_err(|source| ZkError::Connect {
        connect: config.connect.clone(),
        source,
    })
}

/// Closes the session so that its ephemeral nodes go at once, waiting briefly for the server
/// to confirm. Dropping the last handle is what makes the client send CloseSession.
pub async fn close(client: Client) {
    let mut state = client.state_watcher();
    drop(client);
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            if state.changed().await.is_terminated() {
                break;
            }
        }
    })
    .await;
}

/// The first pause before trying ZooKeeper again; it doubles up to [`BACKOFF_MAX`].
pub(crate) const BACKOFF_MIN: Duration = Duration::from_millis(100);
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Opens a session, trying again with backoff until one opens (`Some`) or `cancel` fires
/// (`None`). The first failure is logged as a warning, `unreachable` saying what the caller
/// does meanwhile; later ones at debug.
pub(crate) async fn connect_retrying(
    config: &ZkConfig,
    cancel: &CancellationToken,
    unreachable: &'static str,
) -> Option<Client> {
    let mut backoff = BACKOFF_MIN;
    let mut failing = false;
    loop {
        let attempt = tokio::select! {
            r = connect(config) => r,
            () = cancel.cancelled() => return None,
        };
        match attempt {
            Ok(client) => {
                info!(session = %client.session_id(), "ZooKeeper session established");
                return Some(client);
            }
            Err(e) if !failing => {
                warn!(error = %e, "{unreachable}");
                failing = true;
            }
            Err(e) => debug!(error = %e, "ZooKeeper still unreachable"),
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = cancel.cancelled() => return None,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Sleeps until `at`, or forever when there is none: a retry or flush timer that may be
/// unset, as one arm of a `select!`.
pub(crate) async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
