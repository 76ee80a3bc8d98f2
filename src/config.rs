//! The validated configuration commands run with, made from the parsed command line before
//! anything runs: where zkdns's data lives and how to reach ZooKeeper ([`ZkTarget`]), and the
//! upstreams `serve` forwards to ([`pick_upstreams`]) and the limits of its cache
//! ([`cache_config`]). Bad values are bad input (exit 2).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::anyhow;
use tracing::warn;

use crate::cli::{GlobalArgs, ServeArgs};
use crate::dns::cache::CacheConfig;
use crate::error::{Failure, ResultExt};
use crate::zk::auth::{self, ZkAuth, ZkTls};
use crate::zk::{Layout, ZkConfig};

/// Where zkdns's nodes are and how to reach the ensemble: what every command that talks to
/// ZooKeeper starts from.
#[derive(Debug, Clone)]
pub struct ZkTarget {
    pub layout: Layout,
    pub zk: ZkConfig,
}

impl ZkTarget {
    /// `--root`, then the connection settings of [`zk_config`].
    pub fn from_global(global: &GlobalArgs) -> Result<Self, Failure> {
        let layout = Layout::new(&global.root).or_input()?;
        Ok(Self {
            layout,
            zk: zk_config(global)?,
        })
    }
}

/// The connection every command runs with: `--zk`, `--zk-session-timeout`, the credentials
/// (`--zk-auth-file` or `ZKDNS_ZK_AUTH`) and `--zk-tls-*`. With credentials, the nodes this
/// process creates are made writable by them alone.
pub fn zk_config(global: &GlobalArgs) -> Result<ZkConfig, Failure> {
    let auth = ZkAuth::load(
        global.zk_auth_file.as_deref(),
        std::env::var_os(auth::AUTH_ENV),
    )
    .or_input()?;
    if let Some(auth) = &auth {
        auth::protect_created_nodes(auth);
    }
    let tls = match &global.zk_tls_ca {
        Some(ca) => {
            let identity = global
                .zk_tls_cert
                .as_deref()
                .zip(global.zk_tls_key.as_deref());
            Some(ZkTls::load(ca, identity).or_input()?)
        }
        None => None,
    };
    Ok(ZkConfig {
        auth: auth.map(Arc::new),
        tls: tls.map(Arc::new),
        ..ZkConfig::new(&global.zk, global.zk_session_timeout)
    })
}

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
            return Err(Failure::input(anyhow!(
                "--no-upstream and --upstream exclude each other"
            )));
        }
        return Ok(Vec::new());
    }
    if !args.upstreams.is_empty() {
        if let Some(up) = args.upstreams.iter().find(|u| is_self(**u, listen)) {
            return Err(Failure::input(anyhow!(
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

/// The limits of the cache of forwarded answers, or `None` with `--no-cache`.
pub fn cache_config(args: &ServeArgs) -> Option<CacheConfig> {
    let secs = |d: std::time::Duration| u32::try_from(d.as_secs()).unwrap_or(u32::MAX);
    (!args.no_cache).then(|| CacheConfig {
        max_bytes: args.cache_size,
        max_ttl: secs(args.cache_max_ttl),
        max_negative_ttl: secs(args.cache_max_negative_ttl),
        stale_limit: secs(args.cache_stale_limit),
        stale_ttl: secs(args.stale_ttl),
    })
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
