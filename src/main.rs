//! The `zkdns` binary: parse the command line, set up logging, run, map the outcome to an
//! exit status (0 success, 2 bad usage or input, 1 runtime failure).

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use zkdns::cli::{Cli, Command};

/// After `run` returns, how long stray tasks (none expected) may hold up the exit.
const RUNTIME_SHUTDOWN: Duration = Duration::from_secs(1);

fn main() -> ExitCode {
    one_malloc_arena();
    let cli = Cli::parse();
    // the daemon logs its state changes; one-shot commands only what goes wrong
    let daemon = matches!(
        cli.command,
        Command::Serve(_) | Command::Register(_) | Command::Hosts(_)
    );
    zkdns::logging::init(cli.global.log_format, daemon);
    // one worker: UDP queries have threads of their own (dns::udp), and what the runtime does
    // (ZooKeeper, TCP, forwarding, HTTP) waits on I/O; a second worker doubled the wakeups of
    // an idle stub (every ZooKeeper client tick woke both). Long CPU work (a full snapshot
    // build) runs in `block_in_place`, off the worker.
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

/// One glibc malloc arena for the whole process: the query path does not allocate, so the
/// per-thread arenas glibc would make only hold memory (several MiB of RSS) for nothing.
fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: called before any thread exists; M_ARENA_MAX only limits future arenas.
    unsafe {
        nix::libc::mallopt(nix::libc::M_ARENA_MAX, 1);
    }
}
