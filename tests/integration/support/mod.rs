//! Fixtures for the integration tests: a real ZooKeeper ([`ZooKeeper`]), the real `zkdns`
//! binary ([`Zkdns`]), Knot DNS as reference and upstream ([`Knot`], [`Upstream`]), DNS
//! clients ([`dig`], [`query`]), znode writers ([`put_set`] …) and a network namespace
//! ([`NetNs`]). Every process a fixture starts is killed on Drop, and by a watchdog if the test
//! process dies first.

// Shared by every test module; not every module uses every helper.
#![allow(dead_code, unused_imports)]

mod dns;
mod knot;
mod netns;
mod process;
mod proxy;
mod wait;
mod zkdns;
mod znodes;
mod zookeeper;

pub use dns::*;
pub use knot::*;
pub use netns::*;
pub use process::*;
pub use proxy::*;
pub use wait::*;
pub use zkdns::*;
pub use znodes::*;
pub use zookeeper::*;
