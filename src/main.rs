//! The `zkdns` binary: parse the command line, set up logging, run, map the outcome to an
//! exit status (0 success, 2 bad usage or input, 1 runtime failure).

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use zkdns::cli::{Cli, Command, LogFormat};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // the daemon logs its state changes; one-shot commands only what goes wrong
    let default = match cli.command {
        Command::Serve(_) => "info,zookeeper_client=warn",
        _ => "warn",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.global.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("zkdns: error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(zkdns::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("zkdns: error: {failure}");
            ExitCode::from(failure.exit_code())
        }
    }
}
