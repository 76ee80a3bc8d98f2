//! Log setup: `tracing` to stderr, filtered by `RUST_LOG`, as text or one JSON object per line
//! (`--log-format json`). The daemons log their state changes at info and nothing per query;
//! the one-shot commands only what goes wrong.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// The filter when `RUST_LOG` is not set. zookeeper-client logs every reconnect attempt at
/// info; zkdns says what matters about the session itself.
pub fn default_filter(daemon: bool) -> &'static str {
    if daemon {
        "info,zookeeper_client=warn"
    } else {
        "warn"
    }
}

/// Installs the global subscriber. Colours only on a terminal, and never with `NO_COLOR`, so
/// that logs collected by Docker or journald carry no escape codes.
pub fn init(format: LogFormat, daemon: bool) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(default_filter(daemon)));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.with_ansi(colour).init(),
        LogFormat::Json => logs.json().with_ansi(false).init(),
    }
}
