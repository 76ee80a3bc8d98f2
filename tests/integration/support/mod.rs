//! Fixtures for the integration tests: a real ZooKeeper ([`ZooKeeper`]) and a three-node
//! ensemble ([`Ensemble`]), the real `zkdns` binary ([`Zkdns`], and [`Daemon`] for `register`
//! and `hosts`) and its metrics ([`QueryCounts`]), Knot DNS as reference and upstream
//! ([`Knot`], [`Upstream`]) with a counting relay in front ([`CountingRelay`]), a misbehaving
//! upstream ([`ScriptedUpstream`]), DNS clients ([`dig`], [`query`]), the resolver stacks of
//! containers ([`client_programs`], [`in_resolv_ns`]) and a checked query load
//! ([`QueryLoad`]), znode writers ([`put_set`] …) and a network namespace ([`NetNs`]). Every
//! process a fixture starts is killed on Drop, and by a watchdog if the test process dies
//! first.

// Shared by every test module; not every module uses every helper.
#![allow(dead_code, unused_imports)]

mod auth;
mod clients;
mod daemon;
mod dns;
mod ensemble;
mod knot;
mod load;
mod metrics;
mod netns;
mod process;
mod proxy;
mod relay;
mod scripted;
mod tls;
mod wait;
mod zkdns;
mod znodes;
mod zookeeper;

pub use auth::*;
pub use clients::*;
pub use daemon::*;
pub use dns::*;
pub use ensemble::*;
pub use knot::*;
pub use load::*;
pub use metrics::*;
pub use netns::*;
pub use process::*;
pub use proxy::*;
pub use relay::*;
pub use scripted::*;
pub use tls::*;
pub use wait::*;
pub use zkdns::*;
pub use znodes::*;
pub use zookeeper::*;
