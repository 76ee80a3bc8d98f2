//! zkdns: a per-container DNS stub that answers service-discovery names from ZooKeeper.
//!
//! The components, and how a query and a change flow through them:
//!
//! - [`cli`] parses the command line into typed arguments; [`error`] maps failures to exit codes.
//! - [`zk`] talks to ZooKeeper. [`zk::sync`] is the only writer of the map: a persistent
//!   recursive watch on `<root>/zones`, a full read on every (re)connect, and per-event
//!   re-reads, all applied to a decoded [`zk::tree::Tree`]. [`records`] and [`names`] decode
//!   and validate what the znodes hold.
//! - [`store`] turns the tree into an immutable [`store::Snapshot`] (records pre-encoded in wire
//!   format) and publishes it with `arc-swap`: readers never wait on the writer.
//! - [`dns`] answers: [`dns::server`] receives UDP/TCP, [`dns::wire`] parses the query,
//!   [`dns::answer`] writes the authoritative answer from the snapshot, [`dns::forward`] relays
//!   everything else to the upstream resolvers.
//! - [`serve`] wires these together for `zkdns serve`; [`shutdown`] turns signals into a
//!   cancellation token.
//! - The zone tooling writes what the stub serves: [`zonefile`] reads and writes RFC 1035 zone
//!   files (pure); [`import`] diffs a zone's files against ZooKeeper and writes the difference
//!   in batched multi-transactions; [`admin`] holds `ls`, `set`, `rm` and `export`.

pub mod admin;
pub mod cli;
pub mod dns;
pub mod error;
pub mod import;
pub mod metrics;
pub mod names;
pub mod records;
pub mod serve;
pub mod shutdown;
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
        Command::Import(args) => import::run(&cli.global, args).await,
        Command::Export(args) => admin::export(&cli.global, args).await,
        Command::Ls(args) => admin::ls(&cli.global, args).await,
        Command::Set(args) => admin::set(&cli.global, args).await,
        Command::Rm(args) => admin::rm(&cli.global, args).await,
    }
}
