//! The DNS side: wire format of the query path, authoritative answers from the snapshot,
//! forwarding to upstreams, and the UDP/TCP listeners.

pub mod answer;
pub mod forward;
pub mod fuzz_support;
pub mod ratelimit;
pub mod server;
pub mod udp;
pub mod wire;
