//! Everything that talks to ZooKeeper: connecting (multi-host connect string, chroot, session
//! timeout), the znode layout under the root, and the watcher that keeps the map current.

pub mod layout;
pub mod sync;
pub mod tree;

use std::time::Duration;

use thiserror::Error;
use zookeeper_client::{Client, SessionState};

pub use layout::Layout;

/// How to reach ZooKeeper.
#[derive(Debug, Clone)]
pub struct ZkConfig {
    /// `host:port[,host:port…][/chroot]`, as the Java client takes it.
    pub connect: String,
    pub session_timeout: Duration,
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
}

impl ZkError {
    pub fn request(path: &str) -> impl FnOnce(zookeeper_client::Error) -> ZkError + '_ {
        move |source| ZkError::Request {
            path: path.to_string(),
            source,
        }
    }
}

/// Opens a session, trying every host of the connect string until the session timeout.
pub async fn connect(config: &ZkConfig) -> Result<Client, ZkError> {
    Client::connector()
        .with_session_timeout(config.session_timeout)
        .with_connection_timeout(config.session_timeout.min(Duration::from_secs(4)))
        .connect(&config.connect)
        .await
        .map_err(|source| ZkError::Connect {
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

/// Whether a session state means this client is done and a new one must be built.
pub fn is_terminal(state: SessionState) -> bool {
    state.is_terminated()
}
