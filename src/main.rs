//! The `zkdns` binary: parse the command line, set up logging, run, map the outcome to an
//! exit status (0 success, 2 bad usage or input, 1 runtime failure).

#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use zkdns::cli::{Cli, Command};

/// After `run` returns, how long stray tasks (none expected) may hold up the exit.
const RUNTIME_SHUTDOWN: Duration = Duration::from_secs(1);

fn main() -> ExitCode {
    zkdns::sys::one_malloc_arena();
    let cli = Cli::parse();
    // the daemon logs its state changes; one-shot commands only what goes wrong
    let daemon = matches!(
        cli.command,
        Command::Serve(_) | Command::Register(_) | Command::Hosts(_)
    );
    zkdns::telemetry::logging::init(cli.global.log_format, daemon);
    // one worker: UDP queries have threads of their own (dns::udp), and what the runtime does
    // (ZooKeeper, TCP, forwarding, HTTP) waits on I/O; a second worker doubled the wakeups of
    // an idle stub when that was measured (both woke for the ZooKeeper client's timers). Long
    // CPU work (a full snapshot build) runs in `block_in_place`, off the worker.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("zkdns: error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let outcome = runtime.block_on(zkdns::run(cli));
    // a task that ignores cancellation must not keep a stopped daemon from exiting
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("zkdns: error: {failure}");
            ExitCode::from(failure.exit_code())
        }
    }
}
