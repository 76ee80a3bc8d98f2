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
  zkdns check --upstream 192.0.2.53
  zkdns import zones/cluster.test.zone
  zkdns set web.cluster.test A 10.0.0.5 10.0.0.6
  zkdns ls cluster.test
  dig @127.0.0.1 -p 5353 web.cluster.test";

const IMPORT_HELP: &str = "\
Formats (--format):
  zone      RFC 1035 zone files. Each goes to --zone, or else to the zone of its SOA owner, or
            else of its first $ORIGIN. A, AAAA, CNAME, TXT, SRV, MX, PTR, and SOA and NS at the
            apex (they become the zone's settings). A record set's TTL is the lowest of its
            records'; it is left out when it equals the SOA's TTL, so that it follows the
            zone's. SOA serial 0 means: derive the serial from the time of the last change.
  hosts     /etc/hosts syntax: ADDRESS NAME [ALIAS...] per line, # comments. Needs --zone.
  json-map  the old system's single-znode map {\"hostname\": \"ip\", ...}; a value may also be a
            list of addresses. Needs --zone. The default with --from-znode.
In hosts files and JSON maps a name without a dot is relative to --zone (web ->
web.<zone>); a name with a dot is absolute and must be in the zone. IPv4 addresses become A
records, IPv6 ones AAAA; every name's addresses make one record set, which follows the zone's
TTL. A name given in the input replaces that record set whole.

Anything that cannot be imported (a syntax error, a bad address or name, a name outside the
zone, an unsupported type) stops the import with FILE:LINE before anything is written.
Running the same import twice changes nothing the second time.

Examples:
  zkdns import zones/cluster.test.zone --dry-run
  zkdns import zones/cluster.test.zone --prune
  zkdns import --format hosts --zone office.test zones/office.test.hosts
  zkdns import --from-znode /services/hosts --zone cluster.test";

const SERVE_HELP: &str = "\
Names in the zones are answered from ZooKeeper's map (kept current by a watch); other names
are forwarded to the upstreams. SIGTERM or SIGINT stops it: it stops taking queries,
finishes the answers under way (a few seconds at most), closes its ZooKeeper session and
exits 0.

Examples:
  zkdns serve --listen 127.0.0.53:53 --zone cluster.test
  zkdns serve --listen 127.0.0.1:5353 --upstream 192.0.2.53,192.0.2.54 --metrics 127.0.0.1:9153
  ZKDNS_ZK=zk1:2181,zk2:2181/dns ZKDNS_LISTEN=0.0.0.0:53 ZKDNS_ALLOW=10.0.0.0/8 zkdns serve";

const CHECK_HELP: &str = "\
Takes every flag and ZKDNS_* variable that serve takes, checks them as serve would, then
connects to ZooKeeper (within --zk-session-timeout), looks for <root>/zones and the --zone
zones, and sends each upstream a query for '. NS'. One line per check, OK or FAIL with the
reason. Exit status: 0 all good, 1 something did not answer, 2 bad configuration.

Examples:
  zkdns check
  zkdns check --zk zk1:2181,zk2:2181 --zone cluster.test --upstream 192.0.2.53";

const EXPORT_HELP: &str = "\
Examples:
  zkdns export --zone cluster.test > cluster.test.zone
  zkdns --zk zk2:2181 import cluster.test.zone      # copy the zone to another ensemble";

const LS_HELP: &str = "\
Examples:
  zkdns ls
  zkdns ls cluster.test
  zkdns ls cluster.test --json";

const RM_HELP: &str = "\
Examples:
  zkdns rm web.cluster.test AAAA
  zkdns rm web.cluster.test
  zkdns rm web.cluster.test --force";

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
    propagate_version = true,
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
    /// File holding the ZooKeeper digest credentials, USER:PASSWORD on one line, readable by
    /// its owner only (chmod 600). Or set ZKDNS_ZK_AUTH=USER:PASSWORD; never a flag, so the
    /// secret stays out of the process list. With credentials, nodes that import, set and
    /// register create are readable by anyone and writable only with them.
    #[arg(long, global = true, env = "ZKDNS_ZK_AUTH_FILE", value_name = "PATH")]
    pub zk_auth_file: Option<PathBuf>,
    /// CA certificates (PEM) that sign the ZooKeeper servers' certificates: connects to every
    /// --zk host with TLS (a host written tcp://HOST:PORT stays plain)
    #[arg(long, global = true, env = "ZKDNS_ZK_TLS_CA", value_name = "PEM")]
    pub zk_tls_ca: Option<PathBuf>,
    /// Client certificate chain (PEM) for TLS to ZooKeeper, for servers that ask for one
    /// (ZooKeeper's ssl.clientAuth=need, its default); with --zk-tls-key
    #[arg(long, global = true, env = "ZKDNS_ZK_TLS_CERT", value_name = "PEM",
          requires_all = ["zk_tls_key", "zk_tls_ca"])]
    pub zk_tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --zk-tls-cert, readable by its owner only
    #[arg(
        long,
        global = true,
        env = "ZKDNS_ZK_TLS_KEY",
        value_name = "PEM",
        requires = "zk_tls_cert"
    )]
    pub zk_tls_key: Option<PathBuf>,
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
    #[command(after_help = SERVE_HELP)]
    Serve(ServeArgs),
    /// Check serve's configuration and whether ZooKeeper and the upstreams answer
    #[command(after_help = CHECK_HELP)]
    Check(CheckArgs),
    /// Load zone files, hosts files or JSON maps into ZooKeeper, idempotently, in
    /// multi-transactions
    #[command(after_help = IMPORT_HELP)]
    Import(ImportArgs),
    /// Print a zone as an RFC 1035 zone file that `import` reads back
    #[command(after_help = EXPORT_HELP)]
    Export(ExportArgs),
    /// List the zones, or the records of one zone (registered members included)
    #[command(after_help = LS_HELP)]
    Ls(LsArgs),
    /// Replace the records of one type at a name (creating its record set if needed)
    #[command(after_help = SET_HELP)]
    Set(SetArgs),
    /// Delete a name's record set, or just one type of records from it
    #[command(after_help = RM_HELP)]
    Rm(RmArgs),
    /// Publish this instance under a name while it runs (an ephemeral member)
    #[command(after_help = REGISTER_HELP)]
    Register(RegisterArgs),
    /// Keep a block of a hosts file equal to the names of the zones
    #[command(after_help = HOSTS_HELP)]
    Hosts(HostsArgs),
    /// Let a registrar identity register members under a name, and nothing else (admin)
    #[command(after_help = GRANT_HELP)]
    Grant(GrantArgs),
    /// Take a name's grant away from a registrar; its live members stay until their session
    /// ends (admin)
    #[command(after_help = REVOKE_HELP)]
    Revoke(GrantArgs),
    /// Show who may do what to the names, print this identity's ID, or lock open nodes
    #[command(subcommand, after_help = ACL_HELP)]
    Acl(AclCommand),
}

const GRANT_HELP: &str = "\
Run with the admin's credentials (--zk-auth-file or ZKDNS_ZK_AUTH). Makes each NAME's node if
needed (a persistent node with no records: it answers NODATA until a member registers) and
sets its ACL to: the admin every right (cdrwa), the registrar create and delete (cd: add and
remove members), anyone read. A node that was open to anyone is locked that way; other entries
are kept. The registrar may then `zkdns register NAME` with its own credentials, and cannot
change the record set, create or delete names, touch other names or change any ACL.
ID is digest:USER:HASH, what `zkdns acl id` prints for the registrar's credentials.
NAME may be a pattern whose first label holds '*' (e.g. 'web-*.cluster.test'): it grants
the names that exist now and match; names made later need a grant of their own.

Examples:
  zkdns --zk-auth-file admin.secret grant web.cluster.test _http._tcp.web.cluster.test \\
    --registrar digest:web:AwO13a/THN/VSGwbqUTjVI6SQSw=";

const REVOKE_HELP: &str = "\
Removes the registrar's entry from each NAME's ACL (the admin's credentials are needed). The
registrar's live members are not deleted: they stay until its session ends (its `register`
exits or its container dies); its next registration fails with exit 1. `zkdns rm NAME
--force` deletes them at once.

Examples:
  zkdns --zk-auth-file admin.secret revoke web.cluster.test --registrar digest:web:AwO13a/THN/VSGwbqUTjVI6SQSw=";

#[derive(Debug, Args)]
pub struct GrantArgs {
    /// Absolute names, e.g. web.cluster.test, or patterns such as 'web-*.cluster.test'
    #[arg(required = true, value_name = "NAME")]
    pub names: Vec<String>,
    /// The registrar: digest:USER:HASH (see `zkdns acl id`)
    #[arg(long, env = "ZKDNS_REGISTRAR", value_name = "ID")]
    pub registrar: String,
    /// Zone of the names; default: the longest zone under the root that each ends with
    #[arg(long, env = "ZKDNS_GRANT_ZONE", value_parser = parse_zone)]
    pub zone: Option<ZoneName>,
}

#[derive(Debug, Subcommand)]
pub enum AclCommand {
    /// List who may do what, in words: the root, zones and every zone (no argument), a zone
    /// and its names, or one name and its members
    #[command(after_help = ACL_SHOW_HELP)]
    Show(AclShowArgs),
    /// Print the ID that ACLs name for the credentials given (--zk-auth-file or
    /// ZKDNS_ZK_AUTH), for `grant --registrar`; connects to nothing
    #[command(after_help = ACL_ID_HELP)]
    Id,
    /// Give every node that anyone may change to the admin (cdrwa), leaving anyone read;
    /// grants and other entries are kept (the migration step that ends an open deployment)
    #[command(after_help = ACL_LOCK_HELP)]
    Lock(AclLockArgs),
}

const ACL_HELP: &str = "\
Examples:
  zkdns acl show web.cluster.test
  ZKDNS_ZK_AUTH=web:PASSWORD zkdns acl id
  zkdns --zk-auth-file admin.secret acl lock --dry-run";

const ACL_ID_HELP: &str = "\
Examples:
  ZKDNS_ZK_AUTH=web:PASSWORD zkdns acl id
  zkdns --zk-auth-file web.secret acl id";

const ACL_LOCK_HELP: &str = "\
Examples:
  zkdns --zk-auth-file admin.secret acl lock --dry-run
  zkdns --zk-auth-file admin.secret acl lock --zone cluster.test";

const ACL_SHOW_HELP: &str = "\
Examples:
  zkdns acl show
  zkdns acl show cluster.test
  zkdns acl show web.cluster.test";

#[derive(Debug, Args)]
pub struct AclShowArgs {
    /// A zone (e.g. cluster.test) or a name in one (e.g. web.cluster.test); default: the
    /// root, the zones node and every zone
    pub target: Option<String>,
}

#[derive(Debug, Args)]
pub struct AclLockArgs {
    /// Lock only this zone (its node, names and members); default: everything under the root
    #[arg(long, env = "ZKDNS_LOCK_ZONE", value_parser = parse_zone)]
    pub zone: Option<ZoneName>,
    /// Say what would change, change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Files to load, in the --format given (zone files may use $INCLUDE)
    #[arg(value_name = "FILE", required_unless_present = "from_znode")]
    pub files: Vec<PathBuf>,
    /// Read the input from this znode instead of files: a path in the --zk chroot, not under
    /// --root (e.g. /services/hosts)
    #[arg(
        long,
        env = "ZKDNS_IMPORT_FROM_ZNODE",
        value_name = "PATH",
        conflicts_with = "files"
    )]
    pub from_znode: Option<String>,
    /// Input format; default: zone, or json-map with --from-znode
    #[arg(long, env = "ZKDNS_IMPORT_FORMAT", value_enum)]
    pub format: Option<ImportFormat>,
    /// Zone to load into; zone files default to their SOA owner, else their first $ORIGIN;
    /// hosts files and JSON maps need it
    #[arg(long, env = "ZKDNS_IMPORT_ZONE", value_parser = parse_zone)]
    pub zone: Option<ZoneName>,
    /// Also delete the record sets that the input does not have (never one with live members)
    #[arg(long, env = "ZKDNS_IMPORT_PRUNE")]
    pub prune: bool,
    /// Print the changes (+ created, ~ updated, - deleted) and write nothing
    #[arg(long, env = "ZKDNS_IMPORT_DRY_RUN")]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Zone to print (as `zkdns ls ZONE`; or give it with --zone)
    #[arg(value_name = "ZONE", value_parser = parse_zone, required_unless_present = "zone")]
    pub zone_arg: Option<ZoneName>,
    /// Zone to print
    #[arg(long, env = "ZKDNS_EXPORT_ZONE", value_parser = parse_zone)]
    pub zone: Option<ZoneName>,
}

impl ExportArgs {
    /// The zone, given either way (the positional one wins).
    pub fn zone(&self) -> &ZoneName {
        self.zone_arg
            .as_ref()
            .or(self.zone.as_ref())
            .expect("clap requires one")
    }
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
        write_value(self, f)
    }
}

/// What the input of `zkdns import` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImportFormat {
    /// RFC 1035 zone files
    Zone,
    /// /etc/hosts syntax: ADDRESS NAME [ALIAS…] lines
    Hosts,
    /// The old system's JSON map {"hostname": "ip", …}
    JsonMap,
}

impl std::fmt::Display for ImportFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write_value(self, f)
    }
}

/// Writes a value of a clap enum as it is typed on the command line (`AAAA`, `json-map`).
fn write_value(value: &impl ValueEnum, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    match value.to_possible_value() {
        Some(v) => f.write_str(v.get_name()),
        None => Ok(()),
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
    /// Answer REFUSED for names outside the zones instead of forwarding them (not with
    /// --upstream; checked after parsing, since clap counts ZKDNS_NO_UPSTREAM=false as given)
    #[arg(long, env = "ZKDNS_NO_UPSTREAM")]
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
    /// Queries per second answered for each client outside loopback (an IPv4 address, an IPv6
    /// /64), with bursts of as many; the excess is dropped. 0: no cap. Loopback is never capped
    #[arg(
        long,
        env = "ZKDNS_MAX_QPS_PER_CLIENT",
        default_value_t = 1000,
        value_name = "N"
    )]
    pub max_qps_per_client: u32,
    /// TCP connections from one client (an IPv4 address, an IPv6 /64); a new one over the
    /// cap closes that client's connection idle longest. In all, 512 per listen address: past
    /// that, the connection idle longest of any client is closed
    #[arg(
        long,
        env = "ZKDNS_MAX_TCP_PER_CLIENT",
        default_value_t = 32,
        value_parser = clap::value_parser!(u16).range(1..=512),
        value_name = "N"
    )]
    pub max_tcp_per_client: u16,
    /// UDP sockets (and threads) per listen address; default: one per CPU
    #[arg(long, env = "ZKDNS_UDP_WORKERS", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub udp_workers: Option<u16>,
    /// While ZooKeeper is away, answers come from the last map with TTLs capped at this
    /// (RFC 8767) and Extended DNS Error 3 "Stale Answer"
    #[arg(long, env = "ZKDNS_STALE_TTL", default_value = "30s", value_parser = parse_duration)]
    pub stale_ttl: Duration,
    /// How long after the map last matched ZooKeeper it is still served; later, SERVFAIL
    #[arg(long, env = "ZKDNS_MAX_STALE", default_value = "3days", value_parser = parse_duration)]
    pub max_stale: Duration,
    /// Bytes the cache of forwarded answers may take (e.g. 4MiB, 512KiB, 100000)
    #[arg(long, env = "ZKDNS_CACHE_SIZE", default_value = "4MiB", value_parser = parse_size,
          value_name = "SIZE")]
    pub cache_size: usize,
    /// Keep no forwarded answers: every such query goes to the upstreams
    #[arg(long, env = "ZKDNS_NO_CACHE")]
    pub no_cache: bool,
    /// Longest a forwarded answer is kept, whatever its TTL
    #[arg(long, env = "ZKDNS_CACHE_MAX_TTL", default_value = "1day", value_parser = parse_duration)]
    pub cache_max_ttl: Duration,
    /// Longest a forwarded NXDOMAIN or NODATA is kept, whatever its SOA says
    #[arg(long, env = "ZKDNS_CACHE_MAX_NEGATIVE_TTL", default_value = "1h",
          value_parser = parse_duration)]
    pub cache_max_negative_ttl: Duration,
    /// How long past its expiry a forwarded answer may still be served (with TTL --stale-ttl
    /// and Extended DNS Error 3) when every upstream fails (RFC 8767)
    #[arg(long, env = "ZKDNS_CACHE_STALE_LIMIT", default_value = "1day",
          value_parser = parse_duration)]
    pub cache_stale_limit: Duration,
    /// Keep the last good map in this file, and answer from it (stale) after a restart while
    /// ZooKeeper is down
    #[arg(long, env = "ZKDNS_SNAPSHOT", value_name = "PATH")]
    pub snapshot: Option<PathBuf>,
    /// After a reconnect or a new session, wait a random time up to this before re-reading
    /// the zones (changes that come in meanwhile are applied at once), so that a fleet moved by
    /// one server's failure does not re-read all at once; 0s reads at once
    #[arg(long, env = "ZKDNS_RESYNC_JITTER", default_value = "15s", value_parser = parse_duration)]
    pub resync_jitter: Duration,
    /// Read the whole tree again every this long (75-125 % of it, at random): what a plain
    /// ZooKeeper client changed while the stub was disconnected, without touching the zone's
    /// change mark, shows at the latest then; 0s never
    #[arg(long, env = "ZKDNS_FULL_READ_EVERY", default_value = "1h", value_parser = parse_duration)]
    pub full_read_every: Duration,
    /// Serve Prometheus metrics at http://ADDR/metrics, readiness at /healthz and liveness
    /// at /livez (e.g. 127.0.0.1:9153)
    #[arg(long, env = "ZKDNS_METRICS", value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
}

/// `check` takes exactly what `serve` takes (flags and `ZKDNS_*` variables alike), so that
/// it checks the configuration the stub would run with.
#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
}

const REGISTER_HELP: &str = "\
Creates the EPHEMERAL member <root>/zones/<zone>/<name>/<ID> holding the addresses, and keeps
it while the process runs: checked after every reconnect, made again with a new session after
the session expired, deleted (and the session closed) on SIGTERM/SIGINT. A record set that
does not exist is created as a CONTAINER node, which ZooKeeper removes once its last member is
gone. --port publishes an SRV record (priority 0, weight 0, target NAME) at NAME, or with
--srv at _SERVICE._PROTO.NAME. With --check-cmd and/or --check-tcp the name is published after
the first passing check, withdrawn after --check-fall failures in a row and restored after
--check-rise passes in a row. ZooKeeper must be reachable at the start (exit 1 otherwise);
later outages are ridden out.

Examples:
  zkdns register web.cluster.test
  zkdns register web.cluster.test --addr 10.0.0.5 --port 8080 --srv _http._tcp
  zkdns register web.cluster.test --check-cmd 'curl -fsS localhost:8080/health'";

const HOSTS_HELP: &str = "\
Writes one 'ADDRESS<TAB>NAME' line per address of every A/AAAA name between the lines
'# BEGIN zkdns' and '# END zkdns' (appended when missing), and keeps every other byte of the
file. Follows the map with the same watch as serve, coalescing bursts; the block is kept as
it is while ZooKeeper is away. A file that is a bind mount (Docker's /etc/hosts) is rewritten
in place. For small maps: glibc reads /etc/hosts line by line on every lookup.

Examples:
  zkdns hosts --file /etc/hosts
  zkdns hosts --file /etc/hosts --once --zone cluster.test";

#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// Absolute name to publish, e.g. web.cluster.test (trailing dot optional)
    #[arg(env = "ZKDNS_REGISTER_NAME")]
    pub name: String,
    /// Address to publish (repeatable, or comma-separated); default: this host's primary
    /// address (the source address of its default route)
    #[arg(
        long = "addr",
        env = "ZKDNS_REGISTER_ADDR",
        value_delimiter = ',',
        value_name = "IP"
    )]
    pub addrs: Vec<std::net::IpAddr>,
    /// Zone of NAME; default: the longest zone under the root that NAME ends with (a zone
    /// given here is created if missing)
    #[arg(long, env = "ZKDNS_REGISTER_ZONE", value_parser = parse_zone)]
    pub zone: Option<ZoneName>,
    /// Port of the service: also publish an SRV record (0 0 PORT NAME.)
    #[arg(long, env = "ZKDNS_REGISTER_PORT")]
    pub port: Option<u16>,
    /// Put the SRV record at _SERVICE._PROTO.NAME instead of NAME, e.g. _http._tcp
    #[arg(
        long,
        env = "ZKDNS_REGISTER_SRV",
        requires = "port",
        value_name = "_SERVICE._PROTO"
    )]
    pub srv: Option<String>,
    /// Member id, the name of the ephemeral znode; default: HOSTNAME-PID
    #[arg(long, env = "ZKDNS_REGISTER_ID")]
    pub id: Option<String>,
    /// Health check: a shell command (sh -c) that exits 0 when the instance is healthy
    #[arg(long, env = "ZKDNS_REGISTER_CHECK_CMD", value_name = "CMD")]
    pub check_cmd: Option<String>,
    /// Health check: healthy when a TCP connection to HOST:PORT opens
    #[arg(long, env = "ZKDNS_REGISTER_CHECK_TCP", value_name = "HOST:PORT")]
    pub check_tcp: Option<String>,
    /// Time between health checks
    #[arg(long, env = "ZKDNS_REGISTER_CHECK_INTERVAL", default_value = "2s",
          value_parser = parse_positive_duration)]
    pub check_interval: Duration,
    /// Longest a health check may take before it counts as failed; default: the interval
    #[arg(long, env = "ZKDNS_REGISTER_CHECK_TIMEOUT", value_parser = parse_positive_duration)]
    pub check_timeout: Option<Duration>,
    /// Passing checks in a row that restore a withdrawn name
    #[arg(long, env = "ZKDNS_REGISTER_CHECK_RISE", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub check_rise: u32,
    /// Failing checks in a row that withdraw the name
    #[arg(long, env = "ZKDNS_REGISTER_CHECK_FALL", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub check_fall: u32,
}

#[derive(Debug, Args)]
pub struct HostsArgs {
    /// The hosts file to keep the block in (created if missing), e.g. /etc/hosts
    #[arg(long, env = "ZKDNS_HOSTS_FILE")]
    pub file: PathBuf,
    /// Write once, after the first full read of ZooKeeper, and exit
    #[arg(long, env = "ZKDNS_HOSTS_ONCE")]
    pub once: bool,
    /// Zone whose names to write (repeatable, or comma-separated); default: every zone
    /// under the root
    #[arg(long = "zone", env = "ZKDNS_HOSTS_ZONE", value_delimiter = ',', value_parser = parse_zone)]
    pub zones: Vec<ZoneName>,
    /// Serve Prometheus metrics at /metrics and health at /healthz, /livez on this address
    #[arg(long, env = "ZKDNS_HOSTS_METRICS", value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// After a reconnect or a new session, wait a random time up to this before re-reading
    /// the zones (as `serve --resync-jitter`)
    #[arg(long, env = "ZKDNS_HOSTS_RESYNC_JITTER", default_value = "15s", value_parser = parse_duration)]
    pub resync_jitter: Duration,
    /// Read the whole tree again every this long (as `serve --full-read-every`)
    #[arg(long, env = "ZKDNS_HOSTS_FULL_READ_EVERY", default_value = "1h", value_parser = parse_duration)]
    pub full_read_every: Duration,
}

fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err("must be more than 0".to_string()),
        d => Ok(d),
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 500ms, 2s, 1m)"))
}

/// A size in bytes: a number, optionally with a binary unit (`KiB`, `MiB`, `GiB`; `K`, `M`,
/// `G` mean the same).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let text = s.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let shift = match unit.trim() {
        "" | "B" => 0,
        "K" | "KiB" | "k" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        _ => {
            return Err(format!(
                "{s:?}: the unit must be KiB, MiB or GiB (e.g. 4MiB)"
            ));
        }
    };
    number
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("{s:?} is not a size (e.g. 4MiB, 512KiB, 100000)"))
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
    fn sizes_parse() {
        assert_eq!(parse_size("4MiB").unwrap(), 4 << 20);
        assert_eq!(parse_size("512KiB").unwrap(), 512 << 10);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("100000").unwrap(), 100_000);
        assert!(parse_size("4MB").is_err());
        assert!(parse_size("lots").is_err());
        assert!(parse_size("").is_err());
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
