//! zkdns-bench: the measuring half of bench/run.sh. Each subcommand drives one kind of
//! measurement against real processes (zkdns, ZooKeeper) and appends its raw figures to a TSV
//! that bench/report.py turns into ratios and PASS/FAIL lines.

mod child;
mod coldstart;
mod dns;
mod floor;
mod hosts;
mod propagation;
mod proxy;
mod resync;
mod stats;
mod upstream;
mod zk;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "zkdns-bench",
    about = "Benchmark drivers for zkdns (see docs/benchmarks.md)"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Wait until a server answers a name with an address; print the ms it took
    Wait(coldstart::WaitArgs),
    /// Start a server, time its first correct answer, read its memory (and idle CPU)
    Coldstart(coldstart::Args),
    /// ZooKeeper write → first DNS answer reflecting it, over rounds of five kinds of change
    Propagation(propagation::Args),
    /// Cut zkdns's ZooKeeper connection, change a name, restore: time to the answer
    Resync(resync::Args),
    /// `zkdns hosts` under single changes and bursts
    Hosts(hosts::Args),
    /// The bare loop: a reference UDP server with next to no DNS work (the CPU floor)
    Floor(floor::Args),
    /// An authoritative upstream for fwd.test that counts the queries it gets
    Upstream(upstream::Args),
}

// One thread for the runtime: children are started from it, and their parent-death signal
// is tied to the thread that started them.
#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let result = match Cli::parse().command {
        Cmd::Wait(a) => coldstart::wait(a),
        Cmd::Coldstart(a) => coldstart::run(a),
        Cmd::Propagation(a) => propagation::run(a).await,
        Cmd::Resync(a) => resync::run(a).await,
        Cmd::Hosts(a) => hosts::run(a).await,
        Cmd::Floor(a) => floor::run(a),
        Cmd::Upstream(a) => upstream::run(a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zkdns-bench: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
