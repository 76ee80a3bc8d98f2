//! zkdns: a per-container DNS stub that answers service-discovery names from ZooKeeper.
//!
//! The components, and how a query and a change flow through them:
//!
//! - [`cli`] parses the command line into typed arguments; [`error`] maps failures to exit codes.
//! - [`zk`] talks to ZooKeeper. [`zk::sync`] is the only writer of the map: a persistent
//!   recursive watch on `<root>/zones`, a full read on every (re)connect, and per-event
//!   re-reads, all applied to a decoded [`zk::tree::Tree`]. [`records`] and [`names`] decode
//!   and validate what the znodes hold. [`zk::auth`] holds the credentials and TLS settings
//!   and the ACL of the nodes zkdns creates.
//! - [`store`] turns the tree into an immutable [`store::Snapshot`] (records pre-encoded in wire
//!   format) and publishes it with `arc-swap`: readers never wait on the writer.
//! - [`dns`] answers: [`dns::server`] receives UDP/TCP, [`dns::wire`] parses the query,
//!   [`dns::answer`] writes the authoritative answer from the snapshot, [`dns::forward`] relays
//!   everything else to the upstream resolvers; [`dns::ratelimit`] caps each client's queries.
//! - [`serve`] wires these together for `zkdns serve`; [`shutdown`] turns signals into a
//!   cancellation token.
//! - Operations: [`metrics`] counts (per-thread shards on the query path), [`exposition`]
//!   renders those counts for Prometheus at scrape time, [`http`] serves `/metrics`,
//!   `/healthz` and `/livez`, [`logging`] sets up `tracing`, and [`check`] is `zkdns check`.
//! - The zone tooling writes what the stub serves: [`zonefile`] reads and writes RFC 1035 zone
//!   files and [`hostmap`] reads hosts files and the old JSON map (both pure); [`import`]
//!   diffs a zone's input against ZooKeeper and writes the difference in batched
//!   multi-transactions; [`admin`] holds `ls`, `set`, `rm` and `export`.
//! - Two more consumers and producers of the map: [`register`] keeps an instance's ephemeral
//!   member while it runs (health-checked, re-made after session expiry), and [`hosts`] keeps
//!   a hosts-file block equal to the map, fed by the same [`zk::sync`] and [`store`] as `serve`.

pub mod admin;
pub mod check;
pub mod cli;
pub mod dns;
pub mod error;
pub mod exposition;
pub mod hostmap;
pub mod hosts;
pub mod http;
pub mod import;
pub mod logging;
pub mod metrics;
pub mod names;
pub mod records;
pub mod register;
pub mod serve;
pub mod shutdown;
pub mod snapfile;
pub mod store;
pub mod zk;
pub mod zonefile;

use cli::{Cli, Command};
use error::{Failure, ResultExt};

/// Runs one command of the CLI to completion.
pub async fn run(cli: Cli) -> Result<(), Failure> {
    let cancel = shutdown::on_signal().or_runtime()?;
    match cli.command {
        Command::Serve(args) => serve::run(&cli.global, args, cancel).await,
        Command::Check(args) => check::run(&cli.global, args).await,
        Command::Import(args) => import::run(&cli.global, args).await,
        Command::Export(args) => admin::export(&cli.global, args).await,
        Command::Ls(args) => admin::ls(&cli.global, args).await,
        Command::Set(args) => admin::set(&cli.global, args).await,
        Command::Rm(args) => admin::rm(&cli.global, args).await,
        Command::Register(args) => register::run(&cli.global, args, cancel).await,
        Command::Hosts(args) => hosts::run(&cli.global, args, cancel).await,
    }
}
