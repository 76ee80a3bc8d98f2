//! The integration tests: the real `zkdns` binary against a real ZooKeeper, queried with real
//! DNS clients and compared with Knot DNS. Fixtures are in `support/`.

mod support;

mod acl;
mod bad_input;
mod catchup;
mod client_matrix;
mod docker;
mod faults;
mod fleet;
mod hosts;
mod observability;
mod packet_flood;
mod register;
mod security;
mod serve_bad_data;
mod serve_cache;
mod serve_clients;
mod serve_forward;
mod serve_garbage;
mod serve_knot;
mod serve_listen;
mod serve_records;
mod serve_snapshot;
mod serve_stale;
mod serve_tcp;
mod serve_watch;
mod serve_zookeeper;
mod tooling;
