//! What the daemons show their operators: [`exposition`] renders the counts of
//! [`crate::metrics`] (and the map's and upstreams' state) for Prometheus at scrape time,
//! [`http`] serves `/metrics`, `/healthz` and `/livez`, and [`logging`] sets up `tracing`.

pub mod exposition;
pub mod http;
pub mod logging;
