//! The DNS side: the listeners ([`server`], [`udp`], [`tcp`] with its per-client cap), the [`handler`] that decides what each
//! packet gets, the wire format of the query path ([`wire`]), authoritative answers from the
//! snapshot ([`answer`]), forwarding to upstreams ([`forward`]) through the [`cache`] of
//! forwarded answers, and the per-client rate limit ([`ratelimit`]).

pub mod answer;
pub mod cache;
pub mod forward;
pub mod handler;
pub mod ratelimit;
pub mod server;
pub mod tcp;
pub mod udp;
pub mod wire;
