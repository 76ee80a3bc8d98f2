//! The command line: one subcommand per user task, every flag also settable from the
//! environment (`ZKDNS_*`). Values are parsed into typed values here, so a bad argument is a
//! usage error (exit 2) naming the flag before anything runs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ipnet::IpNet;

use crate::names::ZoneName;

const EXAMPLES: &str = "\
Examples:
  zkdns serve --listen 127.0.0.1:5353 --upstream 192.0.2.53
  zkdns import zones/cluster.local.zone --zone cluster.local
  zkdns set web.cluster.local A 10.0.0.5 10.0.0.6
  zkdns ls cluster.local
  dig @127.0.0.1 -p 5353 web.cluster.local";

#[derive(Debug, Parser)]
#[command(
    name = "zkdns",
    version,
    about = "Service-discovery DNS stub serving names kept in ZooKeeper",
    after_help = EXAMPLES
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// ZooKeeper connect string: HOST:PORT[,HOST:PORT…][/chroot]
    #[arg(
        long,
        global = true,
        env = "ZKDNS_ZK",
        default_value = "127.0.0.1:2181"
    )]
    pub zk: String,
    /// ZooKeeper node under which zkdns keeps its data
    #[arg(long, global = true, env = "ZKDNS_ROOT", default_value = "/zkdns")]
    pub root: String,
    /// ZooKeeper session timeout (e.g. 6s)
    #[arg(long, global = true, env = "ZKDNS_ZK_SESSION_TIMEOUT", default_value = "6s",
          value_parser = parse_duration)]
    pub zk_session_timeout: Duration,
    /// Log format
    #[arg(
        long,
        global = true,
        env = "ZKDNS_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the DNS stub: answer the zones from ZooKeeper, forward everything else
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Zone to serve (repeatable); default: every zone under the root
    #[arg(long = "zone", env = "ZKDNS_ZONE", value_delimiter = ',', value_parser = parse_zone)]
    pub zones: Vec<ZoneName>,
    /// Address to answer on, UDP and TCP (repeatable)
    #[arg(
        long,
        env = "ZKDNS_LISTEN",
        value_delimiter = ',',
        default_value = "127.0.0.1:53"
    )]
    pub listen: Vec<SocketAddr>,
    /// Upstream resolvers, IP[:PORT] (repeatable or comma-separated); default: the
    /// nameservers of --resolv-conf
    #[arg(long = "upstream", env = "ZKDNS_UPSTREAM", value_delimiter = ',', value_parser = parse_upstream)]
    pub upstreams: Vec<SocketAddr>,
    /// Answer REFUSED for names outside the zones instead of forwarding them
    #[arg(long, env = "ZKDNS_NO_UPSTREAM", conflicts_with = "upstreams")]
    pub no_upstream: bool,
    /// resolv.conf to take default upstreams from
    #[arg(long, env = "ZKDNS_RESOLV_CONF", default_value = "/etc/resolv.conf")]
    pub resolv_conf: PathBuf,
    /// Time to wait for each upstream before trying the next
    #[arg(long, env = "ZKDNS_UPSTREAM_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub upstream_timeout: Duration,
    /// Networks whose clients are answered besides loopback (repeatable), e.g. 10.0.0.0/8
    #[arg(long, env = "ZKDNS_ALLOW", value_delimiter = ',')]
    pub allow: Vec<IpNet>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 500ms, 2s, 1m)"))
}

fn parse_zone(s: &str) -> Result<ZoneName, String> {
    ZoneName::parse(s).map_err(|e| e.to_string())
}

/// `IP` or `IP:PORT` or `[IPv6]:PORT`; port 53 when not given.
pub fn parse_upstream(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    s.parse::<std::net::IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| format!("{s:?} is not IP or IP:PORT"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn upstreams_parse() {
        assert_eq!(
            parse_upstream("10.0.0.1").unwrap(),
            "10.0.0.1:53".parse().unwrap()
        );
        assert_eq!(
            parse_upstream("[::1]:5300").unwrap(),
            "[::1]:5300".parse().unwrap()
        );
        assert_eq!(parse_upstream("::1").unwrap(), "[::1]:53".parse().unwrap());
        assert!(parse_upstream("nameserver").is_err());
    }
}
