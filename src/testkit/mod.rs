//! A test kit for the query path and the znode decoders, for the cargo-fuzz targets
//! (`fuzz/`), the bounded fuzzing runs of the test suite and the integration tests; built only
//! with the `testkit` feature (which those enable) or for the unit tests, never into `serve`.
//!
//! - [`tree`]: a fixed test [`Snapshot`] built through the same [`crate::zk::tree::Tree`] the
//!   watcher fills, and [`check_znode`] (a payload applied as a watch event, then queried);
//! - here: [`answer_packet`], the listeners' own code minus the socket;
//! - [`oracle`]: [`check_reply`], the rules every reply must keep;
//! - [`packets`] and [`payloads`]: the generators of queries, malformed packets and payloads;
//! - [`zkmodel`]: a model of ZooKeeper's tree and stats, for catching up.

pub mod oracle;
pub mod packets;
pub mod payloads;
#[cfg(test)]
mod tests;
pub mod tree;
pub mod zkmodel;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::dns::forward::Forwarder;
pub use crate::dns::handler::Verdict;
use crate::dns::handler::{Acl, Handler, StalePolicy};
use crate::metrics::Metrics;
use crate::store::{Snapshot, Store};
pub use oracle::{build_query, check_reply, check_still_answers, push_name};
pub use packets::{QUERY_NAMES, mutate, random_packet, random_query, rfc9267_case};
pub use payloads::random_payload;
pub use tree::{apply_znode, check_znode, test_nodes, test_snapshot, test_tree};

/// The client address the fuzzers use: loopback, always admitted.
pub const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// The root the test tree lives under.
pub const ROOT: &str = "/zkdns";

/// How current the map is, as the handler sees it: the three ways `serve` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapState {
    /// Synced and connected to ZooKeeper.
    Fresh,
    /// ZooKeeper away: TTLs capped at [`STALE_TTL`], EDE 3 (RFC 8767).
    Stale,
    /// ZooKeeper away for longer than stale data may be served: SERVFAIL.
    TooOld,
}

/// The TTL cap of stale answers in the harness (serve's default).
pub const STALE_TTL: u32 = 30;

/// A handler as `serve --no-upstream` builds it, with no zone waiting for its first read,
/// whose store is in `state`.
fn handler(state: MapState) -> &'static Handler {
    static HANDLERS: [OnceLock<Handler>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    HANDLERS[state as usize].get_or_init(|| {
        let store = Store::new();
        let max_age = match state {
            MapState::Fresh => {
                store.publish(Snapshot::default());
                Duration::from_secs(3600)
            }
            MapState::Stale => Duration::from_secs(3600),
            MapState::TooOld => {
                std::thread::sleep(Duration::from_millis(2));
                Duration::ZERO
            }
        };
        Handler::new(
            store,
            Arc::new(Metrics::new(1)),
            Forwarder::new(Vec::new(), Duration::from_secs(1), None),
            Acl::default(),
            &[],
        )
        .with_stale_policy(StalePolicy {
            ttl: STALE_TTL,
            max_age,
        })
    })
}

/// Answers `packet` from `snap` exactly as a UDP worker or a TCP connection does, into `out`,
/// with the map fresh.
pub fn answer_packet(
    snap: &Snapshot,
    packet: &[u8],
    client: IpAddr,
    tcp: bool,
    out: &mut Vec<u8>,
) -> Verdict {
    answer_packet_in(MapState::Fresh, snap, packet, client, tcp, out)
}

/// [`answer_packet`] with the map in `state`.
pub fn answer_packet_in(
    state: MapState,
    snap: &Snapshot,
    packet: &[u8],
    client: IpAddr,
    tcp: bool,
    out: &mut Vec<u8>,
) -> Verdict {
    let h = handler(state);
    h.answer_now(snap, packet, client, tcp, out, h.metrics.shard(0))
}
