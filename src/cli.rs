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
  zkdns import zones/cluster.test.zone
  zkdns set web.cluster.test A 10.0.0.5 10.0.0.6
  zkdns ls cluster.test
  dig @127.0.0.1 -p 5353 web.cluster.test";

const IMPORT_HELP: &str = "\
Each file goes to --zone, or else to the zone of its SOA owner, or else of its first $ORIGIN.
Supported: A, AAAA, CNAME, TXT, SRV, MX, PTR, and SOA and NS at the zone apex (they become the
zone's settings). A record set's TTL is the lowest of its records' TTLs; it is left out when it
equals the SOA's TTL, so that it follows the zone's. SOA serial 0 means: derive the serial from
the time of the last change. Any other type, a name outside the zone, NS below the apex, a
CNAME beside other data, or a syntax error stops the import with FILE:LINE before anything is
written. Running the same import twice changes nothing the second time.

Examples:
  zkdns import zones/cluster.test.zone --dry-run
  zkdns import zones/cluster.test.zone --prune";

const SET_HELP: &str = "\
Each VALUE is one record, given as one argument (quote the ones with spaces):
  A 10.0.0.5                     AAAA fd00::5
  CNAME web                      PTR web.cluster.test.
  TXT \"v=spf1 -all\"              MX \"10 mail.example.\"
  SRV \"0 5 8080 web\"             TTL 30   (the record set's TTL, seconds or 1m, 1h, ...)
Names without a trailing dot are relative to the zone, as in zone files; '@' is the zone.
A value that starts with '-' goes after '--': zkdns set NAME TXT -- \"-all\"

Examples:
  zkdns set web.cluster.test A 10.0.0.5 10.0.0.6
  zkdns set _http._tcp.web.cluster.test SRV \"0 5 8080 web\" \"0 5 8081 web\"";

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
    /// Load RFC 1035 zone files into ZooKeeper, idempotently, in multi-transactions
    #[command(after_help = IMPORT_HELP)]
    Import(ImportArgs),
    /// Print a zone as an RFC 1035 zone file that `import` reads back
    Export(ExportArgs),
    /// List the zones, or the records of one zone (registered members included)
    Ls(LsArgs),
    /// Replace the records of one type at a name (creating its record set if needed)
    #[command(after_help = SET_HELP)]
    Set(SetArgs),
    /// Delete a name's record set, or just one type of records from it
    Rm(RmArgs),
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Zone files ($ORIGIN, $TTL, $INCLUDE, relative names, multi-string TXT)
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Zone to load the files into; default: each file's SOA owner, else its first $ORIGIN
    #[arg(long, env = "ZKDNS_IMPORT_ZONE", value_parser = parse_zone)]
    pub zone: Option<ZoneName>,
    /// Also delete the record sets that the files do not have (never one with live members)
    #[arg(long, env = "ZKDNS_IMPORT_PRUNE")]
    pub prune: bool,
    /// Print the changes (+ created, ~ updated, - deleted) and write nothing
    #[arg(long, env = "ZKDNS_IMPORT_DRY_RUN")]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Zone to print
    #[arg(long, env = "ZKDNS_EXPORT_ZONE", value_parser = parse_zone)]
    pub zone: ZoneName,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Zone to list; without it, the zones and their numbers of record sets
    #[arg(value_parser = parse_zone)]
    pub zone: Option<ZoneName>,
    /// Print JSON instead of a table
    #[arg(long, env = "ZKDNS_LS_JSON")]
    pub json: bool,
}

/// The record types `set` and `rm` edit, and the record set's TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "UPPER")]
pub enum RecordKind {
    A,
    Aaaa,
    Cname,
    Txt,
    Srv,
    Mx,
    Ptr,
    Ttl,
}

impl std::fmt::Display for RecordKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = self
            .to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_default();
        f.write_str(&name)
    }
}

#[derive(Debug, Args)]
pub struct SetArgs {
    /// Absolute name, e.g. web.cluster.test (trailing dot optional)
    pub name: String,
    /// Record type, or TTL for the record set's TTL
    #[arg(value_enum, ignore_case = true, value_name = "TYPE")]
    pub kind: RecordKind,
    /// The records, one argument each (see below)
    #[arg(required = true, value_name = "VALUE")]
    pub values: Vec<String>,
    /// Zone of NAME; default: the longest zone under the root that NAME ends with (a zone
    /// given here is created if missing)
    #[arg(long, env = "ZKDNS_SET_ZONE", value_parser = parse_zone)]
    pub zone: Option<ZoneName>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Absolute name, e.g. web.cluster.test (trailing dot optional)
    pub name: String,
    /// Remove only this type of records (or TTL: the record set's own TTL)
    #[arg(value_enum, ignore_case = true, value_name = "TYPE")]
    pub kind: Option<RecordKind>,
    /// Zone of NAME; default: the longest zone under the root that NAME ends with
    #[arg(long, env = "ZKDNS_RM_ZONE", value_parser = parse_zone)]
    pub zone: Option<ZoneName>,
    /// Also delete the live members registered under NAME
    #[arg(long, env = "ZKDNS_RM_FORCE")]
    pub force: bool,
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
    /// UDP sockets (and threads) per listen address; default: one per CPU
    #[arg(long, env = "ZKDNS_UDP_WORKERS", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub udp_workers: Option<u16>,
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
