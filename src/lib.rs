//! zkdns: a per-container DNS stub that answers service-discovery names from ZooKeeper.
//!
//! The rooms, and how a change and a query flow through them (each imports only the ones
//! below it):
//!
//! - [`cmd`]: one module per subcommand, wiring the parts below together; only [`run`] calls
//!   into it. [`cli`] parses the command line into typed arguments, [`config`] turns them into
//!   the validated configuration, [`error`] maps failures to exit codes, [`shutdown`] turns
//!   signals into a cancellation token.
//! - [`zk`] talks to ZooKeeper. [`zk::sync`] is the only writer of the map: a persistent
//!   recursive watch on `<root>/zones`, a full read ([`zk::zone`]) on every (re)connect, and
//!   per-event re-reads, all applied to a decoded [`zk::tree::Tree`]. [`zk::write`] writes for
//!   the tools; [`zk::auth`] holds the credentials, TLS settings and the ACL of created nodes;
//!   [`zk::acl`] what ACLs say: admins, registrars' grants, and reading them back in words.
//! - [`store`] turns the tree into an immutable [`store::Snapshot`] (records pre-encoded in
//!   wire format) and publishes it with `arc-swap`: readers never wait on the writer.
//!   [`snapfile`] keeps a copy on disk for a restart while ZooKeeper is down.
//! - [`dns`] answers: [`dns::server`], [`dns::udp`] and [`dns::tcp`] receive, [`dns::handler`]
//!   decides (answer from the snapshot, forward, or stay silent), [`dns::wire`] parses and writes
//!   messages, [`dns::answer`] writes the authoritative answer, [`dns::forward`] relays other
//!   names upstream, [`dns::ratelimit`] caps each client.
//! - [`hosts`] writes the map into a hosts file's block, fed by the same sync and store.
//! - [`register`] keeps an instance's ephemeral member while it runs (health-checked, re-made
//!   after session expiry).
//! - [`tooling`] holds the zone tooling's pure parts: zone files, hosts files and JSON maps,
//!   import plans, hand edits.
//! - [`metrics`] counts what happens (per-thread shards on the query path); [`telemetry`]
//!   shows it: the Prometheus exposition, the HTTP endpoints, and logging.
//! - At the bottom, the data model: [`names`] (validated names and wire keys) and [`records`]
//!   (what a znode holds); and [`sys`], the only module with `unsafe` (two glibc calls).

#![deny(unsafe_code)]

pub mod cli;
pub mod cmd;
pub mod config;
pub mod dns;
pub mod error;
pub mod hosts;
pub mod metrics;
pub mod names;
pub mod records;
pub mod register;
pub mod shutdown;
pub mod snapfile;
pub mod store;
pub mod sys;
pub mod telemetry;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod tooling;
pub mod zk;

use cli::{Cli, Command};
use error::{Failure, ResultExt};

/// Runs one command of the CLI to completion.
pub async fn run(cli: Cli) -> Result<(), Failure> {
    let cancel = shutdown::on_signal().or_runtime()?;
    let global = &cli.global;
    match cli.command {
        Command::Serve(args) => cmd::serve::run(global, args, cancel).await,
        Command::Check(args) => cmd::check::run(global, args).await,
        Command::Import(args) => cmd::import::run(global, args).await,
        Command::Export(args) => cmd::export::run(global, args).await,
        Command::Ls(args) => cmd::ls::run(global, args).await,
        Command::Set(args) => cmd::set::run(global, args).await,
        Command::Rm(args) => cmd::rm::run(global, args).await,
        Command::Register(args) => cmd::register::run(global, args, cancel).await,
        Command::Hosts(args) => cmd::hosts::run(global, args, cancel).await,
        Command::Grant(args) => cmd::grant::run(global, args, false).await,
        Command::Revoke(args) => cmd::grant::run(global, args, true).await,
        Command::Acl(command) => cmd::acl::run(global, command).await,
    }
}
